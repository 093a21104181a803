"""The model adapter: one input contract for every model robustlab touches.

Contract: inputs are float tensors of shape (N, C, H, W) with values in [0, 1]; the adapter
normalises them (per-channel mean and std) before the wrapped network and returns logits of width
``num_classes``. The single most common error in this field is feeding normalised or uint8 images:
the adapter detects it and says how to fix it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from robustlab.errors import ConfigError, InputContractError, ModelError

if TYPE_CHECKING:
    from robustlab.models.spec import ModelSpec

log = logging.getLogger(__name__)

_TOLERANCE = 1e-6  # rounding slack on the [0, 1] bounds
_NEAR_BOX = 0.1  # inputs at most this far outside [0, 1] are taken for an unclipped perturbation


class ProbabilityOutputWarning(UserWarning):
    """Model outputs look like probabilities (rows non-negative, summing to 1) rather than logits."""


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore each sub-module's previous mode after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def trusted_inputs(model: nn.Module) -> Iterator[nn.Module]:
    """Skip a :class:`ModelAdapter`'s input checks for the block (any other module is left alone).

    For robustlab's own hot loops only, whose inputs are built from already validated images and clipped to
    [0, 1] (attack iterates, CLEVER's sample points): the checks are three full reductions per forward pass,
    up to 15 % of a small network's forward + backward.
    """
    adapters = [m for m in model.modules() if isinstance(m, ModelAdapter) and m.check_inputs]
    for m in adapters:
        m.check_inputs = False
    try:
        yield model
    finally:
        for m in adapters:
            m.check_inputs = True


def model_device(model: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def check_images(
    x: object,
    channels: int | Sequence[int] | None = None,
    *,
    size: Sequence[int] | None = None,
    ndim: int | None = 4,
    name: str = "images",
) -> torch.Tensor:
    """Check the input contract: a float tensor (N, C, H, W) with finite values in [0, 1].

    The one validator of the contract: :class:`ModelAdapter`, the attacks, CLEVER and the corruptions call it, so
    a broken input is refused with the same words everywhere, each saying how to fix it (uint8 pixels, 0..255
    floats, normalised images, a perturbation that was not clipped, a missing batch dimension, NHWC).

    Args:
        x: The images.
        channels: The channel count expected on dim 1, or the counts allowed (e.g. ``(1, 3)``); ``None``: any.
        size: The expected spatial size (H, W); ``None``: any.
        ndim: The number of dimensions expected; ``None`` accepts any tensor with a batch dimension (N, ...),
            as the attacks do for models on flat vectors.
        name: Who checks (a model's name, ``"attack"``...): every message starts with ``"<name>: "``.

    Returns:
        ``x`` itself, typed as a tensor.

    Raises:
        InputContractError: if ``x`` breaks the contract.

    Shape:
        x: (N, C, H, W), or (N, ...) with ``ndim=None``.
    """
    if not isinstance(x, torch.Tensor):
        raise InputContractError(f"{name}: expected a torch.Tensor of images, got {type(x).__name__}")
    if not x.is_floating_point():
        hint = " Convert with x.float() / 255." if x.dtype == torch.uint8 else ""
        raise InputContractError(
            f"{name}: input dtype {x.dtype} is not floating-point; images must be float in [0, 1].{hint}"
        )
    if (ndim is not None and x.dim() != ndim) or x.dim() < 2:
        want = "(N, C, H, W)" if ndim == 4 else "(N, ...)" if ndim is None else f"{ndim}-dimensional"
        fix = " Add a batch dimension with x.unsqueeze(0)." if x.dim() in (1, (ndim or 2) - 1) else ""
        raise InputContractError(f"{name}: input shape {tuple(x.shape)} is not {want}.{fix}")
    allowed = (channels,) if isinstance(channels, int) else None if channels is None else tuple(channels)
    if allowed is not None:
        wrong_size = size is not None and x.dim() == 4 and tuple(x.shape[2:]) != tuple(size)
        if x.shape[1] not in allowed or wrong_size:
            c = " or ".join(map(str, allowed))
            want = f"(N, {c}, {', '.join(map(str, size))})" if size is not None else f"(N, {c}, H, W)"
            nhwc = x.dim() == 4 and x.shape[-1] in allowed
            hint = " It looks like NHWC: use x.permute(0, 3, 1, 2)." if nhwc else ""
            raise InputContractError(f"{name}: input shape {tuple(x.shape)} does not match {want}.{hint}")
    if x.numel() == 0:
        return x
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # one pass; NaN propagates
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputContractError(f"{name}: input contains NaN or infinite values")
    if lo < -_TOLERANCE or hi > 1 + _TOLERANCE:
        if hi > 1.5 and lo >= 0:
            hint = "values look like 0..255 pixels: divide by 255."
        elif lo >= -_NEAR_BOX and hi <= 1 + _NEAR_BOX:
            hint = (
                "slightly outside, as a perturbation that was not clipped leaves them: clip with "
                "x.clamp(0, 1), or set the adapter's check_inputs = False if the model is meant to see them."
            )
        else:
            hint = (
                "inputs look normalised (mean/std applied): pass raw images in [0, 1]; the model applies its "
                "own normalisation."
            )
        raise InputContractError(f"{name}: input values span [{lo:.7g}, {hi:.7g}], outside [0, 1]; {hint}")
    return x


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int | None = 256,
    *,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The one batched prediction: logits of fresh eval-mode forward passes without gradients.

    The model's modes are restored after (module by module). Each batch is moved to the model's device and its
    logits are moved back to ``x``'s device, so a CPU dataset never has to fit on the accelerator and a tensor
    already on the model's device is not copied. Inputs are not checked here: a :class:`ModelAdapter` checks its
    own.

    Args:
        model: Any module mapping a batch to logits (a :class:`ModelAdapter` for [0, 1] images).
        x: The inputs.
        batch_size: Rows per forward pass; ``None``: all rows in one pass.
        prepare: Applied to each batch on the model's device before the forward pass, e.g. the uint8 → float
            conversion of :func:`robustlab.data.to_float_images` (a uint8 batch travels 4× smaller).

    Returns:
        The logits, on ``x``'s device; ``(0, num_classes)`` (or ``(0, 0)`` for a module without
        ``num_classes``) for an empty ``x``.

    Raises:
        ConfigError: if ``batch_size`` is not an integer >= 1 (or ``None``).

    Shape:
        x: (N, ...) → (N, K).
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    bs = batch_size or max(1, len(x))
    device = model_device(model)
    parts = []
    with eval_mode(model):
        for i in range(0, len(x), bs):
            xb = x[i : i + bs].to(device)
            if prepare is not None:
                xb = prepare(xb)
            parts.append(model(xb).to(x.device))  # (B, K)
    if not parts:
        k = int(getattr(model, "num_classes", 0))
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return torch.empty((0, k), dtype=dtype, device=x.device)
    return torch.cat(parts)


class ModelAdapter(nn.Module):
    """Wraps a network so that it takes [0, 1] images and returns logits.

    Args:
        net: Network mapping *normalised* NCHW input to logits.
        num_classes: Width of the logits.
        input_shape: Expected (C, H, W); ``None`` accepts any spatial size (C still checked via ``mean``).
        mean: Per-channel mean subtracted inside the model.
        std: Per-channel standard deviation divided inside the model.
        name: Name shown in reports.
        check_inputs: Validate every input (cheap reductions); disable only for trusted hot loops.
        spec: The model's metadata when it came from a spec (family, weights, metrics).
        route: The route a multi-branch network runs through (:mod:`robustlab.models.norm_layers`): a branch name,
            or ``select`` / ``select-hard`` for its selector; ``None``: ``main``. Refused for a plain network
            unless ``None`` or ``main``. An explicit :func:`~robustlab.models.norm_layers.route` block wins.

    Shape:
        input: (N, C, H, W) float in [0, 1]; output: (N, num_classes) logits.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        num_classes: int,
        input_shape: Sequence[int] | None = None,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        name: str = "model",
        check_inputs: bool = True,
        spec: ModelSpec | None = None,
        route: str | None = None,
    ) -> None:
        super().__init__()
        from robustlab.models.norm_layers import MAIN, check_route, routes_of

        if num_classes < 2:
            raise ModelError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ModelError(f"mean {tuple(mean)} and std {tuple(std)} must have the same length, std > 0")
        self.net = net
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
        self.name = name
        self.check_inputs = check_inputs
        self.spec = spec
        self.routes = routes_of(net)
        if self.routes:
            route = route or MAIN
            check_route(net, route)
        elif route not in (None, MAIN):
            check_route(net, route)  # raises: a plain network has no routes
        self.route = route if self.routes else None
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self._checked_logits = False
        self._identity_key: tuple[int, int, int, int] | None = None
        self._identity = False

    mean: torch.Tensor
    std: torch.Tensor

    # -- contract -------------------------------------------------------------------------------------------
    def validate_input(self, x: torch.Tensor) -> None:
        """Raise :class:`InputContractError` if ``x`` breaks the input contract (see :func:`check_images`)."""
        channels = self.mean.shape[1] if self.input_shape is None else self.input_shape[0]
        size = self.input_shape[1:] if self.input_shape is not None else None
        check_images(x, channels, size=size, name=self.name)

    def _validate_logits(self, logits: torch.Tensor) -> None:
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ModelError(
                f"{self.name}: the network returned shape {tuple(logits.shape)}, expected (N, {self.num_classes}) "
                "logits: check num_classes and the network's last layer."
            )
        if not self._checked_logits and logits.numel():
            self._checked_logits = True
            d = logits.detach()
            if (d >= 0).all() and torch.allclose(d.sum(1), torch.ones_like(d[:, 0]), atol=1e-3):
                warnings.warn(
                    f"{self.name}: outputs look like probabilities (non-negative rows summing to 1). Attacks need "
                    "logits: remove the final softmax.",
                    ProbabilityOutputWarning,
                    stacklevel=3,
                )

    # -- forward --------------------------------------------------------------------------------------------
    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std``; ``x`` itself when the normalisation is the identity (mean 0, std 1: the MNIST
        models, which see raw pixels) and ``x`` is floating point.

        Subtracting 0 and dividing by 1 return every float bitwise (NaN included) and so do their gradients, but
        cost two passes over the batch forward and one backward: on a small network (fast_mnist, 100 MNIST images)
        about 3 % of an attack step. Whether the buffers are the identity is re-checked when they are replaced or
        changed in place (their storage or version counter moves). As in torchattacks and foolbox without
        preprocessing, the network then receives the caller's tensor itself: a network that modifies its input in
        place would modify the caller's.

        Shape: (N, C, H, W) → (N, C, H, W)
        """
        key = (self.mean.data_ptr(), self.mean._version, self.std.data_ptr(), self.std._version)
        if key != self._identity_key:
            with torch.no_grad():
                self._identity = bool((self.mean == 0).all()) and bool((self.std == 1).all())
            self._identity_key = key
        if self._identity and x.is_floating_point():
            return x
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_inputs:
            self.validate_input(x)
        z = self.normalise(x)  # (N, C, H, W)
        if self.route is None:
            logits: torch.Tensor = self.net(z)  # (N, K)
        else:
            from robustlab.models.norm_layers import routed_forward

            logits = routed_forward(self.net, z, self.route)
        self._validate_logits(logits)
        return logits

    def with_route(self, route: str) -> ModelAdapter:
        """The same network (shared, not copied) through another route, e.g. ``"adv"`` to study an auxiliary
        batch norm; its name says which route.

        Raises:
            ModelError: ``route`` is not one of the network's routes.
        """
        import dataclasses

        spec = dataclasses.replace(self.spec, route=route) if self.spec is not None else None
        same = route == (self.route or "main")
        return ModelAdapter(
            self.net,
            num_classes=self.num_classes,
            input_shape=self.input_shape,
            mean=tuple(self.mean.flatten().tolist()),
            std=tuple(self.std.flatten().tolist()),
            name=self.name if same else f"{self.name}@{route}",
            check_inputs=self.check_inputs,
            spec=spec,
            route=route,
        ).to(self.mean.device)

    def predict_logits(self, x: torch.Tensor, batch_size: int | None = 256) -> torch.Tensor:
        """Logits in eval mode without gradients, in batches: :func:`predict_logits` on this model.

        Shape:
            x: (N, C, H, W) in [0, 1] → (N, num_classes), on ``x``'s device.
        """
        return predict_logits(self, x, batch_size)

    def predict(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted classes in eval mode. Shape: (N, C, H, W) → (N,) int64."""
        return self.predict_logits(x, batch_size).argmax(1)
