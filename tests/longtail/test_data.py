"""lib.longtail.data: the published long-tail protocol sizes, seeded selection, lists, sources and augmentation."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

import lib.longtail.data as D
from lib.longtail.data import sources

# -- long-tailed counts (docs/long_tail.md, sections 1-2) -----------------------------------------


@pytest.mark.parametrize("ir,total", [(100, 10847), (50, 12608), (10, 19573)])
def test_cifar100_lt_totals(ir, total):
    assert D.build_longtail_counts(500, 100, ir).sum() == total


def test_cifar100_lt_ir100_shot_groups_are_35_35_30():
    g = D.shot_groups(D.build_longtail_counts(500, 100, 100))
    assert [(g == k).sum() for k in ("many", "medium", "few")] == [35, 35, 30]


def test_fashion_mnist_lt_counts_and_groups():
    c = D.build_longtail_counts(600, 10, 100)
    assert c.tolist() == [600, 359, 215, 129, 77, 46, 27, 16, 10, 6] and c.sum() == 1485
    g = D.shot_groups(c)
    assert [(g == k).sum() for k in ("many", "medium", "few")] == [4, 3, 3]


@pytest.mark.parametrize(
    "k,cifar,fmnist",
    [(2, 7166, 7241), (5, 4932, 5081), (10, 3876, 4084), (25, 2956, 3229), (50, 2486, 2795)],
)
def test_agnostic_totals_forward_and_backward(k, cifar, fmnist):
    for kind in ("forward", "backward"):
        assert D.agnostic_counts(f"{kind}{k}", 100, 100).sum() == cifar
        assert D.agnostic_counts(f"{kind}{k}", 1000, 10).sum() == fmnist


def test_backward_reverses_the_class_order():
    f, b = D.agnostic_counts("forward10", 100, 100), D.agnostic_counts("backward10", 100, 100)
    assert np.array_equal(f, b[::-1]) and b[0] < b[-1]


def test_imagelist_floor_rule_published_sizes():
    assert D.floor_counts(50, 1000, 50).sum() == 12058  # ImageNet-LT forward50
    assert D.floor_counts(100, 365, 50).sum() == 8989  # Places-LT forward50
    assert D.floor_counts(50, 1000, 50, backward=True).sum() == 12058


def test_selection_is_seeded_per_class_shuffle_first_n():
    rng = np.random.default_rng(1)
    y = rng.permutation(np.repeat(np.arange(5), 40))
    counts = np.array([30, 20, 10, 5, 1])
    a = D.select_per_class(y, counts, seed=0)
    assert np.array_equal(a, D.select_per_class(y, counts, seed=0))
    assert not np.array_equal(a, D.select_per_class(y, counts, seed=1))
    assert np.bincount(y[a], minlength=5).tolist() == counts.tolist()
    # the published generator: np.random.seed(0), then per class shuffle and keep the first n
    np.random.seed(0)
    ref = []
    for c, n in enumerate(counts):
        idx = np.where(y == c)[0]
        np.random.shuffle(idx)
        ref.append(idx[:n])
    assert np.array_equal(a, np.concatenate(ref))


def test_selection_asks_for_more_than_available_is_an_error():
    with pytest.raises(ValueError, match="class 0 has 3 items but 5"):
        D.select_per_class(np.array([0, 0, 0]), np.array([5]))


def test_imb_ratio_below_one_is_an_error():
    with pytest.raises(ValueError, match="imb_ratio must be >= 1"):
        D.build_longtail_counts(500, 100, 0.5)


def test_unknown_dataset_and_distribution_names():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*fashion_mnist"):
        D.array_spec("mnist")
    with pytest.raises(ValueError, match="unknown test distribution 'sideways5'"):
        D.parse_distribution("sideways5")


def test_imagelist_agnostic_ranks_classes_by_training_frequency():
    train = np.repeat([2, 0, 1], [50, 30, 10])  # class 2 is the most frequent
    test = np.repeat([0, 1, 2], 10)
    idx = D.imagelist_agnostic_indices(train, test, 3, n_max=10, ks=(5,))
    fwd = np.bincount(test[idx["forward5"]], minlength=3)
    assert fwd[2] == 10 and fwd[1] == 2  # head of training gets n_max, tail floor(10/5)
    bwd = np.bincount(test[idx["backward5"]], minlength=3)
    assert bwd[1] == 10 and bwd[2] == 2
    assert len(idx["uniform"]) == 30


def test_agnostic_indices_need_a_balanced_test_set():
    with pytest.raises(ValueError, match="balanced"):
        D.agnostic_indices(np.array([0, 0, 1]), 2)


# -- Fashion-MNIST (real data from the Debian package) -------------------------------------------

needs_fmnist = pytest.mark.skipif(
    not (sources.FMNIST_SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="apt-get install dataset-fashion-mnist",
)


@needs_fmnist
def test_fashion_mnist_longtail_data_end_to_end():
    d = D.build_longtail_data("fashion_mnist", imb_ratio=100)
    assert d.train.X.shape == (1485, 1, 28, 28) and d.train.X.dtype == np.uint8
    assert d.train_counts.tolist() == [600, 359, 215, 129, 77, 46, 27, 16, 10, 6]
    sizes = {k: len(v) for k, v in d.test_sets.items()}
    assert sizes == {
        "forward50": 2795,
        "forward25": 3229,
        "forward10": 4084,
        "forward5": 5081,
        "forward2": 7241,
        "uniform": 10000,
        "backward2": 7241,
        "backward5": 5081,
        "backward10": 4084,
        "backward25": 3229,
        "backward50": 2795,
    }
    assert abs(d.prior.sum() - 1) < 1e-12
    assert np.bincount(d.test_subset("backward50").y, minlength=10)[9] == 1000
    with pytest.raises(ValueError, match="unknown test distribution"):
        d.test_subset("forward7")


@needs_fmnist
def test_held_out_split_never_touches_the_training_images():
    d = D.build_longtail_data("fashion_mnist", imb_ratio=100, val_per_class=500)
    assert np.bincount(d.val.y, minlength=10).tolist() == [500] * 10
    train_full, _ = sources.load_fashion_mnist()
    assert not set(D.heldout_per_class(train_full.y, d.train_idx, 500).tolist()) & set(
        d.train_idx.tolist()
    )
    assert D.build_longtail_data("fashion_mnist", imb_ratio=100).val is None


def test_held_out_split_is_balanced_only_where_images_are_left():
    y = np.repeat([0, 1, 2], 10)
    used = np.concatenate([np.arange(10), np.arange(10, 14)])  # class 0 fully used, class 1 partly
    held = D.heldout_per_class(y, used, per_class=8, seed=3)
    assert np.bincount(y[held], minlength=3).tolist() == [0, 6, 8]
    assert not set(held.tolist()) & set(used.tolist())
    assert np.array_equal(held, D.heldout_per_class(y, used, per_class=8, seed=3))
    with pytest.raises(ValueError, match="per_class"):
        D.heldout_per_class(y, used, per_class=-1)


def _fake_fmnist(folder, corrupt=False):
    folder.mkdir(parents=True, exist_ok=True)
    for name in sources.FMNIST_FILES:
        data = (
            (sources.FMNIST_SYSTEM_DIR / name).read_bytes()
            if not corrupt
            else gzip.compress(b"\0" * 64)
        )
        (folder / name).write_bytes(data)


def test_fashion_mnist_missing_directory_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        D.load_fashion_mnist(tmp_path / "nothing")


def test_fashion_mnist_checksum_mismatch(tmp_path):
    _fake_fmnist(tmp_path, corrupt=True)
    with pytest.raises(ValueError, match="checksum mismatch"):
        D.load_fashion_mnist(tmp_path)


# -- CIFAR-100: md5 checked before unpickling ------------------------------------------------------


def test_cifar100_missing_directory_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-100-python.*download=True"):
        D.load_cifar100(tmp_path)


def test_cifar100_tampered_pickle_is_never_unpickled(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / split).write_bytes(pickle.dumps({"data": [], "fine_labels": []}))
    loaded = []
    monkeypatch.setattr(pickle, "load", lambda *a, **k: loaded.append(1))
    with pytest.raises(ValueError, match="checksum mismatch.*train"):
        D.load_cifar100(tmp_path)
    assert not loaded


# -- image lists ---------------------------------------------------------------------------------


def _make_list(tmp_path, lines, files=("a/1.png", "a/2.png", "b/3.png")):
    from PIL import Image

    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / f)
    txt = tmp_path / "list.txt"
    txt.write_text("\n".join(lines) + "\n")
    return txt


def test_read_image_list_and_lazy_decode(tmp_path):
    txt = _make_list(tmp_path, ["a/1.png 0", "a/2.png 0", "b/3.png 1"])
    items = D.read_image_list(txt, tmp_path, num_classes=2)
    assert len(items) == 3 and items.labels.tolist() == [0, 0, 1]
    img, label = D.ImageListDataset(items)[2]
    assert img.size == (5, 4) and img.mode == "RGB" and label == 1


@pytest.mark.parametrize(
    "line,match",
    [
        ("a/1.png", "malformed line"),
        ("a/1.png zero", "malformed line"),
        ("a/1.png 7", "label 7 out of range 0..1"),
        ("a/9.png 0", "does not exist"),
    ],
)
def test_bad_image_list_lines(tmp_path, line, match):
    txt = _make_list(tmp_path, ["a/2.png 0", line])
    with pytest.raises((ValueError, FileNotFoundError), match=match) as e:
        D.read_image_list(txt, tmp_path, num_classes=2)
    assert "list.txt:2" in str(e.value)


def test_duplicate_path_and_empty_list(tmp_path):
    txt = _make_list(tmp_path, ["a/1.png 0", "a/1.png 0"])
    with pytest.raises(ValueError, match="duplicate path a/1.png"):
        D.read_image_list(txt, tmp_path, num_classes=2)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no entries"):
        D.read_image_list(tmp_path / "empty.txt", tmp_path, num_classes=2)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        D.read_image_list(txt, tmp_path / "missing_root", num_classes=2)


def _png_header(path, width: int, height: int) -> None:
    """A PNG whose header says width x height (an image Pillow opens, never decoded here)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    idat = zlib.compress(b"\0" * 64)  # far less than the header promises: only the size is read
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat))


