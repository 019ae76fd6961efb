"""Panels for the latent-subgroup mixed model: checks, long to wide, blocks of equal patterns.

A panel holds N subjects on a grid of T distinct measurement times: y is N x T with NaN where
a subject was not measured (unbalanced and irregular panels keep every measurement), the
fixed-effect design W is N x T x p (no intercept: the subgroup means mu_k are the intercepts;
values where y is missing are ignored) and the membership covariates U are N x q (the model
adds the intercept of the multinomial logistic regression itself). For the likelihood the
subjects are grouped into blocks of equal numbers of measurements, and within a block by
their pattern of observed times, so every step stays vectorized.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

BALANCE_CHOICES = ("drop_subjects", "common_times")
MAX_GRID = 50_000_000  # N x T cells: beyond this the grid of distinct times is too sparse to hold


SCALE_RANGE = (
    1e-100,
    1e100,
)  # spread of a column whose squares and sums stay finite in double precision


def _rank(X: np.ndarray) -> int:
    """Numerical rank of a 2-D array (columns standardised so scale does not matter)."""
    if X.shape[1] == 0:
        return 0
    X = X / np.maximum(
        np.abs(X).max(axis=0), 1e-300
    )  # first to about 1, so the squares cannot overflow
    scale = np.sqrt((X**2).mean(axis=0))
    scale[scale == 0] = 1.0
    return int(np.linalg.matrix_rank(X / scale, tol=1e-8 * max(X.shape)))


@dataclass(frozen=True)
class Block:
    """Subjects with the same number t of measurements, sorted by their pattern of observed times."""

    rows: np.ndarray  # (n,) subject indices into the panel
    pos: np.ndarray  # (P, t) positions in panel.times observed by each pattern
    pat: np.ndarray  # (n,) pattern of each subject (non-decreasing)
    starts: np.ndarray  # (P,) first row of each pattern
    y: np.ndarray  # (n, t) observed responses
    W: np.ndarray  # (n, t, p) their fixed-effect design
    tau: np.ndarray  # (P, t) the observed times of each pattern

    @cached_property
    def slices(self) -> list[slice]:
        """Rows of each pattern (contiguous, since rows are sorted by pattern)."""
        ends = np.r_[self.starts[1:], len(self.rows)]
        return [slice(int(a), int(e)) for a, e in zip(self.starts, ends)]

    @property
    def t(self) -> int:
        """Measurements per subject in this block."""
        return self.y.shape[1]

    @cached_property
    def gaps(self) -> np.ndarray:
        """Time between consecutive measurements of each pattern (P, t - 1)."""
        return np.diff(self.tau, axis=1)

    @cached_property
    def counts(self) -> np.ndarray:
        """Subjects per pattern."""
        return np.diff(np.r_[self.starts, len(self.rows)])


@dataclass(frozen=True)
class Panel:
    """Longitudinal data on a grid of distinct times: y (N, T) with NaN = not measured, W (N, T, p), U (N, q)."""

    y: np.ndarray
    W: np.ndarray
    U: np.ndarray
    w_names: tuple[str, ...] = ()
    u_names: tuple[str, ...] = ()
    subjects: np.ndarray | None = None
    times: np.ndarray | None = None
    meta: dict = field(default_factory=dict, compare=False)
    check: bool = field(
        default=True, compare=False, repr=False
    )  # False: skip the fitting checks (prediction)

    def __post_init__(self) -> None:
        y = np.asarray(self.y, dtype=float)
        W = np.asarray(self.W, dtype=float)
        U = np.asarray(self.U, dtype=float)
        if y.ndim != 2:
            raise ValueError(
                f"y must be an N x T array (one row per subject, NaN where not measured), got "
                f"shape {y.shape}; convert long data with lib.em.from_long"
            )
        N, t = y.shape
        if W.ndim == 2 and W.shape == (N, t):
            W = W[:, :, None]
        if W.ndim != 3 or W.shape[:2] != (N, t):
            raise ValueError(f"W must be N x T x p = {N} x {t} x p, got shape {W.shape}")
        if U.ndim == 1:
            U = U[:, None]
        if U.ndim != 2 or U.shape[0] != N:
            raise ValueError(
                f"U must be N x q with N = {N} rows (one per subject), got shape {U.shape}"
            )
        W = np.where(np.isfinite(y)[:, :, None], W, 0.0) if not np.isfinite(y).all() else W
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "U", U)
        w_names = tuple(self.w_names) or tuple(f"w{j + 1}" for j in range(W.shape[2]))
        u_names = tuple(self.u_names) or tuple(f"u{j + 1}" for j in range(U.shape[1]))
        if len(w_names) != W.shape[2] or len(u_names) != U.shape[1]:
            raise ValueError(
                f"{len(w_names)} W names for {W.shape[2]} columns or {len(u_names)} U names "
                f"for {U.shape[1]} columns; give one name per column"
            )
        object.__setattr__(self, "w_names", w_names)
        object.__setattr__(self, "u_names", u_names)
        if self.subjects is None:
            object.__setattr__(self, "subjects", np.arange(N))
        times = (
            np.arange(t, dtype=float) if self.times is None else np.asarray(self.times, dtype=float)
        )
        if times.shape != (t,) or not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
            raise ValueError(
                f"times must be {t} finite, strictly increasing numbers (one per column of y), "
                f"got {np.asarray(self.times)[:8]}"
            )
        object.__setattr__(self, "times", times)
        if self.check:
            check_panel(self)

    @property
    def N(self) -> int:
        """Number of subjects."""
        return self.y.shape[0]

    @property
    def t(self) -> int:
        """Number of distinct measurement times T (columns of y)."""
        return self.y.shape[1]

    @property
    def p(self) -> int:
        """Number of fixed effects (columns of W)."""
        return self.W.shape[2]

    @property
    def q(self) -> int:
        """Number of membership covariates (columns of U, intercept not counted)."""
        return self.U.shape[1]

    @cached_property
    def observed(self) -> np.ndarray:
        """(N, T) True where a subject was measured."""
        return np.isfinite(self.y)

    @property
    def n_obs(self) -> int:
        """Number of measurements."""
        return int(self.observed.sum())

    @property
    def balanced(self) -> bool:
        """Every subject measured at every time."""
        return bool(self.observed.all())

    @cached_property
    def blocks(self) -> tuple[Block, ...]:
        """Subjects grouped by number of measurements, then by pattern of observed times."""
        obs = self.observed
        count = obs.sum(axis=1)
        out = []
        for t in np.unique(count):
            rows = np.nonzero(count == t)[0]
            masks, pat = np.unique(obs[rows], axis=0, return_inverse=True)
            order = np.argsort(pat.ravel(), kind="stable")
            rows, pat = rows[order], pat.ravel()[order]
            pos = np.array([np.nonzero(m)[0] for m in masks]).reshape(len(masks), t)
            starts = np.searchsorted(pat, np.arange(len(masks)))
            sel = obs[rows]
            y = self.y[rows][sel].reshape(len(rows), t)
            W = self.W[rows][sel].reshape(len(rows), t, self.p)
            out.append(Block(rows, pos, pat, starts, y, W, self.times[pos]))
        return tuple(out)

    def drop_u(self, names: list[str] | tuple[str, ...]) -> Panel:
        """The same panel without the named membership covariates."""
        unknown = [n for n in names if n not in self.u_names]
        if unknown:
            raise KeyError(f"membership covariates {unknown} not in U (has {list(self.u_names)})")
        keep = [j for j, n in enumerate(self.u_names) if n not in names]
        return Panel(
            self.y,
            self.W,
            self.U[:, keep],
            self.w_names,
            tuple(self.u_names[j] for j in keep),
            self.subjects,
            self.times,
            dict(self.meta),
        )

    def subset(self, rows: np.ndarray) -> Panel:
        """The panel restricted to some subjects (index or boolean mask); unused times are kept."""
        return Panel(
            self.y[rows],
            self.W[rows],
            self.U[rows],
            self.w_names,
            self.u_names,
            self.subjects[rows],
            self.times,
            dict(self.meta),
        )


def check_panel(panel: Panel) -> None:
    """Raise a ValueError naming the problem and the fix for missing values or a bad design."""
    obs = panel.observed
    for name, a, where in (
        ("y", panel.y, obs),
        ("W", panel.W, obs[:, :, None] & np.ones(panel.W.shape, bool)),
        ("U", panel.U, np.ones(panel.U.shape, bool)),
    ):
        bad = where & ~np.isfinite(a) if name != "y" else np.isinf(a)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            fix = (
                "drop those rows or impute the values"
                if name != "U"
                else "drop those subjects or impute the values"
            )
            raise ValueError(
                f"{name} has {int(bad.sum())} missing or non-finite values (at measured times) in "
                f"{rows.size} subjects (first: {list(panel.subjects[rows[:5]])}); {fix} before fitting"
            )
    N, _, p = panel.W.shape
    per = obs.sum(axis=1)
    if (per == 0).any():
        empty = panel.subjects[per == 0]
        raise ValueError(
            f"{empty.size} subjects have no measurement (first: {list(empty[:5])}); drop them"
        )
    if N < 2:
        raise ValueError(f"need at least 2 subjects, got {N}")
    yo = panel.y[obs]
    if np.ptp(yo) <= 1e-12 * float(np.abs(yo).max()):
        # no variance to split into subgroups and errors: EM would "converge" at a log-likelihood near -1e18
        raise ValueError(
            f"the response y is constant ({float(yo[0]):g} for every subject and time); "
            "the model needs a response that varies: check that the right column was passed as y"
        )
    Wf = panel.W[obs]
    check_scales(panel, yo, Wf)
    r = _rank(Wf)
    if r < p:
        raise ValueError(
            f"the columns of W {list(panel.w_names)} are collinear (rank {r} < {p}); "
            "drop the redundant columns"
        )
    if _rank(np.column_stack([Wf, np.ones(len(Wf))])) < p + 1:
        raise ValueError(
            f"W {list(panel.w_names)} contains an intercept (a constant column, or columns "
            "that add up to a constant); the subgroup means mu_k are the intercepts, so drop "
            "the constant column (or one level of a full set of dummies)"
        )
    q = panel.U.shape[1]
    ru = _rank(np.column_stack([np.ones(N), panel.U]))
    if ru < q + 1:
        raise ValueError(
            f"membership covariates U {list(panel.u_names)} are collinear or contain a constant "
            f"(rank of [1, U] is {ru} < {q + 1}); the model adds the intercept itself, so drop "
            "constant or redundant columns"
        )


def check_scales(panel: Panel, yo: np.ndarray, Wf: np.ndarray) -> None:
    """Refuse a column whose spread double precision cannot hold through the fit's sums of squares."""
    lo, hi = SCALE_RANGE
    cols = [("response y", yo)]
    cols += [(f"fixed-effect column {n!r}", Wf[:, j]) for j, n in enumerate(panel.w_names)]
    cols += [(f"membership column {n!r}", panel.U[:, j]) for j, n in enumerate(panel.u_names)]
    for what, v in cols:
        with np.errstate(all="ignore"):
            spread = float(np.ptp(v)) if v.size else 0.0
        if spread == 0.0 or lo <= spread <= hi:
            continue
        k = int(np.floor(np.log10(spread))) if np.isfinite(spread) else 308
        raise ValueError(
            f"the {what} spans {spread:.3g}, outside what the fit can hold in double precision "
            f"({lo:g} to {hi:g}); rescale it before fitting, e.g. divide it by 1e{k} (estimates "
            f"and the log-likelihood then refer to the rescaled column)"
        )


