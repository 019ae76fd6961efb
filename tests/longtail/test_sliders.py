"""The slider view's figure and table show the same preference, the figure first (issue 38)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch

from lib.longtail.evaluate.bank import build_bank
from lib.longtail.evaluate.sliders import normalize_pref, report_png, report_title, slider_view
from lib.longtail.models import ModelConfig, build_model

GROUPS = np.array(["many", "many", "medium", "few"])


def png_title(png: bytes) -> str:
    """The `Title` text stored in a PNG (what the slider figure's title says)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return im.text["Title"]


def shown_pref(text: str) -> str:
    """The `(0.20, 0.20, 0.60)` preference in a title or a table."""
    return re.search(r"\(\d\.\d\d(?:, \d\.\d\d)*\)", text).group(0)


@pytest.fixture(scope="module")
def bank():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=4, num_experts=3, in_channels=1, hypernet=True))
    y = np.repeat(np.arange(4), 5)
    X = torch.randint(0, 256, (len(y), 1, 8, 8), generator=torch.Generator().manual_seed(0))
    return build_bank(model.eval(), X.to(torch.uint8), y, (0.5,), (0.25,), view_epochs=1, seed=0)


def test_figure_title_is_in_the_png_and_names_the_preference():
    pref = normalize_pref([0, 1, 3])
    title = report_title("backward5", pref)
    png = report_png(
        np.array([0.5, 1, 0, 0.25]), dict(top1=1, many=2, medium=3, few=4), GROUPS, title
    )
    assert png_title(png) == title == "backward5: r = (0.00, 0.25, 0.75)"


def test_each_move_shows_the_figure_then_a_table_with_the_same_preference(bank, monkeypatch):
    import IPython.display
    from IPython.display import Image

    events = []
    real = IPython.display.display
    monkeypatch.setattr(
        IPython.display,
        "display",
        lambda obj, **kw: (
            events.append(("figure", png_title(obj.data))) if isinstance(obj, Image) else real(obj)
        ),
    )
    sets = {"uniform": np.arange(len(bank.y)), "few": np.flatnonzero(bank.y == 3)}
    box = slider_view(bank, sets, GROUPS, "uniform")
    (readout,) = [w for w in box.children if "workbook-slider-readout" in w._dom_classes]
    readout.observe(lambda ch: events.append(("table", ch["new"])), names="value")
    sliders, picker = box.children[0].children[0].children, box.children[0].children[1]
    # the browser test's moves: all weight on the last expert, one slider at a time
    sliders[2].value, sliders[0].value, sliders[1].value = 1.0, 0.0, 0.0
    picker.value = "few"
    kinds = [k for k, _ in events]
    assert kinds == ["figure"] + ["figure", "table"] * 4, kinds  # the first table: before observe
    for (_, title), (_, table) in zip(events[1::2], events[2::2]):
        assert shown_pref(title) == shown_pref(table) and title.split(":")[0] in table
    assert shown_pref(events[-1][1]) == "(0.00, 0.00, 1.00)" and "few: r =" in events[-2][1]
