"""Settings of an EM fit: the `EMConfig` dataclass, the tolerances every stage shares, and the
error raised when a subgroup empties.

The fit itself is staged over the sibling modules: `estep` (likelihood and posteriors),
`mstep` (one ECM sweep), `iterate` (one EM run with SQUAREM), `starts` (start values and the
rounds of short runs), `polish` (direct maximization), `diagnostics` (input checks, warnings)
and `fit` (`fit_em`, which runs them in order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import STRUCTURES

SEPARATION = 15.0  # |membership slope| beyond which the classes are (nearly) separated
TOP_TOL = 1e-3  # starts whose converged log-likelihood is within this of the best "reached the top"
HOPELESS = 1.0  # a final run that cannot come within this of the best converged one is stopped
PROBE_GAIN = 1e-6  # two BFGS steps from EM's end gaining less: EM was at the maximum
BOUNDARY_SB2 = 1e-4  # below this fraction of sigma_e^2, sigma_b^2 = 0 is tried as the answer
ROUND_TOL = 0.1  # another round of starts while no second start came this close to the best (a separate mode)


class EmptyClassError(RuntimeError):
    """A subgroup lost (almost) all its posterior weight during EM."""


@dataclass(frozen=True)
class EMConfig:
    """Settings of one EM fit."""

    K: int = 3  # number of latent subgroups
    structure: str = "ar1"  # error correlation R: identity, ar1 or unstructured
    n_starts: int = (
        10  # starts (two deterministic: pooled and within alpha, quantile means); 0: only an init
    )
    short_iter: int = 6  # EM iterations per start before the first ranking
    screen_iter: int = (
        40  # more EM iterations for the better half of the starts before the final ranking
    )
    n_final: int = 3  # starts (best after the short runs) run to convergence; the best is kept
    max_iter: int = 2000  # cap on EM iterations of the final run
    tol: float = 1e-9  # stop when |l_new - l_old| <= tol * |l_old|
    seed: int = 0  # seed of the random starts
    min_class_size: float = 1.0  # a class with less posterior weight (subjects) counts as empty
    gamma_newton_steps: int = 1  # Newton steps of the gamma M-step per EM iteration
    gamma_ridge: float = (
        0.0  # ridge on class-centred slopes of gamma (guards separation); 0 = plain ML
    )
    accelerate: bool = True  # SQUAREM extrapolation between EM steps (kept only when it helps)
    polish: bool = (
        True  # finish with direct maximization (BFGS) from the EM answer; report any gain
    )
    handoff_tol: float = 1e-6  # final runs hand EM's slow phase to BFGS on the analytic score below this relative gain (0: EM throughout)
    max_rounds: int = 4  # rounds of n_starts random starts, until a second start comes within ROUND_TOL of the best
    screen_subjects: int = (
        20_000  # above this N: starts ranked on this many subjects, polish capped at 3 BFGS steps
    )

    def __post_init__(self) -> None:
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure={self.structure!r}; use one of {STRUCTURES}")
        if not isinstance(self.K, (int, np.integer)) or isinstance(self.K, bool) or self.K < 1:
            raise ValueError(f"K={self.K!r}; the number of subgroups must be an integer >= 1")
        if self.n_starts < 0 or self.n_final < 1 or self.max_iter < 1 or self.tol <= 0:
            raise ValueError(
                "n_starts >= 0 (0 only with an init), n_final and max_iter >= 1, tol > 0"
            )
        if self.gamma_ridge < 0:
            raise ValueError(f"gamma_ridge={self.gamma_ridge} must be >= 0")


def top_tol(best: float, cfg: EMConfig) -> float:
    """How far below the best log-likelihood a converged start still counts as at the top."""
    return max(TOP_TOL, 100 * cfg.tol * abs(best))
