"""The analytic score of a growth mixture (`growth`) in the coordinates of `pack_growth`, for
identity and AR(1) errors (and class scales of G, lcmm's nwg), and the BFGS that uses it.

As for the random-intercept model (`score`), Fisher's identity makes the score the posterior
mean of the complete-data score (Louis 1982). With V_i = Z_i G Z_i' + C_i, m_ik the posterior
mean of b_i and e_ik = r_ik - Z_i m_ik, Woodbury gives V_i^-1 r_ik = C_i^-1 e_ik; then
d/dG = 1/2 sum_ik P_ik (a a' - Z'V^-1 Z) with a = Z'C^-1 e (no inverse of G, so a singular G is
fine), and the error parameters differentiate C = sigma_e^2 R(rho) through the tridiagonal
AR(1) precision. With class scales G_k = w_k^2 G the same holds per class with
M_k = sum_i P_ik (a a' - Z'V_ik^-1 Z): d/dG = 1/2 sum_k w_k^2 M_k and d/dlog w_k = w_k^2
tr(M_k G). Each BFGS step then costs about two likelihood evaluations instead of one per
parameter.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from .estep import log_softmax
from .growth import GrowthData, GrowthParams, _precisions, growth_estep, pack_growth, unpack_growth
from .score import ar1_precision_deriv


def growth_score(data: GrowthData, th: GrowthParams) -> tuple[float, np.ndarray]:
    """The observed log-likelihood at `th` and its gradient in pack_growth's coordinates."""
    es = growth_estep(data, th)
    p, (K, mm), q = th.beta.size, th.B.shape, th.G.shape[0]
    g_beta, g_B, M = np.zeros(p), np.zeros((K, mm)), np.zeros((q, q))
    Mk = None if th.w is None else np.zeros((K, q, q))  # per class, with class scales of G
    g_se2 = g_rho = 0.0
    for i, ((b, X, Z), (Ci, _), (_, Zp)) in enumerate(
        zip(data.blocks, _precisions(data, th), data.patterns)
    ):
        Cs, P = Ci[b.pat], es.P[b.rows]
        Vb = es.V[b.rows]
        r = (b.y - (b.W @ th.beta if p else 0.0))[:, None, :] - data.class_means(i, th.B)
        e = r - es.m[b.rows] @ np.swapaxes(Z, 1, 2)  # (n, K, t)
        Ce = e @ Cs
        Pe = Ce * P[:, :, None]
        if p:
            g_beta += (Pe.sum(axis=1)[:, None, :] @ b.W)[:, 0].sum(axis=0)
        g_B += np.einsum("nkt,ntm->km", Pe, X, optimize=True)
        a = Ce @ Z  # (n, K, q)
        # A = Z'C^-1 Z per subject, or once per pattern where Z is the same in it (Zp)
        A = np.swapaxes(Z, 1, 2) @ (Cs @ Z) if Zp is None else np.swapaxes(Zp, 1, 2) @ (Ci @ Zp)
        Ai = A if Zp is None else A[b.pat]
        if Mk is None:
            M += np.einsum("nkq,nkr->qr", a * P[:, :, None], a, optimize=True)
            M -= (Ai - Ai @ Vb @ Ai).sum(axis=0)  # per subject: A - A V A cancels, sum after
        else:
            AVA = Ai[:, None] @ es.Vk[b.rows] @ Ai[:, None]  # Z'V_ik^-1 Z = A - A V_ik A
            Mk += np.einsum("nkq,nkr->kqr", a * P[:, :, None], a, optimize=True)
            Mk -= np.einsum("nk,nkqr->kqr", P, Ai[:, None] - AVA, optimize=True)
        # per subject before the sum: at the maximum quad ~ t - tr(V A), and the difference of
        # the sums would lose the digits BFGS needs there
        quad = (P * np.einsum("nkt,nkt->nk", e, Ce)).sum(axis=1)
        trVA = np.einsum("nqr,nrq->n", Vb, Ai)
        g_se2 += 0.5 / th.se2 * float((quad - b.t + trVA).sum())
        if th.structure == "ar1":
            dQ, dld = ar1_precision_deriv(th.rho, b.gaps)
            Qd = dQ[b.pat]
            quad1 = (P * np.einsum("nkt,nkt->nk", e @ Qd, e)).sum(axis=1)
            ZQZ = (
                np.swapaxes(Z, 1, 2) @ Qd @ Z
                if Zp is None
                else (np.swapaxes(Zp, 1, 2) @ dQ @ Zp)[b.pat]
            )
            tr1 = np.einsum("nqr,nrq->n", Vb, ZQZ)
            g_rho += 0.5 * float((-(quad1 + tr1) / th.se2 - dld[b.pat]).sum())
    U1 = np.column_stack([np.ones(data.panel.N), data.panel.U])
    g_gamma = ((es.P - np.exp(log_softmax(U1 @ th.gamma.T)))[:, 1:].T @ U1).ravel()
    x = pack_growth(th)
    n_chol = q * (q + 1) // 2
    L = np.zeros((q, q))
    L[np.tril_indices(q)] = x[p + K * mm + (K - 1) * U1.shape[1] :][:n_chol]
    L[np.diag_indices(q)] = np.exp(np.diag(L))
    scales = []
    if Mk is not None:  # G_k = w_k^2 G: dl/dG = sum_k w_k^2 M_k / 2, dl/dlog w_k = w_k^2 tr(M_k G)
        w2 = th.w**2
        M = np.einsum("k,kqr->qr", w2, Mk)
        scales = [(w2 * np.einsum("kqr,rq->k", Mk, th.G))[:-1]]
    dL = 0.5 * (M + M.T) @ L  # dl/dL = 2 (dl/dG) L, and dl/dG = M / 2
    dL[np.diag_indices(q)] *= np.diag(L)  # the diagonal is stored as log L_ii
    tail = [2.0 * th.se2 * g_se2] + ([g_rho * (1.0 - th.rho**2)] if th.structure == "ar1" else [])
    grad = np.concatenate([g_beta, g_B.ravel(), g_gamma, dL[np.tril_indices(q)], *scales, tail])
    return es.loglik, grad


