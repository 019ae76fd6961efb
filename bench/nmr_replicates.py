"""The user's path on measured runs: NMRPy's 600 MHz 13C / 31P / 1H runs, denoised with fine-tuning.

    make nmr-replicates                                   # fetch the runs (pip, sha256-checked)
    make bench NAME=nmr_replicates              # the claim: -> bench/ with its provenance

Two kinds of series per nucleus and input SNR, each handed to `denoise_series(fine_tune_on=True)`
exactly as `python -m lib.nmr denoise --fine-tune` does (held-out acquisition, kept output):
- "runs": acquisition 0 is one run plus noise (input SNR s), acquisitions 1-3 are the runs
  measured before and after it, plus noise to SNR 2s, 4s, 8s. The sample is a reaction, so
  these are real neighbouring measurements, not replicates: the test of what a user gets from
  a series that is not one.
- "equal": four noise draws of that run, all at SNR s (repeated runs of equal scans, T = 1).
Every output is scored against the run itself without added noise (its own noise, SNR in the
table, bounds every factor near (SNR / s)^2, so ratios between methods are understated).
Classical knobs are tuned on other draws of the same kind.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import out_dir
from lib.core.io import atomic_write_text, markdown_table
from lib.core.paths import REPO_ROOT
from lib.core.provenance import git_commit
from lib.nmr.denoiser import as_model, denoise_series
from lib.nmr.evaluate import method_outputs, pooled_table, spectrum_rows, tune_baselines
from lib.nmr.fileio import RawFID, read_fid
from lib.nmr.finetune import FineTune
from lib.nmr.realdata import REAL_METRICS, real_goal_support
from lib.nmr.series import series_from_fids, spectrum_snr, tallest_line, with_noise
from lib.nmr.simulate import SpectrumSet

DATA = REPO_ROOT / "data" / "nmr_replicates" / "bruker2"
# run measured, then its neighbours in time (experiment numbers cycle 13C, 31P, 1H)
RUNS = {"13C": (19, 22, 16, 13), "31P": (20, 23, 17, 14), "1H": (21, 24, 18, 15)}
KINDS = ("runs", "equal")
COLS = ["time_factor_peak", "time_factor_whole", "height_err", "integral_err"]


def series_fids(raws: list[RawFID], kind: str, snr: float, rng: np.random.Generator) -> list:
    """The acquisitions of one draw: noise on the neighbouring runs ("runs") or on run 0 alone ("equal")."""
    height, m = tallest_line(raws[0]), len(raws[0].fid)
    if kind == "runs":
        return [
            with_noise(r, height / (snr * 2**k) / np.sqrt(m), rng, f"run{k}")
            for k, r in enumerate(raws)
        ]
    return [with_noise(raws[0], height / snr / np.sqrt(m), rng, f"draw{k}") for k in range(4)]


def draws(raws, kind, snr, n, seed, phase) -> SpectrumSet:
    """n series of one kind, on one phase, with run 0 (no added noise) as the reference."""
    rng = np.random.default_rng(seed)
    xs = [series_from_fids(series_fids(raws, kind, snr, rng), phase=phase) for _ in range(n)]
    truth = series_from_fids([raws[0]], phase=phase).spectra[0]
    return SpectrumSet(
        x=np.stack([s.spectra for s in xs]),
        truth=np.stack([truth] * n),
        ppm=xs[0].ppm,
        snr0=np.full(n, snr),
        T=2.0 if kind == "runs" else 1.0,
        shifts_ppm=np.zeros((n, 4)),
        meta={"series": xs},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snrs", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    ap.add_argument("--n-test", type=int, default=3, help="draws per nucleus, SNR and kind")
    ap.add_argument("--n-val", type=int, default=2, help="draws that tune the classical knobs")
    ap.add_argument("--steps", type=int, default=FineTune.steps)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="nmr_replicates")
    a = ap.parse_args()
    if not (DATA / "24" / "fid").exists():
        raise SystemExit(f"{DATA} is missing: run `make nmr-replicates` first")
    model, info = as_model(None)
    t0 = time.perf_counter()
    rows: dict = {k: {} for k in KINDS}
    groups: dict = {k: {} for k in KINDS}
    kept: list[dict] = []
    natives = {}
    measured = {nuc: [read_fid(DATA / str(r)) for r in runs] for nuc, runs in RUNS.items()}
    jobs = [(n, s, k) for n in RUNS for s in a.snrs for k in KINDS]
    for job, (nuc, snr, kind) in enumerate(tqdm(jobs, desc="series")):
        raws, g = measured[nuc], list(RUNS).index(nuc)
        first = series_fids(raws, kind, snr, np.random.default_rng([a.seed, job, 9]))
        phase = series_from_fids(first).phase  # one phasing per sample and SNR, as a user does
        natives[nuc] = spectrum_snr(series_from_fids([raws[0]], phase=phase).spectra[0])
        val = draws(raws, kind, snr, a.n_val, [a.seed, job, 1], phase)
        test = draws(raws, kind, snr, a.n_test, [a.seed, job, 2], phase)
        knobs = tune_baselines(val, raws[0].sw_hz)
        out = method_outputs(model, test, knobs, raws[0].sw_hz)
        tuned, chosen = [], []
        for i, s in enumerate(test.meta["series"]):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                r = denoise_series(
                    s, model, fine_tune_on=True, ft=FineTune(steps=a.steps, seed=i), progress=False
                )
            # skipped (inputs as noisy as acquisition 0): the user gets the given model's output
            tuned.append(r.outputs.get("unet fine-tuned", r.outputs["unet"]))
            chosen.append(r.denoised)
            kept.append(
                {
                    "nucleus": nuc,
                    "input_snr": snr,
                    "kind": kind,
                    "draw": i,
                    "kept": r.info["output"],
                    "skipped": "skipped" in r.info.get("fine_tune", {}),
                    "max_replicate_excess": max(r.info["replicate_excess"]),
                    "warned_not_replicates": any(
                        "not repeated measurements" in str(w.message) for w in caught
                    ),
                }
            )
        out["unet fine-tuned"], out["unet (kept output)"] = np.stack(tuned), np.stack(chosen)
        for m, rr in spectrum_rows(out, test, REAL_METRICS).items():
            rows[kind].setdefault(snr, {}).setdefault(m, []).extend(rr)
        groups[kind].setdefault(snr, []).extend([g] * a.n_test)
    secs = time.perf_counter() - t0
    md = [
        "# Measured runs through the user's path (bench/nmr_replicates.py)\n",
        f"Model: {info}. Runs: NMRPy's Bruker time course (600 MHz; {', '.join(f'{n} runs {r}' for n, r in RUNS.items())}; "
        f"SNR of the scored run: {', '.join(f'{n} {v:.0f}' for n, v in natives.items())}). {a.n_test} draws per "
        f"nucleus, SNR and kind; fine-tuning {a.steps} steps per draw. Commit {git_commit()}; {secs:.0f} s.\n",
    ]
    out_json = {"model": info, "commit": git_commit(), "seconds": secs, "kept": kept}
    keep = pd.DataFrame(kept)
    for kind in KINDS:
        table = pooled_table(rows[kind])
        support = real_goal_support(
            rows[kind],
            {s: np.array(v) for s, v in groups[kind].items()},
            denoisers=("unet", "unet fine-tuned", "unet (kept output)"),
            seed=a.seed,
        )
        md += [
            f"## Kind '{kind}'\n",
            markdown_table(table[COLS], digits=3, index=True),
            "\nGoals (support over 2000 resamples, nuclei then draws):\n",
            markdown_table(support, digits=3, index=True),
            "",
        ]
        out_json[kind] = {
            "metrics": json.loads(table.reset_index().to_json(orient="records")),
            "support": json.loads(support.reset_index().to_json(orient="records")),
        }
    summary = keep.groupby(["kind", "nucleus", "input_snr"]).agg(
        fine_tune_skipped=("skipped", "sum"),
        kept_fine_tuned=("kept", lambda k: int((k == "unet fine-tuned").sum())),
        warned=("warned_not_replicates", "sum"),
        max_excess=("max_replicate_excess", "max"),
    )
    md += [
        "## What the user's call did: fine-tuning skipped (then 'unet fine-tuned' above is the given "
        "model's output), the output it kept, and whether it warned that the series is not replicates\n",
        markdown_table(summary, digits=3, index=True),
    ]
    atomic_write_text(out_dir("nmr_replicates") / f"{a.name}.md", "\n".join(md) + "\n")
    atomic_write_text(
        out_dir("nmr_replicates") / f"{a.name}.json",
        json.dumps(out_json, indent=2, default=str) + "\n",
    )
    print("\n".join(md))


if __name__ == "__main__":
    main()
