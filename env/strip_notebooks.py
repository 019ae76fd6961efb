"""Strip outputs from notebooks so the committed ones hold only prose, parameters and code.

    .venv/bin/python env/strip_notebooks.py                 # notebooks/*.ipynb, in place
    .venv/bin/python env/strip_notebooks.py --check         # list unclean ones, exit 1 (CI, hook)
    .venv/bin/python env/strip_notebooks.py path/to/nb.ipynb

Removes outputs and execution counts, the run metadata papermill and JupyterLab add (cell
`execution`, `papermill`, `ExecuteTime`, `scrolled`, `collapsed`; notebook `papermill`,
`widgets`), keeps tags and ids, and writes the JSON the way the repository keeps it (indent 1,
UTF-8, final newline). Executed copies live in runs/, so nothing but outputs is removed; a file
is rewritten only when it changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CELL_KEYS = ("execution", "papermill", "ExecuteTime", "scrolled", "collapsed")
NOTEBOOK_KEYS = ("papermill", "widgets")


def stripped(nb: dict) -> dict:
    """The notebook without outputs, execution counts and run metadata."""
    out = {**nb, "metadata": {k: v for k, v in nb["metadata"].items() if k not in NOTEBOOK_KEYS}}
    cells = []
    for cell in nb["cells"]:
        c = {
            **cell,
            "metadata": {k: v for k, v in cell.get("metadata", {}).items() if k not in CELL_KEYS},
        }
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
        cells.append(c)
    out["cells"] = cells
    return out


def render(nb: dict) -> str:
    """The repository's notebook JSON."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if any is unclean")
    args = ap.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    unclean = []
    for p in paths:
        text = p.read_text(encoding="utf-8")
        try:
            clean = render(stripped(json.loads(text)))
        except (json.JSONDecodeError, KeyError) as e:
            print(f"{p}: not a notebook ({e}); fix or remove it", file=sys.stderr)
            return 2
        if clean != text:
            unclean.append(p)
            if not args.check:
                p.write_text(clean, encoding="utf-8")
    verb = "has outputs or run metadata" if args.check else "stripped"
    for p in unclean:
        print(f"{p}: {verb}")
    if args.check and unclean:
        print(
            "run `make strip` (or .venv/bin/python env/strip_notebooks.py) and commit again",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
