"""Fit time of the latent-subgroup EM (t 5, K 3, AR(1)) for N 300 to 100,000, balanced and with 20% missing.

    make bench NAME=em_speed            # the claim: -> bench/ with its provenance

Each fit uses the default EMConfig (10 starts x 6 short EM iterations, 40 more for the better
half, the best 3 to convergence, more rounds of starts only when the best mode was found once, the direct polish).
Where it can run in reasonable time (N <= 10,000) the direct maximizer (maximize_direct, BFGS
from the deterministic start, one start only) is timed in the same process, interleaved with
the EM fits, and the ratio is reported; its log-likelihood is beside EM's. Peak memory:
tracemalloc peak of one extra EM fit beyond the data.

    .venv/bin/python bench/em_speed.py --against 98fc868   # also: this tree against a commit

`--against REV` checks REV out in a temporary git worktree and times the same fits with each
tree's lib in separate processes, alternating (one warm-up fit per process), for N 300 and
100,000: the ratio is the claim, since both sides met the same window.
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "OPENBLAS_NUM_THREADS", "1"
)  # before numpy: small t x t algebra, threads only contend

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import out_dir
from lib.core.io import atomic_write_text, markdown_table
from lib.core.provenance import cpu_name
from lib.em import EMConfig, PanelSimConfig, fit_em, maximize_direct, simulate
from lib.em.starts import initial_params

HERE = Path(__file__).resolve().parent
GOALS = {(300, 0.0): 0.2, (300, 0.2): 0.2, (100_000, 0.0): 10.0, (100_000, 0.2): 30.0}
DIRECT_MAX_N = 10_000
REPO = HERE.parent
# what one process of --against runs: the tree's own lib, one warm-up fit, then timed fits
CHILD = """
import os, sys, time, json, statistics, warnings
os.environ["OPENBLAS_NUM_THREADS"] = "1"
sys.path.insert(0, sys.argv[1])
from lib.em import EMConfig, fit_em, simulate
try:
    from lib.em import PanelSimConfig
except ImportError:  # a tree from before the rename
    from lib.em import SimConfig as PanelSimConfig
warnings.simplefilter("ignore")
n, miss, reps = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
d = simulate(PanelSimConfig(n_subjects=n, missing=miss, seed=0))
fit_em(d.panel, EMConfig())
ts = []
for _ in range(reps):
    t0 = time.perf_counter(); r = fit_em(d.panel, EMConfig()); ts.append(time.perf_counter() - t0)
print(json.dumps({"s": statistics.median(ts), "loglik": r.loglik}))
"""


def time_tree(tree: Path, n: int, miss: float, reps: int) -> dict:
    """Median fit time and log-likelihood with `tree`'s lib, in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), str(n), str(miss), str(reps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def against(rev: str, rounds: int = 3) -> list[str]:
    """Markdown: this tree's fit time against commit `rev`'s, separate processes, alternating."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", rev],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(old), commit],
            check=True,
        )
        try:
            for n, miss, reps in (
                (300, 0.0, 5),
                (300, 0.2, 5),
                (100_000, 0.0, 1),
                (100_000, 0.2, 1),
            ):
                t = {"old": [], "new": []}
                for r in range(rounds):
                    order = (
                        (("old", old), ("new", REPO))
                        if r % 2 == 0
                        else (("new", REPO), ("old", old))
                    )
                    for name, tree in order:
                        res = time_tree(tree, n, miss, reps)
                        t[name].append(res["s"])
                        t[name + "_ll"] = res["loglik"]
                o, w = statistics.median(t["old"]), statistics.median(t["new"])
                rows.append(
                    {
                        "N": n,
                        "missing": f"{miss:.0%}",
                        f"{commit} (s)": round(o, 3),
                        "this tree (s)": round(w, 3),
                        f"{commit} / this": round(o / w, 2),
                        "loglik difference": f"{t['new_ll'] - t['old_ll']:.1e}",
                    }
                )
                print(rows[-1], flush=True)
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False
            )
    import pandas as pd

    return [
        f"## Against commit {commit}, interleaved (same window)",
        "",
        f"Each side in its own process with its own lib (one warm-up fit, then the median of 5 fits "
        f"at N 300, one at N 100,000), alternating, {rounds} processes each; the table gives the "
        "median over processes.",
        "",
        markdown_table(pd.DataFrame(rows)),
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[300, 10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--against", default="", help="also time against this git revision (worktree)")
    a = ap.parse_args()
    load0 = os.getloadavg()[0]
    import pandas as pd

    rows = []
    warnings.simplefilter("ignore")
    for n in a.sizes:
        for miss in (0.0, 0.2):
            data = simulate(PanelSimConfig(n_subjects=n, missing=miss, seed=0))
            em_t, dir_t, res, ll_d = [], [], None, float("nan")
            for _ in range(a.repeats):  # interleaved: EM, then direct, then EM again ...
                t0 = time.perf_counter()
                res = fit_em(data.panel, EMConfig())
                em_t.append(time.perf_counter() - t0)
                if n <= DIRECT_MAX_N:
                    t0 = time.perf_counter()
                    ll_d = maximize_direct(
                        data.panel, initial_params(data.panel, EMConfig(), None)
                    )[1]
                    dir_t.append(time.perf_counter() - t0)
            tracemalloc.start()
            fit_em(data.panel, EMConfig())
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            goal = GOALS.get((n, miss))
            em_med = statistics.median(em_t)
            rows.append(
                {
                    "N": n,
                    "missing": f"{miss:.0%}",
                    "obs": data.panel.n_obs,
                    "em_s_median": round(em_med, 3),
                    "em_s_min": round(min(em_t), 3),
                    "goal_s": goal if goal else "",
                    "met": ("yes" if em_med < goal else "no") if goal else "",
                    "direct_s_median": round(statistics.median(dir_t), 2) if dir_t else "not run",
                    "direct_over_em": round(statistics.median(dir_t) / em_med, 1) if dir_t else "",
                    "loglik_em": round(res.loglik, 3),
                    "loglik_direct": round(ll_d, 3) if dir_t else "",
                    "starts_at_top": f"{res.n_top}/{len(res.final_logliks)}",
                    "peak_MiB": round(peak / 2**20, 1),
                    "accuracy": round(float((res.classes == data.classes).mean()), 3),
                }
            )
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    md = [
        "# EM fit time (t 5, K 3, AR(1), default EMConfig)",
        "",
        f"Machine: {cpu_name()}; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}; median of "
        f"{a.repeats} fits, interleaved with the direct maximizer (one BFGS start) where N <= {DIRECT_MAX_N:,}. "
        f"Load average (1 min) {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end: the "
        "machine is shared, and the same fit ran 3-6x slower when another job held the other core, "
        "so compare ratios measured in one window, not seconds across runs.",
        "",
        markdown_table(df),
        "",
    ]
    if a.against:
        md += against(a.against)
    atomic_write_text(out_dir("em_speed") / "em_speed.md", "\n".join(md))
    atomic_write_text(
        out_dir("em_speed") / "em_speed.json",
        json.dumps({"machine": cpu_name(), "rows": rows}, indent=1),
    )


if __name__ == "__main__":
    main()
