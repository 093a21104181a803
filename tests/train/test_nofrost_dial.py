"""``nofrost``/``mixed-at`` and ``dial``: each loss equals a hand-written version on a float64 ResNet (the same
random draws recomputed here); the gradient-reversal layer and the feature head do what they say; the methods build
the models they need (normalizer-free, or with a domain head that an exported checkpoint keeps and a plain
architecture drops by ``drop_keys``); label smoothing reaches NoFrost's cross-entropy; bad settings are refused; a
1-epoch run works with each."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab import ConfigError, ModelAdapter, TrainConfig
from robustlab.data import Dataset
from robustlab.errors import ModelError
from robustlab.models import ModelSpec, build_architecture
from robustlab.models.heads import FeatureHead, GradientReversal, attach_feature_head, reverse_gradient
from robustlab.models.norm_layers import SkipInit, WSConv2d
from robustlab.models.weights import read_safetensors
from robustlab.train import LabelSmoothingWarning
from robustlab.train.dial import grl_alpha
from robustlab.train.methods import StepContext, get_method
from robustlab.train.nofrost import auto_step_size

pytestmark = pytest.mark.usefixtures("one_thread")

EPS, STEPS, STEP, K = 0.1, 3, 0.04, 5
BETA, R, PROGRESS = 3.0, 0.7, 0.3


def _arch(**kwargs: object) -> nn.Module:
    return build_architecture("resnet_cifar", depth=8, width=4, num_classes=K, in_channels=3, **kwargs)


def _model(seed: int = 0, **kwargs: object) -> ModelAdapter:
    """A float64 ResNet-8 (width 4) in train mode; BN running statistics and SkipInit gains made non-trivial."""
    torch.manual_seed(seed)
    net = _arch(**kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):  # eval and train mode differ
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if isinstance(m, SkipInit):  # residual branches that contribute (they start at 0)
                m.gain.fill_(0.5)
    return ModelAdapter(net, num_classes=K, input_shape=(3, 8, 8), mean=(0.4,) * 3, std=(0.3,) * 3).double().train()


def _batch() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(8, 3, 8, 8, generator=g, dtype=torch.float64)
    x[:, :, :2] = 0.0  # a background at 0, where clipping the start matters
    return x, torch.randint(0, K, (8,), generator=g)


def _ball(x: Tensor, x_adv: Tensor) -> Tensor:
    return torch.minimum(torch.maximum(x_adv, x - EPS), x + EPS).clamp(0, 1)


def _grad(model: nn.Module, x: Tensor, f: object) -> Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(model(x)).sum(), x)  # type: ignore[operator]
    return g


def _kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """Σ_k p_k (log p_k − log q_k) per row: KL(softmax(p) ‖ softmax(q)) written out."""
    logp, logq = p_logits.log_softmax(1), q_logits.log_softmax(1)
    return (logp.exp() * (logp - logq)).sum(1)


def _features(model: ModelAdapter, x: Tensor) -> Tensor:
    """ResNet-CIFAR's penultimate features written out (the input of its ``linear``). Shape: (B, 3, H, W) → (B, 4w)."""
    net = model.net
    z = (x - model.mean.to(x.dtype)) / model.std.to(x.dtype)
    out = F.relu(net.bn1(net.conv1(z)))
    out = net.layer3(net.layer2(net.layer1(out)))
    return F.adaptive_avg_pool2d(out, 1).flatten(1)


def _hand_mixed(model: ModelAdapter, x: Tensor, y: Tensor, seed: int, ls: float, step: float) -> Tensor:
    """NoFrost's loss as PGDAT.py writes it: advertorch PGD (uniform start clipped to [0, 1], sign steps, eval
    mode), then (1 − λ)·LS-CE(f(x)) + λ·LS-CE(f(x′)) with λ = 0.5, in train mode."""
    model.eval()
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    xa = (x + (2 * u - 1) * EPS).clamp(0, 1)
    for _ in range(STEPS):
        xa = _ball(x, xa + step * _grad(model, xa, lambda o: F.cross_entropy(o, y, reduction="none")).sign())
    model.train()
    clean = F.cross_entropy(model(x), y, label_smoothing=ls)
    return 0.5 * clean + 0.5 * F.cross_entropy(model(xa), y, label_smoothing=ls)


