"""EM for the latent-subgroup mixed model: likelihood, EM steps, cross-checks, inference, bad input."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.stats import multivariate_normal

from lib.em import (
    EMConfig,
    EmptyClassError,
    Panel,
    PanelSimConfig,
    Params,
    dietox_panel,
    fit_em,
    from_long,
    loglik,
    simulate,
)
from lib.em.estep import design_u, e_step
from lib.em.inference import (
    classification_table,
    criteria,
    lrt,
    maximize_direct,
    natural,
    pack,
    param_table,
    spec_of,
    unpack,
)
from lib.em.iterate import run_em
from lib.em.params import ar1_corr
from lib.em.starts import initial_params


@pytest.fixture(scope="module")
def sim300():
    return simulate(PanelSimConfig(n_subjects=300, seed=1))


@pytest.fixture(scope="module")
def fit300(sim300):
    return fit_em(sim300.panel, EMConfig(tol=1e-12))


def _loglik_loop(panel: Panel, th: Params) -> float:
    """Slow reference: per-subject mixture of scipy multivariate normals."""
    U1 = design_u(panel)
    total = 0.0
    for i in range(panel.N):
        eta = U1[i] @ th.gamma.T
        pi = np.exp(eta - eta.max())
        pi /= pi.sum()
        mean0 = panel.W[i] @ th.alpha
        dens = [
            multivariate_normal(mean0 + th.mu[k], th.sigma()).pdf(panel.y[i]) for k in range(th.K)
        ]
        total += np.log(pi @ np.asarray(dens))
    return total


@pytest.mark.parametrize("structure", ["identity", "ar1", "unstructured"])
def test_loglik_matches_explicit_mixture_density(structure):
    d = simulate(PanelSimConfig(n_subjects=40, n_times=4, structure=structure, seed=2))
    th = replace(d.truth, alpha=d.truth.alpha + 0.1, mu=d.truth.mu * 0.9)
    assert loglik(d.panel, th) == pytest.approx(_loglik_loop(d.panel, th), rel=1e-10)


def test_posterior_of_b_matches_gaussian_conditioning(sim300):
    panel, th = sim300.panel, sim300.truth
    es = e_step(panel, design_u(panel), th)
    i = 7
    S = th.sigma()
    B = th.sb2 * np.ones(panel.t)
    r = panel.y[i] - panel.W[i] @ th.alpha
    for k in range(th.K):
        m = th.mu[k] + B @ np.linalg.solve(S, r - th.mu[k])
        assert es.m[i, k] == pytest.approx(m, rel=1e-10)
    assert es.v[i] == pytest.approx(th.sb2 - B @ np.linalg.solve(S, B), rel=1e-10)
    assert np.allclose(es.P.sum(axis=1), 1.0)


@pytest.mark.parametrize("accelerate", [False, True])
@pytest.mark.parametrize(
    "structure,K", [("identity", 2), ("ar1", 3), ("unstructured", 3), ("ar1", 4)]
)
def test_loglik_never_decreases(structure, K, accelerate):
    d = simulate(PanelSimConfig(n_subjects=200, structure=structure, seed=5))
    cfg = EMConfig(K=K, structure=structure, tol=1e-14, accelerate=accelerate)
    # a deliberately poor start, so the path is long and moves a lot
    th0 = initial_params(d.panel, cfg, np.random.default_rng(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, path, _ = run_em(d.panel, th0, cfg, 300)
    path = np.asarray(path)
    assert path[-1] > path[0] + 1.0
    assert np.all(np.diff(path) >= -1e-9 * np.abs(path[:-1])), np.diff(path).min()


def test_k1_identity_matches_statsmodels_mixedlm_ml():
    d = simulate(
        PanelSimConfig(n_subjects=150, n_times=6, mu=(0.5,), gamma=(), structure="identity", seed=3)
    )
    p = d.panel
    res = fit_em(p, EMConfig(K=1, structure="identity", tol=1e-14))
    X = np.column_stack([np.ones(p.N * p.t), p.W.reshape(p.N * p.t, -1)])
    ml = sm.MixedLM(p.y.ravel(), X, groups=np.repeat(np.arange(p.N), p.t)).fit(reml=False)
    assert abs(res.loglik - ml.llf) / abs(ml.llf) < 1e-6
    assert res.params.sb2 == pytest.approx(float(np.asarray(ml.cov_re)[0, 0]), rel=1e-3)
    assert res.params.se2 == pytest.approx(ml.scale, rel=1e-3)
    assert np.allclose(res.params.alpha, ml.fe_params[1:], atol=1e-4)


def test_em_maximum_matches_direct_maximization(sim300, fit300):
    start = initial_params(sim300.panel, EMConfig(), None)  # not the EM answer
    th_d, ll_d = maximize_direct(sim300.panel, start)
    assert abs(ll_d - fit300.loglik) < 1e-3
    assert (
        np.abs(
            natural(pack(th_d), spec_of(th_d)) - natural(pack(fit300.params), spec_of(th_d))
        ).max()
        < 1e-2
    )


def test_pack_unpack_round_trip(fit300):
    for structure in ("identity", "ar1", "unstructured"):
        th = replace(fit300.params, se2=1.3)
        th = (
            replace(th.with_cov(th.sigma()), sb2=0.0)
            if structure == "unstructured"
            else replace(th, structure=structure)
        )
        x = pack(th)
        back = unpack(x, spec_of(th))
        assert np.allclose(back.sigma(), th.sigma()) and np.allclose(back.gamma, th.gamma)


def test_recovers_truth_on_a_large_panel():
    d = simulate(PanelSimConfig(n_subjects=5000, seed=11))
    res = fit_em(d.panel)
    th, tr = res.params, d.truth
    assert np.allclose(th.mu, tr.mu, atol=0.12) and np.allclose(th.alpha, tr.alpha, atol=0.06)
    assert np.allclose(th.gamma, tr.gamma, atol=0.25)
    assert (
        abs(np.sqrt(th.sb2) - 1) < 0.06
        and abs(np.sqrt(th.se2) - 1) < 0.03
        and abs(th.rho - 0.5) < 0.04
    )
    assert (res.classes == d.classes).mean() > 0.85


def test_classes_are_ordered_and_gamma_referenced_to_class_1(fit300):
    th = fit300.params
    assert np.all(np.diff(th.mu) > 0)
    assert np.all(th.gamma[0] == 0)


def test_unstructured_reports_sigma_b_not_identified():
    d = simulate(PanelSimConfig(n_subjects=200, structure="unstructured", seed=4))
    with pytest.warns(UserWarning, match="not identified"):
        res = fit_em(d.panel, EMConfig(structure="unstructured"))
    assert not res.sb2_identified
    # the ridge: moving variance between sigma_b^2 11' and S leaves the likelihood unchanged
    th = res.params
    assert th.sb2 == 0.0  # absorbed into S
    shifted = replace(th.with_cov(th.S - 0.3), sb2=0.3)
    assert loglik(d.panel, shifted) == pytest.approx(res.loglik, abs=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = param_table(res, d.panel)
    assert np.isnan(tab.set_index("parameter").loc["sigma_b", "estimate"])
    assert tab["se"].iloc[:-1].notna().all()


def test_param_table_intervals(sim300, fit300):
    tab = param_table(fit300, sim300.panel).set_index("parameter")
    assert (tab["se"] > 0).all()
    assert (tab["ci_low"] < tab["estimate"]).all() and (tab["estimate"] < tab["ci_high"]).all()
    assert (
        tab.loc["sigma_b", "ci_low"] > 0
        and -1 < tab.loc["rho", "ci_low"] < tab.loc["rho", "ci_high"] < 1
    )
    truth = pd.Series(natural(pack(sim300.truth), spec_of(sim300.truth)), index=tab.index)
    inside = (tab["ci_low"] <= truth) & (truth <= tab["ci_high"])
    assert inside.mean() >= 0.75  # 14 intervals at 95%: a few misses at most


def test_criteria_and_classification_table(fit300):
    c = criteria(fit300).iloc[0]
    N = fit300.posterior.shape[0]
    assert c["BIC"] == pytest.approx(-2 * fit300.loglik + fit300.n_params * np.log(N))
    assert 0 < c["entropy"] <= 1 and c["ICL1"] >= c["BIC"] and c["ICL2"] >= c["BIC"]
    tab = classification_table(fit300)
    assert tab["n"].sum() == N
    probs = tab[[c for c in tab.columns if c.startswith("mean P")]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.all(np.diag(probs) > 0.5)


def test_lrt_degrees_of_freedom_and_sign(sim300):
    res = lrt(sim300.panel, ["u2"], EMConfig(n_starts=2))
    row = res.table.iloc[0]
    assert row["df"] == 2  # (K - 1) x 1 dropped covariate
    assert row["LR"] >= 0 and res.full.loglik >= res.reduced.loglik - 1e-9
    assert row["p_value"] < 1e-3  # u2 truly drives membership
    both = lrt(sim300.panel, ["u1", "u2"], EMConfig(n_starts=2)).table.iloc[0]
    assert both["df"] == 4
    with pytest.raises(ValueError, match="K >= 2"):
        lrt(sim300.panel, ["u2"], EMConfig(K=1))


@pytest.mark.parametrize(
    "K,q,p,t,structure",
    [(1, 0, 0, 3, "identity"), (2, 1, 1, 4, "ar1"), (4, 3, 3, 7, "unstructured")],
)
def test_simulator_any_shape(K, q, p, t, structure):
    mu = tuple(float(x) for x in np.linspace(-4, 4, K))
    d = simulate(
        PanelSimConfig(
            n_subjects=120,
            n_times=t,
            mu=mu,
            alpha=tuple(0.3 for _ in range(p)),
            n_u=q,
            structure=structure,
            seed=0,
        )
    )
    assert (
        d.panel.y.shape == (120, t)
        and d.panel.W.shape == (120, t, p)
        and d.panel.U.shape == (120, q)
    )
    assert set(np.unique(d.classes)) <= set(range(K))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_em(d.panel, EMConfig(K=K, structure=structure, n_starts=2))
    assert np.isfinite(res.loglik) and res.params.gamma.shape == (K, q + 1)


# ---------------------------------------------------------------- bad input


def _long(panel: Panel) -> pd.DataFrame:
    N, t = panel.y.shape
    return pd.DataFrame(
        {
            "id": np.repeat(np.arange(N), t),
            "time": np.tile(np.arange(t), N),
            "y": panel.y.ravel(),
            "x": panel.W[:, :, 1].ravel(),
            "tm": panel.W[:, :, 0].ravel(),
            "u": np.repeat(panel.U[:, 0], t),
        }
    )


def test_from_long_round_trip_keeps_unbalanced_data(sim300):
    df = _long(sim300.panel)
    p = from_long(df, "id", "time", "y", ["tm", "x"], ["u"])
    assert np.allclose(p.y, sim300.panel.y) and np.allclose(p.W, sim300.panel.W) and p.balanced
    unb = df.drop(
        index=[3, 10]
    )  # two subjects lose one measure each: kept, with NaN where not measured
    pu = from_long(unb, "id", "time", "y", ["tm", "x"], ["u"])
    assert pu.N == 300 and pu.n_obs == 1498 and not pu.balanced and np.isnan(pu.y[0, 3])
    assert sorted(b.t for b in pu.blocks) == [4, 5]
    with pytest.warns(UserWarning, match="kept 298 of 300 subjects"):
        assert (
            from_long(unb, "id", "time", "y", ["tm", "x"], ["u"], balance="drop_subjects").N == 298
        )
    with pytest.warns(UserWarning, match="kept 3 of 5 times"):
        assert from_long(unb, "id", "time", "y", ["tm", "x"], ["u"], balance="common_times").t == 3
    nan = df.copy()
    nan.loc[4, "y"] = np.nan
    with pytest.warns(UserWarning, match="dropped 1 rows with a missing y"):
        assert from_long(nan, "id", "time", "y", ["tm", "x"], ["u"]).n_obs == 1499
    nan_u = df.copy()
    nan_u.loc[4, "u"] = np.nan
    with pytest.raises(ValueError, match="missing for 1 subjects"):
        from_long(nan_u, "id", "time", "y", ["tm", "x"], ["u"])
    varying = df.assign(u=np.arange(len(df)))
    with pytest.raises(ValueError, match="change over time"):
        from_long(varying, "id", "time", "y", ["tm", "x"], ["u"])


def test_panel_rejects_missing_values_intercept_and_collinearity(sim300):
    p = sim300.panel
    y = p.y.copy()
    y[3, 2] = np.inf
    with pytest.raises(ValueError, match="missing or non-finite"):
        Panel(y, p.W, p.U)
    W = p.W.copy()
    W[3, 2, 0] = np.nan  # at a measured time: an error; at an unmeasured one it is ignored
    with pytest.raises(ValueError, match="W has 1 missing"):
        Panel(p.y, W, p.U)
    y[3, 2] = np.nan
    assert Panel(y, W, p.U).n_obs == p.N * p.t - 1
    W1 = np.concatenate([p.W, np.ones((p.N, p.t, 1))], axis=2)
    with pytest.raises(ValueError, match="contains an intercept.*mu_k are the intercepts"):
        Panel(p.y, W1, p.U)
    Wc = np.concatenate([p.W, 2 * p.W[:, :, 1:2]], axis=2)
    with pytest.raises(ValueError, match="collinear"):
        Panel(p.y, Wc, p.U)
    with pytest.raises(ValueError, match="contain a constant"):
        Panel(p.y, p.W, np.column_stack([p.U, np.ones(p.N)]))


def test_too_many_classes_and_bad_structures(sim300):
    small = sim300.panel.subset(np.arange(12))
    with pytest.raises(ValueError, match="smaller K"):
        fit_em(small, EMConfig(K=3))
    with pytest.raises(ValueError, match="structure="):
        EMConfig(structure="toeplitz")
    short = Panel(sim300.panel.y[:, :2], sim300.panel.W[:, :2, :1], sim300.panel.U)
    with pytest.raises(ValueError, match="t >= 3"):
        fit_em(short, EMConfig(structure="ar1"))
    few = sim300.panel.subset(np.arange(6))
    with pytest.raises(ValueError, match="N > T"):
        fit_em(few, EMConfig(K=1, structure="unstructured"))


def test_emptying_class_is_abandoned_with_warning_or_error(sim300):
    p = sim300.panel
    bad = replace(initial_params(p, EMConfig(), None), mu=np.array([-3.0, 0.0, 1e4]))
    with pytest.warns(UserWarning, match="start 0 abandoned: class 3 emptied"):
        res = fit_em(p, EMConfig(n_starts=2), init=bad)
    assert np.isfinite(res.loglik)
    with pytest.raises(EmptyClassError, match="smaller K"):
        fit_em(p, EMConfig(n_starts=2, min_class_size=p.N))


def test_non_positive_definite_covariance_is_named(sim300):
    th = sim300.truth.with_cov(-np.eye(5))
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        loglik(sim300.panel, th)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        loglik(sim300.panel, replace(sim300.truth, se2=-1.0))


def test_dietox_panel_is_balanced_offline():
    p = dietox_panel()
    assert p.y.shape == (69, 11) and p.u_names == ("start_z", "evit", "cu")
    p2 = dietox_panel("common_times")
    assert p2.y.shape == (72, 10)
    assert np.isfinite(p.y).all() and np.allclose(p.W[:, 0, 0], 0.1)


def test_ar1_corr():
    R = ar1_corr(0.5, 4)
    assert R[0, 3] == pytest.approx(0.125) and np.allclose(R, R.T)


@pytest.mark.parametrize("rho", [-0.6, 0.3, 0.999])
def test_ar1_precision_is_the_inverse_at_irregular_times(rho):
    from lib.em.params import ar1_precision

    tau = np.array([[0.0, 1.0, 2.0, 5.0, 6.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    if rho < 0:  # a negative rho needs integer gaps
        tau[0, 3] = 4.0
    Q, logdet = ar1_precision(rho, np.diff(tau, axis=1))
    for k in range(2):
        R = ar1_corr(rho, tau[k])
        assert np.allclose(Q[k] @ R, np.eye(5), atol=1e-8)
        assert logdet[k] == pytest.approx(np.linalg.slogdet(R)[1], rel=1e-10)


def test_gamma_ridge_is_reference_free_and_its_gradient_is_right(sim300):
    from statsmodels.tools.numdiff import approx_hess3

    from lib.em.mstep import gamma_objective, ridge_hessian, ridge_penalty, update_gamma

    g = sim300.truth.gamma + 0.3
    g[0] = 0
    assert ridge_penalty(g, 2.0) == pytest.approx(ridge_penalty(g - g[1], 2.0))
    f = lambda x: ridge_penalty(np.vstack([np.zeros(3), x.reshape(2, 3)]), 2.0)
    assert np.allclose(approx_hess3(g[1:].ravel(), f), ridge_hessian(3, 3, 2.0), atol=1e-5)
    # one M-step of gamma never lowers its penalized objective
    P = np.random.default_rng(0).dirichlet(np.ones(3), size=sim300.panel.N)
    U1 = np.column_stack([np.ones(sim300.panel.N), sim300.panel.U])
    new = update_gamma(U1, P, g, 5, 2.0)
    assert gamma_objective(U1, P, new, 2.0) >= gamma_objective(U1, P, g, 2.0)


def test_squarem_reaches_the_same_maximum_faster(sim300):
    slow = fit_em(sim300.panel, EMConfig(accelerate=False, tol=1e-12, max_iter=5000))
    fast = fit_em(sim300.panel, EMConfig(tol=1e-12))
    assert fast.loglik == pytest.approx(slow.loglik, abs=1e-4)
    assert fast.n_iter < slow.n_iter


def test_dietox_boundary_fit_matches_direct_maximization_and_is_reported():
    # on dietox (log weight, AR(1)) the random-intercept variance goes to its boundary 0
    from lib.em.polish import sb2_score_at_zero

    p = dietox_panel()
    with pytest.warns(UserWarning, match="near separation"):  # start weight separates the classes
        res = fit_em(p, EMConfig(K=2, n_starts=5))
    assert res.converged and res.params.sb2 < 1e-10 * res.params.se2
    assert sb2_score_at_zero(p, replace(res.params, sb2=0.0), res.posterior) <= 0  # a maximum at 0
    _, ll_d = maximize_direct(p, replace(res.params, sb2=0.01 * res.params.se2, rho=0.5))
    assert ll_d < res.loglik + 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = param_table(res, p).set_index("parameter")
    assert tab.loc["sigma_b", "estimate"] == 0 and np.isnan(tab.loc["sigma_b", "se"])
    assert "boundary" in tab.loc["sigma_b", "note"]
    # the start weight separates the classes: gamma's SEs are withheld and say why; the rest are finite
    gam = tab.index.str.startswith("gamma")
    assert tab[gam]["se"].isna().all() and tab[gam]["note"].str.contains("separation").all()
    assert tab[~gam].drop(index="sigma_b")["se"].notna().all()


def test_duplicate_classes_are_flagged(sim300):
    from lib.em.diagnostics import duplicate_classes

    th = sim300.truth
    dup = replace(th, mu=np.array([-3.0, 0.0, 0.01]))
    assert duplicate_classes(dup) == [(1, 2)] and duplicate_classes(th) == []
    # EM cannot separate two identical classes: the fit says K is too large
    init = replace(th, mu=np.array([-3.0, 1.5, 1.5]), gamma=np.vstack([th.gamma[:2], th.gamma[1]]))
    with pytest.warns(UserWarning, match="nearly equal means"):
        fit_em(sim300.panel, EMConfig(n_starts=0), init=init)


# ---------------------------------------------------------------- unbalanced and irregular panels


def _loglik_loop_irregular(panel: Panel, th: Params) -> float:
    """Slow reference for any panel: per subject, its observed times, Sigma built from its own gaps."""
    U1 = design_u(panel)
    total = 0.0
    for i in range(panel.N):
        o = np.isfinite(panel.y[i])
        tt = panel.times[o]
        if th.structure == "ar1":
            C = th.se2 * th.rho ** np.abs(tt[:, None] - tt[None, :])
        elif th.structure == "identity":
            C = th.se2 * np.eye(o.sum())
        else:
            C = th.S[np.ix_(o, o)]
        S = th.sb2 + C
        eta = U1[i] @ th.gamma.T
        pi = np.exp(eta - eta.max())
        pi /= pi.sum()
        mean0 = panel.W[i][o] @ th.alpha
        dens = [multivariate_normal(mean0 + th.mu[k], S).pdf(panel.y[i][o]) for k in range(th.K)]
        total += np.log(pi @ np.asarray(dens))
    return total


@pytest.fixture(scope="module")
def irregular():
    """60 subjects at fractional times 0, 0.7, 1.5, 3.2, 4, each missing about 30% of its measurements."""
    d = simulate(PanelSimConfig(n_subjects=60, seed=8, missing=0.3))
    p = d.panel
    return Panel(
        p.y, p.W, p.U, p.w_names, p.u_names, times=np.array([0.0, 0.7, 1.5, 3.2, 4.0])
    ), d.truth


@pytest.mark.parametrize("structure", ["identity", "ar1", "unstructured"])
def test_unbalanced_loglik_matches_per_subject_density(irregular, structure):
    panel, truth = irregular
    th = replace(truth, times=panel.times, alpha=truth.alpha + 0.1, rho=0.6)
    if structure == "unstructured":
        th = replace(th.with_cov(th.C + 0.2 * np.eye(5)), sb2=0.3)
    else:
        th = replace(th, structure=structure)
    assert len(panel.blocks) > 1 and not panel.balanced
    assert loglik(panel, th) == pytest.approx(_loglik_loop_irregular(panel, th), rel=1e-10)


def test_negative_rho_needs_integer_times(irregular):
    panel, truth = irregular
    with pytest.raises(ValueError, match="integer times"):
        loglik(panel, replace(truth, times=panel.times, rho=-0.3))


@pytest.mark.parametrize("structure", ["identity", "ar1", "unstructured"])
def test_unbalanced_em_is_monotone_and_reaches_the_direct_maximum(structure):
    d = simulate(PanelSimConfig(n_subjects=150, structure=structure, missing=0.25, seed=6, rho=0.8))
    cfg = EMConfig(K=2, structure=structure, tol=1e-13, polish=False)
    th0 = initial_params(d.panel, cfg, np.random.default_rng(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, path, _ = run_em(d.panel, th0, cfg, 400)
        fit = fit_em(d.panel, replace(cfg, tol=1e-11))
    path = np.asarray(path)
    assert np.all(np.diff(path) >= -1e-9 * np.abs(path[:-1])), np.diff(path).min()
    _, ll_d = maximize_direct(d.panel, fit.params)
    assert ll_d - fit.loglik < 1e-4  # EM alone (no polish) is at a maximum


def test_unbalanced_k1_identity_matches_statsmodels_mixedlm():
    d = simulate(
        PanelSimConfig(
            n_subjects=120,
            n_times=6,
            mu=(0.5,),
            gamma=(),
            structure="identity",
            missing=0.3,
            seed=9,
        )
    )
    p = d.panel
    res = fit_em(p, EMConfig(K=1, structure="identity", tol=1e-14))
    o = p.observed
    X = np.column_stack([np.ones(p.n_obs), p.W[o]])
    groups = np.repeat(np.arange(p.N), o.sum(axis=1))
    ml = sm.MixedLM(p.y[o], X, groups=groups).fit(reml=False)
    assert abs(res.loglik - ml.llf) / abs(ml.llf) < 1e-7
    assert np.allclose(res.params.alpha, ml.fe_params[1:], atol=1e-4)


def test_ar1_near_one_is_stable():
    d = simulate(PanelSimConfig(n_subjects=300, rho=0.97, sigma_b=0.3, seed=12))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow or invalid value on the way
        fit = fit_em(d.panel, EMConfig(K=3))
    assert 0.8 < fit.params.rho < 1.0 and fit.converged  # rho trades against sigma_b^2 at t = 5
    _, ll_d = maximize_direct(d.panel, fit.params)
    assert ll_d - fit.loglik < 1e-3


def test_fit_reports_starts_at_the_top(fit300):
    assert (
        len(fit300.final_logliks) == fit300.config.n_final
        and 1 <= fit300.n_top <= fit300.config.n_final
    )
    assert fit300.loglik >= max(fit300.final_logliks) - 1e-9


def test_run_em_stops_a_run_that_cannot_reach_the_floor(sim300):
    th0 = initial_params(sim300.panel, EMConfig(), np.random.default_rng(5))
    cfg = EMConfig(tol=1e-14, accelerate=False)  # so the plain run goes on well past 50 iterations
    *_, path, _ = run_em(sim300.panel, th0, cfg, 400)
    *_, cut, cut_conv = run_em(sim300.panel, th0, cfg, 400, floor=path[-1] + 1e6)
    assert len(path) > 60 and not cut_conv and len(cut) < len(path)
    assert cut == path[: len(cut)]  # the same run, stopped early
    *_, kept, _ = run_em(
        sim300.panel, th0, cfg, 400, floor=path[-1] - 1.0
    )  # reachable: not stopped
    assert kept == path


def test_polish_goes_on_only_where_em_stopped_short():
    d = simulate(PanelSimConfig(n_subjects=150, mu=(-2.0, 2.0), rho=0.9, seed=12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cut = EMConfig(
            K=2, short_iter=2, screen_iter=2, max_iter=4, n_final=1, accelerate=False, handoff_tol=0
        )
        short = fit_em(d.panel, cut)
        full = fit_em(d.panel, EMConfig(K=2, tol=1e-13))
    # EM cut short (and no hand-off to BFGS in the final run): the polish goes on to the top
    assert short.direct_gain > 1e-3
    _, ll_d = maximize_direct(d.panel, full.params)
    assert short.loglik == pytest.approx(ll_d, abs=1e-4) and full.loglik == pytest.approx(
        ll_d, abs=1e-6
    )
    assert full.direct_gain < 1e-5
