"""Test-agnostic accuracy table of notebook 04 after the `cpu` profile, written as Markdown.

Reproduce (about 10 h of shared 2-core CPU for the training, 30 min for the evaluation):

    .venv/bin/python bench/train_accuracy.py                 # every method, cpu schedule
    .venv/bin/python -m lib.run --profile cpu --only 04_agnostic_evaluation
    .venv/bin/python bench/agnostic_eval.py                  # -> bench/agnostic_eval.md / .csv

The table reports, for every method and adaptation, top-1 on the eleven distributions and
their mean, the worst drop against the same model without adaptation, the evaluation time
and the per-slider-move latency recorded in the run's run.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.paths import RUNS
from lib.runinfo import cpu_name

HERE = Path(__file__).resolve().parent


def main(run: Path = RUNS / "cpu" / "04_agnostic_evaluation") -> None:
    top1 = pd.read_csv(run / "tables" / "top1_by_distribution.csv", index_col=[0, 1])
    rec = json.loads((run / "run.json").read_text())
    none = top1.xs("none", level="adaptation")
    dists = [c for c in top1.columns if c != "mean"]
    worst = [(top1.loc[(m, a), dists] - none.loc[m, dists]).min() for m, a in top1.index]
    table = top1.assign(worst_drop_vs_none=worst).round(2)
    table.to_csv(HERE / "agnostic_eval.csv")
    short = {f"forward{k}": f"F{k}" for k in (50, 25, 10, 5, 2)} | {
        f"backward{k}": f"B{k}" for k in (2, 5, 10, 25, 50)
    }
    cols = [short.get(c, c) for c in table.columns]
    lines = [
        "# Test-agnostic top-1 (%) on Fashion-MNIST-LT IR 100 after the cpu schedule",
        "",
        f"Machine: {cpu_name()}, shared with other jobs; {rec['device']}. Commit {rec['git_commit']}. "
        f"Full balanced test set (10,000 images), {rec['params']['tta_epochs']} test-time epochs. "
        f"Evaluating all checkpoints, distributions and adaptations took {rec['eval_seconds']:.0f} s; "
        f"one slider move recomputes in {rec['slider_ms']:.1f} ms (median of 5, drawing excluded).",
        "",
        "| method | adaptation | " + " | ".join(cols) + " |",
        "|---|---|" + "---:|" * len(cols),
    ]
    for (m, a), row in table.iterrows():
        lines.append(f"| {m} | {a} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    lines += ["", *goal_check(top1, dists)]
    (HERE / "agnostic_eval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    figure(top1[dists], HERE.parent / "docs" / "figures" / "04_agnostic_top1.png")


def goal_check(top1: pd.DataFrame, dists: list[str]) -> list[str]:
    """The goals of docs/long_tail.md (section 11), computed from the table: prl adapted vs sade adapted, and drops beyond 0.3 points."""
    out = ["## Goal check", ""]
    tta = (
        "stability",
        "stability_prior",
        "stability_pref",
        "prior_em",
    )  # oracle uses labels: not a competitor
    for prl in [a for a in tta if ("prl", a) in top1.index]:
        for sade in [a for a in tta if ("sade", a) in top1.index]:
            p, s = top1.loc[("prl", prl)], top1.loc[("sade", sade)]
            wins = int((p[dists] > s[dists]).sum())
            out.append(
                f"- prl / {prl} vs sade / {sade}: mean {p['mean']:.2f} vs {s['mean']:.2f}, "
                f"better on {wins} of {len(dists)} distributions"
            )
    none = top1.xs("none", level="adaptation")
    drops = [
        f"{m} / {a} on {d}: {top1.loc[(m, a), d] - none.loc[m, d]:+.2f}"
        for m, a in top1.index
        if a not in ("none", "oracle")
        for d in dists
        if top1.loc[(m, a), d] - none.loc[m, d] < -0.3
    ]
    out += [
        "",
        "Test-agnostic adaptations more than 0.3 points below the same model without adaptation: "
        + ("; ".join(drops) if drops else "none")
        + ".",
    ]
    return out


# The README's figure: each method as trained, and with its best test-agnostic adaptation.
FIGURE_ROWS = [
    ("softmax", "none"),
    ("softmax", "prior_em"),
    ("sade", "none"),
    ("sade", "stability"),
    ("sade", "prior_em"),
    ("prl", "none"),
    ("prl", "stability_prior"),
    ("prl", "prior_em"),
]


def figure(top1: pd.DataFrame, path: Path) -> None:
    """Top-1 against the test distribution for the rows in FIGURE_ROWS (colour: method; dashed: adapted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    colors = {"softmax": "tab:gray", "sade": "tab:blue", "prl": "tab:red"}
    for m, a in FIGURE_ROWS:
        if (m, a) in top1.index:
            ax.plot(
                top1.columns,
                top1.loc[(m, a)],
                "-" if a == "none" else ("--" if a == "prior_em" else ":"),
                color=colors[m],
                marker="o",
                ms=3,
                label=f"{m} / {a}",
            )
    ax.set(
        ylabel="top-1 (%)",
        title="Fashion-MNIST-LT IR 100: accuracy on each test label distribution",
    )
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
