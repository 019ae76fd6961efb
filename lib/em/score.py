"""The analytic score (gradient of the observed log-likelihood) of the latent-subgroup mixed model,
in the coordinates of `params.pack`, for identity and AR(1) errors.

By Fisher's identity the score is the posterior expectation of the complete-data score (Louis
1982), so it needs only what the E-step already holds: the class posteriors P_ik and the
posterior means m_ik of the random intercept. With Sigma_i = sigma_b^2 11' + C_i and
e_ik = r_i - m_ik 1, Woodbury gives Sigma_i^-1 (r_i - mu_k 1) = C_i^-1 e_ik, from which every
component follows in closed form; the AR(1) part differentiates the tridiagonal precision.
The direct maximizer uses it to finish EM's slow phase in a few quasi-Newton steps, each costing
one likelihood evaluation instead of one per parameter.
"""

from __future__ import annotations

import numpy as np

from .estep import EStep, apply_inverse, fixed_part, log_softmax
from .panel import Panel
from .params import Params, spec_of


def ar1_precision_deriv(rho: float, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d R^-1 / d rho and d log|R| / d rho for each row of time gaps (P, t - 1), in closed form.

    With phi_j = rho^gap_j and a_j = 1 / (1 - phi_j^2): the diagonal terms a and phi^2 a both
    have derivative 2 phi a^2, the off-diagonal -phi a has -(1 + phi^2) a^2, and
    log|R| = sum log(1 - phi^2) has -2 phi a; each times d phi / d rho = gap rho^(gap - 1).
    """
    g = np.asarray(gaps, float)
    phi = np.power(rho, g)
    dphi = g * np.power(rho, g - 1.0)
    P, t = phi.shape[0], phi.shape[1] + 1
    a = 1.0 / (1.0 - phi * phi)
    d_diag = 2.0 * phi * a * a * dphi
    dQ = np.zeros((P, t * t))
    diag = np.zeros((P, t))
    diag[:, 1:] = d_diag
    diag[:, :-1] += d_diag
    dQ[:, :: t + 1] = diag
    dQ[:, 1 :: t + 1] = dQ[:, t :: t + 1] = -(1.0 + phi * phi) * a * a * dphi
    return dQ.reshape(P, t, t), (-2.0 * phi * a * dphi).sum(axis=1)


def score_terms(panel: Panel, U1: np.ndarray, th: Params, es: EStep) -> np.ndarray:
    """Each subject's contribution (N, n_params) to the score at `th` (whose E-step is `es`), in pack() coordinates."""
    if th.structure == "unstructured":
        raise ValueError("the analytic score covers identity and ar1 errors; use differences")
    ar1 = th.structure == "ar1"
    N, K, p = panel.N, th.K, th.alpha.size
    g_alpha, g_mu = np.empty((N, p)), np.empty((N, K))
    g_var = np.empty((N, 3 if ar1 else 2))  # sigma_b^2, sigma_e^2, rho
    for b, bc in zip(panel.blocks, es.covs):
        P, m, g = es.P[b.rows], es.m[b.rows], es.v[b.rows]
        r = b.y - fixed_part(b.W, th.alpha)
        rC = apply_inverse(r, bc.Ci, b)
        a, s, c = np.einsum("ni,ni->n", rC, r), rC.sum(axis=1), bc.c[b.pat]
        mbar, m2bar = (P * m).sum(axis=1), (P * m * m).sum(axis=1)
        z = rC - mbar[:, None] * bc.Ci.sum(axis=2)[b.pat]  # C^-1 (r - mbar 1)
        g_alpha[b.rows] = np.einsum("ntp,nt->np", b.W, z)
        dev = s[:, None] - c[:, None] * m  # 1'Sigma^-1 (r - mu_k 1)
        g_mu[b.rows] = P * dev
        g_var[b.rows, 0] = 0.5 * ((P * dev * dev).sum(axis=1) - c / (1.0 + th.sb2 * c))
        quad = a - 2.0 * mbar * s + m2bar * c  # sum_k P_ik e_ik' C^-1 e_ik
        g_var[b.rows, 1] = 0.5 / th.se2 * (quad - b.t + g * c)
        if ar1:
            dQ, dld = ar1_precision_deriv(th.rho, b.gaps)
            rQ = apply_inverse(r, dQ, b)
            a1, s1 = np.einsum("ni,ni->n", rQ, r), rQ.sum(axis=1)
            c1 = dQ.sum(axis=(1, 2))[b.pat]
            quad1 = a1 - 2.0 * mbar * s1 + m2bar * c1
            g_var[b.rows, 2] = 0.5 * (-(quad1 + g * c1) / th.se2 - dld[b.pat])
    pi = np.exp(log_softmax(U1 @ th.gamma.T))
    g_gamma = ((es.P - pi)[:, 1:, None] * U1[:, None, :]).reshape(N, -1)
    chain = [2.0 * th.sb2, 2.0 * th.se2]  # d(variance) / d(log SD)
    if ar1:
        chain.append(th.rho * (1.0 - th.rho) if spec_of(th).rho_positive else 1.0 - th.rho**2)
    return np.hstack([g_alpha, g_mu, g_gamma, g_var * np.asarray(chain)])


def score(panel: Panel, U1: np.ndarray, th: Params, es: EStep) -> np.ndarray:
    """Gradient of the observed log-likelihood at `th` (whose E-step is `es`) in pack() coordinates."""
    return score_terms(panel, U1, th, es).sum(axis=0)
