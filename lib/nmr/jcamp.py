"""JCAMP-DX FIDs read with bounded memory (fileio.py turns them into RawFIDs).

nmrglue's reader expands compressed (ASDF) data lines into Python lists as it parses them: one
DUP count such as `0AU0000000` repeats a value 30 million times. So the file is scanned first,
line by line, and refused as soon as a data table's running point count passes the limit or
its declared size (VAR_DIM, NPOINTS) by more than MARGIN; the header's sizes ($TD, VAR_DIM,
NPOINTS) are checked against the limit before any data line, and the file's size before that.
Values that are not finite numbers (`nan`, `inf`, `?`) are errors, not silently dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

import nmrglue as ng
import numpy as np

from .limits import InputError

MARGIN = 16  # points a data table may hold beyond its declared size
BYTES_PER_VALUE = 48  # the most text one value takes in an uncompressed table (its X included)
HEADER_BYTES = 2**24  # parameters, comments and audit trail around the data
TABLES = 4  # data tables' worth of points a file may hold in all (a FID and a spectrum, R and I)

_DATA_KEYS = ("DATATABLE", "XYDATA")
_SQZ, _DIF, _DUP = "@ABCDEFGHIabcdefghi", "%JKLMNOPQRjklmnopqr", "STUVWXYZs"
# nmrglue's first-value patterns: with an exponent to detect the form, without in compressed lines
_FIRST = re.compile(r"\s*([+-]?\d+\.?\d*|[+-]?\.\d+)([eE][+-]?\d+)?\s*")
_X = re.compile(r"\s*([+-]?\d+\.?\d*|[+-]?\.\d+)")
_AFFN = re.compile(r"(\s|,)*([+-]?\d+\.?\d*|[+-]?\.\d+)([eE][+-]?\d+)?")
_PSEUDO = _SQZ + _DIF + _DUP
_TOKEN = re.compile(r"([@%A-Za-s])([0-9.]*)|\s+|(.)")
_NONFINITE = re.compile(r"(?i)(?<=[\s,;])[+-]?(nan|inf(inity)?|\?)(?=$|[\s,;])")


class JcampError(InputError):
    """A JCAMP-DX file refused before nmrglue parses it (the message names the file and the fix)."""


def _key(text: str) -> str:
    """A label as nmrglue normalizes it: upper case, no spaces, dashes, slashes or underscores."""
    return re.sub(r"[\s\-_/]", "", text.upper())


class _Table:
    """The running point count of one data table, as nmrglue will expand it."""

    def __init__(self, where: str, bound: int, why: str, total: list[int], header: bool):
        self.where, self.bound, self.why, self.total = where, bound, why, total
        self.header = header  # the (X++(Y..Y)) line still to come (a label with no value)
        self.count, self.pseudo = 0, None
        self.prev, self.dup = "", False  # the kind of the last value; whether a DUP followed it

    def _fail(self, lineno: int, what: str) -> JcampError:
        return JcampError(f"{self.where}, line {lineno}: {what}; export the FID again")

    def _add(self, k: int, lineno: int) -> None:
        self.count += k
        self.total[0] += k
        if self.count > self.bound:
            raise self._fail(
                lineno,
                f"the data table expands to more than {self.bound} points ({self.why}): its "
                "compressed data (DUP repeat counts) or its declared size are damaged",
            )
        if self.total[0] > self.total[1]:
            raise self._fail(
                lineno, f"the data tables expand to more than {self.total[1]} points in all"
            )

    def add(self, line: str, lineno: int) -> None:
        """Count one data line's points (nmrglue drops its X value and DIF checkpoints)."""
        if self.header:
            self.header = False
            return
        bad = _NONFINITE.search(line)
        if bad:
            raise self._fail(lineno, f"{bad.group(0).strip()!r} is not a finite number")
        if self.pseudo is None:
            m = _FIRST.match(line)
            c = line[m.end() : m.end() + 1] if m is not None else ""
            self.pseudo = c != "" and c in _PSEUDO
        m = (_X if self.pseudo else _FIRST).match(line)
        if m is None:
            raise self._fail(lineno, f"a data line must start with its X value: {line[:30]!r}")
        if not self.pseudo:
            rest = _AFFN.sub("", line).strip(" \t\r\n,")
            if rest:
                raise self._fail(lineno, f"{rest[:20]!r} is not a number")
            self._add(max(len(_AFFN.findall(line)) - 1, 0), lineno)
            return
        first = True
        for t in _TOKEN.finditer(line, m.end()):
            char, digits, other = t.groups()
            if other is not None:
                raise self._fail(lineno, f"{other!r} is no compressed (ASDF) digit")
            if char is None:
                continue  # whitespace
            if char in _DUP:
                if not self.prev or self.dup:
                    raise self._fail(lineno, "a DUP repeat count without a value before it")
                if "." in digits:
                    raise self._fail(lineno, f"DUP count {char + digits!r} is not a whole number")
                # 18 digits pass any limit (and int() refuses thousands of digits)
                count = int(str(_DUP.index(char) + 1) + digits) if len(digits) < 18 else 10**18
                self._add(count - 1, lineno)
                self.dup = True
            else:
                # the first value of a line after a DIF one repeats it (the Y check): not stored
                self._add(0 if first and self.prev == "dif" else 1, lineno)
                self.prev, self.dup = ("dif" if char in _DIF else "sqz"), False
            first = False


