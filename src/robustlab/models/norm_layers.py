"""Normalisation as a choice: multi-branch batch norm, DuBIN, group norm, normalizer-free layers, and routes.

The architectures build plain :class:`torch.nn.BatchNorm2d` layers; :func:`convert_norm` swaps them afterwards
without touching the architecture code (every architecture takes ``norm_layer`` through
:func:`robustlab.models.build_architecture`, which calls it):

- ``"bn"``: unchanged.
- ``"multibn"``: :class:`MultiBatchNorm2d`, one batch norm per *route*. Branch ``"main"`` is the original layer
  itself (same state-dict keys, so a converted model loads a plain checkpoint strictly); the other branches live
  under ``<layer>.aux.<route>``.
- ``"dubin"``: :class:`DuBIN` (instance norm on the first half of the channels, a multi-branch batch norm on the
  rest) at the architecture's declared sites (its ``dubin_sites``; every batch norm when it declares none), and a
  :class:`MultiBatchNorm2d` everywhere else (AugMax, Wang et al. 2021).
- ``"gn"``: :class:`torch.nn.GroupNorm`.
- ``"none"``: normalizer-free: every batch norm removed, every convolution weight-standardised
  (:class:`WSConv2d`), and the batch norm that ends each residual branch (the architecture's
  ``residual_norms``) replaced by a :class:`SkipInit` gain that starts at 0 (NoFrost; Brock et al. 2021;
  De & Smith 2020).

**Routes.** Which branch a multi-branch layer uses is never decided by the position in the batch implicitly: it is
the *route*, set for a block with :func:`route` — a branch name for the whole batch (``"main"``, ``"adv"``), an
explicit per-row assignment (:func:`split`, e.g. the first 64 rows to ``main`` and the next 64 to ``adv``), or soft
per-row weights over the branches (a selector's softmax; eval mode only, since a branch's batch statistics must
come from its own inputs). Outside any :func:`route` block a layer uses its *inference route*
(:func:`set_inference_route`, ``"main"`` unless set), which a saved model records in its spec.

References:
    Xie et al., "Adversarial Examples Improve Image Recognition" (AdvProp), CVPR 2020.
    Wang et al., "AugMax: Adversarial Composition of Random Augmentations for Robust Training", NeurIPS 2021.
    Wang et al., "Removing Batch Normalization Boosts Adversarial Training" (NoFrost), ICML 2022.
    Brock, De, Smith, "Characterizing signal propagation to close the performance gap in unnormalized ResNets",
    ICLR 2021.
    De, Smith, "Batch Normalization Biases Residual Blocks Towards the Identity Function in Deep Networks"
    (SkipInit), NeurIPS 2020.
    Lo, Patel, "Defending Against Multiple and Unforeseen Adversarial Videos" (MultiBN), IEEE TIP 2021.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.errors import ConfigError, ModelError

#: The first branch of every multi-branch layer: the original batch norm.
MAIN = "main"

#: What :func:`convert_norm` can turn batch norms into.
NORM_KINDS = ("bn", "multibn", "dubin", "gn", "none")

#: The gain of ReLU for weight-standardised convolutions: sqrt(2 / (1 - 1/π)), keeping unit variance through
#: conv → ReLU (Brock et al. 2021).
RELU_GAMMA = math.sqrt(2.0 / (1.0 - 1.0 / math.pi))


@dataclass(frozen=True)
class Split:
    """An explicit per-row route: consecutive runs of rows, each through one branch.

    Attributes:
        parts: ``(branch, rows)`` pairs in batch order.
    """

    parts: tuple[tuple[str, int], ...]

    @property
    def rows(self) -> int:
        """Total rows."""
        return sum(n for _, n in self.parts)


def split(**parts: int) -> Split:
    """A per-row route: ``split(main=64, adv=64)`` sends rows 0–63 through ``main`` and 64–127 through ``adv``."""
    for name, n in parts.items():
        if not isinstance(n, int) or n < 0:
            raise ConfigError(f"split: {name} must be a row count >= 0, got {n!r}")
    return Split(tuple(parts.items()))


RouteSpec = str | Split | Tensor


class _Routed(nn.Module):
    """What :func:`route` talks to: a layer with named branches."""

    _routing: RouteSpec | None
    inference_route: str

    def branches(self) -> tuple[str, ...]:
        raise NotImplementedError


class MultiBatchNorm2d(nn.BatchNorm2d, _Routed):
    """A batch norm with one branch per route: ``main`` (this layer's own parameters and statistics) and
    auxiliary branches under ``aux.<route>``.

    Each branch's running statistics move only for the rows routed to it (a test checks it).

    Args:
        num_features: Channels.
        routes: Names of the auxiliary branches (not ``"main"``).
        eps, momentum, affine, track_running_stats: As :class:`torch.nn.BatchNorm2d`.

    Shape:
        input: (B, C, H, W) → (B, C, H, W)
    """

    def __init__(
        self,
        num_features: int,
        routes: Sequence[str] = ("aux",),
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        routes = tuple(routes)
        if not routes or MAIN in routes or len(set(routes)) != len(routes):
            raise ConfigError(
                f"a multi-branch batch norm needs distinct auxiliary route names other than {MAIN!r}, got {routes}"
            )
        self.aux = nn.ModuleDict(
            {r: nn.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats) for r in routes}
        )
        self._routing = None
        self.inference_route = MAIN

    def branches(self) -> tuple[str, ...]:
        return (MAIN, *self.aux.keys())

    def _run(self, name: str, x: Tensor) -> Tensor:
        if name == MAIN:
            return super().forward(x)
        out: Tensor = self.aux[name](x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return _dispatch(self, x, self._run)

    def extra_repr(self) -> str:
        return f"{self.num_features}, routes={self.branches()}"


def _dispatch(layer: _Routed, x: Tensor, run: Callable[[str, Tensor], Tensor]) -> Tensor:
    """Apply the layer's current route to ``x``: one branch, an explicit split of the rows, or soft weights."""
    spec = layer._routing if layer._routing is not None else layer.inference_route
    names = layer.branches()
    if isinstance(spec, str):
        if spec not in names:
            raise ModelError(_unknown_route(spec, names))
        return run(spec, x)
    if isinstance(spec, Split):
        if spec.rows != len(x):
            raise ModelError(f"the route splits {spec.rows} rows, but the batch has {len(x)}")
        for name, _ in spec.parts:
            if name not in names:
                raise ModelError(_unknown_route(name, names))
        # torch.split, not slicing: a slice's backward writes its gradient into a zero tensor of the whole batch
        # (one per part), split's backward is one concatenation (measured: 1.27× → 1.00× a plain BN, fwd + bwd)
        chunks = torch.split(x, [n for _, n in spec.parts])
        return torch.cat([run(name, chunk) for (name, n), chunk in zip(spec.parts, chunks, strict=True) if n])
    weights = spec  # (B, K) soft weights over the branches, in branch order
    if weights.shape != (len(x), len(names)):
        raise ModelError(
            f"soft route weights have shape {tuple(weights.shape)}; expected ({len(x)}, {len(names)}) "
            f"for the branches {names}"
        )
    if layer.training:
        raise ModelError(
            "soft routing needs eval mode: in train mode every branch would take batch statistics from rows "
            "that are not its own; route the training rows explicitly with split(...)"
        )
    w = weights.to(x.dtype)
    out = sum(w[:, k].view(-1, *([1] * (x.dim() - 1))) * run(name, x) for k, name in enumerate(names))
    assert isinstance(out, Tensor)
    return out


class DuBIN(nn.Module):
    """Dual batch-and-instance norm: instance norm (affine) on the first ``ratio`` of the channels, a
    :class:`MultiBatchNorm2d` on the rest (AugMax's ``DuBIN``, ``ratio`` 0.5).

    Shape:
        input: (B, C, H, W) → (B, C, H, W)
    """

    def __init__(self, num_features: int, routes: Sequence[str] = ("aux",), ratio: float = 0.5) -> None:
        super().__init__()
        self.n_instance = int(num_features * ratio)
        if not 0 < self.n_instance < num_features:
            raise ConfigError(f"DuBIN needs 0 < {ratio} · {num_features} channels < {num_features}")
        self.IN = nn.InstanceNorm2d(self.n_instance, affine=True)
        self.BN = MultiBatchNorm2d(num_features - self.n_instance, routes)

    def forward(self, x: Tensor) -> Tensor:
        instance, batch = torch.split(x, [self.n_instance, x.shape[1] - self.n_instance], dim=1)  # see _dispatch
        return torch.cat([self.IN(instance), self.BN(batch)], dim=1)


class WSConv2d(nn.Conv2d):
    """A weight-standardised convolution: each output channel's weight is standardised (zero mean, unit variance
    over its fan-in), then scaled by ``gamma / sqrt(fan_in)`` and a learnable per-channel ``gain``
    (``ScaledStdConv2d`` of NF-ResNets).

    Shape:
        input: (B, C_in, H, W) → (B, C_out, H', W')
    """

    def __init__(self, *args: object, gamma: float = RELU_GAMMA, ws_eps: float = 1e-6, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1))
        self.gamma = gamma
        self.ws_eps = ws_eps

    def standardized_weight(self) -> Tensor:
        """The weight with zero mean and unit variance per output channel. Shape: like ``weight``."""
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (w - mean) / torch.sqrt(var + self.ws_eps)

    def forward(self, x: Tensor) -> Tensor:
        fan_in = self.weight[0].numel()
        w = self.standardized_weight() * (self.gain * self.gamma / math.sqrt(fan_in))
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class SkipInit(nn.Module):
    """A scalar gain at the end of a residual branch, starting at 0 (the block starts as the identity).

    Shape:
        input: (B, ...) → (B, ...)
    """

    def __init__(self, init: float = 0.0) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gain


