"""Tables and list files describing long-tailed data sets (used by notebook 01)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .datasets import LongTailData
from .distributions import distribution_names, floor_counts, parse_distribution
from .imagelist import IMAGELIST_DATASETS, IMAGELIST_NMAX, ImageList
from .imbalance import shot_groups
from .sources import ArrayData


def longtail_table(sets: dict[float, LongTailData]) -> pd.DataFrame:
    """One row per imbalance ratio: total images, head and tail counts, classes per shot group."""
    rows = []
    for ir, d in sets.items():
        c, g = d.train_counts, d.groups
        rows.append(
            {
                "imb_ratio": ir,
                "images": int(c.sum()),
                "n_head": int(c.max()),
                "n_tail": int(c.min()),
                "many": int((g == "many").sum()),
                "medium": int((g == "medium").sum()),
                "few": int((g == "few").sum()),
            }
        )
    return pd.DataFrame(rows).set_index("imb_ratio")


def agnostic_table(d: LongTailData) -> pd.DataFrame:
    """Images per test distribution, split by the training shot group of their classes."""
    rows = []
    for name, idx in d.test_sets.items():
        g = d.groups[d.test.y[idx]]
        rows.append(
            {
                "distribution": name,
                "images": len(idx),
                "many": int((g == "many").sum()),
                "medium": int((g == "medium").sum()),
                "few": int((g == "few").sum()),
            }
        )
    return pd.DataFrame(rows).set_index("distribution")


def imagelist_protocol_table(ks: tuple[int, ...] = (50, 25, 10, 5, 2)) -> pd.DataFrame:
    """Test images per distribution of the published image-list protocols (floor rule); one row per dataset."""
    rows = {}
    for name, C in IMAGELIST_DATASETS.items():
        n_max = IMAGELIST_NMAX[name]
        ks_here = (3, 2) if name == "iNaturalist18" else ks  # iNaturalist's lists use k in {2, 3}
        row = {}
        for dist in distribution_names(ks_here):
            kind, k = parse_distribution(dist)
            row[dist] = (
                C * n_max
                if kind == "uniform"
                else int(floor_counts(n_max, C, k, kind == "backward").sum())
            )
        rows[f"{name} (C={C}, n_max={n_max})"] = row
    order = distribution_names(tuple(sorted(set(ks) | {3}, reverse=True)))
    df = pd.DataFrame.from_dict(rows, orient="index")
    return df[[c for c in order if c in df]].astype("Int64")


def index_list_text(split: str, idx: np.ndarray, labels: np.ndarray) -> str:
    """Lines `<split>/<index> <label>` naming images of an array dataset by their index in the split."""
    return "".join(f"{split}/{int(i)} {int(y)}\n" for i, y in zip(idx, labels))


def write_array_lists(
    d: LongTailData, txt_dir: str | Path, overwrite: bool = False
) -> pd.DataFrame:
    """Write the long-tailed train list and every test-distribution list; report what was written."""
    from ...core.io import write_text_no_clobber

    folder = Path(txt_dir) / f"{d.name}_LT"
    stem = f"{d.name}_LT_ir{d.imb_ratio:g}"
    files = {f"{stem}_train.txt": index_list_text("train", d.train_idx, d.train.y)}
    for name, idx in d.test_sets.items():
        files[f"{d.name}_LT_{name}.txt"] = index_list_text("test", idx, d.test.y[idx])
    rows = [
        {
            "file": f,
            "lines": t.count("\n"),
            "status": write_text_no_clobber(folder / f, t, overwrite),
        }
        for f, t in files.items()
    ]
    return pd.DataFrame(rows)


def export_png_list(
    data: ArrayData, split_idx: np.ndarray, root: str | Path, split: str
) -> ImageList:
    """Write images as PNG files `<split>/<class>/<index in split>.png` under `root` and list them.

    `split_idx[i]` is the index of `data`'s item i in its full split, so a file name always
    means the same image whichever subset wrote it.
    """
    from PIL import Image

    root = Path(root)
    paths = []
    for i, img, label in zip(split_idx, data.X, data.y):
        rel = f"{split}/{int(label):03d}/{i:06d}.png"
        p = root / rel
        if not p.exists():  # files are immutable once written: re-runs reuse them
            p.parent.mkdir(parents=True, exist_ok=True)
            arr = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
            Image.fromarray(arr).save(p)
        paths.append(rel)
    return ImageList(root, paths, data.y.copy(), data.num_classes)


def shot_group_table(train_counts: np.ndarray) -> pd.DataFrame:
    """Per class: training count and shot group."""
    return pd.DataFrame({"train_count": train_counts, "group": shot_groups(train_counts)})
