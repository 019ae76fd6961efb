"""Bad and hostile input (docs/safety.md): one test per case, each checking that nothing unsafe or
silently wrong happens and that the error names the problem and the fix."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.longtail.data import sources

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
    monkeypatch.setattr(
        sources, "CIFAR100_MD5", {**md5, "meta": sources.file_digest(folder / "meta")}
    )
    with pytest.raises(
        ValueError,
        match=r"meta is not a CIFAR-100 python pickle \(refused to load .*remove.*"
        r"extract the release again",
    ):
        sources.load_cifar100(tmp_path)
    assert not calls
    # a plain meta loads, names and all
    shutil.rmtree(folder)
    _fake_cifar(folder, ["apple", "bee"])
    monkeypatch.setattr(
        sources,
        "CIFAR100_MD5",
        {n: sources.file_digest(folder / n) for n in ("train", "test", "meta")},
    )
    train, _ = sources.load_cifar100(tmp_path)
    assert train.classes == ["apple", "bee"] and train.X.shape == (2, 3, 32, 32)


def _png(path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)


def test_image_list_paths_cannot_leave_the_root(tmp_path):
    from lib.longtail.data import DecodedImages, read_image_list

    root, outside = tmp_path / "root", tmp_path / "secret"
    _png(root / "a" / "1.png")
    _png(outside / "x.png")
    (root / "a" / "link.png").symlink_to(outside / "x.png")
    (root / "a" / "same.png").symlink_to(root / "a" / "1.png")
    cases = {
        "../secret/x.png 0": "leaves the image root",
        "a/../../secret/x.png 0": "leaves the image root",
        f"{outside / 'x.png'} 0": "absolute path .*relative to the image root",
        "a/link.png 0": "outside the image root .*symlink.*remove the link",
    }
    for line, match in cases.items():
        (tmp_path / "l.txt").write_text(f"a/1.png 0\n{line}\n")
        with pytest.raises(ValueError, match=match) as e:
            read_image_list(tmp_path / "l.txt", root, 2)
        assert "l.txt:2" in str(e.value)
    # `a/./1.png` is `a/1.png`, and a link to a listed file is the same file
    for line, match in {
        "a/./1.png 1": r"duplicate path a/1.png \(a/./1.png is the same file\)",
        "a/same.png 1": "same file as line 1.*remove the repeat",
    }.items():
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


def test_profiles_are_names_not_paths(tmp_path):
    from lib import run as R

    for bad in ("../../x", "/etc/passwd", "a/b", ".hidden", "x/../../y"):
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
    monkeypatch.setattr(
        gzip.GzipFile, "read", lambda self, n=-1: read.append(n) or real_read(self, n)
    )
    with pytest.raises(
        ValueError, match=rf"{name} decompresses to more than the 10,008 bytes.*download it again"
    ):
        sources._check_fmnist_file(folder / name)
    assert read and all(0 <= n <= 10_009 for n in read)  # never an unbounded read
    (folder / name).write_bytes(gzip.compress(b"\0" * 5000)[:-12])  # truncated
    with pytest.raises(
        ValueError, match=rf"{name} is not a complete gzip file.*truncated or not gzip"
    ):
        sources._check_fmnist_file(folder / name)
    (folder / name).write_bytes(b"plain text, not gzip")
    with pytest.raises(ValueError, match=rf"{name} is not a complete gzip file.*download it again"):
        sources._check_fmnist_file(folder / name)


# -- silent wrong results ------------------------------------------------------------------------


def test_train_overrides_are_parsed_by_the_fields_type():
    from lib.longtail.train import TrainConfig, config_for
    from lib.longtail.train.__main__ import parse_settings

    s = parse_settings(
        [
            "flip=false",
            "nesterov=false",
            "reduced=false",
            "milestones=80,90",
            "lr=1e-3",
            "method='prl'",
            "balpoe_taus=None",
            "run_dir=runs/x",
        ]
    )
    assert s == {
        "flip": False,
        "nesterov": False,
        "reduced": False,
        "milestones": [80, 90],
        "lr": 0.001,
        "method": "prl",
        "balpoe_taus": None,
        "run_dir": "runs/x",
    }
    cfg = config_for("fashion_mnist", **{k: v for k, v in s.items() if k != "run_dir"})
    assert (cfg.flip, cfg.nesterov, cfg.reduced) == (False, False, False)
    for arg, match in {
        "flip=maybe": r"flip='maybe' does not parse as bool.*flip=false",
        "epochs=ten": r"epochs='ten' does not parse as int.*epochs=10",
        "epochs=1.5": "does not parse as int",
        "lr=nan": "not a finite number",
        "milestones=[80, 9.5]": "does not parse as list",
        "epoch=3": "unknown setting 'epoch'; known: .*epochs",
    }.items():
        with pytest.raises(SystemExit, match=match):
            parse_settings([arg])
    # a string where a bool belongs is refused in code too, not taken as truthy
    with pytest.raises(TypeError, match=r"flip='false' is str, but flip is a bool"):
        config_for("fashion_mnist", flip="false")
    with pytest.raises(TypeError, match="epochs=True is bool, but epochs is a int"):
        config_for("fashion_mnist", epochs=True)
    assert TrainConfig().flip is True


@pytest.mark.slow  # about 2-10 s on 2 cores: left out of make test-fast
def test_non_finite_checkpoint_is_refused_on_load(tmp_path):
    from lib.longtail.models import ModelConfig, build_model
    from lib.longtail.train import fit, load_model, save_checkpoint
    from lib.longtail.train.loop import TrainConfig, TrainData

    cfg = TrainConfig(
        method="softmax", epochs=1, batch_size=4, progress=False, device="cpu", eval_per_class=1
    )
    model = build_model(ModelConfig(num_classes=2, num_experts=1, in_channels=1))
    state = model.state_dict()
    state[next(iter(state))].fill_(float("nan"))
    save_checkpoint(
        tmp_path / "checkpoints" / "last.pt",
        {
            "model_config": asdict(model.cfg),
            "train_config": asdict(cfg),
            "meta": {},
            "model": state,
            "optimizer": {},
            "scaler": {},
            "epoch": 1,
            "history": [],
        },
    )
    ck = tmp_path / "checkpoints" / "last.pt"
    with pytest.raises(
        ValueError, match=rf"checkpoint {ck} holds non-finite .*NaN or inf.*Delete it and retrain"
    ):
        load_model(ck)
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 255, (8, 1, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.tensor([0, 1] * 4)
    data = TrainData(X, y, X, y, np.array([0.5, 0.5]), np.array(["many", "few"]), (0.5,), (0.5,))
    # resuming names the file, not a learning-rate problem
    with pytest.raises(ValueError, match=rf"checkpoint {ck} holds non-finite") as e:
        fit(cfg, tmp_path, data=data)
    assert "lower lr or set grad_clip" not in str(e.value)


def test_profile_values_are_type_checked_and_bad_yaml_names_the_file(tmp_path):
    from lib.run import load_profile

    def profile(text: str) -> dict:
        (tmp_path / "p.yaml").write_text(text)
        return load_profile("p", profile_dir=tmp_path)

    cases = {
        '06_em_subgroup:\n  n_subjects: "many"\n': r"p.yaml: notebook 06_em_subgroup: n_subjects = 'many' is str, but the notebook declares "
        r"n_subjects: int; give a whole number",
        "06_em_subgroup:\n  n_subjects: true\n": "n_subjects = True is bool.*give a whole number",
        "03_training:\n  flip: 'false'\n": r"flip = 'false' is str.*flip: bool \| None; give true or false",
        "03_training:\n  lr: 1e-3\n": r"lr = '1e-3' is str.*YAML reads 1e-3 as text: write it with a decimal",
        "03_training:\n  milestones: 80\n": "milestones = 80 is int.*give a list such as",
        "01_data:\n  imb_ratios: [100, 50\n": r"p.yaml: not valid YAML at line \d+, column \d+ .*fix the syntax",
        "01_data:\n  run_dir: elsewhere\n": "sets run_dir.*remove run_dir from the profile",
        "01_data: [1, 2]\n": "01_data must map parameter names to values",
    }
    for text, match in cases.items():
        with pytest.raises(SystemExit, match=match):
            profile(text)
    ok = profile("03_training:\n  lr: 1\n  flip: false\n  milestones: [3, 4]\n")["03_training"]
    assert ok == {"lr": 1.0, "flip": False, "milestones": [3, 4]} and isinstance(ok["lr"], float)


def _toy_notebook(nb_dir, name: str) -> None:
    """A notebook that opens a run, writes a table, then fails when its `fail` parameter says so."""
    import json

    cells = [
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "outputs": [],
            "execution_count": None,
            "source": "fail: bool = False  # stop part-way\nrun_dir: str = 'x'  # out\n",
        },
        {
            "cell_type": "code",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": "import pandas as pd\nfrom lib.core.runs import start_run\n"
            f"run = start_run({name!r}, globals(), nb_dir='.')\n"
            "run.table(pd.DataFrame({'fail': [fail]}), 'result')\n"
            "if fail:\n    raise ValueError('boom')\nrun.finish()\n",
        },
    ]
    nb = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "workbook", "display_name": "workbook", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    nb_dir.mkdir(exist_ok=True)
    (nb_dir / f"{name}.ipynb").write_text(json.dumps(nb))


@pytest.mark.slow  # about 2-10 s on 2 cores: left out of make test-fast
def test_reruns_never_overwrite_and_latest_moves_only_on_success(tmp_path):
    import json

    from lib.core.runs import run_dirs
    from lib.run import run_notebook

    nb_dir, runs = tmp_path / "nbs", tmp_path / "runs"
    _toy_notebook(nb_dir, "01_toy")
    run_notebook("01_toy", {}, runs, nb_dir=nb_dir)
    link = runs / "01_toy"
    first = link.resolve()
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))  # relative: the tree can move
    assert json.loads((link / "run.json").read_text())["status"] == "complete"
    assert (link / "01_toy.ipynb").is_file()  # the executed copy lives in its run's folder
    (link / "tables" / "result.csv").write_text("the user's edit\n")
    with pytest.raises(
        RuntimeError,
        match=r"(?s)notebook 01_toy failed.*ValueError: boom.*still points at the last run",
    ):
        run_notebook("01_toy", {"fail": True}, runs, nb_dir=nb_dir)
    failed = [d for d in run_dirs(runs, "01_toy") if d != first]
    assert len(failed) == 1
    rec = json.loads((failed[0] / "run.json").read_text())
    assert rec["status"] == "failed" and "boom" in rec["error"]
    assert (
        link.resolve() == first
        and (link / "tables" / "result.csv").read_text() == "the user's edit\n"
    )
    # a run that succeeds moves the link; with overwrite the older runs go, only after the success
    run_notebook("01_toy", {}, runs, nb_dir=nb_dir, overwrite=True)
    assert run_dirs(runs, "01_toy") == [link.resolve()] and link.resolve() != first
    shutil.move(runs, tmp_path / "moved")
    assert (tmp_path / "moved" / "01_toy" / "run.json").is_file()


def test_runs_layout_keeps_old_folders_and_resumes_from_the_previous_run(tmp_path):
    from lib.core.paths import NOTEBOOKS
    from lib.core.runs import run_dirs, start_run
    from lib.core.settings import notebook_parameters

    ns = {**notebook_parameters(NOTEBOOKS / "03_training.ipynb"), "run_dir": str(tmp_path)}
    legacy = tmp_path / "03_training"
    (legacy / "checkpoints").mkdir(parents=True)
    (legacy / "checkpoints" / "last.pt").write_bytes(b"from before run ids")
    run = start_run("03_training", ns)  # the old real folder is renamed to a run folder, not reused
    assert not legacy.exists() and len(run_dirs(tmp_path, "03_training")) == 2
    assert run.previous("checkpoints/last.pt").read_bytes() == b"from before run ids"
    assert run.previous("metrics.csv") is None
    run.finish()
    assert legacy.is_symlink() and legacy.resolve() == run.dir.resolve()


def test_notebook_04_refuses_checkpoints_trained_on_different_data(tmp_path):
    from lib.longtail.evaluate.load import check_same_data, evaluation_data
    from lib.longtail.models import ModelConfig, build_model
    from lib.longtail.train import save_checkpoint

    def ckpt(name: str, imb_ratio: float) -> object:
        model = build_model(ModelConfig(num_classes=10, num_experts=1, in_channels=1))
        meta = {"dataset": "fashion_mnist", "imb_ratio": imb_ratio, "num_classes": 10}
        return save_checkpoint(
            tmp_path / name,
            {"model_config": asdict(model.cfg), "meta": meta, "train_config": {"n_max": 0}},
        )

    a, b, c = ckpt("a.pt", 100.0), ckpt("b.pt", 10.0), ckpt("c.pt", 100.0)
    with pytest.raises(
        ValueError,
        match=r"a.pt and .*b.pt were trained on different data \(imb_ratio 100.0 vs "
        r"10.0\).*training images.*separate runs",
    ):
        evaluation_data([a, c, b], val_per_class=100)
    assert check_same_data([a, c])["meta"]["imb_ratio"] == 100.0


def test_slider_and_bank_inputs_are_validated_like_the_models(tmp_path):
    import torch.nn.functional as F

    from lib.longtail.evaluate.bank import FeatureBank
    from lib.longtail.evaluate.sliders import normalize_pref
    from lib.longtail.models import ModelConfig, build_model

    for bad in ([float("nan"), 1, 1], [-0.5, 1, 1], [float("inf"), 0, 0]):
        with pytest.raises(
            ValueError, match="slider values .* must be finite numbers >= 0.*set each slider"
        ):
            normalize_pref(bad)
    assert torch.allclose(normalize_pref([1, 1, 2]), torch.tensor([0.25, 0.25, 0.5]))
    model = build_model(
        ModelConfig(num_classes=4, num_experts=3, in_channels=1, hypernet=True)
    ).eval()
    bank = FeatureBank(
        model, F.normalize(torch.randn(3, 6, model.feat_dim), dim=-1), np.arange(6) % 4
    )
    for bad in ([float("nan"), 0.5, 0.5], [-1.0, 1.0, 1.0], [0.2, 0.2, 0.2]):
        with pytest.raises(
            ValueError, match="expert weights .*(non-finite|sums to).*(sum to one|divide it)"
        ):
            bank.scores(None, weights=bad)
        with pytest.raises(ValueError, match="preference vector"):
            bank.scores(bad)
    assert torch.isfinite(bank.scores(None, weights=[0.5, 0.25, 0.25])).all()


def test_em_refuses_text_times_and_a_constant_response():
    import pandas as pd

    from lib.em.panel import from_long

    rows = [
        {"id": i, "t": t, "y": float(i + t * (i % 3)), "w": float(t)}
        for i in range(8)
        for t in (1, 2, 10)
    ]
    df = pd.DataFrame(rows)
    text = df.assign(t=df.t.astype(str))  # '10' sorts before '2' as text
    with pytest.raises(
        ValueError, match=r"time column 't' is not numeric.*convert it to numbers first.*to_numeric"
    ):
        from_long(text, "id", "t", "y", ["w"], [])
    assert from_long(df, "id", "t", "y", ["w"], []).times.tolist() == [1, 2, 10]
    with pytest.raises(
        ValueError, match=r"response y is constant \(5 for every subject.*varies.*right column"
    ):
        from_long(df.assign(y=5.0), "id", "t", "y", ["w"], [])


# -- files -----------------------------------------------------------------------------------------


def test_tables_and_figures_are_atomic_and_files_follow_the_umask(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from lib.core.paths import NOTEBOOKS
    from lib.core.runs import start_run
    from lib.core.settings import notebook_parameters
    from lib.longtail.train import save_checkpoint

    class Killed(Exception):
        pass

    class HalfWritten:
        """Writes part of the file, then dies: a kill mid-write."""

        def to_csv(self, path, index=True):
            Path(path).write_text("a,b\n1,")
            raise Killed

        def savefig(self, path, **kw):
            Path(path).write_bytes(b"\x89PNG half")
            raise Killed

    old = os.umask(0o022)
    try:
        run = start_run(
            "06_em_subgroup",
            {**notebook_parameters(NOTEBOOKS / "06_em_subgroup.ipynb"), "run_dir": str(tmp_path)},
        )
        table = run.table(pd.DataFrame({"a": [1], "b": [2]}), "t", index=False)
        fig = plt.figure()
        figure = run.figure(fig, "f")
        plt.close(fig)
        before = table.read_text(), figure.read_bytes()
        for call in (lambda: run.table(HalfWritten(), "t"), lambda: run.figure(HalfWritten(), "f")):
            with pytest.raises(Killed):
                call()
        assert (table.read_text(), figure.read_bytes()) == before  # the old files, whole
        assert not [p for p in tmp_path.rglob("*.tmp")]  # no temporary left behind
        ck = save_checkpoint(tmp_path / "c.pt", {"model": {}})
        modes = {
            p.name: p.stat().st_mode & 0o777 for p in (run.dir / "run.json", table, figure, ck)
        }
        assert set(modes.values()) == {0o644}, modes  # not mkstemp's 0600
        os.umask(0o077)
        assert save_checkpoint(tmp_path / "d.pt", {"model": {}}).stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