def _hand_dial(model: ModelAdapter, x: Tensor, y: Tensor, seed: int, kind: str) -> Tensor:
    """dial.py::dial_loss written out, with the gradient reversal as ``(1 + α)·h.detach() − α·h`` (value h,
    gradient −α) and the domain head's layers composed here."""
    model.eval()
    with torch.no_grad():
        ref = model(x)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    xa = _ball(x, x + 0.001 * noise)
    for _ in range(STEPS):
        if kind == "kl":
            g = _grad(model, xa, lambda o: _kl(ref, o))
        else:
            g = _grad(model, xa, lambda o: F.cross_entropy(o, y, reduction="none"))
        xa = _ball(x, xa + STEP * g.sign())
    model.train()
    head = model.net.domain
    alpha = 2.0 / (1.0 + math.exp(-10.0 * PROGRESS)) - 1.0

    def domain(h: Tensor) -> Tensor:
        rev = (1 + alpha) * h.detach() - alpha * h
        return head.fc2(F.relu(head.bn(head.fc1(rev))))

    h, h_adv = _features(model, x), _features(model, xa)
    logits, logits_adv = model.net.linear(h), model.net.linear(h_adv)
    zeros, ones = torch.zeros(len(x), dtype=torch.long), torch.ones(len(x), dtype=torch.long)
    nat = F.cross_entropy(logits, y) + R * F.cross_entropy(domain(h), zeros)
    robust = _kl(logits, logits_adv).sum() / len(x) if kind == "kl" else F.cross_entropy(logits_adv, y)
    return nat + BETA * robust + R * F.cross_entropy(domain(h_adv), ones)


