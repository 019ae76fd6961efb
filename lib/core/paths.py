"""Repository paths, resolved from this file so notebooks work from any working directory."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO_ROOT / "notebooks"
PROFILES = REPO_ROOT / "env" / "profiles"
DATA_TXT = REPO_ROOT / "data_txt"
RUNS = REPO_ROOT / "runs"


def repo_path(p: str | Path) -> Path:
    """Absolute path; relative paths are taken from the repository root, `~` is expanded."""
    p = Path(p).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p
