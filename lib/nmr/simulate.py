"""Simulated multi-acquisition 1D NMR data sets (frequency domain, real part).

Each sample has K+1 acquisitions of one spectrum whose SNR grows by a factor T per
acquisition. Lines come from nmrsim spin systems (first and second order) plus singlets,
each Lorentzian or, with a Gaussian share of its width, a Voigt line; complex Gaussian noise
is added to the FID before the Fourier transform; each acquisition drifts by a small
chemical-shift offset, carries a mild baseline and is normalized its own way. The clean
spectrum, in the frame of acquisition 0, is kept as the truth for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from nmrsim.qm import qm_spinsystem

NORMALIZATIONS = ("max", "area", "l2", "scale")
Lines = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray
]  # frequencies (Hz, frame of acq. 0), heights, Lorentzian and Gaussian FWHM (Hz)
SUPPORTED_LENGTHS = (2048, 4096, 8192, 16384, 32768)


@dataclass(frozen=True)
class SpectrumSimConfig:
    """Physical and statistical settings of one simulated data set."""

    n_points: int = 8192  # complex FID points = real spectrum points
    spectrometer_mhz: float = 400.0
    sw_ppm: float = 10.0  # spectral width
    center_ppm: float = 5.0  # carrier
    n_acq: int = 4  # K+1 acquisitions
    T: float = 2.0  # SNR ratio between consecutive acquisitions
    snr_range: tuple[float, float] = (4.0, 25.0)  # peak SNR of acquisition 0, drawn log-uniform
    n_systems: tuple[int, int] = (2, 5)  # coupled spin systems per sample
    n_singlets: tuple[int, int] = (1, 4)
    linewidth_hz: tuple[float, float] = (0.8, 2.5)  # FWHM of each line, Lorentzian or Voigt
    # Gaussian share of a line's width, uniform per spin system: 0 is Lorentzian (exponential
    # decay), 1 Gaussian (field inhomogeneity); measured 1H lines span both (docs/nmr.md)
    gauss_share: tuple[float, float] = (0.0, 0.0)
    # singlet heights, uniform (multiplet lines are 0.1-3); a wide top end adds a dominant line
    singlet_amp: tuple[float, float] = (0.5, 6.0)
    second_order_frac: float = 0.4  # share of systems with shift differences close to J
    drift_ppm: float = 0.002  # std of the per-acquisition chemical-shift drift
    baseline_frac: float = 0.002  # baseline amplitude relative to the spectrum maximum
    normalizations: tuple[str, ...] = NORMALIZATIONS

    def __post_init__(self) -> None:
        check_sim_config(self)

    @property
    def sw_hz(self) -> float:
        """Spectral width in Hz."""
        return self.sw_ppm * self.spectrometer_mhz


@dataclass
class SpectrumSet:
    """Acquisitions x [N, K+1, L], truth [N, L] (frame and scale of acquisition 0), ppm axis."""

    x: np.ndarray
    truth: np.ndarray
    ppm: np.ndarray
    snr0: np.ndarray  # input peak SNR per sample
    T: float
    shifts_ppm: np.ndarray  # [N, K+1] true drift of each acquisition
    meta: dict = field(default_factory=dict)
    lines: list[Lines] = field(default_factory=list)  # per sample, when simulated (the oracle's)

    def __len__(self) -> int:
        return self.x.shape[0]


def check_sim_config(cfg: SpectrumSimConfig) -> None:
    """Raise ValueError naming a bad setting and the fix."""
    if cfg.n_points not in SUPPORTED_LENGTHS:
        raise ValueError(
            f"n_points={cfg.n_points} is not supported; use one of {SUPPORTED_LENGTHS}"
        )
    if not cfg.T > 1:
        raise ValueError(f"T={cfg.T}: the SNR must grow between acquisitions, so T must be > 1")
    if cfg.n_acq < 2:
        raise ValueError(f"n_acq={cfg.n_acq}: a set needs at least two acquisitions (K >= 1)")
    if not 0 < cfg.snr_range[0] <= cfg.snr_range[1]:
        raise ValueError(f"snr_range={cfg.snr_range} must be positive and increasing")
    if not 0 < cfg.singlet_amp[0] <= cfg.singlet_amp[1]:
        raise ValueError(f"singlet_amp={cfg.singlet_amp} must be positive and increasing")
    if not 0 <= cfg.gauss_share[0] <= cfg.gauss_share[1] <= 1:
        raise ValueError(
            f"gauss_share={cfg.gauss_share} must be increasing within [0, 1] (0: Lorentzian lines)"
        )
    bad = set(cfg.normalizations) - set(NORMALIZATIONS)
    if bad:
        raise ValueError(f"unknown normalizations {sorted(bad)}; choose from {NORMALIZATIONS}")


def ppm_axis(cfg: SpectrumSimConfig) -> np.ndarray:
    """Chemical shift of each spectrum point (ascending; plots invert the axis)."""
    hz = np.fft.fftshift(np.fft.fftfreq(cfg.n_points, d=1.0 / cfg.sw_hz))
    return cfg.center_ppm + hz / cfg.spectrometer_mhz


def random_spin_system(
    rng: np.random.Generator, cfg: SpectrumSimConfig
) -> list[tuple[float, float]]:
    """Lines (Hz offset from the carrier, intensity) of one random 2-4 spin system via nmrsim."""
    n = int(rng.integers(2, 5))
    lo, hi = cfg.center_ppm - 0.45 * cfg.sw_ppm, cfg.center_ppm + 0.45 * cfg.sw_ppm
    base = rng.uniform(lo, hi)
    # second order when shift differences (Hz) are comparable to J
    spread = 0.05 if rng.random() < cfg.second_order_frac else 0.6
    ppm = base + rng.uniform(-spread, spread, size=n)
    J = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            J[i, j] = J[j, i] = rng.uniform(1.0, 15.0) if rng.random() < 0.7 else 0.0
    hz = list((ppm - cfg.center_ppm) * cfg.spectrometer_mhz)
    lines = qm_spinsystem(hz, J, sparse=False)  # sparse path breaks with current `sparse`
    scale = rng.uniform(0.5, 3.0)
    return [(float(f), float(i) * scale) for f, i in lines if i > 1e-4]


def voigt_widths(fwhm: float, share: float) -> tuple[float, float]:
    """Lorentzian and Gaussian FWHM in the ratio (1 - share) : share whose Voigt line has FWHM fwhm."""
    # Olivero & Longbothum (1977): f_V ~ 0.5346 f_L + sqrt(0.2166 f_L^2 + f_G^2), within 0.02%
    lo, ga = 1.0 - share, share
    return fwhm * lo / (v := 0.5346 * lo + np.sqrt(0.2166 * lo**2 + ga**2)), fwhm * ga / v


def random_lines(rng: np.random.Generator, cfg: SpectrumSimConfig) -> Lines:
    """Frequencies (Hz), intensities, Lorentzian and Gaussian FWHM (Hz) of one random sample."""
    freqs, amps, wl, wg = [], [], [], []

    def shape() -> tuple[float, float]:
        w = rng.uniform(*cfg.linewidth_hz)
        # no draw for Lorentzian-only settings, so their sets stay as they were
        return (
            voigt_widths(w, rng.uniform(*cfg.gauss_share)) if cfg.gauss_share[1] > 0 else (w, 0.0)
        )

    for _ in range(int(rng.integers(cfg.n_systems[0], cfg.n_systems[1] + 1))):
        lw = shape()
        for f, a in random_spin_system(rng, cfg):
            freqs.append(f), amps.append(a), wl.append(lw[0]), wg.append(lw[1])
    for _ in range(int(rng.integers(cfg.n_singlets[0], cfg.n_singlets[1] + 1))):
        ppm = rng.uniform(cfg.center_ppm - 0.45 * cfg.sw_ppm, cfg.center_ppm + 0.45 * cfg.sw_ppm)
        freqs.append((ppm - cfg.center_ppm) * cfg.spectrometer_mhz)
        amps.append(rng.uniform(*cfg.singlet_amp))
        lw = shape()
        wl.append(lw[0]), wg.append(lw[1])
    return np.array(freqs), np.array(amps), np.array(wl), np.array(wg)


def line_fids(
    freqs: np.ndarray, lorentz: np.ndarray, gauss: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """Unit-amplitude FIDs [n_lines, len(t)]: exponential (Lorentzian) times Gaussian decay."""
    f, wl, wg = freqs[:, None], lorentz[:, None], gauss[:, None]
    # a Gaussian decay exp(-(pi wg t)^2 / (4 ln 2)) transforms to a Gaussian line of FWHM wg
    return np.exp((2j * np.pi * f - np.pi * wl) * t - (np.pi * wg * t) ** 2 / (4 * np.log(2)))


def fid_from_lines(lines: Lines, cfg: SpectrumSimConfig) -> np.ndarray:
    """Complex FID: the sum of every line's decaying oscillation (Voigt lines, Lorentzian at share 0)."""
    freqs, amps, wl, wg = lines
    t = np.arange(cfg.n_points) / cfg.sw_hz
    fid = np.zeros(cfg.n_points, dtype=np.complex128)
    for lo in range(0, len(freqs), 64):  # chunks keep the outer product small at 32k points
        c = slice(lo, lo + 64)
        fid += (amps[c, None] * line_fids(freqs[c], wl[c], wg[c], t)).sum(0)
    return fid


