"""Read a notebook's `parameters` cell: the names, annotations and defaults it declares."""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any


def parameters_cell(nb_path: str | Path) -> str:
    """Source of the cell tagged `parameters` in a notebook file."""
    nb = json.loads(Path(nb_path).read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            src = cell["source"]
            return "".join(src) if isinstance(src, list) else src
    raise ValueError(f"{nb_path}: no cell tagged 'parameters'; tag the first code cell 'parameters'")


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
