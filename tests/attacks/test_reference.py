"""robustlab's deterministic attacks against textbook loops, on a non-linear float64 network.

The linear known answers (tests/oracle) cannot see a mistake that only shows once the gradient changes along
the path (a wrong projection order, a step taken from the wrong point, a targeted step with the wrong sign).
Here each attack is written out the way its paper states it, and robustlab's output must equal it.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from robustlab.attacks import attack

F64 = torch.float64


def network() -> nn.Module:
    g = torch.Generator().manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 5),
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * 0.4)
    return net.eval()


def batch(net: nn.Module) -> tuple[Tensor, Tensor]:
    x = torch.rand((12, 3, 8, 8), generator=torch.Generator().manual_seed(4), dtype=F64)
    with torch.no_grad():
        y = net(x).argmax(1)
    return x, y


def grad(net: nn.Module, x: Tensor, cls: Tensor) -> Tensor:
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(net(xr), cls, reduction="sum"), xr)
    return g


def textbook_ifgsm(net: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, target: Tensor | None) -> Tensor:
    """Kurakin et al. 2017: x_{k+1} = Clip_{x, eps}(x_k + a sign(grad)), a = eps / steps; a targeted attack
    descends the cross-entropy of the target instead. FGSM is one step of size eps."""
    alpha, adv = eps / steps, x.clone()
    for _ in range(steps):
        ascent = grad(net, adv, y) if target is None else -grad(net, adv, target)
        adv = adv + alpha * ascent.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv


def textbook_mifgsm(net: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, mu: float) -> Tensor:
    """Dong et al. 2018: g_{t+1} = mu g_t + grad / ||grad||_1, x_{t+1} = Clip_{x, eps}(x_t + a sign(g_{t+1}))."""
    alpha, adv, g = eps / steps, x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        d = grad(net, adv, y)
        g = mu * g + d / d.abs().flatten(1).sum(1).view(-1, 1, 1, 1)
        adv = torch.min(torch.max(adv + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    return adv


def textbook_pgd_l2(net: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int) -> Tensor:
    """Madry et al. 2018 in L2 without random start: a step of length alpha along the normalised gradient, then
    the radial projection onto the eps-ball, then the box."""
    adv = x.clone()
    for _ in range(steps):
        g = grad(net, adv, y)
        adv = adv + alpha * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        delta = adv - x
        norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        adv = (x + delta * torch.clamp(eps / norm, max=1.0)).clamp(0, 1)
    return adv


@pytest.mark.parametrize(("name", "steps"), [("fgsm", 1), ("ifgsm", 1), ("ifgsm", 7)])
def test_fgsm_and_ifgsm_equal_the_textbook_loop(name: str, steps: int) -> None:
    net = network()
    x, y = batch(net)
    res = attack(net, x, y, name, eps=0.03, steps=steps, early_stop=False, keep_adversarials=True)
    assert res.adversarials is not None
    expected = textbook_ifgsm(net, x, y, 0.03, steps, None)
    torch.testing.assert_close(res.adversarials, expected, rtol=0, atol=1e-12)
    assert 0 < int(res.success.sum()) < len(y)  # a budget where the answer is not trivial


def test_mifgsm_equals_the_textbook_loop() -> None:
    net = network()
    x, y = batch(net)
    res = attack(net, x, y, "mifgsm", eps=0.03, steps=6, momentum=0.8, early_stop=False, keep_adversarials=True)
    assert res.adversarials is not None
    torch.testing.assert_close(res.adversarials, textbook_mifgsm(net, x, y, 0.03, 6, 0.8), rtol=0, atol=1e-12)
    # momentum matters on this path: plain I-FGSM ends elsewhere
    assert not torch.allclose(res.adversarials, textbook_ifgsm(net, x, y, 0.03, 6, None))


def test_targeted_ifgsm_equals_the_textbook_loop() -> None:
    net = network()
    x, y = batch(net)
    with torch.no_grad():
        target = net(x).argmin(1)  # least likely
    res = attack(net, x, y, "ifgsm", eps=0.1, steps=7, target="least-likely", early_stop=False, keep_adversarials=True)
    assert res.adversarials is not None and torch.equal(res.target, target)
    expected = textbook_ifgsm(net, x, y, 0.1, 7, target)
    torch.testing.assert_close(res.adversarials, expected, rtol=0, atol=1e-12)
    with torch.no_grad():
        hit = net(expected).argmax(1) == target
    assert torch.equal(res.success, hit) and 0 < int(hit.sum()) < len(y)


def test_l2_pgd_without_random_start_equals_the_textbook_loop() -> None:
    net = network()
    x, y = batch(net)
    res = attack(
        net, x, y, "pgd", norm="l2", eps=0.4, steps=6, step_size=0.15, random_start=False, early_stop=False,
        keep_adversarials=True,
    )  # fmt: skip
    assert res.adversarials is not None
    expected = textbook_pgd_l2(net, x, y, 0.4, 0.15, 6)
    torch.testing.assert_close(res.adversarials, expected, rtol=0, atol=1e-12)
    assert 0 < int(res.success.sum()) < len(y)
