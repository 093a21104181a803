"""augmax and augmix (issue 15): each loss equals a hand-written version on a float64 DuBIN network with the same
draws; the mixing weights stay on the simplex and the inner maximisation raises the loss; colour ops are skipped
and recorded on single-channel images; bad settings are clear errors; one epoch trains and exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.data import Dataset
from robustlab.errors import ConfigError
from robustlab.models import ModelAdapter, ModelSpec, build_architecture
from robustlab.models.adapter import eval_mode
from robustlab.models.norm_layers import DuBIN, route
from robustlab.train import TrainConfig
from robustlab.train.methods import StepContext, get_method
from robustlab.transforms import augmax_mix, augmix_mix, sample_chains

pytestmark = pytest.mark.usefixtures("one_thread")
K = 4


def _model(norm: str = "dubin") -> ModelAdapter:
    torch.manual_seed(0)
    net = build_architecture("resnet_cifar", depth=8, width=4, num_classes=K, norm_layer=norm, routes=["aux"])
    return ModelAdapter(net, num_classes=K, input_shape=(3, 16, 16), mean=(0.4,) * 3, std=(0.3,) * 3).double().train()


def _batch(n: int = 6) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(n, 3, 16, 16, generator=g, dtype=torch.float64) * 255).round() / 255
    return x, torch.randint(0, K, (n,), generator=g)


def _js(*logits: Tensor) -> Tensor:
    """The Jensen–Shannon term written out: Σ_i Σ_rows p_i (log p_i − log M) / (n · B)."""
    ps = [torch.softmax(z, 1) for z in logits]
    m = torch.clamp(sum(ps) / len(ps), 1e-7, 1)  # type: ignore[arg-type]
    total = sum((p * (p.log() - m.log())).sum() for p in ps)
    return torch.as_tensor(total) / (len(ps) * len(logits[0]))


def _hand_augmax(model: ModelAdapter, x: Tensor, y: Tensor, g: torch.Generator, steps: int, tau: int) -> Tensor:
    chains = sample_chains(x, g)
    start = torch.rand(len(x), 4, generator=g, dtype=x.dtype)
    m, q = start[:, 0].clone(), start[:, 1:].clone()
    left = [tau] * len(x)
    with route(model, "aux"), eval_mode(model):
        for _ in range(steps):
            m.requires_grad_(True)
            q.requires_grad_(True)
            logits = model(augmax_mix(x, chains, m, q))
            if tau > 0:
                for i in range(len(x)):
                    if int(logits[i].argmax()) != int(y[i]) and left[i] > 0:
                        left[i] -= 1
                if all(v == 0 for v in left):
                    break
            gm, gq = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), [m, q])
            with torch.no_grad():
                for i in range(len(x)):
                    if tau == 0 or left[i] > 0:
                        m[i] = min(1.0, max(0.0, float(m[i] + 0.1 * torch.sign(gm[i]))))
                        q[i] = q[i] + 0.1 * torch.sign(gq[i])
            m, q = m.detach(), q.detach()
    x_max = augmax_mix(x, chains, m, q)
    with route(model, "aux"):
        logits_max = model(x_max)
    x_mix = augmix_mix(x, sample_chains(x, g), g)
    with route(model, "main"):
        logits_mix = model(x_mix)
        logits = model(x)
    return F.cross_entropy(logits, y) + 10.0 * _js(logits, logits_max, logits_mix)


@pytest.mark.parametrize(("steps", "tau"), [(3, 1), (3, 0)])
def test_augmax_loss_equals_the_hand_written_one(steps: int, tau: int) -> None:
    x, y = _batch()
    ours, theirs = _model(), _model()
    method = get_method("augmax", {"steps": steps, "tau": tau})
    out = method.step(StepContext(ours, torch.Generator().manual_seed(5)), x, y)
    expected = _hand_augmax(theirs, x, y, torch.Generator().manual_seed(5), steps, tau)
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    for a, b in zip(
        torch.autograd.grad(out.loss, list(ours.parameters())),
        torch.autograd.grad(expected, list(theirs.parameters())),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # the three forward passes moved the statistics of their own branches identically
    for (name, a), b in zip(ours.net.state_dict().items(), theirs.net.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_augmix_loss_equals_the_hand_written_one() -> None:
    x, y = _batch()
    ours, theirs = _model("bn"), _model("bn")
    out = get_method("augmix").step(StepContext(ours, torch.Generator().manual_seed(7)), x, y)
    g = torch.Generator().manual_seed(7)
    mix1 = augmix_mix(x, sample_chains(x, g), g)
    mix2 = augmix_mix(x, sample_chains(x, g), g)
    logits = theirs(x)
    expected = F.cross_entropy(logits, y) + 10.0 * _js(logits, theirs(mix1), theirs(mix2))
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)


def test_mixing_weights_stay_on_the_simplex_and_the_inner_maximisation_raises_the_loss() -> None:
    x, y = _batch(16)
    model = _model()
    method = get_method("augmax", {"steps": 6, "tau": 0})
    ctx = StepContext(model, torch.Generator().manual_seed(1))
    chains = sample_chains(x, torch.Generator().manual_seed(2))
    x_max, taken = method.maximise(ctx, x, y, chains)  # type: ignore[attr-defined]
    assert taken == 6
    # m in [0, 1] and softmax weights on the simplex make x_max a convex combination of x and the chains: every
    # pixel lies between their extremes (a weight off the simplex or m outside [0, 1] would leave that hull)
    stack = torch.cat([x.unsqueeze(0), chains])
    assert (x_max >= stack.amin(0) - 1e-12).all() and (x_max <= stack.amax(0) + 1e-12).all()
    with route(model, "aux"), eval_mode(model), torch.no_grad():
        g = torch.Generator().manual_seed(1)
        start = torch.rand(16, 4, generator=g, dtype=x.dtype)
        before = F.cross_entropy(model(augmax_mix(x, chains, start[:, 0], start[:, 1:])), y)
        after = F.cross_entropy(model(x_max), y)
    assert after > before


def test_colour_ops_are_skipped_and_recorded_on_single_channel_images() -> None:
    torch.manual_seed(0)
    net = build_architecture("resnet_cifar", depth=8, width=4, num_classes=K, in_channels=1, norm_layer="dubin")
    model = ModelAdapter(net, num_classes=K, input_shape=(1, 16, 16)).double().train()
    x, y = _batch()
    method = get_method("augmax", {"steps": 1, "ops": "all"})
    out = method.step(StepContext(model, torch.Generator().manual_seed(0)), x[:, :1], y)
    assert method.skipped_ops == ("color",)  # type: ignore[attr-defined]
    assert out.logs["skipped_ops"] == 1
    rgb = get_method("augmax", {"steps": 1, "ops": "all"})
    rgb.step(StepContext(_model(), torch.Generator().manual_seed(0)), x, y)
    assert rgb.skipped_ops == ()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"lam": -1}, "lam (the consistency weight λ) must be >= 0"),
        ({"alpha": 0}, "alpha (the sign step on the mixing weights) must be > 0"),
        ({"ops": "colour"}, "ops must be 'augmax'"),
        ({"width": 0}, "width (chains per image) must be >= 1"),
        ({"tau": -1}, "steps and tau must be >= 0"),
        ({"steps": 3, "eps": 0.1}, "augmax has no setting 'eps'"),
    ],
)
def test_bad_settings_are_clear_errors(params: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        get_method("augmax", params)


@pytest.mark.parametrize("method", ["augmax", "augmix"])
def test_one_epoch_trains_and_exports(tmp_path: Path, method: str) -> None:
    from robustlab.models.loading import load_safetensors_model
    from robustlab.train.standalone import fit_and_export

    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (40,), generator=g)
    x = (torch.rand(40, 3, 16, 16, generator=g) * 80 + y[:, None, None, None] * 60).to(torch.uint8)
    data = Dataset("toy", "train", x, y, ("a", "b", "c"), torch.arange(40))
    spec = ModelSpec("tiny", "resnet", "resnet_cifar", 3, (3, 16, 16), (0.5,) * 3, (0.3,) * 3, "toy",
                     {"depth": 8, "width": 4})  # fmt: skip
    cfg = TrainConfig(epochs=1, batch_size=20, lr=0.05, augment="none", method=method, method_params={"width": 2})
    path = tmp_path / "m.safetensors"
    spec = fit_and_export(spec, data, None, cfg, tmp_path / "run", path)
    loaded = load_safetensors_model(path)
    with torch.no_grad():
        assert np.isfinite(float(loaded(x[:2].float() / 255).sum()))
    if method == "augmax":
        assert spec.arch_kwargs["norm_layer"] == "dubin" and spec.route == "main"
        assert loaded.route == "main" and any(isinstance(m, DuBIN) for m in loaded.modules())
    else:
        assert "norm_layer" not in spec.arch_kwargs
