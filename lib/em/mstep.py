"""M-step of EM for the latent-subgroup mixed model: one ECM sweep (Meng and Rubin 1993) that
updates gamma, mu and sigma_b^2 from the posterior moments, then alpha and the error covariance.

gamma: Newton steps with step halving on the weighted (soft-target) multinomial logistic
likelihood, optionally with a ridge on the class-centred slopes; never worse. mu, sigma_b^2:
closed form. alpha: generalized least squares (jointly with mu, class-weighted, when the errors
are unstructured and sigma_b^2 = 0). Error covariance (structures of lib.em.params): sigma_e^2
in closed form for 'identity'; for 'ar1' a bounded 1-D search over rho of the profile with
sigma_e^2 profiled out (continuous-time, tridiagonal precision); for 'unstructured' the exact
update from the expected cross-products, which with missing times also takes their conditional
expectations at the unobserved times, in a second cycle after a fresh E-step.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.optimize import minimize_scalar

from .config import EMConfig, EmptyClassError
from .estep import (
    MANY_PATTERNS,
    BlockCov,
    EStep,
    apply_inverse,
    block_covs,
    e_step,
    fixed_part,
    log_softmax,
    not_pd_error,
    row_sum,
)
from .panel import Block, Panel
from .params import RHO_MAX, Params, integer_times


def ridge_penalty(gamma: np.ndarray, lam: float) -> float:
    """lam/2 x squared slopes of gamma centred over classes: the same whichever class is the reference."""
    if lam == 0.0:
        return 0.0
    G = gamma[:, 1:]
    return 0.5 * lam * float(((G - G.mean(axis=0)) ** 2).sum())


def ridge_hessian(K: int, d: int, lam: float) -> np.ndarray:
    """Hessian of ridge_penalty in the free gamma rows 2..K (row-major, intercept first in each row)."""
    slopes = np.diag(np.r_[0.0, np.ones(d - 1)])
    return lam * np.kron(np.eye(K - 1) - 1.0 / K, slopes)


def gamma_objective(U1: np.ndarray, P: np.ndarray, gamma: np.ndarray, ridge: float) -> float:
    """Expected complete-data log-likelihood of gamma, minus the ridge penalty."""
    return _gamma_obj(P, log_softmax(U1 @ gamma.T), gamma, ridge)


def _gamma_obj(P: np.ndarray, lsm: np.ndarray, gamma: np.ndarray, ridge: float) -> float:
    return float(np.einsum("nk,nk->", P, lsm)) - ridge_penalty(gamma, ridge)


def update_gamma(
    U1: np.ndarray, P: np.ndarray, gamma: np.ndarray, steps: int, ridge: float
) -> np.ndarray:
    """Weighted (soft-target) multinomial logistic M-step: Newton with step halving, never worse."""
    K, d = gamma.shape
    if K == 1:
        return gamma
    N = len(U1)
    pen_h = ridge_hessian(K, d, ridge)
    lsm = log_softmax(U1 @ gamma.T)
    cur = _gamma_obj(P, lsm, gamma, ridge)
    for _ in range(steps):
        pi = np.exp(lsm[:, 1:])
        G = gamma[:, 1:]
        pen_g = np.column_stack([np.zeros(K), ridge * (G - G.mean(axis=0))])[1:].ravel()
        grad = ((P[:, 1:] - pi).T @ U1).ravel() - pen_g
        # negative Hessian: sum_i (diag(pi_i) - pi_i pi_i') kron u_i u_i', built with one matmul
        Wt = -pi[:, :, None] * pi[:, None, :]
        Wt[:, np.arange(K - 1), np.arange(K - 1)] += pi
        M = (Wt.reshape(N, -1)[:, :, None] * U1[:, None, :]).reshape(N, -1)
        H = (M.T @ U1).reshape(K - 1, K - 1, d, d).transpose(0, 2, 1, 3).reshape((K - 1) * d, -1)
        H += pen_h
        H[np.diag_indices_from(H)] += 1e-10
        try:
            step = np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            step = grad / max(np.abs(np.diag(H)).max(), 1.0)
        size = 1.0
        for _ in range(30):
            cand = gamma.copy()
            cand[1:] += size * step.reshape(K - 1, d)
            lsm_c = log_softmax(U1 @ cand.T)
            val = _gamma_obj(P, lsm_c, cand, ridge)
            if val >= cur:
                break
            size /= 2
        else:
            return gamma
        gain = val - cur
        gamma, cur, lsm = cand, val, lsm_c
        if gain <= 1e-12 * max(1.0, abs(cur)):
            break
    return gamma


def pattern_crossproducts(panel: Panel, alpha: np.ndarray, es: EStep) -> list[np.ndarray]:
    """Per block, sum over each pattern's subjects of E[(r_i - 1 b_i)(r_i - 1 b_i)'] (P, t, t)."""
    P, m, v = es.P, es.m, es.v
    mbar = row_sum(P * m)
    tot = row_sum(P * (m - mbar[:, None]) ** 2) + v  # posterior variance of b_i, mixed over classes
    out = []
    for b in panel.blocks:
        e = b.y - fixed_part(b.W, alpha) - mbar[b.rows, None]
        if len(b.starts) == 1:
            out.append((e.T @ e + tot[b.rows].sum())[None])
        else:
            outer = e[:, :, None] * e[:, None, :] + tot[b.rows, None, None]
            out.append(np.add.reduceat(outer, b.starts, axis=0))
    return out


def _ar1_pieces(panel: Panel, S: list[np.ndarray]) -> tuple[float, np.ndarray, ...]:
    """What the AR(1) profile needs, flattened over every gap of every pattern: sum of S at each
    pattern's first time; per gap its length, the diagonal of S below and above it, the
    off-diagonal across it, and the number of subjects with that gap."""
    s00, parts = 0.0, []
    for b, Sb in zip(panel.blocks, S):
        d = np.diagonal(Sb, axis1=1, axis2=2)
        s00 += float(d[:, 0].sum())
        if b.t > 1:
            gaps = b.gaps
            parts.append(
                np.stack(
                    [
                        gaps,
                        d[:, :-1],
                        d[:, 1:],
                        np.diagonal(Sb, offset=1, axis1=1, axis2=2),
                        np.broadcast_to(b.counts[:, None], gaps.shape),
                    ]
                ).reshape(5, -1)
            )
    flat = np.concatenate(parts, axis=1) if parts else np.zeros((5, 0))
    return (s00, *flat)


def ar1_profile(rho: float, pieces: tuple, n_obs: int) -> tuple[float, float]:
    """(-2 x the error part of Q up to constants with sigma_e^2 profiled out, the profiled sigma_e^2).

    Uses the tridiagonal AR(1) precision: tr(R^-1 S) = S_00 + sum_j (S_j+1 + phi_j^2 S_j - 2 phi_j S_j,j+1)
    / (1 - phi_j^2) and log|R| = sum_j log(1 - phi_j^2), with phi_j = rho^gap_j.
    """
    s00, gaps, lo, hi, off, n = pieces
    phi = np.power(rho, gaps)
    one = 1.0 - phi**2
    tr = s00 + float(((hi + phi**2 * lo - 2.0 * phi * off) / one).sum())
    ld = float(n @ np.log(one))
    return n_obs * np.log(tr / n_obs) + ld, tr / n_obs


def _update_ar1(panel: Panel, S: list[np.ndarray], th: Params) -> tuple[float, float]:
    lo = -RHO_MAX if integer_times(panel.times) else 0.0
    pieces, n = _ar1_pieces(panel, S), panel.n_obs
    res = minimize_scalar(
        lambda r: ar1_profile(r, pieces, n)[0],
        bounds=(lo, RHO_MAX),
        method="bounded",
        options={"xatol": 1e-9},
    )
    rho = float(res.x)
    f_new, se2 = ar1_profile(rho, pieces, n)
    f_old, se2_old = ar1_profile(th.rho, pieces, n)
    if not np.isfinite(f_new) or f_old < f_new:
        rho, se2 = (
            th.rho,
            se2_old,
        )  # the bounded search can miss a boundary optimum; never step back
    return rho, se2


def complete_unstructured(panel: Panel, S: list[np.ndarray], C: np.ndarray) -> np.ndarray:
    """Exact M-step of an unstructured S from per-pattern scatters `S` (as `pattern_crossproducts`
    lays them out): observed cross-products, and their expected values at the unobserved times
    given the current covariance `C` (E[e_u | e_o] = B e_o depends on C alone, so any weighting
    of the scatters over classes enters linearly)."""
    T = panel.t
    full = np.zeros((T, T))
    for b, Sb in zip(panel.blocks, S):
        for o, So, n in zip(b.pos, Sb, b.counts):
            u = np.setdiff1d(np.arange(T), o)
            full[np.ix_(o, o)] += So
            if u.size == 0:
                continue
            B = np.linalg.solve(C[np.ix_(o, o)], C[np.ix_(o, u)]).T  # E[e_u | e_o] = B e_o
            full[np.ix_(u, o)] += B @ So
            full[np.ix_(o, u)] += So @ B.T
            full[np.ix_(u, u)] += B @ So @ B.T + n * (C[np.ix_(u, u)] - B @ C[np.ix_(o, u)])
    full = (full + full.T) / (2 * panel.N)
    try:
        np.linalg.cholesky(full)
    except np.linalg.LinAlgError:
        raise not_pd_error(
            "the expected residual cross-product S (unstructured errors)",
            float(np.linalg.eigvalsh(full).min()),
        ) from None
    return full


def _wc(b: Block, bc: BlockCov) -> np.ndarray:
    """W_i' C_i^-1 for every subject of a block, (n, p, t)."""
    if len(bc.Ci) == 1:
        return np.swapaxes(b.W, 1, 2) @ bc.Ci[0]
    if len(bc.Ci) > MANY_PATTERNS:
        return np.einsum("ntp,ntu->npu", b.W, bc.Ci[b.pat])
    out = np.empty((len(b.rows), b.W.shape[2], b.t))
    Wt = np.swapaxes(b.W, 1, 2)
    for k, sl in enumerate(b.slices):
        out[sl] = Wt[sl] @ bc.Ci[k]
    return out


