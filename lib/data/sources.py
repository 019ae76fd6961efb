"""Array data sources: CIFAR-100 (python pickles) and Fashion-MNIST (gzipped IDX).

Both load into `ArrayData` (uint8 images N x C x H x W, int64 labels). Every file is
checked against a published checksum before it is parsed; a pickle is never opened
unverified. Downloads happen only when asked for (`download=True`).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import check_digest

# CIFAR-100 python release (Krizhevsky 2009); md5s as published with the dataset.
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_TAR_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_MD5 = {"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc"}

# Fashion-MNIST (Xiao et al. 2017). The gz md5s are those of the upstream release; the
# sha256 of the *decompressed* IDX bytes also accepts recompressed copies (Debian's).
FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FMNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                   "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe",
                                   "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79",
                                  "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310",
                                  "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
FMNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                  "Bag", "Ankle boot"]


@dataclass
class ArrayData:
    """Images and labels of one split held in memory."""

    X: np.ndarray  # uint8, N x C x H x W
    y: np.ndarray  # int64, N
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, idx: np.ndarray) -> "ArrayData":
        """The items at `idx`, same classes."""
        return ArrayData(self.X[idx], self.y[idx], self.classes)


def _download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    print(f"downloading {url} -> {dest}")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"download of {url} failed ({e}); fetch it by hand into {dest.parent}") from None
    os.replace(tmp, dest)


def _missing_dir_error(what: str, root: Path, hint: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found at {root}. {hint}")


def load_cifar100(root: str | Path = "data/CIFAR100", download: bool = False) -> tuple[ArrayData, ArrayData]:
    """CIFAR-100 train and test from `root/cifar-100-python/` (md5-checked before unpickling)."""
    from ..paths import repo_path

    root = repo_path(root)
    folder = root / "cifar-100-python"
    if not folder.is_dir():
        if not download:
            raise _missing_dir_error("CIFAR-100 (cifar-100-python/)", folder,
                                     f"Put the extracted cifar-100-python folder in {root}, or pass download=True.")
        tar = root / "cifar-100-python.tar.gz"
        if not tar.exists():
            _download(CIFAR100_URL, tar)
        check_digest(tar, CIFAR100_TAR_MD5)
        with tarfile.open(tar, "r:gz") as t:
            t.extractall(root, filter="data")
    splits = []
    for split in ("train", "test"):
        path = folder / split
        if not path.exists():
            raise _missing_dir_error(f"CIFAR-100 file '{split}'", path, "The folder is incomplete; extract it again.")
        check_digest(path, CIFAR100_MD5[split])  # before pickle.load: never unpickle an unverified file
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="latin1")
        X = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d["fine_labels"], dtype=np.int64)
        splits.append((X, y))
    with open(folder / "meta", "rb") as f:
        classes = pickle.load(f, encoding="latin1")["fine_label_names"] if (folder / "meta").exists() else None
    classes = classes or [str(i) for i in range(100)]
    return ArrayData(*splits[0], classes), ArrayData(*splits[1], classes)


def _check_fmnist_file(path: Path) -> bytes:
    """Decompressed bytes of one Fashion-MNIST file, after checking its checksum."""
    gz_md5, raw_sha = FMNIST_FILES[path.name]
    blob = path.read_bytes()
    raw = gzip.decompress(blob)
    if hashlib.md5(blob).hexdigest() != gz_md5 and hashlib.sha256(raw).hexdigest() != raw_sha:
        raise ValueError(f"checksum mismatch for {path}: neither the gz md5 nor the content sha256 match "
                         "Fashion-MNIST. Delete the file and download it again.")
    return raw


def _parse_idx(raw: bytes) -> np.ndarray:
    """Parse IDX bytes (unsigned byte data) into an array of the stored shape."""
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_fashion_mnist(root: str | Path | None = None) -> Path:
    """The first directory holding the four Fashion-MNIST files: `root`, data/FashionMNIST, the system copy."""
    from ..paths import repo_path

    cands = [repo_path(root)] if root else [repo_path("data/FashionMNIST"), FMNIST_SYSTEM_DIR]
    for c in cands:
        if all((c / f).exists() for f in FMNIST_FILES):
            return c
    raise FileNotFoundError(
        f"Fashion-MNIST not found in {', '.join(map(str, cands))}. Install the Debian package "
        "dataset-fashion-mnist (apt-get install dataset-fashion-mnist), put the four *-ubyte.gz files "
        "in data/FashionMNIST, or call load_fashion_mnist(download=True).")


def load_fashion_mnist(root: str | Path | None = None, download: bool = False) -> tuple[ArrayData, ArrayData]:
    """Fashion-MNIST train (60,000) and test (10,000) as 1 x 28 x 28 uint8 images."""
    from ..paths import repo_path

    try:
        folder = find_fashion_mnist(root)
    except FileNotFoundError:
        if not download:
            raise
        folder = repo_path(root or "data/FashionMNIST")
        for name in FMNIST_FILES:
            if not (folder / name).exists():
                _download(FMNIST_URL + name, folder / name)
    out = []
    for split in ("train", "t10k"):
        X = _parse_idx(_check_fmnist_file(folder / f"{split}-images-idx3-ubyte.gz"))
        y = _parse_idx(_check_fmnist_file(folder / f"{split}-labels-idx1-ubyte.gz")).astype(np.int64)
        out.append(ArrayData(X[:, None].copy(), y, list(FMNIST_CLASSES)))
    return out[0], out[1]
