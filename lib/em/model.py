"""A data-frame interface to the latent-subgroup mixed model: fit, tables, posterior, prediction, summary.

    fit = fit_latent_lmm(df, y="lwage", fixed=["exper", "expersq"], membership=["educ", "black"],
                         subject="nr", time="year", K=3, errors="ar1")
    fit.params; fit.criteria; fit.posterior; fit.predict(new_df); print(fit.summary())

`fixed` and `membership` are column lists or right-hand-side formulas ("exper + I(exper**2)",
"C(sector)", through formulaic; `design`): categorical columns are coded against a reference
level that the summary names, and the model adds its own intercepts (the class means mu_k and
the logit intercepts).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import pandas as pd

from .config import EMConfig
from .design import Design, design_from
from .estep import design_u, e_step, log_softmax
from .fit import EMResult, fit_em
from .growthfit import fit_growth
from .growthresult import GrowthFit
from .inference import classification_table, criteria, param_table
from .panel import Panel, check_long, from_long, plain_names


@dataclass(frozen=True)
class Variables:
    """Which columns play which part."""

    y: str
    fixed: list[str] | str
    membership: list[str] | str
    subject: str
    time: str

    def designs(self, df: pd.DataFrame) -> tuple[Design, Design]:
        """The fixed and membership designs learned from the fitted data (levels, references)."""
        return design_from(df, self.fixed, "fixed")[0], design_from(
            df, self.membership, "membership"
        )[0]

    def long(
        self, df: pd.DataFrame, designs: tuple[Design, Design] | None = None, need_y: bool = True
    ) -> tuple[pd.DataFrame, list[str], list[str]]:
        """The long frame with expanded design columns, and the fixed and membership column names.

        `designs` codes the columns as in the fitted data (for prediction); without them the
        designs are learned from `df`.
        """
        check_long(df, self.subject, self.time, [self.y] if need_y else [])
        if designs is None:
            (_, W), (_, U) = (
                design_from(df, self.fixed, "fixed"),
                design_from(df, self.membership, "membership"),
            )
        else:
            W, U = designs[0].matrix(df), designs[1].matrix(df)
        out = pd.concat(
            [df[[self.subject, self.time]], W.add_prefix("w:"), U.add_prefix("u:")], axis=1
        )
        out["y"] = df[self.y].astype(float) if self.y in df.columns else np.nan
        return out, ["w:" + c for c in W.columns], ["u:" + c for c in U.columns]


def _strip(names: list[str]) -> tuple[str, ...]:
    return tuple(n.split(":", 1)[1] for n in names)


def _check_y(df: pd.DataFrame, y: str) -> None:
    if y not in df.columns:
        raise KeyError(f"response column {y!r} not in the data (has {list(df.columns)})")
    if not pd.api.types.is_numeric_dtype(df[y]) or pd.api.types.is_bool_dtype(df[y]):
        raise ValueError(
            f"response {y!r} is not numeric (dtype {df[y].dtype}); convert it with pd.to_numeric"
        )


def panel_from_frame(
    df: pd.DataFrame, v: Variables, designs: tuple[Design, Design] | None = None
) -> Panel:
    """The Panel of a long data frame (every measurement kept)."""
    _check_y(df, v.y)
    d, w, u = v.long(df, designs)
    try:  # checked once, with the plain names
        p = from_long(d, v.subject, v.time, "y", w, u, check=False)
    except ValueError as e:
        raise plain_names(e) from None
    return Panel(p.y, p.W, p.U, _strip(w), _strip(u), p.subjects, p.times)


@dataclass
class LatentLMM:
    """A fitted latent-subgroup mixed model with its data description."""

    result: EMResult
    panel: Panel
    variables: Variables
    designs: tuple[Design, Design] | None = None  # how the fitted data were coded (categories)

    @property
    def K(self) -> int:
        """Number of latent classes."""
        return self.result.params.K

    @cached_property
    def params(self) -> pd.DataFrame:
        """Estimates with standard errors, 95% intervals and Wald p-values."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tab = param_table(self.result, self.panel)
        self._table_notes = [str(w.message) for w in caught]
        return tab

    @property
    def criteria(self) -> dict:
        """Log-likelihood, parameter count, AIC, BIC (N = subjects), SABIC, entropy, ICL, starts at the top."""
        row = criteria(self.result).iloc[0].to_dict()
        row.update(
            n_subjects=self.panel.N,
            n_obs=self.panel.n_obs,
            starts_at_top=self.result.n_top,
            direct_gain=self.result.direct_gain,
        )
        return row

    @property
    def posterior(self) -> pd.DataFrame:
        """Per-subject class probabilities (classes ordered by their mean), with the most probable class."""
        P = self.result.posterior
        out = pd.DataFrame(
            P,
            index=pd.Index(self.panel.subjects, name=self.variables.subject),
            columns=[f"class{k + 1}" for k in range(self.K)],
        )
        out["class"] = P.argmax(axis=1) + 1
        return out

    def predict(self, new: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities and fitted trajectories for (new) subjects, one row per input row.

        Without responses the probabilities are the membership model's prior given the covariates;
        where the response column is present, they are the posterior given the subject's
        measurements, and `fitted_subject` adds the posterior mean of its random intercept.
        Columns: prob_k, fitted_k (W alpha + mu_k), fitted (class-averaged), fitted_subject.
        """
        v, th = self.variables, self.result.params
        d, w, u = v.long(new, self.designs, need_y=False)
        bad = d[w + u].isna().any(axis=1)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} rows lack a fixed-effect or membership value; fill or drop them"
            )
        if (d.groupby(v.subject)[u].nunique() > 1).any().any() if u else False:
            raise ValueError(
                "membership covariates change within a subject; give each subject one value"
            )
        W = d[w].to_numpy(float)
        base = W @ th.alpha if th.alpha.size else np.zeros(len(d))
        subj = d[v.subject].to_numpy()
        first = d.groupby(v.subject, sort=False).head(1)
        U1 = np.column_stack([np.ones(len(first)), first[u].to_numpy(float)])
        prob = pd.DataFrame(np.exp(log_softmax(U1 @ th.gamma.T)), index=first[v.subject].to_numpy())
        bmean = pd.Series(np.nan, index=prob.index)
        has_y = d["y"].notna()
        if has_y.any():
            p = from_long(d[has_y], v.subject, v.time, "y", w, u, check=False)
            es = e_step(p, design_u(p), self._params_at(p.times))
            prob.loc[p.subjects] = es.P
            bmean.loc[p.subjects] = (es.P * es.m).sum(axis=1)
        P = prob.loc[subj].to_numpy()
        out = pd.DataFrame({v.subject: subj, v.time: d[v.time].to_numpy()}, index=new.index)
        for k in range(self.K):
            out[f"prob_{k + 1}"] = P[:, k]
        for k in range(self.K):
            out[f"fitted_{k + 1}"] = base + th.mu[k]
        out["fitted"] = base + P @ th.mu
        out["fitted_subject"] = base + bmean.loc[subj].to_numpy()
        return out

    def _params_at(self, times: np.ndarray):
        """The fitted parameters on another set of times (unstructured: a subset of the fitted times)."""
        th = self.result.params
        if th.structure != "unstructured":
            return replace(th, times=np.asarray(times, float))
        idx = np.searchsorted(th.times, times)
        if np.any(idx >= th.T) or not np.allclose(th.times[np.minimum(idx, th.T - 1)], times):
            raise ValueError(
                "with unstructured errors a prediction can use only the fitted times "
                f"{list(th.times)}; refit with errors='ar1' to predict at other times"
            )
        return replace(th, times=np.asarray(times, float), S=th.S[np.ix_(idx, idx)])

    def _reference_lines(self) -> list[str]:
        """One line per categorical term: the level its coefficients are measured against."""
        refs = {}
        for d in self.designs or ():
            for term, ref in d.references.items():
                refs.setdefault(term, []).append((d.what, ref))
        return [
            f"  {term}: {' and '.join(w for w, _ in uses)} coded against reference level {uses[0][1]}"
            for term, uses in refs.items()
        ]

    def summary(self) -> str:
        """A report laid out like lcmm's summary(): model, fit, estimates, classification."""
        r, c, v = self.result, self.criteria, self.variables
        tab = self.params.set_index("parameter")
        fmt = lambda x: "" if pd.isna(x) else f"{x:.4g}"
        lines = [
            "Linear mixed model with latent classes, fitted by EM (lib.em.fit_latent_lmm)",
            f"  response {v.y}; fixed {', '.join(r.w_names) or '(none)'}; class membership "
            f"{', '.join(r.u_names) or '(intercept only)'}; subject {v.subject}; time {v.time}",
            *self._reference_lines(),
            "",
            "Statistical model:",
            f"  Dataset: {self.panel.N} subjects, {self.panel.n_obs} observations at {self.panel.t} distinct "
            f"times ({'balanced' if self.panel.balanced else 'unbalanced'})",
            f"  Number of latent classes: {self.K}; errors: {r.params.structure}; parameters: {r.n_params}",
            "",
            "Iteration process:",
            f"  {'Convergence criteria satisfied' if r.converged else 'NOT converged'} after {r.n_iter} EM "
            f"iterations; {len(r.start_logliks)} starts, {len(r.final_logliks)} run to convergence, "
            f"{r.n_top} reached the best log-likelihood; direct polish gained {r.direct_gain:.2g}",
            "",
            "Goodness-of-fit statistics:",
            f"  maximum log-likelihood: {c['loglik']:.2f}",
            f"  AIC: {c['AIC']:.2f}",
            f"  BIC: {c['BIC']:.2f}",
            f"  entropy: {c['entropy']:.3f}   ICL: {c['ICL1']:.2f}",
            "",
        ]
        groups = [
            (
                "Fixed effects in the class-membership model (the class of reference is class 1):",
                "gamma",
            ),
            (
                "Fixed effects in the longitudinal model (class intercepts mu, shared slopes alpha):",
                ("mu", "alpha"),
            ),
            ("Variance components:", ("sigma", "rho", "Sigma")),
        ]
        wide = max([28] + [len(n) + 2 for n in tab.index])
        for title, prefix in groups:
            sel = tab[tab.index.str.startswith(prefix)]
            if sel.empty:
                continue
            lines.append(title)
            lines.append(f"  {'':{wide}s}{'coef':>10s}{'Se':>10s}{'95% CI':>22s}{'p-value':>11s}")
            for name, row in sel.iterrows():
                ci = f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]" if pd.notna(row["se"]) else ""
                lines.append(
                    f"  {name:{wide}s}{fmt(row['estimate']):>10s}{fmt(row['se']):>10s}{ci:>22s}"
                    f"{fmt(row['p_value']):>11s}"
                    + (f"  ({row['note']})" if row.get("note") else "")
                )
            lines.append("")
        lines.append("Posterior classification:")
        lines.append(classification_table(r).round(3).to_string(index=False))
        notes = list(r.notes) + getattr(self, "_table_notes", [])
        if notes:
            lines += ["", "Notes:"] + [f"  - {n}" for n in notes]
        return "\n".join(lines)


