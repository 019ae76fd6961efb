"""Growth mixtures (class-specific trajectories, random slopes): agreement and recovery.

    make bench NAME=em_growth     # the claim: -> bench/ with its provenance

1. K = 1 with a random slope is the linear mixed model lme4 and nlme fit: on sleepstudy
   (lme4::lmer, REML = FALSE), Orthodont and BodyWeight (nlme::lme, method = "ML") and a
   simulated panel, the workbook's log-likelihood against R's (R in its own process; skipped
   without R). Goal: equal to 1e-4.
2. K >= 2 against the direct maximizer (BFGS on the observed log-likelihood with numerical
   gradients, none of the E or M steps) from 6 starts: the pooled one and random k-means
   seeds. Goal: no direct run more than 1e-3 above the fit, on fits with a finite maximum.
   Where flexmix fits the same model (all fixed effects class-specific, random intercept and
   slope with their covariance and the residual variance shared: FLXMRlmm(random = ~ time,
   varFix = c(Random = TRUE, Residual = TRUE)), membership FLXPmultinom(~ u) or constant), the
   simulated K = 2 fit and nlme's BodyWeight (K = 2, linear per class, random Time, constant
   membership) against flexmix's best of 3 random starts. Goal: at or above it less 1e-3.
3. Recovery: 60 simulated growth mixtures (N 200, 6 times, K = 2 with class-specific intercept
   and slope, random intercept and slope, identity errors, a membership covariate): bias and
   RMSE of every parameter, classification accuracy, coverage of the 95% intervals.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import out_dir, r_missing, run_r
from lib.core.io import atomic_write_text, markdown_table
from lib.core.provenance import machine_line
from lib.em import dietox_frame, fit_latent_lmm, load_bodyweight
from lib.em.growth import GrowthParams, growth_estep, pack_growth, unpack_growth
from lib.em.growthfit import growth_data, initial_growth
from lib.em.loaders import read_rdataset

AGREE_TOL = 1e-4
DIRECT_TOL = 1e-3
DIRECT_STARTS = 6
SIM_TERMS = dict(  # the simulated growth mixture's model, as simulate_growth draws it
    y="y",
    fixed=[],
    mixture=["time"],
    random=["time"],
    membership=["u"],
    subject="id",
    time="time",
    errors="identity",
)

R_CODE = r"""
suppressMessages({library(lme4); library(nlme)})
a <- commandArgs(TRUE)
sim <- read.csv(a[1])
m <- lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy, REML = FALSE)
cat("sleepstudy", sprintf("%.10f", as.numeric(logLik(m))), "\n")
o <- nlme::lme(distance ~ age, nlme::Orthodont, random = ~ age | Subject, method = "ML")
cat("Orthodont", sprintf("%.10f", as.numeric(logLik(o))), "\n")
b <- nlme::lme(weight ~ Time, nlme::BodyWeight, random = ~ Time | Rat, method = "ML")
cat("BodyWeight", sprintf("%.10f", as.numeric(logLik(b))), "\n")
s <- nlme::lme(y ~ time, sim, random = ~ time | id, method = "ML")
cat("simulated", sprintf("%.10f", as.numeric(logLik(s))), "\n")
"""

FLEXMIX_CODE = r"""
suppressMessages(library(flexmix))
d <- read.csv(commandArgs(TRUE)[1])
set.seed(1)
t0 <- proc.time()[["elapsed"]]
f <- stepFlexmix(FORMULA, data = d, k = 2, nrep = 3, verbose = FALSE,
                 model = FLXMRlmm(random = RANDOM, varFix = c(Random = TRUE, Residual = TRUE)),
                 concomitant = CONCOMITANT, control = list(iter.max = 2000, tolerance = 1e-8))
