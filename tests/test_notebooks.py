"""Notebook checks: clean commits, profiles that match the notebooks, and a real smoke run.

The smoke run executes each notebook with papermill (smoke profile), then nbval in lax
mode re-executes the executed copy and compares the cells marked `# NBVAL_CHECK_OUTPUT`,
so the printed figures must be deterministic.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lib.core.paths import NOTEBOOKS
from lib.core.settings import notebook_parameters
from lib.run import list_notebooks, list_profiles, load_profile, run_notebook

NOTEBOOK_NAMES = list_notebooks()


def test_every_notebook_is_committed_clean():
    assert NOTEBOOK_NAMES, "no notebooks found"
    for nb in NOTEBOOK_NAMES:
        data = json.loads((NOTEBOOKS / f"{nb}.ipynb").read_text())
        cells = data["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
        assert not dirty, f"{nb}: code cells {dirty} carry outputs or execution counts; strip them"
        first = code[0]
        assert "parameters" in first.get("metadata", {}).get("tags", []), (
            f"{nb}: first code cell not tagged"
        )


def test_every_notebook_declares_run_dir_and_typed_parameters():
    for nb in NOTEBOOK_NAMES:
        params = notebook_parameters(NOTEBOOKS / f"{nb}.ipynb")
        assert "run_dir" in params, f"{nb}: needs a run_dir parameter"
        from lib.core.settings import parameters_cell

        src = parameters_cell(NOTEBOOKS / f"{nb}.ipynb")
        for line in src.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                assert ":" in line.split("=")[0] and "#" in line, (
                    f"{nb}: untyped or uncommented parameter: {line}"
                )


@pytest.mark.parametrize("profile", list_profiles())
def test_profiles_only_name_existing_parameters(profile):
    load_profile(profile)  # raises SystemExit naming the bad key


def test_unknown_profile_and_parameter_are_errors(tmp_path):
    with pytest.raises(SystemExit, match="unknown profile 'nope'.*smoke"):
        load_profile("nope")
    nb = NOTEBOOK_NAMES[0]
    (tmp_path / "bad.yaml").write_text(f"{nb}:\n  not_a_parameter: 1\n")
    with pytest.raises(SystemExit, match="no parameter.*not_a_parameter"):
        load_profile("bad", profile_dir=tmp_path)
    (tmp_path / "bad2.yaml").write_text("99_nothing: {}\n")
    with pytest.raises(SystemExit, match="unknown notebook '99_nothing'"):
        load_profile("bad2", profile_dir=tmp_path)


def test_failing_notebook_reports_name_and_error(tmp_path):
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    cells = [
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": "run_dir: str = 'x'  # out\n",
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": "raise ValueError('boom')",
            "outputs": [],
            "execution_count": None,
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
    (nb_dir / "01_fail.ipynb").write_text(json.dumps(nb))
    with pytest.raises(
        RuntimeError,
        match=r"notebook 01_fail failed in cell \d+ of the executed copy: ValueError: boom",
    ):
        run_notebook("01_fail", {}, tmp_path / "out", nb_dir=nb_dir)


@pytest.mark.notebook
@pytest.mark.parametrize("nb", NOTEBOOK_NAMES)
def test_notebook_smoke_run_and_nbval(nb, smoke_dir):
    out_dir = smoke_dir
    params = {"run_dir": str(out_dir), **load_profile("smoke").get(nb, {})}
    executed = run_notebook(nb, params, out_dir)
    # runs/<profile>/<notebook> links to the run that just finished (the path other notebooks read)
    assert (out_dir / nb).is_symlink() and (out_dir / nb).resolve() == executed.parent.resolve()
    assert json.loads((out_dir / nb / "run.json").read_text())["status"] == "complete"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "--nbval-kernel-name",
            "workbook",
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(out_dir),
            str(executed),
        ],
        cwd=out_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, (
        f"nbval failed for {nb}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    )
