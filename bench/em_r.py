"""The same fits in R: lme4 (K = 1) and flexmix (K = 2, 3) beside lib.em on the wage panel; skips without R.

    make bench NAME=em_r          # the claim: -> bench/ with its provenance

Models that are the same likelihood in both:
- K = 1, identity errors, fixed effects exper10, exper10sq, union, married: lme4::lmer(..., REML = FALSE)
  fits the random-intercept model, whose log-likelihood must equal lib.em's K = 1 fit.
- K = 2 and 3 without fixed effects (each class its own mean, a shared random-intercept and error
  variance, membership on educ, black, hisp): flexmix with FLXMRlmm(random = ~1, varFix = both)
  and FLXPmultinom, from 3 random starts (stepFlexmix; its lmm M-step is slow) against lib.em's default fit.
Times are wall seconds of each fit in its own process (R's include nothing of the start-up).
Install R with: apt-get install r-base-core r-cran-lme4 r-cran-flexmix
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import out_dir, r_missing, run_r
from lib.core.io import atomic_write_text, markdown_table
from lib.core.provenance import cpu_name
from lib.em import fit_latent_lmm, load_wage_panel

FIXED = ["exper10", "exper10sq", "union", "married"]
MEMBER = ["educ", "black", "hisp"]

R_CODE = r"""
suppressMessages({library(lme4); library(flexmix)})
d <- read.csv(commandArgs(TRUE)[1])
out <- list()
t0 <- proc.time()[["elapsed"]]
m <- lmer(lwage ~ exper10 + exper10sq + union + married + (1 | nr), data = d, REML = FALSE)
out$lme4_k1 <- c(loglik = as.numeric(logLik(m)), seconds = proc.time()[["elapsed"]] - t0)
for (k in c(2, 3)) {
  set.seed(1)
  t0 <- proc.time()[["elapsed"]]
  f <- stepFlexmix(lwage ~ 1 | nr, data = d, k = k, nrep = 3, verbose = FALSE,
                   model = FLXMRlmm(random = ~ 1, varFix = c(Random = TRUE, Residual = TRUE)),
                   concomitant = FLXPmultinom(~ educ + black + hisp),
                   control = list(iter.max = 2000, tolerance = 1e-8))
  out[[paste0("flexmix_k", k)]] <- c(loglik = as.numeric(logLik(f)), seconds = proc.time()[["elapsed"]] - t0,
                                    k_found = f@k)
}
for (n in names(out)) cat(n, paste(names(out[[n]]), out[[n]], sep = "=", collapse = " "), "\n")
"""


def main() -> None:
    why = r_missing("lme4", "flexmix")
    if why:
        print(
            f"skipped: {why}; install r-base-core r-cran-lme4 r-cran-flexmix to run this comparison"
        )
        return
    df = load_wage_panel()
    out = run_r(R_CODE, df, timeout=3600)
    res_r = {}
    for line in out.strip().splitlines():
        name, *kv = line.split()
        res_r[name] = {k: float(v) for k, v in (x.split("=") for x in kv)}
    rows = []
    warnings.simplefilter("ignore")
    cases = [
        ("lme4_k1", 1, FIXED, [], "identity"),
        ("flexmix_k2", 2, [], MEMBER, "identity"),
        ("flexmix_k3", 3, [], MEMBER, "identity"),
    ]
    for key, K, fixed, member, errors in cases:
        t0 = time.perf_counter()
        fit = fit_latent_lmm(
            df,
            y="lwage",
            fixed=fixed,
            membership=member,
            subject="nr",
            time="year",
            K=K,
            errors=errors,
        )
        sec = time.perf_counter() - t0
        rr = res_r[key]
        rows.append(
            {
                "model": f"K {K}, identity errors, fixed {', '.join(fixed) or 'none'}",
                "reference": key.split("_")[0],
                "loglik_lib_em": round(fit.result.loglik, 4),
                "loglik_R": round(rr["loglik"], 4),
                "lib_em_minus_R": float(f"{fit.result.loglik - rr['loglik']:.3g}"),
                "lib_em_s": round(sec, 2),
                "R_s": round(rr["seconds"], 2),
                "R_classes_kept": int(rr.get("k_found", 1)),
            }
        )
        print(rows[-1], flush=True)
    tab = pd.DataFrame(rows)
    md = [
        "# lib.em beside R (lme4, flexmix) on the Vella-Verbeek wage panel (545 men x 8 years)",
        "",
        f"Machine: {cpu_name()}; one run of `bench/em_r.py`. flexmix: stepFlexmix, 3 random starts, "
        "tolerance 1e-8; lib.em: the default fit (10 starts, polish). A positive difference means lib.em "
        "found the higher maximum of the same likelihood.",
        "",
        markdown_table(tab),
        "",
    ]
    atomic_write_text(out_dir("em_r") / "em_r.md", "\n".join(md))
    atomic_write_text(
        out_dir("em_r") / "em_r.json", json.dumps({"machine": cpu_name(), "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
