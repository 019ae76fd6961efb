"""NMR denoiser speed: inference spectra/s at 8192 points and training seconds per epoch, and the
user path: the shipped model on one 32k-point spectrum, and fine-tuning on one real series.

    .venv/bin/python bench/nmr_speed.py [--repeats 5] [--bases 8 16 32]

The user-path times are absolute (the goals are "< 1 s" and "< 5 min" on this CPU); beside them,
interleaved in the same process, the wavelet baseline on the same spectrum shows how fast the
machine was at that moment.

Prints a table and writes bench/nmr_speed.{json,md}. Timings are medians over repeats,
after one warm-up call per shape (oneDNN builds kernels on first use). The training epoch
is 32 steps of 8 windows of 1024 points in stage B with the default loss weights (consistency
and T weighted 0, so one batch of inputs through the network per step; the cpu profile runs
100 steps per epoch), so the figure scales to any profile by steps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import out_dir
from lib.core.io import atomic_write_text
from lib.core.provenance import cpu_name
from lib.nmr.baselines import wavelet_shrink
from lib.nmr.denoiser import as_model
from lib.nmr.fileio import read_fid
from lib.nmr.finetune import FineTune, fine_tune
from lib.nmr.preprocess import prepare
from lib.nmr.realdata import replicate_sets
from lib.nmr.simulate import SpectrumSimConfig, simulate_set
from lib.nmr.train import DenoiserTrainConfig, build_train_data, train
from lib.nmr.unet import UNet1D, UNetConfig, denoise, n_parameters

HERE = Path(__file__).resolve().parent


def time_inference(model: torch.nn.Module, x: np.ndarray, batch: int, repeats: int) -> float:
    """Median spectra per second of denoise() over repeats."""
    denoise(model, x[:batch], batch=batch)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        denoise(model, x, batch=batch)
        times.append(time.perf_counter() - t0)
    return len(x) / statistics.median(times)


def time_epoch(data, base: int, repeats: int, steps: int) -> float:
    """Median seconds of one stage-B training epoch (steps of 8 x 1024-point windows)."""
    cfg = DenoiserTrainConfig(
        epochs_a=0, epochs_b=1, batch=8, crop=1024, steps_per_epoch=steps, lr=1e-3, warmup_epochs=0
    )
    train(
        data,
        DenoiserTrainConfig(**{**cfg.__dict__, "steps_per_epoch": 2}),
        UNetConfig(base=base),
        progress=False,
    )
    return statistics.median(
        train(data, cfg, UNetConfig(base=base), progress=False)[1][0]["seconds"]
        for _ in range(repeats)
    )


def user_path(repeats: int, steps: int) -> dict:
    """Shipped model on a 32768-point spectrum (median of repeats, interleaved with the wavelet
    baseline) and one fine-tuning run on a replicate series of a real FID."""
    model, info = as_model(None)
    x = simulate_set(SpectrumSimConfig(n_points=32768), 1, seed=1, snr0=10.0).x[0, 0]
    denoise(model, x)  # warm-up
    t_unet, t_wav = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        denoise(model, x)
        t_unet.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        wavelet_shrink(x, 1.0)
        t_wav.append(time.perf_counter() - t0)
    raw = read_fid(HERE.parent / "tests" / "data" / "nmr" / "jcamp" / "14434-41-4_1h.fid.dx")
    series = replicate_sets(raw, 10.0, 2.0, 4, 1, seed=0).x[0].astype(np.float64)
    t0 = time.perf_counter()
    fine_tune(model, prepare(series).x, FineTune(steps=steps), progress=False)
    ft_s = time.perf_counter() - t0
    return {
        "model": info,
        "denoise_32k_s": statistics.median(t_unet),
        "wavelet_32k_s": statistics.median(t_wav),
        "fine_tune_steps": steps,
        "fine_tune_points": series.shape[-1],
        "fine_tune_s": ft_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--bases", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument(
        "--ft-steps",
        type=int,
        default=FineTune.steps,
        help="fine-tuning steps of the user-path timing",
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    sets = simulate_set(SpectrumSimConfig(n_points=8192), 16, seed=0, snr0=10.0)
    x = sets.x[:, 0]
    data = build_train_data(sets.x)
    rows = []
    for base in args.bases:
        model = UNet1D(UNetConfig(base=base)).eval()
        rows.append(
            {
                "base": base,
                "parameters": n_parameters(model),
                "infer_spectra_per_s_batch1": time_inference(model, x, 1, args.repeats),
                "infer_spectra_per_s_batch16": time_inference(model, x, 16, args.repeats),
                f"train_s_per_epoch_{args.steps}x8x1024": time_epoch(
                    data, base, max(1, args.repeats // 2), args.steps
                ),
            }
        )
        print(rows[-1], flush=True)
    machine = {
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": "cpu",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
    }
    user = user_path(args.repeats, args.ft_steps)
    print(user, flush=True)
    out = {
        "machine": machine,
        "n_points": 8192,
        "repeats": args.repeats,
        "rows": rows,
        "user_path": user,
    }
    atomic_write_text(out_dir("nmr_speed") / "nmr_speed.json", json.dumps(out, indent=2) + "\n")
    cols = list(rows[0])
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += [
        "| "
        + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols)
        + " |"
        for r in rows
    ]
    text = (
        f"NMR denoiser speed, 8192-point spectra, medians of {args.repeats} runs; machine: {machine}\n\n"
        + "\n".join(md)
        + "\n\n## User path (shipped model)\n\n"
        f"- denoising one 32768-point spectrum: {user['denoise_32k_s']:.2f} s (goal < 1 s); the wavelet baseline on "
        f"the same spectrum, interleaved: {user['wavelet_32k_s']:.2f} s\n"
        f"- fine-tuning on one replicate series ({user['fine_tune_points']} points, {user['fine_tune_steps']} steps "
        f"of 8 x 1024-point windows): {user['fine_tune_s']:.0f} s (goal < 300 s)\n"
    )
    atomic_write_text(out_dir("nmr_speed") / "nmr_speed.md", text)
    print(text)


if __name__ == "__main__":
    main()
