"""A fitted growth mixture (`growthfit.fit_growth`): estimates with standard errors from the
observed information, criteria (BIC, entropy, ICL as lcmm), posteriors, predictions for new
subjects and a summary laid out like lcmm's, one table of class-specific coefficients per class.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsmodels.tools.numdiff import approx_fprime, approx_hess3

from .design import Design
from .diagnostics import separated_classes
from .estep import log_softmax
from .growth import GrowthData, GrowthEStep, GrowthParams, growth_estep, pack_growth, unpack_growth

W_FLOOR = 1e-3  # a class scale below this is reported at the boundary w = 0


def natural_growth(x: np.ndarray, like: GrowthParams) -> np.ndarray:
    """Packed vector -> beta, B, gamma_2..K, SDs of G, correlations of G (, w_1..K-1), sigma_e (, rho)."""
    th = unpack_growth(x, like)
    if th.structure == "unstructured":
        T = th.S.shape[0]
        return np.concatenate(
            [th.beta, th.B.ravel(), th.gamma[1:].ravel(), th.S[np.tril_indices(T)]]
        )
    sd = np.sqrt(np.clip(np.diag(th.G), 0.0, None))
    rows, cols = np.tril_indices(th.G.shape[0], -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = th.G[rows, cols] / (sd[rows] * sd[cols])
    scales = [] if th.w is None else [th.w[:-1]]  # the scales themselves (delta method from log w)
    tail = [np.sqrt(th.se2)] + ([th.rho] if th.structure == "ar1" else [])
    return np.concatenate([th.beta, th.B.ravel(), th.gamma[1:].ravel(), sd, corr, *scales, tail])


def growth_names(data: GrowthData, th: GrowthParams) -> list[str]:
    """Names of the natural parameters, in natural_growth's order."""
    pan = data.panel
    names = [f"beta[{n}]" for n in pan.w_names]
    names += [f"class{k + 1}[{n}]" for k in range(th.K) for n in data.x_names]
    u = ("(intercept)", *pan.u_names)
    names += [f"gamma[{k + 1}][{n}]" for k in range(1, th.K) for n in u]
    if th.structure == "unstructured":
        tt = [f"{t:g}" for t in pan.times]
        rows, cols = np.tril_indices(len(tt))
        return names + [f"S[{tt[r]},{tt[c]}]" for r, c in zip(rows, cols)]
    z = data.z_names
    names += [f"sd[{n}]" for n in z]
    rows, cols = np.tril_indices(len(z), -1)
    names += [f"corr[{z[c]},{z[r]}]" for r, c in zip(rows, cols)]
    names += [] if th.w is None else [f"w[class{k + 1}]" for k in range(th.K - 1)]
    return names + ["sigma_e"] + (["rho"] if th.structure == "ar1" else [])


