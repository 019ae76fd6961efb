"""Covariates as R users write them, subject ids and units: what fit_latent_lmm accepts and refuses."""

import warnings

import numpy as np
import pandas as pd
import pytest

from lib.em import fit_latent_lmm, load_bodyweight, load_empluk

EMPL = dict(y="log_emp", fixed=["log_wage", "log_capital"], subject="firm", time="year")


@pytest.fixture(scope="module")
def empl():
    return load_empluk()


def fit(df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # separation and lost-start notes are not under test
        return fit_latent_lmm(df, **{**EMPL, "membership": [], "K": 1, **kw})


@pytest.fixture(scope="module")
def by_sector(empl):
    return fit(empl, membership="C(sector)", K=2)


def test_a_category_is_coded_against_its_first_level_and_the_summary_names_it(empl, by_sector):
    levels = sorted(empl["sector"].unique())
    assert by_sector.result.u_names == tuple(f"sector[T.{v}]" for v in levels[1:])
    assert f"coded against reference level {levels[0]!r}" in by_sector.summary()
    # the same model as hand-made 0/1 dummies for every level but the first
    dummies = pd.get_dummies(empl["sector"], prefix="s", dtype=float).iloc[:, 1:]
    hand = fit(pd.concat([empl, dummies], axis=1), membership=list(dummies.columns), K=2)
    assert by_sector.result.loglik == pytest.approx(hand.result.loglik, abs=1e-6)


@pytest.mark.parametrize(
    "membership", ["C(sector) - 1", "0 + C(sector)", "1 + C(sector)", ["sector"], "sector"]
)
def test_every_way_of_writing_the_category_is_the_same_model(empl, by_sector, membership):
    other = fit(empl, membership=membership, K=2)
    assert other.result.u_names == by_sector.result.u_names
    assert other.result.loglik == pytest.approx(by_sector.result.loglik, abs=1e-6)


def test_another_reference_level_by_formulaic_syntax(empl, by_sector):
    other = fit(empl, membership="C(sector, contr.treatment(7))", K=2)
    assert "sector[T.7]" not in other.result.u_names and "sector[T.1]" in other.result.u_names
    assert "coded against reference level 7" in other.summary()
    assert other.result.loglik == pytest.approx(by_sector.result.loglik, abs=1e-6)


def test_text_booleans_interactions_and_transforms_in_the_fixed_part(empl):
    d = empl.assign(
        big=empl["emp"] > empl["emp"].median(),
        era=np.where(empl["year"] < 1980, "early", "late"),
    )
    f = fit(d, fixed="log_wage + I(log_wage**2) + big + era + log_capital:era")
    names = f.result.w_names
    assert {"I(log_wage ** 2)", "big[T.True]", "era[T.late]", "log_capital:era[late]"} <= set(names)
    assert "big: fixed coded against reference level False" in f.summary()


def test_numbers_stored_as_text_are_refused_and_both_fixes_in_the_error_work(empl):
    d = empl.assign(sector=empl["sector"].astype(int).astype(str))
    with pytest.raises(ValueError, match=r"numbers stored as text") as e:
        fit(d, membership=["sector"], K=2)
    assert "pd.to_numeric(df['sector'])" in str(e.value) and "'C(sector)'" in str(e.value)
    as_number = d.assign(sector=pd.to_numeric(d["sector"]))
    assert fit(as_number, membership=["sector"], K=2).result.u_names == ("sector",)
    assert len(fit(d, membership="C(sector)", K=2).result.u_names) == 8


def test_a_formula_formulaic_cannot_read_gets_advice_that_works(empl):
    with pytest.raises(ValueError, match=r"contr.treatment\('7'\)"):
        fit(empl, membership="C(sector, Treatment)", K=2)
    d = empl.assign(sector=empl["sector"].astype(str))
    assert "sector[T.1]" in fit(d, membership="C(sector, contr.treatment('7'))", K=2).result.u_names


def test_predict_refuses_a_level_the_fit_never_saw(empl, by_sector):
    new = empl[empl["firm"] <= 3].copy()
    assert len(by_sector.predict(new)) == len(new)
    new["sector"] = new["sector"].astype(object)
    new.loc[new["firm"] == 2, "sector"] = 99
    with pytest.raises(ValueError, match=r"'sector' has levels \[99\].*did not have"):
        by_sector.predict(new)


def test_a_missing_category_is_refused_not_read_as_the_reference(empl):
    d = empl.assign(sector=empl["sector"].astype(object))
    d.loc[d["firm"] == 5, "sector"] = None
    with pytest.raises(ValueError, match="membership covariates .* missing for 1 subjects"):
        fit(d, membership="C(sector)", K=2)


def test_missing_subject_ids_are_refused_naming_the_rows_and_the_fix_works(empl):
    d = empl.copy()
    d.loc[[3, 10], "firm"] = np.nan
    with pytest.raises(ValueError, match=r"missing in 2 rows \(first row labels: \[3, 10\]\)"):
        fit(d)
    assert fit(d.dropna(subset=["firm"])).panel.N == 140


def test_ids_of_mixed_types_are_refused_naming_the_ids_that_would_merge(empl):
    d = empl.assign(firm=empl["firm"].astype(object))
    d.loc[d["firm"] == 2, "firm"] = "1"
    with pytest.raises(ValueError, match=r"mix number and text .*\['1'\] would each be two"):
        fit(d)
    d.loc[d["firm"] == "1", "firm"] = "2"  # ids of mixed types that do not clash
    with pytest.raises(ValueError, match=r"mix number and text.*astype\(str\)"):
        fit(d)
    d["firm"] = d["firm"].astype(str)  # the fix the error gives
    assert fit(d).panel.N == 140


@pytest.mark.parametrize("scale", [1e-40, 1e-3, 1e4, 1e40])
def test_the_fit_does_not_depend_on_the_units(empl, scale):
    base = fit(empl, errors="ar1")
    d = empl.assign(log_emp=empl["log_emp"] * scale, log_wage=empl["log_wage"] / scale)
    f = fit(d, errors="ar1")
    shift = len(empl) * np.log(scale)
    assert f.result.loglik + shift == pytest.approx(base.result.loglik, abs=1e-6)
    th, th0 = f.result.params, base.result.params
    assert th.alpha / np.array([scale**2, scale]) == pytest.approx(th0.alpha, rel=1e-4)
    assert th.rho == pytest.approx(th0.rho, abs=1e-6)
    se = f.params.set_index("parameter")["se"]
    se0 = base.params.set_index("parameter")["se"]
    assert se["mu[1]"] / scale == pytest.approx(se0["mu[1]"], rel=1e-3)


@pytest.mark.parametrize("scale", [1e-300, 1e300])
def test_a_scale_beyond_double_precision_is_refused_and_rescaling_fixes_it(empl, scale):
    d = empl.assign(log_emp=empl["log_emp"] * scale)
    with pytest.raises(ValueError, match=r"response y spans .* divide it by (1e-?\d+)") as e:
        fit(d)
    k = float(str(e.value).split("divide it by ")[1].split(" ")[0])
    assert fit(d.assign(log_emp=d["log_emp"] / k)).result.loglik > -np.inf


def test_a_tiny_but_varying_response_is_not_called_constant(empl):
    d = empl.assign(log_emp=empl["log_emp"] * 1e-90)
    assert np.isfinite(fit(d).result.loglik)


def test_bodyweight_diet_as_membership_category():
    bw = load_bodyweight()
    f = fit_latent_lmm(
        bw, y="weight", fixed=["Time"], membership="C(Diet)", subject="Rat", time="Time", K=1
    )
    assert f.result.u_names == ("Diet[T.2]", "Diet[T.3]")


def test_a_covariate_beyond_double_precision_is_refused_naming_the_column(empl):
    d = empl.assign(log_wage=empl["log_wage"] * 1e200)
    with pytest.raises(
        ValueError, match=r"fixed-effect column 'log_wage' spans .* divide it by 1e200"
    ):
        fit(d)


def test_a_formula_naming_a_missing_column_says_which(empl):
    with pytest.raises(KeyError, match="uses 'sectr', which is not a column"):
        fit(empl, membership="C(sectr)", K=2)


def test_a_membership_category_that_changes_within_a_subject_is_named_plainly():
    from lib.em import load_cornwell_rupert

    cr = load_cornwell_rupert()
    kw = dict(y="lwage", fixed=["exp10"], subject="id", time="year", K=1)
    with pytest.raises(ValueError, match=r"\['south\[T.yes\]'\] change over time.*transform"):
        fit_latent_lmm(cr, membership="C(south)", **kw)
    cr["south_0"] = cr.groupby("id")["south"].transform("first")  # the fix the error gives
    fit = fit_latent_lmm(cr, membership="C(south_0)", **kw)
    assert fit.result.u_names == ("south_0[T.yes]",)
