"""EM for the linear mixed model with latent subgroups (docs/em.md), vectorized over subjects.

Model, for subject i measured at times tau_i1 < ... < tau_it_i (any subset of the panel's times):
    y_i = W_i alpha + 1 b_i + eps_i,  b_i | class k ~ N(mu_k, sigma_b^2),  eps_i ~ N(0, C(tau_i)),
    P(class k | U_i) = softmax_k([1, U_i] gamma_k), gamma_1 = 0 (reference class 1 = lowest mu).
Marginally y_i is a K-component normal mixture with means W_i alpha + 1 mu_k and covariance
Sigma_i = sigma_b^2 11' + C(tau_i). Subjects with the same observed times share C(tau_i), so the
E-step needs one inverse per pattern of times (closed form for AR(1)) and the Woodbury identity
for the random intercept; everything else is array arithmetic over the subjects of a block.

Error structures (lib.em.params): 'identity', 'ar1' (continuous-time, exact 1-D M-step over rho),
'unstructured' (a free T x T matrix; with missing times its M-step also takes the expected
cross-products at the unobserved times, in a second cycle after a fresh E-step).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from statsmodels.tools.numdiff import approx_fprime

from .data import Block, Panel
from .params import (
    RHO_MAX,
    STRUCTURES,
    Params,
    ar1_precision,
    integer_times,
    pack,
    rho_to_x,
    spec_of,
    unpack,
    x_to_rho,
)

SEPARATION = 15.0  # |membership slope| beyond which the classes are (nearly) separated
LOG2PI = float(np.log(2 * np.pi))
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


def _row_max(A: np.ndarray) -> np.ndarray:
    """Row maxima of a tall (N, K) array; numpy's axis=1 reduction is slow for small K, columns are not."""
    return np.max(A, axis=1) if A.shape[1] > 16 else np.maximum.reduce(A.T, axis=0)


def _row_sum(A: np.ndarray) -> np.ndarray:
    """Row sums of a tall (N, K) array (a matrix-vector product: fast for small K)."""
    return A @ np.ones(A.shape[1])


def log_softmax(eta: np.ndarray) -> np.ndarray:
    """Row-wise log softmax of an (N, K) array (stable)."""
    z = eta - _row_max(eta)[:, None]
    return z - np.log(_row_sum(np.exp(z)))[:, None]


def design_u(panel: Panel) -> np.ndarray:
    """Membership design [1, U] (N, q + 1)."""
    return np.column_stack([np.ones(panel.N), panel.U])


def _fixed(W: np.ndarray, alpha: np.ndarray) -> np.ndarray | float:
    # one 2-D product: numpy's stacked (n, t, p) @ (p,) is 3-4x slower
    return (W.reshape(-1, W.shape[-1]) @ alpha).reshape(W.shape[:-1]) if alpha.size else 0.0


def residuals(panel: Panel, alpha: np.ndarray) -> np.ndarray:
    """y - W alpha as an N x T array (NaN where not measured)."""
    return panel.y - _fixed(panel.W, alpha)


@dataclass(frozen=True)
class BlockCov:
    """Inverse error covariance, its log-determinant and 1'C^-1 1 for each pattern of a block."""

    Ci: np.ndarray  # (P, t, t)
    logdet: np.ndarray  # (P,)
    c: np.ndarray  # (P,)


def _not_pd(what: str, ev: float) -> np.linalg.LinAlgError:
    return np.linalg.LinAlgError(
        f"{what} is not positive definite (smallest eigenvalue {ev:.3g}); with an unstructured error "
        "covariance this happens when subjects are few or residuals collinear: use structure='ar1' "
        "or 'identity', or more subjects"
    )


