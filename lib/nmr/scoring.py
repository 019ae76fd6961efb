"""Scoring a denoised acquisition against a reference on the series itself.

Scope: the reference a user's series offers (the inverse-variance co-add of held-out
acquisitions, or a given noiseless spectrum), the classical baselines with their knobs tuned
against it, and the time factors with block-bootstrap intervals and line-height errors of every
output (`reference_scores`). Used by `denoise_series` (denoiser.py); the simulated and
real-signal tables, scored against a clean truth, live in evaluate.py and realdata.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import find_peaks

from .baselines import GRIDS, apply_baseline
from .lowrank import CALL_RANKS
from .preprocess import Prepared, diff_sigma

# Cadzow's cost grows with its rank, and every call scores it: a coarser grid than the tables'
CALL_GRIDS = {**GRIDS, "cadzow": CALL_RANKS}


def tune_knob(
    name: str, x: np.ndarray, ref: np.ndarray, region: np.ndarray, sw_hz: float
) -> tuple[float, np.ndarray]:
    """Knob of a classical method closest to the reference on the peak region (flatters the
    method), and its output (kept: running it again would double Cadzow's cost)."""
    best: tuple[float, float, np.ndarray] | None = None
    for g in CALL_GRIDS[name]:
        y = apply_baseline(name, x, g, sw_hz)
        err = float(((y - ref)[region] ** 2).sum())
        if best is None or err < best[0]:
            best = (err, float(g), y)
    return best[1], best[2]


BOOT_CHUNK = 2**21  # points block_means gathers at once (16 MiB), whatever the spectrum's length


def block_resamples(n: int, block: int, draws: int, seed: int = 0) -> np.ndarray:
    """Indices [draws, n] of a circular block bootstrap over n ordered points (blocks keep lines whole)."""
    rng = np.random.default_rng(seed)
    nb = -(-n // block)
    starts = rng.integers(0, n, size=(draws, nb))
    return ((starts[:, :, None] + np.arange(block)) % n).reshape(draws, -1)[:, :n]


def block_means(
    values: np.ndarray, block: int, draws: int, seed: int = 0, chunk: int = BOOT_CHUNK
) -> np.ndarray:
    """Means [k, draws] of each row of values [k, n] over the points block_resamples(n, block,
    draws, seed) picks, the same numbers; drawn a few draws at a time, so that memory stays near
    `chunk` points (block_resamples' [draws, n] indices took 3 GiB for n = 2**20)."""
    n = values.shape[-1]
    rng = np.random.default_rng(seed)  # consumed in the same order as block_resamples does
    nb, rows = -(-n // block), max(1, chunk // max(n, 1))
    # windows[s] is the block that starts at point s, wrapping around the end
    windows = [
        sliding_window_view(np.concatenate([v, np.resize(v, block)]), block)[:n] for v in values
    ]
    parts = []
    for done in range(0, draws, rows):
        k = min(rows, draws - done)
        starts = rng.integers(0, n, size=(k, nb))
        parts.append(np.stack([w[starts].reshape(k, -1)[:, :n].mean(-1) for w in windows]))
    return np.concatenate(parts, axis=-1)


def reference_scores(
    outputs: dict[str, np.ndarray],
    x0: np.ndarray,
    ref: np.ndarray,
    ref_var: float,
    region: np.ndarray,
    line_sigma: float = 5.0,
    block: int = 16,
    draws: int = 400,
) -> pd.DataFrame:
    """Time factors (whole, peak region) with 90% intervals, and line-top height error of each output
    against a reference.

    A noisy reference (the co-add of held-out acquisitions, noise variance ref_var per point)
    adds ref_var to every mean squared error; it is subtracted, so the factors estimate those
    against the truth. What is left below 5% of ref_var (the uncertainty of a noise estimate) is
    not resolved: such factors are lower bounds, equal to limit_whole / limit_peak. That
    subtraction leaves much sampling noise (a few held-out acquisitions are a noisy reference;
    bench/nmr_scores.md measures it against the truth), so peak_p5 / peak_p95 (and whole_) bound
    each factor by a block bootstrap over the points (blocks of `block` points), an interval to
    read rather than the point. Height errors are read at the reference's lines above line_sigma
    input std.
    """
    sig0 = diff_sigma(x0)
    floor = max(1e-3 * sig0**2, 0.05 * ref_var)  # a perfect output would divide by ~0
    tops = find_peaks(ref, height=line_sigma * sig0)[0]
    every = np.ones_like(region, dtype=bool)
    names = list(outputs)
    # squared errors of the input and of every output: row 0 the input, then one row per output
    errors = np.stack([(x0 - ref) ** 2] + [(outputs[m] - ref) ** 2 for m in names])
    # bootstrap means of each row, all rows over the same draws (the same blocks per draw)
    boots = {
        w: block_means(errors if where.all() else errors[:, where], block, draws)
        for w, where in (("whole", every), ("peak", region))
        if where.any()
    }

    def factors(i: int, where: np.ndarray, w: str) -> tuple[float, ...]:
        """Point factor, its 5th and 95th percentiles, and the largest factor resolvable."""
        if not where.any():
            return np.nan, np.nan, np.nan, np.nan
        e_in, e_out = errors[0][where], errors[i][where]
        mse_in = max(e_in.mean() - ref_var, floor)
        b_in, b_out = boots[w][0], boots[w][i]
        boot = np.maximum(b_in - ref_var, floor) / np.maximum(b_out - ref_var, floor)
        point = mse_in / max(e_out.mean() - ref_var, floor)
        return float(point), *np.percentile(boot, [5, 95]).tolist(), float(mse_in / floor)

    rows = {}
    for i, name in enumerate(names, 1):
        y = outputs[name]
        whole, peak = factors(i, every, "whole"), factors(i, region, "peak")
        rows[name] = {
            "time_factor_whole": whole[0],
            "time_factor_peak": peak[0],
            "peak_p5": peak[1],
            "peak_p95": peak[2],
            "whole_p5": whole[1],
            "whole_p95": whole[2],
            "height_err": float(np.mean(np.abs(y[tops] - ref[tops]) / np.abs(ref[tops])))
            if len(tops)
            else np.nan,
            "n_lines": len(tops),
            "limit_whole": whole[3],
            "limit_peak": peak[3],
        }
    return pd.DataFrame(rows).T.rename_axis("method")


def classical_outputs(
    x0: np.ndarray, ref: np.ndarray, region: np.ndarray, sw_hz: float
) -> tuple[dict, dict]:
    """Every classical method of baselines.GRIDS, its knob tuned against the reference (Cadzow's
    rank on CALL_RANKS)."""
    tuned = {n: tune_knob(n, x0, ref, region, sw_hz) for n in GRIDS}
    return {n: y for n, (_, y) in tuned.items()}, {n: k for n, (k, _) in tuned.items()}


def held_out_reference(p: Prepared, held: list[int]) -> tuple[np.ndarray, float]:
    """Inverse-variance co-add of the held-out acquisitions and its noise variance."""
    w = 1.0 / np.maximum(p.sigma[held], 1e-30) ** 2
    return (w[:, None] * p.x[held]).sum(0) / w.sum(), float(1.0 / w.sum())
