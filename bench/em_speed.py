"""Fit time of the latent-subgroup EM (t 5, K 3, AR(1)) for N 300 to 100,000, balanced and with 20% missing.

    .venv/bin/python bench/em_speed.py            # writes bench/em_speed.{md,json}

Each fit uses the default EMConfig (10 starts x 6 short EM iterations, 40 more for the better
half, the best 3 to convergence, more rounds of starts only when the best mode was found once, the direct polish).
Where it can run in reasonable time (N <= 10,000) the direct maximizer (maximize_direct, BFGS
from the deterministic start, one start only) is timed in the same process, interleaved with
the EM fits, and the ratio is reported; its log-likelihood is beside EM's. Peak memory:
tracemalloc peak of one extra EM fit beyond the data.
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "OPENBLAS_NUM_THREADS", "1"
)  # before numpy: small t x t algebra, threads only contend

import argparse
import json
import statistics
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.em import EMConfig, SimConfig, fit_em, maximize_direct, simulate
from lib.em.fit import initial_params
from lib.io import atomic_write_text
from lib.runinfo import cpu_name, markdown_table

HERE = Path(__file__).resolve().parent
GOALS = {(300, 0.0): 0.2, (300, 0.2): 0.2, (100_000, 0.0): 10.0, (100_000, 0.2): 30.0}
DIRECT_MAX_N = 10_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[300, 10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    import pandas as pd

    rows = []
    warnings.simplefilter("ignore")
    for n in a.sizes:
        for miss in (0.0, 0.2):
            data = simulate(SimConfig(n_subjects=n, missing=miss, seed=0))
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
        "The machine was shared with other jobs while measuring, so compare the ratio, not the seconds, "
        "across runs.",
        "",
        markdown_table(df),
        "",
    ]
    atomic_write_text(HERE / "em_speed.md", "\n".join(md))
    atomic_write_text(
        HERE / "em_speed.json", json.dumps({"machine": cpu_name(), "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
