"""E-step of EM (Dempster, Laird and Rubin 1977) for the linear mixed model with latent
subgroups (docs/em.md): the observed-data log-likelihood, class posteriors and posterior moments
of the random intercept, vectorized over subjects.

Model, for subject i measured at times tau_i1 < ... < tau_it_i (any subset of the panel's times):
    y_i = W_i alpha + 1 b_i + eps_i,  b_i | class k ~ N(mu_k, sigma_b^2),  eps_i ~ N(0, C(tau_i)),
    P(class k | U_i) = softmax_k([1, U_i] gamma_k), gamma_1 = 0 (reference class 1 = lowest mu).
Marginally y_i is a K-component normal mixture with means W_i alpha + 1 mu_k and covariance
Sigma_i = sigma_b^2 11' + C(tau_i). Subjects with the same observed times share C(tau_i), so the
E-step needs one inverse per pattern of times (closed form for AR(1)) and the Woodbury identity
for the random intercept; everything else is array arithmetic over the subjects of a block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .panel import Block, Panel
from .params import Params, ar1_precision, integer_times

LOG2PI = float(np.log(2 * np.pi))


def row_max(A: np.ndarray) -> np.ndarray:
    """Row maxima of a tall (N, K) array; numpy's axis=1 reduction is slow for small K, columns are not."""
    return np.max(A, axis=1) if A.shape[1] > 16 else np.maximum.reduce(A.T, axis=0)


def row_sum(A: np.ndarray) -> np.ndarray:
    """Row sums of a tall (N, K) array (a matrix-vector product: fast for small K)."""
    return A @ np.ones(A.shape[1])


def log_softmax(eta: np.ndarray) -> np.ndarray:
    """Row-wise log softmax of an (N, K) array (stable)."""
    z = eta - row_max(eta)[:, None]
    return z - np.log(row_sum(np.exp(z)))[:, None]


def design_u(panel: Panel) -> np.ndarray:
    """Membership design [1, U] (N, q + 1)."""
    return np.column_stack([np.ones(panel.N), panel.U])


def fixed_part(W: np.ndarray, alpha: np.ndarray) -> np.ndarray | float:
    # one 2-D product: numpy's stacked (n, t, p) @ (p,) is 3-4x slower
    return (W.reshape(-1, W.shape[-1]) @ alpha).reshape(W.shape[:-1]) if alpha.size else 0.0


def residuals(panel: Panel, alpha: np.ndarray) -> np.ndarray:
    """y - W alpha as an N x T array (NaN where not measured)."""
    return panel.y - fixed_part(panel.W, alpha)


@dataclass(frozen=True)
class BlockCov:
    """Inverse error covariance, its log-determinant and 1'C^-1 1 for each pattern of a block."""

    Ci: np.ndarray  # (P, t, t)
    logdet: np.ndarray  # (P,)
    c: np.ndarray  # (P,)


def not_pd_error(what: str, ev: float) -> np.linalg.LinAlgError:
    return np.linalg.LinAlgError(
        f"{what} is not positive definite (smallest eigenvalue {ev:.3g}); with an unstructured error "
        "covariance this happens when subjects are few or residuals collinear: use errors='ar1' "
        "or 'identity' (EMConfig.structure), or more subjects"
    )


def block_covs(panel: Panel, th: Params) -> list[BlockCov]:
    """Per block, the error covariance of each observed-time pattern, inverted (AR(1) in closed form)."""
    if th.structure != "unstructured" and not th.se2 > 0:
        raise not_pd_error("the error covariance sigma_e^2 R", th.se2)
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
                raise not_pd_error(
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


def apply_inverse(r: np.ndarray, Ci: np.ndarray, b: Block) -> np.ndarray:
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
        r = b.y - fixed_part(b.W, th.alpha)
        rC = apply_inverse(r, bc.Ci, b)
        a, s = np.einsum("ni,ni->n", rC, r), row_sum(rC)
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
    mx = row_max(log_joint)
    P = log_joint - mx[:, None]
    np.exp(P, out=P)
    tot = row_sum(P)
    P /= tot[:, None]
    lse = mx + np.log(tot)
    return EStep(float(lse.sum()), P, m, v, log_joint, svec, cvec, covs)


def loglik(panel: Panel, th: Params) -> float:
    """Observed-data log-likelihood sum_i log sum_k pi_ik phi(y_i; W_i alpha + 1 mu_k, Sigma_i)."""
    return e_step(panel, design_u(panel), th).loglik
