"""Training-step throughput and peak memory: 3-expert ResNet-32 at CIFAR shape, sade vs prl.

    .venv/bin/python bench/train_throughput.py            # writes bench/train_throughput.{json,md}
    .venv/bin/python bench/train_throughput.py --rounds 3 --steps 3 --no-compile   # quicker

One step = batched augmentation (crop pad 4, flip, rotation 15) + normalization + forward of
all experts + logit-adjusted losses (+ scalarization and generated heads for prl) + backward
+ SGD (Nesterov). Batch 128, 100 classes, 3x32x32, reduced widths (24/48). Variants are timed
in interleaved rounds in one process, so the ratios share the machine's load; each figure
is the median over rounds of the mean step time of a round. Peak memory is measured per
variant in a fresh subprocess (CPU: growth of the peak resident set over the built model's;
CUDA: torch.cuda.max_memory_allocated).
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.data import AugmentConfig, augment_batch, normalize
from lib.models import ModelConfig, build_model
from lib.runinfo import cpu_name
from lib.train import expert_adjustments, sample_preferences, training_loss

HERE = Path(__file__).resolve().parent
MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
# setting -> (channels_last, batched augmentation, compile); each is run for sade and prl
SETTINGS = {
    "plain": (False, True, False),
    "per-image augmentation": (False, False, False),
    "channels-last": (True, True, False),
    "compiled": (False, True, True),
    "channels-last + compiled": (True, True, True),
}
VARIANTS = {f"{m} {s}": (m, *flags) for s, flags in SETTINGS.items() for m in ("sade", "prl")}


def make_step(
    method: str,
    channels_last: bool,
    batched_aug: bool,
    compiled: bool,
    batch: int,
    device: torch.device,
):
    """A closure running one training step on a fixed synthetic CIFAR-shaped batch."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("resnet32", 100, 3, 3, True, hypernet=method == "prl")).to(
        device
    )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    prior = np.array([int(500 * 0.01 ** (i / 99)) for i in range(100)], dtype=float)
    prior = prior / prior.sum()
    adjust = expert_adjustments(method, prior, 3).to(device)
    X = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8).to(device)
    y = torch.randint(0, 100, (batch,)).to(device)
    prefs = torch.from_numpy(sample_preferences(np.random.default_rng(0), 3, 1000)).to(device)
    aug, g = AugmentConfig(4, True, 15.0), torch.Generator().manual_seed(0)
    uniform = torch.full((3,), 1 / 3, device=device)
    it = iter(range(10**9))

    def step() -> None:
        x = X.float() / 255
        x = (
            augment_batch(x, aug, g)
            if batched_aug
            else torch.cat([augment_batch(xi[None], aug, g) for xi in x])
        )
        x = normalize(x, MEAN, STD)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        r = prefs[next(it) % 1000] if method == "prl" else uniform
        loss = training_loss(method, net(x, r), y, r, adjust, prior)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def peak_memory(name: str, batch: int, steps: int) -> float:
    """Peak memory (MiB) of `steps` training steps of one variant, measured in a fresh process."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--memory-of",
            name,
            "--batch",
            str(batch),
            "--steps",
            str(steps),
            "--threads",
            str(torch.get_num_threads()),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"memory run of {name!r} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def memory_child(name: str, batch: int, steps: int, device: torch.device) -> float:
    """Run in the child: peak memory of the steps above the built model's resident baseline (MiB)."""
    step = make_step(*VARIANTS[name], batch, device)
    if device.type == "cuda":
        step()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            step()
        return torch.cuda.max_memory_allocated() / 2**20
    # /proc's VmHWM, not getrusage: ru_maxrss survives exec, so a child would report its parent's peak
    base = _status_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text(
            "5"
        )  # reset the high-water mark to the current RSS
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


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument(
        "--rounds", type=int, default=5, help="interleaved timing rounds (median over rounds)"
    )
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    if args.memory_of:
        print(memory_child(args.memory_of, args.batch, args.steps, device))
        return 0
    names = [n for n in VARIANTS if not (args.no_compile and VARIANTS[n][3])]
    steps, times = {}, {n: [] for n in names}
    for n in names:
        t0 = time.perf_counter()
        steps[n] = make_step(*VARIANTS[n], args.batch, device)
        steps[n]()  # warm-up (and compilation)
        print(f"built {n} (+ first step) in {time.perf_counter() - t0:.1f} s", flush=True)
    for r in range(args.rounds):
        for n in names:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                steps[n]()
            times[n].append((time.perf_counter() - t0) / args.steps)
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{n} {args.batch / times[n][-1]:.0f}" for n in names),
            flush=True,
        )
    med = {n: statistics.median(times[n]) for n in names}
    rows = []
    for n in names:
        method, setting = n.split(" ", 1)
        rows.append(
            {
                "variant": n,
                "method": method,
                "setting": setting,
                "img_per_s": args.batch / med[n],
                "step_ms": 1000 * med[n],
                "speedup_vs_plain": med[f"{method} plain"] / med[n],
                "prl_over_sade": med[f"prl {setting}"] / med[f"sade {setting}"],
            }
        )
    del steps
    for row in rows:
        row["peak_mib"] = peak_memory(row["variant"], args.batch, 2)
    overhead = med["prl plain"] / med["sade plain"]
    machine = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "load_avg_at_end": os.getloadavg(),
    }
    out = {
        "batch": args.batch,
        "rounds": args.rounds,
        "steps": args.steps,
        "machine": machine,
        "prl_over_sade_step_time": overhead,
        "rows": rows,
    }
    (HERE / "train_throughput.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"# Training-step throughput: 3-expert ResNet-32, CIFAR shape (batch {args.batch}, 100 classes, "
        "widths 24/48)",
        "",
        f"Machine: {machine['cores']}-core CPU ({machine['cpu']}), torch {machine['torch']}, "
        f"{machine['threads']} threads, device {machine['device']}; load average at the end "
        f"{machine['load_avg_at_end'][0]:.1f} (the machine is shared). Median over {args.rounds} interleaved "
        f"rounds of {args.steps} steps.",
        "",
        "| method | setting | images/s | step (ms) | speed-up vs plain | prl / sade step time | "
        "peak step memory (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['method']} | {r['setting']} | {r['img_per_s']:.1f} | {r['step_ms']:.0f} | "
        f"{r['speedup_vs_plain']:.2f} | {r['prl_over_sade']:.3f} | {r['peak_mib']:.0f} |"
        for r in rows
    ]
    best = max(rows, key=lambda r: r["img_per_s"] if r["method"] == "prl" else 0)
    lines += [
        "",
        f"prl / sade step time, plain: **{overhead:.3f}**; {best['setting']}: "
        f"**{best['prl_over_sade']:.3f}** (goal <= 1.10). Fastest prl: {best['img_per_s']:.0f} images/s "
        f"({best['setting']}).",
        "",
    ]
    (HERE / "train_throughput.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
