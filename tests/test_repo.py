"""The repository's own house rules: notebooks committed without outputs, every figure of the
README and docs/ drawn by `make figures` with a record of its run, and no stale figures."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIG = ROOT / "docs" / "figures"


def _strip_module():
    spec = importlib.util.spec_from_file_location(
        "strip_notebooks", ROOT / "env" / "strip_notebooks.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_notebooks_are_stripped():
    assert _strip_module().main(["--check"]) == 0, "run `make strip`"


def test_strip_removes_outputs_and_run_metadata_and_keeps_the_rest(tmp_path):
    strip = _strip_module()
    src = json.loads((ROOT / "notebooks" / "01_data.ipynb").read_text())
    run = json.loads(json.dumps(src))
    run["metadata"]["papermill"] = {"duration": 3.0}
    for i, c in enumerate(run["cells"]):
        if c["cell_type"] == "code":
            c["execution_count"] = i
            c["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]
            c["metadata"]["execution"] = {"iopub.status.busy": "now"}
    p = tmp_path / "nb.ipynb"
    p.write_text(json.dumps(run))
    assert strip.main(["--check", str(p)]) == 1
    assert strip.main([str(p)]) == 0
    assert p.read_text() == (ROOT / "notebooks" / "01_data.ipynb").read_text()
    assert strip.main(["--check", str(p)]) == 0
    p.write_text("{not json")
    assert strip.main([str(p)]) == 2 and p.read_text() == "{not json"  # left as it was


def _referenced_figures() -> dict[str, list[str]]:
    """figure file name -> the Markdown files that show it."""
    refs: dict[str, list[str]] = {}
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in re.findall(r"!\[[^\]]*\]\((?:docs/)?figures/([^)\s]+)\)", md.read_text()):
            refs.setdefault(name, []).append(md.name)
    return refs


def test_every_shown_figure_exists_and_records_the_command_and_run_that_drew_it():
    refs = _referenced_figures()
    assert refs, "no figures found in README.md and docs/"
    manifest = json.loads((FIG / "figures.json").read_text())
    for name, where in refs.items():
        assert (FIG / name).is_file(), f"{name} shown in {where} is missing"
        entry = manifest.get(name)
        assert entry, (
            f"{name} has no record in docs/figures/figures.json; draw it with `make figures`"
        )
        assert entry["command"].startswith("python "), entry
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", entry["commit"]), entry


def test_no_figure_is_left_over():
    shown = set(_referenced_figures())
    on_disk = {p.name for p in FIG.glob("*.png")}
    assert on_disk <= shown, f"not shown anywhere: {sorted(on_disk - shown)}"
    recorded = set(json.loads((FIG / "figures.json").read_text()))
    assert recorded <= on_disk, f"records without a figure: {sorted(recorded - on_disk)}"
