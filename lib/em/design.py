"""Design matrices of the mixed model from a data frame, the way R users write them.

`fixed` and `membership` are column lists or right-hand-side formulas read by formulaic
("exper + I(exper**2)", "C(sector)", "C(Diet, contr.treatment('2'))"). Text, pandas
categorical and boolean columns are categories, coded against a reference level (treatment
coding: the first level unless the formula names another), since the model has its own
intercepts (the class means and the logit intercepts): a formula's intercept, or its removal
by "- 1", changes nothing. The encoding learned from the fitted data is kept, so new subjects
are coded the same way and an unseen level is an error rather than a silent reference.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FORMULA_HELP = (
    "write column names joined by +, e.g. 'exper + I(exper**2)'; a category as 'C(sector)' "
    "(coded against its first level) or C(sector, contr.treatment('7')) for reference level '7'"
)


def _quote(col: str) -> str:
    """A column name as a formula term (backticks around names that are not identifiers)."""
    return col if col.isidentifier() else f"`{col}`"


def _is_text(s: pd.Series) -> bool:
    return s.dtype == object or isinstance(s.dtype, pd.StringDtype)


def _numeric_text(s: pd.Series) -> bool:
    """Text whose every value reads as a number (numbers stored as text, e.g. from a CSV)."""
    v = s.dropna()
    return (
        len(v) > 0
        and v.map(lambda x: isinstance(x, str)).all()
        and pd.to_numeric(v, errors="coerce").notna().all()
    )


def _in_c(col: str, rhs: str) -> bool:
    """Whether the formula wraps `col` in C(...), declaring it a category."""
    return re.search(rf"C\(\s*`?{re.escape(col)}`?\s*[,)]", rhs) is not None


def _prepared(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """The used columns as formulaic reads categories: text as object, booleans as two levels."""
    out = df[cols].copy()
    for c in cols:
        if isinstance(out[c].dtype, pd.StringDtype):
            out[c] = out[c].astype(object).where(out[c].notna(), None)
        elif pd.api.types.is_bool_dtype(out[c]):
            out[c] = pd.Categorical(out[c], categories=[False, True])
    return out


def _reference(state: dict) -> tuple[str, tuple]:
    """The reference level (or the coding) and the levels of one categorical factor."""
    from formulaic.utils.sentinels import UNSET

    contrasts = state.get("contrasts")
    levels = tuple(getattr(contrasts, "levels", None) or state.get("categories", ()))
    coding = getattr(contrasts, "contrasts", None)
    if coding is None or type(coding).__name__ == "TreatmentContrasts":
        base = getattr(coding, "base", UNSET)
        return repr(levels[0] if base is UNSET and levels else base), levels
    return f"{type(coding).__name__} coding", levels


@dataclass(frozen=True)
class Design:
    """The columns one part of the model uses, and how to code new data the same way."""

    what: str  # "fixed" or "membership"
    rhs: str  # the formula read ("" for none)
    names: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # data columns the formula reads
    references: dict[str, str] = field(default_factory=dict)  # categorical term -> reference
    levels: dict[str, tuple] = field(default_factory=dict)  # categorical column -> fitted levels
    rename: dict[str, str] = field(default_factory=dict)  # "C(Diet, ...)[T.2]" -> "Diet[T.2]"
    spec: object | None = field(default=None, compare=False, repr=False)

    def matrix(self, df: pd.DataFrame) -> pd.DataFrame:
        """The design columns of (new) data: NaN where a source value is missing; unseen levels refused."""
        if not self.names:
            return pd.DataFrame(index=df.index)
        missing = [c for c in self.sources if c not in df.columns]
        if missing:
            raise KeyError(
                f"{self.what} columns {missing} not in the data (has {list(df.columns)})"
            )
        for col, levels in self.levels.items():
            seen = {str(v) for v in levels}
            new = [
                getattr(v, "item", lambda v=v: v)()
                for v in pd.unique(df[col].dropna())
                if str(v) not in seen
            ]
            if new:
                raise ValueError(
                    f"{self.what} column {col!r} has levels {new[:5]} that the fitted data did not "
                    f"have (it had {list(levels)}); the model has no coefficient for them: map "
                    "them to a fitted level or drop those subjects"
                )
        return self._encode(_prepared(df, list(self.sources)), self.spec)

    def _encode(self, d: pd.DataFrame, spec) -> pd.DataFrame:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # unseen levels were refused above; missing ones are masked
            mm = spec.get_model_matrix(d, na_action="ignore")
        out = pd.DataFrame(np.asarray(mm, float), columns=list(mm.columns), index=d.index)
        out = out.drop(columns="Intercept", errors="ignore").rename(columns=self.rename)
        out[d.isna().any(axis=1).to_numpy()] = (
            np.nan
        )  # a missing category must not read as its reference
        return out


def design_from(df: pd.DataFrame, terms: list[str] | str, what: str) -> tuple[Design, pd.DataFrame]:
    """The Design of `terms` (column names or a right-hand-side formula) and its columns for `df`."""
    if isinstance(terms, str):
        rhs = terms.split("~")[-1].strip()
    else:
        terms = list(terms)
        missing = [c for c in terms if c not in df.columns]
        if missing:
            raise KeyError(f"{what} columns {missing} not in the data (has {list(df.columns)})")
        rhs = " + ".join(_quote(c) for c in terms)
    if not rhs or rhs in ("0", "1", "-1", "0 + 1", "1 + 0"):
        return Design(what, ""), pd.DataFrame(index=df.index)
    from formulaic import model_matrix

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mm = model_matrix(f"1 + ({rhs})", df, na_action="ignore")
    except Exception as e:  # noqa: BLE001 - formulaic raises several types for a bad formula
        unknown = re.search(r"name '([^']+)' is not defined", str(e))
        if unknown:
            raise KeyError(
                f"{what}={terms!r} uses {unknown.group(1)!r}, which is not a column of the data "
                f"(has {list(df.columns)})"
            ) from None
        raise ValueError(
            f"{what}={terms!r} is not a formula formulaic can read ({e}); {FORMULA_HELP}"
        ) from None
    sources = sorted(set(mm.model_spec.variables_by_source.get("data", set())) & set(df.columns))
    for c in sources:
        if _is_text(df[c]) and _numeric_text(df[c]) and not _in_c(c, rhs):
            raise ValueError(
                f"{what} column {c!r} holds numbers stored as text (e.g. {df[c].dropna().iloc[0]!r}); "
                f"convert it with df[{c!r}] = pd.to_numeric(df[{c!r}]) to use it as a number, or "
                f"write {what}='C({c})' to use its values as categories"
            )
    d = _prepared(df, sources)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mm = model_matrix(f"1 + ({rhs})", d, na_action="ignore")
    spec = mm.model_spec
    refs, levels, prefix = {}, {}, {}
    for term, (kind, state) in spec.encoder_state.items():
        if getattr(kind, "value", kind) != "categorical":
            continue
        refs[term], lv = _reference(state)
        cols = [
            c
            for c in sources
            if c == term or re.search(rf"(?<![\w`]){re.escape(c)}(?![\w`])", term)
        ]
        for c in cols:
            levels[c] = lv
        if len(cols) == 1 and cols[0] != term:
            prefix[f"{term}["] = f"{cols[0]}["
    full = Design(what, rhs, (), tuple(sources), refs, levels, {}, spec)._encode(d, spec).columns
    short = [_shorten(n, prefix) for n in full]
    rename = dict(zip(full, short)) if len(set(short)) == len(short) else {}
    design = Design(what, rhs, (), tuple(sources), refs, levels, rename, spec)
    out = design._encode(d, spec)
    return Design(what, rhs, tuple(out.columns), tuple(sources), refs, levels, rename, spec), out


def _shorten(name: str, prefix: dict[str, str]) -> str:
    """A column name with each one-column categorical term written as its column name."""
    for long, short in prefix.items():
        name = name.replace(long, short)
    return name
