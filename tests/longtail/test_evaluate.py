"""lib.longtail.evaluate: group metrics, label-shift prior estimation, logit adjustment, stability adaptation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.longtail.evaluate import (
    StabilityConfig,
    accuracy_report,
    adjust_logits,
    estimate_prior_em,
    maximize_stability,
    per_class_accuracy,
    results_table,
)


def test_group_accuracy_is_mean_of_per_class_and_nan_safe():
    groups = np.array(["many", "many", "medium", "few"])
    y = np.array([0, 0, 0, 1, 2, 2])
    pred = np.array([0, 0, 1, 1, 0, 2])
    acc = per_class_accuracy(pred, y, 4)
    assert acc[0] == pytest.approx(2 / 3) and acc[1] == 1 and acc[2] == 0.5 and math.isnan(acc[3])
    rep = accuracy_report(pred, y, groups)
    assert rep["top1"] == pytest.approx(100 * 4 / 6)
    assert rep["many"] == pytest.approx(100 * (2 / 3 + 1) / 2)  # macro over classes, not micro
    assert rep["medium"] == pytest.approx(50.0)
    assert math.isnan(rep["few"])  # class 3 has no test item: NaN, not an error
    with pytest.raises(ValueError, match="empty test set"):
        accuracy_report(np.array([], int), np.array([], int), groups)


def test_results_table_adds_the_mean_row():
    t = results_table({"forward50": {"top1": 80.0}, "uniform": {"top1": 60.0}})
    assert list(t.index) == ["forward50", "uniform", "mean"] and t.loc["mean", "top1"] == 70.0


def _label_shift_posteriors(prior_t, n=20000, seed=0):
    """Posteriors of a Bayes classifier calibrated to a uniform prior, on data drawn with prior_t."""
    g = torch.Generator().manual_seed(seed)
    C = len(prior_t)
    means = torch.eye(C) * 2.0
    y = torch.multinomial(prior_t, n, replacement=True, generator=g)
    x = means[y] + torch.randn(n, C, generator=g)
    logits = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)  # log p(x|y) + const
    return torch.softmax(logits, 1), y, logits


def test_em_recovers_a_shifted_prior():
    prior_t = torch.tensor([0.6, 0.25, 0.1, 0.05])
    probs, _, _ = _label_shift_posteriors(prior_t)
    naive = probs.mean(0)
    est, iters = estimate_prior_em(probs, torch.full((4,), 0.25))
    assert (est - prior_t).abs().max() < 0.02 < (naive - prior_t).abs().max()
    assert iters > 1


def test_logit_adjustment_toward_the_true_prior_helps():
    prior_t = torch.tensor([0.7, 0.2, 0.07, 0.03])
    _, y, logits = _label_shift_posteriors(prior_t, seed=1)
    base = (logits.argmax(1) == y).float().mean()
    adj = (adjust_logits(logits, prior_t, torch.full((4,), 0.25)).argmax(1) == y).float().mean()
    assert adj > base + 0.02


def test_prior_em_checks_shapes():
    with pytest.raises(ValueError, match="do not match"):
        estimate_prior_em(torch.rand(5, 3), torch.full((4,), 0.25))


def _two_expert_views(n=512, seed=0):
    """Expert 0 is stable across views, expert 1 is noisy: stability should favour expert 0."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 5, generator=g) * 3
    views = []
    for _ in range(2):
        e0 = base + 0.05 * torch.randn(n, 5, generator=g)
        e1 = 3 * torch.randn(n, 5, generator=g)
        views.append(torch.stack([e0, e1]))
    return views


def test_stability_moves_weight_to_the_stable_expert():
    v1, v2 = _two_expert_views()
    batches = lambda epoch: [(v1[:, i : i + 128], v2[:, i : i + 128]) for i in range(0, 512, 128)]
    agg = lambda w, v: torch.einsum("e,enc->nc", w, v)
    res = maximize_stability(2, batches, agg, StabilityConfig(epochs=5, lr=0.5, min_weight=0.0))
    assert res.weights[0] > 0.6 and abs(float(res.weights.sum()) - 1) < 1e-6
    assert res.history[-1]["stability"] > res.history[0]["stability"] - 1e-6
    with pytest.warns(UserWarning, match="stopped early"):
        r2 = maximize_stability(
            2, batches, agg, StabilityConfig(epochs=50, lr=2.0, min_weight=0.05)
        )
    assert r2.stopped.startswith("a weight fell below") and float(r2.weights.min()) < 0.05


def test_bcts_recovers_temperature_and_bias_and_lowers_nll():
    from lib.longtail.evaluate import fit_bcts

    g = torch.Generator().manual_seed(0)
    C, n = 5, 4000
    y = torch.arange(n) % C
    true = torch.randn(n, C, generator=g) + 3.0 * F.one_hot(
        y, C
    )  # calibrated logits, balanced labels
    y = torch.distributions.Categorical(
        logits=true
    ).sample()  # labels drawn from the calibrated model
    shift = torch.tensor([1.0, 0.5, 0.0, -0.5, -1.0])
    cal = fit_bcts(2.5 * true + shift, y.numpy(), bias_reg=0.0)
    assert abs(cal.temperature - 2.5) < 0.25
    assert torch.allclose(cal.bias, -(shift - shift.mean()) / 2.5, atol=0.1)
    assert cal.nll_after < cal.nll_before and cal.n_items == n
    with pytest.raises(ValueError, match="at least two classes"):
        fit_bcts(true[:10], np.zeros(10, dtype=int))
