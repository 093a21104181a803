"""advprop, mdprop and multibn: each loss equals a hand-written version on a float64 multi-branch network (the
same random draws, each branch's forward pass written separately); each batch-norm branch's statistics move only
for its own rows (AdvProp re-implementation bug #8); the attacks run through their own branch; the model layout
each method needs is checked and recorded; the selector's evaluation gives a planted confusion matrix."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab import ConfigError, ModelAdapter
from robustlab.errors import ModelError
from robustlab.models import build_architecture
from robustlab.models.norm_layers import MultiBatchNorm2d, route, routes_of
from robustlab.threat import get_norm
from robustlab.train.methods import StepContext, get_method

pytestmark = pytest.mark.usefixtures("one_thread")

K = 4  # classes
MEAN, STD = (0.4, 0.5, 0.45), (0.25, 0.3, 0.2)


def _model(routes: list[str], selector: bool = False, mean: tuple = MEAN, std: tuple = STD) -> ModelAdapter:
    torch.manual_seed(0)
    net = build_architecture(
        "resnet_cifar", depth=8, width=4, num_classes=K, norm_layer="multibn", routes=routes, selector=selector
    )
    m = ModelAdapter(net, num_classes=K, input_shape=(3, 8, 8), mean=mean, std=std).double()
    with torch.no_grad():  # non-trivial running statistics in every branch, so eval and train mode differ
        for layer in net.modules():
            if isinstance(layer, MultiBatchNorm2d):
                for bn in (layer, *layer.aux.values()):
                    assert isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None
                    bn.running_mean.uniform_(-0.2, 0.2)
                    bn.running_var.uniform_(0.5, 1.5)  # type: ignore[union-attr]
    return m.train()


def _batch(n: int = 6) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, K, (n,), generator=g)


def _constrain(x: Tensor, xa: Tensor, norm: str, eps: float) -> Tensor:
    d = xa - x
    if norm == "linf":
        d = torch.maximum(torch.minimum(d, torch.full_like(d, eps)), torch.full_like(d, -eps))
    else:
        n = d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        d = d * torch.where(n > eps, eps / n.clamp_min(1e-12), torch.ones_like(n))
    return (x + d).clamp(0, 1)


def _pgd(model: nn.Module, x: Tensor, y: Tensor, start: Tensor, norm: str, eps: float, steps: int, step: float,
         targets: Tensor | None = None) -> Tensor:  # fmt: skip
    """PGD written out (the caller chooses the mode and the route): ascend CE(y), or descend CE(targets)."""
    xa = _constrain(x, start, norm, eps)
    for _ in range(steps):
        xa = xa.detach().requires_grad_(True)
        logits = model(xa)
        loss = F.cross_entropy(logits, y, reduction="sum")
        if targets is not None:
            loss = -F.cross_entropy(logits, targets, reduction="sum")
        (g,) = torch.autograd.grad(loss, xa)
        if norm == "linf":
            d = step * g.sign()
        else:
            d = step * g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        xa = _constrain(x, xa.detach() + d, norm, eps)
    return xa.detach()


def _start(x: Tensor, norm: str, eps: float, g: torch.Generator) -> Tensor:
    if norm == "linf":
        return x + (2 * torch.rand(x.shape, generator=g, dtype=x.dtype) - 1) * eps
    return x + get_norm(norm).random_init(x, eps, g)


def _ce_all(parts: list[tuple[Tensor, Tensor]]) -> Tensor:
    """The mean cross-entropy over all rows of (logits, labels) parts."""
    return F.cross_entropy(torch.cat([p for p, _ in parts]), torch.cat([t for _, t in parts]))


# -- advprop ------------------------------------------------------------------------------------------------

ADVPROP = {"eps": 0.05, "steps": 2, "step_size": 0.03}


def _hand_advprop(model: ModelAdapter, x: Tensor, y: Tensor, seed: int, attack: str) -> tuple[Tensor, Tensor]:
    """AdvProp written out: random targets, then the random start, from the run's generator; PGD in eval mode
    through branch adv; then main on the clean rows and adv on the adversarial rows, each forward on its own."""
    g = torch.Generator().manual_seed(seed)
    targets = None
    if attack == "random-target":
        targets = (y + torch.randint(1, K, y.shape, generator=g)) % K
    start = _start(x, "linf", 0.05, g)
    model.eval()
    with route(model, "adv"):
        xa = _pgd(model, x, y, start, "linf", 0.05, 2, max(0.03, 0.05 / 2), targets)
    model.train()
    with route(model, "main"):
        clean = model(x)
    with route(model, "adv"):
        adv = model(xa)
    assert targets is None or bool((targets != y).all())
    return (F.cross_entropy(clean, y) + F.cross_entropy(adv, y)) / 2, xa


@pytest.mark.parametrize("attack", ["random-target", "ce"])
def test_advprop_loss_gradients_and_branch_statistics_equal_the_hand_written_ones(attack: str) -> None:
    x, y = _batch()
    ours = _model(["adv"])
    theirs, shared = copy.deepcopy(ours), copy.deepcopy(ours)
    method = get_method("advprop", {**ADVPROP, "attack": attack})
    ctx = StepContext(ours, torch.Generator().manual_seed(5))
    out = method.step(ctx, x, y)
    expected, xa = _hand_advprop(theirs, x, y, 5, attack)
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    assert out.logits.shape == (len(x), K) and ctx.inner_passes == method.inner_steps() * len(x)
    for a, b in zip(torch.autograd.grad(out.loss, list(ours.parameters())),
                    torch.autograd.grad(expected, list(theirs.parameters())), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # each branch's running statistics: main's from the clean rows alone, adv's from the adversarial rows alone
    buffers = dict(theirs.named_buffers())
    for name, value in ours.named_buffers():
        torch.testing.assert_close(value, buffers[name], rtol=1e-12, atol=1e-14, msg=name)
    # the guard is sharp: the bug of the re-implementation (#8, both halves through one batch norm) differs
    with route(shared, "main"):
        shared(torch.cat([x, xa]))
    bn = "net.bn1.running_mean"
    assert not torch.allclose(dict(shared.named_buffers())[bn], dict(ours.named_buffers())[bn])


def test_advprop_attack_runs_through_the_adv_branch_even_in_train_mode_batch_norm() -> None:
    """attack_bn "train": the attack's forward passes move only adv's statistics (2 attack steps + the outer
    forward = 3 updates); main's equal one train-mode pass of the clean rows alone."""
    x, y = _batch()
    ours = _model(["adv"])
    clean_only = copy.deepcopy(ours)
    ctx = StepContext(ours, torch.Generator().manual_seed(5), attack_bn="train")
    get_method("advprop", ADVPROP).step(ctx, x, y)
    assert ours.training
    with route(clean_only, "main"):
        clean_only(x)
    theirs = dict(clean_only.named_buffers())
    for name, value in ours.named_buffers():
        if ".aux." not in name:
            torch.testing.assert_close(value, theirs[name], rtol=1e-12, atol=1e-14, msg=name)
    layer = ours.net.bn1
    assert int(layer.num_batches_tracked) == 1 and int(layer.aux["adv"].num_batches_tracked) == 3
    # and in eval mode (the default) the attack moves no statistics: one update per branch
    ev = _model(["adv"])
    get_method("advprop", ADVPROP).step(StepContext(ev, torch.Generator().manual_seed(5)), x, y)
    assert int(ev.net.bn1.num_batches_tracked) == 1 and int(ev.net.bn1.aux["adv"].num_batches_tracked) == 1


