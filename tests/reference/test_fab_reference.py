"""FAB-T side by side with pyautoattack 0.2.0's (targeted, 1 restart, 100 iterations, 9 targets; no randomness).

With ``early_stop=False`` ours runs every iteration on every point, as the reference does, and must return the
same adversarial examples bit for bit (CPU, float32, one thread, the same batch). They are compared as
:meth:`~robustlab.attacks.AttackMethod.propose` returns them: the evaluator's projection ``x + (x_adv - x)``
may move a coordinate by one float32 rounding, which is the evaluator's business, not FAB's. With the
defaults (early stop once a point has an adversarial within eps) the judged verdicts must be the reference's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from _models import build, train_mlp
from torch import Tensor

from robustlab.attacks import ATTACKS, Batch, RunContext, attack
from robustlab.attacks._evaluator import PassCounter
from robustlab.threat import get_norm

RunReference = Callable[..., dict[str, Tensor]]

pytestmark = pytest.mark.reference

REF_NORM = {"linf": "Linf", "l2": "L2", "l1": "L1"}


def ours_exact(spec: dict[str, Any], x: Tensor, y: Tensor, norm: str, eps: float) -> Tensor:
    """Our FAB-T with every iteration on every point, on the clean-correct rows in one batch (as the reference)."""
    model = build(spec)
    with torch.no_grad():
        rows = (model(x).argmax(1) == y).nonzero().flatten()
    fab = ATTACKS.get("fab-t").configure(None, None, {"early_stop": False})
    ctx = RunContext(model=model, norm=get_norm(norm), generator=torch.Generator(), counter=PassCounter(x.shape[0]))
    out = x.clone()
    out[rows] = fab.propose(ctx, Batch(x[rows], y[rows], None, torch.full((rows.numel(),), eps), rows))
    return out


def fooled(x_adv: Tensor, x: Tensor) -> Tensor:
    """The reference returns the clean image for every point it did not fool."""
    return (x_adv != x).reshape(x.shape[0], -1).any(1)


def compare(run_reference: RunReference, spec: dict[str, Any], x: Tensor, y: Tensor, norm: str, eps: float) -> None:
    n = x.shape[0]
    theirs = run_reference("_ref_fab:fab_t", model=spec, x=x, y=y, norm=REF_NORM[norm], eps=eps, batch_size=n)
    ref = theirs["x_adv"]
    assert 0 < int(fooled(ref, x).sum()) < n  # the setup: some points fooled, some robust

    mine = ours_exact(spec, x, y, norm, eps)
    assert torch.equal(mine, ref), f"{int((mine != ref).reshape(n, -1).any(1).sum())} of {n} examples differ"

    res = attack(build(spec), x, y, "fab-t", norm=norm, eps=eps, batch_size=n)  # our defaults: early stop
    with torch.no_grad():
        ref_wrong = build(spec)(ref).argmax(1) != y
    assert torch.equal(res.success | (res.clean_pred != y), ref_wrong)


@pytest.fixture(scope="module")
def mlp(mnist_test: tuple[Tensor, Tensor]) -> dict[str, Any]:
    x, y = mnist_test
    return train_mlp(x[-2000:], y[-2000:], seed=0, epochs=1)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.05), ("l2", 0.5), ("l1", 3.0)])
def test_same_examples_as_the_reference_on_a_small_mlp(
    run_reference: RunReference, mnist_test: tuple[Tensor, Tensor], mlp: dict[str, Any], norm: str, eps: float
) -> None:
    x, y = mnist_test
    compare(run_reference, mlp, x[:64], y[:64], norm, eps)


def test_same_examples_as_the_reference_on_the_adversarially_trained_lenet5(
    run_reference: RunReference, mnist_test: tuple[Tensor, Tensor], lenet5_adv: dict[str, Any]
) -> None:
    # AutoAttack's L∞ 0.3 on 7 test images: 2 that survive all 9 targets (900 iterations each) and 5 that the
    # reference fools (at distances 0.011 to 0.2996; 8, 18, 33, 45, 62 are 5 of its 9 successes on test[:100])
    x, y = mnist_test
    rows = torch.tensor([0, 1, 8, 18, 33, 45, 62])
    compare(run_reference, lenet5_adv, x[rows], y[rows], "linf", 0.3)
