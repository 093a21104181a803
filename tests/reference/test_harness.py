"""The side-by-side harness itself: both environments build the same model and compute the same logits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from _models import build, train_mlp
from torch import Tensor

RunReference = Callable[..., dict[str, Tensor]]

pytestmark = pytest.mark.reference


def test_same_logits_on_both_sides(
    run_reference: RunReference, mnist_test: tuple[Tensor, Tensor], lenet5_adv: dict[str, Any]
) -> None:
    x, y = mnist_test
    mlp = train_mlp(x[-2000:], y[-2000:], seed=0, epochs=1)
    for spec in (mlp, lenet5_adv):
        ours = build(spec)(x[:64]).detach()
        theirs = run_reference("_ref_common:logits", model=spec, x=x[:64])["logits"]
        assert torch.equal(ours, theirs), spec["arch"]


def test_worker_failure_is_reported(run_reference: RunReference) -> None:
    with pytest.raises(pytest.fail.Exception, match="no_such_function"):
        run_reference("_ref_common:no_such_function")
