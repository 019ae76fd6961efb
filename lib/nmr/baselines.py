"""Classical denoisers on the same low-SNR input, and the physical co-addition reference.

Savitzky-Golay (scipy), stationary-wavelet shrinkage (PyWavelets), matched-filter
exponential line broadening (nmrglue's `em` window), Cadzow's low-rank Hankel denoising of
the FID (lowrank.py), and the inverse-variance weighted co-addition of all aligned
acquisitions. Each classical method has one tuning knob, chosen on a validation set against
the truth (which flatters the baselines, not the network).
"""

from __future__ import annotations

import numpy as np
import pywt
from nmrglue.process import proc_base
from scipy.signal import savgol_filter

from .lowrank import RANK_GRID, cadzow_spectrum
from .preprocess import Prepared

SAVGOL_GRID = (5, 7, 9, 11, 15, 21, 31)  # window (points), polynomial order 3
WAVELET_GRID = (0.5, 0.75, 1.0, 1.5, 2.0)  # multiple of the universal threshold
LB_GRID = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # line broadening in Hz


def savgol(x: np.ndarray, window: int, order: int = 3) -> np.ndarray:
    """Savitzky-Golay smoothing of spectra [..., L]."""
    return savgol_filter(x, int(window), order, axis=-1)


def wavelet_shrink(
    x: np.ndarray, factor: float, wavelet: str = "sym8", level: int = 5
) -> np.ndarray:
    """Stationary-wavelet soft shrinkage; threshold = factor * sigma * sqrt(2 log n) per level."""
    x2 = np.atleast_2d(x).astype(np.float64)
    n = x2.shape[-1]
    level = min(level, pywt.swt_max_level(n))
    out = np.empty_like(x2)
    for i, s in enumerate(x2):
        coeffs = pywt.swt(s, wavelet, level=level, trim_approx=True, norm=True)
        # the finest detail band is nearly all noise: its MAD gives sigma
        sigma = np.median(np.abs(coeffs[-1])) / 0.6745
        thr = factor * sigma * np.sqrt(2 * np.log(n))
        coeffs = [coeffs[0]] + [pywt.threshold(c, thr, mode="soft") for c in coeffs[1:]]
        out[i] = pywt.iswt(coeffs, wavelet, norm=True)
    return out.reshape(np.shape(x))


def exp_broadening(x: np.ndarray, lb_hz: float, sw_hz: float) -> np.ndarray:
    """Matched filter: exponential window exp(-pi lb |t|) on the spectrum's time signal.

    Only the real spectrum is available, so its inverse FFT is two-sided in time; the window
    (nmrglue's em) is applied symmetrically, which convolves the spectrum with a Lorentzian
    of FWHM lb, the optimal filter for Lorentzian lines of that width.
    """
    x2 = np.atleast_2d(x).astype(np.float64)
    n = x2.shape[-1]
    half = proc_base.em(np.ones(n, dtype=np.complex128), lb=lb_hz / sw_hz).real
    j = np.arange(n)
    window = half[np.minimum(j, n - j)]
    z = np.fft.ifft(np.fft.ifftshift(x2, axes=-1), axis=-1) * window
    return np.fft.fftshift(np.fft.fft(z, axis=-1), axes=-1).real.reshape(np.shape(x))


def coaddition(p: Prepared) -> np.ndarray:
    """Inverse-variance weighted average of all aligned, rescaled acquisitions."""
    w = 1.0 / np.maximum(p.sigma, 1e-30) ** 2
    return (w[:, None] * p.x).sum(0) / w.sum()


def coaddition_gain(T: float, n_acq: int) -> float:
    """Ideal SNR gain of the co-addition over acquisition 0: sqrt(sum_k T^(2k))."""
    return float(np.sqrt(sum(T ** (2 * k) for k in range(n_acq))))


def apply_baseline(name: str, x: np.ndarray, knob: float, sw_hz: float) -> np.ndarray:
    """Run a classical baseline by name with its tuning knob."""
    if name == "savgol":
        return savgol(x, int(knob))
    if name == "wavelet":
        return wavelet_shrink(x, knob)
    if name == "exp_lb":
        return exp_broadening(x, knob, sw_hz)
    if name == "cadzow":
        return cadzow_spectrum(x, int(knob))
    raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(GRIDS)}")


GRIDS = {"savgol": SAVGOL_GRID, "wavelet": WAVELET_GRID, "exp_lb": LB_GRID, "cadzow": RANK_GRID}