def _same_step(ours: ModelAdapter, theirs: ModelAdapter, loss: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    g_ours = torch.autograd.grad(loss, list(ours.parameters()))
    g_theirs = torch.autograd.grad(expected, list(theirs.parameters()))
    for (name, _), a, b in zip(ours.named_parameters(), g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)
    for (name, a), b in zip(ours.named_buffers(), theirs.buffers(), strict=True):
        torch.testing.assert_close(a, b, msg=name)  # the train-mode passes moved the statistics alike


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("name", ["nofrost", "mixed-at"])
def test_mixed_loss_equals_the_hand_written_one_and_label_smoothing_reaches_it(name: str, ls: float) -> None:
    method = get_method(name, {"eps": EPS, "steps": STEPS})
    ours, theirs = _model(**method.model_kwargs()), _model(**method.model_kwargs())
    x, y = _batch()
    ctx = StepContext(ours, torch.Generator().manual_seed(5), label_smoothing=ls)
    out = method.step(ctx, x, y)
    step = min(1.25 * EPS, EPS + 4 / 255) / STEPS
    expected = _hand_mixed(theirs, x, y, seed=5, ls=ls, step=step)
    _same_step(ours, theirs, out.loss, expected)
    assert ctx.inner_passes == STEPS * len(x)
    assert set(out.logs) == {"clean_loss", "adv_loss", "clean_accuracy"}
    if ls > 0:  # the smoothing is not cosmetic: without it the hand-written loss differs
        assert not torch.allclose(out.loss, _hand_mixed(_model(**method.model_kwargs()), x, y, 5, 0.0, step))


def test_the_reference_step_size_rule() -> None:
    assert auto_step_size(8 / 255, 10) == pytest.approx(1 / 255)  # eps + 4/255 binds: the reference's 1/255
    assert auto_step_size(0.01, 10) == pytest.approx(1.25 * 0.01 / 10)  # small eps: 1.25·eps binds


def test_nofrost_builds_a_normalizer_free_model_and_mixed_at_a_bn_one() -> None:
    nofrost = get_method("nofrost", {"eps": 8 / 255})
    assert nofrost.model_kwargs() == {"norm_layer": "none"}
    assert get_method("mixed-at", {"eps": 8 / 255}).model_kwargs() == {}
    net = _arch(**nofrost.model_kwargs())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert any(isinstance(m, SkipInit) for m in net.modules()) and any(isinstance(m, WSConv2d) for m in net.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in _arch().modules())


def test_label_smoothing_defaults_to_zero_and_warns_when_set() -> None:
    params = {"eps": 8 / 255}
    assert TrainConfig(method="nofrost", method_params=params).label_smoothing == 0.0
    with pytest.warns(LabelSmoothingWarning, match="nofrost masks gradients"):
        cfg = TrainConfig(method="nofrost", method_params=params, label_smoothing=0.1)
    assert cfg.label_smoothing == 0.1  # the +LS arm of the NoFrost experiment runs as asked


@pytest.mark.parametrize("kind", ["kl", "ce"])
def test_dial_loss_equals_the_hand_written_one(kind: str) -> None:
    method = get_method("dial", {"eps": EPS, "steps": STEPS, "step_size": STEP, "beta": BETA, "domain_weight": R,
                                 "kind": kind})  # fmt: skip
    assert method.model_kwargs() == {"heads": {"domain": 2}}
    ours, theirs = _model(**method.model_kwargs()), _model(**method.model_kwargs())
    x, y = _batch()
    ctx = StepContext(ours, torch.Generator().manual_seed(5), progress=PROGRESS)
    out = method.step(ctx, x, y)
    _same_step(ours, theirs, out.loss, _hand_dial(theirs, x, y, seed=5, kind=kind))
    assert ctx.inner_passes == STEPS * len(x)
    assert set(out.logs) == {"natural_loss", "robust_loss", "domain_loss", "domain_accuracy", "grl_alpha"}
    assert out.logs["grl_alpha"] == pytest.approx(grl_alpha(PROGRESS)) and 0 <= out.logs["domain_accuracy"] <= 1
    assert ours.net.domain.features is None  # the step took the captured features: no graph is kept


def test_grl_alpha_schedule() -> None:
    assert grl_alpha(0.0) == 0.0
    assert grl_alpha(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    values = [grl_alpha(p / 10) for p in range(11)]
    assert values == sorted(values) and values[-1] < 1


def test_gradient_reversal_is_the_identity_forward_and_minus_alpha_backward() -> None:
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    out = reverse_gradient(x, 0.7)
    assert torch.equal(out, x) and out is not x
    upstream = torch.randn(4, 6, dtype=torch.float64)
    (g,) = torch.autograd.grad(out, x, upstream)
    torch.testing.assert_close(g, -0.7 * upstream, rtol=0, atol=0)
    (g1,) = torch.autograd.grad(GradientReversal.apply(x, 1.0).sum(), x)
    torch.testing.assert_close(g1, -torch.ones_like(x), rtol=0, atol=0)


def test_the_domain_head_reads_the_classifier_input_and_leaves_the_output_alone() -> None:
    torch.manual_seed(0)
    plain = ModelAdapter(_arch(), num_classes=K, input_shape=(3, 8, 8), mean=(0.4,) * 3, std=(0.3,) * 3).double()
    torch.manual_seed(0)
    headed = ModelAdapter(_arch(heads={"domain": 2}), num_classes=K, input_shape=(3, 8, 8), mean=(0.4,) * 3,
                          std=(0.3,) * 3).double().eval()  # fmt: skip
    plain.eval()
    x, _ = _batch()
    head = headed.net.domain
    assert isinstance(head, FeatureHead) and head.features is None
    torch.testing.assert_close(headed(x), plain(x), rtol=0, atol=0)  # the forward is the plain network's
    torch.testing.assert_close(head.take_features(), _features(headed, x))
    with pytest.raises(ModelError, match="no features"):
        head.take_features()
    assert head(torch.zeros(3, 16, dtype=torch.float64)).shape == (3, 2)  # width 4w = 16 → 2 domains
    extra = {k for k in headed.net.state_dict() if k not in plain.net.state_dict()}
    assert extra and all(k.startswith("domain.") for k in extra)
    # a copy of a model holding captured features (with a graph) is a working, independent model
    headed.train()
    headed(x.clone().requires_grad_(True)).sum()
    twin = copy.deepcopy(headed)
    assert twin.net.domain.features is None
    twin(x)
    assert twin.net.domain.features is not None and headed.net.domain.features is not twin.net.domain.features


def test_bad_heads_are_refused() -> None:
    with pytest.raises(ModelError, match="already has an attribute 'linear'"):
        _arch(heads={"linear": 2})
    with pytest.raises(ModelError, match="out_features must be an integer >= 1"):
        _arch(heads={"domain": 0})
    with pytest.raises(ModelError, match="Python identifier"):
        _arch(heads={"my head": 2})
    with pytest.raises(ModelError, match=r"no nn\.Linear classifier"):
        attach_feature_head(nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()), "domain", 2)


def test_dial_on_a_model_without_the_head_says_how_to_build_one() -> None:
    method = get_method("dial", {"eps": EPS, "steps": 1})
    x, y = _batch()
    with pytest.raises(ConfigError, match=r"heads=\{'domain': 2\}"):
        method.step(StepContext(_model(), torch.Generator().manual_seed(0)), x, y)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("nofrost", {}, "nofrost needs eps"),
        ("mixed-at", {"eps": 0.0}, "eps must be > 0"),
        ("nofrost", {"eps": 0.1, "steps": 0}, "steps must be > 0"),
        ("nofrost", {"eps": 0.1, "step_size": -0.01}, "step_size must be > 0"),
        ("nofrost", {"eps": 0.1, "adv_weight": 0.0}, r"adv_weight \(λ\) must be in \(0, 1\]"),
        ("mixed-at", {"eps": 0.1, "adv_weight": 1.5}, r"must be in \(0, 1\]"),
        ("nofrost", {"eps": 0.1, "normalizer_free": False}, "nofrost has no setting 'normalizer_free'"),
        ("nofrost", {"eps": 0.1, "lambda": 0.5}, "Its settings: eps, steps, step_size, random_start, adv_weight"),
        ("dial", {}, "dial needs eps"),
        ("dial", {"eps": 0.1, "kind": "js"}, "kind must be one of kl, ce"),
        ("dial", {"eps": 0.1, "beta": -1.0}, "beta must be >= 0"),
        ("dial", {"eps": 0.1, "domain_weight": float("nan")}, "domain_weight must be >= 0"),
        ("dial", {"eps": 0.1, "steps": 0}, "steps must be > 0"),
        ("dial", {"eps": 0.1, "r": 6.0}, "dial has no setting 'r'"),
    ],
)
def test_bad_settings_are_refused(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_method(name, params)


def test_defaults() -> None:
    assert get_method("nofrost", {"eps": "8/255"}).params() == {
        "eps": pytest.approx(8 / 255), "steps": 10, "step_size": None, "random_start": True, "adv_weight": 0.5,
    }  # fmt: skip
    assert get_method("dial", {"eps": 0.031}).params() == {
        "eps": 0.031, "kind": "kl", "beta": 8.0, "domain_weight": 6.0, "steps": 10, "step_size": None,
        "start_std": 0.001,
    }  # fmt: skip


def _data() -> Dataset:
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (40,), generator=g)
    x = (torch.rand(40, 3, 8, 8, generator=g) * 80 + y[:, None, None, None] * 60).to(torch.uint8)
    return Dataset("toy", "train", x, y, ("a", "b", "c"), torch.arange(40))


