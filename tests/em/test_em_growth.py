"""Growth mixtures (class-specific trajectories, random slopes): agreement with lme4 and nlme where
the models coincide, the workbook's random-intercept model as the special case, recovery."""

import warnings

import numpy as np
import pandas as pd
import pytest

from lib.em import fit_latent_lmm, load_bodyweight, load_empluk
from lib.em.growthfit import fit_growth
from lib.em.loaders import read_rdataset

# ML log-likelihoods of the same models in R (lme4 1.1 / nlme 3.1, this machine):
# lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE)
# lme(distance ~ age, Orthodont, random = ~ age | Subject, method = "ML")
# lme(weight ~ Time, BodyWeight, random = ~ Time | Rat, method = "ML")
R_LOGLIK = {"sleepstudy": -875.969672244, "Orthodont": -219.605800634, "BodyWeight": -606.851203094}


def quiet(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_growth(**kw)


@pytest.mark.parametrize(
    "name, df, y, x, subject",
    [
        (
            "sleepstudy",
            lambda: read_rdataset("lme4", "sleepstudy", 180),
            "Reaction",
            "Days",
            "Subject",
        ),
        (
            "Orthodont",
            lambda: read_rdataset("nlme", "Orthodont", 108),
            "distance",
            "age",
            "Subject",
        ),
        ("BodyWeight", load_bodyweight, "weight", "Time", "Rat"),
    ],
)
def test_k1_random_slope_equals_lme4_and_nlme(name, df, y, x, subject):
    f = quiet(df=df(), y=y, subject=subject, time=x, fixed=[x], random=[x], K=1, errors="identity")
    assert f.loglik == pytest.approx(R_LOGLIK[name], abs=1e-4)
    assert f.data.z_names == ("(intercept)", x)


def test_sleepstudy_variance_components_match_lme4():
    f = quiet(
        df=read_rdataset("lme4", "sleepstudy", 180),
        y="Reaction",
        subject="Subject",
        time="Days",
        fixed=["Days"],
        random=["Days"],
        K=1,
        errors="identity",
    )
    sd = np.sqrt(np.diag(f.params.G))
    assert sd == pytest.approx([23.7798, 5.7168], abs=2e-3)  # lme4's VarCorr (ML)
    assert np.sqrt(f.params.se2) == pytest.approx(25.5919, abs=2e-3)


@pytest.mark.parametrize("K, errors, panel", [(1, "ar1", "BodyWeight"), (2, "identity", "EmplUK")])
def test_without_mixture_or_random_slopes_it_is_the_random_intercept_model(K, errors, panel):
    if panel == "BodyWeight":
        df, kw = load_bodyweight(), dict(y="weight", fixed=["Time"], subject="Rat", time="Time")
    else:
        df = load_empluk()
        kw = dict(y="log_emp", fixed=["log_wage", "log_capital"], subject="firm", time="year")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fit_latent_lmm(df, membership=[], K=K, errors=errors, **kw).result.loglik
    assert quiet(df=df, K=K, errors=errors, **kw).loglik == pytest.approx(ref, abs=1e-6)


def test_class_specific_slopes_are_recovered():
    rng = np.random.default_rng(3)
    N, t = 120, 6
    cls = np.arange(N) % 2
    time = np.arange(t, dtype=float)
    b0 = rng.normal(0, 0.5, N)
    b1 = rng.normal(0, 0.2, N)
    y = (np.where(cls, 3.0, 0.0) + b0)[:, None] + (np.where(cls, -1.0, 1.0) + b1)[:, None] * time
    y = y + rng.normal(0, 0.5, (N, t))
    df = pd.DataFrame({"id": np.repeat(np.arange(N), t), "time": np.tile(time, N), "y": y.ravel()})
    f = quiet(
        df=df,
        y="y",
        subject="id",
        time="time",
        mixture=["time"],
        random=["time"],
        K=2,
        errors="identity",
    )
    tab = f.class_table()
    assert tab.loc["(intercept)"].to_numpy() == pytest.approx([0.0, 3.0], abs=0.25)
    assert tab.loc["time"].to_numpy() == pytest.approx([1.0, -1.0], abs=0.1)
    assert (f.posterior["class"].to_numpy() - 1 == cls).mean() > 0.95
    assert np.all(np.diff(f.path) >= -1e-8 * np.abs(f.path[:-1]))


def test_bad_growth_specifications_name_the_fix():
    bw = load_bodyweight()
    kw = dict(df=bw, y="weight", subject="Rat", time="Time")
    with pytest.raises(ValueError, match="both fixed and mixture.*drop them from fixed"):
        fit_growth(**kw, fixed=["Time"], mixture=["Time"])
    with pytest.raises(ValueError, match="growth mixtures take one of"):
        fit_growth(**kw, errors="exchangeable")
    with pytest.raises(ValueError, match="integer >= 1"):
        fit_growth(**kw, K=0)


def test_fit_latent_lmm_fits_a_growth_mixture_with_lme4s_standard_errors():
    sl = read_rdataset("lme4", "sleepstudy", 180)
    f = fit_latent_lmm(
        sl,
        y="Reaction",
        fixed=["Days"],
        membership=[],
        subject="Subject",
        time="Days",
        K=1,
        errors="identity",
        random=["Days"],
    )
    tab = f.params_table.set_index("parameter")
    # lme4 (ML): intercept 251.405105 (SE 6.6321227), Days 10.467286 (SE 1.5022302)
    assert tab.loc["class1[(intercept)]", ["estimate", "se"]].to_numpy() == pytest.approx(
        [251.405105, 6.6321227], rel=1e-3
    )
    assert tab.loc["beta[Days]", ["estimate", "se"]].to_numpy() == pytest.approx(
        [10.467286, 1.5022302], rel=1e-3
    )


def test_growth_summary_predict_and_an_unseen_level():
    bw = load_bodyweight()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = fit_latent_lmm(
            bw,
            y="weight",
            fixed=[],
            mixture=["Time"],
            random=["Time"],
            membership="C(Diet)",
            subject="Rat",
            time="Time",
            K=2,
            errors="identity",
            gamma_ridge=0.5,
        )
    text = f.summary()
    for part in (
        "Class 1 trajectory:",
        "Class 2 trajectory:",
        "reference level 1",
        "Class-membership model",
        "Posterior classification:",
    ):
        assert part in text
    new = bw[bw["Rat"].isin([1, 12])]
    with_y, without = f.predict(new), f.predict(new.drop(columns="weight"))
    assert np.allclose(without[["prob_1", "prob_2"]].sum(axis=1), 1.0)
    # the class trajectories do not depend on the responses; the probabilities do
    assert np.allclose(with_y["fitted_1"], without["fitted_1"])
    assert with_y.loc[with_y["Rat"] == 1, "prob_1"].iloc[0] > 0.99
    bad = new.assign(Diet=new["Diet"].astype(object))
    bad.loc[bad["Rat"] == 1, "Diet"] = "4"
    with pytest.raises(ValueError, match="levels \\['4'\\].*did not have"):
        f.predict(bad)


@pytest.mark.parametrize("errors", ["identity", "ar1"])
def test_growth_score_equals_numerical_differences(errors):
    from dataclasses import replace

    from statsmodels.tools.numdiff import approx_fprime

    from lib.em import dietox_frame
    from lib.em.growth import growth_estep, pack_growth, unpack_growth
    from lib.em.growthfit import growth_data, initial_growth
    from lib.em.growthscore import growth_score

    d, _ = growth_data(
        dietox_frame(), "log_weight", [], ["week"], ["week"], ["Evit_dose"], "Pig", "Time"
    )
    th = initial_growth(d, 2, errors, np.random.default_rng(1))
    G = np.array([[0.02, 0.003], [0.003, 0.01]])
    th = replace(
        th, gamma=np.array([[0.0, 0.0], [0.3, -0.01]]), G=G, rho=0.4 if errors == "ar1" else th.rho
    )
    ll, g = growth_score(d, th)
    num = approx_fprime(
        pack_growth(th), lambda x: growth_estep(d, unpack_growth(x, th)).loglik, centered=True
    )
    assert ll == pytest.approx(growth_estep(d, th).loglik)
    assert g == pytest.approx(num, rel=1e-6, abs=1e-5)


@pytest.mark.parametrize("scale", [1e-3, 1e4])
def test_a_growth_mixture_does_not_depend_on_the_units(scale):
    bw = load_bodyweight()
    kw = dict(
        fixed=[],
        mixture=["Time"],
        random=["Time"],
        membership=[],
        subject="Rat",
        time="Time",
        K=2,
        errors="identity",
    )
    base = fit_latent_lmm(bw, y="weight", **kw)
    f = fit_latent_lmm(bw.assign(weight=bw["weight"] * scale), y="weight", **kw)
    assert f.loglik + len(bw) * np.log(scale) == pytest.approx(base.loglik, abs=1e-6)
    assert f.class_table().to_numpy() / scale == pytest.approx(
        base.class_table().to_numpy(), rel=1e-5
    )
    assert f.params.G / scale**2 == pytest.approx(base.params.G, rel=1e-4)


def test_unstructured_errors_on_a_balanced_panel_reach_the_random_intercept_models_maximum():
    bw = load_bodyweight()
    kw = dict(y="weight", fixed=["Time"], membership=[], subject="Rat", time="Time", K=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fit_latent_lmm(bw, errors="unstructured", **kw).result.loglik
    g = quiet(
        df=bw, y="weight", subject="Rat", time="Time", fixed=["Time"], K=1, errors="unstructured"
    )
    assert g.loglik == pytest.approx(ref, abs=1e-4) and g.loglik >= ref - 1e-6
    assert any(n.startswith("S[") for n in g.params_table["parameter"])


def test_unstructured_errors_refuse_random_slopes():
    bw = load_bodyweight()
    kw = dict(df=bw, y="weight", subject="Rat", time="Time", errors="unstructured")
    with pytest.raises(ValueError, match="not identified beside an unstructured"):
        fit_growth(**kw, random=["Time"])


def test_separated_membership_slopes_get_no_standard_error():
    from lib.em import dietox_frame

    f = quiet(
        df=dietox_frame(),
        y="log_weight",
        subject="Pig",
        time="Time",
        mixture="week + I(week**2)",
        random=["week"],
        membership="C(Cu)",
        K=2,
        errors="ar1",
    )
    tab = f.params_table.set_index("parameter")
    gam = tab[tab.index.str.startswith("gamma")]
    assert (gam["estimate"].abs() > 15).any()  # no pig on the top dose in the small class
    assert gam["se"].isna().all() and gam["note"].str.contains("gamma_ridge").all()
    assert "near separation" in f.summary()
