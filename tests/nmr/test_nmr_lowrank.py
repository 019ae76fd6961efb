"""Cadzow's low-rank Hankel denoising (lib/nmr/lowrank.py): exact on sums of exponentials, a real
denoiser on noisy ones, and one of the classical methods every table tunes and scores."""

from __future__ import annotations

import numpy as np
import pytest

from lib.nmr.lowrank import cadzow, cadzow_spectrum, hankel_adjoint_times, hankel_times

LINES = [(1.0, 0.01, 0.001), (0.5, 0.13, 0.002), (0.3, -0.2, 0.0005)]  # amplitude, freq, decay


def fid(n: int = 2048) -> np.ndarray:
    t = np.arange(n)
    return sum(a * np.exp((2j * np.pi * f - d) * t) for a, f, d in LINES)


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


def test_cadzow_is_one_of_the_classical_methods_tuned_and_scored():
    from lib.nmr.baselines import GRIDS, apply_baseline
    from lib.nmr.evaluate import CLASSICAL

    assert "cadzow" in GRIDS and "cadzow" in CLASSICAL
    x = np.fft.fftshift(np.fft.fft(np.concatenate([fid(), np.zeros(2048)]))).real
    assert np.allclose(apply_baseline("cadzow", x, 3, 5000.0), cadzow_spectrum(x, 3))
