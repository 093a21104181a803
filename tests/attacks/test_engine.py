"""The attack engine's seams: per-sample state, attack objects, step rules and the training primitive ``perturb``."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from robustlab.attacks import ATTACKS, Batch, Cost, perturb
from robustlab.attacks._gradient import ConstantStep, GradientConfig, StepRule, gradient_attack
from robustlab.attacks._state import ActiveRows
from robustlab.errors import ConfigError
from robustlab.threat import Norm, get_norm


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


def test_active_rows_compact_every_tensor_together_and_keep_none() -> None:
    s = ActiveRows(x=torch.arange(10.0).reshape(5, 2), step=torch.arange(5.0), targets=None)
    s.keep(torch.tensor([True, False, True, True, False]))
    assert s.rows.tolist() == [0, 2, 3]
    assert s["x"].tolist() == [[0, 1], [4, 5], [6, 7]] and s["step"].tolist() == [0, 2, 3]
    assert s.get("targets") is None
    s["extra"] = torch.ones(3)
    s.keep(torch.tensor([False, True, True]))
    assert s.rows.tolist() == [2, 3] and s["extra"].shape == (2,)
    out = torch.zeros(5)
    s.scatter(out, "step")
    assert out.tolist() == [0, 0, 2, 3, 0]
    with pytest.raises(ValueError, match="rows"):
        s["bad"] = torch.ones(3)
    with pytest.raises(ValueError, match="same first dimension"):
        ActiveRows(a=torch.ones(2), b=torch.ones(3))


def test_configure_returns_a_copy_and_leaves_the_registered_defaults() -> None:
    registered = ATTACKS.get("pgd")
    mine = registered.configure(7, None, {"restarts": 2})
    assert mine.config.steps == 7 and mine.config.restarts == 2
    assert registered.config.steps == 10 and registered.config.restarts == 1
    assert mine.cost() == Cost(gradient=14, forward=1) and mine.cost().calls == 15


def test_batch_take_keeps_rows_together() -> None:
    b = Batch(
        torch.rand(4, 1, 2, 2), torch.arange(4), None, torch.ones(4), torch.arange(10, 14), reference=torch.eye(4)
    )
    sub = b.take(torch.tensor([3, 1]))
    assert sub.index.tolist() == [13, 11] and sub.labels.tolist() == [3, 1] and sub.reference is not None
    assert torch.equal(sub.reference, torch.eye(4)[[3, 1]]) and sub.targets is None and len(sub) == 2


def test_perturb_touches_neither_parameters_grads_nor_bn_statistics_nor_mode() -> None:
    net = _net()
    net.train()
    x, y = torch.rand(8, 1, 3, 4), torch.randint(0, 4, (8,))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = perturb(net.eval(), x, y, "pgd", eps=0.1, steps=3, early_stop=False)
    assert not net.training  # left as the caller set it
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert (out - x).abs().amax() <= 0.1 + 1e-7 and out.min() >= 0 and out.max() <= 1
    net.train()
    perturb(net, x, y, "pgd", eps=0.1, steps=2, early_stop=False)
    assert net.training  # a train-mode inner attack stays in train mode (and moves BN statistics: asked for)


def test_perturb_equals_the_gradient_loop_and_refuses_settings_on_a_configured_object() -> None:
    net = _net(1).eval()
    x, y = torch.rand(6, 1, 3, 4, dtype=torch.float64), torch.randint(0, 4, (6,))
    net = net.double()
    got = perturb(net, x, y, "pgd", eps=0.2, steps=4, seed=3, early_stop=False)
    from robustlab.attacks._evaluator import PassCounter

    cfg = GradientConfig(steps=4, rel_step=2.5, random_start=True, early_stop=False)
    want = gradient_attack(
        net,
        x,
        y,
        None,
        torch.full((6,), 0.2, dtype=torch.float64),
        norm=get_norm("linf"),
        config=cfg,
        generator=torch.Generator().manual_seed(3),
        counter=PassCounter(6),
        index=torch.arange(6),
    )
    assert torch.equal(got, want)
    with pytest.raises(ConfigError, match="configure"):
        perturb(net, x, y, ATTACKS.get("pgd"), eps=0.2, steps=3)


class _Recorder(StepRule):
    """A rule that records the per-sample losses it is given, to check the seam passes the right rows."""

    def __init__(self) -> None:
        self.losses: list[Tensor] = []
        self.inner = ConstantStep()

    def step(self, s: ActiveRows, grad: Tensor, loss: Tensor, norm: Norm) -> Tensor:
        self.losses.append(loss.clone())
        assert loss.shape == (len(s),) and grad.shape == s["x"].shape
        return self.inner.step(s, grad, loss, norm)


def test_the_step_rule_seam_sees_per_sample_losses_of_the_active_rows() -> None:
    net = _net(2).double().eval()
    x, y = torch.rand(5, 1, 3, 4, dtype=torch.float64), torch.randint(0, 4, (5,))
    rule = _Recorder()
    cfg = GradientConfig(steps=3, rel_step=1.0, random_start=False, early_stop=False, loss="ce")
    from robustlab.attacks._evaluator import PassCounter

    gradient_attack(
        net,
        x,
        y,
        None,
        torch.full((5,), 0.1, dtype=torch.float64),
        norm=get_norm("linf"),
        config=cfg,
        generator=torch.Generator(),
        counter=PassCounter(5),
        index=torch.arange(5),
        rule=rule,
    )
    first = torch.nn.functional.cross_entropy(net(x), y, reduction="none")
    assert len(rule.losses) == 3 and torch.allclose(rule.losses[0], first.detach())
