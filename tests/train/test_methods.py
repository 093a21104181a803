"""Training methods: each loss equals a hand-written version on a float64 network; the inner maximiser leaves the
parameters, their gradients and (in eval mode) the batch-norm statistics alone; settings are validated."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab import ConfigError, ModelAdapter
from robustlab.errors import UnknownNameError
from robustlab.train.methods import TRAINING_METHODS, StepContext, get_method

pytestmark = pytest.mark.usefixtures("one_thread")

EPS, ALPHA, STEPS, STEP, BETA = 0.1, 0.125, 3, 0.04, 3.0
WEIGHTS = (0.5, 1.0, 2.0, 4.0, 0.25)


def _net() -> ModelAdapter:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
    )
    m = ModelAdapter(net, num_classes=5, input_shape=(1, 6, 6), mean=(0.4,), std=(0.3,)).double()
    with torch.no_grad():  # non-trivial running statistics, so eval and train mode differ
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 1.5)
    return m.train()


def _batch() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(8, 1, 6, 6, generator=g, dtype=torch.float64)
    x[:, :, :2] = 0.0  # a background at 0, as MNIST's: where a clipped and an unclipped start differ
    return x, torch.randint(0, 5, (8,), generator=g)


def _ball(x: Tensor, x_adv: Tensor, eps: float) -> Tensor:
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0, 1)


def _uniform_start(x: Tensor, seed: int, eps: float = EPS) -> Tensor:
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    return (2 * u - 1) * eps


def _grad(model: nn.Module, x: Tensor, f: object) -> Tensor:
    x = x.clone().requires_grad_(True)
    loss = f(model(x)).sum()  # type: ignore[operator]
    (g,) = torch.autograd.grad(loss, x)
    return g


def _kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """Σ_k p_k (log p_k − log q_k) per row: KL(softmax(p) ‖ softmax(q)) written out."""
    logp, logq = p_logits.log_softmax(1), q_logits.log_softmax(1)
    return (logp.exp() * (logp - logq)).sum(1)


def _hand(name: str, model: ModelAdapter, x: Tensor, y: Tensor, seed: int, scale: float = 1.0, skip: int = 0) -> Tensor:
    """The textbook loss of each method, written out (attack in eval mode, outer loss in train mode); ``scale``
    multiplies PGD-AT's budget and step."""
    if name == "standard":
        return F.cross_entropy(model(x), y, label_smoothing=0.1)
    if name == "reweighted":
        w = torch.tensor(WEIGHTS, dtype=x.dtype)
        return (w[y] * F.cross_entropy(model(x), y, reduction="none")).sum() / w[y].sum()
    model.eval()
    ce = lambda logits: F.cross_entropy(logits, y, reduction="none")  # noqa: E731
    if name == "pgd-at":
        xa = (x + _uniform_start(x, seed, EPS * scale)).clamp(0, 1)
        for _ in range(STEPS):
            xa = _ball(x, xa + STEP * scale * _grad(model, xa, ce).sign(), EPS * scale)
    elif name == "fgsm-rs":
        xa = x + _uniform_start(x, seed)  # Wong et al.: the start is not clipped to [0, 1]
        model.check_inputs = False  # the model sees the unclipped start
        xa = _ball(x, xa + ALPHA * _grad(model, xa, ce).sign(), EPS)
    elif name == "sia":
        from robustlab.threat import semantic_threat

        threat = semantic_threat("mild", ["contrast", "brightness"], pixel_eps=EPS)
        g = torch.Generator().manual_seed(seed)
        torch.rand(skip, generator=g, dtype=x.dtype)  # draws made before the start (class_fraction's)
        u = torch.rand(len(x), 2, generator=g, dtype=x.dtype) * 2 - 1  # the run's draws, in the method's order
        d = (torch.rand(x.shape, generator=g, dtype=x.dtype) * 2 - 1) * EPS
        best, best_loss = None, torch.full((len(x),), -torch.inf, dtype=x.dtype)
        for t in range(STEPS + 1):  # keep each row's highest-loss iterate, start and end included
            u, d = u.detach().requires_grad_(True), d.detach().requires_grad_(True)
            img = threat.render(x, u, d)
            loss = ce(model(img))
            up = loss > best_loss
            best = img.detach() if best is None else torch.where(up.view(-1, 1, 1, 1), img.detach(), best)
            best_loss = torch.where(up, loss.detach(), best_loss)
            if t == STEPS:
                break
            gu, gd = torch.autograd.grad(loss.sum(), [u, d])
            u = (u + 2.5 / STEPS * gu.sign()).clamp(-1, 1)
            d = (d + 2.5 * EPS / STEPS * gd.sign()).clamp(-EPS, EPS)
        xa = best
    else:
        with torch.no_grad():
            ref = model(x)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
        xa = _ball(x, x + 0.001 * noise, EPS)
        for _ in range(STEPS):
            xa = _ball(x, xa + STEP * _grad(model, xa, lambda logits: _kl(ref, logits)).sign(), EPS)
        model.train()
        logits = model(x)
        return F.cross_entropy(logits, y) + BETA * _kl(logits, model(xa)).sum() / len(x)
    model.train()
    return F.cross_entropy(model(xa), y)