def maximize_growth(data: GrowthData, th: GrowthParams, maxiter: int = 500) -> GrowthParams:
    """BFGS on the mean observed log-likelihood per subject with the analytic score, from `th`."""
    scale = 1.0 / data.panel.N

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            with np.errstate(all="ignore"):
                ll, g = growth_score(data, unpack_growth(x, th))
        except (np.linalg.LinAlgError, ValueError):
            return 1e300, np.zeros_like(x)
        if not (np.isfinite(ll) and np.all(np.isfinite(g))):
            return 1e300, np.zeros_like(x)
        return -ll * scale, -g * scale

    x0 = pack_growth(th)
    if th.structure == "unstructured":  # no analytic score for S here: central differences

        def value(x: np.ndarray) -> float:
            return f_value(data, x, th) * scale

        res = minimize(
            value, x0, method="BFGS", jac="3-point", options={"gtol": 1e-7, "maxiter": maxiter}
        )
        return unpack_growth(res.x, th) if res.fun < value(x0) else th
    res = minimize(f, x0, jac=True, method="BFGS", options={"gtol": 1e-7, "maxiter": maxiter})
    return unpack_growth(res.x, th) if res.fun < f(x0)[0] else th


def f_value(data: GrowthData, x: np.ndarray, like: GrowthParams) -> float:
    """Minus the observed log-likelihood at a packed vector (1e300 where it is not defined)."""
    try:
        with np.errstate(all="ignore"):
            v = growth_estep(data, unpack_growth(x, like)).loglik
    except (np.linalg.LinAlgError, ValueError):
        return 1e300
    return -v if np.isfinite(v) else 1e300
