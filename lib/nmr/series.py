"""A replicate series of one sample: acquisitions found on disk (or given as arrays), checked to
belong together, processed alike (zero-fill, FFT, one shared phase, real part, ppm axis) and
ordered by increasing SNR, as the denoiser expects (acquisition 0 is the noisiest).

One phase for all: phasing each acquisition on its own lets the noise of the weak ones tilt
their phase, and the alignment and fusion would then mix differently distorted lines.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .fileio import (
    MAX_POINTS,
    InputError,
    RawFID,
    auto_phase,
    check_axis,
    is_pipe_spectrum,
    phased,
    ppm_scale,
    raw_spectrum,
    read_fids,
    read_pipe_spectrum,
)
from .preprocess import diff_sigma, spectrum_snr

DATA_SUFFIXES = (".fid", ".ft", ".ft1", ".dx", ".jdx", ".jcamp")
# exponential line broadening (Hz) of the sum the phase is found on, never of the spectra themselves:
# it keeps every line's phase and lifts their SNR, so ACME's phase on noisy series comes closer to
# the clean FID's (bench/nmr_phase.md)
PHASE_LB_HZ = 2.0


@dataclass(frozen=True)
class Series:
    """Acquisitions [n, L] (real, phased, ascending ppm; increasing SNR) and what describes them."""

    spectra: np.ndarray
    ppm: np.ndarray
    sw_hz: float
    obs_mhz: float
    carrier_ppm: float
    nucleus: str
    sources: tuple[str, ...]
    phase: tuple[float, float]  # degrees (p0, p1), shared by every acquisition
    snr: np.ndarray  # tallest point over the robust noise std, per acquisition

    def __len__(self) -> int:
        return self.spectra.shape[0]


def _natural_key(p: Path) -> list:
    """Sort experiment folders 2 < 10 (Bruker numbers them)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def is_experiment(p: Path) -> bool:
    """A folder or file that read_fid can open as one acquisition."""
    if p.is_dir():
        return any((p / f).exists() for f in ("acqus", "procpar", "acqu.par"))
    return p.is_file() and p.suffix.lower() in DATA_SUFFIXES


