"""The network's guard beyond its training SNR: the blend weight, the card's range, fine-tuned copies."""

from __future__ import annotations

import numpy as np
import pytest

from lib.nmr.denoiser import as_model
from lib.nmr.finetune import FineTune, fine_tune
from lib.nmr.modelfile import trained_snr_top
from lib.nmr.unet import BLEND_AT, UNet1D, UNetConfig, denoise, input_weight


def test_weight_is_one_within_the_training_range_and_falls_beyond_it():
    snr = np.array([1.0, 10.0, 25.0, 40.0, 100.0, 1e3, 1e5])
    w = input_weight(snr, 25.0)
    assert np.all(w[:3] == 1.0)
    assert np.all(np.diff(w) <= 0) and w[-1] < 1e-6
    # half weight near BLEND_AT times the top, and the output weight falls as 1/SNR^2 beyond
    assert input_weight([np.sqrt(1 + BLEND_AT**2) * 25.0], 25.0)[0] == pytest.approx(0.5)
    assert w[-2] / w[-1] == pytest.approx(1e4, rel=1e-2)
    assert np.all(input_weight(snr, None) == 1.0)


@pytest.mark.parametrize(
    "card, want",
    [
        ({"made_by": {"sim": {"snr_range": [4.0, 25.0]}}}, 25.0),
        ({"made_by": {"sim": {"snr_range": [4, 30]}}}, 30.0),
        ({"made_by": {}}, None),  # a card without its simulator: no range, no blend
        ({"made_by": {"sim": {"snr_range": [4.0, "25"]}}}, None),  # text is not a number
        ({"made_by": {"sim": {"snr_range": [4.0, True]}}}, None),
        ({"made_by": {"sim": {"snr_range": [4.0, -1.0]}}}, None),
        ({"made_by": {"sim": {"snr_range": [4.0, float("inf")]}}}, None),
        ({"made_by": {"sim": {"snr_range": 25.0}}}, None),
        ({"made_by": {"sim": ["snr_range"]}}, None),
        ({"made_by": "sim"}, None),
    ],
)
def test_the_training_range_is_read_from_the_card_and_nothing_else(card, want):
    assert trained_snr_top(card) == want


def test_the_shipped_model_knows_its_range_and_a_fine_tuned_copy_keeps_it():
    net, _ = as_model(None)
    assert net.snr_top == 25.0  # the shipped card's simulator: input SNR 4-25
    rng = np.random.default_rng(0)
    tiny = UNet1D(UNetConfig(base=8, groups=4))
    tiny.snr_top = 25.0
    pts = np.arange(256)
    clean = sum(h / (1 + ((pts - c) / 2.0) ** 2) for h, c in [(1.0, 60), (0.5, 150), (0.3, 200)])
    x = np.stack([clean + rng.normal(scale=0.1 / 2**k, size=256) for k in range(4)])
    tuned, _ = fine_tune(tiny, x, FineTune(steps=10, batch=2, crop=128), progress=False)
    assert tuned.snr_top == 25.0


def test_a_clean_spectrum_comes_back_near_its_input_and_a_noisy_one_untouched():
    net, _ = as_model(None)
    rng = np.random.default_rng(1)
    pts = np.arange(2048)
    clean = sum(h / (1 + ((pts - c) / 3.0) ** 2) for h, c in [(1.0, 500), (0.6, 900), (0.3, 1500)])
    for snr, close in [(1e5, True), (10.0, False)]:
        x = clean + rng.normal(scale=1.0 / snr, size=pts.size)
        y = denoise(net, x)
        if close:  # weight about 1e-5: the output is the input within float32 rounding
            assert np.max(np.abs(y - x)) < 1e-3 / snr * 10
        else:
            assert np.array_equal(y, denoise(net, x, blend=False))
