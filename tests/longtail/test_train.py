"""Training: expert losses, scalarizations, schedule, checkpoints, exact resume, bad input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.longtail.models import ModelConfig, build_model
from lib.longtail.train import (
    TrainConfig,
    TrainData,
    balpoe_taus,
    config_for,
    expert_adjustments,
    expert_losses,
    fit,
    load_checkpoint,
    load_model,
    lr_at,
    mixture_loss,
    sade_adjustments,
    sample_preferences,
    save_checkpoint,
    scalarize,
    target_priors,
    training_loss,
)

PRIOR = np.array([0.5, 0.3, 0.15, 0.05])


def tiny_data(n: int = 40, classes: int = 4, size: int = 8, seed: int = 0) -> TrainData:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    X = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    X[:, :, :2, :2] = (y * 60).to(torch.uint8)[:, None, None, None]  # a learnable cue
    prior = np.bincount(y.numpy(), minlength=classes) / n
    groups = np.array(["many", "many", "medium", "few"][:classes])
    return TrainData(X, y, X[:20], y[:20], prior, groups, (0.5,), (0.25,))


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(
        method="prl",
        epochs=3,
        batch_size=8,
        lr=0.05,
        warmup_epochs=1,
        milestones=[2],
        max_batches=3,
        progress=False,
        device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)


def test_sade_trio_matches_forward_uniform_backward():
    a = sade_adjustments(PRIOR, 3, lam=2.0)
    lp = torch.tensor(np.log(PRIOR), dtype=torch.float32)
    assert torch.allclose(a[0], torch.zeros(4))  # forward: plain cross-entropy
    assert torch.allclose(a[1], lp)  # uniform: balanced softmax
    assert torch.allclose(a[2], lp - 2 * lp.flip(0))  # backward with lambda 2
    assert sade_adjustments(PRIOR, 5).shape == (5, 4)
    # classes not sorted by frequency (image lists): the reversal is by rank, as SADE's inverse_prior
    shuffled = PRIOR[[1, 0, 2, 3]]  # 0.3, 0.5, 0.15, 0.05 (a flip would give 0.05, 0.15, 0.5, 0.3)
    rev = np.log([0.15, 0.05, 0.3, 0.5])  # the most frequent class gets the least frequent prior
    b = sade_adjustments(shuffled, 3, lam=2.0)[2]
    assert torch.allclose(b, torch.tensor(np.log(shuffled) - 2 * rev, dtype=torch.float32))


def test_balpoe_taus_average_one_and_scale_log_prior():
    for e in (1, 2, 3, 7):
        assert math.isclose(np.mean(balpoe_taus(e)), 1.0)
    a = expert_adjustments("balpoe", PRIOR, 3)
    assert torch.allclose(a[2], 2 * torch.tensor(np.log(PRIOR), dtype=torch.float32))
    with pytest.raises(ValueError, match="one tau per expert"):
        expert_adjustments("balpoe", PRIOR, 3, taus=[1.0, 1.0])


def test_expert_losses_are_adjusted_cross_entropies():
    torch.manual_seed(0)
    z, y = torch.randn(3, 6, 4), torch.randint(0, 4, (6,))
    adj = expert_adjustments("sade", PRIOR, 3)
    got = expert_losses(z, y, adj)
    want = torch.stack([F.cross_entropy(z[e] + adj[e], y) for e in range(3)])
    assert torch.allclose(got, want, atol=1e-6)


def test_expert_target_priors_and_the_mixture_term():
    adj = expert_adjustments("sade", PRIOR, 3)
    pri = target_priors(adj, PRIOR)
    rev2 = PRIOR[::-1] ** 2 / (PRIOR[::-1] ** 2).sum()
    assert np.allclose(
        pri.numpy(), [PRIOR, np.full(4, 0.25), rev2], atol=1e-6
    )  # forward / uniform / backward
    torch.manual_seed(0)
    z, y = torch.randn(3, 16, 4), torch.randint(0, 4, (16,))
    for j in range(3):  # at a corner of the simplex the mixture term is that expert's own loss
        assert torch.isclose(
            mixture_loss(z, torch.eye(3)[j], y, adj, PRIOR), expert_losses(z, y, adj)[j], atol=1e-5
        )
    r = torch.tensor([0.2, 0.3, 0.5])
    assert torch.isclose(training_loss("sade", z, y, r, adj), expert_losses(z, y, adj).sum())
    assert torch.isclose(training_loss("prl", z, y, r, adj), scalarize(expert_losses(z, y, adj), r))
    assert torch.isclose(
        training_loss("prl", z, y, r, adj, PRIOR, mixture_weight=0.5),
        scalarize(expert_losses(z, y, adj), r) + 0.5 * mixture_loss(z, r, y, adj, PRIOR),
    )
    with pytest.raises(ValueError, match="training prior"):
        training_loss("prl", z, y, r, adj, mixture_weight=1.0)


def test_trained_hypernetwork_generates_heads_that_depend_on_the_preference(tmp_path):
    """Regression: with ReLU the hypernetwork's units all died and it emitted one head for every r."""
    res = fit(
        tiny_cfg(epochs=2, lr=0.1, mixture_weight=1.0, grad_clip=5.0),
        tmp_path,
        data=tiny_data(n=64),
    )
    model = res.model
    (w0, b0), (w2, b2) = model.heads(torch.eye(3)[0]), model.heads(torch.eye(3)[2])
    assert float((w0 - w2).norm() / w0.norm()) > 1e-3 and float((b0 - b2).abs().max()) > 1e-3
    assert np.isfinite(res.history["loss"]).all()


