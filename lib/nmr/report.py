"""What a denoised series becomes on disk and on screen.

Scope: the plot of a result (input, denoised output, residual) and the files `python -m lib.nmr
denoise` writes into its output folder (denoised.csv, denoised.png, scores.csv, denoise.json),
written atomically and never over a user's earlier files unless asked. The result itself
(`Denoised`) is made by denoiser.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import pandas as pd

from ..core.io import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from .denoiser import Denoised

OUTPUTS = ("denoised.csv", "denoised.png", "scores.csv", "denoise.json")


def plot_result(r: Denoised, title: str = "") -> plt.Figure:
    """Input, denoised output and residual (input - output) on the ppm axis."""
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    axes[0].plot(r.ppm, r.input, lw=0.5, color="0.4")
    axes[0].set_ylabel("input")
    axes[1].plot(r.ppm, r.denoised, lw=0.6, color="tab:red")
    axes[1].set_ylabel("denoised")
    axes[2].plot(r.ppm, r.input - r.denoised, lw=0.4, color="tab:blue")
    axes[2].set_ylabel("residual")
    axes[2].set_xlabel("chemical shift (ppm)")
    axes[2].invert_xaxis()
    fig.suptitle(title or "denoised acquisition 0")
    fig.tight_layout()
    return fig


def check_out_dir(
    out_dir: str | Path, overwrite: bool = False, names: tuple[str, ...] = OUTPUTS
) -> Path:
    """An output folder that can take `names`: refused when it is a file, or holds one of them
    and overwrite is not given (checked before any work, and again before writing)."""
    out = Path(out_dir)
    there = next((q for q in (out, *out.parents) if q.exists()), out)  # itself or its nearest
    if there.exists() and not there.is_dir():
        raise FileExistsError(
            f"--out {out}: {there} is a file, not a folder; name a folder (it is created if missing)"
        )
    clash = [f for f in names if (out / f).exists() or (out / f).is_symlink()]
    if clash and not overwrite:
        raise FileExistsError(
            f"{out} already holds {clash}; choose another --out or pass --overwrite"
        )
    return out


def write_result(
    r: Denoised, out_dir: str | Path, overwrite: bool = False, title: str = ""
) -> list[Path]:
    """Write the spectrum (CSV), the plot, the scores and the provenance; never over a user's files."""
    out = check_out_dir(out_dir, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    cols = {"ppm": r.ppm, "input": r.input, "denoised": r.denoised}
    if r.reference is not None:
        cols["reference"] = r.reference
    paths = [
        atomic_write_text(
            out / "denoised.csv", pd.DataFrame(cols).to_csv(index=False, float_format="%.8g")
        )
    ]
    fig = plot_result(r, title)
    paths.append(
        atomic_write(out / "denoised.png", lambda p: fig.savefig(p, dpi=110, format="png"))
    )
    plt.close(fig)
    if r.scores is not None:
        paths.append(atomic_write_text(out / "scores.csv", r.scores.to_csv(float_format="%.4g")))
    paths.append(
        atomic_write_text(out / "denoise.json", json.dumps(r.info, indent=2, default=str) + "\n")
    )
    return paths
