"""Edited or foreign checkpoints (issue 38): keys, shapes and the stored epoch are refused naming the file."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from lib.longtail.models import ModelConfig, build_model
from lib.longtail.train import load_checkpoint, load_model, save_checkpoint


def _checkpoint(path, edit=None, **extra):
    """A one-expert checkpoint at `path` whose state dict `edit` may change in place."""
    model = build_model(ModelConfig(num_classes=2, num_experts=1, in_channels=1))
    state = model.state_dict()
    if edit is not None:
        edit(state)
    return save_checkpoint(
        path, {"model_config": asdict(model.cfg), "meta": {}, "model": state, **extra}
    )


def _first(state: dict) -> str:
    return next(k for k, v in state.items() if v.ndim >= 2)


def test_extra_missing_or_wrong_shaped_keys_name_the_file_and_keys(tmp_path):
    def extra(s):
        s["head.extra"] = torch.zeros(3)

    def missing(s):
        del s[_first(s)]

    def reshaped(s):
        s[_first(s)] = torch.zeros(1, 1)

    first = _first(
        build_model(ModelConfig(num_classes=2, num_experts=1, in_channels=1)).state_dict()
    )
    cases = {
        extra: r"1 unexpected key\(s\): head.extra",
        missing: rf"1 missing key\(s\): {first}",
        reshaped: rf"1 wrong shape\(s\): {first} \(checkpoint \(1, 1\), model \(",
    }
    for edit, match in cases.items():
        ck = _checkpoint(tmp_path / f"{edit.__name__}.pt", edit)
        with pytest.raises(
            ValueError, match=rf"checkpoint {ck} does not fit the model .*{match}"
        ) as e:
            load_model(ck)
        assert "retrain" in str(e.value) and "Error(s) in loading state_dict" not in str(e.value)
    many = _checkpoint(
        tmp_path / "many.pt", lambda s: s.update({f"x{i}": torch.zeros(1) for i in range(9)})
    )
    with pytest.raises(ValueError, match=r"9 unexpected key\(s\): x0, x1, x2, x3, x4 and 4 more"):
        load_model(many)
    assert load_model(_checkpoint(tmp_path / "good.pt", epoch=0))[1]["epoch"] == 0


@pytest.mark.parametrize("epoch", [-5, 1.5, "3", True, None])
def test_a_stored_epoch_must_be_a_count(tmp_path, epoch):
    ck = _checkpoint(tmp_path / "last.pt", epoch=epoch)
    with pytest.raises(
        ValueError,
        match=rf"checkpoint {ck} stores epoch {epoch!r}, not a count of completed epochs.*retrain",
    ):
        load_checkpoint(ck)
