"""What an untrusted NMR file may declare, checked before nmrglue reads it (fileio.py reads).

Every acquisition may declare at most max_points complex points (MAX_POINTS unless given, the
readers' max_points= and the CLI's --max-points), read from its headers before any data: the
acqus TD (Bruker), procpar np and the fid file header (Varian), FDSIZE (NMRPipe); JCAMP-DX files
are scanned line by line (jcamp.py). A one-acquisition data file may be no larger than that many
points take, a parameter file no larger than PARAM_BYTES, and the files of an experiment folder
must lie in it (nmrglue looks two folders up for a missing fid; links may lead anywhere).
Refusals are InputErrors naming the file, the problem and the fix.
"""

from __future__ import annotations

from pathlib import Path

import nmrglue as ng
import numpy as np

MAX_POINTS = 2**20  # complex points one acquisition may declare (max_points=, --max-points)
PARAM_BYTES = 2**23  # a parameter file (acqus, procpar, acqu.par) is far smaller than 8 MiB
PIPE_HEADER = 2048  # bytes of an NMRPipe file's header


class InputError(ValueError):
    """Input refused before or while it is read (the message names the file, the problem and the fix)."""


def number(v: object) -> float:
    """A header value as a float (nan when it is none)."""
    try:
        return float(v[0] if isinstance(v, list) and v else v)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def check_points(source: str, field: str, n: float, max_points: int) -> int:
    """A header's count of complex points: a whole number from 1 to max_points, or an InputError."""
    if not (np.isfinite(n) and n >= 1 and n == int(n)):
        raise InputError(
            f"{source}: {field} gives {n} complex points, not a whole number >= 1; the header is "
            "damaged: copy the experiment again from the spectrometer"
        )
    if n > max_points:
        raise InputError(
            f"{source}: {field} declares {int(n)} complex points, more than max_points={max_points} "
            "(the point limit, which bounds memory); check the file, or raise the limit "
            "(max_points=, --max-points) for a genuine acquisition this large"
        )
    return int(n)


def own_file(root: Path, name: str, max_bytes: int | None = None) -> Path:
    """A file of an experiment folder: inside it (no link leading out), at most max_bytes long."""
    path = root / name
    if not path.resolve().is_relative_to(root.resolve()):
        raise InputError(
            f"{path} leads out of the experiment folder (to {path.resolve()}); "
            "copy the file into the folder instead of linking it"
        )
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise InputError(
            f"{path}: {size} bytes, more than its kind of file can hold ({max_bytes}; a FID of "
            "the point limit, max_points, or a parameter file); check the file, or raise the "
            "limit (max_points=, --max-points) for a genuine acquisition this large"
        )
    return path


def check_grpdly(source: str, field: str, grp: float, n: int) -> float:
    """A digital filter's group delay (points): finite and shorter than half the FID."""
    if not np.isfinite(grp) or grp > n / 2:
        raise InputError(
            f"{source}: group delay {field}={grp} is not a delay a digital filter gives a "
            f"{n}-point FID (a few dozen points); the header is damaged: fix {field} or "
            "convert the raw data again"
        )
    return grp


def bruker_sizes(path: Path, max_points: int) -> str:
    """A Bruker folder's acqus TD and GRPDLY, and its files' places and sizes; its data file's name."""
    for name in ("acqus", "acqu2s", "acqu3s", "acqu4s"):
        if (path / name).exists():
            own_file(path, name, PARAM_BYTES)
    # nmrglue looks two folders up for a missing fid: the data must be in the experiment's folder
    data_file = next((b for b in ("fid", "ser") if (path / b).is_file()), None)
    if data_file is None:
        raise InputError(
            f"{path} has an acqus but no fid or ser file; copy the whole experiment folder"
        )
    a = ng.bruker.read_jcamp(str(path / "acqus"))
    cplx = a.get("AQ_mod", 0) in (1, 3)
    n = check_points(f"{path}/acqus", "TD", number(a.get("TD")) / (2 if cplx else 1), max_points)
    # a 1D fid holds one acquisition: real and imaginary float64 at most, in 1 KB blocks
    own_file(path, data_file, 16 * max_points + 1024 if data_file == "fid" else None)
    if "GRPDLY" in a:
        check_grpdly(f"{path}/acqus", "GRPDLY", number(a["GRPDLY"]), n)
    return data_file


def varian_sizes(path: Path, max_points: int) -> None:
    """procpar's np and the fid file header's sizes, checked before the data are read."""
    pp = ng.varian.read_procpar(str(own_file(path, "procpar", PARAM_BYTES)))
    np_ = number(pp.get("np", {}).get("values", [None])) if isinstance(pp.get("np"), dict) else 0
    check_points(f"{path}/procpar", "np/2", np_ / 2, max_points)
    fid = path / "fid"
    if not fid.is_file():
        raise InputError(f"{path} has a procpar but no fid file; copy the whole experiment folder")
    size = own_file(path, "fid").stat().st_size
    with fid.open("rb") as f:
        if size < 32:
            raise InputError(f"{fid}: {size} bytes, shorter than its 32-byte header: truncated")
        h = ng.varian.fileheader2dic(ng.varian.get_fileheader(f))
    check_points(str(fid), "the file header's np/2", h["np"] / 2, max_points)
    block = h["nbheaders"] * 28 + h["ntraces"] * h["np"] * h["ebytes"]
    if min(h["nblocks"], h["ntraces"], h["nbheaders"]) < 0 or h["ebytes"] not in (2, 4, 8):
        block = -1
    if not 0 < 32 + h["nblocks"] * block <= size:
        raise InputError(
            f"{fid}: its header declares {h['nblocks']} blocks of {h['ntraces']} traces of "
            f"{h['np']} {h['ebytes']}-byte values, which the file's {size} bytes do not hold: the "
            "file is truncated or its header damaged; copy the experiment again"
        )


def pipe_header(path: Path, max_points: int) -> dict:
    """An NMRPipe file's header, its size (FDSIZE) checked against max_points and the file's length."""
    size = path.stat().st_size
    if size < PIPE_HEADER:  # not NMRPipe at all, most likely: the caller names the format
        raise ValueError(f"{size} bytes, shorter than an NMRPipe header ({PIPE_HEADER})")
    dic = ng.pipe.fdata2dic(ng.pipe.get_fdata(str(path)))
    if dic["FDDIMCOUNT"] not in (1.0, 2.0):
        raise InputError(
            f"{path}: FDDIMCOUNT={dic['FDDIMCOUNT']}, not a 1D or 2D NMRPipe file; "
            "extract the 1D FIDs (or spectra) first"
        )
    check_points(str(path), "FDSIZE", dic["FDSIZE"], max_points)
    if dic["FDDIMCOUNT"] == 1 and size > PIPE_HEADER + 8 * max_points:
        raise InputError(
            f"{path}: {size} bytes, more than a 1D NMRPipe file of max_points={max_points} "
            "points holds; the file is damaged: convert the raw data again"
        )
    return dic
