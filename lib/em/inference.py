"""Inference for a fitted latent-subgroup model: SEs, intervals, criteria, classification, LRT.

Standard errors come from the observed information, a numerical Hessian of the observed-data
log-likelihood on the unconstrained scale of lib.em.params.pack (alpha, mu, gamma as they are;
log sigma_b, log sigma_e, atanh rho or logit rho; for an unstructured error covariance the
log-Cholesky factor of S, which absorbs sigma_b^2), mapped back by the delta method.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm
from statsmodels.tools.numdiff import approx_fprime, approx_hess3

from .config import EMConfig, EmptyClassError
from .diagnostics import separated_classes
from .estep import loglik
from .fit import EMResult, fit_em
from .mstep import ridge_hessian
from .panel import Panel
from .params import Params, Spec, pack, spec_of, unpack, x_to_rho
from .polish import maximize_direct
from .scaling import Scaling

__all__ = [
    "Spec",
    "bic_over_k",
    "classification_table",
    "criteria",
    "lrt",
    "maximize_direct",
    "natural",
    "observed_information",
    "pack",
    "pad_gamma",
    "param_names",
    "param_table",
    "spec_of",
    "unpack",
]

Z95 = float(norm.ppf(0.975))


def param_names(s: Spec, w_names: tuple[str, ...], u_names: tuple[str, ...]) -> list[str]:
    """Names of the natural-scale parameters, in the order of natural()."""
    names = [f"alpha[{w}]" for w in w_names] + [f"mu[{k + 1}]" for k in range(s.K)]
    names += [f"gamma[{k + 1}][{u}]" for k in range(1, s.K) for u in ("(intercept)", *u_names)]
    if s.structure == "unstructured":
        names += [f"Sigma[{s.times[a]:g},{s.times[b]:g}]" for a, b in zip(*np.tril_indices(s.T))]
    else:
        names += ["sigma_b", "sigma_e"] + (["rho"] if s.structure == "ar1" else [])
    return names


def natural(x: np.ndarray, s: Spec) -> np.ndarray:
    """Natural-scale parameters (SDs, rho, or Sigma entries) from the unconstrained vector."""
    n0 = s.n_mean
    if s.structure == "unstructured":
        S = unpack(x, s).S
        return np.concatenate([x[:n0], S[np.tril_indices(s.T)]])
    cov = x[n0:]
    out = [np.exp(cov[0]), np.exp(cov[1])]
    if s.structure == "ar1":
        out.append(unpack(x, s).rho)
    return np.concatenate([x[:n0], out])


def loglik_vec(x: np.ndarray, panel: Panel, s: Spec) -> float:
    """Observed-data log-likelihood at an unconstrained vector (-inf where Sigma is not PD)."""
    try:
        with np.errstate(all="ignore"):
            return loglik(panel, unpack(x, s))
    except (np.linalg.LinAlgError, ValueError):
        return -np.inf


def observed_information(
    panel: Panel, th: Params, gamma_ridge: float = 0.0, scaling: Scaling | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Minus the numerical Hessian of the (ridge-penalized) log-likelihood, unconstrained scale,
    with the factors D (d x / d x_standard) that carry it to the user's units: info / D D'.

    With `scaling` the differences are taken on the standard scale the fit ran on (steps of a
    sensible size whatever the units), where the matrix is also inverted: in the user's units
    its entries can span 1e80 and a pseudo-inverse would drop the small ones.
    """
    s = spec_of(th)
    D = np.ones(len(pack(th))) if scaling is None else scaling.factors(s)
    inner_th, inner = (th, panel) if scaling is None else (scaling.inward(th), scaling.panel(panel))
    info = -approx_hess3(pack(inner_th), loglik_vec, args=(inner, s))
    if gamma_ridge and s.K > 1:
        i = s.p + s.K
        sl = slice(i, i + (s.K - 1) * s.d)
        info[sl, sl] += ridge_hessian(s.K, s.d, gamma_ridge) * np.outer(D[sl], D[sl])
    return info, D


