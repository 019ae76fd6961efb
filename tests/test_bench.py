"""bench/: one script and one current table per claim, written only by `make bench` (bench/run.py).

What a reader relies on: every table in bench/ belongs to a claim listed in bench/README.md,
every table made by `make bench` names a clean commit and its machine, nothing in the README,
docs or lib cites a table that is not there, and the command refuses an uncommitted tree.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

from bench.run import CLAIMS, Claim, run_claim


def readme_rows() -> dict[str, list[str]]:
    """bench/README.md's claims table: claim -> its cells."""
    rows = {}
    for line in (BENCH / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`?([a-z0-9_]+)`?", cells[0]) if line.startswith("|") else None
        if m and m.group(1) in CLAIMS:
            rows[m.group(1)] = cells
    return rows


def test_every_file_in_bench_belongs_to_a_claim():
    owned = {f for name, c in CLAIMS.items() for f in (*c.outputs, f"{name}.json")}
    tools = {"README.md"}
    stray = [
        p.name
        for p in BENCH.iterdir()
        if p.is_file() and p.suffix != ".py" and p.name not in owned | tools
    ]
    assert not stray, f"files in bench/ that no claim of bench/run.py owns: {stray}"


def not_run(cells: list[str]) -> bool:
    """Whether a README row says its claim has not run yet (its script waits for hardware)."""
    return cells[-1].startswith("not run")


def test_every_claim_has_its_script_tables_and_a_readme_row():
    rows = readme_rows()
    for name, c in CLAIMS.items():
        assert (BENCH / c.script).is_file(), f"{name}: no bench/{c.script}"
        assert name in rows, f"{name} has no row in bench/README.md"
        present = [f for f in c.outputs if (BENCH / f).is_file()]
        if not_run(rows[name]):  # a table would contradict the row: commit both together
            assert not present, f"{name}: README says not run, yet bench/ holds {present}"
            continue
        missing = [f for f in c.outputs if f not in present]
        assert not missing, f"{name}: its tables {missing} are not in bench/"


def test_tables_made_by_make_bench_name_a_clean_commit_and_the_machine():
    for name, cells in readme_rows().items():
        made = cells[-1]
        if not_run(cells):
            continue  # no table yet (the test above checks there is none)
        if made.startswith("legacy"):
            assert re.search(r"[0-9a-f]{7}", made), f"{name}: a legacy table names its commit"
            continue
        prov = json.loads((BENCH / f"{name}.json").read_text())["provenance"]
        assert re.fullmatch(r"[0-9a-f]{40}", prov["commit"]), prov["commit"]
        assert prov["command"] == f"make bench NAME={name}"
        assert prov["machine"]["cpu"] and "isa" in prov["machine"], prov["machine"]
        assert prov["commit"][:12] in (BENCH / c_md(name)).read_text()


def c_md(name: str) -> str:
    return next(f for f in CLAIMS[name].outputs if f.endswith(".md"))


def test_readme_docs_and_lib_cite_only_current_tables():
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), BENCH / "README.md"]
    texts += sorted((ROOT / "lib").rglob("*.py")) + sorted((ROOT / "notebooks").glob("*.ipynb"))
    cited = {
        (p.relative_to(ROOT), m)
        for p in texts
        for m in re.findall(r"bench/([A-Za-z0-9_.-]+\.(?:md|json|csv))", p.read_text())
    }
    gone = sorted(f"{p}: bench/{m}" for p, m in cited if not (BENCH / m).is_file())
    assert not gone, "citations of tables that are not in bench/:\n" + "\n".join(gone)


# ---- the command itself, on a throwaway repository ------------------------------------------


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed repository with one benchmark script that writes fake.md into BENCH_OUT."""
    (tmp_path / "bench").mkdir()
    (tmp_path / ".gitignore").write_text("/runs/\n")
    (tmp_path / "bench" / "fake.py").write_text(
        "import os, pathlib, sys\n"
        "out = pathlib.Path(os.environ['BENCH_OUT'])\n"
        "(out / 'fake.md').write_text('# Fake\\n\\n| a |\\n|---|\\n| ' + ' '.join(sys.argv[1:]) + ' |\\n')\n"
    )
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


FAKE = Claim("fake.py", ("fake.md",), args=("--claim",))


def test_make_bench_refuses_uncommitted_changes(repo):
    (repo / "notes.txt").write_text("not committed")
    with pytest.raises(SystemExit, match="uncommitted changes.*commit them first"):
        run_claim("fake", FAKE, repo, [])
    assert not (repo / "bench" / "fake.md").exists()


def test_make_bench_stamps_the_commit_and_machine_and_promotes(repo):
    run_claim("fake", FAKE, repo, [])
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    md = (repo / "bench" / "fake.md").read_text()
    assert md.startswith("# Fake\n\n> Made by `make bench NAME=fake`") and head[:12] in md
    assert "| --claim |" in md  # the claim's own arguments
    prov = json.loads((repo / "bench" / "fake.json").read_text())["provenance"]
    assert prov["commit"] == head and prov["script"] == "python bench/fake.py --claim"
    assert prov["machine"]["cores"] >= 1


def test_a_variant_stays_under_runs(repo):
    out = run_claim("fake", FAKE, repo, ["--other"])
    assert not (repo / "bench" / "fake.md").exists()
    assert out.is_relative_to(repo / "runs" / "bench") and (out / "fake.md").exists()


def test_a_script_that_writes_into_bench_is_refused(repo):
    (repo / "bench" / "sneaky.py").write_text(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['BENCH_OUT'], 'fake.md').write_text('x')\n"
        "pathlib.Path('bench/fake.md').write_text('x')\n"
    )
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "sneaky")
    with pytest.raises(SystemExit, match="the tree changed while the script ran"):
        run_claim("fake", Claim("sneaky.py", ("fake.md",)), repo, [])