def block_covs(panel: Panel, th: Params) -> list[BlockCov]:
    """Per block, the error covariance of each observed-time pattern, inverted (AR(1) in closed form)."""
    if th.structure != "unstructured" and not th.se2 > 0:
        raise _not_pd("the error covariance sigma_e^2 R", th.se2)
    if th.structure == "ar1" and th.rho < 0 and not integer_times(th.times):
        raise ValueError(
            f"rho={th.rho:g} < 0 needs integer times (rho^gap is not real for fractional gaps)"
        )
    out = []
    for b in panel.blocks:
        P, t = b.pos.shape
        if th.structure == "identity":
            Ci = np.broadcast_to(np.eye(t) / th.se2, (P, t, t))
            logdet = np.full(P, t * np.log(th.se2))
        elif th.structure == "ar1":
            Q, ld = ar1_precision(th.rho, b.gaps)
            Ci, logdet = Q / th.se2, ld + t * np.log(th.se2)
        else:
            Cg = th.S[b.pos[:, :, None], b.pos[:, None, :]]
            try:
                L = np.linalg.cholesky(Cg)
            except np.linalg.LinAlgError:
                raise _not_pd(
                    "the error covariance S", float(np.linalg.eigvalsh(Cg).min())
                ) from None
            Li = np.linalg.inv(L)
            Ci = np.einsum("pki,pkj->pij", Li, Li)
            logdet = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        out.append(BlockCov(Ci, logdet, Ci.sum(axis=(1, 2))))
    return out


MANY_PATTERNS = (
    64  # above this many patterns in a block, gather per-subject matrices instead of slicing
)


def _apply(r: np.ndarray, Ci: np.ndarray, b: Block) -> np.ndarray:
    """r_i' C_i^-1 for every row: one product per pattern (rows of a pattern are contiguous)."""
    if len(Ci) == 1:
        return r @ Ci[0]
    if len(Ci) > MANY_PATTERNS:
        return np.einsum("ni,nij->nj", r, Ci[b.pat])
    out = np.empty_like(r)
    for k, sl in enumerate(b.slices):
        out[sl] = r[sl] @ Ci[k]
    return out


@dataclass
class EStep:
    """Posterior quantities at the current parameters."""

    loglik: float  # observed-data log-likelihood
    P: np.ndarray  # (N, K) posterior membership
    m: np.ndarray  # (N, K) posterior mean of b_i given class k
    v: np.ndarray  # (N,) posterior variance of b_i (depends on the subject's times only)
    log_joint: np.ndarray  # (N, K) log pi_ik + log phi_k(y_i)
    s: np.ndarray  # (N,) 1'C_i^-1 r_i
    c: np.ndarray  # (N,) 1'C_i^-1 1
    covs: list[BlockCov] = field(
        default_factory=list, repr=False
    )  # the inverses used, for the M-step


def e_step(panel: Panel, U1: np.ndarray, th: Params, covs: list[BlockCov] | None = None) -> EStep:
    """Posterior memberships and posterior moments of b_i, with the log-likelihood."""
    covs = block_covs(panel, th) if covs is None else covs
    N, mu = panel.N, th.mu
    logdens, m = np.empty((N, th.K)), np.empty((N, th.K))
    v, svec, cvec = np.empty(N), np.empty(N), np.empty(N)
    for b, bc in zip(panel.blocks, covs):
        r = b.y - _fixed(b.W, th.alpha)
        rC = _apply(r, bc.Ci, b)
        a, s = np.einsum("ni,ni->n", rC, r), _row_sum(rC)
        c, ld = bc.c[b.pat], bc.logdet[b.pat]
        onep = 1.0 + th.sb2 * c
        g = th.sb2 / onep  # = Var(b_i | y_i, k), safe at sigma_b^2 = 0
        dev = s[:, None] - c[:, None] * mu[None, :]  # 1'C^-1 (r_i - 1 mu_k)
        # Woodbury, split along 1: (r - 1 mu)' Sigma^-1 (r - 1 mu) = (a - s^2/c) + dev^2 / (c (1 + sb2 c));
        # the first part is the same for every class, so only the second is an (n, K) array
        ldk = dev * dev
        ldk *= (-0.5 / (c * onep))[:, None]
        ldk += (-0.5 * (b.t * LOG2PI + ld + np.log(onep) + a - s * s / c))[:, None]
        logdens[b.rows] = ldk
        dev *= g[:, None]
        m[b.rows] = dev + mu[None, :]
        v[b.rows], svec[b.rows], cvec[b.rows] = g, s, c
    log_joint = logdens
    log_joint += log_softmax(U1 @ th.gamma.T)
    mx = _row_max(log_joint)
    P = log_joint - mx[:, None]
    np.exp(P, out=P)
    tot = _row_sum(P)
    P /= tot[:, None]
    lse = mx + np.log(tot)
    return EStep(float(lse.sum()), P, m, v, log_joint, svec, cvec, covs)


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
    mbar = _row_sum(P * m)
    tot = (
        _row_sum(P * (m - mbar[:, None]) ** 2) + v
    )  # posterior variance of b_i, mixed over classes
    out = []
    for b in panel.blocks:
        e = b.y - _fixed(b.W, alpha) - mbar[b.rows, None]
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


