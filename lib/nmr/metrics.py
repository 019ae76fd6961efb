"""Metrics against an independent reference (the clean truth for simulated data).

The recipe's SNR gain (docs/nmr.md, recipe step 7.1) alone rewards smoothing that flattens peaks, so it is always reported
beside the equivalent measuring-time factor (whole spectrum and peak region), peak height,
FWHM and integral errors, the signed bias of peak tops, peak-detection P/R/F1 (thresholds in
units of the input noise), and L1/L2 distortion.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion, label
from scipy.signal import find_peaks, peak_widths


@dataclass
class MetricConfig:
    """Thresholds of the evaluation."""

    region_frac: float = 0.02  # peak region: truth > 2% of its maximum
    detect_sigma: float = 3.0  # detection threshold in units of the input noise
    tol_ppm: float = 0.005  # matching tolerance of peak positions
    shape_frac: float = 0.2  # peaks above 20% of the maximum get height/FWHM errors
    shape_sigma: float = (
        0.0  # ... and above this many input noise std (real spectra: 5, every visible line)
    )


def peak_region(truth: np.ndarray, frac: float) -> np.ndarray:
    """Where the truth exceeds frac of its maximum."""
    return truth > frac * truth.max()


def eval_masks(
    truth: np.ndarray, frac: float, dilate: int = 8, erode: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Peak window M (region dilated) and baseline window B (complement eroded) from the truth."""
    m = binary_dilation(peak_region(truth, frac), iterations=dilate)
    return m, binary_erosion(~m, iterations=erode)


def seed_snr(y: np.ndarray, m: np.ndarray, b: np.ndarray) -> float:
    """Recipe step 7.1 (docs/nmr.md): (P95 over M - median over B) / std over B."""
    return float((np.percentile(y[m], 95) - np.median(y[b])) / max(np.std(y[b]), 1e-30))


def input_sigma(x: np.ndarray, truth: np.ndarray) -> float:
    """Noise std of the input (its RMS error against the truth)."""
    return float(np.sqrt(np.mean((x - truth) ** 2)))


def detect(y: np.ndarray, height: float, prominence: float) -> np.ndarray:
    """Peak indices above an absolute height and prominence."""
    return find_peaks(y, height=height, prominence=prominence)[0]


def match_peaks(found: np.ndarray, true: np.ndarray, tol_pts: float) -> tuple[int, list[float]]:
    """Greedy one-to-one matching within tol; returns true positives and position errors (points)."""
    used, errs = set(), []
    for t in true:
        if not len(found):
            break
        d = np.abs(found - t).astype(float)
        d[list(used)] = np.inf
        j = int(np.argmin(d))
        if d[j] <= tol_pts:
            used.add(j)
            errs.append(float(found[j] - t))
    return len(errs), errs


def truth_tops(truth: np.ndarray, frac: float, floor: float = 0.0) -> np.ndarray:
    """Indices of the truth's peaks above frac of its maximum and above floor (where height errors are read)."""
    return find_peaks(truth, height=max(frac * truth.max(), floor))[0]


def shape_errors(
    y: np.ndarray, truth: np.ndarray, pk: np.ndarray
) -> tuple[list[float], list[float]]:
    """Relative height and FWHM errors at the truth's peaks pk."""
    if not len(pk):
        return [], []
    h_err = list(np.abs(y[pk] - truth[pk]) / truth[pk])
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # a flattened output has zero-prominence 'peaks': width 0, kept
        w_true = peak_widths(truth, pk, rel_height=0.5)[0]
        w_y = peak_widths(y, pk, rel_height=0.5)[0]
    return h_err, list(np.abs(w_y - w_true) / w_true)


def height_bias(y: np.ndarray, truth: np.ndarray, pk: np.ndarray, sigma: float) -> float:
    """Mean signed error at the truth's peaks pk, in units of the input noise sigma.

    Negative: tops shrunk (a mean-seeking denoiser unsure of a narrow line's exact position
    lowers its top); near 0 with a large height error: the error is noise, not shrinkage.
    """
    return float(np.mean(y[pk] - truth[pk]) / sigma) if len(pk) and sigma > 0 else np.nan


