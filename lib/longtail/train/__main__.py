"""Train from the command line, alone or under torchrun (DDP):

    python -m lib.longtail.train run_dir=runs/prl method=prl epochs=100
    torchrun --nproc_per_node 2 -m lib.longtail.train run_dir=runs/ddp method=sade epochs=2
    torchrun --nproc_per_node 8 -m lib.longtail.train run_dir=runs/inet dataset=ImageNet_LT arch=resnext50_32x4d \
        train_list=data_txt/ImageNet_LT/ImageNet_LT_train.txt test_list=data_txt/ImageNet_LT/ImageNet_LT_test.txt \
        image_root=data/ImageNet_LT epochs=180 batch_size=64 lr=0.025 schedule=cosine sade_lambda=2

Arguments are `name=value` settings of TrainConfig plus `run_dir`; each value is parsed by
its field's type (flip=false is False, milestones=80,90 or [80,90]), and one that does not
parse, an unknown name, a name given twice or a value out of range (lr=-1, method=PRL) is
one line on stderr and exit status 1, never a traceback. Each rank prints a digest of its
final weights, so a run can be checked for ranks that drifted apart.
"""

from __future__ import annotations

import os
import sys
import typing
from typing import Any

import torch

from ...core.settings import parse_setting
from .config import TrainConfig, config_for
from .loop import fit


def setting_types() -> dict[str, Any]:
    """Field name -> type of every TrainConfig setting, plus run_dir."""
    return {**typing.get_type_hints(TrainConfig), "run_dir": str}


def parse_settings(argv: list[str]) -> dict[str, Any]:
    """`name=value` strings -> dict, each value parsed by its TrainConfig field's type."""
    types_, out, argv_of = setting_types(), {}, {}
    for arg in argv:
        if "=" not in arg:
            raise SystemExit(
                f"argument {arg!r} is not name=value; e.g. method=prl epochs=10 run_dir=runs/x"
            )
        k, v = arg.split("=", 1)
        if k not in types_:
            raise SystemExit(f"unknown setting {k!r}; known: {', '.join(sorted(types_))}")
        if k in out:  # the last one winning silently hides a typo in a long command
            raise SystemExit(f"setting {k} is given twice ({argv_of[k]} and {arg}); give it once")
        argv_of[k] = arg
        try:
            out[k] = parse_setting(k, v, types_[k])
        except ValueError as e:
            raise SystemExit(str(e)) from None
    return out


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(sys.argv[1:] if argv is None else argv)
    run_dir = settings.pop("run_dir", None)
    if run_dir is None:
        raise SystemExit("pass run_dir=<folder> for the checkpoint, metrics and configuration")
    try:  # a bad value is the user's to fix: one line, not a traceback
        cfg = config_for(settings.pop("dataset", "fashion_mnist"), **settings)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"invalid training settings: {e}") from None
    res = fit(cfg, run_dir)
    digest = sum(float(p.double().sum()) for p in res.model.parameters())
    print(
        f"rank {os.environ.get('RANK', '0')} weights_digest {digest:.10e} epochs {len(res.history)}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads() // int(os.environ.get("WORLD_SIZE", "1"))))
    sys.exit(main())
