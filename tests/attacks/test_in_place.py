"""The gradient loop's in-place arithmetic: the same numbers as the out-of-place functions, and no tensor of the
caller's is ever written (the first restart reads the caller's inputs without copying them)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlab.attacks import attack, perturb
from robustlab.attacks._evaluator import constrain, constrain_
from robustlab.threat import get_norm


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@pytest.mark.parametrize("eps", [0.05, None])
def test_constrain_in_place_gives_the_same_bits_as_constrain(norm: str, eps: float | None) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 5, 5, generator=g)
    proposed = x + 0.3 * torch.randn(6, 3, 5, 5, generator=g)  # outside the ball and the box
    e = None if eps is None else torch.linspace(0.01, 0.2, 6) if norm == "linf" else torch.full((6,), 2.0)
    expected = constrain(x, proposed, get_norm(norm), e)
    x_before = x.clone()
    got = constrain_(x, proposed.clone(), get_norm(norm), e)
    assert torch.equal(got, expected)
    assert torch.equal(x, x_before)


def test_constrain_in_place_never_writes_the_clean_input_a_kept_tensor_or_a_graph_leaf() -> None:
    x = torch.rand(4, 1, 3, 3)
    norm = get_norm("linf")
    for proposed in (x, x[:, :, :]):  # x itself, a view of it
        before = x.clone()
        out = constrain_(x, proposed, norm, 0.01)
        assert torch.equal(x, before) and torch.equal(out, constrain(x, before, norm, 0.01))
    init = torch.rand(4, 1, 3, 3) * 2
    before = init.clone()
    constrain_(x, init, norm, 0.01, keep=(init,))
    assert torch.equal(init, before)
    leaf = (torch.rand(4, 1, 3, 3) * 2).requires_grad_(True)
    before = leaf.detach().clone()
    constrain_(x, leaf, norm, 0.01)
    assert torch.equal(leaf.detach(), before)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 5)).eval()


@pytest.mark.parametrize(("name", "params"), [("pgd", {"restarts": 2}), ("mifgsm", {}), ("apgd", {})])
def test_attacks_leave_every_input_tensor_as_it_was(name: str, params: dict[str, int]) -> None:
    net = _net()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 2, 4, 4, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    eps = torch.full((8,), 0.1)
    copies = (x.clone(), y.clone(), eps.clone())
    perturb(net, x, y, name, eps=eps, steps=5, **({} if name == "apgd" else {"early_stop": False}), **params)
    attack(net, x, y, name, eps=0.1, steps=5, seed=0, **params)
    assert all(torch.equal(a, b) for a, b in zip((x, y, eps), copies, strict=True))


def test_perturb_does_not_write_into_a_starting_point_it_returns() -> None:
    net = _net()
    x = torch.rand(3, 2, 4, 4)
    init = (x + 0.5).clamp(0, 1)  # outside the ball: the result must be a projected copy
    before = init.clone()
    out = perturb(net, x, torch.zeros(3, dtype=torch.long), "pgd", eps=0.1, steps=0, init=init, early_stop=False)
    assert torch.equal(init, before)
    assert float((out - x).abs().max()) <= 0.1 + 1e-7