def integral_errors(y: np.ndarray, truth: np.ndarray, frac: float) -> list[float]:
    """Relative integral errors over the connected segments of the peak region (integral regions)."""
    seg, n = label(binary_dilation(peak_region(truth, frac), iterations=4))
    out = []
    for s in range(1, n + 1):
        sel = seg == s
        ref = truth[sel].sum()
        if ref > 0:
            out.append(abs(y[sel].sum() - ref) / ref)
    return out


def spectrum_metrics(
    y: np.ndarray,
    x: np.ndarray,
    truth: np.ndarray,
    ppm_step: float,
    cfg: MetricConfig = MetricConfig(),
) -> dict[str, float]:
    """All per-spectrum quantities of one output y, its input x and the truth."""
    region = peak_region(truth, cfg.region_frac)
    sig = input_sigma(x, truth)
    m, b = eval_masks(truth, cfg.region_frac)
    thr = cfg.detect_sigma * sig
    found, true = detect(y, thr, thr), detect(truth, thr, thr)
    tp, pos = match_peaks(found, true, cfg.tol_ppm / ppm_step)
    tops = truth_tops(truth, cfg.shape_frac, cfg.shape_sigma * sig)
    h, w = shape_errors(y, truth, tops)
    integ = integral_errors(y, truth, cfg.region_frac)
    # squared errors in units of the input's noise variance: spectra arrive in arbitrary scales
    # (each normalized its own way), and pooled raw sums would let the largest-scaled few decide
    var = max(sig**2, 1e-300)
    return {
        "se_whole_out": float(np.sum((y - truth) ** 2)) / var,
        "se_whole_in": float(np.sum((x - truth) ** 2)) / var,
        "se_peak_out": float(np.sum((y - truth)[region] ** 2)) / var,
        "se_peak_in": float(np.sum((x - truth)[region] ** 2)) / var,
        "snr_gain": seed_snr(y, m, b) / seed_snr(x, m, b),
        "tp": tp,
        "n_found": len(found),
        "n_true": len(true),
        "pos_err_ppm": float(np.mean(np.abs(pos)) * ppm_step) if pos else np.nan,
        "height_err": float(np.mean(h)) if h else np.nan,
        "height_bias": height_bias(y, truth, tops, sig),
        "fwhm_err": float(np.mean(w)) if w else np.nan,
        "integral_err": float(np.mean(integ)) if integ else np.nan,
        "l1": float(np.mean(np.abs(y - truth))) / truth.max(),
        "l2": float(np.sqrt(np.mean((y - truth) ** 2))) / truth.max(),
    }


def pooled_factor(se_in: np.ndarray, se_out: np.ndarray) -> np.ndarray:
    """Time factor of squared errors pooled along the last axis (infinite for a perfect output).

    Raw scans needed for a raw spectrum to reach this RMS error (noise ~ 1/sqrt(scans)); the
    errors are in each spectrum's noise units, so every spectrum weighs by its size, not its scale.
    """
    num, den = np.sum(se_in, -1), np.sum(se_out, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.inf)


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """Pool per-spectrum metrics of one method: time factors from pooled squared errors."""
    s = {k: np.array([r[k] for r in rows], dtype=float) for k in rows[0]}
    tp, nf, nt = s["tp"].sum(), s["n_found"].sum(), s["n_true"].sum()
    prec, rec = tp / max(nf, 1), tp / max(nt, 1)
    return {
        "time_factor_whole": float(pooled_factor(s["se_whole_in"], s["se_whole_out"])),
        "time_factor_peak": float(pooled_factor(s["se_peak_in"], s["se_peak_out"])),
        "snr_gain": float(np.median(s["snr_gain"])),
        "height_err": float(np.nanmean(s["height_err"])),
        "height_bias": float(np.nanmean(s["height_bias"])),
        "fwhm_err": float(np.nanmean(s["fwhm_err"])),
        "integral_err": float(np.nanmean(s["integral_err"])),
        "precision": prec,
        "recall": rec,
        "f1": 2 * prec * rec / max(prec + rec, 1e-12),
        "pos_err_ppm": float(np.nanmean(s["pos_err_ppm"]))
        if np.isfinite(s["pos_err_ppm"]).any()
        else np.nan,
        "l1": float(s["l1"].mean()),
        "l2": float(s["l2"].mean()),
    }