def test_bad_method_prior_and_expert_count_are_errors():
    with pytest.raises(ValueError, match="unknown method 'ride'"):
        expert_adjustments("ride", PRIOR, 3)
    with pytest.raises(ValueError, match="exactly three experts"):
        expert_adjustments("sade", PRIOR, 4)
    with pytest.raises(ValueError, match="positive class frequencies"):
        expert_adjustments("balanced_softmax", np.array([1.0, 0.0]), 1)
    with pytest.raises(ValueError, match="unknown method"):
        config_for("fashion_mnist", method="ldam")
    with pytest.raises(ValueError, match="unknown training setting"):
        config_for("fashion_mnist", learning_rate=0.1)


def test_scalarizations():
    L = torch.tensor([1.0, 2.0, 4.0])
    uni = torch.full((3,), 1 / 3)
    assert torch.isclose(scalarize(L, uni, "linear"), L.sum())  # uniform preference = SADE's sum
    r = torch.tensor([0.2, 0.3, 0.5])
    w = 3 * r * L
    assert torch.isclose(scalarize(L, r, "linear"), w.sum())
    assert torch.isclose(scalarize(L, r, "stch", mu=1e-3), w.max(), atol=1e-2)  # -> Tchebycheff max
    assert torch.isclose(scalarize(L, r, "sum_lse", mu=0.3), w.sum() + 0.3 * torch.logsumexp(w, 0))
    with pytest.raises(ValueError, match="unknown scalarization"):
        scalarize(L, r, "pbi")
    with pytest.raises(ValueError, match="preference of length 2"):
        scalarize(L, r[:2], "linear")


def test_preferences_are_seeded_dirichlet_draws_on_the_simplex():
    a = sample_preferences(np.random.default_rng(1), 3, 50)
    b = sample_preferences(np.random.default_rng(1), 3, 50)
    assert a.shape == (50, 3) and np.array_equal(a, b)
    assert np.allclose(a.sum(1), 1, atol=1e-6) and (a >= 0).all()


def test_learning_rate_schedule():
    cfg = TrainConfig(epochs=100, lr=0.1, warmup_epochs=5, milestones=[80, 90])
    assert lr_at(cfg, 0) < 0.001 and math.isclose(lr_at(cfg, 2.5), 0.05, rel_tol=1e-3)
    assert (
        lr_at(cfg, 50) == 0.1
        and math.isclose(lr_at(cfg, 85), 0.01)
        and math.isclose(lr_at(cfg, 95), 0.001)
    )
    cos = TrainConfig(epochs=100, lr=0.1, warmup_epochs=5, schedule="cosine")
    assert math.isclose(lr_at(cos, 5), 0.1) and lr_at(cos, 99.99) < 1e-5
    # per epoch, as the published trainers' LambdaLR: (e + 1) / 5 through the whole epoch
    per_epoch = TrainConfig(epochs=100, lr=0.1, warmup_epochs=5, lr_per_step=False)
    warm = [lr_at(per_epoch, e + f) for e in range(5) for f in (0.0, 0.99)]
    assert np.allclose(warm, np.repeat([0.02, 0.04, 0.06, 0.08, 0.1], 2))
    assert math.isclose(lr_at(per_epoch, 79.99), 0.1) and math.isclose(lr_at(per_epoch, 80), 0.01)


