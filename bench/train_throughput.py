"""Training-step throughput against an eager reference: 3-expert ResNet-32 at CIFAR shape.

    make bench NAME=train_throughput            # the claim: -> bench/ with its provenance
    .venv/bin/python bench/train_throughput.py --rounds 3 --no-compile   # quicker

The reference is written here, plainly, the way the published SADE/RIDE code expresses the
model: shared stem and first stage, then each expert's stages 2-3 and cosine head in a Python
loop, NCHW, float32, SADE's three logit-adjusted cross-entropies summed. Its step gets an
already normalized batch (the published code augments in data-loader workers), so it is timed
without augmentation; every workbook step includes its batched augmentation.

The workbook's steps are the training path of notebook 03: `prepare_batch` (crop pad 4, flip,
rotation 15, normalization) then `train_step` (forward of all experts, the method's loss,
backward, clipping for prl, SGD with Nesterov) with the settings of a TrainConfig: `default`
is TrainConfig's own runtime settings on this device (channels-last; bfloat16 autocast on a
CPU with native bf16, float16 on CUDA), the others change one of them. Batch 128, 100 classes,
3x32x32, RIDE's reduced widths 24/48.

All variants are timed in interleaved rounds in one process, so their ratios share the
machine's load; each figure is the median over rounds of the mean step time of a round. Peak
memory is measured per variant in a fresh subprocess (CPU: growth of the peak resident set
over the built model's; CUDA: torch.cuda.max_memory_allocated).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import out_dir
from lib.core.device import autocast_dtype, cpu_has_native_bf16, pick_device
from lib.core.io import atomic_write_text
from lib.core.provenance import cpu_name
from lib.longtail.data import AugmentConfig
from lib.longtail.models import ModelConfig, build_model
from lib.longtail.train import TrainConfig, expert_adjustments
from lib.longtail.train.config import check_config
from lib.longtail.train.data import TrainData, prepare_batch
from lib.longtail.train.loop import grad_scaler_for, optimizer_for, train_step
from lib.longtail.train.scalarize import sample_preferences

BATCH, CLASSES, EXPERTS = 128, 100, 3
MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
REFERENCE = "reference"
# setting -> TrainConfig overrides of the runtime settings ("default": TrainConfig's own)
SETTINGS = {
    "default": {},
    "float32": {"amp": False},
    "float32, NCHW": {"amp": False, "channels_last": False},
    "compiled": {"compile": True},
}
VARIANTS = [REFERENCE] + [f"{m} {s}" for s in SETTINGS for m in ("sade", "prl")]


# ---- the reference, written the plain way -------------------------------------------------
class RefBlock(nn.Module):
    """Basic block with the option-A shortcut (subsample, zero-pad the new channels)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.extra:
            short = F.pad(
                x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2)
            )
        return F.relu(out + short)


def ref_stage(cin: int, cout: int, stride: int) -> nn.Sequential:
    """Five blocks; the first changes width and resolution."""
    return nn.Sequential(RefBlock(cin, cout, stride), *[RefBlock(cout, cout, 1) for _ in range(4)])


