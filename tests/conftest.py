"""Shared test fixtures, and the test order: browser tests last (they reuse the notebook smoke runs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lib.core.paths import RUNS


def pytest_collection_modifyitems(config, items):
    """Run the `browser` tests after everything else: by then tests/test_notebooks.py has made the
    smoke runs (runs/test-smoke) whose checkpoints notebook 04 reads, so they need not retrain."""
    items.sort(
        key=lambda item: item.get_closest_marker("browser") is not None
    )  # stable: order kept otherwise


@pytest.fixture(scope="session")
def smoke_dir() -> Path:
    """The suite's own smoke-run folder runs/test-smoke, emptied once per session: a checkpoint left
    by older code would (rightly) be refused by notebook 03's resume check."""
    out_dir = RUNS / "test-smoke"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    return out_dir


def make_png_lists(root: Path, counts=(6, 3, 2), test_per_class: int = 2) -> tuple[Path, Path]:
    """Tiny image-list dataset: PNGs of mixed sizes (class = dominant colour) and its two lists."""
    from PIL import Image

    rng = np.random.default_rng(0)
    lines = {"train": [], "test": []}
    for split, per in (("train", counts), ("test", [test_per_class] * len(counts))):
        for c, n in enumerate(per):
            for i in range(n):
                rel = f"{split}/c{c}/{i}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                w, h = int(rng.integers(20, 40)), int(rng.integers(20, 40))
                img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
                img[..., c] += 150
                Image.fromarray(img).save(root / rel)
                lines[split].append(f"{rel} {c}\n")
    for split, ls in lines.items():
        (root / f"{split}.txt").write_text("".join(ls))
    return root / "train.txt", root / "test.txt"


@pytest.fixture
def png_lists():
    """The tiny image-list maker: png_lists(root, counts, test_per_class) -> (train.txt, test.txt)."""
    return make_png_lists
