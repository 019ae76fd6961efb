"""Balanced-test accuracy of every method after the `cpu` schedule on Fashion-MNIST-LT IR 100.

    .venv/bin/python bench/train_accuracy.py                          # all methods, seeds 0 1 2
    .venv/bin/python bench/train_accuracy.py --methods prl sade --seeds 0 1 2 --threads 1
    .venv/bin/python bench/train_accuracy.py --methods prl --recipe published   # PUBLISHED_RECIPE
    .venv/bin/python bench/train_accuracy.py --table-only             # the table from the runs there

Settings: the `cpu` preset (lib/longtail/train/config.py, PRESETS: the cpu schedule, also the cpu
profile of notebook 03) with TrainConfig's defaults for the rest (SGD with Nesterov momentum,
crop + flip + rotation augmentation; docs/long_tail.md, section 7). Runs live in
runs/bench_train_accuracy/<method>/seed<k> (<method>+published/seed<k> with --recipe published: the
published SADE code's weight starts, stem, warm-up stepping and rotation, lib/longtail/train/config.py,
PUBLISHED_RECIPE) and resume after an interruption; the table lists every
method with a checkpoint and how many epochs it has, so a partial table says so. Accuracy: the uniform preference on the full balanced test set
(1000 images per class), top-1 and the mean per-class accuracy of many / medium / few.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import out_dir
from lib.core.io import atomic_write_text
from lib.core.paths import RUNS
from lib.longtail.train import METHODS, TrainConfig, evaluate, fit, load_data, load_model
from lib.longtail.train.config import PRESETS, PUBLISHED_RECIPE

PRESET = "cpu"  # lib/longtail/train/config.py, PRESETS
RECIPES = {
    "workbook": ("", {}),
    "published": ("+published", PUBLISHED_RECIPE),
}  # dir suffix, overrides


def table(root: Path, data) -> pd.DataFrame:
    """One row per method and seed with a checkpoint: epochs done and balanced-test accuracy."""
    rows = []
    for m in METHODS:
        for recipe, (suffix, _) in RECIPES.items():
            rows += [
                row(ck, m, recipe, data)
                for ck in sorted((root / f"{m}{suffix}").glob("seed*/checkpoints/last.pt"))
            ]
    return pd.DataFrame(rows)


def row(ck: Path, method: str, recipe: str, data) -> dict:
    """Epochs done and balanced-test accuracy of one checkpoint."""
    model, info = load_model(ck)
    acc = evaluate(model, data, None, per_class=0)
    return {
        "method": method if recipe == "workbook" else f"{method} ({recipe} recipe)",
        "seed": info["train_config"]["seed"],
        "experts": info["meta"]["num_experts"],
        "epochs": info["epoch"],
        "of": info["train_config"]["epochs"],
        **{k: round(v, 2) for k, v in acc.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    ap.add_argument("--recipe", choices=RECIPES, default="workbook", help="training recipe")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument(
        "--table-only", action="store_true", help="only rebuild the table from existing runs"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = RUNS / "bench_train_accuracy"
    data = load_data(TrainConfig.from_params(PRESET))
    for m in [] if args.table_only else args.methods:
        for seed in args.seeds:
            t0 = time.time()
            suffix, overrides = RECIPES[args.recipe]
            cfg = TrainConfig.from_params(PRESET, method=m, seed=seed, **overrides)
            fit(cfg, root / f"{m}{suffix}" / f"seed{seed}", data=data)
            print(f"{m} seed {seed}: trained in {time.time() - t0:.0f} s", flush=True)
    write(table(root, data))
    return 0


def write(t: pd.DataFrame) -> None:
    """Write the per-seed table as CSV and the mean and spread over seeds as Markdown."""
    atomic_write_text(out_dir("train_accuracy") / "train_accuracy.csv", t.to_csv(index=False))
    done = t[t.epochs == t["of"]] if len(t) else t
    cols = ["top1", "many", "medium", "few"]
    lines = [
        "# Fashion-MNIST-LT IR 100, cpu schedule: balanced test accuracy (%)",
        "",
        f"Machine: {os.cpu_count()}-core CPU, shared with other jobs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); training at TrainConfig's default runtime settings "
        "(channels-last, bfloat16 autocast on a CPU with native bf16). Uniform preference, 10,000 "
        "balanced test images. ResNet-32 (reduced widths 24/48); softmax baselines with one "
        "expert, the others with three. Mean +- standard deviation over the training seeds "
        "(the long-tailed split is the same for all); per-seed rows in train_accuracy.csv.",
        "",
        "| method | experts | seeds | epochs trained | top-1 | many | medium | few |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for m, g in t.groupby("method", sort=False) if len(t) else []:
        cells = [
            f"{g[c].mean():.2f} +- {g[c].std(ddof=1):.2f}" if len(g) > 1 else f"{g[c].mean():.2f}"
            for c in cols
        ]
        seeds = ", ".join(str(s) for s in g.seed)
        lines.append(
            f"| {m} | {g.experts.iloc[0]} | {seeds} | {g.epochs.min()} / {g['of'].iloc[0]} | "
            + " | ".join(cells)
            + " |"
        )
    missing = [m for m in METHODS if m not in set(t.method if len(t) else [])]
    if missing or len(done) < len(t):
        lines += [
            "",
            f"Incomplete: methods not run: {', '.join(missing) or 'none'}; rows with fewer than "
            f"{PRESETS[PRESET]['epochs']} epochs are partial runs, not final results.",
        ]
    atomic_write_text(out_dir("train_accuracy") / "train_accuracy.md", "\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
