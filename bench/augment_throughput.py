"""Throughput of the batched on-device augmentation (crop pad 4, flip, rotation 15).

Compares, in one process, one grid_sample over the whole batch (lib.longtail.data.augment_batch)
against the same transform applied image by image, the way a per-sample Dataset
transform would run (`make bench NAME=augment_throughput`).

    .venv/bin/python bench/augment_throughput.py
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from bench.common import out_dir
from lib.core.provenance import cpu_name
from lib.longtail.data import AugmentConfig, augment_batch


def median_rate(fn, n_images: int, repeats: int = 7) -> float:
    """Median images per second over `repeats` timed calls (one warm-up call first)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n_images / statistics.median(times)


def main() -> None:
    cfg = AugmentConfig(pad=4, flip=True, rotation=15)
    rows = []
    for shape in [(128, 3, 32, 32), (128, 1, 28, 28)]:
        X = torch.rand(shape)
        g = torch.Generator().manual_seed(0)
        batched = median_rate(lambda X=X, g=g: augment_batch(X, cfg, g), shape[0])
        per_image = median_rate(
            lambda X=X, g=g: torch.cat([augment_batch(x[None], cfg, g) for x in X]), shape[0]
        )
        rows.append(
            {
                "batch": "x".join(map(str, shape)),
                "batched_img_s": round(batched),
                "per_image_img_s": round(per_image),
                "speedup": round(batched / per_image, 1),
            }
        )
    machine = f"{cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    out = {"machine": machine, "rows": rows}
    (out_dir("augment_throughput") / "augment_throughput.json").write_text(
        json.dumps(out, indent=2) + "\n"
    )
    lines = [
        f"Machine: {machine}",
        "",
        "| batch | batched (img/s) | per image (img/s) | speed-up |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['batch']} | {r['batched_img_s']:,} | {r['per_image_img_s']:,} | {r['speedup']}x |"
        for r in rows
    ]
    (out_dir("augment_throughput") / "augment_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
