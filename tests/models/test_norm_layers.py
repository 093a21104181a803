"""Normalisation as a choice (issue 15): multi-branch batch norm, routes, DuBIN, normalizer-free, selector."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlab.errors import ConfigError, ModelError
from robustlab.models import ModelSpec, build_architecture, save_weights
from robustlab.models.loading import assemble, load_safetensors_model
from robustlab.models.norm_layers import (
    DuBIN,
    MultiBatchNorm2d,
    SkipInit,
    WSConv2d,
    convert_norm,
    route,
    routes_of,
    split,
)
from robustlab.models.weights import load_state_dict_strict


def _resnet(seed: int = 0, **kw: object) -> nn.Module:
    torch.manual_seed(seed)
    return build_architecture("resnet_cifar", depth=8, width=4, num_classes=10, **kw)


def _warm(net: nn.Module, seed: int = 1) -> None:
    """Give every batch norm non-trivial statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + 0.5 * torch.rand(m.running_var.shape, generator=g))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("train", [False, True])
def test_converted_model_on_main_route_equals_original_bit_for_bit(dtype: torch.dtype, train: bool) -> None:
    plain = _resnet().to(dtype)
    _warm(plain)
    multi = _resnet().to(dtype)
    multi.load_state_dict(plain.state_dict())
    convert_norm(multi, "multibn", routes=("adv",))
    # branch main keeps the original keys: the plain state dict loads strictly with the aux branches dropped
    assert set(plain.state_dict()) < set(multi.state_dict())
    assert all(".aux.adv." in k for k in set(multi.state_dict()) - set(plain.state_dict()))
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=dtype)
    plain.train(train)
    multi.train(train)
    with route(multi, "main"):
        a = multi(x)
    b = plain(x)
    assert torch.equal(a, b)
    if train:  # the running statistics moved identically too
        converted = multi.state_dict()
        for k, v in plain.state_dict().items():
            assert torch.equal(v, converted[k]), k


def test_each_branch_statistics_move_only_for_its_own_rows() -> None:
    net = _resnet(norm_layer="multibn", routes=("adv",)).train()
    bn = net.bn1
    assert isinstance(bn, MultiBatchNorm2d)
    g = torch.Generator().manual_seed(3)
    clean, adv = torch.rand(4, 3, 32, 32, generator=g), 3 + torch.rand(4, 3, 32, 32, generator=g)
    before_main, before_adv = bn.running_mean.clone(), bn.aux["adv"].running_mean.clone()
    # what each branch's statistics should become: the stem convolution's output on that branch's rows alone
    with torch.no_grad():
        h_clean, h_adv = net.conv1(clean), net.conv1(adv)
    want_main = 0.9 * before_main + 0.1 * h_clean.mean((0, 2, 3))
    want_adv = 0.9 * before_adv + 0.1 * h_adv.mean((0, 2, 3))
    with route(net, split(main=4, adv=4)):
        net(torch.cat([clean, adv]))
    torch.testing.assert_close(bn.running_mean, want_main, rtol=0, atol=1e-6)
    torch.testing.assert_close(bn.aux["adv"].running_mean, want_adv, rtol=0, atol=1e-6)
    # a single route moves its branch only
    main_now = bn.running_mean.clone()
    with route(net, "adv"):
        net(adv)
    assert torch.equal(bn.running_mean, main_now)
    assert not torch.equal(bn.aux["adv"].running_mean, want_adv)


def test_split_route_equals_separate_forwards() -> None:
    net = _resnet(norm_layer="multibn", routes=("adv",)).train()
    twin = _resnet(norm_layer="multibn", routes=("adv",)).train()
    twin.load_state_dict(net.state_dict())
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with route(net, split(main=3, adv=5)):
        both = net(x)
    with route(twin, "main"):
        a = twin(x[:3])
    with route(twin, "adv"):
        b = twin(x[3:])
    torch.testing.assert_close(both, torch.cat([a, b]), rtol=0, atol=1e-6)