def _sizes(text: str) -> list[float]:
    """The numbers of a header value ('8192, 8192, 8192'); a damaged one gives nan, none []."""
    out = []
    for part in filter(str.strip, text.split(",")):
        try:
            out.append(float(part.strip()))
        except ValueError:
            out.append(float("nan"))
    return out


def scan(path: Path, max_points: int) -> None:
    """Refuse a JCAMP-DX file whose size, declared sizes or data lines pass the point limit."""
    size = path.stat().st_size
    cap = BYTES_PER_VALUE * 2 * max_points + HEADER_BYTES
    if size > cap:
        raise JcampError(
            f"{path}: {size / 2**20:.0f} MiB, more than a JCAMP-DX FID of max_points={max_points} "
            f"complex points takes ({cap / 2**20:.0f} MiB); check the file, or raise the limit "
            "(max_points=, --max-points) for a genuine acquisition this large"
        )
    declared: int | None = None
    table: _Table | None = None
    total = [0, TABLES * max_points]  # points counted in all tables, their bound
    with path.open("r", encoding="utf-8-sig", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            actual = line.split("$$", 1)[0]
            if not actual.strip():
                continue
            if not actual.lstrip().startswith("##"):
                if table is not None:
                    table.add(actual, lineno)
                continue
            label, _, value = actual.lstrip()[2:].partition("=")
            key, table = _key(label), None
            if key == "TITLE":
                declared = None
            elif key in ("VARDIM", "NPOINTS", "$TD"):
                # $TD counts real and imaginary points; VAR_DIM and NPOINTS complex ones
                per = 2 if key == "$TD" else 1
                for n in _sizes(value):
                    if not (np.isfinite(n) and n >= 0):
                        raise JcampError(
                            f"{path}, line {lineno}: ##{label.strip()}= {value.strip()!r} is no "
                            "point count; the header is damaged: export the FID again"
                        )
                    if n / per > max_points:
                        raise JcampError(
                            f"{path}: ##{label.strip()}= declares {n / per:.0f} complex points, "
                            f"more than max_points={max_points} (the point limit, which bounds "
                            "memory); check the file, or raise the limit (max_points=, "
                            "--max-points) for a genuine acquisition this large"
                        )
                if key != "$TD" and _sizes(value):
                    declared = int(max(_sizes(value)))
            elif key in _DATA_KEYS:
                bound, why = max_points, f"max_points={max_points}"
                if declared is not None and declared + MARGIN < max_points:
                    bound, why = declared + MARGIN, f"{declared} declared, plus {MARGIN}"
                table = _Table(str(path), bound, why, total, not value.strip())


def read_jcamp(path: Path, max_points: int) -> tuple[dict, np.ndarray]:
    """A JCAMP-DX FID's parameters and complex points, scanned (`scan`) before nmrglue reads it."""
    scan(path, max_points)
    dic, data = ng.jcampdx.read(str(path))
    if not isinstance(data, list) or len(data) != 2 or any(d is None for d in data):
        raise JcampError(
            f"{path}: JCAMP-DX file without real and imaginary FID parts; export the raw FID"
        )
    re_, im = (np.asarray(d, dtype=np.float64) for d in data)
    if len(re_) != len(im):
        raise JcampError(
            f"{path}: {len(re_)} real but {len(im)} imaginary points; the file is damaged "
            "(a value missing from a data line?): export the FID again"
        )
    return dic, re_ + 1j * im
