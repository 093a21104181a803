"""One input contract: every entry point that takes images refuses a broken input with the same words."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from robustlab import InputContractError, ModelAdapter
from robustlab.models import check_images


def _model() -> ModelAdapter:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    return ModelAdapter(net, num_classes=3, input_shape=(3, 8, 8), name="toy")


def _adapter(x: torch.Tensor) -> object:
    return _model()(x)


def _attack(x: torch.Tensor) -> object:
    from robustlab.attacks import attack

    return attack(_model(), x, torch.zeros(len(x), dtype=torch.int64), "fgsm", eps=0.1)


def _clever(x: torch.Tensor) -> object:
    from robustlab.metrics import clever

    return clever(_model(), x, torch.zeros(len(x), dtype=torch.int64), batches=2, samples=1)


def _corrupt(x: torch.Tensor) -> object:
    from robustlab.data.corruptions import corrupt

    return corrupt(x, "contrast", 1)


ENTRY_POINTS: dict[str, Callable[[torch.Tensor], object]] = {
    "adapter": _adapter,
    "attack": _attack,
    "clever": _clever,
    "corrupt": _corrupt,
}

BAD_INPUTS = {
    "normalised": (torch.rand(2, 3, 8, 8) - 0.5) / 0.25,
    "0..255 floats": torch.rand(2, 3, 8, 8) * 255,
    "unclipped": torch.rand(2, 3, 8, 8).clamp(0, 1).index_fill(0, torch.tensor([0]), 1.01),
    "nan": torch.full((2, 3, 8, 8), float("nan")),
    "uint8": torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8),
}


def _without_who(message: str) -> str:
    """The message without its ``"<who>: "`` prefix (the model's name, ``attack``, ``corrupt``...)."""
    _who, sep, rest = message.partition(": ")
    assert sep, f"message has no '<who>: ' prefix: {message!r}"
    return rest


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_every_entry_point_refuses_a_broken_input_with_the_words_of_check_images(entry: str, case: str) -> None:
    x = BAD_INPUTS[case]
    with pytest.raises(InputContractError) as expected:
        check_images(x)
    with pytest.raises(InputContractError) as got:
        ENTRY_POINTS[entry](x)
    assert _without_who(str(got.value)) == _without_who(str(expected.value))
