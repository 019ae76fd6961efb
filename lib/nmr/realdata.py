"""Real signal plus added noise: replicate series made from measured FIDs, scored against the
noiseless measurement (its own noise is 10^4-10^5 times below the tallest line, far under the
added noise), with classical knobs tuned on other noise draws.

Each draw adds independent complex white noise to the FID's measured points, processes the
series as a user's would be (one shared phase found on the noisy series) and processes the
clean FID with that same phase, so the reference differs from the input by noise alone. Per
FID and input SNR, one noisy series sets the phase of all its draws (a user phases a sample once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .evaluate import CLASSICAL, method_outputs, resampled_summaries, spectrum_rows, tune_baselines
from .fileio import RawFID, read_fid
from .finetune import FineTune, fine_tune
from .metrics import MetricConfig, summarize
from .preprocess import prepare
from .series import replicate_fids, series_from_fids, tallest_line
from .simulate import SpectrumSet
from .unet import UNet1D, denoise

REAL_METRICS = MetricConfig(
    shape_frac=0.0, shape_sigma=5.0
)  # height errors of every line above 5 noise std


def replicate_sets(
    raw: RawFID,
    snr0: float,
    T: float,
    n_acq: int,
    n_draws: int,
    seed: int,
    n_points: int | None = None,
    phase: tuple[float, float] | None = None,
) -> SpectrumSet:
    """n_draws replicate series of one measured FID at input SNR snr0, with their noiseless references.

    phase: one phase for every draw (as a user phases a sample once); None finds each draw's own.
    """
    if n_draws < 1:
        raise ValueError(f"n_draws={n_draws}: ask for at least one noise draw")
    xs, truths = [], []
    height = tallest_line(raw, n_points)  # one phasing of the clean FID, not one per draw
    for d in range(n_draws):
        fids = replicate_fids(
            raw, snr0, T, n_acq, seed=seed * 1000 + d, n_points=n_points, height=height
        )
        series = series_from_fids(fids, n_points, phase=phase)
        xs.append(series.spectra)
        truths.append(series_from_fids([raw], n_points, phase=series.phase).spectra[0])
    return SpectrumSet(
        x=np.stack(xs).astype(np.float32),
        truth=np.stack(truths).astype(np.float32),
        ppm=series.ppm,
        snr0=np.full(n_draws, float(snr0)),
        T=float(T),
        shifts_ppm=np.zeros((n_draws, n_acq)),
        meta={"source": raw.source, "sw_hz": raw.sw_hz, "seed": seed, "phase": series.phase},
    )


def fine_tuned_on(model: UNet1D, sets: SpectrumSet, ft: FineTune) -> UNet1D:
    """The model fine-tuned on the first series of a set, preprocessed as the user's call does."""
    return fine_tune(model, prepare(sets.x[0].astype(np.float64)).x, ft, progress=False)[0]


def shipped_fids(*roots: str | Path) -> list[Path]:
    """The raw FIDs under data folders: JCAMP-DX files and Bruker experiment folders, sorted per folder."""
    found = []
    for root in map(Path, roots):
        here = sorted(root.rglob("*.dx")) + sorted(p.parent for p in root.rglob("acqus"))
        if not here:
            raise FileNotFoundError(
                f"no raw FIDs (*.dx files or Bruker folders with acqus) under {root}"
            )
        found += here
    return found


def read_raw_fids(paths: list[Path]) -> list[RawFID]:
    """Read one FID from each path (errors name the file; fileio.read_fids reads the rows of one arrayed file)."""
    return [read_fid(p) for p in paths]


def real_rows(
    model: UNet1D | None,  # None: only the models in others
    raws: list[RawFID],
    snrs: list[float],
    T: float = 2.0,
    n_acq: int = 4,
    n_val: int = 4,
    n_test: int = 16,
    seed: int = 0,
    ft: FineTune | None = FineTune(),
    progress: bool = True,
    others: Mapping[str, UNet1D] = MappingProxyType({}),  # further models, scored on the same draws
) -> tuple[dict[float, dict[str, list[dict[str, float]]]], dict[float, np.ndarray], dict]:
    """Per-spectrum metrics of every method on real signal plus added noise, pooled over the FIDs.

    Per FID and SNR: one further series (its own noise draw) sets the phase of all and is what
    the model is fine-tuned on; classical knobs tuned on n_val draws, every method scored on
    n_test other draws. Returns rows[snr][method], the FID index of each row (for the
    bootstrap) and the knobs.
    """
    rows: dict[float, dict[str, list[dict[str, float]]]] = {}
    groups: dict[float, list[int]] = {}
    knobs: dict = {}
    for g, raw in enumerate(tqdm(raws, desc="FIDs", disable=not progress)):
        for s in map(float, snrs):
            # one further series fixes the phase of every draw (a user phases a sample once): the
            # phase found on each draw alone wanders from draw to draw on sparse spectra, and a
            # model fine-tuned on one phasing would meet other phasings in the test draws
            first = replicate_sets(raw, s, T, n_acq, 1, seed=seed * 7919 + 3)
            ph = first.meta["phase"]
            val = replicate_sets(raw, s, T, n_acq, n_val, seed=seed * 7919 + 1, phase=ph)
            test = replicate_sets(raw, s, T, n_acq, n_test, seed=seed * 7919 + 2, phase=ph)
            kn = tune_baselines(val, raw.sw_hz)
            out = method_outputs(model, test, kn, raw.sw_hz)
            for name, other in others.items():
                out[name] = denoise(other, test.x[:, 0]).astype(np.float64)
            if ft is not None:
                tuned = fine_tuned_on(model, first, replace(ft, seed=seed))
                out["unet fine-tuned"] = denoise(tuned, test.x[:, 0]).astype(np.float64)
            for m, r in spectrum_rows(out, test, REAL_METRICS).items():
                rows.setdefault(s, {}).setdefault(m, []).extend(r)
            groups.setdefault(s, []).extend([g] * n_test)
            knobs[(Path(raw.source).name, s)] = kn
    return rows, {s: np.array(v) for s, v in groups.items()}, knobs


