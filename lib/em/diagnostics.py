"""Checks around a fit: input errors raised before EM starts (designs the model cannot fit, an
init that does not match), and the warnings (notes) written after it, about dropped starts, a
log-likelihood that decreased, the polish's gain, non-convergence, near separation of the
classes by the membership covariates, near-duplicate classes and an unidentified sigma_b^2.
"""

from __future__ import annotations

import numpy as np

from .config import SEPARATION, TOP_TOL, EMConfig
from .panel import Panel
from .params import Params


def check_fit_input(panel: Panel, cfg: EMConfig) -> list[str]:
    """Errors for designs the model cannot fit; returns warnings for ones it fits with a caveat."""
    N, T = panel.N, panel.t
    per = panel.observed.sum(axis=1)
    notes = []
    if N < 5 * cfg.K:
        raise ValueError(
            f"K={cfg.K} subgroups need at least {5 * cfg.K} subjects (5 per class), got N={N}; "
            "use a smaller K"
        )
    if cfg.structure == "ar1":
        if (per >= 3).sum() == 0 or T < 3:
            raise ValueError(
                f"AR(1) errors with a random intercept need subjects with t >= 3 measures (the most "
                f"any subject has is t={per.max()}); use structure='identity'"
            )
        if (per == 1).any():
            notes.append(
                f"{int((per == 1).sum())} subjects have a single measurement: kept, they inform sigma_b^2 "
                "+ sigma_e^2 and the class levels but not rho"
            )
    if cfg.structure == "unstructured":
        if N <= T + 1:
            raise ValueError(
                f"an unstructured T x T error covariance needs N > T + 1 subjects (N={N}, T={T}); "
                "use errors='ar1' (EMConfig.structure)"
            )
        both = panel.observed.T.astype(float) @ panel.observed
        if (both == 0).any():
            i, j = np.argwhere(both == 0)[0]
            raise ValueError(
                f"times {panel.times[i]:g} and {panel.times[j]:g} are never measured on the same "
                "subject, so their error covariance is not identified; use errors='ar1' (EMConfig.structure)"
            )
    n_par = panel.p + cfg.K + (cfg.K - 1) * (panel.q + 1) + 3
    if n_par >= N:
        raise ValueError(
            f"{n_par} parameters for N={N} subjects: reduce K or the membership covariates"
        )
    return notes


def check_init(panel: Panel, cfg: EMConfig, init: Params | None) -> None:
    """An init must match the panel and config; without one there must be starts to draw."""
    if init is not None and (
        init.K != cfg.K
        or init.gamma.shape[1] != panel.q + 1
        or init.alpha.size != panel.p
        or init.structure != cfg.structure
        or init.T != panel.t
    ):
        raise ValueError(
            "init does not match the panel and config (K, q, p, times or structure differ)"
        )
    if cfg.n_starts == 0 and init is None:
        raise ValueError("n_starts=0 needs an init (fit_em(..., init=params)); use n_starts >= 1")


def duplicate_classes(th: Params) -> list[tuple[int, int]]:
    """Pairs of classes whose means are closer than 0.05 sigma_b (or 1e-6 when sigma_b^2 = 0)."""
    tol = max(0.05 * np.sqrt(th.sb2), 1e-6)
    return [(k, k + 1) for k in range(th.K - 1) if th.mu[k + 1] - th.mu[k] < tol]


def separated_classes(gamma: np.ndarray) -> list[int]:
    """Classes k >= 1 whose membership slopes exceed SEPARATION in absolute value."""
    return [k for k in range(1, len(gamma)) if np.abs(gamma[k, 1:]).max(initial=0) > SEPARATION]


def lost_starts_notes(lost: list[str], n_started: int, any_kept: bool) -> list[str]:
    """One note: random starts that empty a class are common and harmless when others succeed."""
    if not lost:
        return []
    if any_kept:
        return [f"{len(lost)} of {n_started} starts lost a class and were dropped ({lost[0]})"]
    return [lost[-1]]


def path_notes(path: np.ndarray) -> list[str]:
    """A note if the objective decreased anywhere along the final run (EM must never go down)."""
    drops = np.diff(path) < -1e-9 * np.abs(path[:-1]).clip(1.0)
    if not drops.any():
        return []
    return [
        f"log-likelihood decreased at {int(drops.sum())} iterations (max drop "
        f"{-np.diff(path).max():.3g}); please report this"
    ]


def polish_notes(gain: float) -> list[str]:
    """A note when the direct polish had to climb more than TOP_TOL above EM's answer."""
    if not gain > TOP_TOL:
        return []
    return [
        f"EM stopped {gain:.3g} below the maximum that direct maximization reached from its "
        "end point; the polished estimate is returned"
    ]


def convergence_notes(converged: bool, path: np.ndarray, cfg: EMConfig) -> list[str]:
    """A note when the final run hit max_iter without converging."""
    if converged:
        return []
    return [
        f"not converged after {cfg.max_iter} iterations (relative change "
        f"{abs(path[-1] - path[-2]) / abs(path[-2]):.2g}); raise max_iter"
    ]


def estimate_notes(th: Params, cfg: EMConfig) -> list[str]:
    """Notes on the (canonical) estimate: near separation, near-duplicate classes, sigma_b^2."""
    notes = []
    if separated_classes(th.gamma):
        notes.append(
            f"some membership coefficients exceed {SEPARATION:g} in absolute value (near separation); "
            "set gamma_ridge > 0 or drop covariates"
        )
    dup = duplicate_classes(th)
    if dup:
        notes.append(
            f"classes {[(a + 1, b + 1) for a, b in dup]} have nearly equal means: K={cfg.K} is "
            "more than these data support"
        )
    if cfg.structure == "unstructured":
        notes.append(
            "sigma_b^2 is not identified with an unstructured error covariance (only "
            "sigma_b^2 11' + S is); it is absorbed into S and reported as NaN"
        )
    return notes