class Selector(nn.Module):
    """A small routing head: from the (normalised) input image, logits over a multi-branch model's routes
    (MultiBN's learned batch-norm selection module, here on the input rather than on stem features).

    Shape:
        input: (B, C, H, W) → (B, K)
    """

    def __init__(self, in_channels: int, branches: Sequence[str], width: int = 16) -> None:
        super().__init__()
        self.names = tuple(branches)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, 1, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * width, len(self.names)),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return out


# -- conversion -----------------------------------------------------------------------------------------------


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _like(new: nn.Module, old: nn.Module) -> nn.Module:
    for t in list(old.parameters()) + list(old.buffers()):
        return new.to(device=t.device, dtype=t.dtype if t.is_floating_point() else None)
    return new


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            a, b = getattr(dst, name), getattr(src, name)
            if a is not None and b is not None:
                a.copy_(b)


def _multi_from(bn: nn.BatchNorm2d, routes: Sequence[str]) -> MultiBatchNorm2d:
    layer = MultiBatchNorm2d(bn.num_features, routes, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    _like(layer, bn)  # same device and dtype (in place)
    _copy_bn(layer, bn)  # branch main: the original parameters and statistics, under the original keys
    for aux in layer.aux.values():
        assert isinstance(aux, nn.BatchNorm2d)
        _copy_bn(aux, bn)  # auxiliary branches start as copies (timm's split batch norm does the same)
    layer.train(bn.training)
    return layer


def _largest_divisor(c: int, at_most: int) -> int:
    return max(g for g in range(1, min(c, at_most) + 1) if c % g == 0)


def convert_norm(
    model: nn.Module,
    kind: str,
    *,
    routes: Sequence[str] = ("aux",),
    groups: int = 8,
    sites: Sequence[str] | None = None,
) -> nn.Module:
    """Swap every :class:`torch.nn.BatchNorm2d` of ``model`` (in place) for the normalisation ``kind``.

    Args:
        model: The network (plain batch norms; the architecture code is not touched).
        kind: One of :data:`NORM_KINDS`.
        routes: The auxiliary routes of ``multibn`` and ``dubin`` (branch ``main`` always exists).
        groups: Groups of ``gn`` (the largest divisor of each layer's channels not above it).
        sites: ``dubin`` only: module-name patterns (``fnmatch``) of the layers that become DuBIN; ``None``: the
            architecture's ``dubin_sites``, or every batch norm when it declares none.

    Returns:
        ``model``.

    Raises:
        ModelError: ``model`` has no ``BatchNorm2d`` to convert (for instance it was converted already).
        ConfigError: an unknown kind or bad routes.
    """
    if kind not in NORM_KINDS:
        raise ConfigError(f"unknown norm layer {kind!r}; choose one of {', '.join(NORM_KINDS)}")
    inside = tuple(f"{n}." for n, m in model.named_modules() if isinstance(m, MultiBatchNorm2d | DuBIN))
    targets = [(n, m) for n, m in model.named_modules() if type(m) is nn.BatchNorm2d and not n.startswith(inside)]
    if not targets:
        found = sorted({type(m).__name__ for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)})
        also = f" (its norm layers: {', '.join(found)})" if found else " (it has no norm layers)"
        raise ModelError(
            f"convert_norm({kind!r}): {type(model).__name__} has no BatchNorm2d layers to convert{also}; "
            "convert a model built with plain batch norms"
        )
    if kind == "bn":
        return model
    if kind == "none":
        return _normalizer_free(model, targets)
    dubin_sites = tuple(sites if sites is not None else getattr(model, "dubin_sites", ("*",)))
    for name, bn in targets:
        new: nn.Module
        if kind == "multibn":
            new = _multi_from(bn, routes)
        elif kind == "dubin":
            if any(fnmatch.fnmatchcase(name, p) for p in dubin_sites):
                new = _like(DuBIN(bn.num_features, routes), bn)
            else:
                new = _multi_from(bn, routes)
        else:  # gn
            new = _like(nn.GroupNorm(_largest_divisor(bn.num_features, groups), bn.num_features), bn)
        new.train(bn.training)
        _set(model, name, new)
    return model