def param_table(result: EMResult, panel: Panel, level: float = 0.95) -> pd.DataFrame:
    """Estimates, standard errors, intervals and Wald p-values as a tidy table.

    SDs and rho get intervals transformed back from the log / atanh scale, so they stay in range.
    """
    th = result.params
    s = spec_of(th)
    x = pack(th)
    info, D = observed_information(panel, th, result.config.gamma_ridge, result.scaling)
    z = float(norm.ppf(0.5 + level / 2))
    ev = np.linalg.eigvalsh((info + info.T) / 2)
    if ev.min() <= 0:
        warnings.warn(
            f"observed information not positive definite (smallest eigenvalue {ev.min():.3g}): "
            "the fit is not at a strict maximum or a parameter is not identified; SEs are NaN "
            "where undefined",
            stacklevel=2,
        )
    cov_u = np.linalg.pinv((info + info.T) / 2) * np.outer(D, D)
    se_u = np.sqrt(np.where(np.diag(cov_u) > 0, np.diag(cov_u), np.nan))
    nat = natural(x, s)
    J = approx_fprime(x, natural, args=(s,), centered=True)
    se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", J, cov_u, J), 0, None))
    bad = ~np.isfinite(se_u)
    se[(np.abs(J[:, bad]) > 0).any(axis=1)] = np.nan  # undefined where the information is singular
    lo, hi = nat - z * se, nat + z * se
    n0 = s.n_mean
    unc = np.full(nat.size, np.nan)
    unc_se = np.full(nat.size, np.nan)
    unc[:n0], unc_se[:n0] = x[:n0], se_u[:n0]
    if s.structure != "unstructured":
        unc[n0:], unc_se[n0:] = x[n0:], se_u[n0:]
        fwd = [np.exp, np.exp] + (
            [lambda z: x_to_rho(z, s.rho_positive)] if s.structure == "ar1" else []
        )
        for j, f in enumerate(fwd):
            lo[n0 + j], hi[n0 + j] = (
                f(x[n0 + j] - z * se_u[n0 + j]),
                f(x[n0 + j] + z * se_u[n0 + j]),
            )
    df = pd.DataFrame(
        {
            "parameter": param_names(s, result.w_names, result.u_names),
            "estimate": nat,
            "se": se,
            "ci_low": lo,
            "ci_high": hi,
            "unconstrained": unc,
            "se_unconstrained": unc_se,
        }
    )
    wald = np.arange(nat.size) < n0
    with np.errstate(divide="ignore", invalid="ignore"):  # se 0 or NaN: no test, set below
        df["p_value"] = np.where(wald, 2 * norm.sf(np.abs(nat / se)), np.nan)
    df["note"] = ""
    if s.structure != "unstructured" and th.sb2 <= 1e-10 * th.se2:
        # on the boundary the quadratic approximation says nothing: no SE, no interval
        df.loc[n0, ["estimate", "se", "ci_low", "ci_high", "se_unconstrained"]] = [
            0.0,
            np.nan,
            np.nan,
            np.nan,
            np.nan,
        ]
        df.loc[n0, "note"] = "at the boundary sigma_b^2 = 0"
    for k in separated_classes(th.gamma):
        # separated classes: the likelihood keeps rising along gamma, so the Wald SE is meaningless
        rows = s.p + s.K + (k - 1) * s.d + np.arange(s.d)
        df.loc[rows, ["se", "ci_low", "ci_high", "se_unconstrained", "p_value"]] = np.nan
        df.loc[rows, "note"] = "near separation: not identified; set gamma_ridge > 0"
    if s.structure == "unstructured":
        extra = pd.DataFrame(
            {"parameter": ["sigma_b"], "estimate": [np.nan], "note": ["not identified"]}
        )
        df = pd.concat([df, extra], ignore_index=True)  # not identified: only Sigma is
    return df


