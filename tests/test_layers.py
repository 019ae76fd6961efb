"""Imports inside `lib` run one way: a module imports only from its own layer's shared pieces,
its own package, or a lower layer (the layer map of docs/index.md, "Layers").

Every module of `lib` is parsed with `ast`, so imports inside functions (the usual way to
hide a cycle) count as much as those at the top, and so do `importlib.import_module("lib...")`
calls with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"

# Bottom to top. Units in one layer are independent: none imports another of the same layer,
# except in the bottom layer, whose shared modules may use each other (runs uses io, ...).
# The top level: three topic packages over one shared core; lib.run drives the notebooks.
LAYERS: list[list[str]] = [
    ["lib", "lib.core"],
    ["lib.longtail", "lib.nmr", "lib.em"],
    ["lib.run"],
]
# Inside a topic package the same rule, one level down: a unit listed here is a layer of its
# own map; modules of the topic that are not listed belong to the topic's bottom unit.
TOPIC_LAYERS: dict[str, list[list[str]]] = {
    "lib.longtail": [
        ["lib.longtail", "lib.longtail.accuracy", "lib.longtail.data", "lib.longtail.models"],
        ["lib.longtail.train"],
        ["lib.longtail.evaluate"],
    ],
}
SHARED = 0  # the layer whose units may import one another


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(LIB.rglob("*.py"))}


def unit_of(module: str, layers: list[list[str]] | None = None) -> str:
    """The layer unit a module belongs to: the longest listed name that is the module or a package above it."""
    layers = LAYERS if layers is None else layers
    best = None
    for layer in layers:
        for unit in layer:
            if (module == unit or module.startswith(unit + ".")) and (
                best is None or len(unit) > len(best)
            ):
                best = unit
    assert best is not None, f"{module} is in no layer"
    # `lib` itself is a unit only for the package's own __init__; a new top-level module has to be placed.
    assert best != "lib" or module == "lib", (
        f"{module} is not in the layer map of tests/test_layers.py; add it to a layer (and to docs/index.md)"
    )
    return best


def layer_of(unit: str, layers: list[list[str]] | None = None) -> int:
    layers = LAYERS if layers is None else layers
    return next(i for i, layer in enumerate(layers) if unit in layer)


def imported(path: Path, module: str, known: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, module) for every import of a `lib` module in the file, wherever it stands."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "lib"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "lib":
                continue
            for a in node.names:  # `from lib import run` imports the module lib.run
                sub = f"{target}.{a.name}"
                out.append((node.lineno, sub if sub in known else target))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Attribute, ast.Name))
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.split(".")[0] == "lib"
        ):
            out.append((node.lineno, node.args[0].value))
    return out


def _check(module, path, line, target, layers, bad) -> None:
    src, dst = unit_of(module, layers), unit_of(target, layers)
    if dst == src:
        return
    ls, ld = layer_of(src, layers), layer_of(dst, layers)
    if ld > ls or (ld == ls and ls != SHARED):
        where = f"{path.relative_to(LIB.parent)}:{line}"
        kind = "upward" if ld > ls else "sideways"
        bad.append(
            f"{where}: {module} (layer {ls}, {src}) imports {target} (layer {ld}, {dst}): {kind}"
        )


def violations() -> list[str]:
    known = all_modules()
    bad: list[str] = []
    for module, path in known.items():
        for line, target in imported(path, module, known):
            _check(module, path, line, target, LAYERS, bad)
            for topic, layers in TOPIC_LAYERS.items():
                inside = (module + ".").startswith(topic + ".") and (target + ".").startswith(
                    topic + "."
                )
                if inside:
                    _check(module, path, line, target, layers, bad)
    return bad


def test_every_module_is_placed():
    for module in all_modules():
        unit_of(module)


def test_imports_run_one_way():
    bad = violations()
    assert not bad, (
        "imports against the layer order (docs/index.md, 'Layers'); move the shared piece "
        "to a lower layer instead:\n" + "\n".join(bad)
    )


@pytest.mark.parametrize(
    "code, message",
    [
        ("def f():\n    from ..evaluate.bank import build_bank\n", "upward"),
        ("import lib.run\n", "upward"),
        ("from lib import nmr\n", "sideways"),
        ("import importlib\nimportlib.import_module('lib.longtail.evaluate')\n", "upward"),
    ],
)
def test_the_walk_sees_hidden_imports(tmp_path, monkeypatch, code, message):
    """The checker itself: an import inside a function, of a package by name, or by importlib is found."""
    fake = tmp_path / "lib"
    for unit in ("longtail", "longtail/train", "longtail/evaluate", "nmr", "core"):
        (fake / unit).mkdir(parents=True)
        (fake / unit / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "run.py").write_text("")
    (fake / "longtail" / "train" / "loop.py").write_text(code)
    monkeypatch.setitem(globals(), "LIB", fake)
    bad = violations()
    assert len(bad) == 1 and "lib/longtail/train/loop.py" in bad[0] and message in bad[0], bad


def test_topics_stand_on_the_core_alone(tmp_path, monkeypatch):
    """A topic importing another topic is sideways; the core importing a topic is upward."""
    fake = tmp_path / "lib"
    for unit in ("longtail", "nmr", "em", "core"):
        (fake / unit).mkdir(parents=True)
        (fake / unit / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "em" / "fit.py").write_text("from ..nmr import simulate\n")
    (fake / "core" / "io.py").write_text("from ..em import fit\n")
    monkeypatch.setitem(globals(), "LIB", fake)
    bad = sorted(violations())
    assert len(bad) == 2 and "core/io.py" in bad[0] and "upward" in bad[0], bad
    assert "em/fit.py" in bad[1] and "sideways" in bad[1], bad


def test_no_two_public_names_mean_different_things():
    """A public class or function is defined in one module of lib only (entry points `main` aside)."""
    where: dict[str, list[str]] = {}
    for module, path in all_modules().items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_"):
                where.setdefault(node.name, []).append(module)
    twice = {n: m for n, m in where.items() if len(m) > 1 and n != "main"}
    assert not twice, f"public names defined in several modules (rename one): {twice}"


def test_no_two_modules_share_a_name_across_topics():
    """Module file names are unique in lib, but for the package markers and entry points."""
    seen: dict[str, list[str]] = {}
    for module, path in all_modules().items():
        if path.name not in ("__init__.py", "__main__.py"):
            seen.setdefault(path.stem, []).append(module)
    # one concern of the same kind in each topic that has it: its trainer, its settings, its
    # simulator, its training losses
    same_concern = {"train", "config", "simulate", "losses"}
    twice = {n: m for n, m in seen.items() if len(m) > 1 and n not in same_concern}
    assert not twice, f"module names used twice in lib: {twice}"