cat(sprintf("%.10f", as.numeric(logLik(f))), proc.time()[["elapsed"]] - t0, f@k, f@iter, "\n")
if (f@k == 2) {  # the estimates: membership logits per class, then each class's parameters
  g <- if (is(f@concomitant, "FLXPmultinom")) parameters(f, which = "concomitant") else
    matrix(log(prior(f) / prior(f)[1]), nrow = 1)
  cat("gamma", sprintf("%.17g", g), "\n")
  p <- parameters(f)  # coef (fixed), sigma2.Random (q x q), sigma2.Residual
  for (k in 1:2) cat("class", sprintf("%.17g", p[, k]), "\n")
}
"""
BODYWEIGHT = "BodyWeight, linear per class, random Time"
# where flexmix fits the workbook's K = 2 model: the panel's name in `direct`; y ~ x | subject,
# the random term and the membership model in flexmix's words; y, x, subject and membership
FLEXMIX_PANELS = {
    "simulated growth mixture": (
        ("y ~ time | id", "~ time", "FLXPmultinom(~ u)"),
        ("y", "time", "id", ["u"]),
    ),
    BODYWEIGHT: (
        ("weight ~ Time | Rat", "~ Time", "FLXPconstant()"),
        ("weight", "Time", "Rat", []),
    ),
}


def flexmix_k2(df: pd.DataFrame, panel: str) -> tuple[float, float, int, int, float] | None:
    """flexmix's log-likelihood, seconds, classes kept and iterations for a K = 2 model, and the
    workbook's log-likelihood at flexmix's estimates (equal where the models coincide); None
    without flexmix."""
    if r_missing("flexmix"):
        return None
    (formula, random, concomitant), (y, x, subject, membership) = FLEXMIX_PANELS[panel]
    code = (
        FLEXMIX_CODE.replace("FORMULA", formula)
        .replace("RANDOM", random)
        .replace("CONCOMITANT", concomitant)
    )
    lines = run_r(code, df, timeout=1800).strip().splitlines()
    ll, sec, k, iters = lines[0].split()
    at = float("nan")
    if int(k) == 2:
        gamma = np.array(lines[1].split()[1:], float).reshape(2, -1)
        est = np.array([line.split()[1:] for line in lines[2:4]], float)
        data, _ = growth_data(df, y, [], [x], [x], membership, subject, x)
        th = GrowthParams(
            np.zeros(0),
            est[:, :2],
            gamma,
            est[0, 2:6].reshape(2, 2),
            est[0, 6],
            structure="identity",
        )
        at = growth_estep(data, th).loglik
    return float(ll), float(sec), int(k), int(iters), at


def simulate_growth(seed: int, n: int = 200, t: int = 6) -> tuple[pd.DataFrame, dict]:
    """Two classes with their own intercept and slope, random intercept and slope, one membership covariate."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(n)
    p2 = 1.0 / (1.0 + np.exp(-(-0.3 + 1.0 * u)))
    cls = (rng.random(n) < p2).astype(int)
    time = np.arange(t, dtype=float)
    G = np.array([[0.5, 0.05], [0.05, 0.04]])
    b = rng.multivariate_normal(np.zeros(2), G, n)
    B = np.array([[0.0, 1.0], [1.0, 0.4]])
    y = (B[cls, 0] + b[:, 0])[:, None] + (B[cls, 1] + b[:, 1])[:, None] * time
    y = y + rng.normal(0.0, 0.6, (n, t))
    df = pd.DataFrame(
        {
            "id": np.repeat(np.arange(n), t),
            "time": np.tile(time, n),
            "y": y.ravel(),
            "u": np.repeat(u, t),
        }
    )
    truth = {
        "class1[(intercept)]": 0.0,
        "class1[time]": 1.0,
        "class2[(intercept)]": 1.0,
        "class2[time]": 0.4,
        "gamma[2][(intercept)]": -0.3,
        "gamma[2][u]": 1.0,
        "sd[(intercept)]": np.sqrt(0.5),
        "sd[time]": 0.2,
        "corr[(intercept),time]": 0.05 / np.sqrt(0.5 * 0.04),
        "sigma_e": 0.6,
    }
    return df, {"truth": truth, "classes": cls}