def test_published_recipe_reaches_the_model_and_the_augmentation(tmp_path):
    from lib.longtail.train.config import PUBLISHED_RECIPE, model_config

    cfg = TrainConfig.from_params("cpu", method="sade", **PUBLISHED_RECIPE)
    assert (cfg.init, cfg.stem_channels, cfg.lr_per_step, cfg.rotation_mode) == (
        "published",
        3,
        False,
        "nearest",
    )
    mc = model_config(cfg, 10, 1)
    assert (mc.init, mc.stem_channels, mc.in_channels) == ("published", 3, 1)
    # a sade run with it trains, and its checkpoint rebuilds the 3-channel stem for gray images
    run = dataclasses.replace(tiny_cfg(method="sade", epochs=1), **PUBLISHED_RECIPE)
    model, _ = load_model(fit(run, tmp_path, data=tiny_data()).checkpoint)
    assert model.trunk[0].weight.shape[1] == 3 and model.cfg.init == "published"
    with torch.no_grad():
        assert model(torch.randn(2, 1, 8, 8), None).shape == (3, 2, 4)
    for bad, match in (
        ({"init": "he"}, "unknown init"),
        ({"rotation_mode": "bicubic"}, "unknown rotation_mode"),
        ({"stem_channels": -1}, "stem_channels must be >= 0"),
    ):
        with pytest.raises(ValueError, match=match):
            TrainConfig.from_params("cpu", method="sade", **bad)


@pytest.mark.slow  # about 2-10 s on 2 cores: left out of make test-fast
@pytest.mark.parametrize("method", ["prl", "sade"])
def test_resume_after_interruption_gives_identical_weights(tmp_path, method):
    data = tiny_data()
    full = fit(tiny_cfg(method=method), tmp_path / "full", data=data)

    def crash(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt("simulated interruption")

    with pytest.raises(KeyboardInterrupt):
        fit(tiny_cfg(method=method), tmp_path / "cut", data=data, on_epoch_end=crash)
    assert load_checkpoint(tmp_path / "cut/checkpoints/last.pt")["epoch"] == 2
    resumed = fit(tiny_cfg(method=method), tmp_path / "cut", data=data)
    assert resumed.resumed_from == 2 and len(resumed.history) == 3
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "cut/metrics.csv").read_text().count("\n") == 4
    assert f'"method": "{method}"' in (tmp_path / "cut/config.json").read_text()


def test_every_method_trains_and_the_checkpoint_loads(tmp_path):
    data = tiny_data()
    for method in ("softmax", "balanced_softmax", "balpoe"):
        res = fit(tiny_cfg(method=method, epochs=1), tmp_path / method, data=data)
        assert np.isfinite(res.history["loss"]).all()
        model, info = load_model(res.checkpoint)
        assert info["meta"]["method"] == method and info["meta"]["num_classes"] == 4
        assert info["train_config"]["epochs"] == 1 and not model.training
        with torch.no_grad():
            assert model(torch.randn(2, 1, 8, 8), None).shape == (model.num_experts, 2, 4)


def test_existing_run_is_never_overwritten_and_settings_must_match(tmp_path):
    data = tiny_data()
    fit(tiny_cfg(epochs=1), tmp_path, data=data)
    with pytest.raises(FileExistsError, match="resume=True"):
        fit(tiny_cfg(epochs=1), tmp_path, data=data, resume=False)
    with pytest.raises(ValueError, match="lr: 0.05 -> 0.1"):
        fit(tiny_cfg(epochs=1, lr=0.1), tmp_path, data=data)
    # a checkpoint written before a setting existed resumes when the setting is at its default
    ck = load_checkpoint(tmp_path / "checkpoints/last.pt")
    del ck["train_config"]["mixture_weight"], ck["train_config"]["grad_clip"]
    save_checkpoint(tmp_path / "checkpoints/last.pt", ck)
    assert fit(tiny_cfg(epochs=1), tmp_path, data=data).resumed_from == 1