def _normalizer_free(model: nn.Module, targets: list[tuple[str, nn.BatchNorm2d]]) -> nn.Module:
    residual = tuple(getattr(model, "residual_norms", ()))
    for name, bn in targets:
        ends_branch = any(fnmatch.fnmatchcase(name, p) for p in residual)
        _set(model, name, _like(SkipInit() if ends_branch else nn.Identity(), bn))
    for name, conv in [(n, m) for n, m in model.named_modules() if type(m) is nn.Conv2d]:
        ws = WSConv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
        )
        with torch.no_grad():
            ws.weight.copy_(conv.weight)
            if conv.bias is not None and ws.bias is not None:
                ws.bias.copy_(conv.bias)
        _set(model, name, _like(ws, conv))
    return model


def attach_selector(model: nn.Module, in_channels: int, width: int = 16) -> Selector:
    """Give a multi-branch ``model`` a :class:`Selector` over its routes, as ``model.selector``."""
    names = routes_of(model)
    if len(names) < 2:
        raise ModelError("a selector needs a multi-branch model (convert_norm(model, 'multibn', routes=...))")
    p = next(iter(model.parameters()), None)
    sel = Selector(in_channels, names, width)
    if p is not None:
        sel = sel.to(device=p.device, dtype=p.dtype)
    model.selector = sel
    return sel


