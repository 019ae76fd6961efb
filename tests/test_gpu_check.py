"""bench/gpu_check.py: without CUDA it says it did not run and writes nothing; on a CPU its
`--device cpu` dry run goes through every part (fit, the paper model's steps, torchrun with gloo)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import gpu_check


@pytest.mark.parametrize("argv, status", [([], 0), (["--require-gpu"], 1)])
def test_without_cuda_it_says_so_and_writes_nothing(monkeypatch, tmp_path, capsys, argv, status):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("BENCH_OUT", str(tmp_path / "out"))
    assert gpu_check.main(argv) == status
    assert "did not run: no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_require_gpu_with_a_cpu_dry_run_is_refused():
    with pytest.raises(SystemExit):
        gpu_check.main(["--device", "cpu", "--require-gpu"])


@pytest.mark.slow  # about 15 s on 2 cores: three parts and a torchrun child
def test_cpu_dry_run_goes_through_every_part(tmp_path):
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--synthetic"]
    cmd += ["--steps", "2", "--ddp-steps", "2", "--smoke-batches", "2", "--batch", "16"]
    env = {**os.environ, "BENCH_OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {r["part"]: r for r in out["rows"]}
    assert list(rows) == ["smoke", "paper", "ddp"]
    assert rows["ddp"]["backend"] == "gloo" and rows["ddp"]["world_size"] == 1
    assert rows["paper"]["batch"] == 16 and rows["paper"]["steps"] == 2
    for r in rows.values():
        assert r["img_per_s"] > 0 and math.isfinite(r["loss_final"]), r
    assert "CPU dry run: NOT the GPU check" in (tmp_path / "gpu_check.md").read_text()