def find_acquisitions(paths: list[str | Path]) -> list[Path]:
    """Acquisitions named directly, or the experiments inside a folder (natural order, none linked in)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(
                f"{p} does not exist; give experiment folders, data files or a folder holding them"
            )
        if is_experiment(p) or p.is_file():
            out.append(p)
            continue
        inside = sorted((c for c in p.iterdir() if is_experiment(c)), key=_natural_key)
        out_of = [c for c in inside if not c.resolve().is_relative_to(p.resolve())]
        if out_of:
            raise InputError(
                f"{out_of[0]} is a link leading out of {p} (to {out_of[0].resolve()}); name the "
                "acquisition itself, or copy it into the folder"
            )
        if not inside:
            raise ValueError(
                f"{p} is not an NMR experiment (no acqus, procpar or acqu.par) and holds none; "
                f"point to the experiment folders or data files ({', '.join(DATA_SUFFIXES)})"
            )
        out.extend(inside)
    return out


def check_members(raws: list[RawFID]) -> None:
    """All acquisitions of a series share length, spectral width, nucleus and carrier."""
    a = raws[0]
    for b in raws[1:]:
        checks = (
            ("length (complex points)", len(a.fid), len(b.fid), 0.0),
            ("spectral width (Hz)", a.sw_hz, b.sw_hz, 1e-6),
            ("spectrometer frequency (MHz)", a.obs_mhz, b.obs_mhz, 1e-6),
            ("carrier (ppm)", a.carrier_ppm, b.carrier_ppm, 1e-3),
        )
        for what, u, v, tol in checks:
            if abs(u - v) > tol * max(abs(u), 1.0):
                raise ValueError(
                    f"{b.source} differs from {a.source} in {what}: {v} vs {u}. A replicate series is one "
                    "sample measured repeatedly with the same parameters; drop the odd acquisition"
                )
        if (
            a.meta.get("nucleus", "") != b.meta.get("nucleus", "")
            and a.meta.get("nucleus")
            and b.meta.get("nucleus")
        ):
            raise ValueError(
                f"{b.source} observes {b.meta['nucleus']}, {a.source} {a.meta['nucleus']}: a replicate "
                "series must observe one nucleus; drop the odd acquisition"
            )


def default_points(n_fid: int) -> int:
    """Power of two holding the FID (zero-fill only up to it; >= 64)."""
    return max(64, 1 << int(np.ceil(np.log2(max(n_fid, 1)))))


def series_phase(
    raws: list[RawFID], specs: list[np.ndarray], n: int, lb_hz: float = PHASE_LB_HZ
) -> tuple[float, float]:
    """One zero- and first-order phase (degrees) for a series: ACME on its noise-weighted, line-broadened sum."""
    # every acquisition in noise units (of its unbroadened spectrum), so the cleanest ones decide
    weights = [1.0 / max(diff_sigma(s.real), 1e-300) for s in specs]
    if lb_hz > 0:
        specs = [raw_spectrum(r, n, lb_hz) for r in raws]
    return auto_phase(sum(w * s for w, s in zip(weights, specs)))


def series_from_fids(
    raws: list[RawFID], n_points: int | None = None, phase: tuple[float, float] | None = None
) -> Series:
    """Process checked FIDs alike: FFT, the shared phase (series_phase unless given), real part."""
    if not raws:
        raise ValueError("no acquisitions given")
    check_members(raws)
    n = n_points or default_points(len(raws[0].fid))
    if n % 16:
        raise ValueError(
            f"n_points={n}: the denoiser needs a multiple of 16 (e.g. {default_points(n)})"
        )
    most = max(2 * MAX_POINTS, default_points(len(raws[0].fid)))
    if n > most:
        raise ValueError(
            f"n_points={n}: more than {most} points, which zero-fill the {len(raws[0].fid)}-point "
            "FIDs to no use and would take memory for nothing; leave n_points at its default"
        )
    if n > 2 * len(raws[0].fid):
        warnings.warn(
            f"n_points={n} zero-fills the {len(raws[0].fid)}-point FIDs {n / len(raws[0].fid):.1f}x: "
            "beyond 2x, neighbouring points share most of their noise, which the shipped model never "
            "saw (it was trained on white noise), and its peak factor falls steeply (docs/nmr.md). "
            "Leave n_points at its default",
            stacklevel=2,
        )
    specs = [raw_spectrum(r, n) for r in raws]
    if phase is None:
        phase = series_phase(raws, specs, n)
    real = np.stack([phased(r, s, phase).real for r, s in zip(raws, specs)])
    return spectra_series(real, ppm_scale(raws[0], n), raws, phase)


def noise_ceiling(n: int, p: float = 0.01) -> float:
    """|max| of n white-noise points (in std) exceeded with probability about p."""
    return float(np.sqrt(2 * np.log(2 * n / p)))


def read_series(
    paths: list[str | Path],
    n_points: int | None = None,
    fmt: str = "auto",
    max_points: int = MAX_POINTS,
) -> Series:
    """Read and process the acquisitions of one sample from experiment folders or data files
    (raw FIDs, arrayed ones row by row, or processed NMRPipe spectra such as .ft files, used as they are);
    each may declare at most max_points complex points (fileio.MAX_POINTS)."""
    files = find_acquisitions(list(paths))
    processed = [is_pipe_spectrum(f) for f in files]
    if not any(processed):
        # an arrayed experiment (Varian array, Bruker ser) brings all its FIDs
        fids = [r for f in files for r in read_fids(f, fmt, max_points)]
        return series_from_fids(fids, n_points)
    if not all(processed):
        raise ValueError(
            f"{[str(f) for f, q in zip(files, processed) if q][:2]} are processed spectra, the others raw "
            "FIDs: give one kind, so that every acquisition is processed alike"
        )
    if n_points:
        raise ValueError("n_points applies to raw FIDs; processed spectra keep their own length")
    got = [read_pipe_spectrum(f, max_points) for f in files]
    raws = [g[0] for g in got]
    check_members(raws)
    return spectra_series(np.stack([g[1] for g in got]), got[0][2], raws, phase=(0.0, 0.0))


def spectra_series(
    real: np.ndarray, ppm: np.ndarray, raws: list[RawFID], phase: tuple[float, float]
) -> Series:
    """A Series of real spectra on one ascending ppm axis, checked for signal and ordered by SNR."""
    for r, x in zip(raws, real):
        if not np.any(x):
            raise ValueError(
                f"{r.source}: the spectrum is all zeros; the acquisition recorded no signal"
            )
    flat = [r.source for r, x in zip(raws, real) if diff_sigma(x) == 0]
    if flat:
        raise InputError(
            f"no lines and no noise in {', '.join(flat[:3])}{' ...' if len(flat) > 3 else ''}: "
            "most of each spectrum is one constant value (a constant FID, a pure DC offset, "
            "gives one spike), so there is no signal above noise to denoise nor noise to measure; "
            "check that these are the measured experiments"
        )
    snr = np.array([spectrum_snr(x) for x in real])
    n = real.shape[-1]
    if snr.max() < noise_ceiling(n):
        raise ValueError(
            f"no signal: the tallest point of the best acquisition is {snr.max():.1f} noise std, which "
            f"white noise of {n} points exceeds by chance 1% of the time ({noise_ceiling(n):.1f}); "
            "check that these are the right experiments, or add a stronger acquisition"
        )
    order = np.argsort(snr, kind="stable")
    a = raws[0]
    return Series(
        spectra=real[order],
        ppm=ppm,
        sw_hz=a.sw_hz,
        obs_mhz=a.obs_mhz,
        carrier_ppm=a.carrier_ppm,
        nucleus=a.meta.get("nucleus", ""),
        sources=tuple(raws[i].source for i in order),
        phase=phase,
        snr=snr[order],
    )


def series_from_arrays(
    data: np.ndarray,
    sw_hz: float,
    obs_mhz: float,
    carrier_ppm: float = 0.0,
    nucleus: str = "",
    n_points: int | None = None,
) -> Series:
    """A series from arrays: complex FIDs [n, m] (processed like files) or real spectra [n, L] (ascending ppm)."""
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"expected [n_acquisitions, n_points], got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError(
            "the arrays contain NaN or infinite values; fix or drop those acquisitions"
        )
    raws = [
        RawFID(
            np.asarray(d, dtype=np.complex128),
            float(sw_hz),
            float(obs_mhz),
            float(carrier_ppm),
            f"array[{i}]",
            meta={"nucleus": nucleus},
        )
        for i, d in enumerate(data)
    ]
    for r in raws:
        check_axis(r)
    if np.iscomplexobj(data):
        return series_from_fids(raws, n_points)
    if n_points and n_points != data.shape[1]:
        raise ValueError(f"real spectra have {data.shape[1]} points; n_points applies to FIDs only")
    return spectra_series(
        data.astype(np.float64), ppm_scale(raws[0], data.shape[1]), raws, phase=(0.0, 0.0)
    )


def with_noise(raw: RawFID, sigma: float, rng: np.random.Generator, name: str) -> RawFID:
    """A copy of a FID with complex white noise of std sigma per component added to its measured points."""
    noise = rng.normal(0.0, sigma, len(raw.fid)) + 1j * rng.normal(0.0, sigma, len(raw.fid))
    return replace(raw, fid=raw.fid + noise, source=name)


def tallest_line(raw: RawFID, n_points: int | None = None) -> float:
    """Height of the tallest point of a FID's processed spectrum (what the SNR of a series refers to)."""
    return float(np.abs(series_from_fids([raw], n_points).spectra[0]).max())


def replicate_fids(
    raw: RawFID,
    snr0: float,
    T: float,
    n_acq: int,
    seed: int,
    n_points: int | None = None,
    height: float | None = None,
) -> list[RawFID]:
    """A replicate series made from one measured FID: acquisition k gets noise so that its tallest
    line (`height`, computed when not given) has SNR snr0 * T**k in the spectrum (noise added to the
    FID, as a real measurement)."""
    if not T > 1:
        raise ValueError(f"T={T}: the SNR must grow between acquisitions, so T must be > 1")
    if n_acq < 2:
        raise ValueError(f"n_acq={n_acq}: a replicate series needs at least two acquisitions")
    if not snr0 > 0:
        raise ValueError(f"snr0={snr0}: give a positive input SNR")
    height = tallest_line(raw, n_points) if height is None else height
    rng = np.random.default_rng(seed)
    # the FFT sums the measured points: per-component noise sigma becomes sigma * sqrt(m) per real point
    sig_t = [height / (snr0 * T**k) / np.sqrt(len(raw.fid)) for k in range(n_acq)]
    return [
        with_noise(raw, s, rng, f"{Path(raw.source).name}+noise[k={k}]")
        for k, s in enumerate(sig_t)
    ]
