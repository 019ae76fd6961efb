"""Pick the compute device: CUDA when present, else CPU."""

from __future__ import annotations

import torch


def pick_device(device: str = "auto") -> torch.device:
    """`auto` -> cuda if available else cpu; otherwise the named device, checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={device!r} asked for CUDA but none is available; use device='auto' or 'cpu'"
        )
    return dev


def describe_device(dev: torch.device | None = None) -> dict:
    """Human-readable description of the device and CPU threads, for run records."""
    dev = dev or pick_device()
    info = {"device": str(dev), "torch_threads": torch.get_num_threads()}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
        info["cuda"] = torch.version.cuda
    return info
