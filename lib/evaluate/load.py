"""Find and load the trained checkpoints to evaluate, checked against the evaluation data."""
from __future__ import annotations

import glob
from pathlib import Path

from ..paths import repo_path
from ..train.checkpoint import load_model


def find_checkpoints(patterns: list[str], run_dir: str | Path) -> list[Path]:
    """Checkpoint paths from glob patterns (relative to the repo); none given -> notebook 03's in run_dir."""
    pats = list(patterns) or [str(repo_path(run_dir) / "03_training" / "checkpoints" / "last.pt")]
    found: list[Path] = []
    for pat in pats:
        hits = sorted(glob.glob(str(repo_path(pat))))
        if not hits:
            raise FileNotFoundError(f"no checkpoint matches {pat}; run notebook 03 first (same run_dir), or "
                                    "bench/train_accuracy.py for every method (the cpu profile reads its runs), "
                                    "or pass checkpoint paths or glob patterns")
        found += [Path(h) for h in hits if Path(h) not in found]
    return found


def load_for_evaluation(paths: list[Path], num_classes: int, device: str = "cpu") -> dict[str, tuple]:
    """method -> (model, info) for each checkpoint; a class count other than the data's is an error."""
    models: dict[str, tuple] = {}
    for p in paths:
        model, info = load_model(p, device=device)
        meta = info["meta"]
        if meta["num_classes"] != num_classes:
            raise ValueError(f"checkpoint {p} predicts {meta['num_classes']} classes but the test data has "
                             f"{num_classes}; evaluate it on its own dataset ({meta['dataset']})")
        name = meta["method"] if meta["method"] not in models else f"{meta['method']} ({p.parent.parent.name})"
        models[name] = (model, info)
    return models
