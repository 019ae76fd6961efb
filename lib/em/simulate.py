"""Draw panels from the latent-subgroup mixed model, for any K, t, p, q and structure, balanced or with
measurements missing at random."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .panel import Panel
from .params import STRUCTURES, Params, ar1_corr, canonical


def default_gamma(K: int, q: int) -> tuple[tuple[float, ...], ...]:
    """Membership coefficients for classes 2..K (intercept 0; slope 1 on one covariate, -0.5 on the rest)."""
    return tuple(
        tuple([0.0] + [1.0 if j == (k - 1) % max(q, 1) else -0.5 for j in range(q)])
        for k in range(1, K)
    )


@dataclass(frozen=True)
class PanelSimConfig:
    """Truth and size of a simulated panel (defaults: the reference design of docs/em.md)."""

    n_subjects: int = 300  # N
    n_times: int = 5  # t
    mu: tuple[float, ...] = (-3.0, 0.0, 3.0)  # subgroup means (K = len(mu)), ascending
    alpha: tuple[float, ...] = (
        1.0,
        -0.5,
    )  # fixed effects of W = [time in 0..1, N(0,1) covariate, ...]
    gamma: tuple[tuple[float, ...], ...] | None = (
        None  # (K-1) rows of q+1 (intercept first); None: default_gamma
    )
    n_u: int = 2  # q, the number of membership covariates (used when gamma is None)
    sigma_b: float = 1.0  # random-intercept SD
    sigma_e: float = 1.0  # error SD
    rho: float = 0.5  # AR(1) correlation
    structure: str = "ar1"  # identity, ar1 or unstructured (AR(1) times unequal variances)
    missing: float = (
        0.0  # share of measurements missing completely at random (each subject keeps one)
    )
    seed: int = 0

    def error_cov(self) -> np.ndarray:
        """The t x t error covariance the errors are drawn from."""
        t = self.n_times
        if self.structure == "identity":
            return np.eye(t) * self.sigma_e**2
        if self.structure == "ar1":
            return self.sigma_e**2 * ar1_corr(self.rho, t)
        d = self.sigma_e * np.linspace(0.8, 1.2, t)
        return d[:, None] * ar1_corr(self.rho, t) * d[None, :]

    def truth(self) -> Params:
        """The true parameters as a canonical Params (classes ordered by mu, class 1 reference)."""
        K, t = len(self.mu), self.n_times
        g = default_gamma(K, self.n_u) if self.gamma is None else self.gamma
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure={self.structure!r}; use one of {STRUCTURES}")
        if len(g) != K - 1 or len({len(r) for r in g}) > 1:
            raise ValueError(f"gamma needs K-1 = {K - 1} rows of equal length q+1, got {g}")
        if t < 2 or self.n_subjects < 1:
            raise ValueError("need n_times >= 2 and n_subjects >= 1")
        q1 = len(g[0]) if g else self.n_u + 1
        gamma = np.vstack([np.zeros(q1), np.asarray(g, float).reshape(K - 1, q1)])
        if not 0.0 <= self.missing < 1.0:
            raise ValueError(f"missing={self.missing} must be in [0, 1)")
        sb2, C, times = self.sigma_b**2, self.error_cov(), np.arange(t, dtype=float)
        alpha, mu = np.asarray(self.alpha, float), np.asarray(self.mu, float)
        if (
            self.structure == "unstructured"
        ):  # sigma_b^2 is absorbed into S (only their sum is identified)
            S = C + sb2
            th = Params(
                alpha,
                mu,
                gamma,
                0.0,
                float(np.mean(np.diag(S))),
                times,
                self.structure,
                float("nan"),
                S,
            )
        else:
            rho = self.rho if self.structure == "ar1" else float("nan")
            th = Params(alpha, mu, gamma, sb2, self.sigma_e**2, times, self.structure, rho)
        return canonical(th)[0]


@dataclass(frozen=True)
class SimData:
    """A simulated panel with its hidden classes, random intercepts and true parameters."""

    panel: Panel
    classes: np.ndarray  # (N,) 0-based, ordered by mu
    b: np.ndarray  # (N,) random intercepts
    truth: Params


def simulate(cfg: PanelSimConfig = PanelSimConfig()) -> SimData:
    """Draw U ~ N(0, I), classes from the multinomial logit, b_i, and y_i = W_i alpha + b_i + eps_i."""
    th = cfg.truth()
    rng = np.random.default_rng(cfg.seed)
    N, t, p, q = cfg.n_subjects, cfg.n_times, th.alpha.size, th.gamma.shape[1] - 1
    U = rng.standard_normal((N, q))
    eta = np.column_stack([np.ones(N), U]) @ th.gamma.T
    prob = np.exp(eta - eta.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    classes = (prob.cumsum(axis=1) < rng.random((N, 1))).sum(axis=1)
    classes = np.minimum(classes, th.K - 1)
    b = th.mu[classes] + cfg.sigma_b * rng.standard_normal(N)
    W = np.empty((N, t, p))
    if p:
        W[:, :, 0] = np.linspace(0.0, 1.0, t)[None, :]
        W[:, :, 1:] = rng.standard_normal((N, t, p - 1))
    eps = rng.standard_normal((N, t)) @ np.linalg.cholesky(cfg.error_cov()).T
    y = (W @ th.alpha if p else 0.0) + b[:, None] + eps
    if cfg.missing:
        drop = rng.random((N, t)) < cfg.missing
        drop[np.arange(N), rng.integers(0, t, N)] = False  # every subject keeps a measurement
        y[drop] = np.nan
    w_names = ("time",) + tuple(f"x{j}" for j in range(1, p))
    panel = Panel(y, W, U, w_names[:p], tuple(f"u{j + 1}" for j in range(q)))
    return SimData(panel, classes, b, th)
