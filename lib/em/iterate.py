"""One EM run (Dempster, Laird and Rubin 1977) from given parameters: E and M steps until the
relative change of the objective falls below the tolerance, with SQUAREM extrapolation
(Varadhan and Roland 2008; step length min(-|r|/|v|, -1)) kept only when an EM step from it
beats the plain path, and, near sigma_b^2 = 0 where EM crawls, a coordinate-ascent step on the
observed likelihood over the variance parameters (L-BFGS-B), also kept only when it helps, so
the recorded objective never decreases. A run bound below a given floor is stopped early.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.optimize import minimize

from .config import EMConfig, EmptyClassError
from .estep import EStep, design_u, e_step
from .mstep import m_step, ridge_penalty
from .panel import Panel
from .params import Params, pack, rho_to_x, spec_of, unpack, x_to_rho


def penalty(th: Params, cfg: EMConfig) -> float:
    """The ridge penalty on gamma that the fit subtracts from the log-likelihood (0 without one)."""
    return ridge_penalty(th.gamma, cfg.gamma_ridge)


def objective_at(panel: Panel, U1: np.ndarray, th: Params, cfg: EMConfig) -> tuple[EStep, float]:
    """The E-step at `th` and the objective EM maximizes there (log-likelihood minus penalty)."""
    es = e_step(panel, U1, th)
    return es, es.loglik - penalty(th, cfg)


def run_em(
    panel: Panel,
    th: Params,
    cfg: EMConfig,
    max_iter: int,
    U1: np.ndarray | None = None,
    floor: float = -np.inf,  # give up (unconverged) once the run cannot reach this objective
) -> tuple[Params, EStep, list[float], bool]:
    """Iterate E and M steps from `th`; returns the last parameters, E-step, path and convergence.

    With cfg.accelerate, every two EM steps are followed by a SQUAREM extrapolation (Varadhan and
    Roland 2008) that is kept only if one EM step from it beats the plain path, so the recorded
    objective still never decreases; it matters where EM crawls (sigma_b^2 near 0, rho near 1).
    A run stops early when even twice its recent pace (EM's gains shrink as it converges) over
    every remaining iteration would leave it below `floor`.
    """
    U1 = design_u(panel) if U1 is None else U1

    def step(th_: Params, es_: EStep) -> tuple[Params, EStep, float]:
        th_ = m_step(panel, U1, th_, es_, cfg)
        es_, f_ = objective_at(panel, U1, th_, cfg)
        return th_, es_, f_

    es, f0 = objective_at(panel, U1, th, cfg)
    path = [f0]
    n = 0
    while n < max_iter:
        if n >= 50 and path[-1] + 2 * (max_iter - n) * (path[-1] - path[-11]) / 10 < floor:
            return th, es, path, False
        th1, es1, f1 = step(th, es)
        path.append(f1)
        n += 1
        if abs(f1 - path[-2]) <= cfg.tol * abs(path[-2]):
            return th1, es1, path, True
        if not cfg.accelerate or n >= max_iter:
            th, es = th1, es1
            continue
        th2, es2, f2 = step(th1, es1)
        path.append(f2)
        n += 1
        if abs(f2 - f1) <= cfg.tol * abs(f1):
            return th2, es2, path, True
        x0, x1, x2 = pack(th), pack(th1), pack(th2)
        r, v = x1 - x0, x2 - 2 * x1 + x0
        th, es = th2, es2
        if n >= max_iter or not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
            continue
        a = min(-np.linalg.norm(r) / np.linalg.norm(v), -1.0)
        try:
            with np.errstate(all="ignore"):
                thx = unpack(x0 - 2 * a * r + a * a * v, spec_of(th))
                th3, es3, f3 = step(thx, e_step(panel, U1, thx))
                es3 = es3 if np.isfinite(f3) else None
        except (np.linalg.LinAlgError, EmptyClassError, ValueError, FloatingPointError):
            es3 = None
        if es3 is not None and f3 >= f2:
            th, es = th3, es3
            path.append(f3)
            n += 1
        moved = _coordinate_cov(panel, U1, th, es, cfg)
        if moved is not None:
            th, es = moved
            path.append(es.loglik - penalty(th, cfg))
    return th, es, path, False


def _cov_vector(th: Params) -> np.ndarray:
    x = [np.sqrt(th.sb2), 0.5 * np.log(th.se2)]
    return np.array(
        x + ([rho_to_x(th.rho, spec_of(th).rho_positive)] if th.structure == "ar1" else [])
    )


def _cov_params(x: np.ndarray, th: Params) -> Params:
    if th.structure == "ar1":
        return replace(
            th,
            sb2=float(x[0] ** 2),
            se2=float(np.exp(2 * x[1])),
            rho=x_to_rho(x[2], spec_of(th).rho_positive),
        )
    return replace(th, sb2=float(x[0] ** 2), se2=float(np.exp(2 * x[1])))


def _coordinate_cov(panel: Panel, U1: np.ndarray, th: Params, es: EStep, cfg: EMConfig):
    """Maximize the observed log-likelihood over (sigma_b, sigma_e, rho) when sigma_b^2 is small.

    Near sigma_b^2 = 0 EM creeps (sigma_b^2 grows or shrinks by a term of order sigma_b^4 per
    step, and 0 is absorbing), so there a block coordinate-ascent step on the observed
    likelihood, with sigma_b (not its log) free to reach 0, replaces the crawl. It is taken
    only when it raises the objective, so the path stays monotone.
    """
    if th.structure == "unstructured" or not th.sb2 < 1e-2 * th.se2:
        return None

    def neg(x: np.ndarray) -> float:
        return -e_step(panel, U1, _cov_params(x, th)).loglik

    x0 = _cov_vector(th)
    bounds = [(0.0, np.sqrt(th.se2))] + [(None, None)] * (x0.size - 1)
    with np.errstate(all="ignore"):
        res = minimize(neg, x0, method="L-BFGS-B", bounds=bounds)
    if not np.isfinite(res.fun) or -res.fun <= es.loglik:
        return None
    th1 = _cov_params(res.x, th)
    return th1, e_step(panel, U1, th1)
