"""Image-list datasets (ImageNet-LT, Places-LT, iNaturalist 2018): `relative/path label` txt files.

Lines are validated when the list is read (UTF-8 text, a leading byte-order mark dropped;
format; labels of ASCII digits in range; paths that stay inside the root; duplicates of the
normalized path; and with `check_files` that every file exists, resolves, symlinks followed,
inside the root, and opens as an image of at most `max_pixels` pixels, read from its header
without decoding); images are decoded lazily with Pillow, and each file is checked again to
resolve inside the root before it is opened.
"""

from __future__ import annotations

import posixpath
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .distributions import IMBALANCES, distribution_names, imagelist_agnostic_indices
from .imbalance import TrainCountsView, select_per_class

# Class counts of the published image-list benchmarks.
IMAGELIST_DATASETS = {"ImageNet_LT": 1000, "Places_LT": 365, "iNaturalist18": 8142}
# n_max of the published test-agnostic lists (test images per class of the head class).
IMAGELIST_NMAX = {"ImageNet_LT": 50, "Places_LT": 100, "iNaturalist18": 3}
# Largest image (width x height) a list may name: Pillow's own decompression-bomb threshold
# (PIL.Image.MAX_IMAGE_PIXELS), far above any image of the published lists; pass max_pixels to change.
MAX_PIXELS = 89_478_485
# A label: ASCII digits only (str.isdigit and int() also take '²' or '٣', an Arabic-Indic 3).
_LABEL = re.compile(r"-?[0-9]+")
_BOM = b"\xef\xbb\xbf"


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

    def subset(self, idx: np.ndarray) -> ImageList:
        """The entries at `idx`."""
        return ImageList(
            self.root, [self.paths[i] for i in idx], self.labels[idx], self.num_classes, self.source
        )

    def to_text(self) -> str:
        """The list in the published `relative/path label` format."""
        return "".join(f"{p} {int(y)}\n" for p, y in zip(self.paths, self.labels))

    def file(self, i: int) -> Path:
        """Absolute path of entry `i`, refused if it resolves (symlinks followed) outside the root."""
        return inside_root(self.root, self.paths[i], self.source or "image list")


def normalize_list_path(path: str, where: str) -> str:
    """A list entry's path in normal form (`a/./1.png` -> `a/1.png`); absolute or `..` paths are errors."""
    if (
        path.startswith(("/", "\\"))
        or PurePosixPath(path).is_absolute()
        or (len(path) > 1 and path[1] == ":")
    ):
        raise ValueError(
            f"{where}: absolute path {path}; image-list paths must be relative to the image root "
            "(strip the root prefix from the list)"
        )
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise ValueError(
            f"{where}: path {path} leaves the image root; list only files inside the root "
            "(or pass a root that contains them)"
        )
    return norm


def inside_root(root: Path, rel: str, where: str) -> Path:
    """`root / rel` resolved; a path that a symlink takes outside the root is an error."""
    real_root = Path(root).resolve()
    real = (real_root / rel).resolve()
    if not real.is_relative_to(real_root):
        raise ValueError(
            f"{where}: {rel} resolves to {real}, outside the image root {real_root} (a symlink "
            "leaves it); copy the file into the root or remove the link"
        )
    return real


