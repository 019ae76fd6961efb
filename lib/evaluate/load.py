"""Find and load the trained checkpoints to evaluate, checked against the evaluation data."""
from __future__ import annotations

import glob
import warnings
from pathlib import Path

import torch

from ..data import IMAGELIST_DATASETS, build_imagelist_data, build_longtail_data
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


def evaluation_data(checkpoint: Path, test_per_class: int = 0, val_per_class: int = 0, val_list: str = "",
                    dist_lists: str = "", workers: int = 8):
    """The test data a checkpoint was trained for: `LongTailData` (array sets) or `ImageListData` (image lists).

    Array datasets rebuild the long-tailed split from the checkpoint's dataset and imbalance ratio
    (`test_per_class`, `val_per_class` apply); image-list datasets read the training and test lists
    the run used (`test_per_class`, `val_list`, `dist_lists` apply; see `build_imagelist_data`). Subsets are drawn
    with seed 0, as training drew them, so held-out images never overlap the training set.
    """
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    meta, tc = ckpt["meta"], ckpt["train_config"]
    if meta["dataset"] in IMAGELIST_DATASETS or meta["dataset"] == "imagelist":
        if val_per_class and not val_list:
            warnings.warn("image-list datasets have no unused training images to hold out: val_per_class is not "
                          "used and the scores stay uncalibrated; pass val_list (e.g. ImageNet_LT_val.txt) to "
                          "calibrate them", stacklevel=2)
        return build_imagelist_data(repo_path(tc["train_list"]), repo_path(tc["test_list"]), repo_path(tc["image_root"]),
                                    meta["num_classes"], meta["dataset"], dist_lists=str(repo_path(dist_lists)) if
                                    dist_lists else "", val_list=repo_path(val_list) if val_list else "",
                                    test_per_class=test_per_class, image_size=tc["image_size"], workers=workers)
    if val_list or dist_lists:
        raise ValueError(f"val_list and dist_lists apply to image-list checkpoints; {checkpoint} was trained on "
                         f"{meta['dataset']}: use val_per_class and leave them empty")
    return build_longtail_data(meta["dataset"], imb_ratio=meta["imb_ratio"], n_max=tc.get("n_max") or None,
                               test_per_class=test_per_class or None, val_per_class=val_per_class)  # seed 0, as training split it
