"""EM for the linear mixed model with latent subgroups (seed section 3), vectorized.

Model, for subject i with t repeated measures:
    y_i = W_i alpha + 1 b_i + eps_i,  b_i | class k ~ N(mu_k, sigma_b^2),  eps_i ~ N(0, sigma_e^2 R),
    P(class k | U_i) = softmax_k([1, U_i] gamma_k), gamma_1 = 0 (reference class 1 = lowest mu).
Marginally y_i is a K-component normal mixture with means W_i alpha + 1 mu_k and one shared
covariance Sigma = sigma_b^2 11' + sigma_e^2 R, so the whole E-step needs one Cholesky factor
of a t x t matrix per iteration and triangular solves on the N x t residual array.

Error structures: 'identity', 'ar1' (default; exact 1-D M-step over rho), 'unstructured'
(sigma_e^2 R = S, the exact M-step; sigma_b^2 then sits on a likelihood ridge and is
reported as not identified).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize, minimize_scalar

from .data import Panel

STRUCTURES = ("identity", "ar1", "unstructured")
SEPARATION = 15.0  # |membership slope| beyond which the classes are (nearly) separated
LOG2PI = float(np.log(2 * np.pi))


class EmptyClassError(RuntimeError):
    """A subgroup lost (almost) all its posterior weight during EM."""


@dataclass(frozen=True)
class EMConfig:
    """Settings of one EM fit."""

    K: int = 3  # number of latent subgroups
    structure: str = "ar1"  # error correlation R: identity, ar1 or unstructured
    n_starts: int = 5  # starts (the first deterministic: quantiles of subject means); 0: only fit_em's init
    short_iter: int = 15  # EM iterations per start before the best starts are run to convergence
    n_final: int = 2  # starts (best after the short runs) run to convergence; the best is kept
    max_iter: int = 2000  # cap on EM iterations of the final run
    tol: float = 1e-9  # stop when |l_new - l_old| <= tol * |l_old|
    seed: int = 0  # seed of the random starts
    min_class_size: float = 1.0  # a class with less posterior weight (subjects) counts as empty
    gamma_newton_steps: int = 1  # Newton steps of the gamma M-step per EM iteration
    gamma_ridge: float = 0.0  # ridge on class-centred slopes of gamma (guards separation); 0 = plain ML
    accelerate: bool = True  # SQUAREM extrapolation between EM steps (kept only when it helps)

    def __post_init__(self) -> None:
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure={self.structure!r}; use one of {STRUCTURES}")
        if not isinstance(self.K, (int, np.integer)) or self.K < 1:
            raise ValueError(f"K={self.K!r}; the number of subgroups must be an integer >= 1")
        if self.n_starts < 0 or self.n_final < 1 or self.max_iter < 1 or self.tol <= 0:
            raise ValueError("n_starts >= 0 (0 only with an init), n_final and max_iter >= 1, tol > 0")
        if self.gamma_ridge < 0:
            raise ValueError(f"gamma_ridge={self.gamma_ridge} must be >= 0")


@dataclass(frozen=True)
class Params:
    """Model parameters; gamma row 0 is the reference class (all zeros)."""

    alpha: np.ndarray  # (p,)
    mu: np.ndarray  # (K,)
    gamma: np.ndarray  # (K, q + 1): intercept first
    sb2: float  # random-intercept variance sigma_b^2
    C: np.ndarray  # (t, t) error covariance sigma_e^2 R
    structure: str = "ar1"
    rho: float = float("nan")  # AR(1) correlation (nan for other structures)

    @property
    def K(self) -> int:
        """Number of subgroups."""
        return self.mu.size

    @property
    def se2(self) -> float:
        """sigma_e^2 (mean diagonal of sigma_e^2 R; R has unit diagonal for identity and AR(1))."""
        return float(np.mean(np.diag(self.C)))

    @property
    def R(self) -> np.ndarray:
        """Working correlation R = C / sigma_e^2."""
        return self.C / self.se2

    def sigma(self) -> np.ndarray:
        """Marginal covariance of y_i: sigma_b^2 11' + sigma_e^2 R."""
        return self.sb2 + self.C


