"""Array data sources: CIFAR-100 (python pickles) and Fashion-MNIST (gzipped IDX).

Both load into `ArrayData` (uint8 images N x C x H x W, int64 labels). Every file is
checked against a published checksum before it is parsed: CIFAR's three pickles (train,
test, meta) by md5, and even then unpickled by an unpickler that builds only plain values
and numpy arrays, never other objects; Fashion-MNIST's gzip files by the md5 of the
compressed bytes before anything is decompressed. Downloads happen only when asked for
(`download=True`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import tarfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.io import check_digest, file_digest

# CIFAR-100 python release (Krizhevsky 2009); md5s as published with the dataset.
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_TAR_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_MD5 = {
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}
# The only globals CIFAR's pickles name: numpy's array reconstruction (old and new module paths),
# and bytes as Python 3 writes them at protocol 2 (copies re-pickled by other tools).
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}

# Fashion-MNIST (Xiao et al. 2017): per file the md5s of known gzip copies (the upstream
# release, Debian's dataset-fashion-mnist 2020 recompression), the sha256 and the size of the
# decompressed IDX bytes. Another recompression is accepted by its content, decompressed no
# further than that size, so a gzip bomb stops at the real file's size.
FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FMNIST_FILES = {
    "train-images-idx3-ubyte.gz": (
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "cf8536b0aa1a6ac5fa3f23001093305c"),
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        47040016,
    ),
    "train-labels-idx1-ubyte.gz": (
        ("25c81989df183df01b3e8a0aad5dffbe", "10bea18fdb374794d4bb42e356e600c9"),
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        60008,
    ),
    "t10k-images-idx3-ubyte.gz": (
        ("bef4ecab320f06d8554ea6380940ec79", "f78720b4224f21cce2f2ccf2d7a94c9a"),
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        7840016,
    ),
    "t10k-labels-idx1-ubyte.gz": (
        ("bb300cfdad3c16e7a12a480ee83cd310", "0d30e22e447f3c33dab9ed536400ac01"),
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        10008,
    ),
}
FMNIST_SYSTEM_DIR = Path(
    "/usr/share/datasets/fashion-mnist"
)  # Debian package dataset-fashion-mnist
FMNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@dataclass
class ArrayData:
    """Images and labels of one split held in memory."""

    X: np.ndarray  # uint8, N x C x H x W
    y: np.ndarray  # int64, N
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, idx: np.ndarray) -> ArrayData:
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
        raise RuntimeError(
            f"download of {url} failed ({e}); fetch it by hand into {dest.parent}"
        ) from None
    os.replace(tmp, dest)


def _missing_dir_error(what: str, root: Path, hint: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found at {root}. {hint}")


def load_cifar100(
    root: str | Path = "data/CIFAR100", download: bool = False
) -> tuple[ArrayData, ArrayData]:
    """CIFAR-100 train and test from `root/cifar-100-python/` (md5-checked before unpickling)."""
    from ...core.paths import repo_path

    root = repo_path(root)
    folder = root / "cifar-100-python"
    if not folder.is_dir():
        if not download:
            raise _missing_dir_error(
                "CIFAR-100 (cifar-100-python/)",
                folder,
                f"Put the extracted cifar-100-python folder in {root}, or pass download=True.",
            )
        tar = root / "cifar-100-python.tar.gz"
        if not tar.exists():
            _download(CIFAR100_URL, tar)
        check_digest(tar, CIFAR100_TAR_MD5)
        with tarfile.open(tar, "r:gz") as t:
            t.extractall(root, filter="data")
    parts = {}
    for name in ("train", "test", "meta"):
        path = folder / name
        if not path.exists():
            raise _missing_dir_error(
                f"CIFAR-100 file '{name}'", path, "The folder is incomplete; extract it again."
            )
        check_digest(path, CIFAR100_MD5[name])  # before unpickling: never open an unverified pickle
        parts[name] = _load_cifar_pickle(path)
    splits = [
        (
            np.asarray(parts[s]["data"], dtype=np.uint8).reshape(-1, 3, 32, 32),
            np.asarray(parts[s]["fine_labels"], dtype=np.int64),
        )
        for s in ("train", "test")
    ]
    classes = [str(c) for c in parts["meta"]["fine_label_names"]]
    return ArrayData(*splits[0], classes), ArrayData(*splits[1], classes)


class _PlainUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays only; any other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refused to load {module}.{name}: a CIFAR-100 pickle holds only arrays, "
            "lists and strings"
        )


def _load_cifar_pickle(path: Path) -> dict:
    """One verified CIFAR-100 pickle as a dict; anything but plain data is an error naming the file."""
    try:
        with open(path, "rb") as f:
            d = _PlainUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(
            f"{path} is not a CIFAR-100 python pickle ({e}); delete the cifar-100-python folder "
            "and extract the release again"
        ) from None
    if not isinstance(d, dict):
        raise TypeError(
            f"{path} holds a {type(d).__name__}, not the CIFAR-100 dict; extract the release again"
        )
    return d


def _gunzip_at_most(path: Path, limit: int) -> bytes:
    """Decompress a gzip file, refusing output beyond `limit` bytes; bad gzip is an error naming the file."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(limit + 1)
            if len(raw) > limit:
                raise ValueError(
                    f"{path} decompresses to more than the {limit:,} bytes of the Fashion-MNIST file "
                    "(a corrupt or hostile gzip); delete it and download it again"
                )
            f.read(1)  # reach the end-of-stream marker: a truncated file fails here
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise ValueError(
            f"{path} is not a complete gzip file ({e}); it is truncated or not gzip. Delete it and "
            "download it again (or reinstall dataset-fashion-mnist)"
        ) from None
    return raw