PARAMS = {
    "standard": {},
    "pgd-at": {"eps": EPS, "steps": STEPS, "step_size": STEP},
    "fgsm-rs": {"eps": EPS, "alpha": ALPHA},
    "trades": {"eps": EPS, "steps": STEPS, "step_size": STEP, "beta": BETA},
    "sia": {"attributes": "brightness,contrast", "pixel_eps": EPS, "steps": STEPS},
    "reweighted": {"weights": ",".join(map(str, WEIGHTS))},
}


#: Methods whose hand-written loss lives in their own test module (issue 15's methods).
ELSEWHERE = {
    "iat": "test_iat_pyramid.py",
    "pyramid-at": "test_iat_pyramid.py",
    "advprop": "test_multibranch_methods.py",
    "mdprop": "test_multibranch_methods.py",
    "multibn": "test_multibranch_methods.py",
    "nofrost": "test_nofrost_dial.py",
    "mixed-at": "test_nofrost_dial.py",
    "dial": "test_nofrost_dial.py",
    "augmax": "test_augmax.py",
    "augmix": "test_augmax.py",
}


def test_every_registered_method_has_a_hand_written_loss_test() -> None:
    from pathlib import Path

    here = Path(__file__).parent
    for name in TRAINING_METHODS.names():
        if name in PARAMS:
            continue
        assert name in ELSEWHERE, f"{name} has no hand-written loss test: add it to PARAMS or ELSEWHERE"
        text = (here / ELSEWHERE[name]).read_text(encoding="utf-8")
        assert "hand" in text and f'"{name}"' in text, f"{ELSEWHERE[name]} does not test {name}'s loss"


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_each_method_loss_equals_the_hand_written_one(name: str) -> None:
    x, y = _batch()
    ours, theirs = _net(), _net()
    method = get_method(name, PARAMS[name])
    ls = 0.1 if name == "standard" else 0.0
    ctx = StepContext(ours, torch.Generator().manual_seed(5), label_smoothing=ls)
    out = method.step(ctx, x, y)
    expected = _hand(name, theirs, x, y, seed=5)
    assert out.loss.dtype == torch.float64
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    # the same gradients with respect to the parameters
    g_ours = torch.autograd.grad(out.loss, list(ours.parameters()))
    g_theirs = torch.autograd.grad(expected, list(theirs.parameters()))
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # and the outer forward passes moved the batch-norm statistics identically (train mode)
    torch.testing.assert_close(ours.net[1].running_mean, theirs.net[1].running_mean)
    assert ctx.inner_passes == method.inner_steps() * len(x)


def test_the_unclipped_start_matters_on_a_zero_background() -> None:
    """The hand-written FGSM-RS above would fail against a start clipped to [0, 1]: the setting is not cosmetic."""
    x, y = _batch()
    method = get_method("fgsm-rs", {**PARAMS["fgsm-rs"], "clip_start": True})
    out = method.step(StepContext(_net(), torch.Generator().manual_seed(5)), x, y)
    assert not torch.allclose(out.loss, _hand("fgsm-rs", _net(), x, y, seed=5))


@pytest.mark.parametrize("name", ["pgd-at", "fgsm-rs", "trades"])
@pytest.mark.parametrize("attack_bn", ["eval", "train"])
def test_inner_maximiser_leaves_parameters_grads_and_bn_statistics_alone(name: str, attack_bn: str) -> None:
    model = _net()
    x, y = _batch()
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    before = copy.deepcopy(model.state_dict())
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    ctx = StepContext(model, torch.Generator().manual_seed(0), attack_bn=attack_bn)
    s = get_method(name, PARAMS[name]).settings
    x_adv = ctx.perturb(x, y, eps=EPS, steps=2, step_size=STEP, random_start=True)
    assert model.training  # the mode is restored
    assert float((x_adv - x).abs().max()) <= EPS + 1e-12 and float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    assert not torch.equal(x_adv, x) and s.eps == EPS
    after = model.state_dict()
    for key, value in before.items():
        if (attack_bn == "train" and key.startswith("net.1.running")) or key == "net.1.num_batches_tracked":
            continue
        assert torch.equal(value, after[key]), key
    bn_moved = not torch.equal(before["net.1.running_mean"], after["net.1.running_mean"])
    assert bn_moved == (attack_bn == "train")  # train-mode BN, when asked for, does update its statistics
    for g, p in zip(grads, model.parameters(), strict=True):
        assert p.grad is not None and torch.equal(g, p.grad)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("pgd-at", {}, "pgd-at needs eps"),
        ("pgd-at", {"eps": 0.0}, "eps must be > 0"),
        ("pgd-at", {"eps": -0.1}, "eps must be > 0"),
        ("pgd-at", {"eps": 0.1, "steps": 0}, "steps must be > 0"),
        ("trades", {"eps": 0.1, "steps": -1}, "steps must be > 0"),
        ("fgsm-rs", {"eps": float("nan")}, "eps must be > 0"),
        ("fgsm-rs", {"eps": 0.1, "alpha": 0.0}, "alpha must be > 0"),
        ("fgsm-rs", {"eps": 0.1, "steps": 3}, "fgsm-rs has no setting 'steps'"),
        ("pgd-at", {"eps": 0.1, "setps": 3}, "Did you mean: steps"),
        ("trades", {"eps": 0.1, "beta": -1.0}, "beta must be >= 0"),
        ("pgd-at", {"eps": 0.1, "eps_ramp": 1.5}, "eps_ramp must be in \\[0, 1\\]"),
        ("pgd-at", {"eps": 0.1, "steps": "7"}, "steps must be int"),
        ("standard", {"eps": 0.1}, "standard has no setting 'eps'"),
        ("sia", {"steps": -1}, "sia: steps must be >= 0"),
        ("sia", {"steps": 0, "random_start": False}, "use method standard"),
        ("sia", {"pixel_eps": -0.1}, "pixel budget must be a finite number >= 0"),
        ("sia", {"attributes": "brightnes"}, "Did you mean: brightness"),
        ("sia", {"preset": "wild"}, "unknown semantic preset 'wild'"),
        ("sia", {"eps": 0.1}, "sia has no setting 'eps'"),
        ("sia", {"class_fraction": "0.5,x"}, "comma-separated numbers"),
        ("sia", {"class_fraction": "0.5,1.5"}, "must lie in \\[0, 1\\]"),
        ("reweighted", {}, "reweighted needs weights"),
        ("reweighted", {"weights": "1,-1"}, "must be >= 0"),
        ("reweighted", {"weights": "a,b"}, "comma-separated numbers"),
    ],
)
def test_bad_settings_are_refused(name: str, params: dict, message: str) -> None:
    with pytest.raises((ConfigError, UnknownNameError), match=message):
        get_method(name, params)