def log_softmax(eta: np.ndarray) -> np.ndarray:
    """Row-wise log softmax of an (N, K) array (stable)."""
    z = eta - eta.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def ar1_corr(rho: float, t: int) -> np.ndarray:
    """AR(1) correlation matrix rho^|i-j|."""
    idx = np.arange(t)
    return rho ** np.abs(idx[:, None] - idx[None, :])


def _chol(S: np.ndarray, what: str) -> tuple:
    """Cholesky factor with an error that names the remedy when S is not positive definite."""
    try:
        return cho_factor(S, lower=True)
    except np.linalg.LinAlgError:
        ev = np.linalg.eigvalsh((S + S.T) / 2).min()
        raise np.linalg.LinAlgError(
            f"{what} is not positive definite (smallest eigenvalue {ev:.3g}); with an unstructured error "
            "covariance this happens when subjects are few or residuals collinear: use structure='ar1' "
            "or 'identity', or more subjects") from None


def design_u(panel: Panel) -> np.ndarray:
    """Membership design [1, U] (N, q + 1)."""
    return np.column_stack([np.ones(panel.N), panel.U])


def residuals(panel: Panel, alpha: np.ndarray) -> np.ndarray:
    """y - W alpha as an N x t array."""
    if panel.p == 0:
        return panel.y
    return panel.y - np.tensordot(panel.W, alpha, axes=1)


@dataclass
class EStep:
    """Posterior quantities at the current parameters."""

    loglik: float  # observed-data log-likelihood
    P: np.ndarray  # (N, K) posterior membership
    m: np.ndarray  # (N, K) posterior mean of b_i given class k
    v: float  # posterior variance of b_i (the same for all i and k in a balanced design)
    log_joint: np.ndarray  # (N, K) log pi_ik + log phi_k(y_i)