def test_advprop_defaults_are_the_reference_ones_and_its_layout_is_declared() -> None:
    m = get_method("advprop")
    assert m.params() == {
        "eps": 1 / 255,
        "steps": 1,
        "step_size": 1 / 255,
        "attack": "random-target",
        "random_start": True,
        "norm": "linf",
    }
    assert m.model_kwargs() == {"norm_layer": "multibn", "routes": ["adv"]} and m.inference_route() == "main"
    assert get_method("advprop", {"eps": "2/255"}).params()["eps"] == 2 / 255


def test_advprop_refuses_a_model_without_the_adv_branch() -> None:
    x, y = _batch()
    with pytest.raises(ConfigError, match="missing adv"):
        get_method("advprop", ADVPROP).step(StepContext(_model(["aux"]), torch.Generator()), x, y)


# -- mdprop -------------------------------------------------------------------------------------------------

MDPROP = {"distributions": "linf:0.05,l2:0.4", "steps": 2, "rel_step": 1.5, "random_start": True}


def test_mdprop_loss_equals_the_hand_written_one_with_the_reference_split() -> None:
    """7 rows: rows 0-2 attacked by attacker 1 (L∞) through adv1, rows 3-6 by attacker 2 (L2) through adv2; the
    mean cross-entropy over the 14 rows, each branch's forward pass on its own rows."""
    x, y = _batch(7)
    ours = _model(["adv1", "adv2"])
    theirs = copy.deepcopy(ours)
    method = get_method("mdprop", MDPROP)
    ctx = StepContext(ours, torch.Generator().manual_seed(5))
    out = method.step(ctx, x, y)

    g = torch.Generator().manual_seed(5)
    theirs.eval()
    parts = []
    for (norm, eps, branch), rows in zip([("linf", 0.05, "adv1"), ("l2", 0.4, "adv2")], [slice(0, 3), slice(3, 7)],
                                         strict=True):  # fmt: skip
        targets = (y + torch.randint(1, K, y.shape, generator=g)) % K  # drawn over the whole batch
        start = _start(x, norm, eps, g)
        with route(theirs, branch):
            parts.append(_pgd(theirs, x[rows], y[rows], start[rows], norm, eps, 2, 1.5 * eps / 2, targets[rows]))
    theirs.train()
    logits = []
    for branch, inputs in (("main", x), ("adv1", parts[0]), ("adv2", parts[1])):
        with route(theirs, branch):
            logits.append(theirs(inputs))
    expected = _ce_all([(logits[0], y), (logits[1], y[:3]), (logits[2], y[3:])])
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    for a, b in zip(torch.autograd.grad(out.loss, list(ours.parameters())),
                    torch.autograd.grad(expected, list(theirs.parameters())), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    buffers = dict(theirs.named_buffers())
    for name, value in ours.named_buffers():
        torch.testing.assert_close(value, buffers[name], rtol=1e-12, atol=1e-14, msg=name)
    assert ctx.inner_passes == method.inner_steps() * len(x) and set(out.logs) == {
        "clean_loss",
        "adv1_loss",
        "adv2_loss",
    }
    assert method.model_kwargs() == {"norm_layer": "multibn", "routes": ["adv1", "adv2"]}
    assert method.inference_route() == "main"


# -- multibn ------------------------------------------------------------------------------------------------

MULTIBN = {"linf_eps": 0.05, "l2_eps": 0.4, "steps": 2, "rel_step": 2.0, "mu": 0.7, "corruptions": "extra"}
MULTIBN_ROUTES = ["linf", "l2", "corrupt"]


def _hand_multibn(model: ModelAdapter, x: Tensor, y: Tensor, seed: int, reduction: str = "sum") -> Tensor:
    from robustlab.data.corruptions import corrupt, list_corruptions

    g = torch.Generator().manual_seed(seed)
    model.eval()
    inputs = {"main": x}
    for norm, eps in (("linf", 0.05), ("l2", 0.4)):
        start = _start(x, norm, eps, g)
        with route(model, norm):
            inputs[norm] = _pgd(model, x, y, start, norm, eps, 2, 2.0 * eps / 2)
    names = list_corruptions("extra")
    which = int(torch.randint(len(names), (1,), generator=g))
    severity = int(torch.randint(1, 6, (1,), generator=g))
    seed_c = int(torch.randint(2**62, (1,), generator=g))
    inputs["corrupt"] = corrupt(x, names[which], severity, generator=torch.Generator().manual_seed(seed_c))
    model.train()
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    total = x.new_zeros(())
    for k, branch in enumerate(["main", "linf", "l2", "corrupt"]):
        with route(model, branch):
            ce = F.cross_entropy(model(inputs[branch]), y)
        z = (inputs[branch] - mean.double()) / std.double()
        total = total + ce + 0.7 * F.cross_entropy(model.net.selector(z), torch.full_like(y, k))
    return total / (4 if reduction == "mean" else 1)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_multibn_loss_and_gradients_equal_the_hand_written_ones_and_the_selector_learns(reduction: str) -> None:
    x, y = _batch()
    ours = _model(MULTIBN_ROUTES, selector=True)
    theirs = copy.deepcopy(ours)
    method = get_method("multibn", {**MULTIBN, "reduction": reduction})
    ctx = StepContext(ours, torch.Generator().manual_seed(5))
    out = method.step(ctx, x, y)
    expected = _hand_multibn(theirs, x, y, 5, reduction)
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    g_ours = torch.autograd.grad(out.loss, list(ours.parameters()))
    g_theirs = torch.autograd.grad(expected, list(theirs.parameters()))
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # the selector's gradients flow (it is trained by the loss), and every branch's statistics moved once
    names = [n for n, _ in ours.named_parameters()]
    selector_grads = [gr for n, gr in zip(names, g_ours, strict=True) if n.startswith("net.selector.")]
    assert selector_grads and all(bool(gr.abs().sum() > 0) for gr in selector_grads)
    layer = ours.net.bn1
    assert int(layer.num_batches_tracked) == 1
    assert all(int(layer.aux[r].num_batches_tracked) == 1 for r in MULTIBN_ROUTES)
    assert ctx.inner_passes == method.inner_steps() * len(x) == 2 * 2 * len(x)
    assert {"clean_loss", "linf_loss", "l2_loss", "corrupt_loss", "selector_loss", "selector_accuracy"} <= set(out.logs)


def test_multibn_declares_its_layout_and_inference_route() -> None:
    m = get_method("multibn")
    assert m.model_kwargs() == {"norm_layer": "multibn", "routes": ["linf", "l2", "corrupt"], "selector": True}
    assert m.inference_route() == "select"
    assert m.params()["linf_eps"] == 8 / 255 and m.params()["l2_eps"] == 0.5 and m.params()["mu"] == 1.0
    assert get_method("multibn", {"types": "clean,l2"}).model_kwargs()["routes"] == ["l2"]


@pytest.mark.parametrize(
    ("routes", "selector", "message"),
    [
        (["linf"], True, "selector has 2 branches \\(main, linf\\), fewer than the 4 perturbation types"),
        (["linf", "l2", "corrupt"], False, "has none"),
        (["linf", "l2", "blur"], True, "no branch corrupt"),
        (["linf", "l2", "corrupt", "adv"], True, "adv would be trained by no perturbation type"),
    ],
)
def test_multibn_refuses_a_model_whose_branches_do_not_match_its_types(
    routes: list[str], selector: bool, message: str
) -> None:
    x, y = _batch()
    with pytest.raises(ConfigError, match=message):
        get_method("multibn", MULTIBN).step(StepContext(_model(routes, selector), torch.Generator()), x, y)


def test_a_spec_whose_arch_kwargs_contradict_the_method_is_refused_before_training() -> None:
    from robustlab.models import ModelSpec
    from robustlab.train import TrainConfig
    from robustlab.train.standalone import with_method_needs

    spec = ModelSpec("m", "resnet_cifar", "resnet_cifar", K, (3, 8, 8), MEAN, STD, "toy", {"routes": ["linf"]})
    with pytest.raises(ConfigError, match="drop routes"):
        with_method_needs(spec, TrainConfig(method="multibn"))


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("advprop", {"eps": 0.0}, "eps must be a finite number > 0"),
        ("advprop", {"attack": "targeted"}, "attack must be one of ce, random-target"),
        ("advprop", {"steps": 0}, "steps must be > 0"),
        ("advprop", {"step_size": -1.0}, "step_size must be > 0"),
        ("advprop", {"norm": "l3"}, "unknown norm 'l3'"),
        ("mdprop", {"distributions": "linf:2/255"}, "at least two adversarial distributions"),
        ("mdprop", {"distributions": "linf,l2:0.5"}, "each distribution is norm:eps"),
        ("mdprop", {"distributions": "linf:x,l2:0.5"}, "must be a number"),
        ("mdprop", {"distributions": "linf:0,l2:0.5"}, "must be a finite number > 0"),
        ("mdprop", {"distributions": "lp:0.1,l2:0.5"}, "unknown norm 'lp'"),
        ("mdprop", {"rel_step": 0.0}, "rel_step must be > 0"),
        ("multibn", {"types": "linf,l2"}, "types must include clean"),
        ("multibn", {"types": "clean"}, "at least two perturbation types"),
        ("multibn", {"types": "clean,linf,linf"}, "each perturbation type once"),
        ("multibn", {"types": "clean,lnf"}, "Did you mean: linf"),
        ("multibn", {"linf_eps": -0.1}, "linf_eps must be a finite number > 0"),
        ("multibn", {"mu": -1.0}, "mu must be >= 0"),
        ("multibn", {"max_severity": 6}, "max_severity must be in 1..5"),
        ("multibn", {"reduction": "max"}, "reduction must be one of sum, mean"),
        ("multibn", {"corruptions": "gausian_noise"}, "Did you mean: gaussian_noise"),
    ],
)
def test_bad_settings_are_refused(name: str, params: dict, message: str) -> None:
    from robustlab.errors import UnknownNameError

    with pytest.raises((ConfigError, UnknownNameError), match=message):
        get_method(name, params)


