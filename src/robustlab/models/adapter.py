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
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from robustlab.errors import InputContractError, ModelError

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
    ) -> None:
        super().__init__()
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
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self._checked_logits = False

    mean: torch.Tensor
    std: torch.Tensor

    # -- contract -------------------------------------------------------------------------------------------
    def validate_input(self, x: torch.Tensor) -> None:
        """Raise :class:`InputContractError` if ``x`` breaks the input contract."""
        if not isinstance(x, torch.Tensor):
            raise InputContractError(f"{self.name}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            hint = " Convert with x.float() / 255." if x.dtype == torch.uint8 else ""
            raise InputContractError(
                f"{self.name}: input dtype {x.dtype} is not floating point; images must be float in [0, 1].{hint}"
            )
        if x.dim() != 4:
            raise InputContractError(
                f"{self.name}: input shape {tuple(x.shape)} is not (N, C, H, W); add a batch dimension with "
                "x.unsqueeze(0) or convert NHWC with x.permute(0, 3, 1, 2)."
            )
        channels = self.mean.shape[1] if self.input_shape is None else self.input_shape[0]
        expected = (channels, *self.input_shape[1:]) if self.input_shape else None
        if x.shape[1] != channels or (expected is not None and tuple(x.shape[1:]) != expected):
            want = f"(N, {', '.join(map(str, expected))})" if expected else f"(N, {channels}, H, W)"
            nhwc = " It looks like NHWC: use x.permute(0, 3, 1, 2)." if x.shape[-1] == channels else ""
            raise InputContractError(f"{self.name}: input shape {tuple(x.shape)} does not match {want}.{nhwc}")
        if x.numel() == 0:
            return
        detached = x.detach()
        if not torch.isfinite(detached).all():
            raise InputContractError(f"{self.name}: input contains NaN or infinite values")
        lo, hi = detached.min().item(), detached.max().item()
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
            raise InputContractError(f"{self.name}: input values span [{lo:.7g}, {hi:.7g}], outside [0, 1]; {hint}")

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
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_inputs:
            self.validate_input(x)
        z = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)  # (N, C, H, W) normalised
        logits = self.net(z)  # (N, K)
        self._validate_logits(logits)
        return logits

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Logits in eval mode (the caller's mode is restored), in batches.

        Shape:
            x: (N, C, H, W) in [0, 1] → (N, num_classes).
        """
        device = self.mean.device
        with eval_mode(self):
            parts = [self(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
        return torch.cat(parts) if parts else torch.empty(0, self.num_classes)

    def predict(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted classes in eval mode. Shape: (N, C, H, W) → (N,) int64."""
        return self.predict_logits(x, batch_size).argmax(1)
