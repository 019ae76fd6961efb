"""Bad settings and stopped runs (issue 38): one clear line before any work, and run.json always says
how a run ended."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from lib import run as R
from lib.core.paths import REPO_ROOT
from lib.core.profiles import load_profile
from lib.core.runs import RUN_ID_ENV, STARTING, mark_run, new_run_dir, run_id_of, start_run


def _profile(tmp_path, text: str):
    (tmp_path / "p.yaml").write_text(text)
    return tmp_path / "p.yaml"


# -- the training command line -------------------------------------------------------------------


@pytest.mark.parametrize(
    "arg,match",
    [
        ("lr=-1", r"lr=-1.0 is out of range: lr must be > 0; give e.g. lr=0.1"),
        ("batch_size=0", r"batch_size=0 is out of range: batch_size must be >= 2"),
        ("method=PRL", r"unknown method 'PRL'.*names are lower case: method=prl"),
    ],
)
def test_training_settings_out_of_range_are_one_line(tmp_path, arg, match):
    from lib.longtail.train.__main__ import main

    with pytest.raises(SystemExit, match=rf"^invalid training settings: {match}"):
        main([f"run_dir={tmp_path / 'r'}", arg])
    assert not (tmp_path / "r").exists()  # refused before the run folder


def test_training_command_line_prints_no_traceback(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "lib.longtail.train", f"run_dir={tmp_path / 'r'}", "lr=-1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip() == (
        "invalid training settings: lr=-1.0 is out of range: lr must be > 0; give e.g. lr=0.1"
    )


def test_a_setting_given_twice_is_an_error():
    from lib.longtail.train.__main__ import parse_settings
    from lib.nmr.__main__ import parse_overrides

    with pytest.raises(
        SystemExit, match=r"setting epochs is given twice \(epochs=1 and epochs=2\)"
    ):
        parse_settings(["epochs=1", "lr=0.1", "epochs=2"])
    assert parse_settings(["epochs=1", "flip=false"]) == {"epochs": 1, "flip": False}
    with pytest.raises(SystemExit, match=r"override seed is given twice .*give it once"):
        parse_overrides(["seed=1", "seed=2"])


# -- profiles ------------------------------------------------------------------------------------


def test_profile_yaml_refuses_repeated_keys_and_aliases(tmp_path):
    cases = {
        "03_training:\n  epochs: 1\n  lr: 1.0\n  epochs: 2\n": r"p.yaml: line 4, column 3: "
        r"duplicate key 'epochs' \(first on line 2\).*keep one of them",
        "01_data: {}\n03_training: {}\n01_data: {}\n": r"line 3, column 1: duplicate key '01_data'",
        "01_data:\n  imb_ratios: &r [100, 50]\n02_experts: {}\n": r"p.yaml: line 2, column 15: "
        r"YAML anchors and aliases .*write each value out",
        "x: &x {}\n01_data:\n  <<: *x\n": "anchors and aliases",
        "[" * 100_000: "nested too deeply",
    }
    for text, match in cases.items():
        with pytest.raises(SystemExit, match=match):
            load_profile("p", profile_dir=_profile(tmp_path, text).parent)
    # plain YAML reads as before: false is False, 'false' stays refused text
    ok = load_profile("p", _profile(tmp_path, "03_training:\n  flip: false\n").parent)
    assert ok == {"03_training": {"flip": False}}
    with pytest.raises(SystemExit, match="flip = 'false' is str"):
        load_profile("p", _profile(tmp_path, "03_training:\n  flip: 'false'\n").parent)


def _alias_bomb() -> str:
    """A list-typed profile value that expands to 9^8 (43 million) items from under 400 bytes."""
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    return "\n".join(lines) + "\n01_data:\n  imb_ratios: *a7\n"


def test_an_alias_bomb_is_refused_at_once_without_a_run_folder(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(R, "run_notebook", lambda *a, **k: ran.append(a))
    path, out = _profile(tmp_path, _alias_bomb()), tmp_path / "out"
    t0 = time.monotonic()
    with pytest.raises(SystemExit, match=r"line 1, column 5: YAML anchors and aliases"):
        R.main(["--profile-file", str(path), "--only", "01_data", "--out", str(out)])
    assert time.monotonic() - t0 < 5 and not ran and not out.exists()


@pytest.mark.parametrize(
    "text,match",
    [
        ("lr: -1.0", "lr=-1.0 is out of range"),
        ("batch_size: 0", "batch_size=0 is out of range"),
        ("method: PRL", r"unknown method 'PRL'.*method=prl"),
    ],
)
def test_lib_run_checks_training_settings_before_any_notebook_runs(
    tmp_path, monkeypatch, capsys, text, match
):
    ran = []
    monkeypatch.setattr(R, "run_notebook", lambda *a, **k: ran.append(a))
    path, out = _profile(tmp_path, f"03_training:\n  {text}\n"), tmp_path / "out"
    with pytest.raises(
        SystemExit, match=rf"p.yaml: notebook 03_training: invalid settings: {match}"
    ):
        R.main(["--profile-file", str(path), "--out", str(out)])
    assert not ran and not out.exists()  # not even 01_data ran
    R.main(
        ["--profile-file", str(_profile(tmp_path, "03_training:\n  lr: 0.5\n")), "--out", str(out)]
    )
    assert [a[0] for a in ran][:3] == ["01_data", "02_experts", "03_training"]


# -- run.json of runs that stop ------------------------------------------------------------------


def _stopping_papermill(monkeypatch, error: BaseException, seen: list) -> None:
    """papermill.execute_notebook replaced by one that records the run folder's record, then raises."""
    import papermill

    def execute(src, out, **kw):
        from pathlib import Path

        seen.append(json.loads((Path(out).parent / "run.json").read_text()))
        raise error

    monkeypatch.setattr(papermill, "execute_notebook", execute)


