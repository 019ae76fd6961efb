"""Notebooks in a real browser: JupyterLab in headless Chromium, driven by playwright.

What a user does after `make run`: start JupyterLab, open a notebook, Run All. Here JupyterLab
serves copies of notebooks 01, 02 and 04 whose only change is the `run_dir` default
(runs/browser/interactive instead of runs/interactive, so the test leaves a user's interactive
runs alone and starts without any); everything else, notebook 04's `checkpoints_from = "auto"`
included, is the committed notebook. Notebook 04 thus has to find notebook 03's checkpoint
itself: the newest finished smoke run (tests/test_notebooks.py's runs/test-smoke when the whole
suite runs, since browser tests are ordered last; this test runs notebook 03 there itself when it
is missing). Then a preference slider is moved: the accuracies it shows must change, and the
moment the table shows the new preference the figure's title (kept in its PNG's Title text)
must show the same one, never the previous move's.

Needs the `playwright` Python package and a system Chromium (Debian's `chromium`, which
.ci/run installs); playwright's own browser download is never used. Skipped when either is
missing. Screenshots go to runs/browser/.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lib.core.lookup import find_finished
from lib.core.paths import RUNS
from lib.run import load_profile, run_notebook

pytestmark = pytest.mark.browser

OUT = RUNS / "browser"  # screenshots, notebook copies and their runs
LAB_RUN_DIR = "runs/browser/interactive"
NOTEBOOKS_RUN = ["01_data", "02_experts", "04_agnostic_evaluation"]
CELL_TIMEOUT_S = 300  # one notebook's Run All; the smoke-sized notebooks take well under a minute


def chromium_path() -> str | None:
    """The system Chromium: $CHROMIUM when set, else chromium / chromium-browser on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def notebook_copy(src: Path, dst: Path) -> Path:
    """`src` with its parameters cell's run_dir default set to LAB_RUN_DIR (nothing else changed)."""
    nb = json.loads(src.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    text = "".join(cell["source"])
    new, n = re.subn(
        r'^run_dir: str = "runs/interactive"',
        f'run_dir: str = "{LAB_RUN_DIR}"',
        text,
        flags=re.MULTILINE,
    )
    assert n == 1, f"{src.name}: no run_dir default to redirect"
    cell["source"] = new.splitlines(keepends=True)
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return dst


def lab_settings(settings_dir: Path) -> None:
    """User settings of the test's JupyterLab: every cell in the DOM, no news or update checks."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for rel, value in files.items():
        (settings_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings_dir / rel).write_text(json.dumps(value))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 (free port, token, temporary config/runtime/settings dirs, no browser
    of its own) serving the notebook copies, and a headless Chromium page; yields (page, url, token, root)."""
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="the playwright package is not installed "
        "(.venv/bin/pip install -r env/requirements-browser.txt)",
    )
    shutil.rmtree(OUT / "lab", ignore_errors=True)
    shutil.rmtree(OUT / "interactive", ignore_errors=True)
    root = OUT / "lab"
    root.mkdir(parents=True)
    from lib.core.paths import NOTEBOOKS

    for nb in NOTEBOOKS_RUN:
        notebook_copy(NOTEBOOKS / f"{nb}.ipynb", root / f"{nb}.ipynb")
    tmp = tmp_path_factory.mktemp("jupyter")
    lab_settings(tmp / "settings")
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
    }
    port, token = free_port(), os.urandom(16).hex()
    log = open(OUT / "jupyterlab.log", "w")  # noqa: SIM115  closed in the finally below, after the server
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"JupyterLab did not start; see {OUT / 'jupyterlab.log'}"
                    ) from None
                time.sleep(0.5)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(60_000)
            page.goto(
                f"{base}/lab?token={token}"
            )  # logs in (cookie); notebooks are opened by URL below
            page.wait_for_selector(".jp-LabShell", state="attached")
            yield page, base, token, root
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def shut_down_kernels(base: str, token: str) -> None:
    """End every session (and kernel) of the server: each notebook starts on a quiet machine."""
    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(
        urllib.request.Request(f"{base}/api/sessions", headers=headers), timeout=10
    ) as r:
        sessions = json.load(r)
    for sess in sessions:
        req = urllib.request.Request(
            f"{base}/api/sessions/{sess['id']}", headers=headers, method="DELETE"
        )
        urllib.request.urlopen(req, timeout=30).close()


