"""Preprocessing of one multi-acquisition set (docs/nmr.md, recipe steps 2 and 3.1).

Sub-pixel alignment (cross-correlation peak + Fourier phase shift), robust rescaling on
the peak region, automatic peak/baseline masks, robust noise and SNR, the estimate of T,
and the fused pseudo ground truth. Everything is brought into the frame and scale of
acquisition 0 (the low-SNR input), so the input itself is never resampled or rescaled:
interpolating it would smooth its noise and flatter any denoiser evaluated on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion
from scipy.signal import savgol_filter


@dataclass(frozen=True)
class PrepConfig:
    """Switches and constants of the preprocessing (the ablations flip align/rescale/fusion)."""

    align: bool = True
    max_shift: int = 32  # points searched by the cross-correlation
    rescale: bool = True
    alpha: float = 4.0  # threshold = median + alpha * MAD
    sg_window: int = 11
    sg_order: int = 3
    dilate: int = 8  # points added around peaks
    erode: int = 2  # points removed from the baseline mask edges
    fusion: str = "snr"  # "snr": SNR-weighted fusion; "best": highest-SNR acquisition alone
    gamma: float = (
        2.0  # weights ~ SNR**gamma; 2 = inverse variance (the recipe's 0.5-1.5 fuse worse)
    )
    w_cap: float = 50.0  # no weight may exceed w_cap times the smallest


@dataclass
class Prepared:
    """One preprocessed set: x [K+1, L] in the input frame, masks, noise, SNR, T, pseudo truth."""

    x: np.ndarray
    peak_mask: np.ndarray
    base_mask: np.ndarray
    sigma: np.ndarray
    snr: np.ndarray
    T_hat: float
    s_hat: np.ndarray
    shifts: np.ndarray  # points each acquisition was moved by
    scales: np.ndarray  # factors each acquisition was multiplied by


def check_set(x: np.ndarray) -> np.ndarray:
    """Validate one set [K+1, L] (or a list of spectra): finite, equal lengths, >= 2 acquisitions."""
    if isinstance(x, (list, tuple)):
        lengths = sorted({len(np.asarray(s)) for s in x})
        if len(lengths) > 1:
            raise ValueError(
                f"spectra of different lengths {lengths} in one set; "
                "resample or zero-fill them to one length before preprocessing"
            )
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(
            f"expected one set of shape [n_acquisitions, n_points], got shape {x.shape}"
        )
    if x.shape[0] < 2:
        raise ValueError(
            f"a set needs at least two acquisitions to estimate T and fuse a pseudo truth, "
            f"got {x.shape[0]}; add repeated acquisitions of the same sample"
        )
    bad = ~np.isfinite(x)
    if bad.any():
        k, i = np.argwhere(bad)[0]
        raise ValueError(
            f"{int(bad.sum())} NaN or infinite values (first in acquisition {k} at point {i}); "
            "fix or drop that acquisition"
        )
    return x


def check_T(T: float) -> float:
    """T must exceed 1: the SNR has to grow between acquisitions."""
    if not np.isfinite(T) or T <= 1:
        raise ValueError(
            f"T={T}: the SNR ratio between consecutive acquisitions must be > 1; "
            "order the acquisitions by increasing SNR or pass the right T"
        )
    return float(T)


def xcorr_shift(ref: np.ndarray, x: np.ndarray, max_shift: int, grid: int = 41) -> float:
    """Sub-pixel shift (points) that moves x onto ref: integer cross-correlation peak, then
    the correlation evaluated exactly (Fourier shift) on a 1/20-point grid around it."""
    n = len(ref)
    R, X = np.fft.rfft(ref - ref.mean()), np.fft.rfft(x - x.mean())
    cc = np.fft.irfft(R * np.conj(X), n)
    lags = np.r_[0 : max_shift + 1, -max_shift:0]
    # irfft(R conj(X))[l] peaks where ref(i) ~ x(i - l): moving x by +l matches ref
    lag = float(lags[int(np.argmax(cc[lags]))])
    s = lag + np.linspace(-1.0, 1.0, grid)
    k = np.fft.rfftfreq(n)
    vals = (np.conj(R)[None] * X[None] * np.exp(-2j * np.pi * k[None] * s[:, None])).real.sum(1)
    return float(s[int(np.argmax(vals))])


def fourier_shift(x: np.ndarray, shift: float) -> np.ndarray:
    """Circularly shift a real spectrum by a fractional number of points (phase ramp)."""
    n = x.shape[-1]
    k = np.fft.rfftfreq(n)
    return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * k * shift), n)


def smooth(x: np.ndarray, window: int, order: int) -> np.ndarray:
    """Savitzky-Golay smoothing along the last axis."""
    return savgol_filter(x, window, order, axis=-1)


def peak_mask(x: np.ndarray, cfg: PrepConfig) -> np.ndarray:
    """Peak mask M: smoothed inverse-variance co-add of the spectra >= median + alpha*MAD, dilated.

    The recipe thresholds the pointwise maximum of the smoothed spectra; that maximum follows the
    noisiest one, so on measured FIDs with added noise many times too many points passed while
    lines were missed. The co-add has the best SNR of any combination.
    """
    x2 = np.atleast_2d(x)
    w = 1.0 / np.maximum([diff_sigma(s) for s in x2], 1e-300) ** 2
    top = smooth((w[:, None] * x2).sum(0) / w.sum(), cfg.sg_window, cfg.sg_order)
    med = np.median(top)
    mad = 1.4826 * np.median(np.abs(top - med))
    m = top >= med + cfg.alpha * mad
    return binary_dilation(m, iterations=cfg.dilate) if cfg.dilate > 0 else m


def base_mask(m: np.ndarray, erode: int) -> np.ndarray:
    """Baseline mask B: the complement of M, eroded so peak feet stay out."""
    b = ~m
    b = binary_erosion(b, iterations=erode) if erode > 0 else b
    if b.sum() < 16:
        raise ValueError(
            "the baseline mask is (nearly) empty: the spectrum has no signal-free region; "
            "raise PrepConfig.alpha or lower PrepConfig.dilate"
        )
    return b


def robust_sigma(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Noise std per spectrum: 1.4826 * MAD over the baseline mask."""
    xb = np.atleast_2d(x)[:, b]
    return 1.4826 * np.median(np.abs(xb - np.median(xb, axis=1, keepdims=True)), axis=1)


