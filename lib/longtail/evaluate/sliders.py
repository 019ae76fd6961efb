"""Live preference sliders: move the preference vector, see per-class and shot-group accuracy.

Everything heavy is cached in a FeatureBank, so one move is a small matrix product plus a
redraw. `slider_view` returns the ipywidgets box; `preference_report` is the pure part. The
table and the figure of one move are made from one preference value, and the figure is sent
first, so the table never shows a preference the figure does not show yet.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from ..accuracy import accuracy_report, per_class_accuracy
from .bank import FeatureBank


def normalize_pref(values: list[float]) -> torch.Tensor:
    """Slider values (>= 0) -> a preference vector on the simplex (uniform if all are zero).

    NaN, infinite or negative values are errors, as for the model's own check, not clamped or
    replaced: a broken input must not show a plausible uniform-preference plot.
    """
    v = torch.as_tensor(values, dtype=torch.float32).flatten()
    if v.numel() == 0 or not torch.isfinite(v).all() or (v < 0).any():
        raise ValueError(
            f"slider values {v.tolist()} must be finite numbers >= 0, one per expert; "
            "set each slider between 0 and 1"
        )
    return v / v.sum() if float(v.sum()) > 0 else torch.full_like(v, 1.0 / len(v))


def preference_report(
    bank: FeatureBank, pref: torch.Tensor, idx: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, dict[str, float]]:
    """Per-class accuracy and the top-1 / many / medium / few report for `pref` on items `idx`."""
    pred = bank.scores(pref, idx=idx).argmax(1).numpy()
    y = bank.y[idx]
    return per_class_accuracy(pred, y, len(groups)), accuracy_report(pred, y, groups)


def draw_report(
    ax_cls, ax_grp, per_class: np.ndarray, report: dict[str, float], groups: np.ndarray, title: str
) -> None:
    """Bar plots of per-class accuracy (coloured by shot group) and of the group means."""
    colors = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}
    ax_cls.bar(
        np.arange(len(per_class)), 100 * np.nan_to_num(per_class), color=[colors[g] for g in groups]
    )
    ax_cls.set(
        ylim=(0, 100), xlabel="class (training head -> tail)", ylabel="accuracy (%)", title=title
    )
    keys = ["top1", "many", "medium", "few"]
    ax_grp.bar(keys, [report[k] for k in keys], color=["k", *colors.values()])
    for i, k in enumerate(keys):
        ax_grp.text(i, report[k] + 1, f"{report[k]:.1f}", ha="center", fontsize=9)
    ax_grp.set(ylim=(0, 105), ylabel="accuracy (%)", title="top-1 and shot groups")


def pref_text(pref: torch.Tensor) -> str:
    """A preference as the table and the figure title both show it: `(0.20, 0.20, 0.60)`."""
    return "(" + ", ".join(f"{x:.2f}" for x in pref.tolist()) + ")"


def report_title(dist: str, pref: torch.Tensor) -> str:
    """The slider figure's title: the test set and the preference."""
    return f"{dist}: r = {pref_text(pref)}"


def report_png(
    per_class: np.ndarray, report: dict[str, float], groups: np.ndarray, title: str
) -> bytes:
    """The slider figure as PNG bytes, its title also in the PNG's `Title` text (checkable by tests)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.4))  # not pyplot: no global figure to close, no backend involved
    a, b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    draw_report(a, b, per_class, report, groups, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Title": title})
    return buf.getvalue()


def report_html(dist: str, pref: torch.Tensor, report: dict[str, float]) -> str:
    """The slider's accuracies as a one-row HTML table (readable text beside the plot)."""
    keys = ["top1", "many", "medium", "few"]
    head = "".join(f"<th>{k}</th>" for k in ["test set", "r", *keys])
    row = "".join(
        f"<td>{v}</td>" for v in [dist, pref_text(pref), *(f"{report[k]:.1f}" for k in keys)]
    )
    style = "<style>.workbook-slider-table td, .workbook-slider-table th {padding: 0 0.8em}</style>"
    return f'{style}<table class="workbook-slider-table"><tr>{head}</tr><tr>{row}</tr></table>'


def slider_view(
    bank: FeatureBank,
    test_sets: dict[str, np.ndarray],
    groups: np.ndarray,
    dist: str,
    expert_names: list[str] | None = None,
):
    """An ipywidgets box: one slider per expert, a distribution picker, the accuracies as text and a live plot.

    Every move recomputes the report and redraws the figure inside the Output widget; an error
    while doing so is shown there (not only in the kernel's log), so a broken redraw is visible.
    """
    import ipywidgets as W
    from IPython.display import Image, display

    E = bank.model.num_experts
    names = expert_names or [f"expert {e}" for e in range(E)]
    # start on the step grid: a value between steps is rounded by the browser, which sends it back as a move
    sliders = [
        W.FloatSlider(
            value=round(1.0 / E, 2),
            min=0.0,
            max=1.0,
            step=0.01,
            description=n,
            continuous_update=True,
        )
        for n in names
    ]
    picker = W.Dropdown(options=list(test_sets), value=dist, description="test set")
    readout = W.HTML().add_class("workbook-slider-readout")
    out = W.Output().add_class("workbook-slider-plot")

    def redraw(*_):
        with out:  # exceptions raised in here are shown in the widget
            out.clear_output(wait=True)
            dist, pref = picker.value, normalize_pref([s.value for s in sliders])
            per_class, rep = preference_report(bank, pref, test_sets[dist], groups)
            png = report_png(per_class, rep, groups, report_title(dist, pref))
            # figure first, then the table: drawing takes a while, and a table updated before it
            # showed r = (0, 0, 1) beside a figure still titled with the previous move's r
            display(Image(data=png, format="png"))
            readout.value = report_html(dist, pref, rep)

    for w in (*sliders, picker):
        w.observe(redraw, names="value")
    redraw()
    box = W.VBox([W.HBox([W.VBox(sliders), picker]), readout, out]).add_class("workbook-sliders")
    display(box)
    return box