def test_sia_with_no_steps_trains_on_random_attributes() -> None:
    from robustlab.threat import semantic_threat

    x, y = _batch()
    ours, theirs = _net(), _net()
    out = get_method("sia", {"attributes": "contrast,brightness", "pixel_eps": EPS, "steps": 0}).step(
        StepContext(ours, torch.Generator().manual_seed(5)), x, y
    )
    g = torch.Generator().manual_seed(5)
    u = torch.rand(len(x), 2, generator=g, dtype=x.dtype) * 2 - 1
    d = (torch.rand(x.shape, generator=g, dtype=x.dtype) * 2 - 1) * EPS
    image = semantic_threat("mild", ["contrast", "brightness"], pixel_eps=EPS).render(x, u, d)
    torch.testing.assert_close(out.loss, F.cross_entropy(theirs(image), y), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_sia_class_fraction_zero_trains_on_clean_rows_and_one_on_every_row(fraction: float) -> None:
    x, y = _batch()
    params = {**PARAMS["sia"], "class_fraction": ",".join([str(fraction)] * 5)}
    out = get_method("sia", params).step(StepContext(_net(), torch.Generator().manual_seed(5)), x, y)
    # fraction 0: no row perturbed; 1: every row, its draws after class_fraction's
    expected = F.cross_entropy(_net()(x), y) if fraction == 0.0 else _hand("sia", _net(), x, y, seed=5, skip=len(x))
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)


def test_sia_refuses_colour_attributes_on_grey_images() -> None:
    x, y = _batch()
    method = get_method("sia", {"attributes": "hue,brightness"})
    with pytest.raises(ConfigError, match="hue needs RGB images"):
        method.step(StepContext(_net(), torch.Generator().manual_seed(0)), x, y)


def test_unknown_method_lists_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean: pgd-at"):
        get_method("pgd_at")


def test_eps_as_a_fraction_and_defaults_recorded() -> None:
    m = get_method("pgd-at", {"eps": "8/255", "steps": 7})
    assert m.params() == {
        "eps": 8 / 255,
        "steps": 7,
        "step_size": None,
        "random_start": True,
        "norm": "linf",
        "eps_ramp": 0.0,
    }
    assert get_method("trades", {"eps": 0.3}).params()["beta"] == 6.0


@pytest.mark.parametrize(("progress", "scale"), [(0.1, 0.25), (0.2, 0.5), (0.4, 1.0), (0.9, 1.0)])
def test_the_budget_ramp_is_pgd_at_at_the_scaled_budget_and_step(progress: float, scale: float) -> None:
    """eps_ramp 0.4: at 10 % of the training PGD-AT runs at a quarter of the budget and of the step; from 40 % on,
    at the full ones (the hand-written loss at eps · scale, step · scale)."""
    x, y = _batch()
    ctx = StepContext(_net(), torch.Generator().manual_seed(5), progress=progress)
    out = get_method("pgd-at", {**PARAMS["pgd-at"], "eps_ramp": 0.4}).step(ctx, x, y)
    expected = _hand("pgd-at", _net(), x, y, seed=5, scale=scale)
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    if scale < 1:  # and it is not the full-budget loss
        assert not torch.allclose(out.loss, _hand("pgd-at", _net(), x, y, seed=5))
