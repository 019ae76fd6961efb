"""Line shapes of measured spectra: one Voigt fitted per line gives its Gaussian share.

The simulator's `gauss_share` (a line's width split between Lorentzian decay and Gaussian field
inhomogeneity) is matched to what these fits find on the measured FIDs (docs/nmr.md).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import curve_fit
from scipy.signal import find_peaks, peak_widths
from scipy.special import voigt_profile

SIGMA_PER_FWHM = 1 / (2 * np.sqrt(2 * np.log(2)))  # a Gaussian's std per unit FWHM


def voigt_line(x: np.ndarray, a: float, x0: float, fl: float, fg: float, c: float) -> np.ndarray:
    """A Voigt line of height a at x0, Lorentzian and Gaussian FWHM fl and fg, on an offset c."""
    s, g = fg * SIGMA_PER_FWHM + 1e-9, fl / 2 + 1e-9  # both > 0: scipy's profile needs one
    return a * voigt_profile(x - x0, s, g) / voigt_profile(0.0, s, g) + c


def gauss_shares(y: np.ndarray, min_frac: float = 0.1, max_rms: float = 0.05) -> np.ndarray:
    """Gaussian share fG / (fL + fG) of each line above min_frac of the tallest that one Voigt fits.

    Each line is fitted over 3 FWHM either side; a fit whose rms residual exceeds max_rms of the
    line's height (a multiplet, an overlap) is left out.
    """
    pk = find_peaks(y, height=min_frac * y.max(), prominence=min_frac * y.max())[0]
    shares = []
    for p, w in zip(pk, peak_widths(y, pk)[0]):
        lo, hi = max(p - int(3 * w) - 3, 0), min(p + int(3 * w) + 4, len(y))
        x, seg = np.arange(lo, hi, dtype=float), y[lo:hi]
        try:
            (a, x0, fl, fg, c), _cov = curve_fit(
                voigt_line,
                x,
                seg,
                p0=[y[p], p, w / 2, w / 2, 0.0],
                bounds=([0, p - 2, 0, 0, -np.inf], [np.inf, p + 2, 10 * w, 10 * w, np.inf]),
            )
        except RuntimeError:  # no convergence: not one line
            continue
        if np.sqrt(np.mean((seg - voigt_line(x, a, x0, fl, fg, c)) ** 2)) < max_rms * a:
            shares.append(fg / (fl + fg))
    return np.array(shares)
