"""Balanced panels for the latent-subgroup mixed model: checks, long-to-wide, dietox.

A panel holds N subjects observed at the same t times: y is N x t, the fixed-effect
design W is N x t x p (no intercept: the subgroup means mu_k are the intercepts) and
the membership covariates U are N x q (the model adds the intercept of the
multinomial logistic regression itself).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

BALANCE_CHOICES = ("drop_subjects", "common_times")


def _rank(X: np.ndarray) -> int:
    """Numerical rank of a 2-D array (columns standardised so scale does not matter)."""
    if X.shape[1] == 0:
        return 0
    scale = np.sqrt((X ** 2).mean(axis=0))
    scale[scale == 0] = 1.0
    return int(np.linalg.matrix_rank(X / scale, tol=1e-8 * max(X.shape)))


def _count_bad(a: np.ndarray) -> int:
    return int((~np.isfinite(a)).sum())


@dataclass(frozen=True)
class Panel:
    """Balanced longitudinal data: y (N, t), W (N, t, p), U (N, q), with names."""

    y: np.ndarray
    W: np.ndarray
    U: np.ndarray
    w_names: tuple[str, ...] = ()
    u_names: tuple[str, ...] = ()
    subjects: np.ndarray | None = None
    times: np.ndarray | None = None
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        y = np.asarray(self.y, dtype=float)
        W = np.asarray(self.W, dtype=float)
        U = np.asarray(self.U, dtype=float)
        if y.ndim != 2:
            raise ValueError(f"y must be an N x t array (one row per subject), got shape {y.shape}; "
                             "convert long data with lib.em.from_long")
        N, t = y.shape
        if W.ndim == 2 and W.shape == (N, t):
            W = W[:, :, None]
        if W.ndim != 3 or W.shape[:2] != (N, t):
            raise ValueError(f"W must be N x t x p = {N} x {t} x p, got shape {W.shape}")
        if U.ndim == 1:
            U = U[:, None]
        if U.ndim != 2 or U.shape[0] != N:
            raise ValueError(f"U must be N x q with N = {N} rows (one per subject), got shape {U.shape}")
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "U", U)
        w_names = tuple(self.w_names) or tuple(f"w{j + 1}" for j in range(W.shape[2]))
        u_names = tuple(self.u_names) or tuple(f"u{j + 1}" for j in range(U.shape[1]))
        if len(w_names) != W.shape[2] or len(u_names) != U.shape[1]:
            raise ValueError(f"{len(w_names)} W names for {W.shape[2]} columns or {len(u_names)} U names "
                             f"for {U.shape[1]} columns; give one name per column")
        object.__setattr__(self, "w_names", w_names)
        object.__setattr__(self, "u_names", u_names)
        if self.subjects is None:
            object.__setattr__(self, "subjects", np.arange(N))
        if self.times is None:
            object.__setattr__(self, "times", np.arange(t))
        check_panel(self)

    @property
    def N(self) -> int:
        """Number of subjects."""
        return self.y.shape[0]

    @property
    def t(self) -> int:
        """Number of repeated measures per subject."""
        return self.y.shape[1]

    @property
    def p(self) -> int:
        """Number of fixed effects (columns of W)."""
        return self.W.shape[2]

    @property
    def q(self) -> int:
        """Number of membership covariates (columns of U, intercept not counted)."""
        return self.U.shape[1]

    def drop_u(self, names: list[str] | tuple[str, ...]) -> "Panel":
        """The same panel without the named membership covariates."""
        unknown = [n for n in names if n not in self.u_names]
        if unknown:
            raise KeyError(f"membership covariates {unknown} not in U (has {list(self.u_names)})")
        keep = [j for j, n in enumerate(self.u_names) if n not in names]
        return Panel(self.y, self.W, self.U[:, keep], self.w_names, tuple(self.u_names[j] for j in keep),
                     self.subjects, self.times, dict(self.meta))

    def subset(self, rows: np.ndarray) -> "Panel":
        """The panel restricted to some subjects (index or boolean mask)."""
        return Panel(self.y[rows], self.W[rows], self.U[rows], self.w_names, self.u_names,
                     self.subjects[rows], self.times, dict(self.meta))


def check_panel(panel: Panel) -> None:
    """Raise a ValueError naming the problem and the fix for missing values or a bad design."""
    for name, a in (("y", panel.y), ("W", panel.W), ("U", panel.U)):
        bad = _count_bad(a)
        if bad:
            rows = np.unique(np.nonzero(~np.isfinite(a))[0])
            raise ValueError(
                f"{name} has {bad} missing or non-finite values in {rows.size} subjects (first: "
                f"{list(panel.subjects[rows[:5]])}); drop those subjects (from_long(..., "
                "balance='drop_subjects')) or impute the values before fitting")
    N, t, p = panel.W.shape
    if N < 2:
        raise ValueError(f"need at least 2 subjects, got {N}")
    if np.ptp(panel.y) <= 1e-12 * max(1.0, float(np.abs(panel.y).max())):
        # no variance to split into subgroups and errors: EM would "converge" at a log-likelihood near -1e18
        raise ValueError(f"the response y is constant ({float(panel.y.flat[0]):g} for every subject and time); "
                         "the model needs a response that varies: check that the right column was passed as y")
    Wf = panel.W.reshape(N * t, p)
    r = _rank(Wf)
    if r < p:
        raise ValueError(f"the columns of W {list(panel.w_names)} are collinear (rank {r} < {p}); "
                         "drop the redundant columns")
    if _rank(np.column_stack([Wf, np.ones(N * t)])) < p + 1:
        raise ValueError(f"W {list(panel.w_names)} contains an intercept (a constant column, or columns "
                         "that add up to a constant); the subgroup means mu_k are the intercepts, so drop "
                         "the constant column (or one level of a full set of dummies)")
    q = panel.U.shape[1]
    ru = _rank(np.column_stack([np.ones(N), panel.U]))
    if ru < q + 1:
        raise ValueError(f"membership covariates U {list(panel.u_names)} are collinear or contain a constant "
                         f"(rank of [1, U] is {ru} < {q + 1}); the model adds the intercept itself, so drop "
                         "constant or redundant columns")


def from_long(df: pd.DataFrame, subject: str, time: str, y: str, w: list[str], u: list[str],
              balance: str | None = None) -> Panel:
    """Build a balanced Panel from long data (one row per subject and time).

    Unbalanced or incomplete data need an explicit `balance`: 'drop_subjects' keeps the
    subjects seen at every time, 'common_times' keeps the times seen for every subject.
    """
    missing_cols = [c for c in [subject, time, y, *w, *u] if c not in df.columns]
    if missing_cols:
        raise KeyError(f"columns {missing_cols} not in the data (has {list(df.columns)})")
    if balance is not None and balance not in BALANCE_CHOICES:
        raise ValueError(f"balance={balance!r}; use one of {BALANCE_CHOICES} or None")
    cols = [y, *w, *u]
    if not pd.api.types.is_numeric_dtype(df[time]) or pd.api.types.is_bool_dtype(df[time]):
        # text sorts as text ('10' before '2'), which would scramble the order of the measurements
        raise ValueError(f"time column {time!r} is not numeric (dtype {df[time].dtype}, e.g. {df[time].iloc[0]!r}); "
                         f"convert it to numbers first, e.g. df[{time!r}] = pd.to_numeric(df[{time!r}])")
    if df.duplicated([subject, time]).any():
        raise ValueError(f"some ({subject}, {time}) pairs occur more than once; aggregate them first")
    d = df[[subject, time, *cols]]
    incomplete = d[cols].isna().any(axis=1)
    times = np.sort(d[time].unique())
    counts = d[~incomplete].groupby(subject)[time].nunique()
    all_subjects = d[subject].unique()
    complete_subjects = counts.index[counts == times.size]
    if incomplete.any() or complete_subjects.size < all_subjects.size:
        if balance is None:
            per = d[~incomplete].groupby(subject)[time].nunique().reindex(all_subjects, fill_value=0)
            n_common = int((d[~incomplete].groupby(time)[subject].nunique() == all_subjects.size).sum())
            raise ValueError(
                f"unbalanced data: {incomplete.sum()} rows with missing values and subjects with "
                f"{per.min()} to {per.max()} complete measurements over {times.size} times; the model needs "
                f"balanced data: pass balance='drop_subjects' (keeps {complete_subjects.size} of "
                f"{all_subjects.size} subjects) or balance='common_times' (keeps {n_common} of "
                f"{times.size} times)")
        d = d[~incomplete]
        if balance == "drop_subjects":
            d = d[d[subject].isin(complete_subjects)]
            msg = f"kept {complete_subjects.size} of {all_subjects.size} subjects observed at all {times.size} times"
        else:
            per_time = d.groupby(time)[subject].nunique()
            keep_t = per_time.index[per_time == all_subjects.size]
            d = d[d[time].isin(keep_t)]
            msg = f"kept {keep_t.size} of {times.size} times observed for all {all_subjects.size} subjects"
        warnings.warn(f"from_long: {msg} (balance={balance!r})", stacklevel=2)
    if d.empty:
        raise ValueError("no data left after balancing; check the subject and time columns")
    d = d.sort_values([subject, time])
    subj = d[subject].unique()
    tt = np.sort(d[time].unique())
    N, t = subj.size, tt.size
    if len(d) != N * t:
        raise ValueError("data are still unbalanced after balancing; check for duplicated rows")
    Y = d[y].to_numpy(float).reshape(N, t)
    Wa = d[w].to_numpy(float).reshape(N, t, len(w))
    Ua = d[u].to_numpy(float).reshape(N, t, len(u))
    if len(u) and not np.allclose(Ua, Ua[:, :1, :]):
        varying = [c for j, c in enumerate(u) if not np.allclose(Ua[:, :, j], Ua[:, :1, j])]
        raise ValueError(f"membership covariates {varying} change over time within subjects; membership "
                         "covariates must be subject-level (use the baseline value)")
    return Panel(Y, Wa, Ua[:, 0, :], tuple(w), tuple(u), subj, tt)


def dietox_csv() -> Path:
    """Path of the dietox pig-growth data shipped inside statsmodels (no download)."""
    import statsmodels

    path = Path(statsmodels.__file__).parent / "regression" / "tests" / "results" / "dietox.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; this statsmodels build does not ship dietox.csv. "
                                "Install statsmodels from env/requirements.txt")
    return path


def load_dietox() -> pd.DataFrame:
    """The dietox panel (72 pigs, weekly weights) with Start = weight at week 1 and readable doses.

    Evit (vitamin E, mg/kg feed: 0, 100, 200) and Cu (copper, mg/kg: 0, 35, 175) are coded
    1-3 in the shipped file, in that order.
    """
    df = pd.read_csv(dietox_csv(), index_col=0)
    df["Evit_dose"] = df["Evit"].map({1: 0.0, 2: 100.0, 3: 200.0})
    df["Cu_dose"] = df["Cu"].map({1: 0.0, 2: 35.0, 3: 175.0})
    start = df[df["Time"] == df["Time"].min()].set_index("Pig")["Weight"]
    df["Start"] = df["Pig"].map(start)
    return df


def dietox_panel(balance: str = "drop_subjects") -> Panel:
    """Balanced dietox panel for the subgroup model.

    y = log weight (kg) at the weighings after the start weighing (Time 2-12), so the start
    weight, used as a membership covariate, is not also an outcome; W = weeks since the
    start weighing / 10 and its square (no intercept); U = standardised start weight and
    the vitamin E and copper doses (per 100 mg/kg feed). Three pigs miss the last weighing:
    'drop_subjects' keeps 69 pigs x 11 weeks, 'common_times' 72 pigs x 10 weeks.
    """
    df = load_dietox()
    df["log_weight"] = np.log(df["Weight"])
    df["week"] = (df["Time"] - df["Time"].min()) / 10.0
    df["week2"] = df["week"] ** 2
    df["start_z"] = (df["Start"] - df["Start"].mean()) / df["Start"].std()
    df["evit"] = df["Evit_dose"] / 100.0
    df["cu"] = df["Cu_dose"] / 100.0
    df = df[df["Time"] > df["Time"].min()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the balancing choice is explicit here
        return from_long(df, "Pig", "Time", "log_weight", ["week", "week2"], ["start_z", "evit", "cu"],
                         balance=balance)