@pytest.mark.parametrize("label", ["--1", "\u00b2", "\u0663", "+1", "1_0", "\uff11"])
def test_labels_must_be_ascii_decimal_integers(tmp_path, label):
    # '²' and the Arabic-Indic '٣' pass str.isdigit, and int('٣') is 3: refused, not class 3
    txt = _make_list(tmp_path, ["a/2.png 0", f"a/1.png {label}"])
    with pytest.raises(
        ValueError, match=r"list.txt:2: malformed line .*ASCII digits 0-9.*such as 3"
    ):
        D.read_image_list(txt, tmp_path, num_classes=4)


def test_list_encoding_bom_and_latin1_names(tmp_path):
    txt = _make_list(tmp_path, [])
    txt.write_bytes(b"\xef\xbb\xbfa/1.png 0\r\nb/3.png 1\r\n")  # a Windows editor's UTF-8
    items = D.read_image_list(txt, tmp_path, num_classes=2)
    assert items.paths == ["a/1.png", "b/3.png"] and items.labels.tolist() == [0, 1]
    txt.write_bytes("a/1.png 0\nb/caf\u00e9.png 1\n".encode("latin-1"))
    with pytest.raises(
        ValueError,
        match=r"list.txt:2: not UTF-8 text \(byte 0xe9 at column 6.*save the list as UTF-8",
    ):
        D.read_image_list(txt, tmp_path, num_classes=2)
    (tmp_path / "b" / "caf\u00e9.png").write_bytes((tmp_path / "b" / "3.png").read_bytes())
    txt.write_text("b/caf\u00e9.png 1\n", encoding="utf-8")  # a UTF-8 name reads as before
    assert D.read_image_list(txt, tmp_path, num_classes=2).paths == ["b/caf\u00e9.png"]