class ReferenceModel(nn.Module):
    """Shared stem + stage 1; per expert stages 2-3, pooling and a cosine head, looped over."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = ref_stage(16, 16, 1)
        self.layer2s = nn.ModuleList(ref_stage(16, 24, 2) for _ in range(EXPERTS))
        self.layer3s = nn.ModuleList(ref_stage(24, 48, 2) for _ in range(EXPERTS))
        self.heads = nn.ParameterList(
            nn.Parameter(torch.randn(48, CLASSES) * 0.1) for _ in range(EXPERTS)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        shared = self.layer1(F.relu(self.bn1(self.conv1(x))))
        outs = []
        for e in range(EXPERTS):
            f = self.layer3s[e](self.layer2s[e](shared))
            f = F.adaptive_avg_pool2d(f, 1).flatten(1)
            outs.append(30 * F.normalize(f, dim=1) @ F.normalize(self.heads[e], dim=0))
        return outs


def reference_step(log_prior: torch.Tensor):
    """A closure: one SADE step of the reference on a fixed normalized batch."""
    torch.manual_seed(0)
    model = ReferenceModel()
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    x = torch.randn(BATCH, 3, 32, 32)
    y = torch.randint(0, CLASSES, (BATCH,))
    # forward expert: plain CE; uniform: + log prior; backward: + log prior - 2 log(reversed prior)
    shifts = [0 * log_prior, log_prior, log_prior - 2 * log_prior.flip(0)]

    def step() -> None:
        outs = model(x)
        loss = sum(F.cross_entropy(z + s, y) for z, s in zip(outs, shifts, strict=True))
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


# ---- the workbook's training path ----------------------------------------------------------
def workbook_step(method: str, setting: str, device: torch.device, prior: np.ndarray):
    """A closure: one step of notebook 03's path (prepare_batch + train_step) under a setting."""
    cfg = check_config(TrainConfig.from_params(method=method, **SETTINGS[setting]))
    torch.manual_seed(0)
    model = build_model(
        ModelConfig("resnet32", CLASSES, EXPERTS, 3, True, hypernet=method == "prl")
    ).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if cfg.compile else model
    amp = autocast_dtype(device) if cfg.amp else None
    opt, scaler = optimizer_for(model, cfg), grad_scaler_for(amp)
    X = torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, CLASSES, (BATCH,)).to(device)
    data = TrainData(X, y, X, y, prior, np.array(["many"] * CLASSES), MEAN, STD)
    adjust = expert_adjustments(method, prior, EXPERTS, cfg.sade_lambda).to(device)
    prefs = torch.from_numpy(sample_preferences(np.random.default_rng(0), EXPERTS, 1000))
    aug, g = AugmentConfig(cfg.pad, cfg.flip, cfg.rotation), torch.Generator().manual_seed(0)
    uniform = torch.full((EXPERTS,), 1 / EXPERTS, device=device)
    it = iter(range(10**9))

    def step() -> None:
        x = prepare_batch(X, data, device, aug, g, cfg.channels_last)
        r = prefs[next(it) % 1000].to(device) if method == "prl" else uniform
        train_step(net, opt, scaler, x, y, r, cfg, adjust, prior, amp)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def make_step(name: str, device: torch.device):
    """The step closure of a variant name."""
    prior = np.array([int(500 * 0.01 ** (i / (CLASSES - 1))) for i in range(CLASSES)], float)
    prior /= prior.sum()
    if name == REFERENCE:
        if device.type != "cpu":
            raise ValueError("the reference runs on the CPU only")
        return reference_step(torch.from_numpy(prior).float().log())
    method, setting = name.split(" ", 1)
    return workbook_step(method, setting, device, prior)