def diff_sigma(x: np.ndarray) -> float:
    """Noise std of one spectrum without masks: MAD of first differences / sqrt(2) (UNet1D's unit)."""
    d = np.diff(np.asarray(x, dtype=np.float64))
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def spectrum_snr(x: np.ndarray) -> float:
    """Tallest |point| over the robust noise std (MAD of first differences)."""
    s = diff_sigma(x)
    return float(np.abs(x).max() / s) if s > 0 else float("inf") if np.any(x) else 0.0


def robust_snr(x: np.ndarray, m: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Seed SNR: (P95 over M - median over B) / sigma."""
    x2 = np.atleast_2d(x)
    return (np.percentile(x2[:, m], 95, axis=1) - np.median(x2[:, b], axis=1)) / robust_sigma(x2, b)


def estimate_T(sigma: np.ndarray) -> float:
    """T estimated as the median ratio of consecutive noise levels (same scale required)."""
    sigma = np.asarray(sigma, dtype=float)
    if len(sigma) < 2:
        raise ValueError("estimating T needs at least two acquisitions")
    return float(np.median(sigma[:-1] / sigma[1:]))


def coadd_weights(x: np.ndarray) -> np.ndarray:
    """Inverse-variance weights of spectra on one scale (noise from first differences)."""
    return 1.0 / np.maximum([diff_sigma(s) for s in np.atleast_2d(x)], 1e-300) ** 2


def coadd_others(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[n, L]: for each spectrum of x [n, L], the w-weighted mean of the other ones (n >= 2)."""
    total = w @ x
    return (total[None] - w[:, None] * x) / (w.sum() - w)[:, None]


def rescale_factors(
    x: np.ndarray, ref: np.ndarray, m: np.ndarray, noise: float = 0.0
) -> np.ndarray:
    """Factor s_k on M moving each spectrum x_k onto ref (docs/nmr.md, recipe step 2.2), free of attenuation bias.

    The plain least-squares factor <x_k, ref> / <x_k, x_k> is biased towards zero by the noise
    energy of the regressor x_k (on a mask that is mostly noise, the noisiest x_k lost much of its
    height). Here an instrument z_k whose noise is independent of x_k and ref stands in:
    s_k = <ref, z_k> / <x_k, z_k>, with z_k the inverse-variance co-add of the other spectra (on
    replicates of equal SNR the co-add leaves smaller scale errors than the last spectrum alone,
    having less noise). With one spectrum, z is itself and <x, x> loses the noise energy
    |M| * noise**2 (noise: its noise std).
    Where that denominator is not positive, the least-squares factor is used.
    """
    z = coadd_others(x, coadd_weights(x)) if len(x) > 1 else x
    den = (x[:, m] * z[:, m]).sum(1)
    if len(x) == 1:
        den[0] -= m.sum() * noise**2
    ls = (x[:, m] @ ref[m]) / np.maximum((x[:, m] ** 2).sum(1), 1e-30)
    return np.where(den > 0, (z[:, m] @ ref[m]) / np.where(den > 0, den, 1.0), ls)


def fusion_weights(sigma: np.ndarray, gamma: float, cap: float) -> np.ndarray:
    """Weights ~ SNR**gamma = sigma**-gamma, capped at `cap` times the smallest, summing to one.

    On one scale (after rescaling) an acquisition's SNR is proportional to 1 / its noise std, which
    is measured far more reliably than a peak height on a sparse spectrum: there a percentile of
    the peak mask reads about the same SNR for every acquisition, so acquisitions of very
    different noise would be fused about equally.
    """
    w = np.maximum(sigma, 1e-300) ** -gamma
    w = np.minimum(w, cap * w.min())
    return w / w.sum()


def pseudo_truth(
    xs: np.ndarray, sigma: np.ndarray, cfg: PrepConfig, exclude: int | tuple[int, ...] = ()
) -> np.ndarray:
    """Fused (or best) pseudo truth of aligned, rescaled acquisitions, optionally leaving some out.

    Leaving out the acquisition that serves as the network's input makes the target's noise
    independent of the input's (a Noise2Noise pair), so a higher-SNR input can be trained too.
    """
    out = {exclude} if isinstance(exclude, (int, np.integer)) else set(exclude)
    keep = np.array([k for k in range(len(xs)) if k not in out])
    if cfg.fusion == "best":
        return xs[keep[int(np.argmin(sigma[keep]))]].copy()
    return (fusion_weights(sigma[keep], cfg.gamma, cfg.w_cap)[:, None] * xs[keep]).sum(0)


def align_shifts(xs: np.ndarray, m: np.ndarray, cfg: PrepConfig) -> np.ndarray:
    """Points that move each acquisition onto acquisition 0 (docs/nmr.md, recipe step 2.1).

    Smoothed spectra (white noise x white noise is white across lags: on raw ones the correlation
    peak wanders between replicates of one FID) are correlated against templates cut to the peak
    mask m, so the noise of the other points does not enter. Acquisitions 1..K are aligned to the
    last (the best), then once more each to the co-add of the others; acquisition 0, the noisiest,
    to the co-add of all of them: a template with less noise than one noisy acquisition invents
    fewer shifts where there are none (replicates of equal SNR).
    """
    sm = smooth(xs, cfg.sg_window, cfg.sg_order)
    w = coadd_weights(xs)
    best, sh = len(xs) - 1, np.zeros(len(xs))
    for k in range(1, best):
        sh[k] = xcorr_shift(sm[best] * m, sm[k], cfg.max_shift)

    def moved() -> np.ndarray:  # acquisitions 1..K at their current shifts
        return np.stack([fourier_shift(sm[j], sh[j]) for j in range(1, len(xs))])

    if len(xs) > 2:
        others = coadd_others(moved(), w[1:]) * m
        sh[1:] = [xcorr_shift(t, sm[k], cfg.max_shift) for k, t in enumerate(others, start=1)]
    template = w[1:] @ moved() / w[1:].sum() * m
    sh[1:] += xcorr_shift(sm[0], template, cfg.max_shift)
    return sh


def prepare(x, cfg: PrepConfig = PrepConfig()) -> Prepared:
    """Align, rescale, mask, estimate noise/SNR/T and fuse the pseudo truth of one set."""
    x = check_set(x)
    if cfg.fusion not in ("snr", "best"):
        raise ValueError(
            f"fusion={cfg.fusion!r}; use 'snr' (weighted fusion) or 'best' (highest SNR alone)"
        )
    ref = x[0]
    # every acquisition has its own normalization: put it on the input's scale first
    # (without rescaling, the ablation, they keep their own normalizations)
    scales = np.abs(ref).max() / np.abs(x).max(1) if cfg.rescale else np.ones(len(x))
    xs = x * scales[:, None]
    # the input joins no mask: its noise would only add false peaks
    m = peak_mask(xs[1:], cfg)
    shifts = np.zeros(len(x))
    if cfg.align:
        shifts = align_shifts(xs, m, cfg)
        xs[1:] = np.stack([fourier_shift(xs[k], shifts[k]) for k in range(1, len(xs))])
        m = peak_mask(xs[1:], cfg)
    b = base_mask(m, cfg.erode)
    if cfg.rescale:
        # fit each acquisition onto the input, not the input onto the best, with the co-add of
        # the others as instrument: a noisy regressor biases least squares towards zero
        s = rescale_factors(xs[1:], ref, m, noise=float(robust_sigma(xs[-1], b)[0]))
        xs[1:] *= s[:, None]
        scales[1:] *= s
    sigma = robust_sigma(xs, b)
    snr = robust_snr(xs, m, b)
    T_hat = estimate_T(sigma)
    s_hat = pseudo_truth(xs, sigma, cfg)
    return Prepared(
        x=xs,
        peak_mask=m,
        base_mask=b,
        sigma=sigma,
        snr=snr,
        T_hat=T_hat,
        s_hat=s_hat,
        shifts=shifts,
        scales=scales,
    )


def replicate_excess(p: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Per acquisition 1..K: how much more it differs from the co-add of the others on the lines
    than on the baseline, in units of acquisition 0's noise variance (replicates: about 0), and
    the standard error of that excess.

    White noise is the same on both, whatever its level, so no noise estimate enters the difference;
    a line that grew, shrank or moved between acquisitions only counts on the lines.
    """
    k_all = len(p.x) - 1
    if not (p.peak_mask.any() and p.base_mask.any()):
        return np.zeros(k_all), np.full(k_all, np.inf)
    others = coadd_others(p.x, 1.0 / np.maximum(p.sigma, 1e-300) ** 2)
    ex, se = [], []
    for k in range(1, len(p.x)):
        d2 = (p.x[k] - others[k]) ** 2 / p.sigma[0] ** 2
        on, off = d2[p.peak_mask], d2[p.base_mask]
        ex.append(on.mean() - off.mean())
        # neighbouring points of a zero-filled spectrum are correlated: count half of them
        se.append(np.sqrt(2 * (on.var() / on.size + off.var() / off.size)))
    return np.array(ex), np.array(se)


def prepare_many(x: np.ndarray, cfg: PrepConfig = PrepConfig()) -> list[Prepared]:
    """prepare() for every set of an [N, K+1, L] array."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"expected [n_sets, n_acquisitions, n_points], got shape {x.shape}")
    return [prepare(s, cfg) for s in x]
