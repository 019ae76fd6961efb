"""lib.evaluate on real (tiny) models: cached features, every adaptation, sliders, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.data import agnostic_indices
from lib.evaluate.agnostic import ADAPTATIONS, adapt, calibration_prior, evaluate_all, wide_table
from lib.evaluate.bank import build_bank
from lib.evaluate.load import find_checkpoints, load_for_evaluation
from lib.evaluate.sliders import normalize_pref, preference_report
from lib.models import ModelConfig, build_model
from lib.train import save_checkpoint

C = 4
GROUPS = np.array(["many", "many", "medium", "few"])
PRIOR = np.array([0.5, 0.3, 0.15, 0.05])


def tiny_test_set(per_class: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = np.repeat(np.arange(C), per_class)
    X = torch.randint(0, 256, (len(y), 1, 8, 8), generator=g, dtype=torch.uint8)
    return X, y


@pytest.fixture(scope="module")
def prl_bank():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=C, num_experts=3, in_channels=1, hypernet=True)).eval()
    X, y = tiny_test_set()
    return build_bank(model, X, y, (0.5,), (0.25,), view_epochs=2, seed=0)


def test_cached_logits_equal_the_model_forward(prl_bank):
    X, _ = tiny_test_set()
    pref = torch.tensor([0.6, 0.3, 0.1])
    with torch.no_grad():
        direct = prl_bank.model((X.float() / 255 - 0.5) / 0.25, pref)
    assert torch.allclose(prl_bank.logits(pref), direct, atol=1e-4)
    # a different preference changes the prediction of a hypernetwork model
    assert not torch.allclose(prl_bank.scores(pref), prl_bank.scores(torch.tensor([0.1, 0.3, 0.6])))


def test_every_adaptation_runs_and_reports(prl_bank):
    sets = agnostic_indices(prl_bank.y, C, ks=(5,))
    table, learned = evaluate_all(prl_bank, sets, GROUPS, "prl", PRIOR, ADAPTATIONS)
    assert set(table.adaptation) == set(ADAPTATIONS)
    assert set(table.distribution) == {"forward5", "uniform", "backward5", "mean"}
    wide = wide_table(table)
    assert list(wide.columns) == ["forward5", "uniform", "backward5", "mean"]
    pref = learned[learned.adaptation == "stability_pref"]["pref"].iloc[0]
    assert len(pref) == 3 and abs(sum(pref) - 1) < 1e-3
    assert (learned[learned.adaptation == "oracle"]["note"] == "uses test labels").all()


def test_oracle_uses_the_true_prior_and_softmax_is_calibrated_to_training(prl_bank):
    idx = agnostic_indices(prl_bank.y, C, ks=(5,))["forward5"]
    res = adapt(prl_bank, idx, "oracle", torch.full((C,), 0.25))
    true = np.bincount(prl_bank.y[idx], minlength=C) / len(idx)
    assert np.allclose(res.learned["prior"], true, atol=1e-6)
    assert torch.allclose(calibration_prior("softmax", PRIOR), torch.tensor(PRIOR, dtype=torch.float32))
    assert torch.allclose(calibration_prior("prl", PRIOR), torch.full((C,), 0.25))


def test_collapsed_prior_estimate_falls_back_with_a_warning(prl_bank):
    idx = np.arange(len(prl_bank.y))
    # a model that always predicts class 0 with certainty drives the EM prior to a corner
    prl_bank.model.head_weight.data[:, 1:] = -prl_bank.model.head_weight.data[:, :1]
    prl_bank._cache.clear()
    try:
        with pytest.warns(UserWarning, match="collapsed.*kept the source prior"):
            res = adapt(prl_bank, idx, "prior_em", torch.full((C,), 0.25))
        assert np.allclose(res.learned["prior"], 0.25)
    finally:
        torch.manual_seed(0)
        fresh = build_model(ModelConfig(num_classes=C, num_experts=3, in_channels=1, hypernet=True))
        prl_bank.model.load_state_dict(fresh.state_dict())
        prl_bank._cache.clear()


def test_bad_names_and_empty_sets(prl_bank):
    with pytest.raises(ValueError, match="unknown adaptation"):
        evaluate_all(prl_bank, {"uniform": np.arange(5)}, GROUPS, "prl", PRIOR, ("magic",))
    with pytest.raises(ValueError, match="unknown test distribution"):
        evaluate_all(prl_bank, {"sideways": np.arange(5)}, GROUPS, "prl", PRIOR)
    with pytest.raises(ValueError, match="empty"):
        evaluate_all(prl_bank, {"uniform": np.array([], dtype=int)}, GROUPS, "prl", PRIOR)


def test_stability_pref_needs_a_hypernetwork():
    model = build_model(ModelConfig(num_classes=C, num_experts=3, in_channels=1, hypernet=False)).eval()
    X, y = tiny_test_set(5)
    bank = build_bank(model, X, y, (0.5,), (0.25,), view_epochs=1)
    with pytest.raises(ValueError, match="no hypernetwork|has none"):
        adapt(bank, np.arange(len(y)), "stability_pref", torch.full((C,), 0.25))
    table, _ = evaluate_all(bank, {"uniform": np.arange(len(y))}, GROUPS, "sade", PRIOR, ADAPTATIONS)
    assert "stability_pref" not in set(table.adaptation)  # skipped where it does not apply


def test_slider_report_and_normalization(prl_bank):
    assert torch.allclose(normalize_pref([2, 1, 1]), torch.tensor([0.5, 0.25, 0.25]))
    assert torch.allclose(normalize_pref([0, 0, 0]), torch.full((3,), 1 / 3))
    per_class, rep = preference_report(prl_bank, normalize_pref([1, 0, 0]), np.arange(len(prl_bank.y)), GROUPS)
    assert per_class.shape == (C,) and set(rep) == {"top1", "many", "medium", "few"}


def test_checkpoint_discovery_and_class_count_check(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebook 03 first"):
        find_checkpoints([], tmp_path)
    cfg = ModelConfig(num_classes=C, num_experts=1, in_channels=1)
    model = build_model(cfg)
    from dataclasses import asdict

    path = tmp_path / "03_training" / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model_config": asdict(cfg), "model": model.state_dict(), "epoch": 1,
                           "meta": {"method": "softmax", "dataset": "fashion_mnist", "num_classes": C}})
    assert find_checkpoints([], tmp_path) == [path]
    with pytest.raises(ValueError, match="predicts 4 classes but the test data has 10"):
        load_for_evaluation([path], num_classes=10)
    assert list(load_for_evaluation([path], num_classes=C)) == ["softmax"]


def test_held_out_calibration_feeds_label_shift():
    torch.manual_seed(1)
    model = build_model(ModelConfig(num_classes=C, num_experts=3, in_channels=1, hypernet=True)).eval()
    X, y = tiny_test_set(30)
    Xv, yv = tiny_test_set(15, seed=5)
    bank = build_bank(model, X, y, (0.5,), (0.25,), X_val=Xv, y_val=yv)
    assert bank.calibration is not None and bank.calibration.n_items == len(yv)
    idx = np.arange(len(y))
    res = adapt(bank, idx, "prior_em", torch.tensor(PRIOR, dtype=torch.float32))
    assert res.note.startswith("BCTS T")
    base = adapt(bank, idx, "none", torch.full((C,), 0.25)).scores
    uniform = torch.full((C,), 1.0 / C)
    shift = torch.log(torch.tensor(res.learned["prior"])) - torch.log(uniform)
    assert torch.allclose(res.scores, bank.calibration(base) + shift, atol=1e-5)  # calibrated, then shifted
    assert build_bank(model, X, y, (0.5,), (0.25,)).calibration is None