def test_listed_files_must_open_as_images_under_the_pixel_limit(tmp_path, monkeypatch):
    from PIL import Image

    txt = _make_list(tmp_path, [])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image\n")
    _png_header(tmp_path / "huge.png", 20_000, 20_000)  # 400 M pixels in 100 bytes
    _png_header(tmp_path / "big.png", 10_000, 10_000)  # over the limit, under Pillow's error
    cases = {
        "empty.png": r"empty.png is not an image Pillow can read \(an empty file\).*remove the line",
        "text.png": r"text.png is not an image Pillow can read \(Unidentified.*remove the line",
        "huge.png": r"huge.png is over Pillow's pixel limit.*shrink the image or remove the line",
        "big.png": r"big.png is 10000 x 10000 = 100,000,000 pixels, over the limit of 89,478,485 "
        r"\(max_pixels\).*pass a larger max_pixels",
    }
    Image.init()  # plugins build prototype images on import: not what is counted below
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self))
    for name, match in cases.items():
        txt.write_text(f"a/1.png 0\n{name} 1\n")
        with pytest.raises(ValueError, match=match) as e:
            D.read_image_list(txt, tmp_path, num_classes=2)
        assert "list.txt:2" in str(e.value)
    assert not loads  # headers only: nothing was decoded
    monkeypatch.undo()
    assert D.MAX_PIXELS == Image.MAX_IMAGE_PIXELS  # the documented default is Pillow's threshold
    txt.write_text("a/1.png 0\n")  # a 5 x 4 image: over a limit of 10, under the default
    with pytest.raises(ValueError, match="5 x 4 = 20 pixels, over the limit of 10"):
        D.read_image_list(txt, tmp_path, num_classes=2, max_pixels=10)
    assert len(D.read_image_list(txt, tmp_path, num_classes=2)) == 1