# -- routes -------------------------------------------------------------------------------------------------


def _routed(model: nn.Module) -> list[MultiBatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, MultiBatchNorm2d)]


def routes_of(model: nn.Module) -> tuple[str, ...]:
    """The branch names of a multi-branch model (``()`` for a model without routes)."""
    layers = _routed(model)
    return layers[0].branches() if layers else ()


def _unknown_route(name: object, names: Sequence[str]) -> str:
    if not names:
        return f"unknown route {name!r}: the model has a single batch norm (no routes); drop the route"
    return f"unknown route {name!r}: the model's routes are {', '.join(names)}"


def check_route(model: nn.Module, name: str) -> None:
    """Raise :class:`ModelError` unless ``name`` is one of ``model``'s routes (or ``select``/``select-hard`` for a
    model with a selector)."""
    names = routes_of(model)
    if name in SELECT_ROUTES:
        if not isinstance(getattr(model, "selector", None), Selector):
            raise ModelError(f"route {name!r} needs a model with a selector; its routes: {', '.join(names) or 'none'}")
        return
    if name not in names:
        raise ModelError(_unknown_route(name, names))


@contextlib.contextmanager
def route(model: nn.Module, spec: RouteSpec) -> Iterator[nn.Module]:
    """Route ``model``'s multi-branch layers for the block (the previous routes are restored after).

    Args:
        model: A model with multi-branch layers.
        spec: A branch name; a :func:`split` of the rows; or soft weights (B, K) over :func:`routes_of` (eval
            mode only).

    Raises:
        ModelError: the model has no routes, or the name is not one of them.
    """
    layers = _routed(model)
    names = layers[0].branches() if layers else ()
    if not layers:
        raise ModelError(_unknown_route(spec if isinstance(spec, str) else "…", names))
    if isinstance(spec, str) and spec not in names:
        raise ModelError(_unknown_route(spec, names))
    if isinstance(spec, Split):
        for name, _ in spec.parts:
            if name not in names:
                raise ModelError(_unknown_route(name, names))
    before = [m._routing for m in layers]
    for m in layers:
        m._routing = spec
    try:
        yield model
    finally:
        for m, b in zip(layers, before, strict=True):
            m._routing = b


