"""Real 1D spectra read with nmrglue (Bruker, Varian, NMRPipe, JCAMP-DX) into the workbook's form.

A raw FID becomes a real spectrum of n_points (zero-filled or truncated), Bruker digital
filter removed, Fourier transformed with nmrglue, phased automatically (ACME) and given an
ascending ppm axis, like the simulator's output. The ppm axis is referenced on the carrier
(O1 / spectrometer frequency), without the fine SR correction.

Untrusted files are checked before nmrglue reads them (limits.py, jcamp.py): every acquisition
may declare at most max_points complex points (MAX_POINTS, 2**20, unless given).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import nmrglue as ng
import numpy as np

from .jcamp import read_jcamp, scan
from .limits import (
    MAX_POINTS,
    PARAM_BYTES,
    InputError,
    bruker_sizes,
    check_grpdly,
    own_file,
    pipe_header,
    varian_sizes,
)

FORMATS = ("bruker", "varian", "pipe", "jcampdx", "spinsolve")
# what nmrglue raises on a file it cannot parse (ValueError aside)
READ_ERRORS = (OSError, KeyError, IndexError, TypeError, EOFError, ZeroDivisionError, OverflowError)
# where each format keeps the spectral width and the spectrometer frequency, for the messages
AXIS_FIELDS = {
    "bruker": ("SW_h", "SFO1", "the acqus (it is the acquisition's, e.g. SFO1= 400.13)"),
    "jcampdx": ("##$SWH", "##$SFO1", "the JCAMP-DX header (e.g. ##$SFO1= 400.13)"),
    "varian": ("sw", "sfrq", "the procpar"),
    "pipe": ("FDF2SW", "FDF2OBS", "the NMRPipe header (MHz; bruk2pipe or var2pipe -xOBS)"),
    "spinsolve": ("bandwidth", "b1Freq", "the acqu.par"),
}


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
        if (path / "acqu.par").exists():
            return "spinsolve"
        raise ValueError(
            f"{path}: a directory without 'acqus' (Bruker), 'procpar' (Varian) or 'acqu.par' "
            "(Spinsolve); point to the experiment directory or pass fmt="
        )
    if path.suffix.lower() in (".dx", ".jdx", ".jcamp"):
        return "jcampdx"
    return "pipe"


def _first(d: dict, key: str) -> float:
    return float(d[key][0] if isinstance(d[key], list) else d[key])


def _nucleus(text: object) -> str:
    """'<1H>', '^1H', ['1H'] -> '1H' ('' when unknown)."""
    t = text[0] if isinstance(text, list) and text else text
    return str(t or "").strip().strip("<>^ ")


class AxisError(InputError):
    """A file read fine but lacks what the ppm axis needs (its message names the file and the fix)."""


def check_axis(raw: RawFID) -> RawFID:
    """The spectral width and spectrometer frequency must be positive and finite (the ppm axis needs both)."""
    sw, obs, where = raw.meta.get("axis_fields", AXIS_FIELDS["bruker"])
    for name, v, key in (
        ("spectral width", raw.sw_hz, sw),
        ("spectrometer frequency", raw.obs_mhz, obs),
    ):
        if not (np.isfinite(v) and v > 0):
            raise AxisError(
                f"{raw.source}: {name} is {v} ({key}); the ppm axis needs a positive value: "
                f"fix {key} in {where}"
            )
    return raw


def _read_jcamp(path: Path, max_points: int) -> RawFID:
    dic, fid = read_jcamp(path, max_points)
    if "$DECIM" in dic and "$DSPFVS" in dic:
        grp = _first(dic, "$GRPDLY") if "$GRPDLY" in dic else -1.0
        grp = check_grpdly(str(path), "##$GRPDLY", grp, len(fid))
        fid = ng.bruker.rm_dig_filter(fid, _first(dic, "$DECIM"), int(_first(dic, "$DSPFVS")), grp)
    obs = _first(dic, "$SFO1") if "$SFO1" in dic else _first(dic, ".OBSERVEFREQUENCY")
    nuc = _nucleus(dic.get("$NUC1", dic.get(".OBSERVENUCLEUS", "")))
    car = _first(dic, "$O1") / obs if "$O1" in dic and obs > 0 else 4.7
    return RawFID(
        fid,
        _first(dic, "$SWH"),
        obs,
        car,
        str(path),
        bruker_order="$DECIM" in dic,
        meta={"nucleus": nuc, "axis_fields": AXIS_FIELDS["jcampdx"]},
    )


def _read_bruker(path: Path, max_points: int) -> RawFID:
    data_file = bruker_sizes(path, max_points)
    dic, data = ng.bruker.read(
        str(path), bin_file=data_file, read_pulseprogram=False, read_procs=False
    )
    data = ng.bruker.remove_digital_filter(dic, data)
    a = dic["acqus"]
    missing = [k for k in ("SW_h", "SFO1", "O1") if k not in a]
    if missing:
        raise AxisError(
            f"{path}/acqus has no {', '.join(missing)}; the ppm axis needs them: fix the acqus "
            "(copy it from the spectrometer's experiment folder)"
        )
    obs = float(a["SFO1"])
    car = float(a["O1"]) / obs if obs > 0 else float("nan")
    return RawFID(
        np.asarray(data),
        float(a["SW_h"]),
        obs,
        car,
        str(path),
        bruker_order=True,
        meta={"nucleus": _nucleus(a.get("NUC1", ""))},
    )


def _procpar(pp: dict, key: str) -> float:
    """First value of a Varian/Agilent procpar parameter (AxisError naming it when missing)."""
    try:
        return float(pp[key]["values"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        raise AxisError(
            f"procpar has no usable {key!r}; the ppm axis needs sw (Hz) and sfrq (MHz): copy the "
            "experiment's procpar from the spectrometer"
        ) from None


def _read_varian(path: Path, max_points: int) -> RawFID:
    # nmrglue's guess_udic leaves Varian's spectral width and frequency at placeholders: read procpar
    varian_sizes(path, max_points)
    dic, data = ng.varian.read(str(path))
    pp = dic.get("procpar", {})
    sw, sfrq = _procpar(pp, "sw"), _procpar(pp, "sfrq")
    # VnmrJ references through reffrq (the frequency of 0 ppm): the carrier sits at (sfrq/reffrq - 1) 1e6
    ref = float(pp["reffrq"]["values"][0]) if "reffrq" in pp else 0.0
    car = 1e6 * (sfrq - ref) / ref if ref > 0 else 0.0
    tn = str(pp.get("tn", {}).get("values", [""])[0])  # 'H1', 'C13', 'P31'
    nuc = re.sub(r"^([A-Za-z]+)(\d+)$", r"\2\1", tn)
    return RawFID(
        np.asarray(data),
        sw,
        sfrq,
        car,
        str(path),
        meta={"nucleus": nuc, "referenced": ref > 0, "axis_fields": AXIS_FIELDS["varian"]},
    )


def _from_udic(path: Path, module, dic: dict, data: np.ndarray, fields: tuple) -> RawFID:
    udic = module.guess_udic(dic, data)[0]
    obs = float(udic["obs"])
    return RawFID(
        np.asarray(data),
        float(udic["sw"]),
        obs,
        float(udic["car"]) / obs if obs > 0 else float("nan"),
        str(path),
        meta={"nucleus": _nucleus(udic.get("label", "")), "axis_fields": fields},
    )


def _read_spinsolve(path: Path, max_points: int) -> RawFID:
    for name in ("acqu.par", "proc.par"):
        if (path / name).exists():
            own_file(path, name, PARAM_BYTES)
    # the data file nmrglue picks: a JCAMP-DX FID is scanned, a .1d file holds x, re and im
    for name in ("nmr_fid.dx", "data.1d", "fid.1d", "spectrum.1d", "spectrum_processed.1d"):
        if (path / name).is_file():
            if name.endswith(".dx"):
                scan(own_file(path, name), max_points)
            else:
                own_file(path, name, 12 * max_points + 32)
            break
    dic, data = ng.spinsolve.read(str(path))
    return _from_udic(path, ng.spinsolve, dic, data, AXIS_FIELDS["spinsolve"])


def _read_pipe(path: Path, max_points: int) -> RawFID:
    pipe_header(path, max_points)
    # read as bytes: nmrglue takes a '%' in a file name for a file mask (other files)
    dic, data = ng.pipe.read(path.read_bytes())
    raw = _from_udic(path, ng.pipe, dic, data, AXIS_FIELDS["pipe"])
    grp = float(dic.get("FDDMXVAL", 0.0))
    # bruk2pipe keeps a Bruker FID's digital filter and records its group delay (points) for
    # nmrPipe's FT to undo (FDDMXFLAG -1: off). Dropping the whole points it delays the FID by
    # works in either sign convention; the fraction left is a first-order phase the autophase finds
    used = dic.get("FDDMXFLAG", 0.0) != -1 and dic.get("FDF2FTFLAG", 0.0) == 0
    if not np.isfinite(grp) or (used and grp < 0):
        raise InputError(
            f"{path}: FDDMXVAL={grp} (the group delay of the digital filter, in points) is not a "
            "number >= 0; fix FDDMXVAL in the NMRPipe header or convert the raw data again"
        )
    if used and grp >= 1:
        check_grpdly(str(path), "FDDMXVAL", grp, raw.fid.shape[-1])
        raw = replace(raw, fid=raw.fid[..., int(np.floor(grp)) :], meta={**raw.meta, "grpdly": grp})
    return raw


def _read_any(path: Path, fmt: str, max_points: int = MAX_POINTS) -> RawFID:
    """One file or experiment as nmrglue reads it (its FID may be 2-D: an arrayed experiment)."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; give the experiment directory or the data file"
        )
    fmt = guess_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS} or 'auto'")
    readers = {
        "bruker": _read_bruker,
        "jcampdx": _read_jcamp,
        "varian": _read_varian,
        "pipe": _read_pipe,
        "spinsolve": _read_spinsolve,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nmrglue warns about every empty JCAMP key
            raw = readers[fmt](path, max_points)
    except InputError:
        raise  # already names the file and the fix
    except ValueError as e:
        raise ValueError(
            f"nmrglue could not read {path} as {fmt}: {e}. "
            "Check the format (fmt=) and that the file is a complete 1D raw FID"
        ) from e
    except READ_ERRORS as e:
        raise ValueError(
            f"nmrglue could not read {path} as {fmt}: {type(e).__name__}: {e}. "
            "Check the format (fmt=) and that the file is a complete 1D raw FID"
        ) from e
    return raw


def _checked(raw: RawFID) -> RawFID:
    """A 1-D complex FID with finite, not all-zero, not constant points and a usable axis."""
    if raw.fid.ndim != 1 or not np.iscomplexobj(raw.fid):
        raise ValueError(
            f"{raw.source}: expected a 1D complex FID, got shape {raw.fid.shape} dtype "
            f"{raw.fid.dtype}; an arrayed experiment is read by read_fids (one FID per row)"
        )
    if not np.isfinite(raw.fid).all():
        raise ValueError(f"{raw.source}: the FID contains NaN or infinite values")
    if not np.any(raw.fid):
        raise ValueError(
            f"{raw.source}: the FID is all zeros; the acquisition recorded no signal (check the experiment)"
        )
    if len(raw.fid) > 1 and np.ptp(raw.fid.real) == 0 and np.ptp(raw.fid.imag) == 0:
        raise InputError(
            f"{raw.source}: every point of the FID is {raw.fid[0]}: a constant (a pure DC offset) "
            "holds no lines and no noise; the acquisition recorded no signal (check the experiment)"
        )
    return check_axis(raw)


def read_fid(path: str | Path, fmt: str = "auto", max_points: int = MAX_POINTS) -> RawFID:
    """Read a 1D FID; unreadable, unsupported or oversized input raises ValueError naming the file."""
    return _checked(_read_any(Path(path), fmt, max_points))


def read_fids(path: str | Path, fmt: str = "auto", max_points: int = MAX_POINTS) -> list[RawFID]:
    """The FIDs of one file or experiment: one, or every row of an arrayed one (Varian array, Bruker ser)."""
    raw = _read_any(Path(path), fmt, max_points)
    if raw.fid.ndim != 2:
        return [_checked(raw)]
    return [
        _checked(replace(raw, fid=row, source=f"{raw.source}[{i}]", meta=dict(raw.meta)))
        for i, row in enumerate(raw.fid)
    ]


def fid_length(fid: np.ndarray, n_points: int) -> np.ndarray:
    """Zero-fill or truncate a FID to n_points."""
    out = np.zeros(n_points, dtype=np.complex128)
    m = min(n_points, len(fid))
    out[:m] = fid[:m]
    return out


def raw_spectrum(raw: RawFID, n_points: int = 8192, lb_hz: float = 0.0) -> np.ndarray:
    """Unphased complex spectrum in nmrglue's order (nmrglue FFT, first point halved)."""
    fid = fid_length(raw.fid, n_points)
    if lb_hz > 0:
        fid = ng.proc_base.em(fid, lb=lb_hz / raw.sw_hz)
    fid[0] *= 0.5
    return ng.proc_base.fft(fid)


def auto_phase(spec: np.ndarray) -> tuple[float, float]:
    """Zero- and first-order phase (degrees) by ACME on a complex spectrum."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, (p0, p1) = ng.proc_autophase.autops(spec, "acme", disp=False, return_phases=True)
    return float(p0), float(p1)


def ppm_scale(raw: RawFID, n_points: int) -> np.ndarray:
    """Ascending ppm axis of a spectrum of n_points (nmrglue's unit conversion)."""
    uc = ng.fileiobase.unit_conversion(
        n_points, True, raw.sw_hz, raw.obs_mhz, raw.carrier_ppm * raw.obs_mhz
    )
    return uc.ppm_scale()[::-1]


def phased(raw: RawFID, spec: np.ndarray, phase: tuple[float, float]) -> np.ndarray:
    """Apply a phase and put the points in ascending ppm (nmrglue orders by descending ppm)."""
    spec = ng.proc_base.ps(spec, p0=phase[0], p1=phase[1])
    if raw.bruker_order:
        spec = ng.proc_base.rev(spec)
    return spec[::-1]


def complex_spectrum(
    raw: RawFID, n_points: int = 8192, lb_hz: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Phased complex spectrum (nmrglue FFT, ACME autophase) and its ascending ppm axis."""
    spec = raw_spectrum(raw, n_points, lb_hz)
    return phased(raw, spec, auto_phase(spec)), ppm_scale(raw, n_points)


def read_spectrum(
    path: str | Path, n_points: int = 8192, fmt: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Real spectrum [n_points] and ppm axis of a raw FID file or directory."""
    spec, ppm = complex_spectrum(read_fid(path, fmt), n_points)
    return spec.real.astype(np.float64), ppm


def write_pipe(raw: RawFID, path: str | Path, overwrite: bool = False) -> Path:
    """Write a FID as an NMRPipe .fid file (sw, spectrometer frequency, carrier and nucleus kept).

    Bruker-ordered FIDs are stored conjugated, so that NMRPipe's ordering needs no reversal.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another folder or pass overwrite")
    udic = ng.fileiobase.create_blank_udic(1)
    udic[0].update(
        size=len(raw.fid),
        complex=True,
        encoding="direct",
        sw=raw.sw_hz,
        obs=raw.obs_mhz,
        car=raw.carrier_ppm * raw.obs_mhz,
        label=raw.meta.get("nucleus", "") or "1H",
        time=True,
        freq=False,
    )
    data = np.conj(raw.fid) if raw.bruker_order else raw.fid
    path.parent.mkdir(parents=True, exist_ok=True)
    ng.pipe.write(str(path), ng.pipe.create_dic(udic), data.astype(np.complex64), overwrite=True)
    return path


def is_pipe_spectrum(path: str | Path) -> bool:
    """An NMRPipe file holding a processed (frequency-domain, real) spectrum, e.g. a .ft file."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in (".dx", ".jdx", ".jcamp"):
        return False
    try:
        dic = ng.pipe.fdata2dic(ng.pipe.get_fdata(str(path)))  # the 2 KB header only
    except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError):
        return False
    return float(dic.get("FDF2FTFLAG", 0)) == 1.0


def read_pipe_spectrum(
    path: str | Path, max_points: int = MAX_POINTS
) -> tuple[RawFID, np.ndarray, np.ndarray]:
    """A processed NMRPipe spectrum: (its parameters as a RawFID without FID, real spectrum, ppm), ascending ppm."""
    path = Path(path)
    try:
        pipe_header(path, max_points)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dic, data = ng.pipe.read(path.read_bytes())
            udic = ng.pipe.guess_udic(dic, data)[0]
            ppm = ng.pipe.make_uc(dic, data).ppm_scale()
    except InputError:
        raise
    except (ValueError, *READ_ERRORS) as e:
        raise ValueError(
            f"nmrglue could not read {path} as an NMRPipe spectrum: {type(e).__name__}: {e}"
        ) from e
    if data.ndim != 1:
        raise ValueError(
            f"{path}: expected a 1D spectrum, got shape {data.shape}; extract one row first"
        )
    y = np.asarray(data.real, dtype=np.float64)
    if not np.isfinite(y).all():
        raise ValueError(f"{path}: the spectrum contains NaN or infinite values")
    obs = float(udic["obs"])
    raw = check_axis(
        RawFID(
            np.zeros(len(y), dtype=np.complex128),
            float(udic["sw"]),
            obs,
            float(udic["car"]) / obs if obs > 0 else float("nan"),
            str(path),
            meta={"nucleus": _nucleus(udic.get("label", "")), "processed": True},
        )
    )
    order = np.argsort(ppm)
    return raw, y[order], ppm[order]