def component_logdens(r: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """log N(r_i; 1 mu_k, Sigma) for all subjects and classes, (N, K), via one Cholesky."""
    L = _chol(sigma, "the marginal covariance sigma_b^2 11' + sigma_e^2 R")[0]
    t = r.shape[1]
    Z = solve_triangular(L, r.T, lower=True, check_finite=False)  # (t, N)
    z1 = solve_triangular(L, np.ones(t), lower=True, check_finite=False)
    qa = np.einsum("tn,tn->n", Z, Z)
    qb = z1 @ Z
    quad = qa[:, None] - 2.0 * qb[:, None] * mu[None, :] + (z1 @ z1) * mu[None, :] ** 2
    logdet = 2.0 * np.log(np.diag(L)).sum()
    return -0.5 * (t * LOG2PI + logdet + quad)


def e_step(panel: Panel, U1: np.ndarray, th: Params) -> EStep:
    """Posterior memberships and posterior moments of b_i, with the log-likelihood."""
    r = residuals(panel, th.alpha)
    log_prior = log_softmax(U1 @ th.gamma.T)
    log_joint = log_prior + component_logdens(r, th.mu, th.sigma())
    mx = log_joint.max(axis=1, keepdims=True)
    P = np.exp(log_joint - mx)
    tot = P.sum(axis=1, keepdims=True)
    P /= tot
    lse = mx[:, 0] + np.log(tot[:, 0])
    cf = _chol(th.C, "the error covariance sigma_e^2 R")
    w = cho_solve(cf, np.ones(panel.t))  # C^-1 1
    c = float(w.sum())  # 1' C^-1 1
    v = th.sb2 / (1.0 + th.sb2 * c)  # = (1/sb2 + 1'C^-1 1)^-1, safe at sb2 = 0
    m = th.mu[None, :] + v * ((r @ w)[:, None] - c * th.mu[None, :])
    return EStep(float(lse.sum()), P, m, v, log_joint)


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


def update_gamma(U1: np.ndarray, P: np.ndarray, gamma: np.ndarray, steps: int, ridge: float) -> np.ndarray:
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


def _ar1_inv_trace(rho: float, S: np.ndarray) -> float:
    """tr(R(rho)^-1 S) from the tridiagonal closed form of the AR(1) inverse."""
    t = S.shape[0]
    dg = np.full(t, 1.0 + rho ** 2)
    dg[0] = dg[-1] = 1.0
    return float((dg @ np.diag(S) - 2.0 * rho * np.trace(S, offset=1)) / (1.0 - rho ** 2))


def ar1_profile(rho: float, S: np.ndarray) -> float:
    """-2/N times the y-part of Q, up to constants, with sigma_e^2 profiled out."""
    t = S.shape[0]
    return (t - 1) * np.log1p(-rho ** 2) + t * np.log(_ar1_inv_trace(rho, S) / t)


def update_cov(S: np.ndarray, th: Params) -> tuple[np.ndarray, float]:
    """Exact M-step of sigma_e^2 R given the expected residual cross-product S (t x t)."""
    t = S.shape[0]
    if th.structure == "identity":
        return np.eye(t) * np.trace(S) / t, float("nan")
    if th.structure == "unstructured":
        _chol(S, "the expected residual cross-product S (unstructured sigma_e^2 R)")
        return (S + S.T) / 2, float("nan")
    res = minimize_scalar(ar1_profile, bounds=(-0.999, 0.999), args=(S,), method="bounded",
                          options={"xatol": 1e-10})
    rho = float(res.x)
    if not np.isfinite(res.fun) or ar1_profile(th.rho, S) < res.fun:
        rho = th.rho  # the bounded search can miss a boundary optimum; never step back
    se2 = _ar1_inv_trace(rho, S) / t
    return se2 * ar1_corr(rho, t), rho


def m_step(panel: Panel, U1: np.ndarray, th: Params, es: EStep, cfg: EMConfig) -> Params:
    """One ECM sweep: gamma, mu and sigma_b^2 (b-part), then alpha and sigma_e^2 R (y-part)."""
    N, t = panel.y.shape
    P, m, v = es.P, es.m, es.v
    nk = P.sum(axis=0)
    if nk.min() < cfg.min_class_size:
        raise EmptyClassError(f"class {int(nk.argmin()) + 1} emptied (posterior weight {nk.min():.3g} "
                              f"subjects); K={th.K} is more than these data support")
    gamma = update_gamma(U1, P, th.gamma, cfg.gamma_newton_steps, cfg.gamma_ridge)
    mu = (P * m).sum(axis=0) / nk
    sb2 = float(((P * (m - mu) ** 2).sum() + N * v) / N)
    mbar = (P * m).sum(axis=1)
    varm = (P * (m - mbar[:, None]) ** 2).sum(axis=1)
    alpha = th.alpha
    if panel.p:
        Ci = cho_solve(_chol(th.C, "the error covariance sigma_e^2 R"), np.eye(t))
        WC = np.tensordot(panel.W, Ci, axes=([1], [0]))  # (N, p, t)
        A = np.tensordot(WC, panel.W, axes=([0, 2], [0, 1]))
        bvec = np.tensordot(WC, panel.y - mbar[:, None], axes=([0, 2], [0, 1]))
        alpha = np.linalg.solve(A, bvec)
    e = residuals(panel, alpha) - mbar[:, None]
    # E[(r - 1 b)(r - 1 b)'] summed over classes: spread of m_ik across classes and v both enter
    S = (e.T @ e + (varm.sum() + N * v)) / N
    C, rho = update_cov(S, th)
    return Params(alpha, mu, gamma, sb2, C, th.structure, rho)


def loglik(panel: Panel, th: Params) -> float:
    """Observed-data log-likelihood sum_i log sum_k pi_ik phi(y_i; W_i alpha + 1 mu_k, Sigma)."""
    return e_step(panel, design_u(panel), th).loglik


def canonical(th: Params, P: np.ndarray | None = None, m: np.ndarray | None = None):
    """Order classes by mu_k and re-reference gamma to the new class 1 (lowest mu)."""
    order = np.argsort(th.mu, kind="stable")
    gamma = th.gamma[order] - th.gamma[order][0]
    th = replace(th, mu=th.mu[order], gamma=gamma)
    return th, (None if P is None else P[:, order]), (None if m is None else m[:, order])


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
    b_var: float  # posterior variance of b_i given a class
    config: EMConfig
    w_names: tuple[str, ...]
    u_names: tuple[str, ...]
    start_logliks: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n_params(self) -> int:
        """Free parameters: alpha, mu, gamma, and the identified covariance parameters."""
        th = self.params
        t = th.C.shape[0]
        cov = {"identity": 2, "ar1": 3, "unstructured": t * (t + 1) // 2}[th.structure]
        return th.alpha.size + th.K + (th.K - 1) * th.gamma.shape[1] + cov

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


def to_vector(th: Params) -> np.ndarray:
    """Parameters on an unconstrained scale (log variances, atanh rho, log-Cholesky of C), for extrapolation."""
    t = th.C.shape[0]
    head = [th.alpha, th.mu, th.gamma[1:].ravel(), [0.5 * np.log(max(th.sb2, 1e-300))]]
    if th.structure == "unstructured":
        L = np.linalg.cholesky(th.C)
        L[np.diag_indices(t)] = np.log(np.diag(L))
        return np.concatenate(head + [L[np.tril_indices(t)]])
    tail = [0.5 * np.log(th.se2)] + ([np.arctanh(np.clip(th.rho, -0.999, 0.999))] if th.structure == "ar1" else [])
    return np.concatenate(head + [tail])


def from_vector(x: np.ndarray, like: Params) -> Params:
    """Inverse of to_vector, with shapes taken from `like`."""
    p, K, d, t = like.alpha.size, like.K, like.gamma.shape[1], like.C.shape[0]
    i = p + K + (K - 1) * d
    gamma = np.vstack([np.zeros(d), x[p + K:i].reshape(K - 1, d)])
    sb2 = float(np.exp(2 * x[i]))
    rest = x[i + 1:]
    rho = float("nan")
    if like.structure == "unstructured":
        L = np.zeros((t, t))
        L[np.tril_indices(t)] = rest
        L[np.diag_indices(t)] = np.exp(np.diag(L))
        C = L @ L.T
    elif like.structure == "identity":
        C = np.exp(2 * rest[0]) * np.eye(t)
    else:
        rho = float(np.tanh(rest[1]))
        C = np.exp(2 * rest[0]) * ar1_corr(rho, t)
    return Params(x[:p], x[p:p + K], gamma, sb2, C, like.structure, rho)


def run_em(panel: Panel, th: Params, cfg: EMConfig, max_iter: int, U1: np.ndarray | None = None
           ) -> tuple[Params, EStep, list[float], bool]:
    """Iterate E and M steps from `th`; returns the last parameters, E-step, path and convergence.

    With cfg.accelerate, every two EM steps are followed by a SQUAREM extrapolation (Varadhan and
    Roland 2008) that is kept only if one EM step from it beats the plain path, so the recorded
    objective still never decreases; it matters where EM crawls (sigma_b^2 near 0, rho near 1).
    """
    U1 = design_u(panel) if U1 is None else U1

    def step(th_: Params, es_: EStep) -> tuple[Params, EStep, float]:
        th_ = m_step(panel, U1, th_, es_, cfg)
        es_ = e_step(panel, U1, th_)
        return th_, es_, es_.loglik - _pen(th_, cfg)

    es = e_step(panel, U1, th)
    path = [es.loglik - _pen(th, cfg)]
    n = 0
    while n < max_iter:
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
        x0, x1, x2 = to_vector(th), to_vector(th1), to_vector(th2)
        r, v = x1 - x0, x2 - 2 * x1 + x0
        th, es = th2, es2
        if n >= max_iter or not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
            continue
        a = min(-np.linalg.norm(r) / np.linalg.norm(v), -1.0)
        try:
            with np.errstate(all="ignore"):
                thx = from_vector(x0 - 2 * a * r + a * a * v, th)
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
    r = residuals(panel, th.alpha)
    w = cho_solve(_chol(th.C, "the error covariance sigma_e^2 R"), np.ones(panel.t))
    c = float(w.sum())
    proj = (r @ w)[:, None] - c * th.mu[None, :]  # 1'C^-1 (r_i - 1 mu_k)
    return 0.5 * float((P * (proj ** 2 - c)).sum())


def _cov_vector(th: Params) -> np.ndarray:
    x = [np.sqrt(th.sb2), 0.5 * np.log(th.se2)]
    return np.array(x + ([np.arctanh(np.clip(th.rho, -0.999, 0.999))] if th.structure == "ar1" else []))


def _cov_params(x: np.ndarray, th: Params) -> Params:
    t = th.C.shape[0]
    if th.structure == "ar1":
        rho = float(np.tanh(x[2]))
        return replace(th, sb2=float(x[0] ** 2), C=np.exp(2 * x[1]) * ar1_corr(rho, t), rho=rho)
    return replace(th, sb2=float(x[0] ** 2), C=np.exp(2 * x[1]) * np.eye(t))


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
    res = minimize(neg, x0, method="L-BFGS-B", bounds=bounds)
    if not np.isfinite(res.fun) or -res.fun <= es.loglik:
        return None
    th1 = _cov_params(res.x, th)
    return th1, e_step(panel, U1, th1)


def _pen(th: Params, cfg: EMConfig) -> float:
    return ridge_penalty(th.gamma, cfg.gamma_ridge)


def _check_fit_input(panel: Panel, cfg: EMConfig) -> None:
    N, t = panel.N, panel.t
    if N < 5 * cfg.K:
        raise ValueError(f"K={cfg.K} subgroups need at least {5 * cfg.K} subjects (5 per class), got N={N}; "
                         "use a smaller K")
    if cfg.structure == "ar1" and t < 3:
        raise ValueError(f"AR(1) errors with a random intercept need t >= 3 measures (got t={t}); "
                         "use structure='identity'")
    if cfg.structure == "unstructured" and N <= t + 1:
        raise ValueError(f"an unstructured t x t error covariance needs N > t + 1 subjects (N={N}, t={t}); "
                         "use structure='ar1'")
    n_par = panel.p + cfg.K + (cfg.K - 1) * (panel.q + 1) + 3
    if n_par >= N:
        raise ValueError(f"{n_par} parameters for N={N} subjects: reduce K or the membership covariates")


def initial_params(panel: Panel, cfg: EMConfig, rng: np.random.Generator | None) -> Params:
    """Start values: pooled OLS for alpha, class means from subject means (quantiles or random)."""
    N, t, p = panel.W.shape
    X = np.column_stack([panel.W.reshape(N * t, p), np.ones(N * t)])
    coef = np.linalg.lstsq(X, panel.y.ravel(), rcond=None)[0]
    alpha = coef[:p]
    r = residuals(panel, alpha)
    rbar = r.mean(axis=1)
    se2 = max(float(((r - rbar[:, None]) ** 2).sum() / (N * (t - 1))), 1e-8)
    K = cfg.K
    if rng is None:
        mu = np.quantile(rbar, (np.arange(K) + 0.5) / K)
    else:
        mu = np.sort(rng.choice(rbar, size=K, replace=False)) + rng.normal(0, 0.05 * rbar.std() + 1e-12, K)
    mu = np.sort(mu)
    lab = np.abs(rbar[:, None] - mu[None, :]).argmin(axis=1)
    nk = np.bincount(lab, minlength=K) + 1.0
    within = float(((rbar - mu[lab]) ** 2).mean())
    sb2 = max(within - se2 / t, 0.05 * float(rbar.var()) + 1e-8)
    gamma = np.zeros((K, panel.q + 1))
    gamma[:, 0] = np.log(nk / nk[0])
    C = se2 * np.eye(t)
    rho = 0.0 if cfg.structure == "ar1" else float("nan")
    return Params(alpha, mu, gamma, sb2, C, cfg.structure, rho)


def _duplicates(th: Params) -> list[tuple[int, int]]:
    """Pairs of classes whose means are closer than 0.05 sigma_b (or 1e-6 when sigma_b^2 = 0)."""
    tol = max(0.05 * np.sqrt(th.sb2), 1e-6)
    return [(k, k + 1) for k in range(th.K - 1) if th.mu[k + 1] - th.mu[k] < tol]


def separated_classes(gamma: np.ndarray) -> list[int]:
    """Classes k >= 1 whose membership slopes exceed SEPARATION in absolute value."""
    return [k for k in range(1, len(gamma)) if np.abs(gamma[k, 1:]).max(initial=0) > SEPARATION]


def fit_em(panel: Panel, cfg: EMConfig = EMConfig(), init: Params | None = None) -> EMResult:
    """Fit by EM from several starts (short runs, then the best one to convergence).

    `init` (for example a reduced model's estimate padded with zeros) is tried as an extra
    start; the log-likelihood is checked never to decrease along the final run.
    """
    _check_fit_input(panel, cfg)
    if init is not None and (init.K != cfg.K or init.gamma.shape[1] != panel.q + 1
                             or init.alpha.size != panel.p or init.structure != cfg.structure):
        raise ValueError("init does not match the panel and config (K, q, p or structure differ)")
    U1 = design_u(panel)
    rng = np.random.default_rng(cfg.seed)
    if cfg.n_starts == 0 and init is None:
        raise ValueError("n_starts=0 needs an init (fit_em(..., init=params)); use n_starts >= 1")
    starts = [initial_params(panel, cfg, None)][:cfg.n_starts]
    starts += [initial_params(panel, cfg, rng) for _ in range(cfg.n_starts - 1)]
    if init is not None:
        starts.insert(0, init)
    notes: list[str] = []
    candidates = []
    for s, th0 in enumerate(starts):
        try:
            th, es, path, conv = run_em(panel, th0, cfg, cfg.short_iter, U1)
            candidates.append((path[-1], s, th, path, conv))
        except EmptyClassError as e:
            notes.append(f"start {s} abandoned: {e}")
    if not candidates:
        raise EmptyClassError(f"every start lost a class ({notes[-1] if notes else ''}); fit a smaller K "
                              "or add starts (n_starts)")
    candidates.sort(key=lambda c: -c[0])
    # the best short runs (and a given init) go to convergence: short-run order can still flip
    final = candidates[:cfg.n_final] + [c for c in candidates[cfg.n_final:] if init is not None and c[1] == 0]
    best = None
    for _, s, th, path0, conv in final:
        try:
            if not conv:
                th, es, path, conv = run_em(panel, th, cfg, cfg.max_iter, U1)
                path = path0 + path[1:]
            else:
                es, path = e_step(panel, U1, th), path0
        except EmptyClassError as e:
            notes.append(f"start {s} abandoned: {e}")
            continue
        if best is None or path[-1] > best[3][-1]:
            best = (th, es, conv, path)
    if best is None:
        raise EmptyClassError(f"every start lost a class ({notes[-1]}); fit a smaller K or add starts (n_starts)")
    th, es, conv, path = best
    path = np.asarray(path)
    drops = np.diff(path) < -1e-9 * np.abs(path[:-1]).clip(1.0)
    if drops.any():
        notes.append(f"log-likelihood decreased at {int(drops.sum())} iterations (max drop "
                     f"{-np.diff(path).max():.3g}); please report this")
    if not conv:
        notes.append(f"not converged after {cfg.max_iter} iterations (relative change "
                     f"{abs(path[-1] - path[-2]) / abs(path[-2]):.2g}); raise max_iter")
    th, P, m = canonical(th, es.P, es.m)
    if separated_classes(th.gamma):
        notes.append(f"some membership coefficients exceed {SEPARATION:g} in absolute value (near separation); "
                     "set gamma_ridge > 0 or drop covariates")
    dup = _duplicates(th)
    if dup:
        notes.append(f"classes {[(a + 1, b + 1) for a, b in dup]} have nearly equal means: K={cfg.K} is "
                     "more than these data support")
    if cfg.structure == "unstructured":
        notes.append("sigma_b^2 is not identified with an unstructured error covariance (only "
                     "sigma_b^2 11' + S is); reported as NaN")
    for n in notes:
        warnings.warn(n, stacklevel=2)
    return EMResult(th, float(es.loglik), path, len(path) - 1, conv, P, m, float(es.v), cfg, panel.w_names,
                    panel.u_names, [c[0] for c in sorted(candidates, key=lambda c: c[1])], notes)
