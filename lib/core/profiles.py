"""Parameter profiles (`env/profiles/<name>.yaml`): reading them and checking them against the notebooks.

A bottom-layer module (docs/index.md, "Layers"): `lib.run` (the top) runs the notebooks with a
profile, and the NMR command line (`python -m lib.nmr train --profile cpu`) reads the same
profile, so both take it from here (`lib.run` re-exports these names).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .paths import NOTEBOOKS, PROFILES
from .settings import check_value, notebook_annotations, notebook_parameters

# A profile name is one folder name under runs/: no separators, no leading dot.
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ProfileYAMLError(yaml.YAMLError):
    """A profile construct refused by `strict_yaml_load` (an alias, an anchor, a repeated key)."""

    def __init__(self, mark: yaml.Mark, message: str):
        super().__init__(f"line {mark.line + 1}, column {mark.column + 1}: {message}")


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases, and with repeated keys refused.

    An alias can expand to billions of items (nine aliases of nine aliases ... is 9^8 items from a
    few hundred bytes), and a repeated key silently keeps the last value.
    """

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ProfileYAMLError(
                event.start_mark,
                "YAML anchors and aliases (&name, *name, <<: *name) are not allowed here (an alias "
                "can expand to millions of values); write each value out",
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # an unhashable key is the base loader's error
            key = self.construct_object(key_node)
            if key in seen:
                raise ProfileYAMLError(
                    key_node.start_mark,
                    f"duplicate key {key!r} (first on line {seen[key]}); YAML would keep only the "
                    "last value silently: keep one of them",
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def strict_yaml_load(text: str) -> Any:
    """YAML text read by `StrictLoader`: plain values, no aliases, no repeated keys."""
    return yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass: plain data only


def list_notebooks(nb_dir: Path = NOTEBOOKS) -> list[str]:
    """Notebook names (without .ipynb) in run order."""
    return sorted(p.stem for p in nb_dir.glob("[0-9][0-9]_*.ipynb"))


def list_profiles(profile_dir: Path = PROFILES) -> list[str]:
    """Names of the available profiles."""
    return sorted(p.stem for p in profile_dir.glob("*.yaml"))


def check_profile_name(name: str, profile_dir: Path = PROFILES) -> str:
    """`name` if it is a plain profile name; a path (`../x`, `a/b`) is an error naming --profile-file."""
    if not PROFILE_NAME.fullmatch(name) or ".." in name:
        raise SystemExit(
            f"{name!r} is not a profile name (letters, digits, '_', '-', '.'; no path); known "
            f"profiles: {', '.join(list_profiles(profile_dir))}. To use a file elsewhere pass "
            "--profile-file PATH"
        )
    return name


def read_profile_file(path: Path, nb_dir: Path = NOTEBOOKS) -> dict[str, dict[str, Any]]:
    """Parameter overrides per notebook from one YAML file; names and types are checked against the notebooks."""
    try:
        raw = strict_yaml_load(path.read_text()) or {}
    except ProfileYAMLError as e:
        raise SystemExit(f"{path}: {e}") from None
    except RecursionError:
        raise SystemExit(
            f"{path}: nested too deeply to read; a profile maps notebooks to 'parameter: value' lines"
        ) from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise SystemExit(
            f"{path}: not valid YAML{at} ({getattr(e, 'problem', None) or e}); fix the syntax "
            "(one 'notebook:' mapping of 'parameter: value' lines, indented by two spaces)"
        ) from None
    if not isinstance(raw, dict):
        raise SystemExit(f"{path}: expected a mapping notebook -> {{parameter: value}}")
    notebooks = list_notebooks(nb_dir)
    profile: dict[str, dict[str, Any]] = {}
    for nb, overrides in raw.items():
        if nb not in notebooks:
            raise SystemExit(
                f"{path}: unknown notebook {nb!r}; known notebooks: {', '.join(notebooks)}"
            )
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise SystemExit(f"{path}: {nb} must map parameter names to values, got {overrides!r}")
        known = notebook_parameters(nb_dir / f"{nb}.ipynb")
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise SystemExit(
                f"{path}: notebook {nb} has no parameter(s) {unknown}; "
                f"its parameters are: {', '.join(known)}"
            )
        if "run_dir" in overrides:
            raise SystemExit(
                f"{path}: {nb} sets run_dir; lib.run writes to runs/<profile> (or --out), "
                "so remove run_dir from the profile"
            )
        annotations = notebook_annotations(nb_dir / f"{nb}.ipynb")
        try:
            profile[nb] = {
                k: check_value(k, v, annotations.get(k, "")) for k, v in overrides.items()
            }
        except TypeError as e:
            raise SystemExit(f"{path}: notebook {nb}: {e}") from None
    return profile


def load_profile(
    name: str, profile_dir: Path = PROFILES, nb_dir: Path = NOTEBOOKS
) -> dict[str, dict[str, Any]]:
    """Parameter overrides per notebook of profile `name`; unknown profiles, notebooks, parameters or types are errors."""
    path = profile_dir / f"{check_profile_name(name, profile_dir)}.yaml"
    if not path.exists():
        raise SystemExit(
            f"unknown profile {name!r}; known profiles: {', '.join(list_profiles(profile_dir))} "
            f"(files in {profile_dir})"
        )
    return read_profile_file(path, nb_dir)
