"""Parameters of the latent-subgroup mixed model, their canonical class order (by mu) and their
one unconstrained vectorization.

Errors live on the panel's distinct measurement times (T of them). A subject observed at a
subset of those times uses the matching sub-block of the error covariance:
'identity' sigma_e^2 I, 'ar1' the continuous-time AR(1) sigma_e^2 rho^|t_i - t_j| (negative rho
only when every time is an integer, since rho^0.5 is not real), 'unstructured' a free T x T
matrix S. With an unstructured S the random-intercept variance is absorbed into S (only
sigma_b^2 11' + S is identified), so it is held at 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

STRUCTURES = ("identity", "ar1", "unstructured")
RHO_MAX = 1.0 - 1e-9  # |rho| stays below this: the AR(1) precision has 1 / (1 - rho^2) terms
SB2_FLOOR = 1e-300  # log sigma_b^2 of a boundary fit stays finite


def integer_times(times: np.ndarray) -> bool:
    """True when every time is an integer, so a negative AR(1) rho^|gap| is real."""
    return bool(np.all(np.asarray(times) == np.round(times)))


def ar1_corr(rho: float, times: int | np.ndarray) -> np.ndarray:
    """AR(1) correlation rho^|t_i - t_j| over `times` (an int t means times 0..t-1)."""
    tt = np.arange(times, dtype=float) if np.ndim(times) == 0 else np.asarray(times, float)
    return np.power(rho, np.abs(tt[:, None] - tt[None, :]))


def ar1_precision(rho: float, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse AR(1) correlation and its log-determinant for each row of time gaps (P, t - 1), in closed form.

    The process is Markov: e_1 ~ N(0, 1), e_{j+1} = phi_j e_j + sqrt(1 - phi_j^2) z with
    phi_j = rho^gap_j, so R^-1 is tridiagonal and log|R| = sum log(1 - phi_j^2): no matrix
    inverse, and stable as |rho| -> 1.
    """
    phi = np.power(rho, np.asarray(gaps, float))  # (P, t - 1)
    P, t = phi.shape[0], phi.shape[1] + 1
    phi2 = phi * phi
    a = 1.0 / (1.0 - phi2)
    # filled through the flat index: the diagonal every t + 1 entries, the off-diagonals beside it
    Q = np.zeros((P, t * t))
    diag = np.ones((P, t))
    diag[:, 1:] = a
    diag[:, :-1] += phi2 * a
    Q[:, :: t + 1] = diag
    Q[:, 1 :: t + 1] = Q[:, t :: t + 1] = -phi * a
    return Q.reshape(P, t, t), np.log1p(-phi2).sum(axis=1)


@dataclass(frozen=True)
class Params:
    """Model parameters; gamma row 0 is the reference class (all zeros)."""

    alpha: np.ndarray  # (p,) fixed effects
    mu: np.ndarray  # (K,) subgroup intercepts
    gamma: np.ndarray  # (K, q + 1) membership logit coefficients, intercept first
    sb2: float  # random-intercept variance sigma_b^2 (0 for 'unstructured')
    se2: float  # error variance sigma_e^2 (mean diagonal of S for 'unstructured')
    times: np.ndarray  # (T,) the panel's distinct measurement times
    structure: str = "ar1"
    rho: float = float("nan")  # AR(1) correlation per unit of time (nan for other structures)
    S: np.ndarray | None = None  # (T, T) error covariance for 'unstructured'

    def __post_init__(self) -> None:
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure={self.structure!r}; use one of {STRUCTURES}")
        if self.structure == "unstructured" and (
            self.S is None or self.S.shape != (self.T, self.T)
        ):
            raise ValueError("an unstructured error covariance needs S of shape (T, T)")

    @property
    def K(self) -> int:
        """Number of subgroups."""
        return self.mu.size

    @property
    def T(self) -> int:
        """Number of distinct measurement times."""
        return len(self.times)

    @property
    def C(self) -> np.ndarray:
        """Error covariance sigma_e^2 R over all distinct times (T x T)."""
        if self.structure == "unstructured":
            return self.S
        if self.structure == "identity":
            return self.se2 * np.eye(self.T)
        return self.se2 * ar1_corr(self.rho, self.times)

    @property
    def R(self) -> np.ndarray:
        """Working correlation R = C / sigma_e^2."""
        return self.C / self.se2

    def sigma(self) -> np.ndarray:
        """Marginal covariance of a subject seen at every time: sigma_b^2 11' + sigma_e^2 R."""
        return self.sb2 + self.C

    def with_cov(self, S: np.ndarray) -> Params:
        """The same parameters with an unstructured error covariance S."""
        return Params(
            self.alpha,
            self.mu,
            self.gamma,
            self.sb2,
            float(np.mean(np.diag(S))),
            self.times,
            "unstructured",
            float("nan"),
            S,
        )