def _given(terms: list[str] | str) -> bool:
    return bool(terms.strip()) if isinstance(terms, str) else len(terms) > 0


def fit_latent_lmm(
    df: pd.DataFrame,
    y: str,
    fixed: list[str] | str,
    membership: list[str] | str,
    subject: str,
    time: str,
    K: int = 2,
    errors: str = "ar1",
    config: EMConfig | None = None,
    mixture: list[str] | str = (),
    random: list[str] | str = (),
    nwg: bool = False,
    **overrides,
) -> LatentLMM | GrowthFit:
    """Fit the latent-subgroup mixed model to a long data frame (one row per subject and time).

    Subjects may have any number of measurements at any numeric times; `errors` is 'identity',
    'ar1' (continuous-time: corr rho^|t_i - t_j|) or 'unstructured'; other EMConfig fields
    (n_starts, seed, tol, gamma_ridge, ...) go in `config` or as keyword overrides.
    `mixture` (covariates whose coefficients differ by class) or `random` (random slopes beside
    the random intercept) make it a growth mixture (`growthfit`); so does `nwg=True` (lcmm's nwg:
    the random effects' covariance scaled by class, w_k^2 G, w = 1 in the last class).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame in long format, got {type(df).__name__}")
    if _given(mixture) or _given(random) or nwg:
        cfg = replace(config or EMConfig(), **overrides)
        return fit_growth(
            df,
            y,
            subject,
            time,
            fixed,
            mixture,
            random,
            membership,
            K=K,
            errors=errors,
            n_starts=cfg.n_starts,
            seed=cfg.seed,
            gamma_ridge=cfg.gamma_ridge,
            nwg=nwg,
            screen_subjects=cfg.screen_subjects,
        )
    cfg = replace(config or EMConfig(), K=K, structure=errors, **overrides)
    v = Variables(y, fixed, membership, subject, time)
    designs = v.designs(df)
    panel = panel_from_frame(df, v, designs)
    return LatentLMM(fit_em(panel, cfg), panel, v, designs)