def _spec() -> ModelSpec:
    return ModelSpec("tiny", "resnet", "resnet_cifar", 3, (3, 8, 8), (0.5,) * 3, (0.3,) * 3, "toy",
                     {"depth": 8, "width": 4})  # fmt: skip


@pytest.mark.parametrize(
    ("method", "logs"),
    [
        ("nofrost", {"clean_loss", "adv_loss", "clean_accuracy"}),
        ("dial", {"natural_loss", "robust_loss", "domain_loss", "domain_accuracy", "grl_alpha"}),
    ],
)
def test_one_epoch_trains_and_exports_the_model_the_method_needs(tmp_path: Path, method: str, logs: set[str]) -> None:
    from robustlab.models.loading import assemble, load_safetensors_model
    from robustlab.train.standalone import fit_and_export

    epochs: list[object] = []
    cfg = TrainConfig(epochs=1, batch_size=20, lr=0.05, augment="none", method=method,
                      method_params={"eps": 0.1, "steps": 2})  # fmt: skip
    path = tmp_path / "m.safetensors"
    spec = fit_and_export(_spec(), _data(), None, cfg, tmp_path / "run", path, on_epoch=epochs.append)
    (epoch,) = epochs
    assert np.isfinite(epoch.train_loss) and epoch.inner_passes == 2 * 40  # type: ignore[attr-defined]
    assert set(epoch.logs) == logs  # type: ignore[attr-defined]
    loaded = load_safetensors_model(path)  # the exported model, as the sidecar describes it
    x = _data().x[:4].double() / 255
    if method == "nofrost":
        assert spec.arch_kwargs["norm_layer"] == "none"
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in loaded.modules())
        return
    assert spec.arch_kwargs["heads"] == {"domain": 2}
    assert isinstance(loaded.net.domain, FeatureHead)  # the export keeps the head; its forward ignores it
    assert loaded(x.float()).shape == (4, 3)
    # into the plain architecture: refused as it is, loaded once the head's keys are declared dropped
    plain = dataclasses.replace(spec, arch_kwargs={"depth": 8, "width": 4})
    with pytest.raises(ModelError, match=r"unexpected keys.*domain"):
        assemble(plain, read_safetensors(path))
    assert spec.weights is not None
    plain = dataclasses.replace(plain, weights=dataclasses.replace(spec.weights, drop_keys=("domain.*",)))
    assert plain.weights is not None
    model = assemble(plain, read_safetensors(path), drop_keys=plain.weights.drop_keys).eval()
    assert not hasattr(model.net, "domain")
    torch.testing.assert_close(model(x.float()), loaded(x.float()))
    assert ModelSpec.from_dict(plain.to_dict()).weights == plain.weights  # drop_keys survive the sidecar
