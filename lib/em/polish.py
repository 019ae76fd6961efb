"""The end of a fit: direct maximization of the observed log-likelihood, and the boundary step
that sets sigma_b^2 to exactly 0 where EM only crawled towards it.

Two maximizers: `maximize_direct` (BFGS with a numerical gradient, using only the likelihood and
none of the E or M steps) is the independent check of EM; `maximize_score` (BFGS with the
analytic score of `score`) finishes EM's slow phase, as lcmm and nlme finish with Newton-type
steps, and polishes the answer.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.optimize import minimize
from statsmodels.tools.numdiff import approx_fprime

from .config import BOUNDARY_SB2, PROBE_GAIN, EMConfig
from .estep import EStep, design_u, e_step, loglik
from .panel import Panel
from .params import Params, canonical, pack, spec_of, unpack
from .score import score, score_terms


def maximize_direct(
    panel: Panel, start: Params, maxiter: int = 5000, gtol: float = 1e-8, centered: bool = True
) -> tuple[Params, float]:
    """Maximize the observed log-likelihood directly (scipy BFGS, central-difference gradient).

    An independent check of EM: it uses only loglik(), none of the E or M steps. The objective
    is the mean log-likelihood per subject, so BFGS's first steps are of a sensible size
    whatever N; `gtol` applies to that mean's gradient. `centered=False` uses forward differences
    (half the evaluations, accurate to about 1e-8 on that scale).
    """
    s = spec_of(start)
    scale = 1.0 / panel.N

    def f(x: np.ndarray) -> float:
        try:
            with np.errstate(all="ignore"):
                v = loglik(panel, unpack(x, s))
        except (np.linalg.LinAlgError, ValueError):
            return 1e300
        return -v * scale if np.isfinite(v) else 1e300

    def g(x: np.ndarray) -> np.ndarray:
        return approx_fprime(x, f, centered=centered)

    res = minimize(f, pack(start), jac=g, method="BFGS", options={"gtol": gtol, "maxiter": maxiter})
    th = canonical(unpack(res.x, s))[0]
    return th, -float(res.fun) / scale


def maximize_score(
    panel: Panel, U1: np.ndarray, th: Params, maxiter: int = 500, gtol: float = 1e-6
) -> tuple[Params, EStep, bool]:
    """BFGS on the mean log-likelihood per subject with the analytic score (identity and AR(1) errors).

    The first inverse Hessian is that of the subjects' score outer products (BHHH, Berndt et
    al. 1974), so the first steps are Newton-like and well scaled. Returns the best parameters
    seen, their E-step and whether the gradient reached `gtol`
    (BFGS may also stop on a line search that can gain nothing more: the top within rounding).
    """
    s, scale = spec_of(th), 1.0 / panel.N
    best: list = [None, None]

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            with np.errstate(all="ignore"):
                t = unpack(x, s)
                es = e_step(panel, U1, t)
                grad = score(panel, U1, t, es)
        except (np.linalg.LinAlgError, ValueError):
            return 1e300, np.zeros_like(x)
        if not (np.isfinite(es.loglik) and np.all(np.isfinite(grad))):
            return 1e300, np.zeros_like(x)
        if best[1] is None or es.loglik > best[1].loglik:
            best[:] = [t, es]
        return -es.loglik * scale, -grad * scale

    x0, opts = pack(th), {"gtol": gtol, "maxiter": maxiter}
    with np.errstate(all="ignore"):
        G = score_terms(panel, U1, th, e_step(panel, U1, th))
    H = G.T @ G * scale
    if np.all(np.isfinite(H)):
        w, V = np.linalg.eigh(H)
        if w.min() > 1e-8 * max(w.max(), 1e-300):  # scipy checks hess_inv0 by Cholesky
            Hi = (V / w) @ V.T
            opts["hess_inv0"] = 0.5 * (Hi + Hi.T)
    res = minimize(f, x0, jac=True, method="BFGS", options=opts)
    if best[1] is None:
        return th, e_step(panel, U1, th), False
    # a line search that cannot gain more (precision loss) next to the top is also the end
    return best[0], best[1], bool(res.success or np.abs(res.jac).max() <= 10 * gtol)


def polish(
    panel: Panel, U1: np.ndarray, th: Params, es: EStep, cfg: EMConfig
) -> tuple[Params, EStep, float]:
    """Direct maximization from EM's end point: the polished (parameters, E-step, gain), or the
    EM answer with gain 0 where BFGS found nothing higher.

    With identity or AR(1) errors BFGS runs on the analytic score (one likelihood evaluation
    per step). With unstructured errors the gradient is by differences and two steps probe
    first whether EM stopped short of a maximum: where
    EM stopped at the top they gained < 1e-7 (N 300 simulations), where EM crawled (rho 0.95,
    K 4) > 1e-5, and only then does BFGS go on. Each step costs n_params + 1 likelihood
    evaluations: on a large panel three are taken in one run (a restart after the probe would
    pay the gradient at the start again).
    """
    if th.structure != "unstructured":
        th_d, es_d, _ = maximize_score(panel, U1, th)
        gain = es_d.loglik - es.loglik
        return (th_d, es_d, gain) if gain > 1e-8 else (th, es, 0.0)
    large = panel.N > cfg.screen_subjects
    th_d, ll_d = maximize_direct(panel, th, maxiter=3 if large else 2, gtol=1e-6, centered=False)
    if not large and ll_d - es.loglik > PROBE_GAIN:
        # central differences: on a flat ridge (Cornwell-Rupert, K 3, AR(1)) forward ones stall
        # 5e-4 below the maximum that central ones reach
        th_d, ll_d = maximize_direct(panel, th_d, maxiter=200, gtol=1e-6, centered=True)
    if ll_d > es.loglik + 1e-8:
        return th_d, e_step(panel, U1, th_d), ll_d - es.loglik
    return th, es, 0.0


def sb2_score_at_zero(panel: Panel, th: Params, P: np.ndarray) -> float:
    """d loglik / d sigma_b^2 at sigma_b^2 = 0 (other parameters fixed, posteriors P at that point)."""
    es = e_step(panel, design_u(panel), replace(th, sb2=0.0))
    dev = es.s[:, None] - es.c[:, None] * th.mu[None, :]  # 1'C^-1 (r_i - 1 mu_k)
    return 0.5 * float((P * (dev**2 - es.c[:, None])).sum())


def settle_boundary(panel: Panel, U1: np.ndarray, th: Params, es: EStep) -> tuple[Params, EStep]:
    """sigma_b^2 = 0 in place of a tiny sigma_b^2 where 0 is no worse and the score there points down.

    EM only crawls towards sigma_b^2 = 0 and its stop leaves it anywhere from 1e-30 to 1e-9
    (rounding alone decides), so below BOUNDARY_SB2 x sigma_e^2 the boundary is tried.
    """
    if th.structure != "unstructured" and 0.0 < th.sb2 < BOUNDARY_SB2 * th.se2:
        at0 = replace(th, sb2=0.0)
        es0 = e_step(panel, U1, at0)
        if es0.loglik >= es.loglik and sb2_score_at_zero(panel, at0, es0.P) <= 0:
            return at0, es0
    return th, es
