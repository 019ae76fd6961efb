"""The one command that writes bench/'s tables: `make bench NAME=<claim>` (this file).

    make bench NAME=em_speed                 # the claim's script with its own arguments -> bench/
    make bench NAME=em_speed ARGS="--sizes 300"  # a variant: runs/bench/em_speed/<time>/ only
    make bench                               # the list of claims

For a claim it refuses a tree with uncommitted changes (a table must name the commit that made
it), runs the claim's script with the claim's arguments into a fresh folder under runs/bench/,
checks that the tree is unchanged afterwards, then stamps every Markdown table and the claim's
JSON with the provenance (commit, command, machine: CPU model, instruction-set features, cores,
threads, load before and after, duration) and copies them into bench/. Anything else a user
asks for (other arguments) stays a variant under runs/. The claims, their goals and status:
bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import OUT_ENV
from lib.core.io import atomic_write_text
from lib.core.provenance import machine, machine_line

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Claim:
    """One benchmark claim: the script that measures it, its arguments and the files it writes."""

    script: str  # bench/<script>
    outputs: tuple[str, ...]  # files the script writes (the claim's JSON is added when missing)
    args: tuple[str, ...] = ()
    needs: str = ""  # what must exist first (data, runs, R), in words


_NMRPY = tuple(f"data/nmr_replicates/bruker2/{n}" for n in (22, 23, 24))

CLAIMS: dict[str, Claim] = {
    "train_accuracy": Claim(
        "train_accuracy.py",
        ("train_accuracy.md", "train_accuracy.csv"),
        needs="about 10 h on 2 cores; resumes its runs in runs/bench_train_accuracy/",
    ),
    "train_throughput": Claim(
        "train_throughput.py",
        ("train_throughput.md", "train_throughput.json"),
        args=("--threads", "1", "--rounds", "7"),  # one thread: a shared core times steadily
    ),
    "train_params": Claim("train_params.py", ("train_params.md", "train_params.csv")),
    "augment_throughput": Claim(
        "augment_throughput.py", ("augment_throughput.md", "augment_throughput.json")
    ),
    "sade_fidelity": Claim(
        "sade_fidelity.py",
        ("sade_fidelity.md", "sade_fidelity.json"),
        needs="the train_accuracy runs and 3 runs of the published recipe",
    ),
    "agnostic_eval": Claim(
        "agnostic_eval.py",
        ("agnostic_eval.md", "agnostic_eval.csv"),
        needs="notebook 04's cpu runs over the train_accuracy checkpoints (bench/agnostic_runs/)",
    ),
    "gpu_check": Claim(
        "gpu_check.py",
        ("gpu_check.md", "gpu_check.json"),
        args=("--require-gpu",),  # on a machine without CUDA: an error, not an empty claim
        needs="one CUDA GPU and torch's CUDA build (under 8 min); not run yet",
    ),
    "em_agreement": Claim("em_agreement.py", ("em_agreement.md", "em_agreement.json")),
    "em_r": Claim("em_r.py", ("em_r.md", "em_r.json"), needs="R with lme4 and flexmix"),
    "em_nlme": Claim("em_nlme.py", ("em_nlme.md", "em_nlme.json"), needs="R with nlme"),
    "em_growth": Claim(
        "em_growth.py", ("em_growth.md", "em_growth.json"), needs="R with lme4 and nlme"
    ),
    "em_simstudy": Claim(
        "em_simstudy.py",
        ("em_simstudy.md", "em_simstudy.json", "em_simstudy_params.csv", "em_simstudy_lrt.csv"),
    ),
    "em_speed": Claim("em_speed.py", ("em_speed.md", "em_speed.json")),
    "em_growth_speed": Claim(
        "em_growth_speed.py",
        ("em_growth_speed.md", "em_growth_speed.json"),
        needs="R with flexmix (its column is skipped without); about 10 min on 2 loaded cores",
    ),
    "nmr_cpu_tables": Claim(
        "nmr_tables.py", ("nmr_cpu_tables.md", "nmr_cpu_tables.json"), args=("--profile", "cpu")
    ),
    "nmr_sim": Claim("nmr_sim.py", ("nmr_sim.md", "nmr_sim.json")),
    "nmr_phase": Claim("nmr_phase.py", ("nmr_phase.md", "nmr_phase.json")),
    "nmr_speed": Claim("nmr_speed.py", ("nmr_speed.md", "nmr_speed.json")),
    "nmr_real": Claim(
        "nmr_real.py", ("nmr_real.md", "nmr_real.json"), args=("--seeds", "0", "1", "2")
    ),
    "nmr_real_nmrpy": Claim(
        "nmr_real.py",
        ("nmr_real_nmrpy.md", "nmr_real_nmrpy.json"),
        args=("--fids", *_NMRPY, "--name", "nmr_real_nmrpy"),
        needs="make nmr-replicates",
    ),
    "nmr_replicates": Claim(
        "nmr_replicates.py",
        ("nmr_replicates.md", "nmr_replicates.json"),
        needs="make nmr-replicates",
    ),
    "nmr_snr_range": Claim(
        "nmr_snr_range.py",
        ("nmr_snr_range.md", "nmr_snr_range.json"),
        needs="make nmr-replicates",
    ),
    "nmr_scores": Claim(
        "nmr_scores.py",
        ("nmr_scores.md", "nmr_scores.json"),
        args=("--fids", "tests/data/nmr/jcamp", *_NMRPY, "--draws", "8"),
        needs="make nmr-replicates",
    ),
}


def git(repo: Path, *args: str) -> str:
    """Output of one git command in `repo` (stripped); CalledProcessError when it fails."""
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def uncommitted(repo: Path) -> list[str]:
    """Paths with uncommitted changes, untracked files included (git's ignored files are not)."""
    out = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    return [line[3:] for line in out.splitlines() if line.strip()]


def stamp_markdown(text: str, note: str) -> str:
    """`text` with the provenance note as a quoted line after its first heading (or first)."""
    lines = text.splitlines()
    at = 1 if lines and lines[0].startswith("#") else 0
    rest = lines[at:]
    while rest and not rest[0].strip():
        rest.pop(0)
    return "\n".join([*lines[:at], "", f"> {note}", "", *rest]).rstrip() + "\n"


def stamp_json(path: Path, provenance: dict) -> None:
    """Add the provenance to a claim's JSON (written with only it when the script made none)."""
    data = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(data, dict):
        data = {"data": data}
    atomic_write_text(path, json.dumps({"provenance": provenance, **data}, indent=1) + "\n")


def run_claim(name: str, claim: Claim, repo: Path, extra: list[str]) -> Path:
    """Run one claim's script into a fresh folder under runs/bench/; promote into bench/ when it is the claim."""
    variant = bool(extra)
    if not variant:
        dirty = uncommitted(repo)
        if dirty:
            raise SystemExit(
                f"bench {name}: the tree has uncommitted changes ({len(dirty)}: "
                f"{', '.join(dirty[:5])}{' ...' if len(dirty) > 5 else ''}); commit "
                "them first (a table names the commit it was made from), or pass ARGS=... to "
                "write a variant under runs/bench/"
            )
    commit = git(repo, "rev-parse", "HEAD")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = repo / "runs" / "bench" / name / f"{stamp}-{commit[:7]}"
    out.mkdir(parents=True)
    args = [*claim.args, *extra]
    command = " ".join(["python", f"bench/{claim.script}", *map(shlex.quote, args)])
    before = machine()
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, str(repo / "bench" / claim.script), *args],
        cwd=repo,
        # this tree's lib first, whatever .pth files the environment holds
        env={**os.environ, OUT_ENV: str(out), "PYTHONPATH": str(repo)},
        check=True,
    )
    seconds = time.perf_counter() - t0
    after = machine()
    missing = [f for f in claim.outputs if not (out / f).exists()]
    if missing:
        raise SystemExit(f"bench {name}: the script wrote no {', '.join(missing)} into {out}")
    if variant:
        print(f"[bench] variant of {name} (ARGS given): {out.relative_to(repo)}; bench/ unchanged")
        return out
    if uncommitted(repo) or git(repo, "rev-parse", "HEAD") != commit:
        raise SystemExit(
            f"bench {name}: the tree changed while the script ran (it must write only into "
            f"{OUT_ENV}); the results stay in {out.relative_to(repo)}, bench/ is unchanged"
        )
    provenance = {
        "claim": name,
        "command": f"make bench NAME={name}",
        "script": command,
        "commit": commit,
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "machine": before,
        "load_after": after["load_1_5_15"],
    }
    note = (
        f"Made by `make bench NAME={name}` (`{command}`) from commit {commit[:12]} on "
        f"{provenance['finished_utc']} in {seconds:.0f} s. Machine: {machine_line(before)}; "
        f"load after: {' / '.join(map(str, after['load_1_5_15']))}."
    )
    for f in claim.outputs:
        if f.endswith(".md"):
            atomic_write_text(out / f, stamp_markdown((out / f).read_text(), note))
    stamp_json(out / f"{name}.json", provenance)
    for f in sorted({*claim.outputs, f"{name}.json"}):
        shutil.copyfile(out / f, repo / "bench" / f)
    print(f"[bench] {name}: bench/ updated from {out.relative_to(repo)}; commit the tables")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", nargs="?", help="the claim (omit for the list)")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="script arguments: a variant")
    a = ap.parse_args(argv)
    if not a.name:
        for name, c in CLAIMS.items():
            print(
                f"{name:20s} bench/{c.script} {' '.join(c.args)}"
                + (f"  [needs {c.needs}]" if c.needs else "")
            )
        return
    if a.name not in CLAIMS:
        raise SystemExit(f"no claim {a.name!r}; known: {', '.join(CLAIMS)} (bench/README.md)")
    run_claim(a.name, CLAIMS[a.name], BENCH.parent, a.args)


if __name__ == "__main__":
    main()
