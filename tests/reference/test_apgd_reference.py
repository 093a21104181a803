"""APGD, APGD-T and APGD-L1 bitwise against pyautoattack 0.2.0 (the reference), on CPU in float32.

Same inputs, same batch (the clean-correct points, as the reference's ``perturb`` takes them), same seed, one
thread on both sides. Ours runs with ``reference_rng=True``: the reference's random-start protocol (one generator
seeded per batch, draws for the whole batch of points still to attack, in the reference's order), every point for
every iteration (no early drop: a smaller batch changes float rounding in the model), and the *last* misclassified
iterate as the answer of a fooled point. Compared: every attacked point's proposal, both for the points the
reference fools (its ``perturb`` output) and for the others (its best-loss point of the last run, recorded by the
worker around ``attack_single_run`` / ``decr_eps_pgd``).

The MLP cases (64 MNIST images, the MLP trained here in a few seconds) run under ``-m reference``; the LeNet5 cases
(advertorch's adversarially trained LeNet5, 200 images; all seven took 29 min on the shared 2-core machine) are also
``slow``; APGD-T runs 3 targets there (the code path of 9, a third of the time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from _models import build, train_mlp
from torch import Tensor

import robustlab.attacks._apgd  # noqa: F401 - registers apgd and apgd-t
from robustlab.attacks import ATTACKS, Batch, RunContext, attack
from robustlab.attacks._evaluator import PassCounter
from robustlab.threat import get_norm
from robustlab.threat.projections import l1_box_correction

RunReference = Callable[..., dict[str, Tensor]]

pytestmark = pytest.mark.reference

#: (attack, norm, eps, loss, restarts) on MNIST.
CASES = [
    ("apgd", "linf", 0.1, "ce", 1),
    ("apgd", "linf", 0.1, "dlr", 1),
    ("apgd", "linf", 0.1, "ce", 2),
    ("apgd-t", "linf", 0.1, "dlr", 1),
    ("apgd", "l2", 1.0, "ce", 1),
    ("apgd", "l2", 1.0, "dlr", 1),
    ("apgd-t", "l2", 1.0, "dlr", 1),
    ("apgd", "l1", 10.0, "ce", 1),
    ("apgd-t", "l1", 10.0, "dlr", 1),
]
LENET_CASES = [
    ("apgd", "linf", 0.3, "ce", 1),
    ("apgd", "linf", 0.3, "dlr", 1),
    ("apgd-t", "linf", 0.3, "dlr", 1),
    ("apgd", "l2", 2.0, "ce", 1),
    ("apgd-t", "l2", 2.0, "dlr", 1),
    ("apgd", "l1", 10.0, "ce", 1),
    ("apgd-t", "l1", 10.0, "dlr", 1),
]


@pytest.fixture(scope="module")
def mlp(mnist_test: tuple[Tensor, Tensor]) -> dict[str, Any]:
    x, y = mnist_test
    torch.set_num_threads(1)
    return train_mlp(x[-2000:], y[-2000:], seed=0, epochs=2)


def compare(
    run_reference: RunReference,
    spec: dict[str, Any],
    x: Tensor,
    y: Tensor,
    case: tuple[str, str, float, str, int],
    steps: int,
    n_target_classes: int = 9,
) -> tuple[int, int]:
    """Run both sides; assert bitwise-equal proposals; return (fooled by the reference, attacked)."""
    name, norm, eps, loss, restarts = case
    seed = 0
    ref = run_reference(
        "_ref_apgd:apgd",
        model=spec,
        x=x,
        y=y,
        attack=name,
        norm=norm,
        eps=eps,
        steps=steps,
        restarts=restarts,
        seed=seed,
        loss=loss,
        n_target_classes=n_target_classes,
        l1_eps_schedule=norm == "l1",
    )
    rows = ref["clean_correct"].nonzero().flatten()
    params: dict[str, Any] = {"reference_rng": True, "restarts": restarts, "n_target_classes": n_target_classes}
    if name == "apgd":
        params["loss"] = loss
    method = ATTACKS.get(name).configure(steps, None, params)
    model = build(spec)
    ctx = RunContext(model, get_norm(norm), torch.Generator().manual_seed(seed), PassCounter(len(x)))
    batch = Batch(x[rows], y[rows], None, torch.full((len(rows),), eps), rows)
    ours = method.propose(ctx, batch)

    fooled = ref["fooled"][rows]
    want = torch.where(fooled.view(-1, 1, 1, 1), ref["x_adv"][rows], ref["x_best"][rows])
    same = (ours == want).flatten(1).all(1)
    assert bool(same.all()), f"{int((~same).sum())} of {len(rows)} points differ (fooled: {fooled[~same].tolist()})"
    assert torch.equal(ref["x_adv"][rows][fooled], ours[fooled])  # the adversarial ones, as perturb returns them
    return int(fooled.sum()), len(rows)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_bitwise_on_an_mlp(
    run_reference: RunReference, mnist_test: tuple[Tensor, Tensor], mlp: dict[str, Any], case: Any
) -> None:
    x, y = mnist_test[0][:64], mnist_test[1][:64]
    fooled, attacked = compare(run_reference, mlp, x, y, case, steps=100)
    assert 0 < fooled < attacked  # the comparison covers both kinds of points
    # and the façade's verdicts (evaluator, fresh forward) agree with the reference's
    name, norm, eps, loss, restarts = case
    params: dict[str, Any] = {"loss": loss} if name == "apgd" else {}
    res = attack(build(mlp), x, y, name, norm=norm, eps=eps, seed=0, reference_rng=True, restarts=restarts, **params)
    assert round(res.summary()["robust_accuracy"] * len(x)) == attacked - fooled


@pytest.mark.slow
@pytest.mark.parametrize("case", LENET_CASES, ids=lambda c: "-".join(map(str, c)))
def test_bitwise_on_the_adversarially_trained_lenet5(
    run_reference: RunReference, mnist_test: tuple[Tensor, Tensor], lenet5_adv: dict[str, Any], case: Any
) -> None:
    x, y = mnist_test[0][:200], mnist_test[1][:200]
    fooled, attacked = compare(run_reference, lenet5_adv, x, y, case, steps=100, n_target_classes=3)
    assert 0 < fooled < attacked


def test_l1_box_projection_bitwise_on_image_sized_problems(run_reference: RunReference) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g)
    x = torch.where(torch.rand(x.shape, generator=g) < 0.8, torch.zeros_like(x), x)  # MNIST-like: mostly black
    y = torch.randn(x.shape, generator=g) * torch.linspace(0.05, 2.0, 64).view(-1, 1, 1, 1)
    y[::2] *= (torch.rand(y[::2].shape, generator=g) < 0.1).float()  # half of them sparse, as APGD-L1's steps
    eps = 12.0
    theirs = run_reference("_ref_apgd:l1_projection", x=x, y=y, eps=eps)["correction"]
    assert torch.equal(l1_box_correction(x, y, eps), theirs)