def _id_kind(v: object) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "boolean"
    if isinstance(v, (int, float, np.number)):
        return "number"
    return "text" if isinstance(v, str) else type(v).__name__


def check_ids(df: pd.DataFrame, subject: str) -> None:
    """Refuse missing subject ids (naming the rows) and ids that mix types (1 beside '1')."""
    ids = df[subject]
    gone = ids.isna()
    if gone.any():
        raise ValueError(
            f"subject column {subject!r} is missing in {int(gone.sum())} rows (first row labels: "
            f"{list(df.index[gone][:5])}); they cannot be assigned to a subject: drop them "
            f"(df = df.dropna(subset=[{subject!r}])) or fill in their ids"
        )
    if ids.dtype != object:
        return
    kinds = ids.map(_id_kind)
    if kinds.nunique() > 1:
        text = ids.astype(str)
        merge = sorted({t for t, g in text.groupby(text).groups.items() if kinds[g].nunique() > 1})
        clash = f"; {merge[:5]} would each be two different subjects" if merge else ""
        raise ValueError(
            f"subject ids in {subject!r} mix {' and '.join(sorted(kinds.unique()))} "
            f"(e.g. {[ids[kinds == k].iloc[0] for k in sorted(kinds.unique())]}){clash}; make them "
            f"one type first, e.g. df[{subject!r}] = df[{subject!r}].astype(str)"
        )


