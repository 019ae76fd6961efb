"""lib.em's speed against nlme where both fit the same likelihood, and on panels nlme cannot fit; skips R without it.

    make bench NAME=em_nlme       # the claim: -> bench/ with its provenance

K = 1 is the linear mixed model with a random intercept and identity or continuous-time AR(1)
errors: nlme::lme(..., random = ~1 | id, correlation = corCAR1(form = ~ time | id),
method = "ML") maximizes the same log-likelihood. Two public panels the other benchmarks do not
use: plm's EmplUK (140 firms, 1,031 rows, log employment on log wage and log capital) and nlme's
BodyWeight (16 rats x 11 weighings, weight on time). Rounds are interleaved: each round times
every lib.em fit in this process, then every nlme fit in one Rscript process (timed inside R,
after a warm-up fit, so R's start-up and package loading are not counted). Beside them, fits
nlme has no model for (K = 2 and 3 latent classes on EmplUK, membership on its sector as a
category) and a pure-noise panel of 1e5 rows (N 20,000, t 5, AR(1), K 2).
Install R with: apt-get install r-base-core r-cran-nlme
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import out_dir, r_missing
from lib.core.io import atomic_write_text, markdown_table
from lib.core.provenance import machine_line
from lib.em import EMConfig, Panel, fit_em, fit_latent_lmm, load_bodyweight, load_empluk

PANELS = {
    "EmplUK": dict(
        load=load_empluk,
        y="log_emp",
        fixed=["log_wage", "log_capital"],
        subject="firm",
        time="year",
        r_formula="log_emp ~ log_wage + log_capital",
    ),
    "BodyWeight": dict(
        load=load_bodyweight,
        y="weight",
        fixed=["Time"],
        subject="Rat",
        time="Time",
        r_formula="weight ~ Time",
    ),
}
ERRORS = {"ar1": "corCAR1(form = ~ {time} | {subject})", "identity": "NULL"}
SLACK = 2.0  # goal: K = 1 within this factor of nlme's time ...
FLOOR_S = 0.1  # ... or under this where nlme needs less than FLOOR_NLME_S
FLOOR_NLME_S = 0.05
LOGLIK_TOL = 1e-4  # and at least nlme's log-likelihood less this
CLASS_GOAL_S = 1.0  # K = 2, 3 on EmplUK
NOISE_GOAL_S = 20.0  # the 1e5-row noise panel

R_HEAD = "suppressMessages(library(nlme))\nres <- c()\n"
R_FIT = """d <- read.csv("{csv}")
f <- function() lme({formula}, data = d, random = ~ 1 | {subject}, correlation = {corr}, method = "ML")
m <- f()
t0 <- proc.time()[["elapsed"]]; m <- f(); s <- proc.time()[["elapsed"]] - t0
cat("{key}", sprintf("%.10f", as.numeric(logLik(m))), s, "\\n")
"""


def r_round(script: Path) -> dict[str, tuple[float, float]]:
    """One Rscript process fitting every K = 1 model: key -> (log-likelihood, seconds)."""
    r = subprocess.run(
        ["Rscript", str(script)], capture_output=True, text=True, timeout=600, check=False
    )
    if r.returncode:
        raise SystemExit(f"R failed: {r.stderr[-2000:]}")
    out = {}
    for line in r.stdout.strip().splitlines():
        key, ll, sec = line.split()
        out[key] = (float(ll), float(sec))
    return out


def timed(fn) -> tuple[float, object]:
    """Seconds and result of one call (warnings are the fits' notes, not under test here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        res = fn()
        return time.perf_counter() - t0, res


def noise_panel(seed: int = 0) -> Panel:
    """Pure noise: N 20,000 subjects x 5 times, one noise covariate, no membership covariates."""
    rng = np.random.default_rng(seed)
    N, t = 20_000, 5
    return Panel(rng.standard_normal((N, t)), rng.standard_normal((N, t, 1)), np.zeros((N, 0)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds for the K = 1 fits")
    args = ap.parse_args()
    why = r_missing("nlme")
    frames = {name: p["load"]() for name, p in PANELS.items()}
    k1 = [(name, err) for name in PANELS for err in ERRORS]
    ours: dict[tuple, list] = {c: [] for c in k1}
    theirs: dict[tuple, list] = {c: [] for c in k1}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "fit.R"
        parts = [R_HEAD]
        for name, p in PANELS.items():
            csv = Path(tmp) / f"{name}.csv"
            frames[name].to_csv(csv, index=False)
            for err, corr_r in ERRORS.items():
                corr = corr_r.format(**p)
                parts.append(
                    R_FIT.format(
                        csv=csv, formula=p["r_formula"], corr=corr, key=f"{name}:{err}", **p
                    )
                )
        script.write_text("".join(parts))
        for rnd in range(args.rounds):
            for name, err in k1:
                p = PANELS[name]
                kw = {k: p[k] for k in ("y", "fixed", "subject", "time")}
                ours[(name, err)].append(
                    timed(
                        lambda name=name, err=err, kw=kw: (
                            fit_latent_lmm(
                                frames[name], membership=[], K=1, errors=err, **kw
                            ).result
                        )
                    )
                )
            if why is None:
                for key, v in r_round(script).items():
                    theirs[tuple(key.split(":"))].append(v)
            print(f"round {rnd + 1}/{args.rounds} done", flush=True)
    rows = []
    for name, err in k1:
        sec = float(np.median([s for s, _ in ours[(name, err)]]))
        ll = ours[(name, err)][-1][1].loglik
        row = {"panel": name, "K": 1, "errors": err, "lib_em_s": round(sec, 3)}
        if theirs[(name, err)]:
            r_ll = theirs[(name, err)][-1][0]
            r_s = float(np.median([s for _, s in theirs[(name, err)]]))
            goal = FLOOR_S if r_s < FLOOR_NLME_S else SLACK * r_s
            row.update(
                nlme_s=round(r_s, 3),
                lib_em_over_nlme=round(sec / r_s, 2),
                goal_s=round(goal, 3),
                loglik_lib_em=round(ll, 6),
                loglik_nlme=round(r_ll, 6),
                lib_em_minus_nlme=float(f"{ll - r_ll:.2g}"),
                met="yes" if sec <= goal and ll >= r_ll - LOGLIK_TOL else "NO",
            )
        else:
            row.update(loglik_lib_em=round(ll, 6), nlme_s=f"not run ({why})")
        rows.append(row)
        print(row, flush=True)
    empl = frames["EmplUK"]
    p = PANELS["EmplUK"]
    kw = {k: p[k] for k in ("y", "fixed", "subject", "time")}
    for K in (2, 3):
        sec, res = timed(
            lambda K=K: fit_latent_lmm(empl, membership="C(sector)", K=K, errors="ar1", **kw).result
        )
        rows.append(
            {
                "panel": "EmplUK, membership C(sector)",
                "K": K,
                "errors": "ar1",
                "lib_em_s": round(sec, 3),
                "goal_s": CLASS_GOAL_S,
                "loglik_lib_em": round(res.loglik, 6),
                "met": "yes" if sec <= CLASS_GOAL_S else "NO",
            }
        )
        print(rows[-1], flush=True)
    sec, res = timed(lambda: fit_em(noise_panel(), EMConfig(K=2, structure="ar1")))
    rows.append(
        {
            "panel": "noise, N 20,000 x 5 (1e5 rows)",
            "K": 2,
            "errors": "ar1",
            "lib_em_s": round(sec, 2),
            "goal_s": NOISE_GOAL_S,
            "loglik_lib_em": round(res.loglik, 3),
            "met": "yes" if sec <= NOISE_GOAL_S else "NO",
        }
    )
    print(rows[-1], flush=True)
    tab = pd.DataFrame(rows)
    tab = tab.astype(object).where(tab.notna(), "")
    md = [
        "# lib.em against nlme (K = 1, same likelihood) and on models nlme has no fit for",
        "",
        f"Machine: {machine_line()}. lib.em's default fit (its starts, EM, "
        "then BFGS on the analytic score). K = 1: median of "
        f"{args.rounds} interleaved rounds, nlme timed inside R after a warm-up fit. Goals: K = 1 "
        f"within {SLACK:g}x nlme's time (under {FLOOR_S:g} s where nlme needs less than "
        f"{FLOOR_NLME_S:g} s) with a log-likelihood at least nlme's less {LOGLIK_TOL:g}; K = 2, 3 "
        f"on EmplUK under {CLASS_GOAL_S:g} s; the noise panel under {NOISE_GOAL_S:g} s. One run "
        "each for the last three rows.",
        "",
        markdown_table(tab),
        "",
    ]
    out = out_dir("em_nlme")
    atomic_write_text(out / "em_nlme.md", "\n".join(md))
    atomic_write_text(out / "em_nlme.json", json.dumps({"rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