def list_lines(txt: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a list file read as UTF-8, a leading byte-order mark dropped."""
    data = txt.read_bytes().removeprefix(_BOM)  # Windows editors write one: not part of a path
    for n, raw in enumerate(data.splitlines(), start=1):
        try:
            yield n, raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{txt}:{n}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1} of "
                f"{raw[:80]!r}); save the list as UTF-8, e.g. iconv -f latin1 -t utf-8, and give "
                "the image files the same UTF-8 names"
            ) from None


def parse_label(text: str, where: str, line: str) -> int:
    """A label of ASCII digits (`-` allowed for the range check); '--1', '²' or '٣' are errors."""
    if not _LABEL.fullmatch(text):
        raise ValueError(
            f"{where}: malformed line {line!r}: label {text!r} is not an integer written with "
            "the ASCII digits 0-9; write each label as a plain number such as 3"
        )
    return int(text)


def check_image(path: Path, where: str, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of an image read from its header only; not an image, or too large, is an error."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # the pixel limit is checked below, with the file named
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # reads the header: nothing is decoded until load()
                w, h = im.size
    except Image.DecompressionBombError as e:
        raise ValueError(
            f"{where}: image {path} is over Pillow's pixel limit PIL.Image.MAX_IMAGE_PIXELS ({e}); "
            "shrink the image or remove the line"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        empty = " (an empty file)" if path.stat().st_size == 0 else ""
        raise ValueError(
            f"{where}: {path} is not an image Pillow can read{empty} ({type(e).__name__}: "
            f"{str(e)[:120]}); replace it with the intact image or remove the line"
        ) from None
    if w * h > max_pixels:
        raise ValueError(
            f"{where}: image {path} is {w} x {h} = {w * h:,} pixels, over the limit of "
            f"{max_pixels:,} (max_pixels); shrink the image, remove the line, or pass a larger "
            "max_pixels if it is meant to be that large"
        )
    return w, h


def read_image_list(
    txt: str | Path,
    root: str | Path,
    num_classes: int,
    check_files: bool = True,
    max_pixels: int = MAX_PIXELS,
) -> ImageList:
    """Read and validate a `relative/path label` list; errors name the file, line and fix.

    With `check_files` every image must exist inside the root and open (header only) as an
    image of at most `max_pixels` pixels.
    """
    txt, root = Path(txt), Path(root)
    if not txt.is_file():
        raise FileNotFoundError(
            f"image list {txt} not found; pass the path of a 'relative/path label' txt file"
        )
    if check_files and not root.is_dir():
        raise FileNotFoundError(
            f"image root {root} is not a directory; pass the folder the list's paths are relative to"
        )
    paths, labels, seen, seen_real = [], [], {}, {}
    for n, line in list_lines(txt):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(
                f"{txt}:{n}: malformed line {line!r}; expected 'relative/path label' "
                "(a path without spaces, one integer label)"
            )
        path = normalize_list_path(parts[0], f"{txt}:{n}")
        label = parse_label(parts[1], f"{txt}:{n}", line)
        if not 0 <= label < num_classes:
            raise ValueError(
                f"{txt}:{n}: label {label} out of range 0..{num_classes - 1}; "
                "check num_classes or the list"
            )
        if path in seen:
            same = "" if path == parts[0] else f" ({parts[0]} is the same file)"
            raise ValueError(
                f"{txt}:{n}: duplicate path {path}{same} (first on line {seen[path]}); "
                "remove the repeat"
            )
        seen[path] = n
        if check_files:
            if not (root / path).is_file():
                raise FileNotFoundError(
                    f"{txt}:{n}: image {root / path} does not exist; check the root "
                    "directory or regenerate the list"
                )
            real = inside_root(root, path, f"{txt}:{n}")
            if real in seen_real:  # two names (a link and its target) for one image
                raise ValueError(
                    f"{txt}:{n}: {path} is the same file as line {seen_real[real]} (both resolve to "
                    f"{real}); remove the repeat"
                )
            seen_real[real] = n
            check_image(real, f"{txt}:{n}", max_pixels)
        paths.append(path)
        labels.append(label)
    if not paths:
        raise ValueError(
            f"{txt} holds no entries; an image list needs at least one 'relative/path label' line"
        )
    return ImageList(root, paths, np.array(labels, dtype=np.int64), num_classes, str(txt))


class ImageListDataset:
    """torch-style dataset over an ImageList: decodes RGB images with Pillow on access."""

    def __init__(self, items: ImageList, transform=None):
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.items.file(i)) as im:
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

        with Image.open(self.items.file(i)) as im:
            img = im.convert("RGB")
        w, h = img.size
        scale = self.size / min(w, h)
        img = img.resize(
            (max(self.size, round(w * scale)), max(self.size, round(h * scale))), Image.BILINEAR
        )
        w, h = img.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        return np.asarray(img.crop((left, top, left + self.size, top + self.size))).transpose(
            2, 0, 1
        )

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
        return (
            torch.from_numpy(np.stack(arrays))
            if arrays
            else torch.zeros((0, 3, self.size, self.size), dtype=torch.uint8)
        )


def write_image_list(items: ImageList, txt: str | Path, overwrite: bool = False) -> str:
    """Write a list file; an existing file with other content is kept unless overwrite=True."""
    from ...core.io import write_text_no_clobber

    return write_text_no_clobber(txt, items.to_text(), overwrite=overwrite)


@dataclass
class DecodedSplit:
    """Images decoded on demand (`X`, uint8 N x 3 x S x S by batch) and their labels `y`."""

    X: DecodedImages
    y: np.ndarray


@dataclass
class ImageListData(TrainCountsView):
    """An image-list benchmark for evaluation: long-tailed training list, test list and agnostic subsets.

    Same names as `LongTailData` where they mean the same (test.X / test.y, test_sets, val,
    groups, prior), so evaluation code takes either.
    """

    name: str
    train: ImageList
    test: DecodedSplit
    test_sets: dict[str, np.ndarray]  # distribution name -> indices into `test`
    val: DecodedSplit | None = None  # labelled held-out list (calibration), never test images
    imb_ratio: float = float("nan")  # read from the training counts, n_max / n_min

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def train_counts(self) -> np.ndarray:
        return np.bincount(self.train.labels, minlength=self.num_classes)


def lists_to_indices(test: ImageList, lists: dict[str, Path]) -> dict[str, np.ndarray]:
    """Indices into `test` of every entry of each distribution's list (matched by path and label)."""
    where = {p: i for i, p in enumerate(test.paths)}
    out = {}
    for name, txt in lists.items():
        sub = read_image_list(txt, test.root, test.num_classes, check_files=False)
        missing = [p for p in sub.paths if p not in where]
        if missing:
            raise ValueError(
                f"{txt}: {len(missing)} image(s) are not in the test list {test.source} "
                f"(first: {missing[0]}); a distribution list must be a subset of the test list"
            )
        idx = np.array([where[p] for p in sub.paths], dtype=np.int64)
        if not np.array_equal(test.labels[idx], sub.labels):
            raise ValueError(
                f"{txt}: labels differ from the test list {test.source} for the same images"
            )
        out[name] = idx
    return out


def build_imagelist_data(
    train_list: str | Path,
    test_list: str | Path,
    image_root: str | Path,
    num_classes: int,
    name: str = "imagelist",
    dist_lists: str = "",
    val_list: str | Path = "",
    n_max: int = 0,
    ks: tuple[int, ...] = (),
    test_per_class: int = 0,
    image_size: int = 224,
    seed: int = 0,
    workers: int = 8,
    check_files: bool = True,
    max_pixels: int = MAX_PIXELS,
) -> ImageListData:
    """Read an image-list benchmark and its test-agnostic distributions for evaluation.

    `dist_lists` is a path pattern with `{dist}` (e.g. `data_txt/ImageNet_LT/ImageNet_LT_{dist}.txt`,
    as notebook 01 writes them, or the published lists); every existing file becomes one
    distribution. Empty: the distributions are generated from the test list by the floor rule
    (`n_max` default: the published value, else the test list's per-class count; `ks` default:
    (3, 2) for iNaturalist 2018, else 50 ... 2). `test_per_class` below the test list's per-class
    count first keeps a seeded balanced subset of it, a scaled-down protocol for quick runs.
    """
    train = read_image_list(train_list, image_root, num_classes, check_files, max_pixels)
    test = read_image_list(test_list, image_root, num_classes, check_files, max_pixels)
    counts = np.bincount(train.labels, minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(
            f"{train_list}: classes {np.flatnonzero(counts == 0)[:10].tolist()} have no training image; "
            "every class needs one (check num_classes or the list)"
        )
    ks = tuple(ks) or ((3, 2) if name == "iNaturalist18" else IMBALANCES)
    test_counts = np.bincount(test.labels, minlength=num_classes)
    if 0 < test_per_class < test_counts.min():
        if dist_lists:
            raise ValueError(
                f"test_per_class {test_per_class} would subsample the test list, but dist_lists fixes "
                "the distributions; set test_per_class to 0 or leave dist_lists empty"
            )
        test = test.subset(
            np.sort(select_per_class(test.labels, np.full(num_classes, test_per_class), seed=seed))
        )
        test_counts = np.bincount(test.labels, minlength=num_classes)
        n_max = min(n_max or test_per_class, test_per_class)
    if dist_lists:
        if "{dist}" not in dist_lists:
            raise ValueError(
                f"dist_lists {dist_lists!r} needs a {{dist}} placeholder, e.g. "
                "data_txt/ImageNet_LT/ImageNet_LT_{dist}.txt"
            )
        found = {d: Path(dist_lists.format(dist=d)) for d in distribution_names(ks)}
        found = {d: p for d, p in found.items() if p.is_file()}
        if not found:
            raise FileNotFoundError(
                f"no distribution list matches {dist_lists} for {', '.join(distribution_names(ks))};"
                " generate them with notebook 01 or leave dist_lists empty to build them here"
            )
        test_sets = lists_to_indices(test, found)
    else:
        n_max = n_max or IMAGELIST_NMAX.get(name, 0) or int(test_counts.min())
        if test_counts.min() < n_max:
            raise ValueError(
                f"{test_list}: the floor rule needs {n_max} test images of every class, but some class "
                f"has {test_counts.min()}; pass a balanced test list, a smaller n_max, or dist_lists"
            )
        test_sets = imagelist_agnostic_indices(
            train.labels, test.labels, num_classes, n_max, ks, seed
        )
    val = None
    if val_list:
        v = read_image_list(val_list, image_root, num_classes, check_files, max_pixels)
        val = DecodedSplit(DecodedImages(v, image_size, workers), v.labels)
    return ImageListData(
        name,
        train,
        DecodedSplit(DecodedImages(test, image_size, workers), test.labels),
        test_sets,
        val,
        float(counts.max() / counts.min()),
    )