def check_long(df: pd.DataFrame, subject: str, time: str, cols: list[str]) -> None:
    """Errors naming the fix for missing columns, a non-numeric time and repeated (subject, time) rows."""
    missing_cols = [c for c in dict.fromkeys([subject, time, *cols]) if c not in df.columns]
    if missing_cols:
        raise KeyError(f"columns {missing_cols} not in the data (has {list(df.columns)})")
    check_ids(df, subject)
    if not pd.api.types.is_numeric_dtype(df[time]) or pd.api.types.is_bool_dtype(df[time]):
        # text sorts as text ('10' before '2'), which would scramble the order of the measurements
        raise ValueError(
            f"time column {time!r} is not numeric (dtype {df[time].dtype}, e.g. {df[time].iloc[0]!r}); "
            f"convert it to numbers first, e.g. df[{time!r}] = pd.to_numeric(df[{time!r}]), or "
            "dates to days since a start"
        )
    if df[time].isna().any():
        raise ValueError(
            f"time column {time!r} has {int(df[time].isna().sum())} missing values; drop those rows"
        )
    dup = df.duplicated([subject, time], keep=False)
    if dup.any():
        first = df.loc[dup, [subject, time]].iloc[0].tolist()
        raise ValueError(
            f"{int(dup.sum())} rows repeat a ({subject}, {time}) pair (first: {first}); one row per "
            "subject and time is needed: aggregate them (e.g. mean) or give them distinct times"
        )


