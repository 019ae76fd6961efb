"""Cadzow's low-rank Hankel denoising (lib/nmr/lowrank.py): exact on sums of exponentials, a real
denoiser on noisy ones, one of the classical methods every table tunes and scores; its rank by the
noise rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import hankel

from lib.nmr.lowrank import (
    cadzow,
    cadzow_rule,
    cadzow_spectrum,
    fid_noise_sd,
    hankel_adjoint_times,
    hankel_times,
    noise_threshold,
    rule_rank,
)

LINES = [(1.0, 0.01, 0.001), (0.5, 0.13, 0.002), (0.3, -0.2, 0.0005)]  # amplitude, freq, decay


FIVE = LINES + [(0.4, 0.31, 0.003), (0.6, -0.37, 0.0015)]


def fid(n: int = 2048, lines=LINES) -> np.ndarray:
    t = np.arange(n)
    return sum(a * np.exp((2j * np.pi * f - d) * t) for a, f, d in lines)


def white(n: int, sd: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return sd * (rng.standard_normal(n) + 1j * rng.standard_normal(n))


def test_fft_products_equal_the_dense_hankel_matrix():
    rng = np.random.default_rng(0)
    f = rng.standard_normal(37) + 1j * rng.standard_normal(37)
    rows = 15
    H = np.array([[f[i + j] for j in range(37 - rows + 1)] for i in range(rows)])
    V = rng.standard_normal((37 - rows + 1, 4)) + 1j * rng.standard_normal((37 - rows + 1, 4))
    U = rng.standard_normal((rows, 4)) + 1j * rng.standard_normal((rows, 4))
    assert np.allclose(hankel_times(f, V, rows), H @ V)
    assert np.allclose(hankel_adjoint_times(f, U, rows), H.conj().T @ U)


def test_a_sum_of_r_damped_exponentials_is_kept_exactly_at_rank_r():
    assert np.abs(cadzow(fid(), 3) - fid()).max() < 1e-9


def test_noise_falls_by_far_more_than_the_rank_leaves():
    rng = np.random.default_rng(1)
    noisy = fid() + 0.3 * (rng.standard_normal(2048) + 1j * rng.standard_normal(2048))
    before = np.mean(np.abs(noisy - fid()) ** 2)
    assert np.mean(np.abs(cadzow(noisy, 3) - fid()) ** 2) < before / 50


def test_real_spectra_go_through_their_causal_fid_and_zero_filling_stays_zero():
    n = 8192
    clean = np.zeros(n, complex)
    clean[:2048] = fid()  # zero-filled 4x
    spec = np.fft.fftshift(np.fft.fft(clean)).real
    assert np.allclose(cadzow_spectrum(spec, 3), spec, atol=1e-9 * np.abs(spec).max())
    rng = np.random.default_rng(2)
    noisy = clean.copy()
    noisy[:2048] += 0.3 * (rng.standard_normal(2048) + 1j * rng.standard_normal(2048))
    nspec = np.fft.fftshift(np.fft.fft(noisy)).real
    out = cadzow_spectrum(np.stack([nspec, nspec]), 3)  # a batch, row by row
    assert out.shape == (2, n) and np.mean((out[0] - spec) ** 2) < np.mean((nspec - spec) ** 2) / 50


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="at least 4 points"):
        cadzow(np.ones(3), 2)
    with pytest.raises(ValueError, match="rank=0"):
        cadzow(fid(), 0)
    with pytest.raises(ValueError, match="sigma=-1"):
        rule_rank(fid(), sigma=-1.0)
    with pytest.raises(ValueError, match="cap=0"):
        rule_rank(fid(), cap=0)


def test_cadzow_is_one_of_the_classical_methods_tuned_and_scored():
    from lib.nmr.baselines import GRIDS, apply_baseline
    from lib.nmr.evaluate import CLASSICAL

    assert "cadzow" in GRIDS and "cadzow" in CLASSICAL
    x = np.fft.fftshift(np.fft.fft(np.concatenate([fid(), np.zeros(2048)]))).real
    assert np.allclose(apply_baseline("cadzow", x, 3, 5000.0), cadzow_spectrum(x, 3))


def test_the_noise_sd_is_read_from_the_fids_own_spectrum():
    for seed in range(3):
        assert fid_noise_sd(fid(lines=FIVE) + white(2048, 0.05, seed)) == pytest.approx(
            0.05, rel=0.1
        )


def test_the_threshold_is_the_largest_singular_value_of_a_noise_hankel_matrix():
    for seed in range(3):
        f = white(1024, 1.0, seed)
        top = np.linalg.svd(hankel(f[:512], f[511:]), compute_uv=False)[0]
        assert top / noise_threshold(1.0, 1024) == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_rule_finds_k_damped_exponentials_and_denoises(seed):
    clean, noise = fid(lines=FIVE), white(2048, 0.05, seed)
    assert abs(rule_rank(clean + noise)[0] - len(FIVE)) <= 1  # noise SD estimated
    assert abs(rule_rank(clean + noise, sigma=0.05)[0] - len(FIVE)) <= 1  # noise SD given
    out, rank = cadzow_rule(clean + noise)
    assert abs(rank - len(FIVE)) <= 1
    assert np.mean(np.abs(out - clean) ** 2) < np.mean(np.abs(noise) ** 2) / 20


def test_pure_signal_keeps_its_rank_up_to_the_cap():
    many = [(1.0 / np.sqrt(i + 1), -0.45 + 0.045 * i, 0.001) for i in range(20)]
    assert rule_rank(fid(lines=many))[0] == 20  # round-off is not a line
    assert rule_rank(fid(lines=many), cap=8)[0] == 8
    assert rule_rank(fid(), sigma=0.0)[0] == 3


def test_pure_noise_gives_a_small_rank():
    for seed in range(3):
        out, rank = cadzow_rule(white(4096, 1.0, seed))
        assert rank <= 2 and np.mean(np.abs(out) ** 2) < 0.05


def test_the_call_tunes_cadzow_on_its_coarser_grid_and_keeps_each_output():
    from lib.nmr.baselines import GRIDS, apply_baseline
    from lib.nmr.lowrank import CALL_RANKS, RANK_GRID
    from lib.nmr.scoring import classical_outputs

    assert GRIDS["cadzow"] == RANK_GRID and set(CALL_RANKS) <= set(RANK_GRID)
    clean = np.concatenate([fid(lines=FIVE), np.zeros(2048)])
    ref = np.fft.fftshift(np.fft.fft(clean)).real
    x = np.fft.fftshift(np.fft.fft(clean + np.r_[white(2048, 0.3, 5), np.zeros(2048)])).real
    outs, knobs = classical_outputs(x, ref, ref > 0.02 * ref.max(), 5000.0)
    assert set(outs) == set(GRIDS) and knobs["cadzow"] in CALL_RANKS
    for name, y in outs.items():  # the tuned output itself, the same as running the knob again
        assert np.allclose(y, apply_baseline(name, x, knobs[name], 5000.0))
