"""Growth mixtures on large panels: the per-pattern shortcuts of the E- and M-steps and the score
equal the per-subject computation, and starts screened on a subset of the subjects reach the
maximum of the fit that screens them on every subject."""

import warnings

import numpy as np
import pandas as pd
import pytest

from lib.em import growth as growth_module
from lib.em.growth import (
    _coefficients,
    _scatter,
    growth_estep,
    growth_mstep,
    run_growth_em,
)
from lib.em.growthfit import fit_growth, growth_data, initial_growth
from lib.em.growthscore import growth_score


def mixture(N: int = 200, drop: float = 0.2, seed: int = 3) -> pd.DataFrame:
    """Three classes with their own lines, random intercept and slope, AR(1) errors, a
    membership covariate u and a subject-varying covariate x; ~`drop` of the measurements missing."""
    rng = np.random.default_rng(seed)
    t = np.arange(5.0)
    u = rng.standard_normal(N)
    cls = rng.integers(0, 3, N)
    B = np.array([[0.0, 1.0], [3.0, 0.0], [6.0, -1.0]])
    b = rng.multivariate_normal([0, 0], [[0.5, 0.05], [0.05, 0.05]], N)
    R = 0.36 * 0.5 ** np.abs(t[:, None] - t[None])
    y = (B[cls, 0] + b[:, 0])[:, None] + (B[cls, 1] + b[:, 1])[:, None] * t
    y = y + rng.multivariate_normal(np.zeros(5), R, N)
    df = pd.DataFrame(
        {
            "id": np.repeat(np.arange(N), 5),
            "time": np.tile(t, N),
            "y": y.ravel(),
            "u": np.repeat(u, 5),
            "x": rng.standard_normal(N * 5),
        }
    )
    keep = rng.random(len(df)) >= drop
    keep[::5] = True
    return df[keep].reset_index(drop=True)


def per_subject(data):
    """The same data with the per-pattern shortcuts off (every pattern's X and Z treated as varying)."""
    data.__dict__["patterns"] = [(None, None)] * len(data.blocks)
    return data


def designs(df, random=("time",)):
    return growth_data(df, "y", [], ["time"], list(random), ["u"], "id", "time")[0]


@pytest.mark.parametrize("errors, nwg", [("ar1", False), ("identity", False), ("ar1", True)])
def test_pattern_shortcuts_equal_the_per_subject_steps(errors, nwg, monkeypatch):
    df = mixture()
    fast, slow = designs(df), per_subject(designs(df))
    assert all(x is not None and z is not None for x, z in fast.patterns)
    assert sum(len(b.starts) for b, _, _ in fast.blocks) > len(fast.blocks)  # several patterns
    th = initial_growth(fast, 3, errors, np.random.default_rng(0), nwg=nwg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        th, _ = run_growth_em(fast, th, 5)  # away from the start: every term in play
    ef, es = growth_estep(fast, th), growth_estep(slow, th)
    assert ef.loglik == pytest.approx(es.loglik, rel=1e-13)
    for a, b in ((ef.P, es.P), (ef.m, es.m), (ef.V, es.V)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    for a, b in zip(_coefficients(fast, th, ef), _coefficients(slow, th, es)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(_scatter(fast, th, ef), _scatter(slow, th, es)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # many patterns: the scatters by one gathered product per subject, summed per pattern
    monkeypatch.setattr(growth_module, "MANY_PATTERNS", 0)
    for a, b in zip(_scatter(fast, th, ef), _scatter(slow, th, es)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    gf, gs = growth_score(fast, th)[1], growth_score(slow, th)[1]
    np.testing.assert_allclose(gf, gs, rtol=1e-9, atol=1e-9)
    new_f, new_s = growth_mstep(fast, th, ef), growth_mstep(slow, th, es)
    np.testing.assert_allclose(new_f.B, new_s.B, rtol=1e-9)
    np.testing.assert_allclose(new_f.G, new_s.G, rtol=1e-9)


def test_a_subject_varying_random_column_takes_the_per_subject_path():
    data = designs(mixture(), random=("x",))
    assert all(x is not None and z is None for x, z in data.patterns)
    th = initial_growth(data, 3, "ar1", np.random.default_rng(0))
    assert np.isfinite(growth_estep(data, th).loglik)


def test_subset_is_the_panel_of_those_subjects():
    df = mixture()
    data = designs(df)
    rows = np.sort(np.random.default_rng(1).choice(data.panel.N, 60, replace=False))
    sub = data.subset(rows)
    ids = data.panel.subjects[rows]
    direct = designs(df[df["id"].isin(ids)])
    th = initial_growth(data, 3, "ar1", np.random.default_rng(0))
    assert growth_estep(sub, th).loglik == pytest.approx(growth_estep(direct, th).loglik, rel=1e-12)


def test_starts_screened_on_a_subset_reach_the_same_maximum():
    df = mixture(N=400, drop=0.0)
    kw = dict(df=df, y="y", subject="id", time="time", mixture=["time"], random=["time"])
    kw.update(membership=["u"], K=3, errors="ar1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = fit_growth(**kw)
        screened = fit_growth(**kw, screen_subjects=100)
    assert screened.loglik == pytest.approx(full.loglik, abs=1e-6)
    # the path is the run on the whole panel; the starts are ranked on the whole panel
    assert np.all(np.diff(screened.path) >= -1e-10 * np.abs(screened.path[:-1]))
    assert len(screened.start_logliks) == 10 and max(screened.start_logliks) <= screened.loglik
    assert screened.path[0] == pytest.approx(max(screened.start_logliks), rel=1e-12)