def plain_names(e: ValueError) -> ValueError:
    """The same error with the internal part prefixes ('u:', 'membership:', ...) taken off column names."""
    return ValueError(re.sub(r"'(?:w|u|fixed|mixture|random|membership):", "'", str(e)))


def from_long(
    df: pd.DataFrame,
    subject: str,
    time: str,
    y: str,
    w: list[str],
    u: list[str],
    balance: str | None = None,
    check: bool = True,
) -> Panel:
    """Build a Panel from long data (one row per subject and time), keeping every measurement.

    Subjects may have different numbers of measurements at different times. Rows whose y or
    W is missing are dropped with a warning (a measurement without its design cannot be used).
    `balance` optionally makes the panel balanced: 'drop_subjects' keeps the subjects seen at
    every time, 'common_times' keeps the times seen for every subject.
    """
    cols = [y, *w, *u]
    check_long(df, subject, time, cols)
    if balance is not None and balance not in BALANCE_CHOICES:
        raise ValueError(
            f"balance={balance!r}; use one of {BALANCE_CHOICES} or None (keep every measurement)"
        )
    d = df[[subject, time, *cols]]
    u_missing = d[u].isna().any(axis=1) if u else pd.Series(False, index=d.index)
    if u_missing.any():
        bad = d.loc[u_missing, subject].unique()
        raise ValueError(
            f"membership covariates {u} are missing for {bad.size} subjects (first: {list(bad[:5])}); "
            "drop those subjects or impute their values"
        )
    incomplete = d[[y, *w]].isna().any(axis=1)
    if incomplete.any():
        warnings.warn(
            f"from_long: dropped {int(incomplete.sum())} rows with a missing {y} or fixed-effect "
            f"value ({int(d.loc[incomplete, y].notna().sum())} of them had a response)",
            stacklevel=2,
        )
        d = d[~incomplete]
    if d.empty:
        raise ValueError("no complete rows; check the column names and missing values")
    all_subjects = d[subject].unique()
    times = np.sort(d[time].unique())
    if balance is not None:
        counts = d.groupby(subject)[time].nunique()
        if balance == "drop_subjects":
            keep = counts.index[counts == times.size]
            d = d[d[subject].isin(keep)]
            msg = f"kept {keep.size} of {all_subjects.size} subjects observed at all {times.size} times"
        else:
            per_time = d.groupby(time)[subject].nunique()
            keep_t = per_time.index[per_time == all_subjects.size]
            d = d[d[time].isin(keep_t)]
            msg = f"kept {keep_t.size} of {times.size} times observed for all {all_subjects.size} subjects"
        if d.empty:
            raise ValueError(
                f"no data left after balance={balance!r}; use balance=None to keep every measurement"
            )
        if len(d) < len(df):
            warnings.warn(f"from_long: {msg} (balance={balance!r})", stacklevel=2)
    d = d.sort_values([subject, time])
    subj = d[subject].unique()
    tt = np.sort(d[time].unique())
    N, T = subj.size, tt.size
    if N * T > MAX_GRID:
        raise ValueError(
            f"{N} subjects x {T} distinct times is too sparse a grid; round the times (e.g. to days "
            "or weeks) so that fewer distinct values remain"
        )
    i = pd.Index(subj).get_indexer(d[subject])
    j = np.searchsorted(tt, d[time].to_numpy())
    Y = np.full((N, T), np.nan)
    Y[i, j] = d[y].to_numpy(float)
    Wa = np.zeros((N, T, len(w)))
    Wa[i, j] = d[w].to_numpy(float)
    Ua = d[u].to_numpy(float)
    first = np.r_[0, np.nonzero(np.diff(i))[0] + 1]
    U0 = Ua[first]
    if len(u) and not np.allclose(Ua, U0[i]):
        varying = [c for k, c in enumerate(u) if not np.allclose(Ua[:, k], U0[i, k])]
        raise ValueError(
            f"membership covariates {varying} change over time within subjects; membership "
            "covariates must be subject-level: use each subject's first value, e.g. for a column "
            f"c, df[c + '_0'] = df.groupby({subject!r})[c].transform('first')"
        )
    return Panel(Y, Wa, U0.reshape(N, len(u)), tuple(w), tuple(u), subj, tt, check=check)