def _update_unstructured(panel: Panel, S: list[np.ndarray], th: Params) -> np.ndarray:
    """Exact M-step of S: observed cross-products, and their expected values at the unobserved times."""
    T = panel.t
    full = np.zeros((T, T))
    for b, Sb in zip(panel.blocks, S):
        for o, So, n in zip(b.pos, Sb, b.counts):
            u = np.setdiff1d(np.arange(T), o)
            full[np.ix_(o, o)] += So
            if u.size == 0:
                continue
            C = th.S
            B = np.linalg.solve(C[np.ix_(o, o)], C[np.ix_(o, u)]).T  # E[e_u | e_o] = B e_o
            full[np.ix_(u, o)] += B @ So
            full[np.ix_(o, u)] += So @ B.T
            full[np.ix_(u, u)] += B @ So @ B.T + n * (C[np.ix_(u, u)] - B @ C[np.ix_(o, u)])
    full = (full + full.T) / (2 * panel.N)
    try:
        np.linalg.cholesky(full)
    except np.linalg.LinAlgError:
        raise _not_pd(
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
        ys = _row_sum(_apply(b.y, bc.Ci, b))  # 1'C^-1 y_i
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
        mbar = _row_sum(P * m)
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
    return new.with_cov(_update_unstructured(panel, S, th))


def loglik(panel: Panel, th: Params) -> float:
    """Observed-data log-likelihood sum_i log sum_k pi_ik phi(y_i; W_i alpha + 1 mu_k, Sigma_i)."""
    return e_step(panel, design_u(panel), th).loglik


def canonical(th: Params, P: np.ndarray | None = None, m: np.ndarray | None = None):
    """Order classes by mu_k and re-reference gamma to the new class 1 (lowest mu)."""
    order = np.argsort(th.mu, kind="stable")
    gamma = th.gamma[order] - th.gamma[order][0]
    th = replace(th, mu=th.mu[order], gamma=gamma)
    return th, (None if P is None else P[:, order]), (None if m is None else m[:, order])


def _top_tol(best: float, cfg: EMConfig) -> float:
    return max(TOP_TOL, 100 * cfg.tol * abs(best))


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

    @property
    def n_top(self) -> int:
        """Starts run to convergence that reached the best log-likelihood.

        Within TOP_TOL, or within 100 x the stopping tolerance on a large panel, where EM's stop
        (a relative change of tol per iteration) can leave a converged start that far below.
        """
        best = max(self.final_logliks, default=self.loglik)
        return sum(f >= best - _top_tol(best, self.config) for f in self.final_logliks)

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


def _objective(panel: Panel, U1: np.ndarray, th: Params, cfg: EMConfig) -> tuple[EStep, float]:
    es = e_step(panel, U1, th)
    return es, es.loglik - _pen(th, cfg)


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
        es_, f_ = _objective(panel, U1, th_, cfg)
        return th_, es_, f_

    es, f0 = _objective(panel, U1, th, cfg)
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
            path.append(es.loglik - _pen(th, cfg))
    return th, es, path, False


def sb2_score_at_zero(panel: Panel, th: Params, P: np.ndarray) -> float:
    """d loglik / d sigma_b^2 at sigma_b^2 = 0 (other parameters fixed, posteriors P at that point)."""
    es = e_step(panel, design_u(panel), replace(th, sb2=0.0))
    dev = es.s[:, None] - es.c[:, None] * th.mu[None, :]  # 1'C^-1 (r_i - 1 mu_k)
    return 0.5 * float((P * (dev**2 - es.c[:, None])).sum())


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


def _pen(th: Params, cfg: EMConfig) -> float:
    return ridge_penalty(th.gamma, cfg.gamma_ridge)


def _check_fit_input(panel: Panel, cfg: EMConfig) -> list[str]:
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
                "use structure='ar1'"
            )
        both = panel.observed.T.astype(float) @ panel.observed
        if (both == 0).any():
            i, j = np.argwhere(both == 0)[0]
            raise ValueError(
                f"times {panel.times[i]:g} and {panel.times[j]:g} are never measured on the same "
                "subject, so their error covariance is not identified; use structure='ar1'"
            )
    n_par = panel.p + cfg.K + (cfg.K - 1) * (panel.q + 1) + 3
    if n_par >= N:
        raise ValueError(
            f"{n_par} parameters for N={N} subjects: reduce K or the membership covariates"
        )
    return notes


