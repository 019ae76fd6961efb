"""Growth-mixture specifications the data cannot support: refused with the fix, or handled as documented."""

import warnings

import numpy as np
import pandas as pd
import pytest

from lib.em import fit_latent_lmm, load_bodyweight
from lib.em.growthfit import fit_growth


@pytest.fixture(scope="module")
def bw() -> pd.DataFrame:
    df = load_bodyweight()
    df["diet_number"] = df["Diet"].astype(str).astype(float)  # constant within each rat
    df["t2"] = (df["Time"] / 10.0) ** 2
    return df


def test_a_random_slope_on_a_column_constant_within_every_subject_is_refused(bw):
    with pytest.raises(
        ValueError, match="'diet_number'.*constant within every subject.*membership"
    ):
        fit_growth(df=bw, y="weight", subject="Rat", time="Time", random=["diet_number"], K=2)
    # the same column is welcome where it describes the subject
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = fit_growth(
            df=bw,
            y="weight",
            subject="Rat",
            time="Time",
            random=["Time"],
            K=2,
            membership=["diet_number"],
            n_starts=2,
        )
    assert np.isfinite(f.loglik)


def test_more_random_effects_than_any_subject_has_measurements_is_refused(bw):
    two = bw.sort_values(["Rat", "Time"]).groupby("Rat").head(2)
    with pytest.raises(ValueError, match=r"3 random effects .* no subject has more than 2"):
        fit_latent_lmm(
            two,
            y="weight",
            subject="Rat",
            time="Time",
            fixed=[],
            membership=[],
            random=["Time", "t2"],
            K=1,
            errors="identity",
        )


def test_a_random_slope_without_variance_ends_at_the_boundary_not_in_an_error():
    """G starts diagonal and positive, and the E-step holds for a singular G: where the slopes do
    not vary the fit ends near G's boundary, at or above the random-intercept fit it nests."""
    rng = np.random.default_rng(3)
    N, T = 120, 6
    t = np.arange(T, dtype=float)
    y = rng.normal(size=(N, 1)) + 0.5 * t + rng.normal(scale=0.5, size=(N, T))
    df = pd.DataFrame({"id": np.repeat(np.arange(N), T), "t": np.tile(t, N), "y": y.ravel()})
    kw = dict(df=df, y="y", subject="id", time="t", fixed=["t"], K=1, errors="identity")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slope = fit_growth(**kw, random=["t"])
        flat = fit_growth(**kw)
    assert slope.params.G[1, 1] < 0.01 * slope.params.G[0, 0]
    assert flat.loglik - 1e-6 <= slope.loglik < flat.loglik + 3.0  # chance slope variance only
