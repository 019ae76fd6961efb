"""DistributedDataParallel when started by torchrun; a no-op single process otherwise.

    torchrun --nproc_per_node 2 -m lib.longtail.train run_dir=runs/ddp epochs=2

Every rank walks the same seeded permutation and takes its share of each global batch,
so the global batch size (and the learning rate that goes with it) does not change with
the number of processes. Rank 0 alone writes checkpoints, metrics and the configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and local rank of this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA); single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return info


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """The CUDA device of this rank (by local rank), or the given device."""
    if device.type == "cuda" and info.enabled:
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return device


def shard(batch: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's share of a global batch of indices."""
    return batch[info.rank :: info.world_size] if info.enabled else batch


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op without a process group)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
