"""Real 1D spectra read with nmrglue (Bruker, Varian, NMRPipe, JCAMP-DX) into the workbook's form.

A raw FID becomes a real spectrum of n_points (zero-filled or truncated), Bruker digital
filter removed, Fourier transformed with nmrglue, phased automatically (ACME) and given an
ascending ppm axis, like the simulator's output. The ppm axis is referenced on the carrier
(O1 / spectrometer frequency), without the fine SR correction.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nmrglue as ng
import numpy as np

FORMATS = ("bruker", "varian", "pipe", "jcampdx")


@dataclass
class RawFID:
    """A complex FID with what is needed to put it on a ppm axis."""

    fid: np.ndarray
    sw_hz: float
    obs_mhz: float
    carrier_ppm: float
    source: str
    bruker_order: bool = False  # Bruker quadrature: the FFT output must be reversed (nmrglue's rev)
    meta: dict = field(default_factory=dict)


def guess_format(path: Path) -> str:
    """Format from the path: Bruker/Varian directories, JCAMP-DX or NMRPipe files."""
    if path.is_dir():
        if (path / "acqus").exists():
            return "bruker"
        if (path / "procpar").exists():
            return "varian"
        raise ValueError(f"{path}: a directory without 'acqus' (Bruker) or 'procpar' (Varian); "
                         "point to the experiment directory or pass fmt=")
    if path.suffix.lower() in (".dx", ".jdx", ".jcamp"):
        return "jcampdx"
    return "pipe"


def _first(d: dict, key: str) -> float:
    return float(d[key][0] if isinstance(d[key], list) else d[key])


def _read_jcamp(path: Path) -> RawFID:
    dic, data = ng.jcampdx.read(str(path))
    if not isinstance(data, list) or len(data) != 2:
        raise ValueError(f"{path}: JCAMP-DX file without real and imaginary FID parts; export the raw FID")
    fid = np.asarray(data[0]) + 1j * np.asarray(data[1])
    if "$DECIM" in dic and "$DSPFVS" in dic:
        grp = _first(dic, "$GRPDLY") if "$GRPDLY" in dic else -1.0
        fid = ng.bruker.rm_dig_filter(fid, _first(dic, "$DECIM"), int(_first(dic, "$DSPFVS")), grp)
    obs = _first(dic, "$SFO1") if "$SFO1" in dic else _first(dic, ".OBSERVEFREQUENCY")
    return RawFID(fid, _first(dic, "$SWH"), obs, _first(dic, "$O1") / obs if "$O1" in dic else 4.7, str(path),
                  bruker_order="$DECIM" in dic)


def _read_bruker(path: Path) -> RawFID:
    dic, data = ng.bruker.read(str(path))
    data = ng.bruker.remove_digital_filter(dic, data)
    a = dic["acqus"]
    return RawFID(np.asarray(data), float(a["SW_h"]), float(a["SFO1"]), float(a["O1"]) / float(a["SFO1"]), str(path),
                  bruker_order=True)


def _read_udic(path: Path, module) -> RawFID:
    dic, data = module.read(str(path))
    udic = module.guess_udic(dic, data)[0]
    return RawFID(np.asarray(data), float(udic["sw"]), float(udic["obs"]), float(udic["car"]) / float(udic["obs"]),
                  str(path))


def read_fid(path: str | Path, fmt: str = "auto") -> RawFID:
    """Read a 1D FID; unreadable or unsupported input raises ValueError naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give the experiment directory or the data file")
    fmt = guess_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS} or 'auto'")
    readers = {"bruker": _read_bruker, "jcampdx": _read_jcamp,
               "varian": lambda p: _read_udic(p, ng.varian), "pipe": lambda p: _read_udic(p, ng.pipe)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nmrglue warns about every empty JCAMP key
            raw = readers[fmt](path)
    except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError) as e:
        raise ValueError(f"nmrglue could not read {path} as {fmt}: {type(e).__name__}: {e}. "
                         "Check the format (fmt=) and that the file is a complete 1D raw FID") from e
    if raw.fid.ndim != 1 or not np.iscomplexobj(raw.fid):
        raise ValueError(f"{path}: expected a 1D complex FID, got shape {raw.fid.shape} dtype {raw.fid.dtype}")
    if not np.isfinite(raw.fid).all():
        raise ValueError(f"{path}: the FID contains NaN or infinite values")
    return raw


def fid_length(fid: np.ndarray, n_points: int) -> np.ndarray:
    """Zero-fill or truncate a FID to n_points."""
    out = np.zeros(n_points, dtype=np.complex128)
    m = min(n_points, len(fid))
    out[:m] = fid[:m]
    return out


def complex_spectrum(raw: RawFID, n_points: int = 8192, lb_hz: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Phased complex spectrum (nmrglue FFT, ACME autophase) and its ascending ppm axis."""
    fid = fid_length(raw.fid, n_points)
    if lb_hz > 0:
        fid = ng.proc_base.em(fid, lb=lb_hz / raw.sw_hz)
    fid[0] *= 0.5
    spec = ng.proc_base.fft(fid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = ng.proc_autophase.autops(spec, "acme", disp=False)
    if raw.bruker_order:
        spec = ng.proc_base.rev(spec)
    uc = ng.fileiobase.unit_conversion(n_points, True, raw.sw_hz, raw.obs_mhz, raw.carrier_ppm * raw.obs_mhz)
    # nmrglue orders points by descending ppm; the workbook uses ascending like the simulator
    return spec[::-1], uc.ppm_scale()[::-1]


def read_spectrum(path: str | Path, n_points: int = 8192, fmt: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Real spectrum [n_points] and ppm axis of a raw FID file or directory."""
    spec, ppm = complex_spectrum(read_fid(path, fmt), n_points)
    return spec.real.astype(np.float64), ppm
