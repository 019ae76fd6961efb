"""NMR denoising: simulator, preprocessing, U-Net, losses, metrics, baselines, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import peak_widths
from scipy.special import voigt_profile

from lib.nmr.baselines import (
    apply_baseline,
    coaddition,
    coaddition_gain,
    exp_broadening,
    wavelet_shrink,
)
from lib.nmr.lineshape import gauss_shares
from lib.nmr.losses import (
    LossWeights,
    consistency_loss,
    curvature_loss,
    derivative_loss,
    reconstruction_loss,
    residual_ratio_loss,
    top_bias_loss,
)
from lib.nmr.metrics import MetricConfig, spectrum_metrics, summarize
from lib.nmr.preprocess import (
    PrepConfig,
    check_T,
    estimate_T,
    fourier_shift,
    fusion_weights,
    prepare,
    pseudo_truth,
    rescale_factors,
    robust_sigma,
    xcorr_shift,
)
from lib.nmr.simulate import (
    SpectrumSimConfig,
    fid_from_lines,
    fid_to_spectrum,
    ppm_axis,
    simulate_set,
    voigt_widths,
)
from lib.nmr.unet import UNet1D, UNetConfig, denoise, n_parameters, noise_std

SMALL = SpectrumSimConfig(n_points=4096)


@pytest.fixture(scope="module")
def sim():
    return simulate_set(SMALL, 4, seed=3, snr0=10.0)


def lorentz(n: int, centers, width: float = 3.0, heights=None) -> np.ndarray:
    i = np.arange(n)[:, None]
    h = np.ones(len(centers)) if heights is None else np.asarray(heights)
    return (h / (1 + ((i - np.asarray(centers)) / (width / 2)) ** 2)).sum(1)


# --- simulator ---------------------------------------------------------------------------


def test_simulated_set_shapes_and_snr_growth(sim):
    assert sim.x.shape == (4, 4, 4096) and sim.truth.shape == (4, 4096)
    p = prepare(sim.x[0])
    # after alignment and rescaling the noise falls by T per acquisition
    assert p.T_hat == pytest.approx(2.0, rel=0.2)
    # acquisition 0's noise against the truth matches the requested input peak SNR
    sigma = np.std(sim.x[0, 0] - sim.truth[0])
    assert sim.truth[0].max() / sigma == pytest.approx(10.0, rel=0.15)


def test_fid_gives_lorentzian_at_the_right_ppm():
    cfg = SpectrumSimConfig(n_points=4096)
    hz = (7.0 - cfg.center_ppm) * cfg.spectrometer_mhz
    one = (np.array([hz]), np.array([1.0]), np.array([2.0]), np.array([0.0]))
    spec = fid_to_spectrum(fid_from_lines(one, cfg))
    assert ppm_axis(cfg)[np.argmax(spec)] == pytest.approx(7.0, abs=0.003)
    assert spec.min() > -0.01 * spec.max()  # absorption mode, no dispersion tails


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_voigt_lines_keep_their_width_and_match_scipys_voigt_profile(share):
    cfg = SpectrumSimConfig(n_points=8192)
    hz = np.fft.fftshift(np.fft.fftfreq(cfg.n_points, d=1.0 / cfg.sw_hz))
    wl, wg = voigt_widths(4.0, share)
    line = (np.array([3.3]), np.ones(1), np.array([wl]), np.array([wg]))
    spec = fid_to_spectrum(fid_from_lines(line, cfg))
    fwhm = peak_widths(spec, [np.argmax(spec)])[0][0] * cfg.sw_hz / cfg.n_points
    assert fwhm == pytest.approx(4.0, rel=0.03)  # the requested width, whatever the shape
    # an independent reference: scipy's Voigt profile (Gaussian sigma, Lorentzian half width)
    ref = voigt_profile(hz - 3.3, wg / (2 * np.sqrt(2 * np.log(2))), wl / 2)
    near = np.abs(hz - 3.3) < 40.0
    a, b = spec[near] / spec.max(), ref[near] / ref.max()
    assert np.abs(a - b).max() < 0.02


@pytest.mark.parametrize("share", [(0.0, 1.5), (0.8, 0.2), (-0.1, 0.5)])
def test_a_gaussian_share_outside_0_1_is_refused(share):
    with pytest.raises(ValueError, match="gauss_share"):
        SpectrumSimConfig(gauss_share=share)


def test_voigt_fits_recover_the_gaussian_share_of_simulated_lines():
    cfg = SpectrumSimConfig(n_points=8192)
    shares = np.array([0.0, 0.3, 0.6, 0.9])
    wl, wg = np.array([voigt_widths(3.0, g) for g in shares]).T  # 6 points wide
    freqs = np.array([-1200.0, -400.0, 400.0, 1200.0])  # far apart: one line per fit
    spec = fid_to_spectrum(fid_from_lines((freqs, np.ones(4), wl, wg), cfg))
    assert gauss_shares(spec) == pytest.approx(shares, abs=0.05)


@pytest.mark.parametrize("n", [16384, 32768])
def test_longer_spectra_supported(n):
    s = simulate_set(SpectrumSimConfig(n_points=n, n_acq=2), 1, seed=0, snr0=20)
    assert s.x.shape == (1, 2, n)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"T": 1.0}, "T must be > 1"),
        ({"n_acq": 1}, "at least two"),
        ({"n_points": 5000}, "not supported"),
        ({"singlet_amp": (6.0, 0.5)}, "singlet_amp"),
    ],
)
def test_bad_sim_config(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SpectrumSimConfig(**kw)


# --- preprocessing -----------------------------------------------------------------------


def test_subpixel_alignment_recovers_shift():
    x = lorentz(2048, [300, 700, 1200], heights=[1, 2, 0.5])
    moved = fourier_shift(x, -2.35)
    assert xcorr_shift(x, moved, 16) == pytest.approx(2.35, abs=0.06)


def test_rescale_factor_and_sigma_and_T():
    rng = np.random.default_rng(0)
    x = lorentz(4096, [1000, 3000])
    m = x > 0.05
    assert rescale_factors(np.stack([0.25 * x]), x, m)[0] == pytest.approx(4.0)
    noise = rng.normal(0, 0.1, 4096)
    assert robust_sigma(x + noise, ~m)[0] == pytest.approx(0.1, rel=0.1)
    assert estimate_T(np.array([0.8, 0.4, 0.2])) == pytest.approx(2.0)


def test_rescale_factor_unbiased_for_noisy_acquisitions():
    # a noisy regressor biases the least-squares factor towards zero on a mask that is mostly
    # noise; with the best acquisition as instrument the factors stay near their truth
    rng = np.random.default_rng(1)
    x = lorentz(4096, np.arange(250, 4096, 500), width=2.0, heights=[5, 3, 2, 4, 5, 3, 2, 4])
    m = np.zeros(4096, bool)
    m[::2] = True  # half the spectrum: mostly noise points, as a dilated peak mask is
    sig = np.array([0.5, 0.25, 0.125])
    acq = np.stack([c * (x + rng.normal(0, s, 4096)) for c, s in zip((2.0, 0.5, 3.0), sig)])
    ref = x + rng.normal(0, 0.2, 4096)
    s = rescale_factors(acq, ref, m, noise=3.0 * sig[-1])
    assert s * np.array([2.0, 0.5, 3.0]) == pytest.approx(1.0, abs=0.12)
    plain = (acq[:, m] @ ref[m]) / (acq[:, m] ** 2).sum(1) * np.array([2.0, 0.5, 3.0])
    assert plain[0] < 0.8  # the bias the instrument removes


def test_masks_cover_peaks_and_fusion_beats_input(sim):
    p = prepare(sim.x[1])
    tr = sim.truth[1]
    assert p.peak_mask[tr > 0.1 * tr.max()].mean() > 0.95
    assert not (p.peak_mask & p.base_mask).any()
    assert np.std(p.s_hat - tr) < 0.3 * np.std(p.x[0] - tr)
    best = prepare(sim.x[1], PrepConfig(fusion="best"))
    assert np.allclose(best.s_hat, best.x[-1])


def test_pseudo_truth_leaves_out_every_excluded_acquisition():
    xs = np.array([[9.0, 9.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    sigma = np.array([8.0, 4.0, 2.0, 1.0])
    # fine-tuning: acquisition 1 is the input, acquisition 0 (to be denoised) in no target
    t = pseudo_truth(xs, sigma, PrepConfig(), exclude=(1, 0))
    assert t == pytest.approx([0.2 * 2.0 + 0.8 * 3.0] * 2)
    assert pseudo_truth(xs, sigma, PrepConfig(), exclude=3)[0] < 2.5


def test_fusion_weights_capped():
    w = fusion_weights(np.array([1.0, 0.1, 0.001]), gamma=1.0, cap=5.0)
    assert w.max() / w.min() == pytest.approx(5.0) and w.sum() == pytest.approx(1.0)
    assert w[0] == w.min() and w[2] == w.max()  # the least noisy acquisition weighs most
    # uncapped, gamma 2 is inverse-variance weighting
    assert fusion_weights(np.array([2.0, 1.0]), gamma=2.0, cap=50.0) == pytest.approx([0.2, 0.8])


@pytest.mark.parametrize(
    "bad, msg",
    [
        (np.array([[1.0, np.nan, 0], [1, 2, 3]]), "NaN or infinite"),
        (np.array([[1.0, np.inf, 0], [1, 2, 3]]), "NaN or infinite"),
        ([np.zeros(8), np.zeros(9)], "different lengths"),
        (np.zeros((1, 64)), "at least two acquisitions"),
    ],
)
def test_prepare_rejects_bad_sets(bad, msg):
    with pytest.raises(ValueError, match=msg):
        prepare(bad)


@pytest.mark.parametrize("T", [1.0, 0.5, float("nan")])
def test_T_at_most_one_rejected(T):
    with pytest.raises(ValueError, match="must be > 1"):
        check_T(T)


# --- model and losses --------------------------------------------------------------------


def test_unet_identity_at_init_and_size():
    m = UNet1D(UNetConfig(base=8))
    x = torch.randn(2, 256)
    assert torch.allclose(m(x), x)
    assert 1_000_000 <= n_parameters(UNet1D(UNetConfig(base=32))) <= 3_000_000
    with pytest.raises(ValueError, match="divisible by 16"):
        m(torch.randn(1, 100))


def test_denoise_is_scale_equivariant_and_rejects_nan():
    torch.manual_seed(0)
    m = UNet1D(UNetConfig(base=8))
    torch.nn.init.normal_(m.head.weight, std=0.1)
    x = np.random.default_rng(0).normal(size=(2, 256)).astype(np.float32)
    assert np.allclose(denoise(m, 7.0 * x), 7.0 * denoise(m, x), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="NaN"):
        denoise(m, np.full(256, np.nan))


def test_losses_vanish_on_perfect_output():
    s = torch.rand(2, 64)
    ones = torch.ones(2, 64)
    w = LossWeights()
    assert reconstruction_loss(s, s, ones, w) == 0 and derivative_loss(s, s) == 0
    assert consistency_loss([s, s.clone()]) == 0
    flat = torch.ones(2, 64)
    assert curvature_loss(flat, ones) == 0
    assert reconstruction_loss(s + 1, s, ones, w) == pytest.approx(6.0)  # inside M the weight is 6
    assert reconstruction_loss(s + 2, s, ones, LossWeights(norm="l1")) == pytest.approx(12.0)
    assert reconstruction_loss(s + 2, s, ones, w) == pytest.approx(24.0)  # squared by default
    with pytest.raises(ValueError, match="norm"):
        reconstruction_loss(s, s, ones, LossWeights(norm="l3"))


def test_top_bias_loss_counts_the_mean_error_at_tall_tops_only():
    s = torch.from_numpy(lorentz(512, [100, 300, 400], width=4, heights=[5.0, 3.0, 1.0])).float()[
        None
    ]
    assert top_bias_loss(s, s, 2.0) == 0
    assert top_bias_loss(0.8 * s, s, 2.0) == pytest.approx(
        ((0.2 * 5 + 0.2 * 3) / 2) ** 2, rel=1e-3
    )  # line of 1: not a top
    scatter = s.clone()
    scatter[0, 100] += 1.0
    scatter[0, 300] -= 1.0
    assert top_bias_loss(scatter, s, 2.0) == pytest.approx(
        0.0, abs=1e-6
    )  # errors that cancel: no bias
    assert top_bias_loss(0.5 * s, s, 10.0) == 0  # no top above the threshold


def test_residual_ratio_loss_follows_T():
    g = torch.Generator().manual_seed(0)
    clean = torch.zeros(4, 4096)
    n = torch.randn(4, 4096, generator=g)
    xs = [clean + n, clean + n / 2, clean + n / 4]  # noise falls by T = 2
    b = torch.ones(4, 4096)
    assert (
        residual_ratio_loss(xs, [clean] * 3, [0, 1, 2], b, T=2.0) < 2e-3
    )  # eps floor: 1e-4 of the noise power
    assert residual_ratio_loss(xs, [clean] * 3, [0, 1, 2], b, T=4.0) > 0.5


def test_residual_ratio_loss_has_bounded_gradients_at_the_identity():
    # the identity output (the initialization) leaves a zero residual: the log must stay tame there
    x = [torch.randn(2, 512), torch.randn(2, 512) / 2]
    y = [v.clone().requires_grad_(True) for v in x]
    residual_ratio_loss(
        x, [v + 1e-6 * torch.randn_like(v) for v in y], [0, 1], torch.ones(2, 512), T=2.0
    ).backward()
    assert max(float(v.grad.abs().max()) for v in y) < 10.0


def test_noise_std_ignores_peaks_and_baseline():
    rng = np.random.default_rng(4)
    clean = 50 * lorentz(4096, [500, 1500, 2600], width=3) + np.linspace(0, 3, 4096)
    x = torch.from_numpy(np.stack([clean + rng.normal(0, s, 4096) for s in (0.5, 2.0)]))
    assert noise_std(x)[:, 0].numpy() == pytest.approx([0.5, 2.0], rel=0.08)


def test_bounded_correction_and_noise_units():
    torch.manual_seed(1)
    m = UNet1D(UNetConfig(base=8, max_correction=2.0))
    torch.nn.init.normal_(m.head.weight, std=10.0)
    x = torch.randn(2, 512) * torch.tensor([[0.1], [3.0]])
    y = m(x)
    assert ((y - x).abs() <= 2.0 * noise_std(x) + 1e-5).all()  # at most 2 noise std per point
    with pytest.raises(ValueError, match="noise_norm"):
        UNetConfig(noise_norm=False, max_correction=1.0)


# --- metrics and baselines ---------------------------------------------------------------


def test_time_factor_and_perfect_metrics():
    truth = lorentz(4096, [800, 2000, 3100], width=6, heights=[1, 0.6, 0.3])
    noise = np.random.default_rng(1).normal(0, 0.05, 4096)
    half = spectrum_metrics(truth + noise / 2, truth + noise, truth, 0.001)
    assert summarize([half])["time_factor_whole"] == pytest.approx(4.0)
    perfect = summarize([spectrum_metrics(truth, truth + noise, truth, 0.001, MetricConfig())])
    assert perfect["height_err"] == 0 and perfect["integral_err"] == 0 and perfect["f1"] == 1.0


def test_smoothing_inflates_snr_gain_but_flattens_peaks():
    truth = lorentz(4096, [800, 2000, 3100], width=3)
    x = truth + np.random.default_rng(2).normal(0, 0.1, 4096)
    heavy = summarize([spectrum_metrics(apply_baseline("savgol", x, 31, 4000.0), x, truth, 0.001)])
    assert heavy["snr_gain"] > 1.5 and heavy["height_err"] > 0.2
    assert (
        heavy["height_bias"] < -2.0
    )  # flattened tops: lower by over 0.2 (2 noise std) of a height of 1


def test_height_bias_separates_shrinkage_from_noise():
    truth = lorentz(4096, [800, 2000, 3100], width=6, heights=[1, 0.6, 0.3])
    x = truth + np.random.default_rng(3).normal(0, 0.05, 4096)
    sig = float(np.sqrt(np.mean((x - truth) ** 2)))
    shrunk = spectrum_metrics(0.5 * truth, x, truth, 0.001)
    assert shrunk["height_bias"] == pytest.approx(-0.5 * np.mean([1, 0.6, 0.3]) / sig, rel=1e-3)
    noisy = summarize(
        [
            spectrum_metrics(
                truth + np.random.default_rng(s).normal(0, 0.05, 4096), x, truth, 0.001
            )
            for s in range(40)
        ]
    )
    assert abs(noisy["height_bias"]) < 0.25 and noisy["height_err"] > 0.05  # error without bias


def test_exp_broadening_keeps_area_and_widens_lines():
    truth = lorentz(4096, [2048], width=4)
    y = exp_broadening(truth, lb_hz=5.0, sw_hz=4096 * 0.5)  # 0.5 Hz per point: 10 points
    assert y.sum() == pytest.approx(truth.sum(), rel=1e-6)
    assert y.max() < 0.5 * truth.max()


def test_wavelet_shrinkage_removes_pure_noise():
    x = np.random.default_rng(3).normal(0, 1, 4096)
    assert np.std(wavelet_shrink(x, 1.0)) < 0.3


def test_coaddition_reaches_physical_gain():
    s = simulate_set(
        SpectrumSimConfig(n_points=4096, baseline_frac=0.0, drift_ppm=0.0), 2, seed=5, snr0=10
    )
    err_in = np.mean([np.mean((s.x[i, 0] - s.truth[i]) ** 2) for i in range(2)])
    err_co = np.mean([np.mean((coaddition(prepare(s.x[i])) - s.truth[i]) ** 2) for i in range(2)])
    assert np.sqrt(err_in / err_co) == pytest.approx(coaddition_gain(2.0, 4), rel=0.25)


def test_evaluation_table_ranks_coaddition_above_classical():
    from lib.nmr.evaluate import CLASSICAL, evaluation_table, make_test_sets, tune_baselines

    cfg = (
        SpectrumSimConfig()
    )  # 8192 points: at 4096 the lines are 1-2 points wide and alignment to a noisy input fails
    sets = make_test_sets(cfg, [10], 2, seed=40)
    knobs = {10.0: tune_baselines(make_test_sets(cfg, [10], 1, seed=50)[10.0], cfg.sw_hz)}
    t = evaluation_table(None, sets, knobs, cfg.sw_hz).loc[10.0]
    assert t.loc["input", "time_factor_whole"] == pytest.approx(1.0)
    assert (
        t.loc["coaddition (all K+1)", "time_factor_peak"]
        > 2 * t.loc[list(CLASSICAL), "time_factor_peak"].max()
    )
    # wavelet shrinkage wins the whole spectrum but loses on the peaks: the reason for two factors
    assert t.loc["wavelet", "time_factor_whole"] > t.loc["wavelet", "time_factor_peak"]
    # the oracle knows the lines: it must beat every method that does not
    assert (
        t.loc["oracle line fit", "time_factor_peak"]
        > t.loc[list(CLASSICAL), "time_factor_peak"].max()
    )


def test_oracle_fit_reproduces_a_noiseless_spectrum_in_the_frame_of_acquisition_0(sim):
    from lib.nmr.oracle import oracle_fit

    # the stored lines carry acquisition 0's drift, so their fit to the truth is exact
    for i in range(len(sim)):
        truth = sim.truth[i].astype(np.float64)
        y = oracle_fit(truth, sim.lines[i], SMALL.sw_hz)
        assert np.abs(y - truth).max() < 1e-3 * truth.max()


def test_oracle_needs_a_line_list(sim):
    from lib.nmr.oracle import oracle_fit, oracle_outputs

    empty = (np.array([]), np.array([]), np.array([]))
    with pytest.raises(ValueError, match="needs the spectrum's lines"):
        oracle_fit(sim.truth[0], empty, SMALL.sw_hz)
    with pytest.raises(ValueError, match="needs a simulated set"):
        oracle_outputs(sim.x[:, 0], [], SMALL.sw_hz)


def test_time_factor_weighs_spectra_by_size_not_scale():
    # each acquisition is normalized its own way: scaling one spectrum must not change the pooled factor
    truth = lorentz(4096, [800, 2000, 3100], width=6, heights=[1, 0.6, 0.3])
    rng = np.random.default_rng(4)
    x1, x2 = truth + rng.normal(0, 0.05, 4096), truth + rng.normal(0, 0.05, 4096)
    good, bad = truth + (x1 - truth) / 3, x2  # factor 9 on the first spectrum, 1 on the second
    rows = [spectrum_metrics(good, x1, truth, 0.001), spectrum_metrics(bad, x2, truth, 0.001)]
    scaled = [spectrum_metrics(1000 * good, 1000 * x1, 1000 * truth, 0.001), rows[1]]
    assert summarize(scaled)["time_factor_peak"] == pytest.approx(
        summarize(rows)["time_factor_peak"]
    )
    assert summarize(rows)["time_factor_whole"] == pytest.approx(2 / (1 / 9 + 1), rel=1e-6)


def test_goal_support_is_firm_for_clear_verdicts_and_matches_the_point_check():
    from lib.nmr.evaluate import GOALS, goal_check, goal_support, pooled_table

    truth = lorentz(4096, [800, 2000, 3100], width=6, heights=[1, 0.6, 0.3])
    rng = np.random.default_rng(5)
    xs = [truth + rng.normal(0, 0.05, 4096) for _ in range(8)]
    by_method = {"input": [spectrum_metrics(x, x, truth, 0.001) for x in xs]}
    for m, shrink in (
        ("unet", 0.2),
        ("savgol", 0.7),
        ("wavelet", 0.8),
        ("exp_lb", 0.9),
        ("cadzow", 0.95),
    ):
        by_method[m] = [spectrum_metrics(truth + shrink * (x - truth), x, truth, 0.001) for x in xs]
    rows = {10.0: by_method}
    support = goal_support(rows, n_boot=200, seed=1)
    point = goal_check(pooled_table(rows))
    # noise cut to 0.2 (factor 25) against 0.7 at best (about 2): every goal holds in every resample
    assert (support.loc[10.0, list(GOALS)] == 1.0).all() and point.loc[10.0, list(GOALS)].all()
    assert support.loc[10.0, "peak_factor_p5"] <= 25 <= support.loc[10.0, "peak_factor_p95"] * 1.01
    rows[10.0]["unet"] = by_method["input"]  # the raw input: never a factor of 4
    assert goal_support(rows, n_boot=200, seed=1).loc[10.0, "peak_factor>=4"] == 0.0
    with pytest.raises(ValueError, match="n_boot"):
        goal_support(rows, n_boot=0)