def fid_to_spectrum(fid: np.ndarray) -> np.ndarray:
    """FFT (first point halved against a baseline offset), centred; the real part."""
    f = fid.copy()
    f[..., 0] *= 0.5
    return np.fft.fftshift(np.fft.fft(f, axis=-1), axes=-1).real


def smooth_baseline(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """A mild random baseline: a cubic Legendre series with the given peak amplitude."""
    u = np.linspace(-1, 1, n)
    b = np.polynomial.legendre.legval(u, rng.normal(size=4))
    return amplitude * b / (np.abs(b).max() + 1e-12)


def apply_normalization(
    x: np.ndarray, how: str, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Apply one acquisition normalization; returns the spectrum and the factor used."""
    if how == "max":
        c = 1.0 / np.abs(x).max()
    elif how == "area":
        c = 1.0 / np.abs(x).sum()
    elif how == "l2":
        c = 1.0 / np.sqrt((x**2).sum())
    elif how == "scale":
        c = float(np.exp(rng.uniform(np.log(0.1), np.log(10.0))))
    else:
        raise ValueError(f"unknown normalization {how!r}; choose from {NORMALIZATIONS}")
    return x * c, float(c)


def simulate_sample(
    rng: np.random.Generator, cfg: SpectrumSimConfig, snr0: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Lines]:
    """One sample: acquisitions [K+1, L], truth [L] (frame of acquisition 0), drifts [K+1], lines."""
    freqs, amps, wl, wg = lines = random_lines(rng, cfg)
    clean_fid = fid_from_lines(lines, cfg)
    t = np.arange(cfg.n_points) / cfg.sw_hz
    shifts = rng.normal(0.0, cfg.drift_ppm, size=cfg.n_acq)
    # the input's own clean maximum defines its peak SNR (narrow lines lose height off-grid)
    peak = fid_to_spectrum(
        clean_fid * np.exp(2j * np.pi * shifts[0] * cfg.spectrometer_mhz * t)
    ).max()
    acq, truth = [], None
    for k in range(cfg.n_acq):
        sigma_f = peak / (snr0 * cfg.T**k)  # noise std of the real spectrum
        sigma_t = sigma_f / np.sqrt(cfg.n_points)  # FFT multiplies white-noise std by sqrt(N)
        drift = np.exp(2j * np.pi * shifts[k] * cfg.spectrometer_mhz * t)
        noise = rng.normal(0, sigma_t, cfg.n_points) + 1j * rng.normal(0, sigma_t, cfg.n_points)
        clean_k = fid_to_spectrum(clean_fid * drift)
        raw = (
            clean_k
            + fid_to_spectrum(noise)
            + smooth_baseline(rng, cfg.n_points, cfg.baseline_frac * peak)
        )
        x, c = apply_normalization(raw, str(rng.choice(list(cfg.normalizations))), rng)
        acq.append(x)
        if k == 0:
            truth = clean_k * c
    # the lines in the frame of acquisition 0, where the truth is
    return np.stack(acq), truth, shifts, (freqs + shifts[0] * cfg.spectrometer_mhz, amps, wl, wg)


def simulate_set(
    cfg: SpectrumSimConfig, n_samples: int, seed: int, snr0: float | None = None
) -> SpectrumSet:
    """A data set of n_samples; snr0 fixed, or drawn log-uniform from cfg.snr_range."""
    if n_samples < 1:
        raise ValueError(f"n_samples={n_samples}: ask for at least one sample")
    rng = np.random.default_rng(seed)
    xs, truths, shifts, snrs, lines = [], [], [], [], []
    for _ in range(n_samples):
        s = snr0 if snr0 is not None else float(np.exp(rng.uniform(*np.log(cfg.snr_range))))
        x, tr, sh, ln = simulate_sample(rng, cfg, s)
        xs.append(x), truths.append(tr), shifts.append(sh), snrs.append(s), lines.append(ln)
    return SpectrumSet(
        x=np.stack(xs).astype(np.float32),
        truth=np.stack(truths).astype(np.float32),
        ppm=ppm_axis(cfg),
        snr0=np.array(snrs),
        T=cfg.T,
        shifts_ppm=np.stack(shifts),
        meta={"seed": seed, "source": "simulated"},
        lines=lines,
    )
