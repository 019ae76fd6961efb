"""Growth mixtures from a data frame: `fit_growth(df, y=..., fixed=..., mixture=..., random=...,
membership=..., subject=..., time=..., K=..., errors=..., nwg=...)`, its starts and its result
(`growth`).

Columns and formulas are read as in `fit_latent_lmm` (categories by treatment coding); the class
intercept and the random intercept are always in the model. Starts: pooled OLS for the
shared coefficients; the class trajectories by k-means of the subjects' own least-squares
trajectories (k-means++ seeding, Arthur and Vassilvitskii 2007, a different seed per start);
every start runs a few EM iterations (on a random subset of `screen_subjects` subjects when
there are more), the best runs to convergence, and BFGS polishes it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .config import EMConfig
from .design import Design, design_from
from .growth import (
    GROWTH_ERRORS,
    GrowthData,
    GrowthParams,
    growth_estep,
    run_growth_em,
)
from .growthresult import GrowthFit
from .growthscore import maximize_growth
from .panel import Panel, check_long, from_long, plain_names
from .scaling import Scaling, rms

SHORT_ITER = 20  # EM iterations of every start before the best is run to convergence
HANDOFF_TOL = (
    1e-7  # the best start runs EM to this relative gain, then BFGS finishes (EM crawls after)
)


def growth_data(
    df: pd.DataFrame,
    y: str,
    fixed: list[str] | str,
    mixture: list[str] | str,
    random: list[str] | str,
    membership: list[str] | str,
    subject: str,
    time: str,
    designs: dict[str, Design] | None = None,
    check: bool = True,
) -> tuple[GrowthData, dict[str, Design]]:
    """The panel and its shared (W), class-specific (X) and random (Z) designs, intercepts added
    to X and Z, with the designs (learned from `df`, or the fitted ones given for new data)."""
    check_long(df, subject, time, [y])
    parts, learned = {}, {}
    for what, terms in (
        ("fixed", fixed),
        ("mixture", mixture),
        ("random", random),
        ("membership", membership),
    ):
        if designs is None:
            learned[what], parts[what] = design_from(df, terms, what)
        else:
            learned[what], parts[what] = designs[what], designs[what].matrix(df)
    both = set(parts["fixed"].columns) & set(parts["mixture"].columns)
    if both:
        raise ValueError(
            f"columns {sorted(both)} are in both fixed and mixture; mixture already gives each "
            "class its own coefficient, so drop them from fixed"
        )
    cols = {w: [f"{w}:{c}" for c in parts[w].columns] for w in parts}
    long = pd.concat(
        [df[[subject, time]], df[y].astype(float).rename("y")]
        + [parts[w].add_prefix(f"{w}:") for w in parts],
        axis=1,
    )
    wcols = cols["fixed"] + cols["mixture"] + cols["random"]
    try:
        p = from_long(long, subject, time, "y", wcols, cols["membership"], check=False)
    except ValueError as e:
        raise plain_names(e) from None
    nf, nm = len(cols["fixed"]), len(cols["mixture"])
    ones = np.ones(p.W.shape[:2] + (1,))
    panel = shared_panel(
        p, nf, tuple(parts["fixed"].columns), tuple(parts["membership"].columns), check
    )
    X = np.concatenate([ones, p.W[:, :, nf : nf + nm]], axis=2)
    Z = np.concatenate([ones, p.W[:, :, nf + nm :]], axis=2)
    obs = panel.observed[:, :, None]
    data = GrowthData(
        panel,
        np.where(obs, X, 0.0),
        np.where(obs, Z, 0.0),
        ("(intercept)", *parts["mixture"].columns),
        ("(intercept)", *parts["random"].columns),
    )
    return data, learned


def shared_panel(
    p: Panel, nf: int, w_names: tuple[str, ...], u_names: tuple[str, ...], check: bool = True
) -> Panel:
    """The panel with only the shared fixed effects in W (checked as a panel is)."""
    return Panel(p.y, p.W[:, :, :nf], p.U, w_names, u_names, p.subjects, p.times, check=check)


def check_random(data: GrowthData) -> None:
    """Refuse random slopes that no subject's own measurements can tell apart from the others."""
    pan, Z = data.panel, data.Z
    obs = pan.observed
    n_obs = obs.sum(axis=1)
    for j, name in enumerate(data.z_names[1:], start=1):
        z = np.where(obs, Z[:, :, j], np.nan)
        spread = np.nanmax(z, axis=1) - np.nanmin(z, axis=1)
        if not np.any(spread > 1e-12 * max(np.nanmax(np.abs(z)), 1e-300)):
            raise ValueError(
                f"random slope on {name!r}: it is constant within every subject, so its random "
                "effect cannot be told from the random intercept; a column that describes the "
                "subject goes in fixed, mixture or membership, and random takes columns that "
                "change between a subject's measurements (time, age, dose)"
            )
    q = Z.shape[2]
    if n_obs.max() <= q:
        raise ValueError(
            f"{q} random effects ({', '.join(data.z_names)}) but no subject has more than "
            f"{int(n_obs.max())} measurements: G and the error variance cannot be told apart; "
            "drop random terms (random=[...]) or use subjects with more measurements"
        )