# ---- memory --------------------------------------------------------------------------------
def peak_memory(name: str, steps: int, device: str) -> float:
    """Peak memory (MiB) of `steps` training steps of one variant, measured in a fresh process."""
    cmd = [sys.executable, __file__, "--memory-of", name, "--device", device]
    cmd += ["--threads", str(torch.get_num_threads()), "--steps", str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory run of {name!r} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def memory_child(name: str, steps: int, device: torch.device) -> float:
    """Run in the child: peak memory of the steps above the built model's resident baseline (MiB)."""
    step = make_step(name, device)
    if device.type == "cuda":
        step()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            step()
        return torch.cuda.max_memory_allocated() / 2**20
    # /proc's VmHWM, not getrusage: ru_maxrss survives exec, so a child would report its parent's peak
    base = _status_kib("VmRSS")
    try:  # reset the high-water mark to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    for _ in range(steps + 1):
        step()
    return (_status_kib("VmHWM") - base) / 1024


def _status_kib(key: str) -> int:
    """A memory figure (KiB) of this process from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status (Linux only)")


# ---- timing and the table ------------------------------------------------------------------
def time_variants(names: list[str], device: torch.device, rounds: int, steps: int) -> dict:
    """Median step time (s) of each variant over interleaved rounds."""
    closures, times = {}, {n: [] for n in names}
    for n in names:
        t0 = time.perf_counter()
        closures[n] = make_step(n, device)
        closures[n]()  # warm-up (and compilation)
        print(f"built {n} (+ first step) in {time.perf_counter() - t0:.1f} s", flush=True)
    for r in range(rounds):
        for n in names:
            t0 = time.perf_counter()
            for _ in range(steps):
                closures[n]()
            times[n].append((time.perf_counter() - t0) / steps)
        print(
            f"round {r + 1}/{rounds}: "
            + ", ".join(f"{n} {BATCH / times[n][-1]:.0f}" for n in names),
            flush=True,
        )
    return {n: statistics.median(t) for n, t in times.items()}


def report(med: dict, peaks: dict, meta: dict) -> str:
    """The Markdown table and the goal lines."""
    ref = med.get(REFERENCE)
    lines = [
        f"# Training-step throughput: 3-expert ResNet-32, CIFAR shape (batch {BATCH}, "
        f"{CLASSES} classes, widths 24/48)",
        "",
        f"Machine: {meta['cores']}-core CPU ({meta['cpu']}, native bf16: {meta['native_bf16']}), "
        f"torch {meta['torch']}, {meta['threads']} threads, device {meta['device']}; load average "
        f"at the end {meta['load_avg_at_end'][0]:.1f} (the machine is shared). Median over "
        f"{meta['rounds']} interleaved rounds of {meta['steps']} steps. Made by "
        "`bench/train_throughput.py`; the reference and the settings are described there.",
        "",
        "| variant | images/s | step (ms) | speed-up vs reference | prl / sade step time | "
        "peak step memory (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for n, t in med.items():
        setting = "" if n == REFERENCE else n.split(" ", 1)[1]
        speed = f"{ref / t:.2f}" if ref else "-"
        pair = f"{med[f'prl {setting}'] / med[f'sade {setting}']:.3f}" if setting else "-"
        lines.append(
            f"| {n} | {BATCH / t:.1f} | {1000 * t:.0f} | {speed} | {pair} | {peaks[n]:.0f} |"
        )
    if ref:
        default = min(ref / med[f"{m} default"] for m in ("sade", "prl"))
        best_name = min((n for n in med if n != REFERENCE), key=med.get)
        best = ref / med[best_name]
        ok = lambda c: "met" if c else "NOT met"
        lines += [
            "",
            f"- Default training path (augmentation included) vs the reference: "
            f"**{default:.2f}x** for the slower of sade and prl (goal >= 1.5: {ok(default >= 1.5)}).",
            f"- Best setting ({best_name}): **{best:.2f}x** (goal >= 2: {ok(best >= 2)}).",
        ]
    overhead = med["prl default"] / med["sade default"]
    lines += [
        f"- prl / sade step time at the default settings: **{overhead:.3f}** "
        f"(goal <= 1.10: {'met' if overhead <= 1.10 else 'NOT met'}).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median over them)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.memory_of:
        print(memory_child(args.memory_of, args.steps, device))
        return 0
    names = [
        n
        for n in VARIANTS
        if not (args.no_compile and n.endswith("compiled"))
        and not (n == REFERENCE and device.type != "cpu")
    ]
    med = time_variants(names, device, args.rounds, args.steps)
    peaks = {n: peak_memory(n, 2, str(device)) for n in names}
    meta = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "native_bf16": cpu_has_native_bf16(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "load_avg_at_end": os.getloadavg(),
        "rounds": args.rounds,
        "steps": args.steps,
    }
    rows = [
        {"variant": n, "img_per_s": BATCH / t, "step_ms": 1000 * t, "peak_mib": peaks[n]}
        for n, t in med.items()
    ]
    atomic_write_text(
        out_dir("train_throughput") / "train_throughput.json",
        json.dumps({"machine": meta, "rows": rows}, indent=2) + "\n",
    )
    text = report(med, peaks, meta)
    atomic_write_text(out_dir("train_throughput") / "train_throughput.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