def quiet(fn):
    """Call `fn` with the fits' notes silenced (they are not under test here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def direct_best(fit, starts: int, seed: int) -> float:
    """The best log-likelihood of BFGS (numerical gradient, likelihood only) from several starts."""
    data, like = fit.data, fit.params
    rng = np.random.default_rng(seed)
    best = -np.inf
    for s in range(starts):
        th0 = initial_growth(data, like.K, like.structure, None if s == 0 else rng)
        th0 = th0.__class__(th0.beta, th0.B, like.gamma * 0, th0.G, th0.se2, th0.rho, th0.structure)

        def f(x: np.ndarray, th0=th0) -> float:
            try:
                with np.errstate(all="ignore"):
                    v = growth_estep(data, unpack_growth(x, th0)).loglik
            except (np.linalg.LinAlgError, ValueError):
                return 1e300
            return -v / data.panel.N if np.isfinite(v) else 1e300

        res = quiet(
            lambda f=f, th0=th0: minimize(
                f,
                pack_growth(th0),
                method="BFGS",
                jac="3-point",
                options={"gtol": 1e-7, "maxiter": 3000},
            )
        )
        best = max(best, -res.fun * data.panel.N)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--replicates", type=int, default=60)
    args = ap.parse_args()
    why = r_missing("lme4", "nlme")
    sim, _ = simulate_growth(1000)
    k1 = {
        "sleepstudy": (read_rdataset("lme4", "sleepstudy", 180), "Reaction", "Days", "Subject"),
        "Orthodont": (read_rdataset("nlme", "Orthodont", 108), "distance", "age", "Subject"),
        "BodyWeight": (load_bodyweight(), "weight", "Time", "Rat"),
        "simulated": (sim, "y", "time", "id"),
    }
    r_ll = {}
    if why is None:
        out = run_r(R_CODE, sim)
        r_ll = {k: float(v) for k, v in (line.split() for line in out.strip().splitlines())}
    agree = []
    for name, (df, y, x, subj) in k1.items():
        t0 = time.perf_counter()
        f = quiet(
            lambda df=df, y=y, x=x, subj=subj: fit_latent_lmm(
                df,
                y=y,
                fixed=[x],
                membership=[],
                subject=subj,
                time=x,
                K=1,
                errors="identity",
                random=[x],
            )
        )
        row = {
            "panel": name,
            "K": 1,
            "lib_em": round(f.loglik, 6),
            "fit_s": round(time.perf_counter() - t0, 2),
        }
        if name in r_ll:
            gap = f.loglik - r_ll[name]
            row.update(
                R=round(r_ll[name], 6),
                lib_em_minus_R=float(f"{gap:.2g}"),
                met="yes" if gap >= -AGREE_TOL else "NO",
            )
        else:
            row.update(R=f"not run ({why})")
        agree.append(row)
        print(row, flush=True)
    direct_cases = [
        (
            "dietox, quadratic per class, random week, C(Cu)",
            2,
            lambda: fit_latent_lmm(
                dietox_frame(),
                y="log_weight",
                fixed=[],
                mixture="week + I(week**2)",
                random=["week"],
                membership="C(Cu)",
                subject="Pig",
                time="Time",
                K=2,
                errors="ar1",
            ),
        ),
        (
            BODYWEIGHT,
            2,
            lambda: fit_latent_lmm(
                load_bodyweight(),
                y="weight",
                fixed=[],
                mixture=["Time"],
                random=["Time"],
                membership=[],
                subject="Rat",
                time="Time",
                K=2,
                errors="identity",
            ),
        ),
        *(
            ("simulated growth mixture", K, lambda K=K: fit_latent_lmm(sim, K=K, **SIM_TERMS))
            for K in (2, 3)
        ),
    ]
    direct = []
    for name, K, make in direct_cases:
        t0 = time.perf_counter()
        f = quiet(make)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        d = direct_best(f, DIRECT_STARTS, seed=K)
        sep = bool(np.abs(f.params.gamma).max() > 15)
        gap = d - f.loglik
        direct.append(
            {
                "panel": name,
                "K": K,
                "lib_em": round(f.loglik, 4),
                "direct_best": round(d, 4),
                "gap": float(f"{gap:.2g}"),
                "separated": "yes" if sep else "",
                "met": "yes" if gap <= DIRECT_TOL or sep else "NO",
                "fit_s": round(fit_s, 1),
                "direct_s": round(time.perf_counter() - t0, 1),
            }
        )
        print(direct[-1], flush=True)
    flex_rows = []
    for panel, data in (("simulated growth mixture", sim), (BODYWEIGHT, load_bodyweight())):
        fit_row = next(d for d in direct if d["panel"] == panel and d["K"] == 2)
        flex = flexmix_k2(data, panel)
        if flex is None:
            flex_rows.append({"panel": panel, "K": 2, "flexmix": "not run (no R flexmix)"})
        else:
            gap = fit_row["lib_em"] - flex[0]
            flex_rows.append(
                {
                    "panel": panel,
                    "K": 2,
                    "membership": FLEXMIX_PANELS[panel][0][2],
                    "lib_em": fit_row["lib_em"],
                    "flexmix": round(flex[0], 4),
                    "lib_em_minus_flexmix": float(f"{gap:.2g}"),
                    "lib_at_flexmix_estimates_minus_flexmix": float(f"{flex[4] - flex[0]:.2g}"),
                    "flexmix_classes_kept": flex[2],
                    "flexmix_iterations": flex[3],
                    "lib_em_s": fit_row["fit_s"],
                    "flexmix_s": round(flex[1], 1),
                    "met": "yes" if gap >= -DIRECT_TOL else "NO",
                }
            )
        print(flex_rows[-1], flush=True)
    rows, acc = [], []
    for rep in range(args.replicates):
        df, info = simulate_growth(rep)
        f = quiet(lambda df=df: fit_latent_lmm(df, K=2, **SIM_TERMS))
        tab = quiet(lambda f=f: f.params_table).set_index("parameter")
        for name, true in info["truth"].items():
            est, se = tab.loc[name, "estimate"], tab.loc[name, "se"]
            rows.append(
                {
                    "parameter": name,
                    "truth": true,
                    "estimate": est,
                    "covered": bool(abs(est - true) <= 1.96 * se) if np.isfinite(se) else np.nan,
                }
            )
        acc.append(float((f.posterior["class"].to_numpy() - 1 == info["classes"]).mean()))
        print(f"replicate {rep + 1}/{args.replicates}", flush=True)
    rec = pd.DataFrame(rows)
    summ = (
        rec.groupby("parameter", sort=False)
        .apply(
            lambda g: pd.Series(
                {
                    "truth": g["truth"].iloc[0],
                    "mean": g["estimate"].mean(),
                    "bias": g["estimate"].mean() - g["truth"].iloc[0],
                    "rmse": float(np.sqrt(((g["estimate"] - g["truth"]) ** 2).mean())),
                    "coverage_95": g["covered"].mean(),
                }
            ),
            include_groups=False,
        )
        .round(3)
        .reset_index()
    )
    md = [
        "# Growth mixtures: agreement with lme4 / nlme and the direct maximizer, and recovery",
        "",
        f"Machine: {machine_line()}. One run of `bench/em_growth.py`.",
        "",
        f"## K = 1 with a random slope against R (goal: equal to {AGREE_TOL:g})",
        "",
        markdown_table(pd.DataFrame(agree).astype(object)),
        "",
        f"## K >= 2 against the best of {DIRECT_STARTS} direct maximizations (goal: none above the fit by more than {DIRECT_TOL:g})",
        "",
        markdown_table(pd.DataFrame(direct)),
        "",
        "## The same K = 2 models in flexmix (FLXMRlmm, varFix both; best of 3 starts)",
        "",
        "Both fit the same model: class-specific intercept and slope, a random intercept and slope "
        "with their covariance and the residual variance shared by the classes (varFix = "
        "c(Random = TRUE, Residual = TRUE)), identity errors; membership on u (FLXPmultinom) for "
        "the simulated panel, constant (FLXPconstant, the workbook's membership=[]) for "
        "nlme's BodyWeight (16 rats, 11 weighings). That the two likelihoods are the same "
        "function: lib_at_flexmix_estimates_minus_flexmix, the workbook's log-likelihood at "
        "flexmix's estimates less flexmix's own (0 up to rounding). flexmix's seconds are timed "
        "inside R (its 3 starts each capped at 2,000 EM iterations: flexmix_iterations is the "
        "best start's, and 2000 means it stopped at the cap, still climbing); lib_em_s is the "
        "fit's time in the table above.",
        "",
        markdown_table(pd.DataFrame(flex_rows).astype(object)),
        "",
        f"## Recovery over {args.replicates} simulated growth mixtures (N 200, t 6, K 2, identity errors)",
        "",
        f"Classification accuracy: mean {np.mean(acc):.3f} (min {np.min(acc):.3f}).",
        "",
        markdown_table(summ),
        "",
    ]
    out = out_dir("em_growth")
    atomic_write_text(out / "em_growth.md", "\n".join(md))
    atomic_write_text(
        out / "em_growth.json",
        json.dumps(
            {
                "agreement": agree,
                "direct": direct,
                "flexmix": flex_rows,
                "recovery": summ.to_dict("records"),
                "accuracy": acc,
            },
            indent=1,
            default=str,
        ),
    )


if __name__ == "__main__":
    main()