def test_dubin_is_instance_norm_on_first_half_and_dual_bn_on_rest() -> None:
    layer = DuBIN(8, routes=("aux",)).double().train()
    with torch.no_grad():
        layer.IN.weight.copy_(torch.linspace(0.5, 1.5, 4))
        layer.IN.bias.copy_(torch.linspace(-0.2, 0.2, 4))
        layer.BN.aux["aux"].weight.fill_(2.0)
    x = torch.randn(5, 8, 6, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for name in ("main", "aux"):
        bn = layer.BN if name == "main" else layer.BN.aux["aux"]
        mean = x[:, :4].mean((2, 3), keepdim=True)
        var = x[:, :4].var((2, 3), unbiased=False, keepdim=True)
        inst = (x[:, :4] - mean) / torch.sqrt(var + 1e-5) * layer.IN.weight.view(1, -1, 1, 1)
        inst = inst + layer.IN.bias.view(1, -1, 1, 1)
        bmean = x[:, 4:].mean((0, 2, 3), keepdim=True)
        bvar = x[:, 4:].var((0, 2, 3), unbiased=False, keepdim=True)
        batch = (x[:, 4:] - bmean) / torch.sqrt(bvar + 1e-5) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
        with route(layer, name):
            got = layer(x)
        torch.testing.assert_close(got, torch.cat([inst, batch], 1), rtol=0, atol=1e-12)


def test_dubin_conversion_puts_dubin_at_the_declared_sites() -> None:
    net = _resnet(norm_layer="dubin", routes=("aux",))
    dubin = sorted(n for n, m in net.named_modules() if isinstance(m, DuBIN))
    assert dubin and all(n.endswith(".bn1") and n.startswith("layer") for n in dubin)
    assert isinstance(net.bn1, MultiBatchNorm2d) and isinstance(net.layer1[0].bn2, MultiBatchNorm2d)
    assert routes_of(net) == ("main", "aux")


def test_normalizer_free_weights_are_standardised_and_residual_branches_start_at_identity() -> None:
    net = _resnet(norm_layer="none")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, WSConv2d)]
    assert len(convs) == sum(1 for m in _resnet().modules() if isinstance(m, nn.Conv2d))
    for conv in convs:
        w = conv.standardized_weight().detach().flatten(1)  # (out, fan_in)
        torch.testing.assert_close(w.mean(1), torch.zeros(len(w)), rtol=0, atol=1e-5)
        raw = conv.weight.detach().flatten(1).var(1, unbiased=False)  # unit up to the standardisation's eps
        torch.testing.assert_close(w.var(1, unbiased=False), raw / (raw + conv.ws_eps), rtol=0, atol=1e-6)
        assert (raw / (raw + conv.ws_eps) > 1 - 2e-4).all()
    gains = [n for n, m in net.named_modules() if isinstance(m, SkipInit)]
    assert gains and all(n.endswith(".bn2") for n in gains)
    # with every SkipInit gain at 0 each block is its shortcut: the output does not depend on conv2's weights
    x = torch.rand(2, 3, 32, 32)
    out = net(x)
    with torch.no_grad():
        net.layer1[0].conv2.weight.mul_(-3.0)
    torch.testing.assert_close(net(x), out)
    # the scale: conv outputs are N(0, γ²) on unit-normal inputs, and γ makes the ReLU's output variance 1
    conv = WSConv2d(64, 64, 3, padding=1, bias=False)
    z = torch.randn(64, 64, 8, 8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        h = F.relu(conv(z))[:, :, 1:-1, 1:-1]
    assert 0.9 < h.var().item() < 1.1


def test_selector_gradients_flow_through_soft_and_hard_routes() -> None:
    from robustlab.models.norm_layers import routed_forward

    net = _resnet(norm_layer="multibn", routes=("linf", "l2"), selector=True).eval()
    # branches with different statistics: with identical ones every route gives the same logits, the selector's
    # exact gradient is 0 and only rounding (which differs between CPUs) made it non-zero
    _warm(net)
    x = torch.rand(4, 3, 32, 32)
    with route(net, "linf"), torch.no_grad():
        linf = net(x)
    with route(net, "l2"), torch.no_grad():
        assert (net(x) - linf).abs().max() > 1e-3  # the routes differ
    for name in ("select", "select-hard"):
        net.zero_grad()
        out = routed_forward(net, x, name)
        out.logsumexp(1).sum().backward()
        grads = [p.grad for p in net.selector.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0, name


def test_soft_routing_in_train_mode_is_refused() -> None:
    net = _resnet(norm_layer="multibn", routes=("adv",)).train()
    with pytest.raises(ModelError, match="soft routing needs eval mode"), route(net, torch.full((2, 2), 0.5)):
        net(torch.rand(2, 3, 32, 32))


# -- bad input ------------------------------------------------------------------------------------------------


def _spec(**kw: object) -> ModelSpec:
    base = ModelSpec(
        name="tiny",
        family="resnet",
        arch="resnet_cifar",
        num_classes=10,
        input_shape=(3, 32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        dataset="cifar10",
        arch_kwargs={"depth": 8, "width": 4},
    )
    return dataclasses.replace(base, **kw)


def test_unknown_route_is_a_clear_error() -> None:
    spec = _spec(arch_kwargs={"depth": 8, "width": 4, "norm_layer": "multibn", "routes": ["adv"]})
    model = assemble(spec)
    assert model.route == "main" and model.routes == ("main", "adv")
    with pytest.raises(ModelError, match=r"unknown route 'avd': the model's routes are main, adv"):
        model.with_route("avd")
    with pytest.raises(ModelError, match="unknown route 'adv': the model has a single batch norm"):
        assemble(_spec(route="adv"))
    with pytest.raises(ModelError, match="needs a model with a selector"):
        model.with_route("select")


def test_adapter_route_and_explicit_route_block() -> None:
    spec = _spec(arch_kwargs={"depth": 8, "width": 4, "norm_layer": "multibn", "routes": ["adv"]})
    model = assemble(spec).eval()
    with torch.no_grad():
        for m in model.net.modules():
            if isinstance(m, MultiBatchNorm2d):
                m.aux["adv"].running_mean.fill_(0.3)
    x = torch.rand(3, 3, 32, 32)
    main, adv = model(x), model.with_route("adv")(x)
    assert not torch.allclose(main, adv)
    assert model.with_route("adv").name == "tiny@adv"
    with route(model.net, "adv"):  # an explicit block wins over the adapter's route
        torch.testing.assert_close(model(x), adv)


def test_multi_branch_checkpoint_into_plain_model_needs_declared_drops(tmp_path: object) -> None:
    from pathlib import Path

    multi_spec = _spec(arch_kwargs={"depth": 8, "width": 4, "norm_layer": "multibn", "routes": ["adv"]})
    multi = assemble(multi_spec)
    _warm(multi.net)
    path = Path(str(tmp_path)) / "m.safetensors"
    saved = save_weights(multi.net, multi_spec, path)
    assert saved.arch_kwargs["norm_layer"] == "multibn"
    again = load_safetensors_model(path)  # the sidecar rebuilds the multi-branch model
    assert again.routes == ("main", "adv") and again.route == "main"
    state = {k: v for k, v in multi.net.state_dict().items()}
    plain = build_architecture("resnet_cifar", depth=8, width=4, num_classes=10)
    with pytest.raises(ModelError, match=r"auxiliary batch-norm routes adv.*drop_keys"):
        load_state_dict_strict(plain, state)
    load_state_dict_strict(plain, state, drop_keys=("*.aux.*",))
    x = torch.rand(2, 3, 32, 32)
    multi.eval(), plain.eval()
    torch.testing.assert_close(plain((x - 0.5) / 0.25), multi(x), rtol=0, atol=0)


def test_convert_norm_without_batch_norms_is_a_clear_error() -> None:
    net = _resnet(norm_layer="multibn", routes=("adv",))
    with pytest.raises(ModelError, match=r"has no BatchNorm2d layers to convert.*MultiBatchNorm2d"):
        convert_norm(net, "dubin")
    with pytest.raises(ModelError, match="has no norm layers"):
        convert_norm(nn.Sequential(nn.Conv2d(3, 4, 3)), "multibn")
    with pytest.raises(ConfigError, match="unknown norm layer 'batchnorm'; choose one of bn, multibn, dubin"):
        build_architecture("resnet_cifar", depth=8, norm_layer="batchnorm")


@pytest.mark.slow  # builds every architecture (≈ 6–15 s); .ci/run runs it right after the default run
def test_every_zoo_architecture_takes_a_norm_layer() -> None:
    """Each architecture converts, and its main route computes what the plain one does, bit for bit."""
    from robustlab.models import ARCHITECTURES

    for name in ARCHITECTURES.names():
        mnist = name in ("fast_mnist", "lenet", "mlp")
        kw = {"in_channels": 1} if mnist else {}
        torch.manual_seed(0)
        try:
            plain = build_architecture(name, **kw).eval()
            torch.manual_seed(0)
            multi = build_architecture(name, norm_layer="multibn", routes=("adv",), **kw).eval()
        except ModelError as exc:  # an architecture without batch norms says so
            assert "has no norm layers" in str(exc), name
            continue
        assert routes_of(multi) == ("main", "adv"), name
        assert not any(type(m) is nn.BatchNorm2d for m in build_architecture(name, norm_layer="gn", **kw).modules())
        x = torch.rand(2, *((1, 28, 28) if mnist else (3, 32, 32)))
        with torch.no_grad():
            assert torch.equal(plain(x), multi(x)), name