def test_writing_a_list_never_clobbers_a_different_file(tmp_path):
    txt = _make_list(tmp_path, ["a/1.png 0", "b/3.png 1"])
    items = D.read_image_list(txt, tmp_path, 2)
    out = tmp_path / "out.txt"
    assert D.write_image_list(items, out) == "written"
    assert D.write_image_list(items, out) == "unchanged"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        D.write_image_list(items.subset(np.array([0])), out)
    assert out.read_text() == "a/1.png 0\nb/3.png 1\n"


# -- batched augmentation -------------------------------------------------------------------------


def test_crop_and_flip_are_exact_pixel_moves():
    X = torch.rand(64, 1, 28, 28)
    out = D.augment_batch(
        X, D.AugmentConfig(pad=4, flip=True, rotation=0), torch.Generator().manual_seed(0)
    )
    assert out.shape == X.shape
    # every output image is its input shifted by at most 4 pixels and maybe mirrored, zeros elsewhere
    for i in range(8):
        found = False
        for flip in (False, True):
            src = X[i, 0].flip(-1) if flip else X[i, 0]
            padded = torch.nn.functional.pad(src, (4, 4, 4, 4))
            for dy in range(9):
                for dx in range(9):
                    if torch.equal(padded[dy : dy + 28, dx : dx + 28], out[i, 0]):
                        found = True
        assert found, f"image {i} is not a padded crop / flip of its input"


def test_nearest_rotation_keeps_the_pixel_values():
    """rotation_mode nearest, as torchvision's RandomRotation: every output pixel is an input pixel or 0."""
    X = torch.randint(1, 255, (16, 1, 28, 28)).float() / 255
    g = torch.Generator().manual_seed(0)
    near = D.augment_batch(X, D.AugmentConfig(rotation=15, rotation_mode="nearest"), g)
    for i in range(16):
        assert set(near[i].unique().tolist()) <= set(X[i].unique().tolist()) | {0.0}
    smooth = D.augment_batch(X, D.AugmentConfig(rotation=15), torch.Generator().manual_seed(0))
    assert not set(smooth[0].unique().tolist()) <= set(X[0].unique().tolist()) | {0.0}
    with pytest.raises(ValueError, match="unknown rotation_mode 'bicubic'"):
        D.augment_batch(X, D.AugmentConfig(rotation_mode="bicubic"))


def test_augmentation_is_random_per_image_and_seeded():
    X = torch.rand(32, 3, 32, 32)
    cfg = D.AugmentConfig()
    a = D.augment_batch(X, cfg, torch.Generator().manual_seed(3))
    b = D.augment_batch(X, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.allclose(a, X)
    with pytest.raises(ValueError, match="N x C x H x W"):
        D.augment_batch(X[0], cfg)


def test_normalize_per_channel():
    X = torch.full((2, 3, 4, 4), 0.5)
    out = D.normalize(X, (0.5, 0.25, 0.0), (1.0, 0.25, 0.5))
    assert torch.allclose(out[:, 0], torch.zeros(1)) and torch.allclose(out[:, 1], torch.ones(1))
    assert torch.allclose(out[:, 2], torch.ones(1))


def test_cifar100_tarball_checksum_checked_before_extracting(tmp_path):
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"not the CIFAR-100 release")
    with pytest.raises(ValueError, match="checksum mismatch.*cifar-100-python.tar.gz"):
        D.load_cifar100(tmp_path, download=True)  # the file exists, so nothing is downloaded
    assert not (tmp_path / "cifar-100-python").exists()


@needs_fmnist
def test_fashion_mnist_download_path_verifies_what_it_fetched(tmp_path, monkeypatch):
    # a local file:// mirror stands in for the network; the same checks apply
    monkeypatch.setattr(sources, "FMNIST_URL", sources.FMNIST_SYSTEM_DIR.as_uri() + "/")
    train, test = D.load_fashion_mnist(tmp_path / "fm", download=True)
    assert train.X.shape == (60000, 1, 28, 28) and np.bincount(test.y).tolist() == [1000] * 10
    assert sorted(p.name for p in (tmp_path / "fm").iterdir()) == sorted(sources.FMNIST_FILES)
