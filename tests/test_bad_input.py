"""Bad and hostile input (issue 15): one test per case, each checking that nothing unsafe or
silently wrong happens and that the error names the problem and the fix."""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
from dataclasses import asdict

import numpy as np
import pytest
import torch

from lib.data import sources


# -- code execution and escapes ------------------------------------------------------------------

class _RunsCode:
    """Unpickling this calls a function: what a crafted CIFAR `meta` did."""

    def __reduce__(self):
        return (os.remove, ("/nonexistent/path/of/the/test",))


def _fake_cifar(folder, meta_obj) -> None:
    """A cifar-100-python folder whose train/test are valid plain pickles and whose meta is `meta_obj`."""
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        d = {"data": np.zeros((2, 3072), np.uint8), "fine_labels": [0, 1]}
        (folder / split).write_bytes(pickle.dumps(d, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": meta_obj}, protocol=2))


def test_cifar_meta_is_checksummed_and_never_runs_code(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-100-python"
    _fake_cifar(folder, _RunsCode())
    calls = []
    monkeypatch.setattr(os, "remove", lambda *a: calls.append(a))
    # the published md5s: the crafted meta fails its checksum before anything is unpickled
    with pytest.raises(ValueError, match=r"checksum mismatch for .*train.*download it again"):
        sources.load_cifar100(tmp_path)
    md5 = {n: sources.file_digest(folder / n) for n in ("train", "test")}
    monkeypatch.setattr(sources, "CIFAR100_MD5", {**sources.CIFAR100_MD5, **md5})
    with pytest.raises(ValueError, match=r"checksum mismatch for .*meta.*download it again"):
        sources.load_cifar100(tmp_path)
    # even a file whose md5 is trusted is parsed by the plain-data unpickler: code is refused
    monkeypatch.setattr(sources, "CIFAR100_MD5", {**md5, "meta": sources.file_digest(folder / "meta")})
    with pytest.raises(ValueError, match=r"meta is not a CIFAR-100 python pickle \(refused to load .*remove.*"
                                         r"extract the release again"):
        sources.load_cifar100(tmp_path)
    assert not calls
    # a plain meta loads, names and all
    shutil.rmtree(folder)
    _fake_cifar(folder, ["apple", "bee"])
    monkeypatch.setattr(sources, "CIFAR100_MD5", {n: sources.file_digest(folder / n) for n in ("train", "test", "meta")})
    train, _ = sources.load_cifar100(tmp_path)
    assert train.classes == ["apple", "bee"] and train.X.shape == (2, 3, 32, 32)


def _png(path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)


def test_image_list_paths_cannot_leave_the_root(tmp_path):
    from lib.data import DecodedImages, read_image_list

    root, outside = tmp_path / "root", tmp_path / "secret"
    _png(root / "a" / "1.png")
    _png(outside / "x.png")
    (root / "a" / "link.png").symlink_to(outside / "x.png")
    (root / "a" / "same.png").symlink_to(root / "a" / "1.png")
    cases = {"../secret/x.png 0": "leaves the image root", "a/../../secret/x.png 0": "leaves the image root",
             f"{outside / 'x.png'} 0": "absolute path .*relative to the image root",
             "a/link.png 0": "outside the image root .*symlink.*remove the link"}
    for line, match in cases.items():
        (tmp_path / "l.txt").write_text(f"a/1.png 0\n{line}\n")
        with pytest.raises(ValueError, match=match) as e:
            read_image_list(tmp_path / "l.txt", root, 2)
        assert "l.txt:2" in str(e.value)
    # `a/./1.png` is `a/1.png`, and a link to a listed file is the same file
    for line, match in {"a/./1.png 1": r"duplicate path a/1.png \(a/./1.png is the same file\)",
                        "a/same.png 1": "same file as line 1.*remove the repeat"}.items():
        (tmp_path / "l.txt").write_text(f"a/1.png 0\n{line}\n")
        with pytest.raises(ValueError, match=match):
            read_image_list(tmp_path / "l.txt", root, 2)
    # without the file checks the link is still refused when the image is opened
    (tmp_path / "l.txt").write_text("a/1.png 0\na/link.png 1\n")
    items = read_image_list(tmp_path / "l.txt", root, 2, check_files=False)
    images = DecodedImages(items, size=8, workers=1)
    assert images[0].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="outside the image root"):
        images[1]


def test_profiles_are_names_not_paths(tmp_path, capsys):
    from lib import run as R

    for bad in ("../../x", "/etc/passwd", "a/b", ".hidden", ""):
        with pytest.raises(SystemExit, match=r"is not a profile name.*--profile-file"):
            R.main(["--profile", bad, "--only", "01_data"])
    # a profile file given explicitly is read, and its runs still go under runs/<its name>
    (tmp_path / "mine.yaml").write_text("01_data: {}\n")
    assert R.profile_source(None, str(tmp_path / "mine.yaml")) == ("mine", tmp_path / "mine.yaml")
    with pytest.raises(SystemExit, match="not both"):
        R.main(["--profile", "smoke", "--profile-file", str(tmp_path / "mine.yaml")])
    (tmp_path / "b a d.yaml").write_text("01_data: {}\n")
    with pytest.raises(SystemExit, match="pass --out"):
        R.output_dir("b a d", None)


def test_gzip_is_checked_before_it_is_decompressed(tmp_path, monkeypatch):
    folder = tmp_path / "fm"
    folder.mkdir()
    name = "t10k-labels-idx1-ubyte.gz"
    # a bomb: small on disk, far larger than the real file once decompressed
    (folder / name).write_bytes(gzip.compress(b"\0" * (1 << 24)))
    read = []
    real_read = gzip.GzipFile.read
    monkeypatch.setattr(gzip.GzipFile, "read", lambda self, n=-1: read.append(n) or real_read(self, n))
    with pytest.raises(ValueError, match=rf"{name} decompresses to more than the 10,008 bytes.*download it again"):
        sources._check_fmnist_file(folder / name)
    assert read and all(0 <= n <= 10_009 for n in read)  # never an unbounded read
    (folder / name).write_bytes(gzip.compress(b"\0" * 5000)[:-12])  # truncated
    with pytest.raises(ValueError, match=rf"{name} is not a complete gzip file.*truncated or not gzip"):
        sources._check_fmnist_file(folder / name)
    (folder / name).write_bytes(b"plain text, not gzip")
    with pytest.raises(ValueError, match=rf"{name} is not a complete gzip file.*download it again"):
        sources._check_fmnist_file(folder / name)


# -- silent wrong results ------------------------------------------------------------------------

def test_train_overrides_are_parsed_by_the_fields_type():
    from lib.train import TrainConfig, config_for
    from lib.train.__main__ import parse_settings

    s = parse_settings(["flip=false", "nesterov=false", "reduced=false", "milestones=80,90", "lr=1e-3",
                        "method='prl'", "balpoe_taus=None", "run_dir=runs/x"])
    assert s == {"flip": False, "nesterov": False, "reduced": False, "milestones": [80, 90], "lr": 0.001,
                 "method": "prl", "balpoe_taus": None, "run_dir": "runs/x"}
    cfg = config_for("fashion_mnist", **{k: v for k, v in s.items() if k != "run_dir"})
    assert (cfg.flip, cfg.nesterov, cfg.reduced) == (False, False, False)
    for arg, match in {"flip=maybe": r"flip='maybe' does not parse as bool.*flip=false",
                       "epochs=ten": r"epochs='ten' does not parse as int.*epochs=10",
                       "epochs=1.5": "does not parse as int", "lr=nan": "not a finite number",
                       "milestones=[80, 9.5]": "does not parse as list",
                       "epoch=3": "unknown setting 'epoch'; known: .*epochs"}.items():
        with pytest.raises(SystemExit, match=match):
            parse_settings([arg])
    # a string where a bool belongs is refused in code too, not taken as truthy
    with pytest.raises(TypeError, match=r"flip='false' is str, but flip is a bool"):
        config_for("fashion_mnist", flip="false")
    with pytest.raises(TypeError, match="epochs=True is bool, but epochs is a int"):
        config_for("fashion_mnist", epochs=True)
    assert TrainConfig().flip is True


def test_non_finite_checkpoint_is_refused_on_load(tmp_path):
    from lib.models import ModelConfig, build_model
    from lib.train import fit, load_model, save_checkpoint
    from lib.train.loop import TrainConfig, TrainData

    cfg = TrainConfig(method="softmax", epochs=1, batch_size=4, progress=False, device="cpu", eval_per_class=1)
    model = build_model(ModelConfig(num_classes=2, num_experts=1, in_channels=1))
    state = model.state_dict()
    state[next(iter(state))].fill_(float("nan"))
    save_checkpoint(tmp_path / "checkpoints" / "last.pt",
                    {"model_config": asdict(model.cfg), "train_config": asdict(cfg), "meta": {}, "model": state,
                     "optimizer": {}, "scaler": {}, "epoch": 1, "history": []})
    ck = tmp_path / "checkpoints" / "last.pt"
    with pytest.raises(ValueError, match=rf"checkpoint {ck} holds non-finite .*NaN or inf.*Delete it and retrain"):
        load_model(ck)
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 255, (8, 1, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.tensor([0, 1] * 4)
    data = TrainData(X, y, X, y, np.array([0.5, 0.5]), np.array(["many", "few"]), (0.5,), (0.5,))
    # resuming names the file, not a learning-rate problem
    with pytest.raises(ValueError, match=rf"checkpoint {ck} holds non-finite") as e:
        fit(cfg, tmp_path, data=data)
    assert "lower lr or set grad_clip" not in str(e.value)
