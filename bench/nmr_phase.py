"""How far the shared phase of a noisy replicate series lands from the clean FID's, by line broadening.

    make bench NAME=nmr_phase            # the claim: -> bench/ with its provenance

Per shipped FID and input SNR: draws of a 4-acquisition series (T 2, noise added to the FID as
in bench/nmr_real.py); the phase is found by ACME on the noise-weighted sum after exponential
broadening by lb Hz (lib/nmr/series.py, series_phase; the spectra themselves are never
broadened). Error: the clean spectrum phased with that phase against the clean spectrum phased
with its own ACME phase (unbroadened), relative L2 norm of the real parts. `clean` is the error
of the broadened phase on the clean FID itself: what the broadening costs without noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import out_dir
from lib.core.io import atomic_write_text, markdown_table
from lib.core.paths import REPO_ROOT
from lib.core.provenance import git_commit
from lib.nmr.fileio import RawFID, auto_phase, phased, raw_spectrum
from lib.nmr.realdata import read_raw_fids, shipped_fids
from lib.nmr.series import PHASE_LB_HZ, default_points, replicate_fids, series_phase, tallest_line


def phase_error(
    raw: RawFID, clean: np.ndarray, phase: tuple[float, float], ref: tuple[float, float]
) -> float:
    """Relative L2 distance between the clean spectrum under `phase` and under `ref` (real parts)."""
    a, b = phased(raw, clean, phase).real, phased(raw, clean, ref).real
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fids", default=str(REPO_ROOT / "tests" / "data" / "nmr"))
    ap.add_argument("--snrs", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    ap.add_argument("--lbs", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 5.0])
    ap.add_argument("--draws", type=int, default=8)
    a = ap.parse_args()
    t0 = time.perf_counter()
    paths = shipped_fids(a.fids)
    rows = []
    for path, raw in zip(paths, read_raw_fids(paths)):
        n = default_points(len(raw.fid))
        clean_spec = raw_spectrum(raw, n)  # once per FID: every error is measured on it
        ref = auto_phase(clean_spec)
        height = tallest_line(raw, n)
        name = path.name if path.suffix else str(path.relative_to(a.fids))
        for lb in a.lbs:
            clean = phase_error(raw, clean_spec, series_phase([raw], [clean_spec], n, lb), ref)
            rows.append({"fid": name, "input_snr": "clean", "lb_hz": lb, "draw": 0, "error": clean})
        for snr in a.snrs:
            for d in range(a.draws):
                fids = replicate_fids(raw, snr, 2.0, 4, seed=1000 + d, n_points=n, height=height)
                specs = [raw_spectrum(r, n) for r in fids]
                for lb in a.lbs:
                    err = phase_error(raw, clean_spec, series_phase(fids, specs, n, lb), ref)
                    rows.append(
                        {"fid": name, "input_snr": snr, "lb_hz": lb, "draw": d, "error": err}
                    )
            print(name, snr, flush=True)
    df = pd.DataFrame(rows)
    order = [f"{v:g}" for v in a.snrs] + ["clean"]
    df["input_snr"] = pd.Categorical(
        [v if v == "clean" else f"{v:g}" for v in df["input_snr"]], order, ordered=True
    )
    med = df.pivot_table(
        index=["fid", "input_snr"], columns="lb_hz", values="error", aggfunc="median", observed=True
    )
    worst = df.pivot_table(
        index=["fid", "input_snr"], columns="lb_hz", values="error", aggfunc="max"
    )
    pooled = df[df.input_snr != "clean"].pivot_table(
        index="input_snr", columns="lb_hz", values="error", aggfunc="median", observed=True
    )
    ratio = pooled[0.0] / pooled[PHASE_LB_HZ]
    fmt = lambda t: t.round(3).rename(columns=lambda c: f"lb {c:g} Hz").reset_index()
    md = [
        "# The shared phase of a noisy series against the clean FID's (bench/nmr_phase.py)",
        "",
        f"{len(paths)} FIDs, {a.draws} draws of a 4-acquisition series (T 2) per input SNR; ACME on the "
        "noise-weighted sum after exponential broadening by lb Hz. Error: relative L2 distance between "
        "the clean spectrum phased with that phase and with its own ACME phase (0.1 is a visible "
        "dispersive tilt of the lines). The default, `PHASE_LB_HZ` in lib/nmr/series.py, is "
        f"{PHASE_LB_HZ:g} Hz. Commit {git_commit()}; {time.perf_counter() - t0:.0f} s.",
        "",
        "## Median error over FIDs and draws",
        "",
        markdown_table(fmt(pooled)),
        "",
        f"Unbroadened over {PHASE_LB_HZ:g} Hz, median error: "
        + ", ".join(f"SNR {s}: {v:.1f}x" for s, v in ratio.items())
        + ".",
        "",
        "## Per FID: median over draws (`clean`: the broadened phase of the clean FID itself)",
        "",
        markdown_table(fmt(med)),
        "",
        "## Per FID: worst draw",
        "",
        markdown_table(fmt(worst)),
        "",
    ]
    atomic_write_text(out_dir("nmr_phase") / "nmr_phase.md", "\n".join(md))
    atomic_write_text(
        out_dir("nmr_phase") / "nmr_phase.json",
        json.dumps({"commit": git_commit(), "default_lb_hz": PHASE_LB_HZ, "rows": rows}, indent=1),
    )


if __name__ == "__main__":
    main()
