"""The data-frame interface fit_latent_lmm on a real unbalanced panel (dietox): tables, prediction, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from lib.em.data import dietox_frame
from lib.em.model import fit_latent_lmm


@pytest.fixture(scope="module")
def pigs() -> pd.DataFrame:
    """dietox as shipped: 72 pigs, 861 weighings, 3 pigs missing the last one (unbalanced)."""
    return dietox_frame().reset_index(drop=True)


@pytest.fixture(scope="module")
def fit(pigs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_latent_lmm(
            pigs,
            y="log_weight",
            fixed="week + I(week**2)",
            membership=["Evit_dose", "Cu_dose"],
            subject="Pig",
            time="Time",
            K=2,
            errors="ar1",
        )


def test_fit_keeps_every_measurement_and_reports_tables(pigs, fit):
    assert fit.panel.N == 72 and fit.panel.n_obs == len(pigs) and not fit.panel.balanced
    tab = fit.params.set_index("parameter")
    assert {
        "alpha[week]",
        "alpha[I(week ** 2)]",
        "mu[1]",
        "mu[2]",
        "gamma[2][Cu_dose]",
        "rho",
    } <= set(tab.index)
    ok = tab["se"].notna()  # sigma_b sits at its boundary 0 on dietox: no interval there, by design
    assert (tab["ci_low"] <= tab["estimate"])[ok].all() and (tab["estimate"] <= tab["ci_high"])[
        ok
    ].all()
    c = fit.criteria
    assert c["BIC"] == pytest.approx(-2 * c["loglik"] + c["n_params"] * np.log(72))
    assert c["n_obs"] == len(pigs) and 1 <= c["starts_at_top"] <= 3 and 0 <= c["entropy"] <= 1
    post = fit.posterior
    assert (
        post.index.name == "Pig"
        and len(post) == 72
        and np.allclose(post[["class1", "class2"]].sum(axis=1), 1)
    )


def test_predict_new_subjects_from_covariates_and_from_responses(pigs, fit):
    one = pigs[pigs["Pig"] == pigs["Pig"].iloc[0]]
    prior = fit.predict(one.drop(columns="log_weight"))
    th = fit.result.params
    assert (
        np.allclose(prior[["prob_1", "prob_2"]].sum(axis=1), 1) and prior["prob_1"].nunique() == 1
    )
    assert np.allclose(prior["fitted_2"] - prior["fitted_1"], th.mu[1] - th.mu[0])
    assert prior["fitted_subject"].isna().all()
    post = fit.predict(one)
    # with its weighings the class probabilities are the fit's posterior for that pig
    assert post["prob_1"].iloc[0] == pytest.approx(
        fit.posterior.loc[one["Pig"].iloc[0], "class1"], abs=1e-8
    )
    # with identity errors sigma_b^2 > 0 (under AR(1) it sits at 0 on dietox): the pig's own level
    # beats the class average
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ident = fit_latent_lmm(
            pigs,
            y="log_weight",
            fixed="week + I(week**2)",
            membership=["Evit_dose"],
            subject="Pig",
            time="Time",
            K=2,
            errors="identity",
        )
    assert ident.result.params.sb2 > 0
    post_i = ident.predict(one)
    err_subject = np.abs(post_i["fitted_subject"] - one["log_weight"]).mean()
    err_class = np.abs(post_i["fitted"] - one["log_weight"]).mean()
    assert err_subject < err_class
    # a pig seen only at two new, fractional times still gets a prediction (continuous-time AR(1))
    new = one.iloc[:2].assign(Pig=-1, Time=[2.5, 3.5])
    assert fit.predict(new)["fitted_subject"].notna().all()


def test_summary_reads_like_lcmm(fit):
    text = fit.summary()
    for part in (
        "Statistical model:",
        "72 subjects",
        "unbalanced",
        "Goodness-of-fit statistics:",
        "BIC",
        "class-membership model",
        "reached the best log-likelihood",
        "Posterior classification:",
    ):
        assert part in text


def test_bad_input_names_the_fix(pigs):
    kw = dict(y="log_weight", fixed=["week"], membership=[], subject="Pig", K=1)
    with pytest.raises(ValueError, match="not numeric.*pd.to_numeric"):
        fit_latent_lmm(pigs.assign(Time=pigs["Time"].astype(str)), time="Time", **kw)
    with pytest.raises(ValueError, match="not numeric"):
        fit_latent_lmm(pigs.assign(Time=pigs["Time"].astype("category")), time="Time", **kw)
    with pytest.raises(ValueError, match="repeat a \\(Pig, Time\\) pair.*aggregate"):
        fit_latent_lmm(pd.concat([pigs, pigs.iloc[:1]]), time="Time", **kw)
    with pytest.raises(ValueError, match="response y is constant"):
        fit_latent_lmm(pigs.assign(log_weight=3.0), time="Time", **kw)
    with pytest.raises(ValueError, match="smaller K"):
        fit_latent_lmm(pigs, time="Time", **{**kw, "K": 20})
    with pytest.raises(KeyError, match="not in the data"):
        fit_latent_lmm(pigs, time="Time", **{**kw, "fixed": ["weeks"]})
    with pytest.raises(ValueError, match="not numeric"):
        fit_latent_lmm(pigs.assign(week=pigs["week"].astype(str)), time="Time", **kw)
    with pytest.raises(TypeError, match="DataFrame"):
        fit_latent_lmm(pigs.to_numpy(), time="Time", **kw)


def test_one_measurement_subjects_under_ar1_are_kept_with_a_warning(pigs):
    thin = pigs[~((pigs["Pig"] < 5000) & (pigs["Time"] > 2))]  # some pigs keep a single weighing
    n_single = int((thin.groupby("Pig").size() == 1).sum())
    assert n_single > 0
    with pytest.warns(UserWarning, match=f"{n_single} subjects have a single measurement: kept"):
        fit = fit_latent_lmm(
            thin, y="log_weight", fixed=["week"], membership=[], subject="Pig", time="Time", K=1
        )
    assert fit.panel.n_obs == len(thin)
