"""Atomic file writes and checksum checks: nothing half-written, nothing unverified."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def current_umask() -> int:
    """The process umask, read from /proc where possible (setting it to read it races with threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(path: Path) -> int:
    """Mode for a rewritten file: the old file's, else what `open()` would give under the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then rename over `path`; a failure leaves the old file intact.

    The result gets the user's umask like a plainly written file (mkstemp alone makes it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text atomically."""
    return atomic_write(path, lambda p: p.write_text(text))


def file_digest(path: str | Path, algo: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_digest(path: str | Path, expected: str, algo: str = "md5") -> None:
    """Raise if the file's digest differs from `expected`, naming the file and the fix."""
    got = file_digest(path, algo)
    if got != expected:
        raise ValueError(
            f"checksum mismatch for {path}: {algo} {got}, expected {expected}. "
            "The file is corrupt or not the expected release; delete it and download it again."
        )


def write_text_no_clobber(path: str | Path, text: str, overwrite: bool = False) -> str:
    """Write `text` unless a different file is already there; returns 'written', 'unchanged'.

    A differing existing file is never replaced silently: pass overwrite=True to replace it.
    """
    path = Path(path)
    if path.exists():
        if path.read_text() == text:
            return "unchanged"
        if not overwrite:
            raise FileExistsError(
                f"{path} exists with different content; move it away or pass overwrite=True to replace it"
            )
    atomic_write_text(path, text)
    return "written"


def markdown_table(df, digits: int | None = None, index: bool = False) -> str:
    """A pandas DataFrame as a Markdown table (tabulate is not a dependency); floats to `digits` significant."""
    if index:
        df = df.reset_index()
    fmt = (lambda v: f"{v:.{digits}g}" if isinstance(v, float) else str(v)) if digits else str
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
