"""Growth mixtures with unstructured errors on unbalanced panels: the EM fit reaches the observed
likelihood's maximum, its path never falls, K = 1 is the random-intercept model's unstructured
fit, and a pair of times no subject shares is refused."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from lib.em import fit_latent_lmm, load_bodyweight
from lib.em.growth import growth_estep, pack_growth, run_growth_em, unpack_growth
from lib.em.growthfit import fit_growth, growth_data, initial_growth


def unbalanced_mixture(N: int = 150, T: int = 5, drop: float = 0.2, seed: int = 5) -> pd.DataFrame:
    """Two classes with their own lines, correlated errors, ~`drop` of the measurements missing."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=float)
    cls = rng.random(N) < 0.4
    S = 0.3 + 0.5 * 0.6 ** np.abs(t[:, None] - t[None])
    e = rng.multivariate_normal(np.zeros(T), S, N)
    y = np.where(cls, 2.0, 0.0)[:, None] + np.where(cls, -0.5, 1.0)[:, None] * t + e
    df = pd.DataFrame({"id": np.repeat(np.arange(N), T), "time": np.tile(t, N), "y": y.ravel()})
    return df[rng.random(len(df)) > drop].reset_index(drop=True)


def quiet_fit(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_growth(**kw)


def test_unbalanced_unstructured_fit_reaches_the_direct_maximum():
    df = unbalanced_mixture()
    kw = dict(y="y", subject="id", time="time", mixture=["time"], K=2, errors="unstructured")
    f = quiet_fit(df=df, n_starts=3, **kw)
    assert not f.data.panel.balanced and f.data.panel.n_obs < 0.85 * 150 * 5
    d, _ = growth_data(df, "y", [], ["time"], [], [], "id", "time")
    th = f.params

    def nll(x: np.ndarray) -> float:
        try:
            with np.errstate(all="ignore"):
                v = growth_estep(d, unpack_growth(x, th)).loglik
        except (np.linalg.LinAlgError, ValueError):
            return 1e10
        return -v if np.isfinite(v) else 1e10

    rng, x0 = np.random.default_rng(0), pack_growth(th)
    best = max(
        -minimize(nll, x0 + rng.normal(0, 0.1, x0.size), method="BFGS", options={"gtol": 1e-6}).fun
        for _ in range(3)
    )
    assert f.loglik == pytest.approx(best, abs=1e-4)
    assert np.all(np.diff(f.path) >= -1e-10 * np.abs(f.path[:-1]))
    # EM alone (two cycles per iteration) climbs to the same maximum and never falls
    th0 = initial_growth(d, 2, "unstructured", np.random.default_rng(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # run_growth_em warns when the likelihood falls
        _, path = run_growth_em(d, th0, 300, tol=1e-13)
    assert len(path) > 10 and np.all(np.diff(path) >= -1e-10 * np.abs(path[:-1]))
    assert path[-1] == pytest.approx(f.loglik, abs=1e-6)
    # SEs for S, predictions on a subset of the fitted times
    tab = f.params_table.set_index("parameter")
    assert np.isfinite(tab.loc[tab.index.str.startswith("S["), "se"]).all()
    new = df[df["id"].isin([0, 1]) & (df["time"] != 2.0)]
    pred = f.predict(new)
    assert np.allclose(pred[["prob_1", "prob_2"]].sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="only the fitted times"):
        f.predict(new.assign(time=new["time"] + 0.5))


def test_k1_unbalanced_unstructured_equals_the_random_intercept_model():
    df = unbalanced_mixture(seed=7)
    kw = dict(y="y", fixed=["time"], subject="id", time="time", K=1, errors="unstructured")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fit_latent_lmm(df, membership=[], **kw).result
    g = quiet_fit(df=df, **kw)
    assert g.loglik == pytest.approx(ref.loglik, abs=1e-6)
    assert g.params.S == pytest.approx(ref.params.S, abs=1e-4)


def test_unstructured_errors_refuse_a_pair_of_times_no_subject_shares():
    bw = load_bodyweight()
    odd = bw["Rat"].astype(int) % 2 == 1
    df = bw[~((odd & (bw["Time"] == 1)) | (~odd & (bw["Time"] == 64)))]
    with pytest.raises(ValueError, match=r"\(1, 64\).*errors='ar1'"):
        fit_growth(df=df, y="weight", subject="Rat", time="Time", errors="unstructured", K=1)


def test_an_unstructured_covariance_the_data_cannot_estimate_is_refused_naming_the_fix():
    """BodyWeight with a fifth of its weighings dropped: 16 rats for 66 covariances, S turns
    singular during the fit; the error says so in the growth fit's own terms."""
    bw = load_bodyweight()
    some = bw[np.random.default_rng(0).random(len(bw)) > 0.2]
    with pytest.raises(ValueError, match=r"11 x 11 unstructured.*16 subjects.*errors='ar1'"):
        fit_latent_lmm(
            some,
            y="weight",
            subject="Rat",
            time="Time",
            fixed=[],
            membership=[],
            mixture=["Time"],
            K=2,
            errors="unstructured",
        )