def _gls_alpha_mu(
    panel: Panel, P: np.ndarray, covs: list[BlockCov]
) -> tuple[np.ndarray, np.ndarray]:
    """Class-weighted GLS of (alpha, mu): minimizes sum_ik P_ik (r_i - 1 mu_k)' C_i^-1 (r_i - 1 mu_k)."""
    p, K = panel.p, P.shape[1]
    A, rhs = np.zeros((p + K, p + K)), np.zeros(p + K)
    for b, bc in zip(panel.blocks, covs):
        Pb, c = P[b.rows], bc.c[b.pat]
        ys = row_sum(apply_inverse(b.y, bc.Ci, b))  # 1'C^-1 y_i
        A[p:, p:] += np.diag(Pb.T @ c)
        rhs[p:] += Pb.T @ ys
        if p:
            WC = _wc(b, bc)
            A[:p, :p] += np.einsum("npt,ntq->pq", WC, b.W)
            A[:p, p:] += WC.sum(axis=2).T @ Pb
            rhs[:p] += np.einsum("npt,nt->p", WC, b.y)
    A[p:, :p] = A[:p, p:].T
    x = np.linalg.solve(A, rhs)
    return x[:p], x[p:]


def m_step(
    panel: Panel,
    U1: np.ndarray,
    th: Params,
    es: EStep,
    cfg: EMConfig,
    covs: list[BlockCov] | None = None,
) -> Params:
    """One ECM sweep: gamma, mu and sigma_b^2 (b-part), then alpha and the error covariance (y-part)."""
    covs = (
        covs or es.covs or block_covs(panel, th)
    )  # es was computed at th, so its inverses are th's
    N = panel.N
    P, m, v = es.P, es.m, es.v
    nk = P.sum(axis=0)
    if nk.min() < cfg.min_class_size:
        raise EmptyClassError(
            f"class {int(nk.argmin()) + 1} emptied (posterior weight {nk.min():.3g} "
            f"subjects); K={th.K} is more than these data support"
        )
    gamma = update_gamma(U1, P, th.gamma, cfg.gamma_newton_steps, cfg.gamma_ridge)
    mu = (P * m).sum(axis=0) / nk
    sb2 = (
        0.0 if th.structure == "unstructured" else float(((P * (m - mu) ** 2).sum() + v.sum()) / N)
    )
    alpha = th.alpha
    if th.structure == "unstructured":  # sigma_b^2 = 0: b_i = mu_k, so mu comes from y with alpha
        alpha, mu = _gls_alpha_mu(panel, P, covs)
    elif panel.p:
        mbar = row_sum(P * m)
        A, bvec = np.zeros((panel.p, panel.p)), np.zeros(panel.p)
        for b, bc in zip(panel.blocks, covs):
            WC = _wc(b, bc)
            A += np.einsum("npt,ntq->pq", WC, b.W)
            bvec += np.einsum("npt,nt->p", WC, b.y - mbar[b.rows, None])
        alpha = np.linalg.solve(A, bvec)
    new = replace(th, alpha=alpha, mu=mu, gamma=gamma, sb2=sb2)
    if th.structure == "unstructured" and not panel.balanced:
        # a second cycle: the unobserved errors are imputed given the new mean parameters
        es = e_step(panel, U1, new, covs)
    S = pattern_crossproducts(panel, alpha, es)
    if th.structure == "identity":
        return replace(
            new, se2=sum(float(np.trace(Sb, axis1=1, axis2=2).sum()) for Sb in S) / panel.n_obs
        )
    if th.structure == "ar1":
        rho, se2 = _update_ar1(panel, S, th)
        return replace(new, se2=se2, rho=rho)
    return new.with_cov(complete_unstructured(panel, S, th.S))
