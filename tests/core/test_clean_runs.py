"""`make clean-runs` (env/clean_runs.sh): deletes only under runs/, and only when asked explicitly."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "env" / "clean_runs.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture
def repo(tmp_path):
    """A copy of the script in <tmp>/repo/env/ with runs/ holding runs, a link to a run and a link outside."""
    root = tmp_path / "repo"
    (root / "env").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "env" / "clean_runs.sh")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    run = root / "runs" / "smoke" / "03_training-20250101T000000Z"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (root / "runs" / "smoke" / "03_training").symlink_to(run.name)
    (root / "runs" / "cpu").mkdir()
    (root / "runs" / "cpu" / "elsewhere").symlink_to(outside, target_is_directory=True)
    (root / "notebooks").mkdir()
    (root / "notebooks" / "01_data.ipynb").write_text("{}")
    return root, outside


def clean(root: Path, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("CONFIRM", "ONLY")} | env
    return subprocess.run(
        ["bash", str(root / "env" / "clean_runs.sh")],
        env=e,
        capture_output=True,
        text=True,
        check=False,
    )


def test_without_confirm_nothing_is_deleted(repo):
    root, _ = repo
    r = clean(root)
    assert r.returncode == 1 and "CONFIRM=1" in r.stderr and "runs/smoke" in r.stdout
    assert (root / "runs" / "smoke" / "03_training" / "run.json").exists()


def test_confirm_deletes_runs_only(repo):
    root, outside = repo
    r = clean(root, CONFIRM="1")
    assert r.returncode == 0, r.stderr
    assert list((root / "runs").iterdir()) == []
    assert (outside / "keep.txt").read_text() == "mine"  # the link was removed, not followed
    assert (root / "notebooks" / "01_data.ipynb").exists()


def test_only_one_profile(repo):
    root, outside = repo
    assert clean(root, CONFIRM="1", ONLY="smoke").returncode == 0
    assert (
        not (root / "runs" / "smoke").exists()
        and (root / "runs" / "cpu" / "elsewhere").is_symlink()
    )
    assert (outside / "keep.txt").exists()


@pytest.mark.parametrize("only", ["..", "../outside", "smoke/../..", "/tmp", ".hidden", "missing"])
def test_bad_only_is_refused(repo, only):
    root, outside = repo
    r = clean(root, CONFIRM="1", ONLY=only)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert (root / "runs" / "smoke").exists() and (outside / "keep.txt").exists()


def test_runs_as_a_link_is_refused(repo):
    root, outside = repo
    shutil.rmtree(root / "runs")
    (root / "runs").symlink_to(outside, target_is_directory=True)
    r = clean(root, CONFIRM="1")
    assert r.returncode == 2 and "link" in r.stderr
    assert (outside / "keep.txt").exists()
