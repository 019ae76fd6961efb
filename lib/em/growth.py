"""Growth mixtures: latent classes with their own trajectories and random slopes, fitted by EM.

    y_i = W_i beta + X_i beta_k + Z_i b_i + eps_i,   b_i ~ N(0, G),   eps_i ~ N(0, sigma_e^2 R_i),
    P(class k | u_i) = softmax_k([1, u_i] gamma_k),

with W the shared fixed effects, X = [1, mixture columns] the class-specific ones (the class
intercept always), Z = [1, random columns] the random effects with an unstructured covariance G
shared by the classes (or w_k^2 G with class scales, lcmm's nwg, w_K = 1), and R identity or
continuous-time AR(1) as in the rest of `lib.em`, or an unstructured S with G held at 0. This
is lcmm's `hlme(y ~ fixed + mixture, mixture = ~ mixture, random = ~ random, classmb = ~ u)`
(Proust-Lima, Philipps and Liquet 2017) and the heterogeneity model of Verbeke and Lesaffre
(1996). With no mixture and no random columns it is the workbook's random-intercept model.

E-step (per subject, vectorized): with A_i = Z_i' C_i^-1 Z_i, the posterior covariance of b_i
is G (I + A_i G)^-1 for every class and its mean V_b Z_i' C_i^-1 r_ik; Woodbury and the matrix
determinant lemma give the marginal density without a t x t inverse per subject, and stay valid
when G is singular (with class scales all of it per class). Where Z (or X) is the same for every
subject with the same observed times (its columns are functions of time) A_i, the posterior
covariance and X_i beta_k are computed once per pattern of times (`GrowthData.patterns`). M-step (ECM, each step a
conditional maximum): the coefficients by one posterior-weighted GLS, G from the posterior
moments (with class scales G given w, then w given G, both closed form), sigma_e^2 in closed
form and rho by a bounded search of its profile, S from the scatters completed at unobserved
times after a fresh E-step, gamma by Newton steps. BFGS on the observed log-likelihood with its
analytic score (`growthscore`) finishes EM's slow phase.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
from scipy.optimize import minimize_scalar

from .estep import LOG2PI, MANY_PATTERNS, log_softmax, row_max, row_sum
from .mstep import _ar1_pieces, ar1_profile, complete_unstructured, update_gamma
from .panel import Panel
from .params import RHO_MAX, ar1_precision

GROWTH_ERRORS = ("identity", "ar1", "unstructured")


@dataclass(frozen=True)
class GrowthData:
    """A panel with its three designs: W shared (p), X class-specific (1 + mixture), Z random (1 + random)."""

    panel: Panel  # y, W (shared fixed effects), U, times
    X: np.ndarray  # (N, T, m) with the intercept first
    Z: np.ndarray  # (N, T, q) with the intercept first
    x_names: tuple[str, ...]
    z_names: tuple[str, ...]

    @cached_property
    def blocks(self) -> list[tuple]:
        """Per block of the panel: the block and its X and Z rows at the observed times."""
        obs = self.panel.observed
        out = []
        for b in self.panel.blocks:
            sel = obs[b.rows]
            n, t = len(b.rows), b.t
            X = self.X[b.rows][sel].reshape(n, t, -1)
            Z = self.Z[b.rows][sel].reshape(n, t, -1)
            out.append((b, X, Z))
        return out

    @cached_property
    def patterns(self) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
        """Per block, X and Z of each pattern of observed times ((P, t, m), (P, t, q)) where every
        subject of a pattern has the same (columns that are functions of time, the usual case),
        else None. Then the class means X beta_k, A = Z'C^-1 Z, the posterior covariance of b_i
        and the GLS cross-products are computed once per pattern, not once per subject."""
        out = []
        for b, X, Z in self.blocks:
            Xp, Zp = X[b.starts], Z[b.starts]
            out.append(
                (
                    Xp if np.array_equal(X, Xp[b.pat]) else None,
                    Zp if np.array_equal(Z, Zp[b.pat]) else None,
                )
            )
        return out

    def subset(self, rows: np.ndarray) -> GrowthData:
        """The same data restricted to some subjects (an index), without the fitting checks."""
        p = self.panel
        sub = Panel(
            p.y[rows],
            p.W[rows],
            p.U[rows],
            p.w_names,
            p.u_names,
            p.subjects[rows],
            p.times,
            dict(p.meta),
            check=False,
        )
        return GrowthData(sub, self.X[rows], self.Z[rows], self.x_names, self.z_names)

    def class_means(self, i: int, B: np.ndarray) -> np.ndarray:
        """X_i beta_k for the subjects of block `i`, (n, K, t) (or (1, K, t) for one pattern)."""
        b, X, _ = self.blocks[i]
        Xp = self.patterns[i][0]
        if Xp is None:
            return np.matmul(B, np.swapaxes(X, 1, 2))
        XB = np.matmul(B, np.swapaxes(Xp, 1, 2))  # (P, K, t)
        return XB if len(XB) == 1 else XB[b.pat]


@dataclass(frozen=True)
class GrowthParams:
    """beta (p,), class coefficients B (K, m), gamma (K, d), G (q, q), sigma_e^2, rho, S (T, T), w (K,).

    With unstructured errors S is the error covariance and G is held at 0: S absorbs any
    Z G Z' of a random intercept, so the random effects are not identified beside it. With
    w (lcmm's nwg) b_i | class k ~ N(0, w_k^2 G) with w_K = 1; None: one G for every class."""

    beta: np.ndarray
    B: np.ndarray
    gamma: np.ndarray
    G: np.ndarray
    se2: float
    rho: float = float("nan")
    structure: str = "identity"
    S: np.ndarray | None = None  # (T, T) for 'unstructured'
    w: np.ndarray | None = None  # (K,) class scales of G, last 1 (nwg); None without

    @property
    def K(self) -> int:
        """Number of classes."""
        return self.B.shape[0]


def _precisions(data: GrowthData, th: GrowthParams) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per block, C^-1 and log|C| of each pattern of observed times."""
    out = []
    for b in data.panel.blocks:
        P, t = b.pos.shape
        if th.structure == "ar1":
            Q, ld = ar1_precision(th.rho, b.gaps)
            out.append((Q / th.se2, ld + t * np.log(th.se2)))
        elif th.structure == "unstructured":
            L = np.linalg.cholesky(th.S[b.pos[:, :, None], b.pos[:, None, :]])
            Li = np.linalg.inv(L)
            ld = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
            out.append((np.swapaxes(Li, 1, 2) @ Li, ld))
        else:
            out.append(
                (np.broadcast_to(np.eye(t) / th.se2, (P, t, t)), np.full(P, t * np.log(th.se2)))
            )
    return out


@dataclass
class GrowthEStep:
    """Posterior quantities: log-likelihood, memberships P (N, K), means m (N, K, q), covariance V (N, q, q).

    With class scales of G (nwg) the covariance differs by class: Vk (N, K, q, q), and V is its
    mixture sum_k P_ik Vk_ik, which is all the error and score terms need (they are linear in it)."""

    loglik: float
    P: np.ndarray
    m: np.ndarray
    V: np.ndarray
    log_joint: np.ndarray = field(repr=False)
    Vk: np.ndarray | None = field(default=None, repr=False)


def _posterior_cov(
    A: np.ndarray, Gk: np.ndarray, eye: np.ndarray, one_g: bool
) -> tuple[np.ndarray, np.ndarray]:
    """log|I + A G| and the posterior covariance G (I + A G)^-1 for each A (..., q, q), per class
    (..., K, q, q) with class scales of G (`one_g` False)."""
    Bm = eye + (A if one_g else A[:, None]) @ Gk
    _, logB = np.linalg.slogdet(Bm)
    Vb = Gk @ np.linalg.inv(Bm)
    return logB, 0.5 * (Vb + np.swapaxes(Vb, -1, -2))


def growth_estep(data: GrowthData, th: GrowthParams) -> GrowthEStep:
    """Class posteriors and the posterior moments of b_i, with the observed log-likelihood."""
    N, K, q = data.panel.N, th.K, th.G.shape[0]
    logd, m, V = np.empty((N, K)), np.empty((N, K, q)), np.empty((N, q, q))
    Vk = None if th.w is None else np.empty((N, K, q, q))
    eye = np.eye(q)
    # per class (K, q, q) only with class scales; one G keeps the cheaper (q, q) path
    Gk = th.G if th.w is None else (th.w**2)[:, None, None] * th.G
    for i, ((b, _, Z), (Ci, ld), (_, Zp)) in enumerate(
        zip(data.blocks, _precisions(data, th), data.patterns)
    ):
        Cs = Ci[b.pat]  # (n, t, t)
        if Zp is None:
            A = np.swapaxes(Z, 1, 2) @ (Cs @ Z)  # batched matmul: einsum without a path is slower
            logB, Vb = _posterior_cov(A, Gk, eye, th.w is None)
        else:  # the same Z in each pattern: once per pattern, then to the subjects
            logB, Vb = _posterior_cov(np.swapaxes(Zp, 1, 2) @ (Ci @ Zp), Gk, eye, th.w is None)
            logB, Vb = logB[b.pat], Vb[b.pat]
        r0 = b.y - (b.W @ th.beta if th.beta.size else 0.0)
        r = r0[:, None, :] - data.class_means(i, th.B)  # (n, K, t)
        Cr = r @ Cs  # C symmetric
        quad = np.einsum("nkt,nkt->nk", r, Cr)
        s = Cr @ Z
        if th.w is None:
            mk, logB = s @ Vb, logB[:, None]  # Vb symmetric
            V[b.rows] = Vb
        else:
            mk = (s[:, :, None, :] @ Vb)[:, :, 0]
            Vk[b.rows] = Vb
        logd[b.rows] = -0.5 * (
            b.t * LOG2PI + ld[b.pat][:, None] + logB + quad - np.einsum("nkq,nkq->nk", s, mk)
        )
        m[b.rows] = mk
    lj = logd + log_softmax(np.column_stack([np.ones(N), data.panel.U]) @ th.gamma.T)
    mx = row_max(lj)
    P = np.exp(lj - mx[:, None])
    tot = row_sum(P)
    P /= tot[:, None]
    if Vk is not None:
        V = np.einsum("nk,nkqr->nqr", P, Vk)
    return GrowthEStep(float((mx + np.log(tot)).sum()), P, m, V, lj, Vk)


def _coefficients(
    data: GrowthData, th: GrowthParams, es: GrowthEStep
) -> tuple[np.ndarray, np.ndarray]:
    """beta and B by the posterior-weighted GLS of y - Z m_ik on [W, X in class k]."""
    p, (K, mm) = th.beta.size, th.B.shape
    n_par = p + K * mm
    H, g = np.zeros((n_par, n_par)), np.zeros(n_par)
    for (b, X, Z), (Ci, _), (Xp, _) in zip(data.blocks, _precisions(data, th), data.patterns):
        P, mk = es.P[b.rows], es.m[b.rows]
        target = b.y[:, None, :] - mk @ np.swapaxes(Z, 1, 2)  # (n, K, t)
        tP = target * P[:, :, None]
        n = len(b.rows)
        if Xp is None:
            Cs = Ci[b.pat]
            CX = Cs @ X
            XX = np.swapaxes(X, 1, 2) @ CX
            XXk = (P.T @ XX.reshape(n, -1)).reshape(K, mm, mm)  # sum_i P_ik X_i'C^-1 X_i
            gk = (tP @ CX).sum(axis=0)  # (K, m): sum_i P_ik X_i'C^-1 target_ik
        else:  # the same X in a pattern: sums of P and of P target over its rows first
            CXp = Ci @ Xp
            XXk = np.einsum(
                "pk,pmr->kmr", np.add.reduceat(P, b.starts, axis=0), np.swapaxes(Xp, 1, 2) @ CXp
            )
            gk = (np.add.reduceat(tP, b.starts, axis=0) @ CXp).sum(axis=0)
        if p:
            Cs = Ci[b.pat]
            CW = Cs @ b.W
            CX = Cs @ X if Xp is None else CXp[b.pat]
            H[:p, :p] += np.einsum("ntp,ntr->pr", b.W, CW)
            g[:p] += np.einsum("ntp,nt->p", CW, tP.sum(axis=1))
            WX = np.swapaxes(b.W, 1, 2) @ CX  # (n, p, m): per class, sum_i P_ik W_i'C^-1 X_i
            H[:p, p:] += np.swapaxes((P.T @ WX.reshape(n, -1)).reshape(K, p, mm), 0, 1).reshape(
                p, K * mm
            )
        for k in range(K):
            sl = slice(p + k * mm, p + (k + 1) * mm)
            H[sl, sl] += XXk[k]
            g[sl] += gk[k]
    H[p:, :p] = H[:p, p:].T
    coef = np.linalg.solve(H, g)
    return coef[:p], coef[p:].reshape(K, mm)


def _scatter(data: GrowthData, th: GrowthParams, es: GrowthEStep) -> list[np.ndarray]:
    """Per block and pattern, sum_i E[eps_i eps_i'] = sum_ik P_ik e_ik e_ik' + Z_i V_i Z_i' (P, t, t).

    Summed once per M-step, so the search over rho costs one tridiagonal inverse per pattern and
    evaluation, not a pass over the subjects."""
    out = []
    for i, ((b, _, Z), (_, Zp)) in enumerate(zip(data.blocks, data.patterns)):
        e = b.y[:, None, :] - data.class_means(i, th.B) - es.m[b.rows] @ np.swapaxes(Z, 1, 2)
        if th.beta.size:
            e -= (b.W @ th.beta)[:, None]
        eP = e * es.P[b.rows][:, :, None]
        if len(b.starts) <= MANY_PATTERNS:  # rows are sorted by pattern: one product per pattern
            per = np.stack([np.tensordot(eP[sl], e[sl], axes=([0, 1], [0, 1])) for sl in b.slices])
        else:
            per = np.add.reduceat(np.swapaxes(eP, 1, 2) @ e, b.starts, axis=0)
        if Zp is None:
            per += np.add.reduceat(Z @ es.V[b.rows] @ np.swapaxes(Z, 1, 2), b.starts, axis=0)
        else:  # the same Z in a pattern: Z (sum_i V_i) Z'
            per += Zp @ np.add.reduceat(es.V[b.rows], b.starts, axis=0) @ np.swapaxes(Zp, 1, 2)
        out.append(per)
    return out


def _error_pieces(
    data: GrowthData, scatter: list[np.ndarray], structure: str, rho: float
) -> tuple[float, float]:
    """sum_i E[eps_i' R_i(rho)^-1 eps_i] and sum_i log|R_i(rho)| from the pattern scatters."""
    quad, logdet = 0.0, 0.0
    for b, S in zip(data.panel.blocks, scatter):
        if structure == "ar1":
            Q, ld = ar1_precision(rho, b.gaps)
            quad += float(np.einsum("pts,pst->", Q, S))
            logdet += float((ld * b.counts).sum())
        else:
            quad += float(np.einsum("ptt->", S))
    return quad, logdet


def _update_s(data: GrowthData, scatter: list[np.ndarray], S: np.ndarray) -> np.ndarray:
    """The unstructured S maximizing the expected complete-data log-likelihood: the scatter over N
    on a balanced panel; with missing times the scatters completed at the unobserved times given
    the current S (exact with G held at 0, `mstep.complete_unstructured`)."""
    if data.panel.balanced:
        return scatter[0][0] / data.panel.N
    return complete_unstructured(data.panel, scatter, S)


def _update_scaled_g(th: GrowthParams, es: GrowthEStep, N: int) -> GrowthParams:
    """G given w, then w given that G (two conditional maxima), from E[b b' | i, k]."""
    Ebb = es.m[:, :, :, None] * es.m[:, :, None, :] + es.Vk  # (N, K, q, q)
    Pw = es.P / th.w**2
    G = np.einsum("nk,nkqr->qr", Pw, Ebb) / N
    G = 0.5 * (G + G.T)
    try:
        tr = np.einsum("qr,nkrq->nk", np.linalg.inv(G), Ebb)  # tr(G^-1 E[b b' | i, k])
    except np.linalg.LinAlgError:
        return replace(th, G=G)  # a singular G: keep w (the G step alone is still an ascent)
    nk, w = es.P.sum(axis=0)[:-1], th.w.copy()
    ok = nk > 0  # an emptied class keeps its scale
    w[:-1][ok] = np.sqrt((es.P * tr).sum(axis=0)[:-1][ok] / (G.shape[0] * nk[ok]))
    return replace(th, G=G, w=w)


def growth_mstep(
    data: GrowthData, th: GrowthParams, es: GrowthEStep, ridge: float = 0.0
) -> GrowthParams:
    """One ECM sweep: coefficients, G, sigma_e^2 (and rho), gamma."""
    beta, B = _coefficients(data, th, es)
    th = replace(th, beta=beta, B=B)
    N = data.panel.N
    U1 = np.column_stack([np.ones(N), data.panel.U])
    if th.structure == "unstructured":  # G stays 0 (not identified beside S)
        th = replace(th, gamma=update_gamma(U1, es.P, th.gamma, 1, ridge))
        if not data.panel.balanced:
            # a second cycle: the unobserved errors are imputed given the new means and gamma
            es = growth_estep(data, th)
        S = _update_s(data, _scatter(data, th, es), th.S)
        return replace(th, S=S, se2=float(np.mean(np.diag(S))))
    scatter = _scatter(data, th, es)
    if th.w is None:
        mP = es.m * es.P[:, :, None]
        G = (np.tensordot(mP, es.m, axes=([0, 1], [0, 1])) + es.V.sum(axis=0)) / N
        th = replace(th, G=0.5 * (G + G.T))
    else:
        th = _update_scaled_g(th, es, N)
    n_obs = data.panel.n_obs
    if th.structure == "ar1":
        # the profile from the bands of the pattern scatters (tridiagonal AR(1) precision): no
        # t x t precision per pattern and evaluation of the search
        pieces = _ar1_pieces(data.panel, scatter)

        def profile(rho: float) -> float:
            return ar1_profile(rho, pieces, n_obs)[0]

        lo = 1e-6 if np.any(np.diff(data.panel.times) % 1 != 0) else -RHO_MAX
        rho = float(
            minimize_scalar(
                profile, bounds=(lo, RHO_MAX), method="bounded", options={"xatol": 1e-10}
            ).x
        )
        if profile(rho) > profile(th.rho):
            rho = th.rho
        th = replace(th, rho=rho)
    quad, _ = _error_pieces(data, scatter, th.structure, th.rho)
    th = replace(th, se2=quad / n_obs)
    return replace(th, gamma=update_gamma(U1, es.P, th.gamma, 1, ridge))


def pack_growth(th: GrowthParams) -> np.ndarray:
    """Unconstrained vector: beta, B, gamma_2..K, log-Cholesky of G (, log w_1..K-1), log sigma_e (, atanh rho)."""
    head = [th.beta, th.B.ravel(), th.gamma[1:].ravel()]
    if th.structure == "unstructured":  # G held at 0; the log-Cholesky factor of S
        L = np.linalg.cholesky(th.S)
        L[np.diag_indices(len(L))] = np.log(np.diag(L))
        return np.concatenate([*head, L[np.tril_indices(len(L))]])
    q = th.G.shape[0]
    L = np.linalg.cholesky(th.G + 1e-12 * np.eye(q) * max(np.trace(th.G), 1e-300))
    L[np.diag_indices(q)] = np.log(np.diag(L))
    scales = [] if th.w is None else [np.log(th.w[:-1])]  # w_K = 1
    tail = [0.5 * np.log(th.se2)] + (
        [np.arctanh(np.clip(th.rho, -RHO_MAX, RHO_MAX))] if th.structure == "ar1" else []
    )
    return np.concatenate([*head, L[np.tril_indices(q)], *scales, tail])


def unpack_growth(x: np.ndarray, like: GrowthParams) -> GrowthParams:
    """The inverse of pack_growth, shaped like `like`."""
    p, (K, m), d, q = like.beta.size, like.B.shape, like.gamma.shape[1], like.G.shape[0]
    i = 0

    def take(n: int) -> np.ndarray:
        nonlocal i
        i += n
        return np.asarray(x[i - n : i], float)

    beta, B = take(p), take(K * m).reshape(K, m)
    gamma = np.vstack([np.zeros(d), take((K - 1) * d).reshape(K - 1, d)])
    if like.structure == "unstructured":
        T = like.S.shape[0]
        L = np.zeros((T, T))
        L[np.tril_indices(T)] = take(T * (T + 1) // 2)
        L[np.diag_indices(T)] = np.exp(np.diag(L))
        S = L @ L.T
        return replace(like, beta=beta, B=B, gamma=gamma, S=S, se2=float(np.mean(np.diag(S))))
    L = np.zeros((q, q))
    L[np.tril_indices(q)] = take(q * (q + 1) // 2)
    L[np.diag_indices(q)] = np.exp(np.diag(L))
    w = None if like.w is None else np.r_[np.exp(take(K - 1)), 1.0]
    se2 = float(np.exp(2 * take(1)[0]))
    rho = float(np.tanh(take(1)[0])) if like.structure == "ar1" else float("nan")
    return replace(like, beta=beta, B=B, gamma=gamma, G=L @ L.T, se2=se2, rho=rho, w=w)


def run_growth_em(
    data: GrowthData, th: GrowthParams, max_iter: int = 1000, tol: float = 1e-9, ridge: float = 0.0
) -> tuple[GrowthParams, list[float]]:
    """ECM iterations from `th` until the relative gain falls below `tol`; the path never decreases."""
    es = growth_estep(data, th)
    path = [es.loglik]
    for _ in range(max_iter):
        new = growth_mstep(data, th, es, ridge)
        es_new = growth_estep(data, new)
        if es_new.loglik < path[-1] - 1e-8 * abs(path[-1]):
            warnings.warn(
                f"growth EM: the log-likelihood fell by {path[-1] - es_new.loglik:.3g}; stopped",
                stacklevel=2,
            )
            break
        th, es = new, es_new
        path.append(es.loglik)
        if abs(path[-1] - path[-2]) <= tol * abs(path[-2]):
            break
    return th, path
