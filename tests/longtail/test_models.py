"""Multi-expert models: shapes on every backbone, the preference vector, the compact hypernetwork."""

from __future__ import annotations

import math

import pytest
import torch

from lib.longtail.models import (
    ModelConfig,
    build_model,
    check_pref,
    direct_hypernet_params,
    logit_bias,
    parameter_counts,
)


def tiny(**kw) -> ModelConfig:
    return ModelConfig(**{"num_classes": 5, "num_experts": 3, "in_channels": 1, **kw})


@pytest.mark.parametrize("size,channels,reduced", [(28, 1, True), (32, 3, False), (8, 2, True)])
def test_resnet32_returns_per_expert_logits(size, channels, reduced):
    m = build_model(tiny(in_channels=channels, reduced=reduced, hypernet=True))
    out = m(torch.randn(4, channels, size, size), [0.2, 0.3, 0.5])
    assert out.shape == (3, 4, 5)
    assert m.feat_dim == (48 if reduced else 64)
    # cosine classifier with scale 30 bounds the logits (zero-initialised generated bias)
    assert out.abs().max() <= 30 + 1e-4


def test_bottleneck_backbone_shares_trunk_and_splits_stages_3_4():
    m = build_model(
        ModelConfig(
            arch="resnext50_32x4d", num_classes=7, num_experts=2, in_channels=3, hypernet=True
        )
    )
    assert len(m.branches) == 2 and m.feat_dim == 384 * 4
    m.eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, 64, 64), [0.5, 0.5]).shape == (2, 2, 7)


def test_published_init_starts_fan_in_convolutions_and_unit_norm_heads():
    """The published SADE code's starts (issue 16): LDAM-DRW's fan-in convs, NormedLinear's unit rows."""
    torch.manual_seed(0)
    work = build_model(tiny(num_classes=10, init="workbook"))
    pub = build_model(tiny(num_classes=10, init="published", stem_channels=3))
    assert torch.allclose(pub.head_weight.norm(dim=-1), torch.ones(3, 10))
    assert work.head_weight.norm(dim=-1).mean() < 0.7  # kaiming-uniform rows: about 0.58
    stem = pub.trunk[0].weight  # 16 x 3 x 3 x 3: std sqrt(2 / 27) by fan-in, not sqrt(2 / 144)
    assert stem.shape[1] == 3 and 0.22 < float(stem.detach().std()) < 0.33
    assert 0.09 < float(work.trunk[0].weight.detach().std()) < 0.15
    wide = pub.branches[0][1][0].conv1.weight  # 24 -> 48 channels: std sqrt(2 / (24 * 9))
    assert abs(float(wide.detach().std()) / math.sqrt(2 / 216) - 1) < 0.1
    bottleneck = build_model(
        ModelConfig(arch="resnet50", num_classes=4, num_experts=1, init="published")
    )  # the published bottleneck ResNets start fan-out, as the workbook's
    conv = bottleneck.trunk[0].weight  # 64 x 3 x 7 x 7
    assert abs(float(conv.detach().std()) / math.sqrt(2 / (64 * 49)) - 1) < 0.1
    with pytest.raises(ValueError, match="unknown init 'he'"):
        build_model(tiny(init="he"))


def test_gray_images_fill_a_three_channel_stem_with_copies():
    torch.manual_seed(0)
    m = build_model(tiny(stem_channels=3)).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(m(x), m(x.repeat(1, 3, 1, 1)))
    with pytest.raises(ValueError, match="stem_channels=2 with in_channels=3"):
        build_model(tiny(in_channels=3, stem_channels=2))


def test_preference_changes_prediction_with_and_without_hypernet():
    torch.manual_seed(0)
    x = torch.randn(6, 1, 8, 8)
    for hyper in (False, True):
        m = build_model(tiny(hypernet=hyper)).eval()
        with torch.no_grad():
            a, b = m.predict(x, [0.8, 0.1, 0.1]), m.predict(x, [0.1, 0.1, 0.8])
        assert not torch.allclose(a, b)


def test_hypernet_generates_heads_that_depend_on_the_preference():
    torch.manual_seed(0)
    m = build_model(tiny(hypernet=True)).eval()
    for lin in (m.hypernet.scales, m.hypernet.biases):  # leave the zero start, as training does
        torch.nn.init.normal_(lin.weight)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        z1, z2 = m(x, [1.0, 0.0, 0.0]), m(x, [0.0, 0.0, 1.0])
    assert not torch.allclose(z1, z2)  # per-expert logits themselves move, not only the weighting
    assert not torch.allclose(logit_bias(m, [1, 0, 0]), logit_bias(m, [0, 0, 1]))
    # without a hypernetwork the experts' logits do not depend on the preference
    plain = build_model(tiny()).eval()
    with torch.no_grad():
        assert torch.equal(plain(x, [1.0, 0, 0]), plain(x, [0, 0, 1.0]))


def test_bad_preferences_are_clear_errors():
    with pytest.raises(ValueError, match="3 experts"):
        check_pref([0.5, 0.5], 3)
    with pytest.raises(ValueError, match="negative"):
        check_pref([1.2, -0.1, -0.1], 3)
    with pytest.raises(ValueError, match="sums to 1.5"):
        check_pref([0.5, 0.5, 0.5], 3)
    with pytest.warns(UserWarning, match="renormalized"):
        p = check_pref([0.335, 0.335, 0.335], 3)
    assert abs(float(p.sum()) - 1) < 1e-6
    assert torch.allclose(check_pref(None, 4), torch.full((4,), 0.25))


def test_unknown_backbone_is_an_error():
    with pytest.raises(ValueError, match="unknown backbone 'vgg'.*resnet32"):
        build_model(tiny(arch="vgg"))


def test_parameter_counts_split_the_model():
    m = build_model(tiny(hypernet=True))
    c = parameter_counts(m)
    assert sum(c.values()) == sum(p.numel() for p in m.parameters())
    assert c["heads"] == 3 * 5 * 48 and c["hypernet"] > 0
    assert parameter_counts(build_model(tiny()))["hypernet"] == 0


@pytest.mark.parametrize(
    "arch,classes,limit",
    [("resnet32", 100, 1.0), ("resnet50", 1000, 0.1), ("resnext50_32x4d", 8142, 0.1)],
)
def test_hypernet_stays_compact(arch, classes, limit):
    with torch.device("meta"):
        m = build_model(
            ModelConfig(arch=arch, num_classes=classes, num_experts=3, in_channels=3, hypernet=True)
        )
    c = parameter_counts(m)
    assert c["hypernet"] <= limit * c["backbone"]
    assert c["hypernet"] < direct_hypernet_params(3, classes, m.feat_dim) / 10