def within_alpha(panel: Panel) -> np.ndarray:
    """Fixed effects from within-subject variation (each subject's mean removed), pooled OLS for the rest.

    When the subject intercepts vary a lot and correlate with W (experience in a wage panel), the
    pooled fit's alpha is pulled by the between-subject differences; EM started there can settle
    on a mode where the AR(1) errors absorb the random intercept. Columns of W that do not vary
    within subjects are not identified by the within fit and come from pooled OLS given the others.
    """
    obs = panel.observed
    per = np.maximum(obs.sum(axis=1, keepdims=True), 1)
    y = np.where(obs, panel.y, 0.0)
    W = np.where(obs[:, :, None], panel.W, 0.0)
    yd = np.where(obs, y - y.sum(axis=1, keepdims=True) / per, 0.0)
    Wd = np.where(obs[:, :, None], W - W.sum(axis=1, keepdims=True) / per[:, :, None], 0.0)
    X, Xd = W[obs], Wd[obs]
    ss_within, ss_total = (Xd**2).sum(axis=0), ((X - X.mean(axis=0)) ** 2).sum(axis=0)
    inside = ss_within > 1e-8 * np.maximum(ss_total, 1e-300)
    alpha = np.zeros(panel.p)
    if inside.any():
        alpha[inside] = np.linalg.lstsq(Xd[:, inside], yd[obs], rcond=None)[0]
    if not inside.all():
        rest = y[obs] - X[:, inside] @ alpha[inside]
        Z = np.column_stack([X[:, ~inside], np.ones(len(rest))])
        alpha[~inside] = np.linalg.lstsq(Z, rest, rcond=None)[0][:-1]
    return alpha


def _spread_means(rbar: np.ndarray, K: int, rng: np.random.Generator) -> np.ndarray:
    """K class means drawn from the subject means by k-means++ seeding (each next one with
    probability proportional to its squared distance from those already drawn), so a small
    class in a tail, which uniform draws almost never seed, is seeded often."""
    mu = [float(rng.choice(rbar))]
    for _ in range(K - 1):
        d2 = np.min((rbar[:, None] - np.asarray(mu)[None, :]) ** 2, axis=1)
        mu.append(
            float(rng.choice(rbar, p=d2 / d2.sum())) if d2.sum() > 0 else float(rng.choice(rbar))
        )
    return np.asarray(mu)


