"""Evaluate a trained model on every test distribution, with and without test-time adaptation.

Each adaptation sees only the unlabeled images of one distribution, except `oracle`, which
uses the true test prior and is an upper reference, not a test-agnostic method:

    none              the model as trained (uniform preference / equal expert weights)
    stability         SADE: expert weights maximizing prediction stability of two views
    stability_prior   the same, regularized toward the EM prior estimate (prevents drift)
    stability_pref    PRL: the preference vector itself adapted by stability (heads follow)
    prior_em          label-shift EM prior estimate, then logit adjustment toward it
                      (on calibrated scores when the bank holds a held-out calibration)
    oracle            logit adjustment toward the true test prior (uses labels)

With held-out labelled images, stability_prior, stability_pref and prior_em pass a check:
held-out per-class accuracies weighted by the estimated test prior must not predict a loss
against the unadapted model, else the unadapted prediction is kept (see `_held_out_check`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..accuracy import accuracy_report, prior_weighted_gain
from ..data import parse_distribution
from ..models.experts import aggregate
from .bank import FeatureBank
from .testtime import (
    StabilityConfig,
    adjust_logits,
    entropy_bits,
    estimate_prior_em,
    label_shift_test,
    maximize_stability,
)

COLLAPSE_PRIOR = 1e-4  # an estimated class prior below this counts as a collapse
SHIFT_ALPHA = 0.05  # level of the label-shift test below which the EM prior is used
DEFAULT_PRIOR_REG = 1.0  # KL weight of stability_prior when the config leaves prior_reg at 0
ADAPTATIONS = ("none", "stability", "stability_prior", "stability_pref", "prior_em", "oracle")
CHECKED = (
    "stability_prior",
    "stability_pref",
    "prior_em",
)  # kept only if the held-out check agrees
CHECK_Z = 1.645  # held-out gain needed, in standard errors (one-sided 5%)


def calibration_prior(method: str, train_prior: np.ndarray) -> torch.Tensor:
    """The label prior a method's plain prediction is calibrated to (plain CE: the training prior)."""
    p = np.asarray(train_prior, dtype=np.float64)
    return torch.as_tensor(
        p if method == "softmax" else np.full_like(p, 1.0 / len(p)), dtype=torch.float32
    )


def check_adaptations(
    names: list[str] | tuple[str, ...], hypernet: bool, num_experts: int
) -> list[str]:
    """Validate adaptation names; keep those that apply (stability needs experts, stability_pref a hypernetwork)."""
    bad = [a for a in names if a not in ADAPTATIONS]
    if bad:
        raise ValueError(f"unknown adaptation(s) {bad}; choose from {', '.join(ADAPTATIONS)}")
    return [
        a
        for a in names
        if (a != "stability_pref" or hypernet)
        and (num_experts > 1 or not a.startswith("stability"))
    ]


@dataclass
class Adapted:
    """The scores of one adaptation on one distribution and what it learned."""

    scores: torch.Tensor  # n x C aggregated logits
    learned: dict  # weights / pref / prior, as lists
    note: str = ""


def _weighted(w: torch.Tensor, expert_logits: torch.Tensor) -> torch.Tensor:
    """Expert logits E x n x C weighted by w (the aggregation SADE learns)."""
    return aggregate(expert_logits, w)


def _stability_batches(bank: FeatureBank, idx: np.ndarray, batch: int, seed: int, pref=None):
    """epoch -> list of (view1, view2) batches over `idx`; per-expert logits when pref is fixed."""
    cache = {}

    def batches(epoch: int):
        v1, v2 = bank.views[epoch % len(bank.views)]
        if pref is not None:  # heads fixed: precompute expert logits once per view
            if epoch not in cache:
                cache[epoch] = (bank.logits(pref, idx, v1), bank.logits(pref, idx, v2))
            a, b = cache[epoch]
        else:
            a, b = v1[:, torch.as_tensor(idx)], v2[:, torch.as_tensor(idx)]
        order = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed + epoch))
        return [
            (a[:, order[i : i + batch]], b[:, order[i : i + batch]])
            for i in range(0, len(idx), batch)
        ]

    return batches


def _estimate_prior(
    probs: torch.Tensor, source_prior: torch.Tensor, n: int
) -> tuple[torch.Tensor, str, str]:
    """EM prior of calibrated posteriors, the source prior when it collapses or the shift is not significant."""
    prior, iters = estimate_prior_em(probs, source_prior)
    stat, pval = label_shift_test(probs, source_prior, prior)
    fallback = ""
    if float(prior.min()) < COLLAPSE_PRIOR:  # a class prior at ~0 removes that class for good
        fallback = f"EM prior collapsed (min {float(prior.min()):.1e}); kept the source prior"
        warnings.warn(f"label-shift EM on {n} items: {fallback}", stacklevel=3)
    elif pval > SHIFT_ALPHA:  # no evidence of a shift: adjusting would only add estimation noise
        fallback = "no significant shift; kept the source prior"
    note = f"EM {iters} it., LR {stat:.1f}, p {pval:.3g}" + (f" ({fallback})" if fallback else "")
    return (source_prior.clone() if fallback else prior), note, fallback