def set_inference_route(model: nn.Module, name: str) -> None:
    """Make ``name`` the route every multi-branch layer of ``model`` uses outside :func:`route` blocks."""
    names = routes_of(model)
    if name not in names:
        raise ModelError(_unknown_route(name, names))
    for m in _routed(model):
        m.inference_route = name


#: Routes decided per input by the model's selector: soft (weights = softmax of the selector's logits, the
#: differentiable route for adaptive attacks) and hard (arg-max branch; its gradient is the soft route's, i.e. a
#: straight-through estimate, BPDA).
SELECT_ROUTES = ("select", "select-hard")


def selector_weights(model: nn.Module, z: Tensor, hard: bool) -> Tensor:
    """Route weights (B, K) from ``model.selector`` on the normalised input ``z``; ``hard``: one-hot in the forward
    pass, the softmax's gradient in the backward pass."""
    sel = model.selector
    assert isinstance(sel, Selector)
    soft = torch.softmax(sel(z), dim=1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(1), soft.shape[1]).to(soft.dtype)
    return one_hot + soft - soft.detach()


def routing_active(model: nn.Module) -> bool:
    """Whether a :func:`route` block is routing ``model`` now."""
    return any(m._routing is not None for m in _routed(model))


def routed_forward(model: nn.Module, z: Tensor, name: str | None) -> Tensor:
    """``model(z)`` through route ``name`` (``None``: the layers' inference route; ``select``/``select-hard``:
    the selector's weights for each input). Inside a :func:`route` block that block's routing wins (a training
    method routes its rows explicitly through the model's adapter)."""
    if name is None or routing_active(model):
        out: Tensor = model(z)
        return out
    spec: RouteSpec = selector_weights(model, z, name == "select-hard") if name in SELECT_ROUTES else name
    with route(model, spec):
        out = model(z)
    return out
