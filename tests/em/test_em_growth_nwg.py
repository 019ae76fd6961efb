"""Class-specific scaling of G in growth mixtures (lcmm's nwg): the score, the maximum, recovery
of the scales, the class reordering, the refusals, and nwg=False leaving the old fit as it was."""

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from statsmodels.tools.numdiff import approx_fprime

from lib.em import dietox_frame, fit_latent_lmm, load_bodyweight
from lib.em.growth import growth_estep, pack_growth, run_growth_em, unpack_growth
from lib.em.growthfit import fit_growth, growth_data, initial_growth, reorder
from lib.em.growthscore import growth_score

KW = dict(y="y", subject="id", time="time", mixture=["time"], random=["time"], K=2)


def scaled_mixture(N: int, seed: int, w: tuple[float, float] = (2.0, 1.0)) -> pd.DataFrame:
    """Two classes of lines; the random intercepts and slopes of class k have covariance w_k^2 G."""
    rng = np.random.default_rng(seed)
    t = np.arange(6, dtype=float)
    cls = (rng.random(N) < 0.5).astype(int)
    G = np.array([[0.5, 0.05], [0.05, 0.04]])
    b = rng.multivariate_normal(np.zeros(2), G, N) * np.asarray(w)[cls][:, None]
    y = (np.where(cls, 3.0, 0.0) + b[:, 0])[:, None]
    y = y + (np.where(cls, -0.5, 0.5) + b[:, 1])[:, None] * t + rng.normal(0, 0.5, (N, 6))
    return pd.DataFrame({"id": np.repeat(np.arange(N), 6), "time": np.tile(t, N), "y": y.ravel()})


def quiet_fit(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_growth(**kw)


@pytest.mark.parametrize("errors", ["identity", "ar1"])
def test_nwg_score_equals_numerical_differences(errors):
    d, _ = growth_data(
        dietox_frame(), "log_weight", [], ["week"], ["week"], ["Evit_dose"], "Pig", "Time"
    )
    th = initial_growth(d, 2, errors, np.random.default_rng(1), nwg=True)
    th = replace(
        th,
        gamma=np.array([[0.0, 0.0], [0.3, -0.01]]),
        G=np.array([[0.02, 0.003], [0.003, 0.01]]),
        rho=0.4 if errors == "ar1" else th.rho,
        w=np.array([1.7, 1.0]),
    )
    ll, g = growth_score(d, th)
    num = approx_fprime(
        pack_growth(th), lambda x: growth_estep(d, unpack_growth(x, th)).loglik, centered=True
    )
    assert ll == pytest.approx(growth_estep(d, th).loglik)
    assert g == pytest.approx(num, rel=1e-6, abs=1e-5)


def test_nwg_fit_reaches_the_direct_maximum_and_em_never_falls():
    df = scaled_mixture(200, 1)
    f = quiet_fit(df=df, errors="identity", nwg=True, n_starts=3, **KW)
    d, _ = growth_data(df, "y", [], ["time"], ["time"], [], "id", "time")
    th = f.params

    def neg(x: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            with np.errstate(all="ignore"):
                ll, g = growth_score(d, unpack_growth(x, th))
        except (np.linalg.LinAlgError, ValueError):
            return 1e10, np.zeros_like(x)
        return -ll, -g

    rng, x0 = np.random.default_rng(0), pack_growth(th)
    best = max(
        -minimize(neg, x0 + rng.normal(0, 0.2, x0.size), jac=True, method="BFGS").fun
        for _ in range(4)
    )
    assert f.loglik == pytest.approx(best, abs=1e-4)
    assert np.all(np.diff(f.path) >= -1e-10 * np.abs(f.path[:-1]))
    th0 = initial_growth(d, 2, "identity", np.random.default_rng(2), nwg=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # run_growth_em warns when the likelihood falls
        th1, path = run_growth_em(d, th0, 300, tol=1e-12)
    assert np.all(np.diff(path) >= -1e-10 * np.abs(path[:-1]))
    assert path[-1] == pytest.approx(f.loglik, abs=1e-3)
    assert th1.w[-1] == 1.0 and th.w[-1] == 1.0
    # the extra scale separates this fit from the shared-G one by far
    f0 = quiet_fit(df=df, errors="identity", n_starts=3, **KW)
    assert f.loglik - f0.loglik > 10 and f.n_params == f0.n_params + 1


def test_nwg_recovers_the_class_scale_on_a_large_panel():
    f = quiet_fit(df=scaled_mixture(1000, 10), errors="identity", nwg=True, n_starts=3, **KW)
    tab = f.params_table.set_index("parameter")
    w, se = tab.loc["w[class1]", ["estimate", "se"]].to_numpy(float)
    assert abs(w - 2.0) < 3 * se and 0.02 < se < 0.2
    assert f.params.G == pytest.approx(np.array([[0.5, 0.05], [0.05, 0.04]]), abs=0.1)
    text = f.summary()
    assert "w[class1]" in text and "class 2, the highest intercept, is the reference" in text


def test_reordering_keeps_the_likelihood_and_renormalizes_the_reference():
    d, _ = growth_data(dietox_frame(), "log_weight", [], ["week"], ["week"], [], "Pig", "Time")
    th = initial_growth(d, 2, "identity", np.random.default_rng(1), nwg=True)
    th = replace(th, gamma=np.array([[0.0], [0.4]]), w=np.array([2.0, 1.0]))
    swapped = reorder(th, np.array([1, 0]))
    assert swapped.w == pytest.approx([0.5, 1.0]) and swapped.G == pytest.approx(4 * th.G)
    assert growth_estep(d, swapped).loglik == pytest.approx(growth_estep(d, th).loglik, abs=1e-9)


def test_nwg_refusals_and_routing():
    bw = load_bodyweight()
    kw = dict(df=bw, y="weight", subject="Rat", time="Time", nwg=True)
    with pytest.raises(ValueError, match="needs K >= 2"):
        fit_growth(**kw, K=1, random=["Time"])
    with pytest.raises(ValueError, match="errors='unstructured' G is held at 0"):
        fit_growth(**kw, K=2, errors="unstructured")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = fit_latent_lmm(
            bw, y="weight", fixed=[], membership=[], subject="Rat", time="Time", nwg=True
        )
    assert f.params.w is not None and f.params.w[-1] == 1.0


def test_nwg_false_reproduces_the_shared_g_fit():
    kw = dict(mixture=["Time"], random=["Time"], subject="Rat", time="Time", K=2)
    f = quiet_fit(df=load_bodyweight(), y="weight", errors="identity", nwg=False, **kw)
    assert f.loglik == pytest.approx(-596.96552047316, abs=1e-9)  # before nwg existed
    assert f.params.w is None and f.estep.Vk is None


def test_a_class_scale_at_zero_is_reported_at_the_boundary():
    """A class whose subjects share one trajectory exactly: its scale goes to 0, and the table gives
    no Wald interval there but a note."""
    f = quiet_fit(df=scaled_mixture(300, seed=4, w=(0.0, 1.0)), errors="identity", nwg=True, **KW)
    tab = f.params_table.set_index("parameter")
    w = tab.loc["w[class1]"]
    assert w["estimate"] < 1e-3
    assert np.isnan(w["se"]) and "at 0" in w["note"]
