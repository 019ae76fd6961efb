"""GPU check: the CUDA paths of the long-tail trainer run once and timed, on one device (< 8 min).

    .venv/bin/python bench/gpu_check.py                  # on a machine with one CUDA GPU
    make bench NAME=gpu_check                            # the claim: -> bench/ with its provenance
    .venv/bin/python bench/gpu_check.py --device cpu --steps 2 --ddp-steps 2 --smoke-batches 2 \\
        --batch 16 --synthetic                           # a dry run of the code path on a CPU (gloo)

Three parts, each timed, with its peak GPU memory (torch.cuda.max_memory_allocated) and loss:

1. smoke: notebook 03's smoke preset (PRESETS["smoke"], method prl) trained end to end by
   `fit` (mixed precision, channels-last, evaluation and checkpoint of every epoch) on
   Fashion-MNIST-LT when the data are found, else on synthetic images of its shape.
2. paper: the paper profile's model (03_training preset paper: ResNet-32, three experts with
   reduced widths, prl's hypernetwork, batch 128) at CIFAR shape (3x32x32, 100 classes) for
   `--steps` steps of the training loop's `train_epoch`, under the autocast type lib picks on
   the device and channels-last. The images are synthetic (no CIFAR download is needed): a
   pattern per class plus noise, with the CIFAR-100-LT IR 100 class counts, so the loss falls.
3. ddp: part 2 again, shorter, in a child started by `torchrun --nproc_per_node 1`, the model in
   DistributedDataParallel over an nccl process group (gloo on a CPU). The child sets up the
   group itself: lib's `init_distributed` treats one process as no DDP at all.

The first chunk of each training part is a warm-up and is not timed. Beside the figures stands
the CPU figure of the same model from bench/train_throughput.json, where that file exists.
Without CUDA (and without `--device cpu`) it says it did not run and writes nothing: exit
status 0, or 1 with `--require-gpu`. Nothing else in the workbook runs or reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO_ROOT, out_dir
from lib.core.device import autocast_dtype, pick_device
from lib.core.io import atomic_write_text
from lib.core.seeding import seed_weights
from lib.longtail.data import ARRAY_DATASETS, build_longtail_counts, shot_groups
from lib.longtail.data.sources import find_fashion_mnist
from lib.longtail.models import build_model
from lib.longtail.train import TrainConfig, TrainData, expert_adjustments, fit, load_data
from lib.longtail.train.config import model_config
from lib.longtail.train.ddp import DistInfo
from lib.longtail.train.loop import grad_scaler_for, optimizer_for, train_epoch

NAME = "gpu_check"
BUDGET_S = 480  # the "under 8 minutes" on one GPU
CHUNKS = 6  # training parts run as up to 6 short epochs: the first a warm-up, the rest timed
CPU_TABLE = REPO_ROOT / "bench" / "train_throughput.json"


# ---- data ----------------------------------------------------------------------------------
def synthetic_data(dataset: str, imb_ratio: float, test_per_class: int, seed: int = 0) -> TrainData:
    """Images of a dataset's shape and long-tailed counts: a 4x4 pattern per class plus noise."""
    spec = ARRAY_DATASETS[dataset]
    channels, size = (1, 28) if dataset == "fashion_mnist" else (3, 32)
    counts = build_longtail_counts(spec.n_max, spec.num_classes, imb_ratio)
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(40, 215, (spec.num_classes, channels, 4, 4)).astype(np.float32)
    patterns = patterns.repeat(size // 4, 2).repeat(size // 4, 3)

    def draw(labels: np.ndarray) -> torch.Tensor:
        noise = rng.standard_normal((len(labels), channels, size, size), dtype=np.float32)
        return torch.from_numpy(np.clip(patterns[labels] + 30 * noise, 0, 255).astype(np.uint8))

    y = np.repeat(np.arange(spec.num_classes), counts)
    y_test = np.repeat(np.arange(spec.num_classes), test_per_class)
    return TrainData(
        draw(y),
        torch.from_numpy(y),
        draw(y_test),
        torch.from_numpy(y_test),
        counts / counts.sum(),
        shot_groups(counts),
        spec.mean,
        spec.std,
    )


def smoke_data(cfg: TrainConfig, synthetic: bool) -> tuple[TrainData, str]:
    """Fashion-MNIST-LT when its files are found (and not `synthetic`), else synthetic images of its shape."""
    if not synthetic:
        try:
            find_fashion_mnist()
            return load_data(cfg), "Fashion-MNIST-LT"
        except FileNotFoundError:
            print("[gpu_check] Fashion-MNIST not found: the smoke part trains on synthetic images")
    return synthetic_data("fashion_mnist", cfg.imb_ratio, 100), "synthetic, Fashion-MNIST-LT shape"


# ---- the three parts -----------------------------------------------------------------------
def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    """Start a fresh peak-memory count (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    """Peak GPU memory allocated since the last reset (MiB); None on a CPU."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def run_smoke(device: torch.device, max_batches: int, synthetic: bool) -> dict[str, Any]:
    """Part 1: the smoke preset trained by `fit` end to end; the last epoch's time gives images/s."""
    cfg = TrainConfig.from_params(
        preset="smoke", device=str(device), progress=False, max_batches=max_batches
    )
    data, source = smoke_data(cfg, synthetic)
    reset_peak(device)
    with tempfile.TemporaryDirectory() as run_dir:
        res = fit(cfg, run_dir, data=data, resume=False)
    sync(device)
    last = res.history.iloc[-1]
    per_epoch = len(data.y) if not max_batches else min(len(data.y), max_batches * cfg.batch_size)
    return {
        "part": "smoke",
        "what": f"preset smoke, {cfg.method}, {source}: fit, {cfg.epochs} epochs (images/s: the "
        "last, its evaluation included)",
        "steps": cfg.epochs * -(-per_epoch // cfg.batch_size),
        "batch": cfg.batch_size,
        "img_per_s": per_epoch / float(last["seconds"]),  # the last epoch, its evaluation included
        "peak_mib": peak_mib(device),
        "loss_first": float(res.history["loss"].iloc[0]),
        "loss_final": float(last["loss"]),
        "top1": float(last["test_top1"]),
    }


def chunks(steps: int) -> int:
    """How many short epochs `steps` steps run as: CHUNKS, fewer for a dry run, never under 2."""
    return max(2, min(CHUNKS, steps))


def paper_config(device: torch.device, steps: int, batch: int, n_train: int) -> TrainConfig:
    """The paper preset (model, schedule, runtime settings) cut to short epochs, `steps` in all."""
    chunk = max(1, min(steps // chunks(steps), n_train // batch))
    return TrainConfig.from_params(
        preset="paper", device=str(device), progress=False, batch_size=batch, max_batches=chunk
    )


def train_steps(
    cfg: TrainConfig, data: TrainData, device: torch.device, n_chunks: int, ddp: bool
) -> dict:
    """Parts 2 and 3: short epochs of `train_epoch` (the first untimed); images/s, memory, loss."""
    reset_peak(device)
    seed_weights(cfg.seed)
    model = build_model(model_config(cfg, data.num_classes, int(data.X.shape[1]))).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = model
    if ddp:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    amp = autocast_dtype(device) if cfg.amp else None
    opt, scaler = optimizer_for(model, cfg), grad_scaler_for(amp)
    adjust = expert_adjustments(
        cfg.method, data.prior, cfg.num_experts, cfg.sade_lambda, cfg.balpoe_taus
    ).to(device)
    one = DistInfo()  # one process: every rank-dependent branch of train_epoch is the plain one

    def run(epoch: int) -> dict[str, float]:
        return train_epoch(
            net, opt, scaler, data, cfg, epoch, adjust, device, one, amp, cfg.channels_last
        )

    first = run(0)["loss"]
    sync(device)
    t0 = time.perf_counter()
    losses = [run(e)["loss"] for e in range(1, n_chunks)]
    sync(device)
    seconds = time.perf_counter() - t0
    return {
        "steps": n_chunks * cfg.max_batches,
        "batch": cfg.batch_size,
        "img_per_s": (n_chunks - 1) * cfg.max_batches * cfg.batch_size / seconds,
        "peak_mib": peak_mib(device),
        "loss_first": first,
        "loss_final": losses[-1],
        "autocast": str(amp).replace("torch.", "") if amp else "off",
        "channels_last": cfg.channels_last,
    }


def model_line(cfg: TrainConfig) -> str:
    """The paper model in words."""
    return (
        f"preset paper's model ({cfg.arch}, {cfg.num_experts} experts, reduced {cfg.reduced}, "
        f"{cfg.method}), 3x32x32, 100 classes, synthetic CIFAR-100-LT counts"
    )


def run_paper(device: torch.device, steps: int, batch: int) -> dict[str, Any]:
    """Part 2: the paper model at CIFAR shape under AMP and channels-last, one process."""
    data = synthetic_data("cifar100", 100.0, 2)
    cfg = paper_config(device, steps, batch, len(data.y))
    return {
        "part": "paper",
        "what": model_line(cfg),
        **train_steps(cfg, data, device, chunks(steps), ddp=False),
    }


def free_port() -> int:
    """A free local TCP port for torchrun's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ddp(device: torch.device, steps: int, batch: int, timeout: float) -> dict[str, Any]:
    """Part 3: part 2 in a child under `torchrun --nproc_per_node 1` (the torch.distributed.run module)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "ddp.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1"]
        cmd += ["--master_port", str(free_port()), __file__, "--ddp-child", str(result)]
        cmd += ["--device", str(device), "--steps", str(steps), "--batch", str(batch)]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, timeout=timeout, check=False)
        if proc.returncode != 0 or not result.exists():
            raise SystemExit(f"[gpu_check] the torchrun part failed (exit {proc.returncode})")
        return json.loads(result.read_text())


def ddp_child(result: Path, device: torch.device, steps: int, batch: int) -> None:
    """In the torchrun child: the process group (nccl on CUDA, gloo on CPU), DDP, the steps."""
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        data = synthetic_data("cifar100", 100.0, 2)
        cfg = paper_config(device, steps, batch, len(data.y))
        backend, world = dist.get_backend(), dist.get_world_size()
        what = f"as paper, torchrun --nproc_per_node {world}, DDP over {backend}"
        out = {
            "part": "ddp",
            "what": what,
            **train_steps(cfg, data, device, chunks(steps), ddp=True),
        }
        out.update(backend=backend, world_size=world)
    finally:
        dist.destroy_process_group()
    atomic_write_text(result, json.dumps(out) + "\n")


# ---- the table -----------------------------------------------------------------------------
def cpu_figure() -> dict[str, Any] | None:
    """bench/train_throughput.json's 'prl default' row (the same model and batch on a CPU), if present."""
    if not CPU_TABLE.is_file():
        return None
    table = json.loads(CPU_TABLE.read_text())
    row = next((r for r in table.get("rows", []) if r.get("variant") == "prl default"), None)
    machine = table.get("machine", {})
    if row is None:
        return None
    return {
        "img_per_s": row["img_per_s"],
        "cpu": machine.get("cpu", "?"),
        "threads": machine.get("threads", "?"),
    }


def machine_info(device: torch.device) -> dict[str, Any]:
    """The device, torch, CUDA and cuDNN versions."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU dry run)"
    cudnn = torch.backends.cudnn.version() if device.type == "cuda" else None
    return {
        "device": str(device),
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
    }


def report(rows: list[dict], meta: dict, cpu: dict | None) -> str:
    """The Markdown table and its lines."""
    fmt = lambda v, f: "-" if v is None else format(v, f)
    dry = "" if meta["device"].startswith("cuda") else " (a CPU dry run: NOT the GPU check)"
    lines = [
        f"# GPU check: smoke preset, paper model under AMP and channels-last, DDP{dry}",
        "",
        f"Device {meta['gpu']} ({meta['device']}), torch {meta['torch']}, CUDA {meta['cuda']}, "
        f"cuDNN {meta['cudnn']}; autocast {rows[1]['autocast']}, channels-last "
        f"{rows[1]['channels_last']}. Total {meta['seconds']:.0f} s (goal under {BUDGET_S} s: "
        f"{'met' if meta['seconds'] < BUDGET_S else 'NOT met'}). Made by `bench/gpu_check.py`; "
        "the parts are described there.",
        "",
        "| part | what | steps | batch | images/s | peak GPU memory (MiB) | loss first -> final |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        loss = f"{r['loss_first']:.3f} -> {r['loss_final']:.3f}"
        lines.append(
            f"| {r['part']} | {r['what']} | {r['steps']} | {r['batch']} | "
            f"{r['img_per_s']:.1f} | {fmt(r['peak_mib'], '.0f')} | {loss} |"
        )
    if cpu:
        lines.append(
            f"| cpu | bench/train_throughput.md, prl default ({cpu['cpu']}, {cpu['threads']} "
            f"thread(s)) | - | 128 | {cpu['img_per_s']:.1f} | - | - |"
        )
    lines += ["", f"- smoke: top-1 after the last epoch {rows[0]['top1']:.1f}."]
    if cpu:
        lines.append(f"- paper / cpu images/s: **{rows[1]['img_per_s'] / cpu['img_per_s']:.1f}x**.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cuda", help="cuda (the check) | cpu (a dry run)")
    ap.add_argument("--require-gpu", action="store_true", help="exit 1 when there is no CUDA")
    ap.add_argument("--steps", type=int, default=300, help="steps of the paper part")
    ap.add_argument("--ddp-steps", type=int, default=120, help="steps of the torchrun part")
    ap.add_argument("--smoke-batches", type=int, default=0, help="cap per smoke epoch (0: all)")
    ap.add_argument("--batch", type=int, default=0, help="paper batch (0: the paper preset's)")
    ap.add_argument("--synthetic", action="store_true", help="smoke part on synthetic images")
    ap.add_argument("--ddp-child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.device not in ("cuda", "cpu"):
        ap.error(f"--device {a.device!r}: give cuda (the check) or cpu (a dry run)")
    if a.device == "cuda" and not torch.cuda.is_available():
        print(
            "[gpu_check] did not run: no CUDA device here (torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda}); nothing written. Run it on "
            "a machine with one CUDA GPU, or pass --device cpu for a dry run of the code path"
        )
        return 1 if a.require_gpu else 0
    if a.require_gpu and a.device == "cpu":
        ap.error("--require-gpu with --device cpu: drop one of them")
    device = pick_device(a.device)
    batch = a.batch or TrainConfig.from_params(preset="paper").batch_size
    if a.ddp_child:
        ddp_child(Path(a.ddp_child), device, a.steps, batch)
        return 0
    t0 = time.perf_counter()
    rows = [run_smoke(device, a.smoke_batches, a.synthetic), run_paper(device, a.steps, batch)]
    rows.append(run_ddp(device, a.ddp_steps, batch, BUDGET_S))
    meta = {**machine_info(device), "seconds": time.perf_counter() - t0}
    cpu = cpu_figure()
    out = out_dir(NAME)
    payload = {"machine": meta, "rows": rows, "cpu_figure": cpu}
    atomic_write_text(out / f"{NAME}.json", json.dumps(payload, indent=2) + "\n")
    text = report(rows, meta, cpu)
    atomic_write_text(out / f"{NAME}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
