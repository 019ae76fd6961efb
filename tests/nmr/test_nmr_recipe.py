"""Notebook 05's settings: one home per default (lib/nmr/recipe.py and the configs it builds),
the same Recipe from the notebook and the command line, and the shipped model's card matching
the cpu recipe."""

from __future__ import annotations

import ast
import json
from dataclasses import asdict
from types import SimpleNamespace

import pytest

from lib.core.paths import NOTEBOOKS
from lib.core.settings import notebook_annotations, notebook_parameters, parameters_cell
from lib.nmr.__main__ import train_params
from lib.nmr.modelfile import SHIPPED, net_config, read_card
from lib.nmr.recipe import (
    PARAMETER_NAMES,
    PARAMETERS,
    PRESETS,
    PROFILE_SECTION,
    Recipe,
    parameter_values,
    recipe,
    recipe_params,
    trained_sim,
)
from lib.run import list_profiles, load_profile

NB = NOTEBOOKS / f"{PROFILE_SECTION}.ipynb"


NOTEBOOK_LINE = "R = recipe(recipe_params(run.params))"


def notebook_recipe(profile: str) -> Recipe:
    """The Recipe notebook 05 builds under a profile: its declared defaults, the profile's values
    injected after them (as papermill does), then the notebook's own line NOTEBOOK_LINE."""
    cells = json.loads(NB.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert NOTEBOOK_LINE in [ln for src in code for ln in src.splitlines()]
    params = {**notebook_parameters(NB), **load_profile(profile).get(PROFILE_SECTION, {})}
    run = SimpleNamespace(params=params)  # what start_run records
    return recipe(recipe_params(run.params))


@pytest.mark.parametrize("profile", list_profiles())
def test_notebook_and_command_line_build_the_same_recipe(profile):
    cli = recipe(recipe_params(train_params(profile, [])))  # python -m lib.nmr train --profile P
    assert notebook_recipe(profile) == cli


def test_the_shipped_model_is_the_cpu_recipe():
    """models/nmr_unet_cpu.pt (make nmr-model: train --profile cpu) was trained with what the cpu
    profile resolves to now: the settings moved, their values did not."""
    card = read_card(SHIPPED)
    R = recipe(recipe_params(train_params("cpu", [])))
    made = card["made_by"]
    assert net_config(card) == R.net
    assert trained_sim(card) == R.sim
    assert json.loads(json.dumps(asdict(R.train))) == made["train"]
    # cards record n_train; the shipped one, older, has it among the profile's values
    assert made.get("n_train", made.get("notebook_parameters", {}).get("n_train")) == R.n_train
    assert made["train"]["seed"] == R.seed


def test_notebook_writes_no_default_of_lib():
    """Every notebook-05 parameter that names a lib setting defaults to None (the preset's value):
    a number written there as well as in lib would be a second home for it."""
    defaults, ann = notebook_parameters(NB), notebook_annotations(NB)
    assert set(PARAMETER_NAMES) <= set(defaults), "notebook 05 lacks recipe parameters"
    for name in PARAMETER_NAMES:
        assert defaults[name] is None, f"notebook 05 restates {name} = {defaults[name]!r}"
        want = "str" if name == "preset" else PARAMETERS[name].annotation
        assert ann[name] == f"{want} | None", f"{name}: {ann[name]} in the notebook, {want} in lib"


def test_presets_name_parameters_and_change_something():
    for name, values in PRESETS.items():
        assert set(values) <= set(PARAMETERS), (
            f"preset {name}: unknown {set(values) - set(PARAMETERS)}"
        )
        assert recipe({"preset": name}) != Recipe(), name
    # a preset's value is the parameter's value; None keeps the preset's
    assert parameter_values(recipe({"preset": "cpu", "lr": None}))["lr"] == PRESETS["cpu"]["lr"]


def test_recipe_checks_names_types_and_presets():
    R = recipe({"preset": "cpu", "seed": 3, "lr": 1, "input_acqs": [1], "linewidth_min_hz": 1})
    assert R.seed == R.train.seed == 3
    assert R.train.lr == 1.0 and isinstance(R.train.lr, float)  # ints pass as floats
    assert R.train.input_acqs == (1,) and R.sim.linewidth_hz == (1.0, 5.0)
    assert recipe({}) == recipe({"preset": "smoke"}) == recipe({"preset": None})
    with pytest.raises(ValueError, match="unknown recipe parameter.*ablations"):
        recipe({"ablations": True})
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        recipe({"preset": "fast"})
    with pytest.raises(TypeError, match="base = 1.5 is float"):
        recipe({"base": 1.5})


def test_every_recipe_parameter_reaches_one_field():
    """Each parameter, set alone, changes the Recipe (its target exists and is read back)."""
    base = recipe({"preset": "cpu"})
    values = parameter_values(base)
    for name, prm in PARAMETERS.items():
        v = values[name]
        if prm.annotation == "list":
            new = [1]
        elif prm.annotation == "str":
            new = "cpu"
        elif name == "n_points":
            new = 4096  # a supported length
        else:
            new = v + 1 if prm.annotation == "int" else 2 * v or 0.5
        got = parameter_values(recipe({"preset": "cpu", name: new}))[name]
        assert got != v and got == (tuple(new) if isinstance(new, list) else new), name


def test_parameters_cell_stays_one_literal_per_line():
    tree = ast.parse(parameters_cell(NB))
    assert all(isinstance(n, ast.AnnAssign) for n in tree.body)
