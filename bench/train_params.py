"""Parameter counts: backbone, base heads, compact hypernetwork and the published-style direct one.

    make bench NAME=train_params     # the claim: -> bench/ with its provenance

Three experts, reduced widths, hypernetwork rank 32 and hidden width 64, at the class counts
of CIFAR-100 (100), ImageNet-LT (1000) and iNaturalist 2018 (8142). Counted on the 'meta'
device (no memory, exact numbers). Goals: hypernetwork <= backbone at 100 classes and
<= backbone / 10 at 1000 classes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import out_dir
from lib.longtail.models import parameter_table


def main() -> int:
    t = parameter_table(["resnet32", "resnet50", "resnext50_32x4d", "resnet152"], [100, 1000, 8142])
    t.to_csv(out_dir("train_params") / "train_params.csv", index=False)
    lines = [
        "# Parameter counts (millions): 3 experts, reduced widths, hypernetwork rank 32, hidden 64",
        "",
        "| backbone | classes | backbone | base heads | compact hypernetwork | hypernetwork / backbone | "
        "direct generation (published design) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.arch} | {r.classes} | {r.backbone / 1e6:.3f} | {r.heads / 1e6:.3f} | {r.hypernet / 1e6:.3f} | "
        f"{r.hypernet_over_backbone:.4f} | {r.direct_hypernet / 1e6:.1f} |"
        for r in t.itertuples()
    ]
    ok100 = (t[t.classes == 100].hypernet_over_backbone <= 1).all()
    ok1000 = (t[t.classes == 1000].hypernet_over_backbone <= 0.1).all()
    lines += [
        "",
        f"Goals met: hypernetwork <= backbone at 100 classes: {ok100}; <= backbone / 10 at 1000 classes: "
        f"{ok1000}.",
        "",
    ]
    (out_dir("train_params") / "train_params.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if ok100 and ok1000 else 1


if __name__ == "__main__":
    sys.exit(main())