# -- the selector's evaluation ------------------------------------------------------------------------------


def _planted() -> ModelAdapter:
    """A selector that routes by brightness: the mean of the 3x3 local means of the (un-normalised: mean 0, std 1)
    image, max-pooled; brighter than 0.27 → branch ``bright``, else ``main``; never ``linf``."""
    model = _model(["linf", "bright"], selector=True, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)).eval()
    body = model.net.selector.body
    with torch.no_grad():
        for p in body.parameters():
            p.zero_()
        body[0].weight[0] = 1 / 27  # channel 0: the local mean
        body[3].weight[0, 0, 1, 1] = 1.0  # passed on
        body[7].bias.copy_(torch.tensor([0.0, -100.0, -100 * 0.27], dtype=torch.float64))
        body[7].weight[2, 0] = 100.0
    return model


def test_selector_confusion_on_a_planted_selector_gives_the_known_matrix() -> None:
    from robustlab.attacks import attack
    from robustlab.metrics.routing import Perturbation, routing_report, selector_confusion

    model = _planted()
    g = torch.Generator().manual_seed(1)
    x = 0.1 + 0.1 * torch.rand(10, 3, 8, 8, generator=g, dtype=torch.float64)  # dark: brightness below 0.21
    y = torch.randint(0, K, (10,), generator=g)
    perturbations = {
        "main": Perturbation.clean(),
        "linf": Perturbation.pgd("linf", 2 / 255, steps=3),  # too small to move the brightness across 0.27
        "bright": Perturbation.corrupted("brightness", 5),  # +0.3 on the HSV value: ×2.5 on these pixels
    }
    known = torch.tensor([[10, 0, 0], [10, 0, 0], [0, 0, 10]])
    assert torch.equal(selector_confusion(model, x, y, perturbations), known)
    report = routing_report(model, x, y, perturbations, routes=("select", "select-hard", "linf"))
    assert report.branches == ("main", "linf", "bright") == routes_of(model.net)
    for r in ("select", "select-hard", "linf"):
        assert torch.equal(report.confusion[r], known), r
    assert report.routing_accuracy("select") == pytest.approx(20 / 30)
    # the robust accuracies are those of the route: the attack runs against model.with_route(route)
    soft = model.with_route("select")
    clean_acc = float((soft.predict(x) == y).double().mean())
    assert report.accuracy["select"]["main"] == pytest.approx(clean_acc)
    res = attack(soft, x, y, "pgd", norm="linf", eps=2 / 255, steps=3, seed=0)
    assert report.accuracy["select"]["linf"] == pytest.approx(float(res.robust.double().mean()))
    assert report.accuracy["select"]["linf"] <= clean_acc
    assert json.loads(json.dumps(report.to_dict()))["confusion"]["select"] == known.tolist()


