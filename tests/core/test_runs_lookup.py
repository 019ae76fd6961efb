"""Finding an earlier notebook's results (lib.core.lookup.find_finished): what an interactive session
uses right after `make run`, and what a profile run is allowed to read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib.core.lookup import find_finished
from lib.core.paths import NOTEBOOKS
from lib.core.runs import point_latest
from lib.core.settings import notebook_parameters
from lib.longtail.evaluate.load import find_checkpoints
from lib.run import list_profiles, load_profile

NB, REL = "03_training", "checkpoints/last.pt"


def make_run(
    base: Path,
    run_id: str,
    status: str = "complete",
    finished: str | None = None,
    link: bool = True,
) -> Path:
    """A run folder `<base>/03_training-<run_id>` with a checkpoint and run.json; linked as the latest if asked."""
    run = base / f"{NB}-{run_id}"
    (run / "checkpoints").mkdir(parents=True)
    (run / REL).write_bytes(run_id.encode())
    rec = {"notebook": NB, "run_id": run_id, "status": status}
    if finished:
        rec["time_utc"] = finished
    (run / "run.json").write_text(json.dumps(rec))
    if link:
        point_latest(base, NB, run)
    return run


@pytest.fixture
def runs(tmp_path) -> Path:
    """A runs/ folder with a smoke and a cpu profile run; cpu started later but smoke finished later."""
    root = tmp_path / "runs"
    make_run(root / "smoke", "20260101T100000Z", finished="2026-01-01T12:00:00+00:00")
    make_run(root / "cpu", "20260101T110000Z", finished="2026-01-01T11:30:00+00:00")
    return root


def test_interactive_session_without_runs_uses_the_newest_finished_profile_run(runs):
    found = find_finished(NB, REL, runs / "interactive", "auto", runs_root=runs)
    assert (
        found.run.name == f"{NB}-20260101T100000Z" and found.run.parent.name == "smoke"
    )  # by finish time
    assert found.path.read_bytes() == b"20260101T100000Z"
    assert "has no finished 03_training run" in found.how and "profile smoke" in found.how
    assert "2026-01-01T12:00:00" in found.how and "checkpoints_from" in found.how


def test_the_sessions_own_finished_run_comes_first(runs):
    own = make_run(
        runs / "interactive", "20250101T000000Z", finished="2025-01-01T00:10:00+00:00"
    )  # older
    found = find_finished(NB, REL, runs / "interactive", "auto", runs_root=runs)
    assert found.run == own and "newest finished run in run_dir" in found.how


def test_unfinished_failed_and_hidden_runs_are_never_chosen(runs):
    make_run(
        runs / "interactive", "20270101T000000Z", status="running", link=False
    )  # a Run All that stopped
    failed = make_run(
        runs / "paper", "20270101T000000Z", status="failed", finished="2027-01-01T00:00:00+00:00"
    )
    assert (
        runs / "paper" / NB
    ).resolve() == failed  # (a link never points there; if it did, it is skipped)
    make_run(runs / ".trash", "20280101T000000Z", finished="2028-01-01T00:00:00+00:00")
    found = find_finished(NB, REL, runs / "interactive", "auto", runs_root=runs)
    assert found.run.parent.name == "smoke"


def test_a_legacy_folder_without_run_ids_counts_as_a_finished_run(tmp_path):
    legacy = tmp_path / "runs" / "interactive" / NB / "checkpoints"
    legacy.mkdir(parents=True)
    (legacy / "last.pt").write_bytes(b"old layout")
    found = find_finished(
        NB, REL, tmp_path / "runs" / "interactive", "auto", runs_root=tmp_path / "runs"
    )
    assert found.path.read_bytes() == b"old layout"


def test_run_dir_source_never_looks_elsewhere(runs):
    with pytest.raises(
        FileNotFoundError, match=r"(?s)looks nowhere else.*make run.*--only 03_training"
    ):
        find_finished(NB, REL, runs / "interactive", "run_dir", runs_root=runs)
    assert find_finished(NB, REL, runs / "cpu", "run_dir", runs_root=runs).run.parent.name == "cpu"


def test_a_named_profile_runs_folder_or_run_folder(runs):
    assert (
        find_finished(NB, REL, runs / "interactive", "cpu", runs_root=runs).run.parent.name == "cpu"
    )
    assert (
        find_finished(
            NB, REL, runs / "interactive", str(runs / "cpu"), runs_root=runs
        ).run.parent.name
        == "cpu"
    )
    one = make_run(
        runs / "smoke", "20260102T000000Z", status="running", link=False
    )  # named directly: used
    found = find_finished(NB, REL, runs / "interactive", str(one), runs_root=runs)
    assert found.run == one and "status running" in found.how
    with pytest.raises(FileNotFoundError, match=r"checkpoints_from = 'nope'.*runs.*make run"):
        find_finished(NB, REL, runs / "interactive", "nope", runs_root=runs)


def test_nothing_anywhere_names_make_run(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"(?s)no finished 03_training run.*interactive.*"
        r"run `make run` first.*lib.run --profile smoke --only 03_training",
    ):
        find_finished(
            NB, REL, tmp_path / "runs" / "interactive", "auto", runs_root=tmp_path / "runs"
        )


def test_notebook_04_reports_the_checkpoint_it_uses(runs, capsys):
    paths = find_checkpoints([], runs / "interactive", "auto", runs_root=runs)
    assert paths == [(runs / "smoke" / NB).resolve() / REL]
    out = capsys.readouterr().out
    assert out.startswith(f"checkpoint of 03_training: {paths[0]}") and "profile smoke" in out


def test_notebook_04_declares_the_source_and_profile_runs_read_only_their_own():
    assert (
        notebook_parameters(NOTEBOOKS / "04_agnostic_evaluation.ipynb")["checkpoints_from"]
        == "auto"
    )
    for profile in list_profiles():
        nb04 = load_profile(profile).get("04_agnostic_evaluation", {})
        assert nb04.get("checkpoints") or nb04.get("checkpoints_from") == "run_dir", (
            f"profile {profile}: notebook 04 would read another profile's checkpoint"
        )