def real_rows_seeds(
    model: UNet1D | None, raws: list[RawFID], snrs: list[float], seeds: list[int], **kw
) -> tuple[dict[float, dict[str, list[dict[str, float]]]], dict[float, np.ndarray], dict]:
    """real_rows for several noise seeds, pooled: draws of every seed within each FID (the
    bootstrap's upper level stays the FID); knobs keyed (FID, SNR, seed)."""
    rows: dict[float, dict[str, list[dict[str, float]]]] = {}
    groups: dict[float, list[np.ndarray]] = {}
    knobs: dict = {}
    for seed in seeds:
        r, g, k = real_rows(model, raws, snrs, seed=seed, **kw)
        for s, by in r.items():
            for m, rr in by.items():
                rows.setdefault(s, {}).setdefault(m, []).extend(rr)
            groups.setdefault(s, []).append(g[s])
        knobs.update({(*key, seed): v for key, v in k.items()})
    return rows, {s: np.concatenate(v) for s, v in groups.items()}, knobs


def real_goal_flags(u: dict, inp: dict, classical: list[dict]) -> dict[str, np.ndarray]:
    """The real-signal goals for a denoiser's pooled metrics u (scalars or bootstrap arrays)."""

    def best(key: str, reduce) -> np.ndarray:
        return reduce(np.stack([np.asarray(c[key], dtype=float) for c in classical]), axis=0)

    h = np.asarray(u["height_err"], dtype=float)
    return {
        "peak>=1.5x_best": np.asarray(u["time_factor_peak"])
        >= 1.5 * best("time_factor_peak", np.max),
        "whole>=best": np.asarray(u["time_factor_whole"]) >= best("time_factor_whole", np.max),
        "height<input_and_all": (h < np.asarray(inp["height_err"]))
        & (h < best("height_err", np.min)),
    }


def grouped_resamples(groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Two-level bootstrap indices [n_boot, n]: resample the FIDs, then the draws within each."""
    ids = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in ids]
    out = np.empty((n_boot, len(groups)), dtype=int)
    for b in range(n_boot):
        pick = rng.choice(len(ids), size=len(ids))
        out[b] = np.concatenate([rng.choice(members[i], size=len(members[i])) for i in pick])[
            : len(groups)
        ]
    return out


def real_goal_support(
    rows: dict[float, dict[str, list[dict[str, float]]]],
    groups: dict[float, np.ndarray],
    denoisers: tuple[str, ...] = ("unet", "unet fine-tuned"),
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per SNR and denoiser: the point estimates, each goal's bootstrap support (FIDs, then draws)
    and the share of spectra the denoiser leaves no worse than the raw input (whole-spectrum factor >= 1)."""
    out = {}
    for s, by in rows.items():
        idx = grouped_resamples(groups[s], n_boot, np.random.default_rng([seed, int(s * 1000)]))
        inp, cl = (
            resampled_summaries(by["input"], idx),
            [resampled_summaries(by[m], idx) for m in CLASSICAL],
        )
        pooled = {m: summarize(by[m]) for m in ("input", *CLASSICAL)}
        for d in (d for d in denoisers if d in by):
            pt = summarize(by[d])
            flags = real_goal_flags(resampled_summaries(by[d], idx), inp, cl)
            per = np.array([r["se_whole_in"] / max(r["se_whole_out"], 1e-300) for r in by[d]])
            out[(s, d)] = {
                "peak_factor": pt["time_factor_peak"],
                "best_classical_peak": max(pooled[m]["time_factor_peak"] for m in CLASSICAL),
                "whole_factor": pt["time_factor_whole"],
                "best_classical_whole": max(pooled[m]["time_factor_whole"] for m in CLASSICAL),
                "height_err": pt["height_err"],
                "input_height_err": pooled["input"]["height_err"],
                "best_classical_height_err": min(pooled[m]["height_err"] for m in CLASSICAL),
                **{f"support {k}": float(np.mean(v)) for k, v in flags.items()},
                "min_spectrum_factor": float(per.min()),
                "never_worse": bool(per.min() >= 1.0),
            }
    return pd.DataFrame(out).T.rename_axis(["input_snr", "denoiser"])
