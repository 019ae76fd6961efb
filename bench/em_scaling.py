"""Fit time and peak memory of the latent-subgroup EM for N = 300 .. 100,000 subjects (t 5, K 3, AR(1)).

    .venv/bin/python bench/em_scaling.py            # writes bench/em_scaling.{md,json}

Each fit uses the default EMConfig (5 starts x 15 short EM iterations, then the best start to
convergence, SQUAREM on). Time: median of --repeats fits on the same data (simulation excluded).
Peak memory: tracemalloc peak of one extra fit (numpy arrays are traced), beyond the data.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: small t x t algebra, threads only contend

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.runinfo import cpu_name, markdown_table  # noqa: E402
from lib.em import EMConfig, SimConfig, fit_em, simulate  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    import pandas as pd

    rows = []
    for n in a.sizes:
        data = simulate(SimConfig(n_subjects=n, seed=0))
        times, res = [], None
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            res = fit_em(data.panel, EMConfig())
            times.append(time.perf_counter() - t0)
        tracemalloc.start()
        fit_em(data.panel, EMConfig())
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append({"N": n, "t": 5, "K": 3, "fit_s_median": round(statistics.median(times), 3),
                     "fit_s_min": round(min(times), 3), "iterations": res.n_iter,
                     "peak_MiB": round(peak / 2 ** 20, 1), "data_MiB": round(data.panel.W.nbytes / 2 ** 20
                                                                           + data.panel.y.nbytes / 2 ** 20, 1),
                     "accuracy": round(float((res.classes == data.classes).mean()), 3)})
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    md = ["# EM fit time and peak memory (t 5, K 3, AR(1), default EMConfig: 5 starts)", "",
          f"Machine: {cpu_name()}; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}; "
          f"median of {a.repeats} fits. The machine was shared with other jobs while measuring.", "",
          markdown_table(df), ""]
    (HERE / "em_scaling.md").write_text("\n".join(md))
    (HERE / "em_scaling.json").write_text(json.dumps({"machine": cpu_name(), "repeats": a.repeats,
                                                      "rows": rows}, indent=2) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