def check_pairs(panel: Panel) -> None:
    """Refuse an unstructured S whose covariance at some pair of times no subject informs."""
    obs = panel.observed.astype(float)
    rows, cols = np.nonzero(np.triu((obs.T @ obs) == 0))
    if rows.size:
        shown = [f"({panel.times[r]:g}, {panel.times[c]:g})" for r, c in zip(rows, cols)]
        pairs = ", ".join(shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")
        raise ValueError(
            f"unstructured errors need every pair of times observed together on some subject; "
            f"no subject is measured at both times of {pairs}, so S is not identified there: "
            "use errors='ar1'"
        )


def pooled(data: GrowthData) -> tuple[np.ndarray, np.ndarray]:
    """Pooled OLS of y on [W, X]: the shared coefficients and one trajectory for everyone."""
    pan = data.panel
    D = np.concatenate([pan.W, data.X], axis=2)[pan.observed]
    coef = np.linalg.lstsq(D, pan.y[pan.observed], rcond=None)[0]
    return coef[: pan.p], coef[pan.p :]


def initial_growth(
    data: GrowthData,
    K: int,
    structure: str,
    rng: np.random.Generator | None,
    own: np.ndarray | None = None,  # the subjects' own trajectories, if already computed
    nwg: bool = False,
) -> GrowthParams:
    """A start: pooled OLS, class trajectories by k-means of the subjects' own (seeded by `rng`), a variance split."""
    pan = data.panel
    obs = pan.observed
    beta, b0 = pooled(data)
    s2 = float(np.var(pan.y[obs]))
    B = np.tile(b0, (K, 1))
    if K > 1:
        own = subject_coefficients(data, beta, b0) if own is None else own
        B = class_centres(own, K, rng or np.random.default_rng(0))
    q = data.Z.shape[2]
    zvar = np.array([np.var(data.Z[:, :, j][obs]) or 1.0 for j in range(q)])
    zvar[0] = 1.0
    G = np.diag(0.25 * s2 / zvar)
    rho = 0.5 if structure == "ar1" else float("nan")
    gamma = np.zeros((K, pan.q + 1))
    if structure == "unstructured":  # G held at 0; S starts diagonal
        S = np.eye(pan.t) * 0.75 * s2
        return GrowthParams(beta, B, gamma, np.zeros((q, q)), 0.75 * s2, rho, structure, S)
    w = np.ones(K) if nwg else None  # class scales of G start equal
    return GrowthParams(beta, B, gamma, G, 0.5 * s2, rho, structure, w=w)


def subject_coefficients(data: GrowthData, beta: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    """Each subject's own least-squares trajectory (N, m) on X (the pooled one where it has too few
    points or a singular design), by batched normal equations over each block."""
    pan = data.panel
    out = np.tile(pooled, (pan.N, 1))
    for b, X, _ in data.blocks:
        r = b.y - (b.W @ beta if beta.size else 0.0)
        XtX = np.swapaxes(X, 1, 2) @ X
        m = XtX.shape[1]
        if b.t <= m:
            continue
        ok = np.linalg.cond(XtX) < 1e10
        if ok.any():
            rhs = (np.swapaxes(X[ok], 1, 2) @ r[ok][:, :, None])[:, :, 0]
            out[b.rows[ok]] = np.linalg.solve(XtX[ok], rhs[:, :, None])[:, :, 0]
    return out


def class_centres(C: np.ndarray, K: int, rng: np.random.Generator, iters: int = 20) -> np.ndarray:
    """K class trajectories by k-means (k-means++ seeding) of the subjects' own trajectories, scaled per column."""
    sd = C.std(axis=0)
    sd[sd == 0] = 1.0
    Zc = C / sd
    centres = [Zc[rng.integers(len(Zc))]]
    for _ in range(K - 1):
        d2 = np.min(((Zc[:, None, :] - np.asarray(centres)[None]) ** 2).sum(axis=2), axis=1)
        centres.append(
            Zc[rng.choice(len(Zc), p=d2 / d2.sum()) if d2.sum() > 0 else rng.integers(len(Zc))]
        )
    M = np.asarray(centres)
    for _ in range(iters):
        lab = np.argmin(((Zc[:, None, :] - M[None]) ** 2).sum(axis=2), axis=1)
        M = np.asarray([Zc[lab == k].mean(axis=0) if (lab == k).any() else M[k] for k in range(K)])
    return M * sd


def fit_growth(
    df: pd.DataFrame,
    y: str,
    subject: str,
    time: str,
    fixed: list[str] | str = (),
    mixture: list[str] | str = (),
    random: list[str] | str = (),
    membership: list[str] | str = (),
    K: int = 2,
    errors: str = "ar1",
    n_starts: int = 10,
    seed: int = 0,
    gamma_ridge: float = 0.0,
    nwg: bool = False,
    screen_subjects: int = EMConfig.screen_subjects,
) -> GrowthFit:
    """Fit a growth mixture to a long data frame (one row per subject and time).

    `nwg=True` (lcmm's nwg) scales G by class: b_i | class k ~ N(0, w_k^2 G), with w = 1 for the
    last class after the classes are ordered by intercept (the reference; G is its covariance).
    Above `screen_subjects` subjects the starts' short runs use a random subset of that many
    (`short_runs`); the best, by the whole panel's log-likelihood, runs on the whole panel.
    """
    if errors not in GROWTH_ERRORS:
        raise ValueError(f"errors={errors!r}; growth mixtures take one of {GROWTH_ERRORS}")
    if not isinstance(K, (int, np.integer)) or isinstance(K, bool) or K < 1:
        raise ValueError(f"K={K!r}; the number of classes must be an integer >= 1")
    check_nwg(nwg, K, errors)
    if errors == "unstructured" and (random.strip() if isinstance(random, str) else len(random)):
        raise ValueError(
            "random slopes are not identified beside an unstructured error covariance (S absorbs "
            "any Z G Z'); use errors='ar1' or 'identity' with random slopes, or no random slopes"
        )
    data, designs = growth_data(
        df,
        y,
        list(fixed) if not isinstance(fixed, str) else fixed,
        list(mixture) if not isinstance(mixture, str) else mixture,
        list(random) if not isinstance(random, str) else random,
        list(membership) if not isinstance(membership, str) else membership,
        subject,
        time,
    )
    check_random(data)
    if errors == "unstructured":
        check_pairs(data.panel)
    user, scale = data, GrowthScale.of(data, scale_u=gamma_ridge == 0.0)
    data = scale.data(user)
    rng = np.random.default_rng(seed)
    short = short_runs(data, K, errors, n_starts, rng, gamma_ridge, nwg, screen_subjects)
    if not short:
        raise RuntimeError("every start failed; try fewer classes or other covariates")
    _, th, path = max(short, key=lambda s: s[0])
    try:
        th, more = run_growth_em(
            data, th, tol=HANDOFF_TOL if gamma_ridge == 0.0 else 1e-9, ridge=gamma_ridge
        )
    except np.linalg.LinAlgError:
        if errors != "unstructured":
            raise
        T, pan = data.panel.t, data.panel
        # the maximum lies where S is singular: too few subjects for T (T + 1) / 2 covariances
        raise ValueError(
            f"the {T} x {T} unstructured error covariance became singular during the fit "
            f"({pan.N} subjects, {pan.n_obs} of {pan.N * T} measurements, {T * (T + 1) // 2} "
            f"covariances to estimate, {K} classes): the data cannot estimate it; use "
            "errors='ar1' or 'identity', or a panel with more subjects"
        ) from None
    if gamma_ridge == 0.0:
        th = maximize_growth(data, th)
    order = np.argsort(th.B[:, 0], kind="stable")  # classes by their intercept, as the other model
    th = scale.outward(reorder(th, order))
    es = growth_estep(user, th)
    shift = scale.loglik_shift(user)
    path = [f + shift for f in (path + more[1:] if path else more)] + [es.loglik]
    v = dict(y=y, subject=subject, time=time)
    return GrowthFit(th, es, user, path, [s[0] + shift for s in short], designs, v)


def short_runs(
    data: GrowthData,
    K: int,
    errors: str,
    n_starts: int,
    rng: np.random.Generator,
    gamma_ridge: float,
    nwg: bool,
    screen_subjects: int,
) -> list[tuple[float, GrowthParams, list[float]]]:
    """Every start after SHORT_ITER EM iterations: (log-likelihood, parameters, path), failed
    starts left out. Above `screen_subjects` subjects the starts are drawn and run on a random
    subset of that many (the ranking needs far fewer subjects, as in the random-intercept fit),
    then ranked by their log-likelihood on the whole panel, and their paths are left empty (the
    fit's path starts at the run to convergence on the whole panel)."""
    ranked = data
    if data.panel.N > screen_subjects:
        ranked = data.subset(np.sort(rng.choice(data.panel.N, screen_subjects, replace=False)))
    own = subject_coefficients(ranked, *pooled(ranked)) if K > 1 else None
    starts = [initial_growth(ranked, K, errors, None, own, nwg)]
    starts += [
        initial_growth(ranked, K, errors, rng, own, nwg)
        for _ in range(n_starts - 1 if K > 1 else 0)
    ]
    short = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for th0 in starts:
            try:
                th, path = run_growth_em(ranked, th0, SHORT_ITER, ridge=gamma_ridge)
                if ranked is data:
                    short.append((path[-1], th, path))
                    continue
                ll = growth_estep(data, th).loglik  # ranked on the whole panel
                if np.isfinite(ll):
                    short.append((ll, th, []))
            except (np.linalg.LinAlgError, ValueError, FloatingPointError):
                continue
    return short


def check_nwg(nwg: bool, K: int, errors: str) -> None:
    """Refuse class scales of G where they mean nothing."""
    if not nwg:
        return
    if K < 2:
        raise ValueError("nwg=True scales G by class and needs K >= 2; with K=1 use nwg=False")
    if errors == "unstructured":
        raise ValueError(
            "nwg=True scales G by class, but with errors='unstructured' G is held at 0 (S absorbs "
            "it); use errors='ar1' or 'identity' with nwg"
        )


def reorder(th: GrowthParams, order: np.ndarray) -> GrowthParams:
    """The classes in `order`, gamma against the new first class, w against the new last (G rescaled)."""
    th = replace(th, B=th.B[order], gamma=th.gamma[order] - th.gamma[order][0])
    if th.w is None:
        return th
    w = th.w[order]
    return replace(th, w=w / w[-1], G=th.G * w[-1] ** 2)  # the same class covariances w_k^2 G


@dataclass(frozen=True)
class GrowthScale:
    """The standard scale a growth mixture is fitted on: y' = (y - cy) / sy, each non-intercept
    column of W, X, Z and U divided by its root mean square (as `scaling` does for the
    random-intercept model: the fit then does not depend on the units)."""

    cy: float
    sy: float
    sw: np.ndarray
    sx: np.ndarray  # (m,) with 1 for the intercept
    sz: np.ndarray  # (q,) with 1 for the intercept
    su: np.ndarray

    @classmethod
    def of(cls, data: GrowthData, scale_u: bool = True) -> GrowthScale:
        """The scaling of `data` (U kept where a ridge penalty is set in its units)."""
        pan, obs = data.panel, data.panel.observed
        yo = pan.y[obs]

        sx, sz = rms(data.X[obs]), rms(data.Z[obs])
        sx[0] = sz[0] = 1.0
        su = rms(pan.U) if scale_u else np.ones(pan.q)
        sy = float(np.std(yo)) or 1.0
        return cls(float(np.mean(yo)), sy, rms(pan.W[obs]), sx, sz, su)

    def data(self, d: GrowthData) -> GrowthData:
        """The data on the standard scale."""
        p = Scaling(self.cy, self.sy, self.sw, self.su).panel(d.panel)
        return replace(d, panel=p, X=d.X / self.sx, Z=d.Z / self.sz)

    def outward(self, th: GrowthParams) -> GrowthParams:
        """Standard-scale parameters in the user's units."""
        B = th.B * self.sy / self.sx
        B[:, 0] += self.cy
        g = th.gamma.copy()
        g[:, 1:] /= self.su
        Dz = self.sy / self.sz
        return replace(
            th,
            beta=th.beta * self.sy / self.sw,
            B=B,
            gamma=g,
            G=th.G * np.outer(Dz, Dz),
            se2=th.se2 * self.sy**2,
            S=None if th.S is None else th.S * self.sy**2,
        )

    def loglik_shift(self, d: GrowthData) -> float:
        """What to add to a standard-scale log-likelihood (the Jacobian of y -> y')."""
        return -d.panel.n_obs * float(np.log(self.sy))