def _held_out_check(
    bank: FeatureBank,
    out: Adapted,
    base: torch.Tensor,
    val_adapted: torch.Tensor,
    prior: torch.Tensor,
    z: float,
) -> Adapted:
    """Keep an adaptation only if held-out images, weighted to the estimated test prior, show a gain.

    Under label shift a class's accuracy carries over from held-out training images to the test
    set, so sum_c prior_c (acc_c - acc_none_c) estimates the gain without test labels. The
    adaptation is kept when that gain is at least `z` standard errors; this stops drift
    (stability toward the head on a balanced set) and adjustments toward a prior the model
    already fits, where an error in the EM estimate can only cost accuracy.
    """
    gain, se = prior_weighted_gain(
        val_adapted.argmax(1).numpy(),
        bank.val_scores().argmax(1).numpy(),
        bank.y_val,
        prior.numpy(),
    )
    out.learned["held_out_gain"] = [round(gain, 2), round(se, 2)]
    if gain < z * se:
        note = f"held-out gain {gain:+.2f} +- {se:.2f} under the estimated prior: kept the unadapted prediction"
        return Adapted(base, out.learned, f"{out.note}; {note}" if out.note else note)
    return out


def adapt(
    bank: FeatureBank,
    idx: np.ndarray,
    adaptation: str,
    source_prior: torch.Tensor,
    cfg: StabilityConfig = StabilityConfig(),
    batch: int = 128,
    seed: int = 0,
    check_z: float = CHECK_Z,
) -> Adapted:
    """Scores of one adaptation on the test items `idx` (labels used only by `oracle`).

    With held-out images in the bank, `stability_prior`, `stability_pref` and `prior_em` are
    kept only when held-out images weighted to the estimated prior show a gain of at least
    `check_z` standard errors (None turns the check off; plain `stability` is SADE's method
    and never checked).
    """
    E = bank.model.num_experts
    uniform = torch.full((E,), 1.0 / E)
    base = bank.scores(uniform, idx=idx)
    if adaptation == "none":
        return Adapted(base, {"pref": uniform.tolist()})
    if adaptation not in ADAPTATIONS:
        raise ValueError(f"unknown adaptation {adaptation!r}; choose from {', '.join(ADAPTATIONS)}")
    cal = (
        bank.calibration
    )  # calibrated to the uniform prior; label shift is estimated on it when present
    if cal is not None:
        source_prior = torch.full((base.shape[1],), 1.0 / base.shape[1])
    cbase = base if cal is None else cal(base)
    checked = check_z is not None and bank.val is not None and adaptation in CHECKED
    prior, em_note = source_prior, ""
    if adaptation in ("prior_em", "stability_prior") or checked:
        prior, em_note, _ = _estimate_prior(torch.softmax(cbase, 1), source_prior, len(idx))
    if adaptation == "prior_em":
        note = f"{f'BCTS T {cal.temperature:.2f}, ' if cal else ''}{em_note}"
        # without a significant shift this is the calibrated prediction itself (prior = source prior)
        out = Adapted(adjust_logits(cbase, prior, source_prior), {"prior": prior.tolist()}, note)
        if checked:
            out = _held_out_check(
                bank,
                out,
                base,
                adjust_logits(cal(bank.val_scores()), prior, source_prior),
                prior,
                check_z,
            )
        return out
    if adaptation == "oracle":
        counts = np.bincount(bank.y[idx], minlength=base.shape[1]).astype(np.float64)
        true = torch.as_tensor(counts / counts.sum(), dtype=torch.float32)
        return Adapted(
            adjust_logits(cbase, true, source_prior), {"prior": true.tolist()}, "uses test labels"
        )
    if E == 1:
        return Adapted(base, {"weights": [1.0]}, "one expert: nothing to adapt")
    if not bank.views:
        raise ValueError(
            "stability adaptation needs augmented views: build the bank with view_epochs >= 1"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if adaptation == "stability":
            res = maximize_stability(
                E, _stability_batches(bank, idx, batch, seed, pref=uniform), _weighted, cfg
            )
            out = Adapted(
                bank.scores(uniform, weights=res.weights, idx=idx),
                {"weights": res.weights.tolist()},
            )
        elif adaptation == "stability_prior":
            reg = replace(cfg, prior_reg=cfg.prior_reg or DEFAULT_PRIOR_REG)
            res = maximize_stability(
                E,
                _stability_batches(bank, idx, batch, seed, pref=uniform),
                _weighted,
                reg,
                prior=prior,
            )
            out = Adapted(
                bank.scores(uniform, weights=res.weights, idx=idx),
                {"weights": res.weights.tolist(), "prior": prior.tolist()},
            )
        else:  # stability_pref
            model = bank.model
            if model.hypernet is None:
                raise ValueError(
                    "stability_pref adapts the preference of a hypernetwork; this model has none "
                    "(method prl trains one); use 'stability' to adapt expert weights"
                )
            req = [p.requires_grad for p in model.parameters()]
            model.requires_grad_(False)  # only the preference is learned
            try:
                fn = lambda w, v: aggregate(model.logits_from_features(v, w), w)
                res = maximize_stability(E, _stability_batches(bank, idx, batch, seed), fn, cfg)
            finally:
                for p, r in zip(model.parameters(), req):
                    p.requires_grad_(r)
            out = Adapted(bank.scores(res.weights, idx=idx), {"pref": res.weights.tolist()})
    out.note = res.stopped if res.stopped != "completed" else ""
    for w in caught:
        if "stopped early" not in str(w.message):
            warnings.warn(w.message, stacklevel=2)
    if checked:
        val = (
            bank.val_scores(res.weights)
            if adaptation == "stability_pref"
            else bank.val_scores(uniform, weights=res.weights)
        )
        out = _held_out_check(bank, out, base, val, prior, check_z)
    return out


def evaluate_all(
    bank: FeatureBank,
    test_sets: dict[str, np.ndarray],
    groups: np.ndarray,
    method: str,
    train_prior: np.ndarray,
    adaptations: tuple[str, ...] = ("none",),
    cfg: StabilityConfig = StabilityConfig(),
    seed: int = 0,
    check_z: float | None = CHECK_Z,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy table (rows: adaptation x distribution + mean) and what each adaptation learned."""
    todo = check_adaptations(adaptations, bank.model.hypernet is not None, bank.model.num_experts)
    for name in test_sets:
        parse_distribution(name)
    src = calibration_prior(method, train_prior)
    rows, learned, fallbacks = [], [], {}
    for a in tqdm(todo, desc=f"{method}: adaptations", leave=False):
        for dist, idx in test_sets.items():
            if len(idx) == 0:
                raise ValueError(f"test distribution {dist} is empty; check the test list")
            with warnings.catch_warnings(
                record=True
            ) as caught:  # one summary per adaptation, below
                warnings.simplefilter("always")
                res = adapt(bank, idx, a, src, cfg, seed=seed, check_z=check_z)
            if caught:
                fallbacks.setdefault(a, []).append(dist)
            rep = accuracy_report(res.scores.argmax(1).numpy(), bank.y[idx], groups)
            rows.append({"method": method, "adaptation": a, "distribution": dist, **rep})
            learned.append(
                {
                    "method": method,
                    "adaptation": a,
                    "distribution": dist,
                    "note": res.note,
                    **{k: np.round(v, 4).tolist() for k, v in res.learned.items()},
                    **(
                        {"prior_entropy": entropy_bits(torch.as_tensor(res.learned["prior"]))}
                        if "prior" in res.learned
                        else {}
                    ),
                }
            )
    for a, dists in fallbacks.items():
        warnings.warn(
            f"{method} / {a}: the adaptation collapsed or stopped on {', '.join(dists)}; the fallback "
            "is named in the 'note' column of the learned table",
            stacklevel=2,
        )
    table = pd.DataFrame(rows)
    means = (
        table.groupby(["method", "adaptation"], sort=False).mean(numeric_only=True).reset_index()
    )
    means["distribution"] = "mean"
    return pd.concat([table, means], ignore_index=True), pd.DataFrame(learned)


def wide_table(table: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """Rows method/adaptation, columns distributions (F50 ... B50, mean) for one metric."""
    w = table.pivot_table(
        index=["method", "adaptation"], columns="distribution", values=metric, sort=False
    )
    order = [c for c in table["distribution"].unique() if c != "mean"] + ["mean"]
    return w[order]


def over_seeds(top1: pd.DataFrame) -> pd.DataFrame | None:
    """Mean and standard deviation over training seeds of a wide table whose methods are named
    `<method> seed <k>` (rows method/adaptation, columns the distributions and mean, each as
    `<column>` and `<column>_sd`, plus `seeds`); None when no method has several seeds."""
    names = top1.index.get_level_values("method")
    if not names.str.contains(" seed ").any():
        return None
    base = names.str.replace(r" seed \d+$", "", regex=True)
    keyed = top1.set_axis(
        pd.MultiIndex.from_arrays(
            [base, top1.index.get_level_values(1)], names=["method", "adaptation"]
        )
    )
    g = keyed.groupby(level=["method", "adaptation"], sort=False)
    mean, sd = g.mean(), g.std(ddof=1)
    out = pd.concat([mean, sd.add_suffix("_sd")], axis=1)
    out["seeds"] = g.size()
    return out
