"""Simulation study: bias, RMSE and interval coverage of every parameter; LRT size and power."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .fit import EMConfig
from .inference import lrt, natural, pack, param_table, spec_of
from .simulate import PanelSimConfig, default_gamma


@dataclass(frozen=True)
class StudyConfig:
    """Design of the study (defaults: N 300, t 5, K 3, AR(1), the reference design of docs/em.md)."""

    n_replicates: int = 100
    n_subjects: int = 300
    n_times: int = 5
    mu: tuple[float, ...] = (-3.0, 0.0, 3.0)
    structure: str = "ar1"
    n_u: int = 2
    test_covariate: int = 2  # the membership covariate (1-based) whose LRT is studied
    weak_effect: float = (
        0.3  # the tested covariate's coefficients are scaled by this for a second power row
    )
    n_starts: int = 3
    seed: int = 0

    def sim(self, r: int, scale: float = 1.0) -> PanelSimConfig:
        """Replicate r's truth with the tested covariate's coefficients times `scale` (0: the null)."""
        g = np.asarray(default_gamma(len(self.mu), self.n_u), float)
        g[:, self.test_covariate] *= scale
        tag = {1.0: 0, 0.0: 1}.get(scale, 2)
        return PanelSimConfig(
            n_subjects=self.n_subjects,
            n_times=self.n_times,
            mu=self.mu,
            gamma=tuple(map(tuple, g)),
            n_u=self.n_u,
            structure=self.structure,
            seed=self.seed * 1_000_003 + 3 * r + tag,
        )

    def em(self) -> EMConfig:
        """The EM settings used for every fit."""
        return EMConfig(
            K=len(self.mu), structure=self.structure, n_starts=self.n_starts, seed=self.seed
        )


def one_replicate(cfg: StudyConfig, r: int) -> tuple[pd.DataFrame, dict]:
    """Fit an alternative, a null and a weak-effect data set: the parameter rows and the LRT record."""
    from .simulate import simulate

    em = cfg.em()
    alt = simulate(cfg.sim(r))
    name = f"u{cfg.test_covariate}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test_alt = lrt(alt.panel, [name], em)
        tab = param_table(test_alt.full, alt.panel)
        test_null = lrt(simulate(cfg.sim(r, 0.0)).panel, [name], em)
        test_weak = lrt(simulate(cfg.sim(r, cfg.weak_effect)).panel, [name], em)
    truth = natural(pack(alt.truth), spec_of(alt.truth))
    tab = tab.iloc[: truth.size].assign(truth=truth, replicate=r)
    tab["truth_unconstrained"] = pack(alt.truth)
    rec = {
        "replicate": r,
        "LR_alt": test_alt.table["LR"].iloc[0],
        "LR_null": test_null.table["LR"].iloc[0],
        "LR_weak": test_weak.table["LR"].iloc[0],
        "weak_effect": cfg.weak_effect,
        "df": int(test_alt.table["df"].iloc[0]),
        "n_dropped": 1,
        "iterations": test_alt.full.n_iter,
        "accuracy": float((test_alt.full.classes == alt.classes).mean()),
    }
    return tab, rec


def summarize_study(params: pd.DataFrame) -> pd.DataFrame:
    """Per parameter: truth, mean, bias, RMSE (natural and unconstrained scale), mean SE, SD, coverage."""
    p = params.assign(
        err=params["estimate"] - params["truth"],
        err_u=params["unconstrained"] - params["truth_unconstrained"],
        covered=(params["ci_low"] <= params["truth"]) & (params["truth"] <= params["ci_high"]),
    )
    g = p.groupby("parameter", sort=False)
    out = pd.DataFrame(
        {
            "truth": g["truth"].first(),
            "mean": g["estimate"].mean(),
            "bias": g["err"].mean(),
            "rmse": g["err"].apply(lambda e: float(np.sqrt(np.mean(e**2)))),
            "rmse_unconstrained": g["err_u"].apply(lambda e: float(np.sqrt(np.mean(e**2)))),
            "mean_se": g["se"].mean(),
            "sd_estimate": g["estimate"].std(),
            "coverage_95": g["covered"].mean(),
        }
    )
    return out.reset_index()


def summarize_lrt(rec: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Rejection rates of the LRT at `alpha` under the null (size) and the alternative (power).

    The row with the naive df (the difference in covariate counts, 1 here) shows why
    df = (K - 1) x dropped is the right reference distribution.
    """
    from scipy.stats import chi2

    df = int(rec["df"].iloc[0])
    rows = []
    for d, label in (
        (df, "(K-1) x dropped"),
        (int(rec["n_dropped"].iloc[0]), "naive: covariates dropped"),
    ):
        crit = chi2.ppf(1 - alpha, d)
        rows.append(
            {
                "df": d,
                "df_rule": label,
                "size (null)": float((rec["LR_null"] > crit).mean()),
                "power (alternative)": float((rec["LR_alt"] > crit).mean()),
                f"power (effect x{rec['weak_effect'].iloc[0]:g})": float(
                    (rec["LR_weak"] > crit).mean()
                ),
                "mean LR (null)": float(rec["LR_null"].mean()),
                "replicates": len(rec),
            }
        )
    return pd.DataFrame(rows)


@dataclass
class StudyResult:
    """Raw per-replicate rows and the two summary tables."""

    params: pd.DataFrame
    records: pd.DataFrame
    summary: pd.DataFrame
    lrt: pd.DataFrame


def run_study(cfg: StudyConfig = StudyConfig(), progress: bool = True) -> StudyResult:
    """Run all replicates (sequentially; each replicate is seeded on its own)."""
    if cfg.n_replicates < 1:
        raise ValueError("n_replicates must be >= 1")
    tabs, recs = [], []
    for r in tqdm(range(cfg.n_replicates), desc="simulation study", disable=not progress):
        tab, rec = one_replicate(cfg, r)
        tabs.append(tab)
        recs.append(rec)
    params = pd.concat(tabs, ignore_index=True)
    records = pd.DataFrame(recs)
    return StudyResult(params, records, summarize_study(params), summarize_lrt(records))