def _interrupt(epoch, row):
    raise KeyboardInterrupt(f"simulated interruption after epoch {epoch}")


def test_prl_clips_by_default_and_a_diverging_loss_stops_the_run(tmp_path, monkeypatch):
    assert config_for("fashion_mnist", method="prl").grad_clip == 5.0
    assert config_for("fashion_mnist", method="sade").grad_clip == 0.0
    assert config_for("fashion_mnist", method="sade", grad_clip=2.0).grad_clip == 2.0
    data = tiny_data()
    with pytest.raises(KeyboardInterrupt):  # an interrupted run: one good epoch on disk
        fit(tiny_cfg(epochs=2), tmp_path, data=data, on_epoch_end=_interrupt)
    before = (tmp_path / "checkpoints/last.pt").read_bytes()
    from lib.longtail.train import loop

    monkeypatch.setattr(
        loop, "training_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True)
    )
    with pytest.raises(FloatingPointError, match="epoch 2, step 1; lower lr or set grad_clip"):
        fit(tiny_cfg(epochs=2), tmp_path, data=data)
    assert (tmp_path / "checkpoints/last.pt").read_bytes() == before  # the good checkpoint is kept


def test_checkpoint_faults(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    m = build_model(ModelConfig(num_classes=4, in_channels=1))
    state = {
        "model_config": {"arch": "resnet32", "num_classes": 4, "num_experts": 3, "in_channels": 1},
        "model": m.state_dict(),
        "epoch": 1,
    }
    save_checkpoint(path, state)
    torch.load(path, weights_only=True)  # plain tensors and values only
    good = path.read_bytes()

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {**state, "epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]

    with pytest.raises(
        ValueError, match="another architecture.*num_experts: checkpoint 3 vs model 2"
    ):
        from lib.longtail.train.checkpoint import restore_model

        restore_model(
            build_model(ModelConfig(num_classes=4, num_experts=2, in_channels=1)),
            load_checkpoint(path),
        )
    (tmp_path / "bad.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a workbook checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="train with notebook 03"):
        load_model(tmp_path / "missing.pt")


def test_image_list_datasets_train_through_the_same_loop(tmp_path, png_lists):
    from lib.longtail.data import DecodedImages, read_image_list

    train_txt, test_txt = png_lists(tmp_path)
    imgs = DecodedImages(read_image_list(train_txt, tmp_path, 3), size=16, workers=2)
    batch = imgs[np.array([0, 7, 10])]
    assert (
        batch.shape == (3, 3, 16, 16)
        and batch.dtype == torch.uint8
        and imgs.shape == (11, 3, 16, 16)
    )
    assert torch.equal(imgs[1:3], imgs[np.array([1, 2])])
    assert (
        int(batch[0].float().mean((1, 2)).argmax()) == 0
        and int(batch[2].float().mean((1, 2)).argmax()) == 2
    )
    cfg = tiny_cfg(
        method="sade",
        dataset="imagelist",
        train_list=str(train_txt),
        test_list=str(test_txt),
        image_root=str(tmp_path),
        image_size=16,
        epochs=1,
        batch_size=4,
    )
    res = fit(cfg, tmp_path / "run")
    _, info = load_model(res.checkpoint)
    assert info["meta"]["num_classes"] == 3 and np.isfinite(res.history["loss"]).all()
    assert np.allclose(info["meta"]["prior"], np.array([6, 3, 2]) / 11)
    with pytest.raises(ValueError, match="train_list, test_list and image_root"):
        fit(tiny_cfg(dataset="ImageNet_LT"), tmp_path / "none")


def test_from_params_checks_types_names_and_presets():
    from dataclasses import FrozenInstanceError

    from lib.longtail.train.config import CPU_SCHEDULE, PRESETS

    cpu = TrainConfig.from_params("cpu", method="sade")
    assert (cpu.epochs, cpu.milestones, cpu.eval_per_class, cpu.num_experts) == (
        100,
        [80, 90],
        100,
        3,
    )
    assert (
        TrainConfig().epochs == CPU_SCHEDULE["epochs"]
        and TrainConfig().milestones == CPU_SCHEDULE["milestones"]
    )
    assert TrainConfig.from_params("paper").dataset == "cifar100"
    # None means "not set": the preset's value stays; ints pass as floats, list items are checked
    smoke = TrainConfig.from_params("smoke", epochs=None, lr=1, milestones=[3], imb_ratio=10)
    assert (
        smoke.epochs == PRESETS["smoke"]["epochs"]
        and smoke.lr == 1.0
        and isinstance(smoke.imb_ratio, float)
    )
    with pytest.raises(
        TypeError, match="flip = 'false' is str, but TrainConfig declares flip: bool"
    ):
        TrainConfig.from_params(flip="false")
    with pytest.raises(TypeError, match="epochs = True is bool"):
        TrainConfig.from_params(epochs=True)
    with pytest.raises(TypeError, match=r"milestones\[1\] = 'x' is str"):
        TrainConfig.from_params(milestones=[80, "x"])
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) \['learning_rate'\]"):
        TrainConfig.from_params(learning_rate=0.1)
    assert TrainConfig.from_params(run_dir="x", ignore=("run_dir",)).method == "prl"
    with pytest.raises(ValueError, match="unknown preset 'fast'.*smoke, cpu, paper"):
        TrainConfig.from_params("fast")
    with pytest.raises(FrozenInstanceError):
        cpu.lr = 0.2  # type: ignore[misc]


def test_notebook_03_sets_every_setting_and_the_profiles_name_presets():
    """Every TrainConfig field is a parameter of notebook 03, and each profile's run equals its preset."""
    from dataclasses import fields

    from lib.core.paths import NOTEBOOKS
    from lib.core.profiles import load_profile
    from lib.core.settings import notebook_parameters

    params = notebook_parameters(NOTEBOOKS / "03_training.ipynb")
    assert {f.name for f in fields(TrainConfig)} <= set(params)
    for profile in ("smoke", "cpu", "paper"):
        p = {**params, **load_profile(profile)["03_training"]}
        cfg = TrainConfig.from_params(**p, ignore=("test_per_class", "resume", "run_dir"))
        assert cfg == TrainConfig.from_params(p["preset"]), profile


def test_shared_schedule_and_seeding_are_the_trainers():
    from lib.core.schedule import warmup_decay
    from lib.core.seeding import epoch_generator, epoch_rng
    from lib.nmr.train import lr_factor

    cfg = TrainConfig(schedule="cosine", warmup_epochs=2, epochs=10, lr=0.3)
    assert lr_at(cfg, 5.5) == warmup_decay(5.5, 2, 10, base=0.3, decay="cosine")
    assert lr_factor(3, 10, 100) == 0.4 and lr_factor(55, 10, 100) == warmup_decay(55, 10, 100)
    assert torch.equal(
        torch.randperm(9, generator=epoch_generator(1, 2)),
        torch.randperm(9, generator=torch.Generator().manual_seed(100_005)),
    )
    assert epoch_rng(1, 2).random() == np.random.default_rng([1, 2]).random()
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        warmup_decay(5, 1, 10, decay="linear")


@pytest.mark.parametrize("native", [True, False])
def test_cpu_training_runs_convolutions_in_bfloat16_only_where_the_cpu_has_it(
    tmp_path, monkeypatch, native
):
    from lib.core import device as devmod
    from lib.core.device import autocast_dtype

    monkeypatch.setattr(devmod, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype(torch.device("cpu")) == (torch.bfloat16 if native else None)
    seen = []
    hook = lambda mod, inp, out: seen.append(out.dtype) if mod.training else None
    monkeypatch.setattr(
        "lib.longtail.train.loop.build_model",
        lambda cfg: _hooked(build_model(cfg), hook),
    )
    for amp in (True, False):
        seen.clear()
        res = fit(tiny_cfg(epochs=1, amp=amp), tmp_path / f"amp{amp}", data=tiny_data())
        assert np.isfinite(res.history["loss"]).all()
        want = torch.bfloat16 if (amp and native) else torch.float32
        assert seen and set(seen) == {want}  # training steps; evaluation stays float32
        # the weights, the optimizer state and the checkpoint stay float32
        assert all(p.dtype == torch.float32 for p in res.model.parameters())


def _hooked(model, hook):
    """The model with a forward hook on its first convolution."""
    model.trunk[0].register_forward_hook(hook)
    return model
