"""DistributedDataParallel under torchrun: two CPU processes with the gloo backend."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lib.core.paths import REPO_ROOT
from lib.longtail.train import load_checkpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # about 2-10 s on 2 cores: left out of make test-fast
def test_torchrun_two_processes_train_in_step(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "lib.longtail.train",
        f"run_dir={tmp_path}",
        "method='prl'",
        "n_max=20",
        "imb_ratio=10",
        "epochs=2",
        "batch_size=16",
        "max_batches=2",
        "eval_per_class=5",
        "warmup_epochs=1",
        "progress=False",
        "device='cpu'",
    ]
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    digests = dict(re.findall(r"rank (\d) weights_digest (\S+)", proc.stdout))
    assert (
        set(digests) == {"0", "1"} and digests["0"] == digests["1"]
    )  # DDP kept the replicas equal
    ckpt = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert ckpt["epoch"] == 2 and ckpt["meta"]["method"] == "prl"
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3