@pytest.mark.parametrize(
    "error,status",
    [(KeyboardInterrupt(), "interrupted"), (OSError("kernel died"), "failed")],
)
def test_a_stopped_lib_run_leaves_run_json_with_its_status(tmp_path, monkeypatch, error, status):
    from lib.core.runs import run_dirs

    seen = []
    _stopping_papermill(monkeypatch, error, seen)
    with pytest.raises(type(error)):
        R.run_notebook("01_data", {}, tmp_path)
    assert seen[0]["status"] == STARTING  # written with the folder, before any work
    (folder,) = run_dirs(tmp_path, "01_data")
    rec = json.loads((folder / "run.json").read_text())
    assert rec["status"] == status and type(error).__name__ in rec["error"]
    assert rec["run_id"] == run_id_of(folder, "01_data") and not (tmp_path / "01_data").exists()


def test_lib_run_reports_an_interruption_in_one_line(tmp_path, monkeypatch, capsys):
    _stopping_papermill(monkeypatch, KeyboardInterrupt(), [])
    path = _profile(tmp_path, "01_data: {}\n")
    assert R.main(["--profile-file", str(path), "--only", "01_data", "--out", str(tmp_path)]) == 130
    assert "[run] interrupted (Ctrl-C); its run.json says so" in capsys.readouterr().err


def _notebook(nb_dir, name: str) -> None:
    cell = {
        "cell_type": "code",
        "metadata": {"tags": ["parameters"]},
        "outputs": [],
        "execution_count": None,
        "source": "run_dir: str = 'x'\n",
    }
    nb_dir.mkdir(exist_ok=True)
    (nb_dir / f"{name}.ipynb").write_text(json.dumps({"cells": [cell], "metadata": {}}))


def test_the_notebook_claims_lib_runs_folder_and_a_stopped_start_is_recorded(tmp_path, monkeypatch):
    from lib.core import device

    _notebook(tmp_path / "nbs", "01_toy")
    made = new_run_dir(tmp_path, "01_toy")
    mark_run(made, "01_toy", STARTING)
    monkeypatch.setenv(RUN_ID_ENV, run_id_of(made, "01_toy"))
    ns = {"run_dir": str(tmp_path)}
    run = start_run("01_toy", ns, nb_dir=tmp_path / "nbs")
    assert run.dir == made and json.loads((made / "run.json").read_text())["status"] == "running"
    # a second start in the same kernel gets a fresh folder: an opened run is never reused
    monkeypatch.setattr(device, "describe_device", lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        start_run("01_toy", ns, nb_dir=tmp_path / "nbs")
    (other,) = [d for d in tmp_path.glob("01_toy-*") if d != made]
    assert json.loads((other / "run.json").read_text())["status"] == "interrupted"
