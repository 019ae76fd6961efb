"""Image-list datasets (ImageNet-LT, Places-LT, iNaturalist 2018): `relative/path label` txt files.

Lines are validated when the list is read (format, label range, duplicates, and with
`check_files` that every file exists); images are decoded lazily with Pillow.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Class counts of the published image-list benchmarks.
IMAGELIST_DATASETS = {"ImageNet_LT": 1000, "Places_LT": 365, "iNaturalist18": 8142}
# n_max of the published test-agnostic lists (test images per class of the head class).
IMAGELIST_NMAX = {"ImageNet_LT": 50, "Places_LT": 100, "iNaturalist18": 3}


@dataclass
class ImageList:
    """Paths (relative to `root`) and labels read from one txt list."""

    root: Path
    paths: list[str]
    labels: np.ndarray
    num_classes: int
    source: str = ""

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: np.ndarray) -> "ImageList":
        """The entries at `idx`."""
        return ImageList(self.root, [self.paths[i] for i in idx], self.labels[idx], self.num_classes, self.source)

    def to_text(self) -> str:
        """The list in the published `relative/path label` format."""
        return "".join(f"{p} {int(y)}\n" for p, y in zip(self.paths, self.labels))


def read_image_list(txt: str | Path, root: str | Path, num_classes: int, check_files: bool = True) -> ImageList:
    """Read and validate a `relative/path label` list; errors name the file, line and fix."""
    txt, root = Path(txt), Path(root)
    if not txt.is_file():
        raise FileNotFoundError(f"image list {txt} not found; pass the path of a 'relative/path label' txt file")
    if check_files and not root.is_dir():
        raise FileNotFoundError(f"image root {root} is not a directory; pass the folder the list's paths are relative to")
    paths, labels, seen = [], [], {}
    for n, line in enumerate(txt.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{txt}:{n}: malformed line {line!r}; expected 'relative/path label' "
                             "(a path without spaces, one integer label)")
        path, label = parts[0], int(parts[1])
        if not 0 <= label < num_classes:
            raise ValueError(f"{txt}:{n}: label {label} out of range 0..{num_classes - 1}; "
                             "check num_classes or the list")
        if path in seen:
            raise ValueError(f"{txt}:{n}: duplicate path {path} (first on line {seen[path]}); remove the repeat")
        seen[path] = n
        if check_files and not (root / path).is_file():
            raise FileNotFoundError(f"{txt}:{n}: image {root / path} does not exist; check the root directory "
                                    "or regenerate the list")
        paths.append(path)
        labels.append(label)
    if not paths:
        raise ValueError(f"{txt} holds no entries; an image list needs at least one 'relative/path label' line")
    return ImageList(root, paths, np.array(labels, dtype=np.int64), num_classes, str(txt))


class ImageListDataset:
    """torch-style dataset over an ImageList: decodes RGB images with Pillow on access."""

    def __init__(self, items: ImageList, transform=None):
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.items.root / self.items.paths[i]) as im:
            img = im.convert("RGB")
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.items.labels[i])


class DecodedImages:
    """Batches of an ImageList as uint8 tensors N x 3 x S x S, decoded on demand by a thread pool.

    Each image's shorter side is resized to `size` and the centre square kept, so a batch stacks
    into one tensor and the training loop's batched augmentation (crop, flip, rotation) applies
    as for the array datasets. Indexing takes an int, a slice, or an index array / tensor.
    """

    def __init__(self, items: ImageList, size: int = 224, workers: int = 8):
        if size < 8:
            raise ValueError(f"image size must be >= 8 pixels, got {size}")
        self.items, self.size, self.workers = items, size, max(1, workers)
        self._pool = None  # one thread pool for the object's life, made on first use

    def __len__(self) -> int:
        return len(self.items)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.items), 3, self.size, self.size)

    def _load(self, i: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.items.root / self.items.paths[i]) as im:
            img = im.convert("RGB")
        w, h = img.size
        scale = self.size / min(w, h)
        img = img.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        return np.asarray(img.crop((left, top, left + self.size, top + self.size))).transpose(2, 0, 1)

    def __getitem__(self, key):
        import torch

        if isinstance(key, slice):
            idx = range(*key.indices(len(self)))
        elif np.ndim(key) == 0:
            return torch.from_numpy(np.ascontiguousarray(self._load(int(key))))
        else:
            idx = np.asarray(key, dtype=np.int64).tolist()
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers)  # Pillow releases the GIL while decoding
        arrays = list(self._pool.map(self._load, idx))
        return torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros((0, 3, self.size, self.size),
                                                                             dtype=torch.uint8)


def write_image_list(items: ImageList, txt: str | Path, overwrite: bool = False) -> str:
    """Write a list file; an existing file with other content is kept unless overwrite=True."""
    from ..io import write_text_no_clobber

    return write_text_no_clobber(txt, items.to_text(), overwrite=overwrite)
