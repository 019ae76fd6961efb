"""The oracle line fit: the best a method could do that knew every line's position and width.

On a simulated spectrum the lines are known exactly (`SpectrumSet.lines`). The oracle fits
only their heights, non-negative as the simulator's are, and a cubic baseline to acquisition 0
by least squares with the simulator's own line shape, and returns the fitted lines without the
baseline. No denoiser knows the line list, so the oracle's factors show the headroom a goal on
simulated data leaves (docs/nmr.md, "the oracle bound"); it is a reference, not a strict bound (a
method with a stronger prior could beat it). Real spectra have no line list and no oracle.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

from .simulate import Lines, fid_to_spectrum, line_fids

BASELINE_DEGREE = 3  # the simulator's baseline is a cubic Legendre series


def line_basis(lines: Lines, n_points: int, sw_hz: float) -> np.ndarray:
    """Real spectra [L, n_lines] of unit-height lines at the given frequencies and widths."""
    freqs, _, lorentz, gauss = lines
    return fid_to_spectrum(line_fids(freqs, lorentz, gauss, np.arange(n_points) / sw_hz)).T


def oracle_fit(x: np.ndarray, lines: Lines, sw_hz: float) -> np.ndarray:
    """Non-negative least-squares heights of the known lines (plus a cubic baseline) fitted to x."""
    if len(lines[0]) == 0:
        raise ValueError("the oracle needs the spectrum's lines; this sample has none")
    n = x.shape[-1]
    basis = line_basis(lines, n, sw_hz)
    base = np.polynomial.legendre.legvander(np.linspace(-1, 1, n), BASELINE_DEGREE)
    # the baseline enters with both signs, the heights only positive
    coef, _ = nnls(np.hstack([basis, base, -base]), np.asarray(x, np.float64), maxiter=50 * n)
    return basis @ coef[: basis.shape[1]]


def oracle_outputs(x0: np.ndarray, lines: list[Lines], sw_hz: float) -> np.ndarray:
    """The oracle fit of every spectrum [N, L] of a simulated set."""
    if len(lines) != len(x0):
        raise ValueError(
            f"{len(x0)} spectra but {len(lines)} line lists: the oracle needs a simulated set"
        )
    return np.stack([oracle_fit(x, ln, sw_hz) for x, ln in zip(x0, lines)])