def initial_params(
    panel: Panel,
    cfg: EMConfig,
    rng: np.random.Generator | None,
    within: bool = False,  # alpha from within-subject variation (within_alpha) instead of pooled OLS
    spread: bool = False,  # random class means by k-means++ seeding instead of uniform draws
    tail: str = "",  # "low" / "high": one class at the most extreme 1% of subject means (rng None)
) -> Params:
    """Start values: alpha by pooled OLS (or within-subject), class means from subject means
    (quantiles, or random draws with random membership slopes and variance split)."""
    obs = panel.observed
    N, p = panel.N, panel.p
    if within and p:
        alpha = within_alpha(panel)
    else:
        X = np.column_stack([panel.W[obs], np.ones(panel.n_obs)])
        alpha = np.linalg.lstsq(X, panel.y[obs], rcond=None)[0][:p]
    r = residuals(panel, alpha)
    per = obs.sum(axis=1)
    rbar = np.nanmean(r, axis=1)
    dof = max(panel.n_obs - N, 1)
    within_var = (
        float(np.nansum((r - rbar[:, None]) ** 2) / dof) if panel.n_obs > N else float(np.nanvar(r))
    )
    se2 = max(within_var, 1e-8 * max(float(np.nanvar(r)), 1e-12))
    K = cfg.K
    if rng is None and tail and K > 1:
        # a small class of extreme subjects is a common top that quantile and uniform starts miss
        order = np.sort(rbar) if tail == "low" else np.sort(rbar)[::-1]
        n_tail = max(2, N // 100)
        rest = order[n_tail:]
        mu = np.r_[order[:n_tail].mean(), np.quantile(rest, (np.arange(K - 1) + 0.5) / (K - 1))]
    elif rng is None:
        mu = np.quantile(rbar, (np.arange(K) + 0.5) / K)
    elif spread:
        mu = _spread_means(rbar, K, rng) + rng.normal(0, 0.05 * rbar.std() + 1e-12, K)
    else:
        mu = np.sort(rng.choice(rbar, size=K, replace=False)) + rng.normal(
            0, 0.05 * rbar.std() + 1e-12, K
        )
    mu = np.sort(mu)
    lab = np.abs(rbar[:, None] - mu[None, :]).argmin(axis=1)
    nk = np.bincount(lab, minlength=K) + 1.0
    within_b = float(((rbar - mu[lab]) ** 2).mean())
    sb2 = max(within_b - se2 * float(np.mean(1.0 / per)), 0.05 * float(rbar.var()) + 1e-8)
    gamma = np.zeros((K, panel.q + 1))
    gamma[:, 0] = np.log(nk / nk[0])
    if rng is not None:
        if panel.q:
            sd = panel.U.std(axis=0)
            gamma[1:, 1:] = rng.normal(0.0, 0.5, (K - 1, panel.q)) / np.where(sd > 0, sd, 1.0)
        share = rng.uniform(
            0.2, 0.8
        )  # how the subject-level variance splits between b and the errors
        sb2, se2 = sb2 * 2 * share, se2 * 2 * (1 - share)
    rho = float("nan")
    if cfg.structure == "ar1":
        lo = 0.0 if not integer_times(panel.times) else -0.5
        rho = 0.1 if rng is None else float(rng.uniform(max(lo, 0.0), 0.9))
    if cfg.structure == "unstructured":
        S = se2 * np.eye(panel.t) + sb2
        return Params(
            alpha, mu, gamma, 0.0, float(np.mean(np.diag(S))), panel.times, cfg.structure, rho, S
        )
    return Params(alpha, mu, gamma, sb2, se2, panel.times, cfg.structure, rho)


def _duplicates(th: Params) -> list[tuple[int, int]]:
    """Pairs of classes whose means are closer than 0.05 sigma_b (or 1e-6 when sigma_b^2 = 0)."""
    tol = max(0.05 * np.sqrt(th.sb2), 1e-6)
    return [(k, k + 1) for k in range(th.K - 1) if th.mu[k + 1] - th.mu[k] < tol]


def separated_classes(gamma: np.ndarray) -> list[int]:
    """Classes k >= 1 whose membership slopes exceed SEPARATION in absolute value."""
    return [k for k in range(1, len(gamma)) if np.abs(gamma[k, 1:]).max(initial=0) > SEPARATION]


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


def fit_em(panel: Panel, cfg: EMConfig = EMConfig(), init: Params | None = None) -> EMResult:
    """Fit by EM from several starts (short runs, then the best few to convergence, then a direct polish).

    Starts come in rounds of n_starts (the first up to four deterministic: pooled and within
    alpha, quantile and tail class means; the rest random); a new round
    is drawn while no second converged start came within ROUND_TOL of the best (the best may
    then be one of several separate modes), up to max_rounds.
    `init` (for example a reduced model's estimate padded with zeros) is tried as an extra
    start; the log-likelihood is checked never to decrease along the final run.
    """
    notes = _check_fit_input(panel, cfg)
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
    U1 = design_u(panel)
    rng = np.random.default_rng(cfg.seed)
    if cfg.n_starts == 0 and init is None:
        raise ValueError("n_starts=0 needs an init (fit_em(..., init=params)); use n_starts >= 1")
    # on a large panel the starts are ranked on a random subset: the ranking needs far fewer subjects
    screen = (
        panel
        if panel.N <= cfg.screen_subjects
        else panel.subset(np.sort(rng.choice(panel.N, cfg.screen_subjects, replace=False)))
    )
    U1s = U1 if screen is panel else design_u(screen)

    def advance(c: tuple, iters: int) -> tuple:
        """Continue a candidate (objective, start, th, path, converged, family) by `iters` EM iterations."""
        _, s, th, path, conv, fam = c
        if conv:
            return c
        th, _, more, conv = run_em(screen, th, cfg, iters, U1s)
        if screen is not panel:  # ranked on the full panel; its path starts at the final run
            return (_objective(panel, U1, th, cfg)[1], s, th, [], False, fam)
        return (more[-1], s, th, path + more[1:], conv, fam)

    def one_round(starts: list[tuple[Params, str]], first: int) -> list[tuple]:
        """Starts (with their family: pooled or within alpha, init) screened in two stages, then
        the best n_final (and a given init) run to convergence: (path, th, es, conv)."""
        cands = []
        for s, (th0, fam) in enumerate(starts, first):
            try:
                cands.append(
                    advance(
                        (None, s, th0, [_objective(screen, U1s, th0, cfg)[1]], False, fam),
                        cfg.short_iter,
                    )
                )
            except EmptyClassError as e:
                lost.append(f"start {s} abandoned: {e}")
        short.extend((s, f) for f, s, *_ in cands)
        cands.sort(key=lambda c: -c[0])
        # the better half and the best of each family run screen_iter more iterations before the
        # final ranking: after a few, a start bound for the top can still rank below starts bound
        # for lower modes (a wage panel: within-subject alpha for K = 1, a tail class for K = 3)
        second = cands[: max(cfg.n_final + 1, (len(cands) + 1) // 2)]
        for fam in {c[5] for c in cands} - {c[5] for c in second}:
            second.append(next(c for c in cands if c[5] == fam))
        kept = []
        for c in second:
            try:
                kept.append(advance(c, cfg.screen_iter))
            except EmptyClassError as e:
                lost.append(f"start {c[1]} abandoned: {e}")
        kept.sort(key=lambda c: -c[0])
        final = kept[: cfg.n_final] + [c for c in kept[cfg.n_final :] if c[5] == "init"]
        done = []
        for _, s, th, path0, conv, _ in final:
            # a run bound for a mode HOPELESS below the best converged one is not crawled to the end
            best = max((r[0][-1] for r in runs + done if r[3]), default=-np.inf)
            try:
                if not conv:
                    th, es, path, conv = run_em(
                        panel, th, cfg, cfg.max_iter, U1, floor=best - HOPELESS
                    )
                    path = path0 + path[1:] if path0 else path
                else:
                    es, path = e_step(panel, U1, th), path0
            except EmptyClassError as e:
                lost.append(f"start {s} abandoned: {e}")
                continue
            done.append((path, th, es, conv))
        return done

    lost, short, runs = [], [], []

    def random_starts(n: int) -> list[tuple[Params, str]]:
        # alternate pooled / within alpha and uniform / k-means++ means: each choice can be the
        # only way to the top (a wage panel needs within alpha for K = 1, a small tail class k-means++)
        return [
            (
                initial_params(panel, cfg, rng, within=j % 2 == 1, spread=j % 4 >= 2),
                ("pooled", "within")[j % 2],
            )
            for j in range(n)
        ]

    starts = [
        (initial_params(panel, cfg, None, within=w, tail=t), f)
        for w, t, f in (
            (False, "", "pooled"),
            (True, "", "within"),
            (True, "low", "within"),
            (True, "high", "within"),
        )
    ][: cfg.n_starts if cfg.K > 1 else min(cfg.n_starts, 2)]
    starts += random_starts(cfg.n_starts - len(starts))
    if init is not None:
        starts.insert(0, (init, "init"))
    runs += one_round(starts, 0)
    n_started = len(starts)
    for _ in range(cfg.max_rounds - 1 if cfg.n_starts else 0):
        # more rounds of random starts until the best log-likelihood has been reached twice
        lls = [r[0][-1] for r in runs]
        if lls and sum(v >= max(lls) - ROUND_TOL for v in lls) >= 2:
            break
        runs += one_round(random_starts(cfg.n_starts), n_started)
        n_started += cfg.n_starts
    if (
        lost
    ):  # one note: random starts that empty a class are common and harmless when others succeed
        notes.append(
            f"{len(lost)} of {n_started} starts lost a class and were dropped ({lost[0]})"
            if runs
            else lost[-1]
        )
    if not runs:
        raise EmptyClassError(
            f"every start lost a class ({lost[-1] if lost else ''}); fit a smaller K "
            "or add starts (n_starts)"
        )
    finals = [r[0][-1] for r in runs]
    path, th, es, conv = max(runs, key=lambda r: r[0][-1])
    path = np.asarray(path)
    drops = np.diff(path) < -1e-9 * np.abs(path[:-1]).clip(1.0)
    if drops.any():
        notes.append(
            f"log-likelihood decreased at {int(drops.sum())} iterations (max drop "
            f"{-np.diff(path).max():.3g}); please report this"
        )
    gain = 0.0
    if cfg.polish and cfg.gamma_ridge == 0.0:
        # a gradient check from EM's end point: BFGS moves only if EM stopped short of a maximum.
        # Two steps probe it: where EM stopped at the top they gained < 1e-7 (N 300 simulations),
        # where EM crawled (rho 0.95, K 4) > 1e-5, and only then does BFGS go on. Each step costs
        # n_params + 1 likelihood evaluations: on a large panel three are taken in one run
        # (a restart after the probe would pay the gradient at the start again)
        large = panel.N > cfg.screen_subjects
        th_d, ll_d = maximize_direct(
            panel, th, maxiter=3 if large else 2, gtol=1e-6, centered=False
        )
        if not large and ll_d - es.loglik > PROBE_GAIN:
            # central differences: on a flat ridge (Cornwell-Rupert, K 3, AR(1)) forward ones stall
            # 5e-4 below the maximum that central ones reach
            th_d, ll_d = maximize_direct(panel, th_d, maxiter=200, gtol=1e-6, centered=True)
        if ll_d > es.loglik + 1e-8:
            gain = ll_d - es.loglik
            th, es = th_d, e_step(panel, U1, th_d)
            conv = True
            if gain > TOP_TOL:
                notes.append(
                    f"EM stopped {gain:.3g} below the maximum that direct maximization reached from its "
                    "end point; the polished estimate is returned"
                )
    if th.structure != "unstructured" and 0.0 < th.sb2 < BOUNDARY_SB2 * th.se2:
        # EM only crawls towards sigma_b^2 = 0 and its stop leaves it anywhere from 1e-30 to 1e-9
        # (rounding alone decides): where 0 is no worse and the score there points down, 0 it is
        at0 = replace(th, sb2=0.0)
        es0 = e_step(panel, U1, at0)
        if es0.loglik >= es.loglik and sb2_score_at_zero(panel, at0, es0.P) <= 0:
            th, es = at0, es0
    if not conv:
        notes.append(
            f"not converged after {cfg.max_iter} iterations (relative change "
            f"{abs(path[-1] - path[-2]) / abs(path[-2]):.2g}); raise max_iter"
        )
    th, P, m = canonical(th, es.P, es.m)
    if separated_classes(th.gamma):
        notes.append(
            f"some membership coefficients exceed {SEPARATION:g} in absolute value (near separation); "
            "set gamma_ridge > 0 or drop covariates"
        )
    dup = _duplicates(th)
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
    for n in notes:
        warnings.warn(n, stacklevel=2)
    return EMResult(
        th,
        float(es.loglik),
        path,
        len(path) - 1,
        conv,
        P,
        m,
        es.v,
        cfg,
        panel.w_names,
        panel.u_names,
        [f for _, f in sorted(short)],
        finals,
        gain,
        notes,
    )