def _check_fmnist_file(path: Path) -> bytes:
    """Decompressed bytes of one Fashion-MNIST file; the compressed bytes are checked before decompressing."""
    gz_md5s, raw_sha, raw_size = FMNIST_FILES[path.name]
    known_copy = file_digest(path) in gz_md5s
    raw = _gunzip_at_most(path, raw_size)
    if not known_copy and hashlib.sha256(raw).hexdigest() != raw_sha:
        raise ValueError(
            f"checksum mismatch for {path}: neither the gz md5 nor the content sha256 match "
            "Fashion-MNIST. Delete the file and download it again."
        )
    return raw


def _parse_idx(raw: bytes) -> np.ndarray:
    """Parse IDX bytes (unsigned byte data) into an array of the stored shape."""
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_fashion_mnist(root: str | Path | None = None) -> Path:
    """The first directory holding the four Fashion-MNIST files: `root`, data/FashionMNIST, the system copy."""
    from ...core.paths import repo_path

    cands = [repo_path(root)] if root else [repo_path("data/FashionMNIST"), FMNIST_SYSTEM_DIR]
    for c in cands:
        if all((c / f).exists() for f in FMNIST_FILES):
            return c
    raise FileNotFoundError(
        f"Fashion-MNIST not found in {', '.join(map(str, cands))}. Install the Debian package "
        "dataset-fashion-mnist (apt-get install dataset-fashion-mnist), put the four *-ubyte.gz files "
        "in data/FashionMNIST, or call load_fashion_mnist(download=True)."
    )


def load_fashion_mnist(
    root: str | Path | None = None, download: bool = False
) -> tuple[ArrayData, ArrayData]:
    """Fashion-MNIST train (60,000) and test (10,000) as 1 x 28 x 28 uint8 images."""
    from ...core.paths import repo_path

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
        y = _parse_idx(_check_fmnist_file(folder / f"{split}-labels-idx1-ubyte.gz")).astype(
            np.int64
        )
        out.append(ArrayData(X[:, None].copy(), y, list(FMNIST_CLASSES)))
    return out[0], out[1]
