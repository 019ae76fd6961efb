"""Find and load the trained checkpoints to evaluate, checked against the evaluation data."""

from __future__ import annotations

import glob
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...core.lookup import AUTO, find_finished
from ...core.paths import RUNS, repo_path
from ..data import IMAGELIST_DATASETS, build_imagelist_data, build_longtail_data
from ..train.checkpoint import load_checkpoint, load_model


def find_checkpoints(
    patterns: list[str],
    run_dir: str | Path,
    source: str = AUTO,
    runs_root: Path | None = None,
    report: Callable[[str], Any] | None = print,
) -> list[Path]:
    """Checkpoint paths from glob patterns (relative to the repo); none given -> notebook 03's, found by `source`.

    With no patterns, notebook 03's `checkpoints/last.pt` is looked up by
    `lib.core.lookup.find_finished` (`source` ``auto``: `<run_dir>/03_training` first, then the newest
    finished 03_training run of any profile under runs/; ``run_dir``: only there; or a profile
    name, a runs folder or a run folder), and `report` is given one line naming the checkpoint
    used and why.
    """
    if not patterns:
        hit = find_finished(
            "03_training",
            "checkpoints/last.pt",
            run_dir,
            source,
            runs_root=RUNS if runs_root is None else runs_root,
        )
        if report is not None:
            report(f"checkpoint of {hit.how}")
        return [hit.path]
    found: list[Path] = []
    for pat in patterns:
        hits = sorted(glob.glob(str(repo_path(pat))))
        if not hits:
            raise FileNotFoundError(
                f"no checkpoint matches {pat}; run notebook 03 first (same run_dir), or "
                "bench/train_accuracy.py for every method (the cpu profile reads its runs), "
                "or pass checkpoint paths or glob patterns"
            )
        found += [Path(h) for h in hits if Path(h) not in found]
    return found


def load_for_evaluation(
    paths: list[Path], num_classes: int, device: str = "cpu", seeds: list[int] | None = None
) -> dict[str, tuple]:
    """name -> (model, info) for each checkpoint; a class count other than the data's is an error.

    A method trained once is named by the method; several training seeds of one method are
    named `<method> seed <k>` (`over_seeds` averages them). `seeds` keeps only those training
    seeds (None or empty: all).
    """
    loaded = []
    for p in paths:
        model, info = load_model(p, device=device)
        meta = info["meta"]
        if meta["num_classes"] != num_classes:
            raise ValueError(
                f"checkpoint {p} predicts {meta['num_classes']} classes but the test data has "
                f"{num_classes}; evaluate it on its own dataset ({meta['dataset']})"
            )
        seed = int(info.get("train_config", {}).get("seed", 0))
        if not seeds or seed in seeds:
            loaded.append((p, meta["method"], seed, model, info))
    if not loaded:
        raise ValueError(
            f"none of the {len(paths)} checkpoint(s) was trained with a seed in {seeds}; "
            "pass seeds=[] to evaluate every checkpoint"
        )
    runs: dict[str, list[int]] = {}
    for _, method, seed, _, _ in loaded:
        runs.setdefault(method, []).append(seed)
    models: dict[str, tuple] = {}
    for p, method, seed, model, info in loaded:
        distinct = len(set(runs[method])) == len(runs[method])
        name = (
            method
            if len(runs[method]) == 1
            else f"{method} seed {seed}"
            if distinct
            else f"{method} ({p.parent.parent.name})"
        )
        if name in models:
            name = f"{method} ({p.parent.parent.name})"
        models[name] = (model, info)
    return models


def data_key(ckpt: dict) -> dict[str, Any]:
    """What fixes a checkpoint's training split (and so its held-out and test images)."""
    meta, tc = ckpt["meta"], ckpt["train_config"]
    key = {"dataset": meta["dataset"], "num_classes": meta["num_classes"]}
    if meta["dataset"] in IMAGELIST_DATASETS or meta["dataset"] == "imagelist":
        return {
            **key,
            **{k: tc.get(k) for k in ("train_list", "test_list", "image_root", "image_size")},
        }
    return {**key, "imb_ratio": float(meta["imb_ratio"]), "n_max": tc.get("n_max") or 0}


def check_same_data(checkpoints: list[Path]) -> dict:
    """The first checkpoint, after checking every checkpoint was trained on the same split; else an error."""
    first = load_checkpoint(checkpoints[0])
    want = data_key(first)
    for p in checkpoints[1:]:
        got = data_key(load_checkpoint(p))
        diff = [f"{k} {want[k]!r} vs {got.get(k)!r}" for k in want if got.get(k) != want[k]]
        if diff:
            raise ValueError(
                f"checkpoints {checkpoints[0]} and {p} were trained on different data "
                f"({'; '.join(diff)}); every model here is evaluated on one split, so the other's "
                "test and held-out calibration images would be wrong (some of them its training "
                "images). Evaluate them in separate runs: one checkpoints list per dataset and "
                "imbalance ratio"
            )
    return first


def evaluation_data(
    checkpoints: Path | list[Path],
    test_per_class: int = 0,
    val_per_class: int = 0,
    val_list: str = "",
    dist_lists: str = "",
    workers: int = 8,
):
    """The test data the checkpoints were trained for: `LongTailData` (array sets) or `ImageListData` (image lists).

    Checkpoints trained on different splits (dataset, imbalance ratio, n_max, lists) are refused.
    Array datasets rebuild the long-tailed split from the checkpoint's dataset and imbalance ratio
    (`test_per_class`, `val_per_class` apply); image-list datasets read the training and test lists
    the run used (`test_per_class`, `val_list`, `dist_lists` apply; see `build_imagelist_data`). Subsets are drawn
    with seed 0, as training drew them, so held-out images never overlap the training set.
    """
    paths = (
        [Path(checkpoints)]
        if isinstance(checkpoints, (str, Path))
        else [Path(p) for p in checkpoints]
    )
    checkpoint = paths[0]
    ckpt = check_same_data(paths)
    meta, tc = ckpt["meta"], ckpt["train_config"]
    if meta["dataset"] in IMAGELIST_DATASETS or meta["dataset"] == "imagelist":
        if val_per_class and not val_list:
            warnings.warn(
                "image-list datasets have no unused training images to hold out: val_per_class is not "
                "used and the scores stay uncalibrated; pass val_list (e.g. ImageNet_LT_val.txt) to "
                "calibrate them",
                stacklevel=2,
            )
        return build_imagelist_data(
            repo_path(tc["train_list"]),
            repo_path(tc["test_list"]),
            repo_path(tc["image_root"]),
            meta["num_classes"],
            meta["dataset"],
            dist_lists=str(repo_path(dist_lists)) if dist_lists else "",
            val_list=repo_path(val_list) if val_list else "",
            test_per_class=test_per_class,
            image_size=tc["image_size"],
            workers=workers,
        )
    if val_list or dist_lists:
        raise ValueError(
            f"val_list and dist_lists apply to image-list checkpoints; {checkpoint} was trained on "
            f"{meta['dataset']}: use val_per_class and leave them empty"
        )
    return build_longtail_data(
        meta["dataset"],
        imb_ratio=meta["imb_ratio"],
        n_max=tc.get("n_max") or None,
        test_per_class=test_per_class or None,
        val_per_class=val_per_class,
    )  # seed 0, as training split it
