"""Training of the NMR denoiser: learning, checkpoints, exact resume, ablation configs."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from lib.nmr.evaluate import ABLATIONS, ablated
from lib.nmr.preprocess import PrepConfig
from lib.nmr.simulate import SimConfig, simulate_set
from lib.nmr.train import TrainConfig, build_train_data, consistency_set, lr_factor, train
from lib.nmr.unet import UNetConfig

NET = UNetConfig(base=8)


@pytest.fixture(scope="module")
def data():
    s = simulate_set(SimConfig(n_points=2048, snr_range=(5, 20)), 8, seed=11)
    return build_train_data(s.x)


def cfg(**kw) -> TrainConfig:
    base = TrainConfig(epochs_a=1, epochs_b=1, batch=2, crop=256, steps_per_epoch=2, lr=1e-3, warmup_epochs=1)
    return replace(base, **kw)


def test_training_lowers_the_loss(data):
    _, hist = train(data, cfg(epochs_a=3, epochs_b=0, steps_per_epoch=5, batch=4), NET, progress=False)
    assert hist[-1]["rec"] < hist[0]["rec"]
    assert {"rec", "deriv", "curv", "cons", "T", "seconds"} <= set(hist[0])


def test_resume_reproduces_the_uninterrupted_run(data, tmp_path):
    full, _ = train(data, cfg(), NET, progress=False)
    ck = tmp_path / "ck.pt"
    train(data, cfg(epochs_b=0), NET, checkpoint=ck, progress=False)  # stops after stage A
    # a second run with the full schedule continues from the stored epoch
    st = torch.load(ck, weights_only=True)
    assert st["epoch"] == 1
    resumed, hist = train(data, cfg(), NET, checkpoint=ck, resume=True, progress=False)
    assert len(hist) == 2
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(FileExistsError, match="resume=True"):
        train(data, cfg(), NET, checkpoint=ck, progress=False)


@pytest.mark.parametrize("ab", ABLATIONS, ids=lambda a: a.name)
def test_every_ablation_trains(data, ab):
    prep, tcfg = ablated(ab, PrepConfig(), cfg(steps_per_epoch=1, epochs_b=0))
    d = data if prep == PrepConfig() else build_train_data(
        simulate_set(SimConfig(n_points=2048), 2, seed=12).x, prep)
    _, hist = train(d, tcfg, NET, progress=False)
    assert np.isfinite(hist[-1]["total"])


def test_curriculum_opens_towards_the_input():
    rng = np.random.default_rng(0)
    early = {k for _ in range(50) for k in consistency_set(3, "B", 0.0, 2, rng)}
    late = {k for _ in range(50) for k in consistency_set(3, "B", 1.0, 2, rng)}
    assert min(early) == 2 and min(late) == 0
    assert lr_factor(0, 10, 100) == pytest.approx(0.1) and lr_factor(100, 10, 100) == pytest.approx(0.0)


def test_bad_crop_rejected(data):
    with pytest.raises(ValueError, match="divisible by 16"):
        train(data, cfg(crop=500), NET, progress=False)