def test_selector_confusion_refuses_what_it_cannot_evaluate() -> None:
    from robustlab.metrics.routing import Perturbation, selector_confusion

    x, y = _batch(2)
    model = _planted()
    with pytest.raises(ConfigError, match="no perturbation for bright"):
        selector_confusion(model, x, y, {"main": Perturbation.clean(), "linf": Perturbation.clean()})
    with pytest.raises(ConfigError, match="unknown branch\\(es\\) adv"):
        selector_confusion(model, x, y, {"main": Perturbation.clean(), "adv": Perturbation.clean()})
    with pytest.raises(ModelError, match="no selector"):
        selector_confusion(_model(["adv"]).eval(), x, y, {"main": Perturbation.clean()})


# -- a tiny training run of each method ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "route_name"),
    [
        ("advprop", {"eps": "2/255"}, "main"),
        ("mdprop", {}, "main"),
        ("multibn", {"steps": 1}, "select"),
    ],
)
def test_one_epoch_of_each_method_trains_and_the_saved_spec_records_its_layout(
    tmp_path: Path, name: str, params: dict, route_name: str
) -> None:
    from robustlab.data import Dataset
    from robustlab.models import ModelSpec
    from robustlab.train import TrainConfig
    from robustlab.train.standalone import fit_and_export

    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, K, (40,), generator=g)
    x = (torch.rand(40, 3, 8, 8, generator=g) * 40 + y[:, None, None, None] * 50).to(torch.uint8)
    train = Dataset("npz:/toy.npz", "train", x, y, ("a", "b", "c", "d"), torch.arange(40))
    spec = ModelSpec("toy", "resnet_cifar", "resnet_cifar", K, (3, 8, 8), MEAN, STD, "toy", {"depth": 8, "width": 4})
    cfg = TrainConfig(epochs=1, batch_size=20, lr=0.05, method=name, method_params=params, monitor_n=0)
    method = cfg.training_method()
    out = fit_and_export(spec, train, None, cfg, tmp_path / "run", tmp_path / "m.safetensors")
    assert out.route == route_name == (method.inference_route() or "main")
    assert {k: out.arch_kwargs[k] for k in method.model_kwargs()} == method.model_kwargs()
    assert out.arch_kwargs["depth"] == 8
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["route"] == route_name and sidecar["arch_kwargs"]["routes"] == method.model_kwargs()["routes"]
    assert 0.0 <= out.metrics["train_accuracy"] <= 1.0
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 1 and epochs[0]["train_loss"] > 0