def criteria(result: EMResult) -> pd.DataFrame:
    """One-row table: log-likelihood, parameters, AIC, BIC (N = subjects), entropy, ICL as lcmm."""
    P = result.posterior
    N, K = P.shape
    L, npar = result.loglik, result.n_params
    bic = -2 * L + npar * np.log(N)
    plogp = float(np.sum(P * np.log(np.clip(P, 1e-300, None))))
    entropy = 1.0 + plogp / (N * np.log(K)) if K > 1 else 1.0
    icl1 = bic - 2 * plogp
    icl2 = bic - 2 * float(np.log(np.clip(P.max(axis=1), 1e-300, None)).sum())
    row = {
        "K": K,
        "structure": result.params.structure,
        "loglik": L,
        "n_params": npar,
        "AIC": -2 * L + 2 * npar,
        "BIC": bic,
        "SABIC": -2 * L + npar * np.log((N + 2) / 24),
        "entropy": entropy,
        "ICL1": icl1,
        "ICL2": icl2,
        "iterations": result.n_iter,
        "converged": result.converged,
    }
    counts = np.bincount(result.classes, minlength=K) / N * 100
    row.update({f"%class{k + 1}": counts[k] for k in range(K)})
    return pd.DataFrame([row])


def classification_table(
    result: EMResult, thresholds: tuple[float, ...] = (0.7, 0.8, 0.9)
) -> pd.DataFrame:
    """Posterior classification: per assigned class, its size and mean posterior probabilities."""
    P, cls = result.posterior, result.classes
    K = P.shape[1]
    rows = []
    for g in range(K):
        sel = cls == g
        row = {"class": g + 1, "n": int(sel.sum()), "%": 100 * sel.mean()}
        for k in range(K):
            row[f"mean P(class {k + 1})"] = float(P[sel, k].mean()) if sel.any() else np.nan
        for thr in thresholds:
            row[f"% P>{thr}"] = 100 * float((P[sel, g] > thr).mean()) if sel.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def pad_gamma(th: Params, u_full: tuple[str, ...], u_reduced: tuple[str, ...]) -> Params:
    """Reduced-model parameters as a start of the full model (zero coefficients for dropped covariates)."""
    cols = [0] + [1 + u_full.index(u) for u in u_reduced]
    gamma = np.zeros((th.K, len(u_full) + 1))
    gamma[:, cols] = th.gamma
    return replace(th, gamma=gamma)


@dataclass
class LRTResult:
    """Likelihood-ratio test of membership covariates, with both fits."""

    table: pd.DataFrame
    full: EMResult
    reduced: EMResult


def lrt(
    panel: Panel,
    drop: list[str] | tuple[str, ...],
    cfg: EMConfig = EMConfig(),
    reduced: EMResult | None = None,
) -> LRTResult:
    """LR test of H0: the membership covariates `drop` have no effect (docs/em.md, Inference).

    df = (K - 1) x len(drop): each dropped covariate removes one coefficient per non-reference
    class. The full model is also started from the reduced fit, so the statistic is never negative.
    """
    if cfg.K < 2:
        raise ValueError("the LR test of membership covariates needs K >= 2 subgroups")
    drop = tuple(drop)
    if not drop:
        raise ValueError("name at least one membership covariate to drop")
    red_panel = panel.drop_u(drop)
    reduced = reduced or fit_em(red_panel, cfg)
    init = pad_gamma(reduced.params, panel.u_names, red_panel.u_names)
    full = fit_em(panel, cfg, init=init)
    # with a ridge on gamma both fits maximize the penalized likelihood: compare those
    stat = max(2.0 * (full.objective - reduced.objective), 0.0)
    df = (cfg.K - 1) * len(drop)
    table = pd.DataFrame(
        [
            {
                "dropped": ", ".join(drop),
                "K": cfg.K,
                "loglik_full": full.loglik,
                "loglik_reduced": reduced.loglik,
                "LR": stat,
                "df": df,
                "p_value": float(chi2.sf(stat, df)),
                "gamma_ridge": cfg.gamma_ridge,
            }
        ]
    )
    return LRTResult(table, full, reduced)


def bic_over_k(
    panel: Panel, ks: list[int] | range, cfg: EMConfig = EMConfig()
) -> tuple[pd.DataFrame, dict]:
    """Fit K = ks and tabulate the criteria; returns the table and the fits by K."""
    fits, rows = {}, []
    for K in ks:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fits[K] = fit_em(panel, replace(cfg, K=K))
            except EmptyClassError as e:  # K beyond what the data support: a row, not a crash
                rows.append(pd.DataFrame([{"K": K, "structure": cfg.structure, "notes": str(e)}]))
                continue
        row = criteria(fits[K])
        row["notes"] = "; ".join(str(w.message) for w in caught)
        rows.append(row)
    return pd.concat(rows, ignore_index=True), fits
