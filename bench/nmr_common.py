"""What the real-signal NMR benchmarks share (bench/nmr_*.py): their command-line options,
how they name a FID, and their per-FID table.

A plain module beside the scripts, imported as `bench.nmr_common` once the repository root is on
`sys.path` (as each script puts it). What notebook 05 or lib uses stays in lib/nmr/realdata.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from lib.nmr.metrics import summarize

REPO_ROOT = Path(__file__).resolve().parents[1]


def add_draw_args(ap: argparse.ArgumentParser) -> None:
    """The options every real-signal benchmark shares: which FIDs, SNRs and noise draws."""
    ap.add_argument(
        "--fids",
        nargs="+",
        # the five 1H FIDs; the 31P runs beside them in tests/data/nmr/nmrpy have their own table
        default=[str(REPO_ROOT / "tests" / "data" / "nmr" / d) for d in ("jcamp", "bruker")],
        help="folders of raw FIDs, or experiments",
    )
    ap.add_argument("--snrs", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    ap.add_argument("--n-val", type=int, default=4, help="draws that tune the classical knobs")
    ap.add_argument("--n-test", type=int, default=16, help="scored draws per FID and SNR")
    ap.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="noise seeds; several are pooled (each FID's draws of every seed, one fine-tuning per seed)",
    )


def fid_name(p: str | Path) -> str:
    """A data file by its name, an experiment folder by its parent and number (bruker2/22)."""
    p = Path(p)
    return p.name if p.suffix else "/".join(p.parts[-2:])


def per_fid_table(
    rows: dict[float, dict[str, list[dict[str, float]]]],
    groups: dict[float, np.ndarray],
    names: list[str],
) -> pd.DataFrame:
    """Pooled metrics of every method FID by FID, indexed by (input_snr, fid, method)."""
    out = pd.DataFrame(
        {
            (s, names[g], m): summarize([r for r, gg in zip(by[m], groups[s]) if gg == g])
            for s, by in rows.items()
            for g in sorted(set(groups[s]))
            for m in by
        }
    ).T
    out.index.names = ["input_snr", "fid", "method"]
    return out
