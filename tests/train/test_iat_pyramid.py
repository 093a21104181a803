"""``iat`` and ``pyramid-at``: each loss equals a hand-written version on a float64 network (the same random draws
recomputed here), the pyramid's levels stay within their bound and its ascent works, iat's draws are reproducible
(and multi-process safe), bad settings are refused, and a 1-epoch ``train_model`` run works with each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab import ConfigError, ModelAdapter, TrainConfig, train_model
from robustlab.train.iat import mixup_draw
from robustlab.train.methods import TRAINING_METHODS, StepContext, get_method
from robustlab.train.pyramid import apply_pyramid, pyramid_perturb

pytestmark = pytest.mark.usefixtures("one_thread")

EPS, STEPS, STEP = 0.1, 3, 0.04
IAT = {"eps": EPS, "steps": STEPS, "step_size": STEP, "alpha": 0.7}
LEVEL_EPS, LEVEL_STEP = 0.02, 0.015  # the clip binds from the second step on
PYRAMID = {"scales": "2,4,8", "multipliers": "4,2,1", "level_eps": LEVEL_EPS, "step_size": LEVEL_STEP, "steps": STEPS}
K = 5


def _net() -> ModelAdapter:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, K))
    m = ModelAdapter(net, num_classes=K, input_shape=(3, 8, 8), mean=(0.4,) * 3, std=(0.3,) * 3).double()
    bn = net[1]
    assert isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None and bn.running_var is not None
    with torch.no_grad():  # non-trivial running statistics, so eval and train mode differ
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return m.train()


def _batch() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(8, 3, 8, 8, generator=g, dtype=torch.float64)
    x[:, :, :2] = 0.0  # a background at 0: where a clipped and an unclipped start differ
    return x, torch.randint(0, K, (8,), generator=g)


def _grad(model: nn.Module, x: Tensor, loss: object) -> Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(model(x)).sum(), x)  # type: ignore[operator]
    return g


def _mix_draw(g: torch.Generator, n: int, alpha: float) -> tuple[float, Tensor]:
    seed = int(torch.randint(2**62, (1,), generator=g))
    return float(np.random.default_rng(seed).beta(alpha, alpha)), torch.randperm(n, generator=g)


def _hand_iat(model: ModelAdapter, x: Tensor, y: Tensor, seed: int, attack_bn: str) -> Tensor:
    """Lamb et al. as the reference script writes it: mixup-CE on the clean batch, PGD from an unclipped uniform
    start on the clean batch, mixup-CE on the PGD points with new draws, the mean of the two."""
    g = torch.Generator().manual_seed(seed)
    a = IAT["alpha"]
    lam1, p1 = _mix_draw(g, len(x), a)
    out1 = model(lam1 * x + (1 - lam1) * x[p1])
    loss1 = lam1 * F.cross_entropy(out1, y) + (1 - lam1) * F.cross_entropy(out1, y[p1])
    if attack_bn == "eval":
        model.eval()
    model.check_inputs = False  # the first gradient is taken at the unclipped start
    xa = x + (torch.rand(x.shape, generator=g, dtype=x.dtype) * 2 - 1) * EPS
    for _ in range(STEPS):
        xa = xa + STEP * _grad(model, xa, lambda o: F.cross_entropy(o, y, reduction="none")).sign()
        xa = torch.minimum(torch.maximum(xa, x - EPS), x + EPS).clamp(0, 1)
    model.train()
    lam2, p2 = _mix_draw(g, len(x), a)
    out2 = model(lam2 * xa + (1 - lam2) * xa[p2])
    loss2 = lam2 * F.cross_entropy(out2, y) + (1 - lam2) * F.cross_entropy(out2, y[p2])
    return (loss1 + loss2) / 2


def _hand_pyramid(model: ModelAdapter, x: Tensor, y: Tensor, seed: int, attack_bn: str, loss: str) -> Tensor:
    """Herrmann et al. written out: levels upsampled with F.interpolate, added in order with a clip after each,
    sign steps on each level (descending the CE to a random other class, or ascending the true CE)."""
    clean = F.cross_entropy(model(x), y)
    g = torch.Generator().manual_seed(seed)
    target = (y + torch.randint(1, K, y.shape, generator=g)) % K if loss == "random-target" else None
    if attack_bn == "eval":
        model.eval()
    mults = (4.0, 2.0, 1.0)

    def image(levels: list[Tensor]) -> Tensor:
        out = x
        for level, m in zip(levels, mults, strict=True):
            out = (out + m * F.interpolate(level, size=(8, 8), mode="nearest")).clamp(0, 1)
        return out

    levels = [torch.zeros(len(x), 3, s, s, dtype=x.dtype) for s in (2, 4, 8)]
    for _ in range(STEPS):
        levels = [v.detach().requires_grad_(True) for v in levels]
        logits = model(image(levels))
        value = F.cross_entropy(logits, y) if target is None else -F.cross_entropy(logits, target)
        grads = torch.autograd.grad(value, levels)
        levels = [
            (v + LEVEL_STEP * gr.sign()).clamp(-LEVEL_EPS, LEVEL_EPS) for v, gr in zip(levels, grads, strict=True)
        ]
    model.train()
    return clean + 0.5 * F.cross_entropy(model(image([v.detach() for v in levels])), y)


@pytest.mark.parametrize("attack_bn", ["eval", "train"])
@pytest.mark.parametrize("name", ["iat", "pyramid-at", "pyramid-at/ce"])
def test_loss_equals_the_hand_written_one(name: str, attack_bn: str) -> None:
    x, y = _batch()
    ours, theirs = _net(), _net()
    if name == "iat":
        method = get_method("iat", IAT)
        expected = _hand_iat(theirs, x, y, 5, attack_bn)
    else:
        loss = "ce" if name.endswith("/ce") else "random-target"
        method = get_method("pyramid-at", {**PYRAMID, "loss": loss, "adv_weight": 0.5})
        expected = _hand_pyramid(theirs, x, y, 5, attack_bn, loss)
    ctx = StepContext(ours, torch.Generator().manual_seed(5), attack_bn=attack_bn)
    out = method.step(ctx, x, y)
    assert out.loss.dtype == torch.float64
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    g_ours = torch.autograd.grad(out.loss, list(ours.parameters()))
    g_theirs = torch.autograd.grad(expected, list(theirs.parameters()))
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # the outer passes (and, in train mode, the attack's) moved the batch-norm statistics identically
    torch.testing.assert_close(ours.state_dict()["net.1.running_mean"], theirs.state_dict()["net.1.running_mean"])
    assert ours.training and ctx.inner_passes == method.inner_steps() * len(x) == STEPS * len(x)
    assert ctx.inner_seconds > 0 and out.logits.shape == (len(x), K)
    keys = {"mix_clean_loss", "mix_adv_loss", "mix_adv_accuracy"} if name == "iat" else {"clean_loss", "pyramid_loss"}
    assert set(out.logs) == keys


def test_pyramid_levels_stay_in_bounds_ascend_the_loss_and_leave_the_parameters_alone() -> None:
    model, (x, y) = _net().eval(), _batch()
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    mults = (4.0, 2.0, 1.0)
    kw = {"scales": (2, 4, 8), "multipliers": mults, "level_eps": LEVEL_EPS, "step_size": LEVEL_STEP, "steps": 4}
    with torch.no_grad():
        base = F.cross_entropy(model(x), y)
    levels = pyramid_perturb(model, x, y, **kw)  # type: ignore[arg-type]
    assert [tuple(v.shape) for v in levels] == [(8, 3, 2, 2), (8, 3, 4, 4), (8, 3, 8, 8)]
    for v in levels:
        assert float(v.abs().max()) == pytest.approx(LEVEL_EPS)  # the clip binds: each level at its own bound
    x_pyr = apply_pyramid(x, levels, mults)
    assert float(x_pyr.min()) >= 0 and float(x_pyr.max()) <= 1
    # patch-constant: the coarse level is constant on its 4x4 patches
    coarse = apply_pyramid(torch.full_like(x, 0.5), levels[:1], mults[:1])
    assert torch.equal(coarse[:, :, :4, :4], coarse[:, :, :1, :1].expand(-1, -1, 4, 4))
    target = (y + 1) % K
    toward = pyramid_perturb(model, x, y, target=target, **kw)  # type: ignore[arg-type]
    with torch.no_grad():
        assert float(F.cross_entropy(model(x_pyr), y)) > float(base)  # "ce": the ascent raised the loss
        before = F.cross_entropy(model(x), target)  # random-target: the descent lowered the targeted loss
        assert float(F.cross_entropy(model(apply_pyramid(x, toward, mults)), target)) < float(before)
    for g, p in zip(grads, model.parameters(), strict=True):
        assert p.grad is not None and torch.equal(g, p.grad)


def test_iat_draws_are_reproducible_and_the_same_on_every_process() -> None:
    y = torch.arange(8)

    def draw(seed: int, rows: slice | None = None) -> tuple[float, Tensor, torch.Generator]:
        ctx = StepContext(_net(), torch.Generator().manual_seed(seed), batch_rows=rows, batch_size=8)
        lam, perm = mixup_draw(ctx, y if rows is None else y[rows], 1.0)
        return lam, perm, ctx.generator

    lam, perm, gen = draw(7)
    lam_again, perm_again, _ = draw(7)
    assert lam == lam_again and torch.equal(perm, perm_again) and 0 < lam < 1
    assert sorted(perm.tolist()) == list(range(8))
    lam_other, perm_other, _ = draw(8)
    assert lam_other != lam or not torch.equal(perm_other, perm)
    # one process of two: the same λ, a permutation of its own rows in the global permutation's order, and the
    # generator left where a single process leaves it
    lam_half, perm_half, gen_half = draw(7, slice(4, 8))
    assert lam_half == lam and torch.equal(perm_half, perm[4:].argsort().argsort())
    assert sorted(perm_half.tolist()) == [0, 1, 2, 3]
    assert torch.equal(gen.get_state(), gen_half.get_state())


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("iat", {}, "iat needs eps"),
        ("iat", {"eps": 0.0}, "eps must be > 0"),
        ("iat", {"eps": 0.1, "steps": 0}, "steps must be > 0"),
        ("iat", {"eps": 0.1, "alpha": 0.0}, "alpha .* must be > 0"),
        ("iat", {"eps": 0.1, "step_size": -1.0}, "step_size must be > 0"),
        ("iat", {"eps": 0.1, "beta": 1.0}, "iat has no setting 'beta'"),
        ("pyramid-at", {"scales": "4,8"}, "2 scales .* but 3 multipliers"),
        ("pyramid-at", {"scales": "4,x,32"}, "scales must be comma-separated ints"),
        ("pyramid-at", {"multipliers": "20,0,1"}, "every one of multipliers must be > 0"),
        ("pyramid-at", {"level_eps": 0.0}, "level_eps must be > 0"),
        ("pyramid-at", {"step_size": float("nan")}, "step_size must be > 0"),
        ("pyramid-at", {"steps": 0}, "steps must be > 0"),
        ("pyramid-at", {"loss": "kl"}, "loss must be one of random-target, ce"),
        ("pyramid-at", {"adv_weight": -1.0}, "adv_weight must be >= 0"),
        ("pyramid-at", {"eps": 0.1}, "pyramid-at has no setting 'eps'"),
    ],
)
def test_bad_settings_are_refused(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_method(name, params)


def test_defaults_and_fractions() -> None:
    assert {"iat", "pyramid-at"} <= set(TRAINING_METHODS.names())
    assert get_method("iat", {"eps": "8/255"}).params() == {
        "eps": 8 / 255,
        "steps": 7,
        "step_size": None,
        "random_start": True,
        "clip_start": False,
        "alpha": 1.0,
    }
    p = get_method("pyramid-at", {"level_eps": "6/255", "step_size": "1/255"}).params()
    assert p == {
        "scales": "4,8,32",
        "multipliers": "20,10,1",
        "level_eps": 6 / 255,
        "step_size": 1 / 255,
        "steps": 5,
        "loss": "random-target",
        "adv_weight": 1.0,
    }
    assert get_method("pyramid-at").params()["level_eps"] == 3 / 255


def test_a_scale_that_does_not_divide_the_image_is_refused_at_the_first_step() -> None:
    x, y = _batch()
    method = get_method("pyramid-at", {"scales": "3,8", "multipliers": "2,1"})
    with pytest.raises(ConfigError, match="every scale must divide the image size 8×8; 3 does not"):
        method.step(StepContext(_net(), torch.Generator().manual_seed(0)), x, y)


@pytest.mark.parametrize(
    ("method", "params", "logs"),
    [
        ("iat", {"eps": 0.1, "steps": 2}, {"mix_clean_loss", "mix_adv_loss", "mix_adv_accuracy"}),
        ("pyramid-at", {"scales": "2,4,8", "multipliers": "4,2,1", "steps": 2}, {"clean_loss", "pyramid_loss"}),
    ],
)
def test_one_epoch_of_train_model(tmp_path: Path, method: str, params: dict[str, object], logs: set[str]) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))
    model = ModelAdapter(net, num_classes=3, input_shape=(3, 8, 8), mean=(0.5,) * 3, std=(0.3,) * 3)
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (40,), generator=g)
    x = (torch.rand(40, 3, 8, 8, generator=g) * 0.4 + y[:, None, None, None] * 0.3).clamp(0, 1)
    cfg = TrainConfig(epochs=1, batch_size=20, lr=0.05, augment="none", method=method, method_params=params)
    result = train_model(model, x, y, cfg, tmp_path / "run", monitor_data=(x, y))
    (epoch,) = result.epochs
    assert np.isfinite(epoch.train_loss) and epoch.inner_passes == 2 * len(x)
    assert set(epoch.logs) == logs
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
