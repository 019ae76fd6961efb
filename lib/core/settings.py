"""Notebook parameters (the `parameters` cell's names, annotations, defaults) and typed values.

Profile values are checked against a notebook's annotations; command-line text is parsed by a
config field's type.
"""

from __future__ import annotations

import ast
import json
import math
import types
import typing
from pathlib import Path
from typing import Any


def parameters_cell(nb_path: str | Path) -> str:
    """Source of the cell tagged `parameters` in a notebook file."""
    nb = json.loads(Path(nb_path).read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            src = cell["source"]
            return "".join(src) if isinstance(src, list) else src
    raise ValueError(
        f"{nb_path}: no cell tagged 'parameters'; tag the first code cell 'parameters'"
    )


def notebook_parameters(nb_path: str | Path) -> dict[str, Any]:
    """Parameter names and default values (literals only) declared in a notebook."""
    tree = ast.parse(parameters_cell(nb_path))
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = ast.literal_eval(node.value) if node.value is not None else None
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = ast.literal_eval(node.value)
    return out


def notebook_annotations(nb_path: str | Path) -> dict[str, str]:
    """Parameter names and their annotations as written (`int`, `list`, ...); '' when unannotated."""
    tree = ast.parse(parameters_cell(nb_path))
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = ast.unparse(node.annotation)
        elif isinstance(node, ast.Assign):
            out.update({t.id: "" for t in node.targets if isinstance(t, ast.Name)})
    return out


# Annotations a profile value is checked against; others (and unannotated names) pass unchecked.
_KINDS: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "list": (list, tuple),
    "tuple": (list, tuple),
    "dict": (dict,),
}
_EXAMPLES = {
    "bool": "true or false",
    "int": "a whole number such as 3",
    "float": "a number such as 0.5",
    "str": "text, quoted if it looks like a number",
    "list": "a list such as [1, 2]",
    "tuple": "a list such as [1, 2]",
    "dict": "a mapping such as {a: 1}",
}


def check_value(name: str, value: Any, annotation: str, owner: str = "the notebook") -> Any:
    """`value` checked against a parameter's annotation (ints pass as floats); TypeError names the fix.

    `owner` is who declares the annotation in the message (a notebook, or a config class such as
    TrainConfig, whose `from_params` checks its overrides here too).
    """
    kinds = [k.strip() for k in annotation.split("|")]
    if value is None and "None" in kinds:
        return None
    known = [k for k in kinds if k in _KINDS]
    if not known:
        return value
    for k in known:
        # bool is a subclass of int: `true` for an int parameter is a mistake, not 1
        if isinstance(value, _KINDS[k]) and not (isinstance(value, bool) and k != "bool"):
            return float(value) if k == "float" else value
    hint = ""
    if isinstance(value, str) and "float" in known:
        try:
            float(value)
            hint = f" (YAML reads {value} as text: write it with a decimal point, e.g. 1.0e-3, or as 0.001)"
        except ValueError:
            pass
    raise TypeError(
        f"{name} = {value!r} is {type(value).__name__}, but {owner} declares "
        f"{name}: {annotation}; give {' or '.join(_EXAMPLES[k] for k in known)}{hint}"
    )


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _scalar(text: str, kind: type) -> Any:
    """One command-line word as a bool, int, float or str (ValueError when it is none of that type)."""
    t = text.strip()
    if kind is bool:
        if t.lower() in _TRUE | _FALSE:
            return t.lower() in _TRUE
        raise ValueError("not a bool: write true or false")
    if kind is int:
        return int(t)  # '1.5' and '1e3' are refused rather than truncated
    if kind is float:
        v = float(t)
        if not math.isfinite(v):
            raise ValueError("not a finite number")
        return v
    if kind is str:
        if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
            return ast.literal_eval(t)  # method='prl' as written for the shell, quotes and all
        return text
    raise ValueError(f"settings of type {kind.__name__} cannot be given on the command line")


def parse_setting(name: str, text: str, hint: Any) -> Any:
    """Command-line text parsed by the type `hint` of a config field (bool, int, float, str, list/tuple, X | None).

    Anything that does not parse as that type is a ValueError naming the setting and an example,
    so `flip=false` is False and `epochs=ten` an error (never the string 'false', which is truthy).
    """
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null"):
            return None
        hint = args[0]
        args = list(typing.get_args(hint))
    origin = typing.get_origin(hint) or hint
    try:
        if origin in (list, tuple):
            elem = args[0] if args else str
            try:
                items = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                items = [w for w in text.split(",") if w.strip()]  # 80,90 as well as [80, 90]
            if not isinstance(items, (list, tuple)):
                items = [items]
            if elem is not bool and any(isinstance(v, bool) for v in items):
                raise ValueError(f"True/False inside a list of {elem.__name__}")
            out = [_scalar(str(v), elem) for v in items]
            return tuple(out) if origin is tuple else out
        return _scalar(text, origin)
    except ValueError as e:
        example = {bool: "false", int: "10", float: "0.1", str: "text"}.get(origin, "[80, 90]")
        tname = hint.__name__ if isinstance(hint, type) else str(hint)
        raise ValueError(
            f"{name}={text!r} does not parse as {tname} ({e}); write e.g. {name}={example}"
        ) from None


def given(**settings: Any) -> dict[str, Any]:
    """The settings that are not None: a notebook's None means "lib's default", so it is left out."""
    return {k: v for k, v in settings.items() if v is not None}