def canonical(th: Params, P: np.ndarray | None = None, m: np.ndarray | None = None):
    """Order classes by mu_k and re-reference gamma to the new class 1 (lowest mu)."""
    order = np.argsort(th.mu, kind="stable")
    gamma = th.gamma[order] - th.gamma[order][0]
    th = replace(th, mu=th.mu[order], gamma=gamma)
    return th, (None if P is None else P[:, order]), (None if m is None else m[:, order])


@dataclass(frozen=True)
class Spec:
    """Shapes and structure that fix the layout of the unconstrained parameter vector."""

    p: int
    K: int
    d: int  # q + 1
    structure: str
    times: tuple[float, ...]

    @property
    def T(self) -> int:
        """Number of distinct times."""
        return len(self.times)

    @property
    def rho_positive(self) -> bool:
        """AR(1) rho restricted to (0, 1) because some times are not integers."""
        return not integer_times(np.asarray(self.times))

    @property
    def n_cov(self) -> int:
        """Number of covariance parameters."""
        return {"identity": 2, "ar1": 3}.get(self.structure, self.T * (self.T + 1) // 2)

    @property
    def n_mean(self) -> int:
        """Number of alpha, mu and free gamma entries (the head of the vector)."""
        return self.p + self.K + (self.K - 1) * self.d


def spec_of(th: Params) -> Spec:
    """The Spec of a parameter set."""
    return Spec(
        th.alpha.size, th.K, th.gamma.shape[1], th.structure, tuple(float(t) for t in th.times)
    )


def rho_to_x(rho: float, positive: bool) -> float:
    if positive:
        r = float(np.clip(rho, 1e-12, RHO_MAX))
        return float(np.log(r) - np.log1p(-r))
    return float(np.arctanh(np.clip(rho, -RHO_MAX, RHO_MAX)))


def x_to_rho(x: float, positive: bool) -> float:
    rho = 1.0 / (1.0 + np.exp(-x)) if positive else np.tanh(x)
    return float(np.clip(rho, -RHO_MAX, RHO_MAX))


def pack(th: Params) -> np.ndarray:
    """Parameters -> unconstrained vector [alpha, mu, gamma_2..K, covariance part].

    Covariance part: log sigma_b, log sigma_e (and atanh rho, or logit rho when times are not
    integers); for 'unstructured' the log-Cholesky factor of S.
    """
    s = spec_of(th)
    if s.structure == "unstructured":
        L = np.linalg.cholesky(th.S)
        L[np.diag_indices(s.T)] = np.log(np.diag(L))
        cov = L[np.tril_indices(s.T)]
    else:
        cov = [0.5 * np.log(max(th.sb2, SB2_FLOOR)), 0.5 * np.log(th.se2)]
        if s.structure == "ar1":
            cov.append(rho_to_x(th.rho, s.rho_positive))
    return np.concatenate([th.alpha, th.mu, th.gamma[1:].ravel(), np.asarray(cov, float)])


def unpack(x: np.ndarray, s: Spec) -> Params:
    """Unconstrained vector -> parameters (inverse of pack)."""
    x = np.asarray(x, float)
    i = s.p + s.K
    alpha, mu = x[: s.p], x[s.p : i]
    gamma = np.vstack([np.zeros(s.d), x[i : s.n_mean].reshape(s.K - 1, s.d)])
    cov = x[s.n_mean :]
    times = np.asarray(s.times)
    if s.structure == "unstructured":
        L = np.zeros((s.T, s.T))
        L[np.tril_indices(s.T)] = cov
        L[np.diag_indices(s.T)] = np.exp(np.diag(L))
        S = L @ L.T
        return Params(
            alpha, mu, gamma, 0.0, float(np.mean(np.diag(S))), times, s.structure, float("nan"), S
        )
    sb2, se2 = float(np.exp(2 * cov[0])), float(np.exp(2 * cov[1]))
    rho = x_to_rho(cov[2], s.rho_positive) if s.structure == "ar1" else float("nan")
    return Params(alpha, mu, gamma, sb2, se2, times, s.structure, rho)
