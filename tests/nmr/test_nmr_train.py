"""Training of the NMR denoiser: learning, checkpoints, exact resume, ablation configs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.core.seeding import seed_weights
from lib.nmr.evaluate import ABLATIONS, ablated
from lib.nmr.losses import LossWeights
from lib.nmr.preprocess import PrepConfig
from lib.nmr.simulate import SpectrumSimConfig, simulate_set
from lib.nmr.train import (
    DenoiserTrainConfig,
    batch_loss,
    build_train_data,
    consistency_set,
    lr_factor,
    renoise,
    train,
)
from lib.nmr.unet import UNet1D, UNetConfig

NET = UNetConfig(base=8)


@pytest.fixture(scope="module")
def data():
    s = simulate_set(SpectrumSimConfig(n_points=2048, snr_range=(5, 20)), 8, seed=11)
    return build_train_data(s.x)


def cfg(**kw) -> DenoiserTrainConfig:
    base = DenoiserTrainConfig(
        epochs_a=1, epochs_b=1, batch=2, crop=256, steps_per_epoch=2, lr=1e-3, warmup_epochs=1
    )
    return replace(base, **kw)


def fixed_rec(model: UNet1D, data) -> float:
    """Reconstruction loss on whole spectra, acquisition 1 as input: one fixed evaluation."""
    t = {k: torch.from_numpy(getattr(data, k)) for k in ("x", "target", "peak", "base")}
    with torch.no_grad():
        out = batch_loss(
            model.eval(), t["x"], t["x"][:, 1], t["target"][:, 1], t["peak"], t["base"],
            [0, 1], LossWeights(), data.T,
        )  # fmt: skip
    return float(out["rec"])


def test_training_lowers_the_loss(data):
    # the per-epoch means of 5 random batches rise and fall by 10%; a fixed evaluation does not
    seed_weights(0)  # train() seeds the same way, so this is its starting point
    before = fixed_rec(UNet1D(NET), data)
    model, hist = train(
        data, cfg(epochs_a=3, epochs_b=0, steps_per_epoch=5, batch=4), NET, progress=False
    )
    assert fixed_rec(model, data) < before
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


def test_resume_with_other_settings_is_refused(data, tmp_path):
    ck = tmp_path / "ck.pt"
    train(data, cfg(epochs_b=0), NET, checkpoint=ck, progress=False)
    for change, key in ((dict(lr=5e-4), "train.lr"), (dict(seed=3), "train.seed")):
        with pytest.raises(
            ValueError, match=rf"other settings \({key}.*same settings or start a new run"
        ):
            train(data, cfg(**change), NET, checkpoint=ck, resume=True, progress=False)
    with pytest.raises(ValueError, match="net.base"):
        train(data, cfg(), UNetConfig(base=16), checkpoint=ck, resume=True, progress=False)
    ck.write_bytes(
        ck.read_bytes()[:100]
    )  # a truncated file: read through lib/core/state.py, a clear error
    with pytest.raises(ValueError, match="corrupt or truncated"):
        train(data, cfg(), NET, checkpoint=ck, resume=True, progress=False)


@pytest.fixture(scope="module")
def stage_a_checkpoint(data, tmp_path_factory):
    """A checkpoint after stage A (one epoch), written once for the tests that edit copies."""
    ck = tmp_path_factory.mktemp("nmr_ck") / "ck.pt"
    train(data, cfg(epochs_b=0), NET, checkpoint=ck, progress=False)
    return ck


def _edited(ck: Path, tmp_path: Path, name: str, edit) -> Path:
    """A copy of checkpoint `ck` named `name`, changed by `edit(state)`."""
    st = torch.load(ck, weights_only=True)
    edit(st)
    out = tmp_path / name
    torch.save(st, out)
    return out


@pytest.mark.parametrize(
    "name, edit, msg",
    [
        ("extra.pt", lambda st: st["model"].update(stray=torch.zeros(1)), "unexpected key.*stray"),
        ("missing.pt", lambda st: st["model"].pop(next(iter(st["model"]))), "missing key"),
        (
            "shape.pt",
            lambda st: st["model"].update({k: torch.zeros(1) for k in list(st["model"])[:1]}),
            "wrong shape",
        ),
        ("negative.pt", lambda st: st.update(epoch=-5), "stores epoch -5"),
        ("text.pt", lambda st: st.update(epoch="1"), "stores epoch '1'"),
        ("no_opt.pt", lambda st: st.pop("opt"), "lacks opt"),
    ],
)
def test_resume_refuses_edited_checkpoints_naming_the_file(
    data, stage_a_checkpoint, tmp_path, name, edit, msg
):
    # the checks the long-tail trainer uses (lib/core/state.py), not load_state_dict's RuntimeError
    bad = _edited(stage_a_checkpoint, tmp_path, name, edit)
    with pytest.raises(ValueError, match=msg) as e:
        train(data, cfg(), NET, checkpoint=bad, resume=True, progress=False)
    assert str(bad) in str(e.value)


@pytest.mark.parametrize("ab", ABLATIONS, ids=lambda a: a.name)
def test_every_ablation_trains(data, ab):
    prep, tcfg = ablated(ab, PrepConfig(), cfg(steps_per_epoch=1, epochs_b=0))
    d = (
        data
        if prep == PrepConfig()
        else build_train_data(simulate_set(SpectrumSimConfig(n_points=2048), 2, seed=12).x, prep)
    )
    _, hist = train(d, tcfg, NET, progress=False)
    assert np.isfinite(hist[-1]["total"])


def test_curriculum_opens_towards_the_input():
    rng = np.random.default_rng(0)
    early = {k for _ in range(50) for k in consistency_set(3, "B", 0.0, 2, rng)}
    late = {k for _ in range(50) for k in consistency_set(3, "B", 1.0, 2, rng)}
    assert min(early) == 2 and min(late) == 0
    assert lr_factor(0, 10, 100) == pytest.approx(0.1) and lr_factor(100, 10, 100) == pytest.approx(
        0.0
    )


def test_bad_crop_rejected(data):
    with pytest.raises(ValueError, match="divisible by 16"):
        train(data, cfg(crop=500), NET, progress=False)


def test_targets_leave_the_input_out():
    s = simulate_set(SpectrumSimConfig(n_points=2048), 2, seed=13, snr0=10)
    d = build_train_data(s.x, PrepConfig(fusion="best"))
    # the best acquisition's target is the next best one; every other target is the best one
    assert np.allclose(d.target[:, 3], d.x[:, 2]) and np.allclose(d.target[:, 0], d.x[:, 3])
    assert d.sigma.shape == (2, 4) and (np.diff(d.sigma, axis=1) < 0).all()  # noise falls with k


def test_renoise_lifts_inputs_to_a_noisier_level():
    rng = np.random.default_rng(0)
    sigma = np.array([[0.8, 0.4, 0.2, 0.1]] * 400, dtype=np.float32)
    kin = np.array([0, 1] * 200)
    n = renoise(sigma, kin, 1.0, 4096, rng).numpy()
    assert np.abs(n[kin == 0]).max() == 0  # acquisition 0 is already the noisiest
    assert n[kin == 1].std() == pytest.approx(np.sqrt(0.8**2 - 0.4**2), rel=0.02)
    assert np.abs(renoise(sigma, kin, 0.0, 64, rng).numpy()).max() == 0


def test_losses_in_noise_units_ignore_the_scale(data):
    torch.manual_seed(0)
    model = UNet1D(NET)
    torch.nn.init.normal_(model.head.weight, std=0.1)
    xb = torch.from_numpy(data.x[:2, :, :256])
    sb, mb, bb = (torch.from_numpy(a[:2, :256]) for a in (data.target[:, 1], data.peak, data.base))
    w = LossWeights(cons=0.5, T=0.2)
    a = batch_loss(model, xb, xb[:, 1], sb, mb, bb, [0, 2], w, data.T)
    b = batch_loss(model, 5 * xb, 5 * xb[:, 1], 5 * sb, mb, bb, [0, 2], w, data.T)
    assert float(a["cons"].detach()) > 0 and float(a["T"].detach()) > 0
    for k in ("rec", "deriv", "curv", "cons", "T"):
        assert float(a[k].detach()) == pytest.approx(float(b[k].detach()), rel=1e-4), k


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"input_acqs": (4,)}, "input_acqs"),
        ({"input_acqs": ()}, "input_acqs"),
        ({"renoise": 1.5}, "renoise"),
    ],
)
def test_bad_input_settings_rejected(data, kw, msg):
    with pytest.raises(ValueError, match=msg):
        train(data, cfg(**kw), NET, progress=False)
