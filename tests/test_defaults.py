"""Each default lives once, in lib: a notebook's parameter cell overrides, it never restates.

A notebook parameter that names a field of a lib config is None ("lib's default") or a value
that differs from the field's default (an override); the same value written in both places is
a default written twice, and it goes stale the day lib's changes. lib never reads a notebook to
learn a default.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from lib.core.paths import NOTEBOOKS
from lib.core.settings import notebook_parameters
from lib.longtail.evaluate.testtime import StabilityConfig
from lib.longtail.models import ModelConfig
from lib.longtail.train import TrainConfig

LIB = Path(__file__).resolve().parents[1] / "lib"

# notebook -> (lib config, {notebook parameter: config field}); None maps every shared name
OWNERS: dict[str, list[tuple[type, dict[str, str] | None]]] = {
    "02_experts": [(ModelConfig, None)],
    "03_training": [(TrainConfig, None)],
    "04_agnostic_evaluation": [
        (StabilityConfig, {"tta_epochs": "epochs", "tta_lr": "lr", "min_weight": "min_weight"})
    ],
}


def field_default(cls: type, name: str):
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def restated(nb: str, owners) -> list[str]:
    """The parameters of notebook `nb` whose value equals the default of the field they set."""
    params = notebook_parameters(NOTEBOOKS / f"{nb}.ipynb")
    out = []
    for cls, names in owners:
        fields = {f.name for f in dataclasses.fields(cls)}
        pairs = names.items() if names is not None else ((n, n) for n in params if n in fields)
        for param, fld in pairs:
            value, default = params[param], field_default(cls, fld)
            if isinstance(default, tuple):
                default = list(default)
            if value is not None and value == default:
                out.append(f"{nb}: {param} = {value!r} restates {cls.__name__}.{fld}")
    return out


@pytest.mark.parametrize("nb", sorted(OWNERS))
def test_notebooks_override_and_never_restate_lib_defaults(nb):
    bad = restated(nb, OWNERS[nb])
    assert not bad, (
        "defaults written twice; write `name: type | None = None` (None: lib's default):\n"
        + "\n".join(bad)
    )


def test_the_check_sees_a_restated_default(tmp_path, monkeypatch):
    """The checker itself: a notebook that copies TrainConfig's momentum is caught."""
    import json

    cell = {
        "cell_type": "code",
        "metadata": {"tags": ["parameters"]},
        "source": "momentum: float = 0.9\nlr: float | None = None\nflip: bool = False\n",
    }
    (tmp_path / "03_training.ipynb").write_text(json.dumps({"cells": [cell]}))
    monkeypatch.setitem(globals(), "NOTEBOOKS", tmp_path)
    assert restated("03_training", OWNERS["03_training"]) == [
        "03_training: momentum = 0.9 restates TrainConfig.momentum"
    ]


def test_lib_never_reads_a_notebook_for_a_default():
    """Only the run machinery (names of parameters, profile type checks) opens notebooks."""
    allowed = {"core/settings.py", "core/profiles.py", "core/runs.py", "core/paths.py", "run.py"}
    readers = [
        str(p.relative_to(LIB))
        for p in LIB.rglob("*.py")
        if re.search(r"\bNOTEBOOKS\b|notebook_parameters|parameters_cell", p.read_text())
        and str(p.relative_to(LIB)) not in allowed
    ]
    assert not readers, f"lib modules that read notebooks: {readers}"
