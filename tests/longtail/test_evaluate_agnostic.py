"""lib.longtail.evaluate on real (tiny) models: cached features, every adaptation, sliders, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lib.longtail.data import agnostic_indices
from lib.longtail.evaluate.agnostic import (
    ADAPTATIONS,
    adapt,
    calibration_prior,
    evaluate_all,
    wide_table,
)
from lib.longtail.evaluate.bank import build_bank
from lib.longtail.evaluate.load import find_checkpoints, load_for_evaluation
from lib.longtail.evaluate.sliders import (
    normalize_pref,
    preference_report,
    report_html,
    slider_view,
)
from lib.longtail.evaluate.testtime import StabilityConfig
from lib.longtail.models import ModelConfig, build_model
from lib.longtail.train import save_checkpoint

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
    model = build_model(
        ModelConfig(num_classes=C, num_experts=3, in_channels=1, hypernet=True)
    ).eval()
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
    assert torch.allclose(
        calibration_prior("softmax", PRIOR), torch.tensor(PRIOR, dtype=torch.float32)
    )
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
    model = build_model(
        ModelConfig(num_classes=C, num_experts=3, in_channels=1, hypernet=False)
    ).eval()
    X, y = tiny_test_set(5)
    bank = build_bank(model, X, y, (0.5,), (0.25,), view_epochs=1)
    with pytest.raises(ValueError, match="no hypernetwork|has none"):
        adapt(bank, np.arange(len(y)), "stability_pref", torch.full((C,), 0.25))
    table, _ = evaluate_all(
        bank, {"uniform": np.arange(len(y))}, GROUPS, "sade", PRIOR, ADAPTATIONS
    )
    assert "stability_pref" not in set(table.adaptation)  # skipped where it does not apply


def test_slider_report_and_normalization(prl_bank):
    assert torch.allclose(normalize_pref([2, 1, 1]), torch.tensor([0.5, 0.25, 0.25]))
    assert torch.allclose(normalize_pref([0, 0, 0]), torch.full((3,), 1 / 3))
    per_class, rep = preference_report(
        prl_bank, normalize_pref([1, 0, 0]), np.arange(len(prl_bank.y)), GROUPS
    )
    assert per_class.shape == (C,) and set(rep) == {"top1", "many", "medium", "few"}


def test_slider_view_redraws_on_every_move(prl_bank):
    sets = {
        "uniform": np.arange(len(prl_bank.y)),
        "few": np.flatnonzero(GROUPS[prl_bank.y] == "few"),
    }
    box = slider_view(prl_bank, sets, GROUPS, "uniform")
    controls, readout, _ = box.children
    sliders, picker = controls.children[0].children, controls.children[1]
    assert [s.value for s in sliders] == [
        0.33
    ] * 3  # on the step grid: the browser sends nothing back
    first = readout.value
    assert "<td>uniform</td><td>(0.33, 0.33, 0.33)</td>" in first
    sliders[-1].value = 1.0
    assert "(0.20, 0.20, 0.60)" in readout.value and readout.value != first
    _, rep = preference_report(prl_bank, normalize_pref([0.33, 0.33, 1.0]), sets["uniform"], GROUPS)
    assert readout.value == report_html("uniform", normalize_pref([0.33, 0.33, 1.0]), rep)
    picker.value = "few"
    assert "<td>few</td>" in readout.value


def test_slider_view_shows_a_failing_redraw_in_the_widget(prl_bank, monkeypatch):
    import lib.longtail.evaluate.sliders as S

    box = slider_view(prl_bank, {"uniform": np.arange(len(prl_bank.y))}, GROUPS, "uniform")
    sliders = box.children[0].children[0].children
    shown = []
    monkeypatch.setattr(
        type(box.children[2]), "__exit__", lambda self, *exc: shown.append(exc[0]) or True
    )
    monkeypatch.setattr(S, "preference_report", lambda *a: 1 / 0)
    sliders[
        0
    ].value = 0.5  # the error goes to the Output widget (the user sees it), not only the log
    assert shown[-1] is ZeroDivisionError


def test_checkpoint_discovery_and_class_count_check(tmp_path, capsys):
    nowhere = tmp_path / "no-runs"  # not the repository's runs/: nothing to fall back to
    with pytest.raises(FileNotFoundError, match="run `make run` first"):
        find_checkpoints([], tmp_path, runs_root=nowhere)
    cfg = ModelConfig(num_classes=C, num_experts=1, in_channels=1)
    model = build_model(cfg)
    from dataclasses import asdict

    path = tmp_path / "03_training" / "checkpoints" / "last.pt"
    save_checkpoint(
        path,
        {
            "model_config": asdict(cfg),
            "model": model.state_dict(),
            "epoch": 1,
            "meta": {"method": "softmax", "dataset": "fashion_mnist", "num_classes": C},
        },
    )
    assert find_checkpoints([], tmp_path, runs_root=nowhere) == [path]
    assert f"checkpoint of 03_training: {path}" in capsys.readouterr().out  # says which one it used
    with pytest.raises(ValueError, match="predicts 4 classes but the test data has 10"):
        load_for_evaluation([path], num_classes=10)
    assert list(load_for_evaluation([path], num_classes=C)) == ["softmax"]


def test_held_out_calibration_feeds_label_shift():
    torch.manual_seed(1)
    model = build_model(
        ModelConfig(num_classes=C, num_experts=3, in_channels=1, hypernet=True)
    ).eval()
    X, y = tiny_test_set(30)
    Xv, yv = tiny_test_set(15, seed=5)
    bank = build_bank(model, X, y, (0.5,), (0.25,), X_val=Xv, y_val=yv)
    assert bank.calibration is not None and bank.calibration.n_items == len(yv)
    idx = np.arange(len(y))
    res = adapt(bank, idx, "prior_em", torch.tensor(PRIOR, dtype=torch.float32), check_z=None)
    assert res.note.startswith("BCTS T")
    base = adapt(bank, idx, "none", torch.full((C,), 0.25)).scores
    uniform = torch.full((C,), 1.0 / C)
    shift = torch.log(torch.tensor(res.learned["prior"])) - torch.log(uniform)
    assert torch.allclose(
        res.scores, bank.calibration(base) + shift, atol=1e-5
    )  # calibrated, then shifted
    assert build_bank(model, X, y, (0.5,), (0.25,)).calibration is None


def test_prior_weighted_accuracy_and_gain_carry_class_accuracies_to_a_new_prior():
    from lib.longtail.accuracy import prior_weighted_accuracy, prior_weighted_gain

    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 1, 0, 0, 0])  # per class 1.0, 0.5, 0.0
    assert prior_weighted_accuracy(pred, y, [1 / 3] * 3) == pytest.approx(50.0)
    assert prior_weighted_accuracy(pred, y, [0.8, 0.2, 0.0]) == pytest.approx(90.0)
    assert prior_weighted_accuracy(pred[:4], y[:4], [0.25, 0.25, 0.5]) == pytest.approx(
        75.0
    )  # class 2 absent
    better = np.array([0, 0, 1, 1, 0, 0])  # fixes the second item of class 1 only
    gain, se = prior_weighted_gain(better, pred, y, [0.5, 0.5, 0.0])
    assert gain == pytest.approx(25.0) and se == pytest.approx(
        0.5 * 50.0 / np.sqrt(2)
    )  # paired, per class
    assert prior_weighted_gain(pred, pred, y, [1 / 3] * 3) == (0.0, 0.0)


def test_held_out_check_keeps_the_unadapted_prediction_without_a_predicted_gain():
    torch.manual_seed(2)
    model = build_model(
        ModelConfig(num_classes=C, num_experts=3, in_channels=1, hypernet=True)
    ).eval()
    X, y = tiny_test_set(30)
    Xv, _ = tiny_test_set(15, seed=5)
    bank = build_bank(
        model, X, y, (0.5,), (0.25,), view_epochs=1, X_val=Xv, y_val=np.arange(len(Xv)) % C
    )
    bank.y_val = (
        bank.val_scores().argmax(1).numpy()
    )  # the unadapted model is right on every held-out image
    idx, src = np.arange(len(y)), torch.tensor(PRIOR, dtype=torch.float32)
    base = adapt(bank, idx, "none", src).scores
    for a in ("prior_em", "stability_prior", "stability_pref"):
        res = adapt(bank, idx, a, src)
        gain, _se = res.learned["held_out_gain"]
        assert gain <= 0.0  # nothing beats a held-out prediction that is always right
        if gain < 0.0:
            assert torch.equal(res.scores, base) and "kept the unadapted prediction" in res.note
    unchecked = adapt(bank, idx, "prior_em", src, check_z=None)
    assert "held_out_gain" not in unchecked.learned and not torch.equal(unchecked.scores, base)
    assert (
        adapt(bank, idx, "prior_em", src).learned["held_out_gain"][0] < 0.0
    )  # so this one fell back


@pytest.fixture(scope="module")
def imagelist_run(tmp_path_factory):
    """A sade checkpoint trained one short epoch on a tiny PNG image-list dataset (3 classes)."""
    from conftest import make_png_lists

    from lib.longtail.train import TrainConfig, fit

    root = tmp_path_factory.mktemp("imagelist")
    train_txt, test_txt = make_png_lists(root, counts=(8, 4, 2), test_per_class=4)
    cfg = TrainConfig(
        method="sade",
        dataset="imagelist",
        train_list=str(train_txt),
        test_list=str(test_txt),
        image_root=str(root),
        image_size=16,
        epochs=1,
        batch_size=4,
        max_batches=2,
        warmup_epochs=0,
        milestones=[],
        progress=False,
        device="cpu",
    )
    return root, fit(cfg, root / "run").checkpoint


def test_image_list_checkpoints_evaluate_on_their_lists(imagelist_run):
    from lib.longtail.data import ImageListData, write_image_list
    from lib.longtail.evaluate.load import evaluation_data

    root, ckpt = imagelist_run
    with pytest.warns(UserWarning, match="pass val_list"):
        data = evaluation_data(ckpt, val_per_class=100)
    assert isinstance(data, ImageListData) and data.num_classes == 3 and data.imb_ratio == 4
    assert next(iter(data.test_sets)) == "forward50" and len(data.test_sets) == 11
    assert len(data.test_sets["uniform"]) == 12 and np.bincount(
        data.test.y[data.test_sets["forward50"]], minlength=3
    ).tolist() == [4, 0, 0]
    # the floor rule ranks classes by training frequency: class 2 is the tail, so backward puts it first
    assert np.bincount(data.test.y[data.test_sets["backward2"]], minlength=3).tolist() == [2, 2, 4]
    models = load_for_evaluation([ckpt], data.num_classes)
    model, info = models["sade"]
    bank = build_bank(
        model,
        data.test.X,
        data.test.y,
        tuple(info["meta"]["mean"]),
        tuple(info["meta"]["std"]),
        view_epochs=1,
        X_val=data.test.X,
        y_val=data.test.y,
    )  # any labelled list calibrates
    table, learned = evaluate_all(
        bank,
        data.test_sets,
        data.groups,
        "sade",
        data.prior,
        ("none", "stability", "prior_em"),
        StabilityConfig(epochs=1),
    )
    assert table.shape[0] == 3 * 12 and table["top1"].between(0, 100).all()
    assert set(learned.adaptation) == {"none", "stability", "prior_em"}

    # distribution lists written as notebook 01 writes them are read back as the same subsets
    test = data.test.X.items
    for name in ("forward2", "uniform"):
        write_image_list(test.subset(data.test_sets[name]), root / f"lists/tiny_{name}.txt")
    read = evaluation_data(ckpt, dist_lists=str(root / "lists/tiny_{dist}.txt"))
    assert list(read.test_sets) == ["forward2", "uniform"]
    assert np.array_equal(read.test_sets["forward2"], data.test_sets["forward2"])
    small = evaluation_data(ckpt, test_per_class=2)
    assert len(small.test_sets["uniform"]) == 6 and len(small.test.y) == 6


def test_image_list_evaluation_bad_input(imagelist_run):
    from lib.longtail.data import build_imagelist_data
    from lib.longtail.evaluate.load import evaluation_data

    root, ckpt = imagelist_run
    with pytest.raises(ValueError, match=r"needs a \{dist\} placeholder"):
        evaluation_data(ckpt, dist_lists=str(root / "lists.txt"))
    with pytest.raises(FileNotFoundError, match="no distribution list matches"):
        evaluation_data(ckpt, dist_lists=str(root / "nowhere/{dist}.txt"))
    (root / "bad").mkdir()
    (root / "bad/x_uniform.txt").write_text(
        "train/c0/0.png 0\n"
    )  # a training image is not a test image
    with pytest.raises(ValueError, match="not in the test list"):
        evaluation_data(ckpt, dist_lists=str(root / "bad/x_{dist}.txt"))
    with pytest.raises(ValueError, match="needs 9 test images of every class"):
        build_imagelist_data(root / "train.txt", root / "test.txt", root, 3, n_max=9)
    with pytest.raises(ValueError, match="classes \\[3\\] have no training image"):
        build_imagelist_data(root / "train.txt", root / "test.txt", root, 4)
    with pytest.raises(ValueError, match="apply to image-list checkpoints"):
        evaluation_data(_array_checkpoint(root), val_list="val.txt")


def _array_checkpoint(root):
    """A Fashion-MNIST-shaped checkpoint (untrained), for the array-dataset branch of evaluation_data."""
    model = build_model(ModelConfig(num_classes=10, num_experts=1, in_channels=1))
    path = root / "array.pt"
    meta = {"dataset": "fashion_mnist", "imb_ratio": 100.0, "num_classes": 10}
    save_checkpoint(path, {"model_config": vars(model.cfg), "meta": meta, "train_config": {}})
    return path


@pytest.mark.notebook
def test_notebook_04_evaluates_an_image_list_checkpoint(imagelist_run, tmp_path):
    import pandas as pd

    from lib.run import run_notebook

    _, ckpt = imagelist_run
    params = {
        "checkpoints": [str(ckpt)],
        "test_per_class": 0,
        "val_per_class": 0,
        "tta_epochs": 1,
        "interactive": False,
        "run_dir": str(tmp_path),
    }
    run_notebook("04_agnostic_evaluation", params, tmp_path)
    top1 = pd.read_csv(tmp_path / "04_agnostic_evaluation" / "tables" / "top1_by_distribution.csv")
    assert (
        list(top1.columns[2:5]) == ["forward50", "forward25", "forward10"] and len(top1) == 5
    )  # sade: 5 rows
    assert (tmp_path / "04_agnostic_evaluation" / "figures" / "preference_sweep.png").is_file()


def test_slider_view_recomputes_on_every_move(prl_bank, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import lib.longtail.evaluate.sliders as S

    seen = []
    real = S.preference_report
    monkeypatch.setattr(
        S,
        "preference_report",
        lambda bank, pref, idx, groups: (
            seen.append((pref, len(idx))) or real(bank, pref, idx, groups)
        ),
    )
    sets = agnostic_indices(prl_bank.y, C, n_max=20, ks=(5,))
    box = S.slider_view(prl_bank, sets, GROUPS, "uniform")
    sliders, picker = box.children[0].children[0].children, box.children[0].children[1]
    assert (
        len(sliders) == 3 and len(seen) == 1 and seen[0][1] == 80
    )  # first draw: uniform pref, whole set
    sliders[0].value = 1.0
    assert torch.allclose(
        seen[-1][0], torch.tensor([1.0, 0.33, 0.33]) / 1.66
    )  # normalized to the simplex
    picker.value = "backward5"
    assert len(seen) == 3 and seen[-1][1] == len(sets["backward5"])


def test_training_seeds_are_named_filtered_and_averaged(tmp_path):
    from dataclasses import asdict

    from lib.longtail.evaluate.agnostic import over_seeds

    cfg = ModelConfig(num_classes=C, num_experts=1, in_channels=1)
    paths = []
    for method, seed in [("softmax", 0), ("sade", 0), ("sade", 1), ("sade", 2)]:
        path = tmp_path / method / f"seed{seed}" / "checkpoints" / "last.pt"
        state = {"model_config": asdict(cfg), "model": build_model(cfg).state_dict(), "epoch": 1}
        state["meta"] = {"method": method, "dataset": "fashion_mnist", "num_classes": C}
        save_checkpoint(path, {**state, "train_config": {"seed": seed}})
        paths.append(path)
    names = list(load_for_evaluation(paths, num_classes=C))
    assert names == ["softmax", "sade seed 0", "sade seed 1", "sade seed 2"]
    assert list(load_for_evaluation(paths, num_classes=C, seeds=[1])) == ["sade"]
    with pytest.raises(ValueError, match="seed in \\[7\\]"):
        load_for_evaluation(paths, num_classes=C, seeds=[7])
    idx = pd.MultiIndex.from_tuples(
        [(n, a) for n in names for a in ("none", "oracle")], names=["method", "adaptation"]
    )
    top1 = pd.DataFrame({"uniform": np.arange(8.0), "mean": np.arange(8.0) * 2}, index=idx)
    agg = over_seeds(top1)
    assert list(agg.index) == [
        ("softmax", "none"),
        ("softmax", "oracle"),
        ("sade", "none"),
        ("sade", "oracle"),
    ]
    assert agg.loc[("sade", "none"), "uniform"] == 4.0  # rows 2, 4, 6
    assert agg.loc[("sade", "none"), "uniform_sd"] == 2.0
    assert agg.loc[("sade", "oracle"), "seeds"] == 3 and agg.loc[("softmax", "none"), "seeds"] == 1
    assert over_seeds(top1.loc[["softmax"]]) is None
