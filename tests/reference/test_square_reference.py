"""Square side by side with pyautoattack 0.2.0's SquareAttack: with ``reference_rng`` (batch-shared windows, the
reference's generator order), the same seed, batch and model, every point spends the same number of queries and
gets the same verdict; the schedule and the L2 pattern are the reference's exactly.

Query budgets are cut (AutoAttack runs 5,000) to keep the comparison under a minute on two loaded cores; the
first 300 iterations cover the schedule's first four phases (windows of side 25, 18, 13 and 9 on MNIST).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from _models import build, train_mlp
from torch import Tensor

import robustlab.attacks._square  # noqa: F401 - registers "square"
from robustlab.attacks import attack
from robustlab.attacks._square import eta_pattern, p_selection

RunReference = Callable[..., dict[str, Tensor]]

pytestmark = pytest.mark.reference


def compare(
    run_reference: RunReference, spec: dict[str, Any], x: Tensor, y: Tensor, norm: str, eps: float, queries: int
) -> tuple[Tensor, Tensor]:
    """Run both sides in one batch with seed 0; assert equal queries and verdicts; return (queries, robust)."""
    theirs = run_reference(
        "_ref_square:square",
        model=spec,
        x=x,
        y=y,
        norm=norm,
        eps=eps,
        queries=queries,
        p_init=0.8,
        seed=0,
        batch_size=x.shape[0],
    )
    ours = attack(
        build(spec),
        x,
        y,
        "square",
        norm=norm,
        eps=eps,
        seed=0,
        batch_size=x.shape[0],
        queries=queries,
        reference_rng=True,
    )
    our_queries = torch.tensor(ours.columns["queries"])
    assert torch.equal(our_queries, theirs["queries"]), (our_queries != theirs["queries"]).nonzero().flatten()
    assert torch.equal(ours.robust, theirs["robust"])
    return our_queries, ours.robust


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_same_queries_mlp(
    run_reference: RunReference, mnist_test: tuple[Tensor, Tensor], norm: str, eps: float
) -> None:
    x, y = mnist_test
    spec = train_mlp(x[-2000:], y[-2000:], seed=0, epochs=1)
    queries, robust = compare(run_reference, spec, x[:64], y[:64], norm, eps, queries=300)
    attacked = queries > 0
    # The comparison only means something if points fell at different iterations and some survived.
    assert int((attacked & ~robust).sum()) >= 5 and int(robust.sum()) >= 5
    assert len(set(queries[attacked & ~robust].tolist())) >= 3


def test_same_queries_lenet5_adv(
    run_reference: RunReference, mnist_test: tuple[Tensor, Tensor], lenet5_adv: dict[str, Any]
) -> None:
    x, y = mnist_test
    queries, robust = compare(run_reference, lenet5_adv, x[:200], y[:200], "linf", 0.3, queries=100)
    assert int(((queries > 0) & ~robust).sum()) >= 3  # some fooled during the run, not only at the start


def test_schedule_and_pattern_equal_reference(run_reference: RunReference) -> None:
    sides = [1, 2, 3, 4, 5, 7, 9, 13, 25, 29]
    schedules = [[5000, 0.8, False], [10000, 0.8, False], [1000, 0.8, True], [300, 0.05, True], [137, 0.3, False]]
    theirs = run_reference("_ref_square:schedule", schedules=schedules, sides=sides)
    for k, (queries, p_init, rescale) in enumerate(schedules):
        ours = [p_selection(i, float(p_init), int(queries), bool(rescale)) for i in range(int(queries))]
        assert torch.equal(torch.tensor(ours, dtype=torch.float64), theirs[f"p_{k}"]), schedules[k]
    for s in sides:
        assert torch.equal(eta_pattern(s), theirs[f"eta_{s}"]), s