@dataclass
class GrowthFit:
    """A fitted growth mixture: parameters, log-likelihood, posteriors and the data description."""

    params: GrowthParams
    estep: GrowthEStep
    data: GrowthData
    path: list[float]
    start_logliks: list[float]
    designs: dict[str, Design] = field(default_factory=dict, repr=False)
    variables: dict[str, str] = field(default_factory=dict)  # y, subject, time

    @property
    def K(self) -> int:
        """Number of classes."""
        return self.params.K

    @property
    def loglik(self) -> float:
        """The maximized log-likelihood."""
        return self.estep.loglik

    @property
    def n_params(self) -> int:
        """beta, B, free gamma, G (, w_1..K-1), sigma_e^2 (and rho)."""
        th = self.params
        q = th.G.shape[0]
        if th.structure == "unstructured":
            T = th.S.shape[0]
            return th.beta.size + th.B.size + (th.K - 1) * th.gamma.shape[1] + T * (T + 1) // 2
        return (
            th.beta.size
            + th.B.size
            + (th.K - 1) * th.gamma.shape[1]
            + q * (q + 1) // 2
            + (0 if th.w is None else th.K - 1)
            + 1
            + (th.structure == "ar1")
        )

    @property
    def criteria(self) -> dict:
        """Log-likelihood, parameters, AIC, BIC (N = subjects), entropy and ICL as lcmm."""
        P, N = self.estep.P, self.data.panel.N
        plogp = float(np.sum(P * np.log(np.clip(P, 1e-300, None))))
        bic = -2 * self.loglik + self.n_params * np.log(N)
        return {
            "K": self.K,
            "loglik": self.loglik,
            "n_params": self.n_params,
            "AIC": -2 * self.loglik + 2 * self.n_params,
            "BIC": bic,
            "entropy": 1.0 + plogp / (N * np.log(self.K)) if self.K > 1 else 1.0,
            "ICL1": bic - 2 * plogp,
            "n_subjects": N,
            "n_obs": self.data.panel.n_obs,
        }

    @property
    def bic(self) -> float:
        """-2 log L + n_params log N (N = subjects)."""
        return self.criteria["BIC"]

    @property
    def posterior(self) -> pd.DataFrame:
        """Per-subject class probabilities and the most probable class."""
        P = self.estep.P
        out = pd.DataFrame(
            P,
            index=pd.Index(self.data.panel.subjects, name=self.variables.get("subject")),
            columns=[f"class{k + 1}" for k in range(P.shape[1])],
        )
        out["class"] = P.argmax(axis=1) + 1
        return out

    def class_table(self) -> pd.DataFrame:
        """The class-specific coefficients, one column per class (lcmm's layout)."""
        return pd.DataFrame(
            self.params.B.T,
            index=list(self.data.x_names),
            columns=[f"class {k + 1}" for k in range(self.K)],
        )

    @cached_property
    def params_table(self) -> pd.DataFrame:
        """Estimates with standard errors (observed information, delta method), 95% intervals, Wald p-values."""
        th, x = self.params, pack_growth(self.params)

        def ll(v: np.ndarray) -> float:
            with np.errstate(all="ignore"):
                return growth_estep(self.data, unpack_growth(v, th)).loglik

        info = -approx_hess3(x, ll)
        info = 0.5 * (info + info.T)
        if np.linalg.eigvalsh(info).min() <= 0:
            warnings.warn(
                "observed information not positive definite: a variance at zero or a parameter "
                "not identified; SEs are NaN where undefined",
                stacklevel=2,
            )
        cov = np.linalg.pinv(info)
        J = approx_fprime(x, natural_growth, args=(th,), centered=True)
        nat = natural_growth(x, th)
        se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", J, cov, J), 0, None))
        se[~np.isfinite(nat)] = np.nan
        z = float(norm.ppf(0.975))
        with np.errstate(divide="ignore", invalid="ignore"):
            p = 2 * norm.sf(np.abs(nat / se))
        names = growth_names(self.data, th)
        n_mean = th.beta.size + th.B.size + (th.K - 1) * th.gamma.shape[1]
        p[n_mean:] = np.nan  # no Wald test of a variance against zero (a boundary)
        tab = pd.DataFrame(
            {
                "parameter": names,
                "estimate": nat,
                "se": se,
                "ci_low": nat - z * se,
                "ci_high": nat + z * se,
                "p_value": p,
                "note": "",
            }
        )
        d = th.gamma.shape[1]
        for k in separated_classes(th.gamma):
            # the likelihood keeps rising along these slopes: a Wald SE means nothing there
            rows = th.beta.size + th.B.size + (k - 1) * d + np.arange(d)
            tab.loc[rows, ["se", "ci_low", "ci_high", "p_value"]] = np.nan
            tab.loc[rows, "note"] = "near separation: not identified; set gamma_ridge > 0"
        if th.w is not None:
            for k in np.flatnonzero(th.w[:-1] < W_FLOOR):
                # at the boundary w = 0 a Wald interval on w means nothing (as for a variance)
                row = tab.index[tab["parameter"] == f"w[class{k + 1}]"]
                tab.loc[row, ["se", "ci_low", "ci_high"]] = np.nan
                tab.loc[row, "note"] = "at 0: no random variation in this class; try nwg=False"
        return tab

    def predict(self, new: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities and class trajectories for (new) subjects, one row per input row.

        Without responses the probabilities are the membership model's prior; where the response
        is given they are the posterior, and `fitted_subject` adds the posterior mean of the
        subject's random effects. Columns: prob_k, fitted_k, fitted, fitted_subject.
        """
        from .growthfit import growth_data

        v, th, d = self.variables, self.params, self.designs
        W = d["fixed"].matrix(new).to_numpy(float)
        X = np.column_stack([np.ones(len(new)), d["mixture"].matrix(new).to_numpy(float)])
        Z = np.column_stack([np.ones(len(new)), d["random"].matrix(new).to_numpy(float)])
        U = d["membership"].matrix(new)
        if np.isnan(W).any() or np.isnan(X).any() or np.isnan(Z).any() or U.isna().any().any():
            raise ValueError(
                "some rows lack a covariate value; fill or drop them before predicting"
            )
        base = W @ th.beta if th.beta.size else np.zeros(len(new))
        subj = new[v["subject"]].to_numpy()
        first = pd.DataFrame(U.to_numpy(float), index=new.index).groupby(subj, sort=False).first()
        U1 = np.column_stack([np.ones(len(first)), first.to_numpy()])
        prob = pd.DataFrame(np.exp(log_softmax(U1 @ th.gamma.T)), index=first.index)
        shift = pd.Series(0.0, index=new.index)
        has_y = new[v["y"]].notna() if v["y"] in new.columns else pd.Series(False, index=new.index)
        if has_y.any():
            sub = new[has_y]
            data, _ = growth_data(sub, v["y"], [], [], [], [], v["subject"], v["time"], d, False)
            es = growth_estep(data, self._params_at(data.panel.times))
            prob.loc[data.panel.subjects] = es.P
            bmean = pd.DataFrame(np.einsum("nk,nkq->nq", es.P, es.m), index=data.panel.subjects)
            known = pd.Series(subj, index=new.index).isin(bmean.index)
            rows = new.index[known]
            shift.loc[rows] = np.einsum(
                "nq,nq->n", Z[known.to_numpy()], bmean.loc[subj[known.to_numpy()]].to_numpy()
            )
        P = prob.loc[subj].to_numpy()
        out = pd.DataFrame(
            {v["subject"]: subj, v["time"]: new[v["time"]].to_numpy()}, index=new.index
        )
        fk = base[:, None] + X @ th.B.T
        for k in range(self.K):
            out[f"prob_{k + 1}"] = P[:, k]
        for k in range(self.K):
            out[f"fitted_{k + 1}"] = fk[:, k]
        out["fitted"] = (P * fk).sum(axis=1)
        out["fitted_subject"] = out["fitted"] + shift.to_numpy()
        return out

    def _params_at(self, times: np.ndarray) -> GrowthParams:
        """The fitted parameters on the times of new data (unstructured S: its sub-block there)."""
        th, fitted = self.params, self.data.panel.times
        if th.structure != "unstructured":
            return th
        idx = np.minimum(np.searchsorted(fitted, times), len(fitted) - 1)
        if not np.allclose(fitted[idx], times):
            raise ValueError(
                "with unstructured errors a prediction can use only the fitted times "
                f"{list(fitted)}; refit with errors='ar1' to predict at other times"
            )
        return replace(th, S=th.S[np.ix_(idx, idx)])

    def summary(self) -> str:
        """A report laid out like lcmm's summary(): model, fit, one table per class, variances."""
        c, tab, pan = self.criteria, self.params_table.set_index("parameter"), self.data.panel
        v = self.variables
        fmt = lambda x: "" if pd.isna(x) else f"{x:.4g}"
        wide = max([24] + [len(n) + 2 for n in tab.index])

        def block(title: str, rows: pd.DataFrame, strip: str = "") -> list[str]:
            out = [title, f"  {'':{wide}s}{'coef':>10s}{'Se':>10s}{'95% CI':>24s}{'p-value':>11s}"]
            for name, r in rows.iterrows():
                ci = f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]" if pd.notna(r["se"]) else ""
                label = name.replace(strip, "") if strip else name
                out.append(
                    f"  {label:{wide}s}{fmt(r['estimate']):>10s}{fmt(r['se']):>10s}{ci:>24s}"
                    f"{fmt(r['p_value']):>11s}" + (f"  ({r['note']})" if r["note"] else "")
                )
            return out + [""]

        refs = [
            f"  {term}: {d.what} coded against reference level {ref}"
            for d in self.designs.values()
            for term, ref in d.references.items()
        ]
        lines = [
            "Growth mixture (latent-class mixed model), fitted by EM (lib.em.fit_latent_lmm)",
            f"  response {v.get('y')}; shared fixed {', '.join(pan.w_names) or '(none)'}; "
            f"class-specific {', '.join(self.data.x_names)}; random {', '.join(self.data.z_names)}; "
            f"membership {', '.join(pan.u_names) or '(intercept only)'}",
            *refs,
            "",
            f"  Dataset: {pan.N} subjects, {pan.n_obs} observations at {pan.t} distinct times",
            f"  Number of latent classes: {self.K}; errors: {self.params.structure}; "
            f"parameters: {self.n_params}",
            f"  {len(self.path) - 1} EM iterations and a BFGS finish; {len(self.start_logliks)} starts",
            "",
            f"  maximum log-likelihood: {c['loglik']:.2f}   AIC: {c['AIC']:.2f}   BIC: {c['BIC']:.2f}",
            f"  entropy: {c['entropy']:.3f}   ICL: {c['ICL1']:.2f}",
            "",
        ]
        if self.K > 1:
            lines += block(
                "Class-membership model (reference: class 1):",
                tab[tab.index.str.startswith("gamma")],
            )
        for k in range(self.K):
            pre = f"class{k + 1}["
            sel = tab[tab.index.str.startswith(pre)]
            sel.index = [n[len(pre) : -1] for n in sel.index]
            lines += block(f"Class {k + 1} trajectory:", sel)
        if pan.w_names:
            lines += block("Shared fixed effects:", tab[tab.index.str.startswith("beta")])
        lines += block(
            "Random effects (SDs, correlations) and errors:",
            tab[tab.index.str.startswith(("sd[", "corr[", "w[", "sigma_e", "rho", "S["))],
        )
        if self.params.w is not None:
            lines += [
                f"  w[class k]: the scale (SD ratio) of the random effects in class k, "
                f"b_i | k ~ N(0, w_k^2 G); class {self.K}, the highest intercept, is the "
                "reference (w = 1, G its covariance)",
                "",
            ]
        post = self.posterior
        counts = post["class"].value_counts().reindex(range(1, self.K + 1), fill_value=0)
        mean_p = [post.loc[post["class"] == k, f"class{k}"].mean() for k in range(1, self.K + 1)]
        cls = pd.DataFrame(
            {
                "n": counts.to_numpy(),
                "%": (100 * counts / pan.N).round(1).to_numpy(),
                "mean P(own class)": np.round(mean_p, 3),
            },
            index=pd.Index(range(1, self.K + 1), name="class"),
        )
        return "\n".join(lines + ["Posterior classification:", cls.to_string()])