def open_notebook(page, base: str, name: str) -> None:
    """Open `name`.ipynb in a workspace of its own (so it is the only open document) and wait for an idle kernel."""
    page.goto(f"{base}/lab/workspaces/{name}/tree/{name}.ipynb")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", state="attached")
    # the status bar names the kernel once connected ("Python (workbook) | Idle"); the toolbar's
    # indicator already says idle while there is no kernel yet, and Run All then runs nothing
    page.wait_for_function(
        r"""() => {
        const s = document.querySelector('#jp-main-statusbar');
        return s && /\| Idle/.test(s.innerText) && !/No Kernel/.test(s.innerText);
    }""",
        timeout=120_000,
    )


def run_all(page, name: str) -> None:
    """Run > Run All Cells, then wait until the last cell has run or a cell failed (screenshot if neither)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    try:
        page.wait_for_function(
            r"""() => {
            const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
                .map(p => p.textContent.trim());
            if (!prompts.length || prompts.some(p => p.includes('*'))) return false;
            const err = [...document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
                .some(e => /Error|Traceback/.test(e.textContent));
            return err || /\[\d+\]/.test(prompts[prompts.length - 1]);
        }""",
            timeout=CELL_TIMEOUT_S * 1000,
        )
    except Exception:
        page.screenshot(path=str(OUT / f"{name}-timeout.png"))
        raise


def saved_cells(page, path: Path) -> list[dict]:
    """Save the open notebook (Ctrl+S) and return its code cells as written to disk."""
    before = path.stat().st_mtime_ns
    page.locator(".jp-NotebookPanel .jp-Notebook").click(position={"x": 5, "y": 5})
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        time.sleep(0.2)
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def check_ran_clean(name: str, cells: list[dict]) -> None:
    """Every code cell ran (execution count) and none holds an error output."""
    for i, c in enumerate(cells):
        errors = [o for o in c.get("outputs", []) if o["output_type"] == "error"]
        assert not errors, (
            f"{name}: code cell {i} failed: {errors[0]['ename']}: {errors[0]['evalue']}"
        )
    not_run = [i for i, c in enumerate(cells) if not c.get("execution_count")]
    assert not not_run, f"{name}: code cells {not_run} did not run"


def text_of(cell: dict) -> str:
    return "".join(
        "".join(o.get("text", "")) for o in cell.get("outputs", []) if o["output_type"] == "stream"
    )


@pytest.fixture(scope="module")
def smoke_checkpoint(smoke_dir) -> Path:
    """Notebook 03's smoke checkpoint in runs/test-smoke: made by tests/test_notebooks.py when the
    whole suite runs (this module runs last), else trained here (smoke profile, under a minute)."""
    nb = "03_training"
    if not (smoke_dir / nb / "checkpoints" / "last.pt").exists():
        run_notebook(
            nb, {"run_dir": str(smoke_dir), **load_profile("smoke").get(nb, {})}, smoke_dir
        )
    return smoke_dir / nb / "checkpoints" / "last.pt"


def slider_state(page) -> tuple[str, str]:
    """(the accuracy table's text, the plotted figure's PNG data) of notebook 04's slider view."""
    view = page.locator(".workbook-sliders")
    text = view.locator(".workbook-slider-readout").inner_text()
    img = view.locator(".workbook-slider-plot img")
    return text, (img.first.get_attribute("src") if img.count() else "")


def png_title(src: str) -> str:
    """The title of the slider figure shown as a data: URL (lib/longtail/evaluate/sliders.py,
    report_png, stores it in the PNG's Title text); '' when there is none."""
    from PIL import Image

    if not src.startswith("data:image/png;base64,"):
        return ""
    with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
        return im.text.get("Title", "")


def shown_pref(text: str) -> str:
    """The `(0.00, 0.25, 0.75)` preference in the table's last row or the figure's title."""
    m = re.search(r"\(\d\.\d\d(?:, \d\.\d\d)*\)", text.splitlines()[-1] if text else "")
    return m.group(0) if m else ""


def accuracies(readout: str) -> list[float]:
    """top1, many, medium, few from the slider table's text (its last row, after the r column)."""
    return [float(x) for x in re.findall(r"\d+\.\d", readout.splitlines()[-1].split(")")[-1])]


def test_notebook_04_runs_and_sliders_redraw(lab, smoke_checkpoint):
    page, base, token, root = lab
    shut_down_kernels(base, token)
    t0 = time.monotonic()
    open_notebook(page, base, "04_agnostic_evaluation")
    run_all(page, "04_agnostic_evaluation")
    cells = saved_cells(page, root / "04_agnostic_evaluation.ipynb")
    check_ran_clean("04_agnostic_evaluation", cells)
    # the checkpoint it found and said it used: the newest finished 03_training run (no runs of its own)
    expected = find_finished("03_training", "checkpoints/last.pt", LAB_RUN_DIR, "auto")
    said = text_of(cells[1])
    assert f"checkpoint of 03_training: {expected.how.split(': ', 1)[1]}" in said, said
    view = page.locator(".workbook-sliders")
    view.scroll_into_view_if_needed()
    sliders = view.locator(".widget-slider")
    assert sliders.count() == 3, "one slider per expert"
    page.wait_for_function("() => document.querySelector('.workbook-slider-plot img') !== null")
    before_text, before_img = slider_state(page)
    assert "(0.33, 0.33, 0.33)" in before_text and len(accuracies(before_text)) == 4, before_text
    assert shown_pref(png_title(before_img)) == shown_pref(before_text), png_title(before_img)
    page.screenshot(path=str(OUT / "04_sliders_before.png"))
    # all weight on the backward (last) expert with the keyboard (a handle takes focus): a milder
    # move can leave every prediction of a weak smoke model, and so the table, unchanged
    for i, key in (
        (sliders.count() - 1, "End"),
        *((j, "Home") for j in range(sliders.count() - 1)),
    ):
        sliders.nth(i).locator(".noUi-handle").focus()
        page.keyboard.press(key)
    values = [
        float(sliders.nth(i).locator(".widget-readout").inner_text())
        for i in range(sliders.count())
    ]
    assert values == [0.0] * (len(values) - 1) + [1.0], values
    r = (
        "(" + ", ".join(f"{v / sum(values):.2f}" for v in values) + ")"
    )  # what the kernel must now show
    # the table and the figure read in one go, the first moment the table shows r: a figure drawn
    # after the table (once still titled r = (0.00, 0.25, 0.75), the previous move) fails here
    shown = page.wait_for_function(
        r"""(r) => {
        const t = document.querySelector('.workbook-slider-readout');
        if (!t || !t.innerText.includes(r)) return false;
        const img = document.querySelector('.workbook-slider-plot img');
        return {table: t.innerText, src: img ? img.getAttribute('src') : ''};
    }""",
        arg=r,
        timeout=30_000,
    ).json_value()
    title = png_title(shown["src"])
    assert shown_pref(shown["table"]) == r and shown_pref(title) == r, (
        f"the figure lags the table: table {shown['table'].splitlines()[-1]!r}, figure title {title!r}"
    )
    after_text, after_img = slider_state(page)
    assert after_img != before_img, "the figure was not redrawn"
    assert len(accuracies(after_text)) == 4, after_text
    assert accuracies(after_text) != accuracies(before_text), (before_text, after_text)
    errors = view.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    assert errors.count() == 0, errors.first.inner_text()
    view.scroll_into_view_if_needed()
    page.screenshot(path=str(OUT / "04_sliders_after.png"))
    print(
        f"notebook 04 in the browser: {time.monotonic() - t0:.0f} s; slider moved: "
        f"{before_text.splitlines()[-1]!r} -> {after_text.splitlines()[-1]!r}"
    )


@pytest.mark.parametrize("name", ["01_data", "02_experts"])
def test_notebook_runs_in_the_browser(lab, name):
    page, base, token, root = lab
    shut_down_kernels(base, token)
    t0 = time.monotonic()
    open_notebook(page, base, name)
    run_all(page, name)
    check_ran_clean(name, saved_cells(page, root / f"{name}.ipynb"))
    page.screenshot(path=str(OUT / f"{name}.png"))
    print(f"notebook {name} in the browser: {time.monotonic() - t0:.0f} s")
