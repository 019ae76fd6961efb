"""Units in, units out: the fit runs on a panel whose response is centred and scaled to unit SD and
whose covariate columns have unit root mean square, and its estimates are mapped back.

EM's stopping rule is relative to the log-likelihood and the quasi-Newton steps' to the score,
and both move when the response is measured in grams instead of kilograms (the log-likelihood
shifts by n log 1000); on the standard scale the same data in any units get the same fit. The
map is affine in every parameter, so it carries the observed information over exactly too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .panel import Panel
from .params import Params, Spec


def rms(A: np.ndarray) -> np.ndarray:
    """Root mean square of each column (1 where a column is all zero, or for no rows)."""
    r = np.sqrt(np.mean(A * A, axis=0)) if A.size else np.ones(A.shape[-1])
    return np.where(r > 0, r, 1.0)


@dataclass(frozen=True)
class Scaling:
    """y' = (y - cy) / sy, W' = W / sw, U' = U / su (per column)."""

    cy: float
    sy: float
    sw: np.ndarray
    su: np.ndarray

    @classmethod
    def of(cls, panel: Panel, scale_u: bool = True) -> Scaling:
        """The scaling of a panel (`scale_u=False` keeps U, whose ridge penalty is set in its units)."""
        yo = panel.y[panel.observed]
        sy = float(np.std(yo))
        W = panel.W[panel.observed]
        su = rms(panel.U) if scale_u else np.ones(panel.q)
        return cls(float(np.mean(yo)), sy if sy > 0 else 1.0, rms(W), su)

    def panel(self, panel: Panel) -> Panel:
        """The panel on the standard scale (not checked again)."""
        return Panel(
            (panel.y - self.cy) / self.sy,
            panel.W / self.sw,
            panel.U / self.su,
            panel.w_names,
            panel.u_names,
            panel.subjects,
            panel.times,
            dict(panel.meta),
            check=False,
        )

    def inward(self, th: Params) -> Params:
        """User-scale parameters on the standard scale."""
        g = th.gamma.copy()
        g[:, 1:] *= self.su
        s2 = self.sy**2
        return replace(
            th,
            alpha=th.alpha * self.sw / self.sy,
            mu=(th.mu - self.cy) / self.sy,
            gamma=g,
            sb2=th.sb2 / s2,
            se2=th.se2 / s2,
            S=None if th.S is None else th.S / s2,
        )

    def outward(self, th: Params) -> Params:
        """Standard-scale parameters in the user's units."""
        g = th.gamma.copy()
        g[:, 1:] /= self.su
        s2 = self.sy**2
        return replace(
            th,
            alpha=th.alpha * self.sy / self.sw,
            mu=th.mu * self.sy + self.cy,
            gamma=g,
            sb2=th.sb2 * s2,
            se2=th.se2 * s2,
            S=None if th.S is None else th.S * s2,
        )

    def loglik_shift(self, panel: Panel) -> float:
        """What to add to a standard-scale log-likelihood (the Jacobian of y -> y')."""
        return -panel.n_obs * float(np.log(self.sy))

    def factors(self, s: Spec) -> np.ndarray:
        """d x_user / d x_standard for each entry of the pack() vector (the map is affine)."""
        cov = np.ones(s.n_cov)
        if s.structure == "unstructured":  # log-Cholesky: off-diagonal entries scale with sy
            rows, cols = np.tril_indices(s.T)
            cov[rows != cols] = self.sy
        gam = np.tile(np.r_[1.0, 1.0 / self.su], s.K - 1)
        return np.concatenate([self.sy / self.sw, np.full(s.K, self.sy), gam, cov])
