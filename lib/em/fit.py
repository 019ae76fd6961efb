"""`fit_em`: the latent-subgroup mixed model fitted by EM from several starts, and its result.

The stages, in order, each in its own module: input checks (`diagnostics`), the search over
starts by short EM runs and the best few run to convergence (`starts`, `iterate`; E and M steps
in `estep`, `mstep`), direct maximization from EM's answer (`polish`), the sigma_b^2 = 0
boundary, canonical class order (by mu) and the warnings (`diagnostics`). The model is the
heterogeneous linear mixed model of Verbeke and Lesaffre (1996) with a random intercept and
membership covariates, as in `lcmm::hlme` (Proust-Lima, Philipps and Liquet 2017); docs/em.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .config import EMConfig, EmptyClassError, top_tol
from .diagnostics import (
    check_fit_input,
    check_init,
    convergence_notes,
    estimate_notes,
    lost_starts_notes,
    path_notes,
    polish_notes,
)
from .estep import design_u
from .mstep import ridge_penalty
from .panel import Panel
from .params import Params, canonical, spec_of
from .polish import polish, settle_boundary
from .scaling import Scaling
from .starts import search_starts


@dataclass
class EMResult:
    """A fitted model: parameters, log-likelihood path and posteriors (classes ordered by mu)."""

    params: Params
    loglik: float
    loglik_path: np.ndarray
    n_iter: int
    converged: bool
    posterior: np.ndarray  # (N, K)
    b_mean: np.ndarray  # (N, K) posterior mean of b_i given class k
    b_var: np.ndarray  # (N,) posterior variance of b_i given a class
    config: EMConfig
    w_names: tuple[str, ...]
    u_names: tuple[str, ...]
    start_logliks: list[float] = field(default_factory=list)  # after the short runs, in start order
    final_logliks: list[float] = field(default_factory=list)  # of the starts run to convergence
    direct_gain: float = 0.0  # log-likelihood gained by the direct-maximization polish
    notes: list[str] = field(default_factory=list)
    scaling: Scaling | None = None  # the standard scale the fit ran on (`scaling`)

    @property
    def n_top(self) -> int:
        """Starts run to convergence that reached the best log-likelihood.

        Within TOP_TOL, or within 100 x the stopping tolerance on a large panel, where EM's stop
        (a relative change of tol per iteration) can leave a converged start that far below.
        """
        best = max(self.final_logliks, default=self.loglik)
        return sum(f >= best - top_tol(best, self.config) for f in self.final_logliks)

    @property
    def n_params(self) -> int:
        """Free parameters: alpha, mu, gamma, and the identified covariance parameters."""
        s = spec_of(self.params)
        return s.n_mean + s.n_cov

    @property
    def objective(self) -> float:
        """The maximized objective: the log-likelihood minus the ridge penalty on gamma (if any)."""
        return self.loglik - ridge_penalty(self.params.gamma, self.config.gamma_ridge)

    @property
    def sb2_identified(self) -> bool:
        """False for an unstructured error covariance (sigma_b^2 trades against S)."""
        return self.params.structure != "unstructured"

    @property
    def classes(self) -> np.ndarray:
        """Most probable class of each subject (0-based, ordered by mu)."""
        return self.posterior.argmax(axis=1)


def fit_em(panel: Panel, cfg: EMConfig = EMConfig(), init: Params | None = None) -> EMResult:
    """Fit by EM from several starts (short runs, then the best few to convergence, then a direct polish).

    Starts come in rounds of n_starts (the first up to four deterministic: pooled and within
    alpha, quantile and tail class means; the rest random); a new round
    is drawn while no second converged start came within ROUND_TOL of the best (the best may
    then be one of several separate modes), up to max_rounds.
    `init` (for example a reduced model's estimate padded with zeros) is tried as an extra
    start; the log-likelihood is checked never to decrease along the final run.
    """
    notes = check_fit_input(panel, cfg)
    check_init(panel, cfg, init)
    scaling = Scaling.of(panel, scale_u=cfg.gamma_ridge == 0.0)
    user, panel = panel, scaling.panel(panel)
    init = None if init is None else scaling.inward(init)
    U1 = design_u(panel)

    found = search_starts(panel, U1, cfg, init)
    notes += lost_starts_notes(found.lost, found.n_started, bool(found.runs))
    if not found.runs:
        raise EmptyClassError(
            f"every start lost a class ({found.lost[-1] if found.lost else ''}); fit a smaller K "
            "or add starts (n_starts)"
        )
    best = max(found.runs, key=lambda r: r.objective)
    path = np.asarray(best.path)
    notes += path_notes(path)
    th, es, conv = best.params, best.estep, best.converged

    gain = 0.0
    if cfg.polish and cfg.gamma_ridge == 0.0:
        th, es, gain = polish(panel, U1, th, es, cfg)
        conv = conv or gain > 0.0
        notes += polish_notes(gain)
    th, es = settle_boundary(panel, U1, th, es)
    notes += convergence_notes(conv, path, cfg)

    th, P, m = canonical(th, es.P, es.m)
    th, shift = scaling.outward(th), scaling.loglik_shift(user)
    notes += estimate_notes(th, cfg)
    for n in notes:
        warnings.warn(n, stacklevel=2)
    return EMResult(
        params=th,
        loglik=float(es.loglik) + shift,
        loglik_path=path + shift,
        n_iter=len(path) - 1,
        converged=conv,
        posterior=P,
        b_mean=m * scaling.sy + scaling.cy,
        b_var=es.v * scaling.sy**2,
        config=cfg,
        w_names=panel.w_names,
        u_names=panel.u_names,
        start_logliks=[f + shift for f in found.start_logliks],
        final_logliks=[r.objective + shift for r in found.runs],
        direct_gain=gain,
        notes=notes,
        scaling=scaling,
    )
