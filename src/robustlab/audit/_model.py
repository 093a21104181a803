"""The audit's checks of the model itself, before any attack: what the forward and backward passes reveal.

Probability outputs, randomness, layers left in train mode, outputs that depend on the batch, the fraction of points
whose input gradient is zero or non-finite, autograd failing, and which layers have no usable derivative (the
candidates for BPDA). Each finding is a code of :data:`robustlab.attacks.CHECKS`; the facts behind it are kept for
the ladder (which attacks to add: EoT for randomness, BPDA through the layers found).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks import PassCounter, check_gradients

#: Points the layer probe and the batch-dependence check look at (a forward and a few backward passes of these).
PROBE_POINTS = 8

#: Relative difference of logits above which two passes "differ" (GPU kernels may differ in the last bits).
RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Layer:
    """A layer without a usable derivative.

    Attributes:
        name: Its name in ``model.named_modules()``.
        kind: ``"zero"`` (its input gradient is zero on every probed point) or ``"cut"`` (its output is not
            connected to its input in autograd's graph).
        bypassable: Its output has its input's shape, so BPDA can replace its backward by the identity.
    """

    name: str
    kind: str
    bypassable: bool


@dataclass
class ModelFacts:
    """What the model checks found (the ladder reads them; the findings are raised from them).

    Attributes:
        stochastic: Two forward passes of the same inputs differed.
        random_diff: The largest difference between those passes.
        probabilities: The clean outputs look like probabilities.
        train_mode: Names of normalisation or dropout layers in train mode when the audit was called.
        batch_diff: The largest change of a point's logits when its batch changed (eval mode), or ``None`` when
            not measurable (a randomised model, a single point).
        gradient_points: Points whose input gradient was checked.
        zero_gradients: Fraction of them with an exactly zero gradient.
        non_finite_gradients: Fraction of them with a NaN or infinite gradient.
        gradient_error: Autograd's error when no gradient could be computed, else ``None``.
        layers: Layers without a usable derivative (probed only when the gradient check found a problem).
    """

    stochastic: bool = False
    random_diff: float = 0.0
    probabilities: bool = False
    train_mode: list[str] = field(default_factory=list)
    batch_diff: float | None = None
    gradient_points: int = 0
    zero_gradients: float = 0.0
    non_finite_gradients: float = 0.0
    gradient_error: str | None = None
    layers: list[Layer] = field(default_factory=list)

    @property
    def gradients_available(self) -> bool:
        """Whether the model's own input gradients can be computed."""
        return self.gradient_error is None

    @property
    def bypass(self) -> list[str]:
        """Names of the layers BPDA goes through with the identity."""
        return [layer.name for layer in self.layers if layer.bypassable]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "stochastic": self.stochastic,
            "probabilities": self.probabilities,
            "train_mode_layers": list(self.train_mode),
            "batch_dependence": self.batch_diff,
            "gradient_points": self.gradient_points,
            "zero_gradient_fraction": self.zero_gradients,
            "non_finite_gradient_fraction": self.non_finite_gradients,
            "gradient_error": self.gradient_error,
            "non_differentiable_layers": [
                {"name": layer.name, "kind": layer.kind, "bypassable": layer.bypassable} for layer in self.layers
            ],
        }


def train_mode_layers(model: nn.Module) -> list[str]:
    """Names of the batch-norm and dropout layers in train mode (call it before switching to eval mode)."""
    kinds = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
    return [name or type(m).__name__ for name, m in model.named_modules() if isinstance(m, kinds) and m.training]


def _differs(a: Tensor, b: Tensor) -> float:
    """The largest difference of two logit tensors when it exceeds the tolerance, else ``0``."""
    if a.shape != b.shape:
        return float("inf")
    finite = torch.isfinite(a) & torch.isfinite(b)
    if not bool(torch.equal(torch.isfinite(a), torch.isfinite(b))):
        return float("inf")
    if not bool(finite.any()):
        return 0.0
    diff = float((a - b)[finite].abs().max())
    scale = max(1.0, float(a[finite].abs().max()))
    return diff if diff > RELATIVE_TOLERANCE * scale else 0.0


def probe_randomness(model: nn.Module, xb: Tensor, first: Tensor, counter: PassCounter, index: Tensor) -> float:
    """Forward the batch ``xb`` again and return how much its logits moved from ``first`` (``0``: identical).

    Shape:
        - xb: ``(B, *)``; first: ``(B, K)``, the logits of the same batch
    """
    with torch.no_grad():
        second = model(xb)
    counter.add_forward(index)
    return _differs(first, second)


def probe_batch_dependence(
    model: nn.Module, xb: Tensor, first: Tensor, counter: PassCounter, index: Tensor
) -> float | None:
    """Forward the first half of ``xb`` on its own and return how much those points' logits moved from ``first``
    (computed with the whole batch); ``None`` for a batch of fewer than 2 points.

    Shape:
        - xb: ``(B, *)``; first: ``(B, K)``
    """
    half = min(PROBE_POINTS, xb.shape[0] // 2)
    if half < 1:
        return None
    with torch.no_grad():
        alone = model(xb[:half])
    counter.add_forward(index[:half])
    return _differs(first[:half], alone)


def probe_gradients(
    model: nn.Module, x: Tensor, labels: Tensor, batch_size: int, counter: PassCounter, index: Tensor
) -> tuple[float, float, str | None]:
    """The fractions of points whose cross-entropy input gradient is exactly zero and non-finite, and autograd's
    error if it cannot compute one (checked batch by batch; the first error stops the check).

    Shape:
        - x: ``(N, *)``; labels, index: ``(N,)``
    """
    zero = non_finite = 0
    n = x.shape[0]
    for lo in range(0, n, batch_size):
        rows = slice(lo, lo + batch_size)
        status = check_gradients(model, x[rows], labels[rows])
        counter.add_gradient(index[rows])
        if status.error is not None:
            return 0.0, 0.0, status.error
        zero += int(status.zero.sum())
        non_finite += int(status.non_finite.sum())
    return (zero / n, non_finite / n, None) if n else (0.0, 0.0, None)


def find_non_differentiable(model: nn.Module, x: Tensor) -> list[Layer]:
    """The leaf layers whose input gradient is zero on every point of ``x`` or whose output is cut from their input.

    One forward pass records each leaf layer's (first tensor) input and output; a random vector-Jacobian product
    then shows whether the layer passes any gradient back. A non-differentiable operation written inline in a
    ``forward`` (not as its own module) is not found: wrap it in a module to have it bypassed.

    Shape:
        - x: ``(B, *)``, a few points
    """
    seen: list[tuple[str, Tensor, Tensor]] = []
    hooks = []

    def recorder(name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            first = next((t for t in inputs if isinstance(t, Tensor)), None)
            if first is not None and isinstance(output, Tensor) and first.is_floating_point():
                seen.append((name, first, output))

        return hook

    for name, module in model.named_modules():
        if not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(recorder(name or type(module).__name__)))
    try:
        with torch.enable_grad():
            point = x.detach().clone().requires_grad_(True)
            model(point)
            found: list[Layer] = []
            for name, inp, out in seen:
                if not inp.requires_grad:
                    continue  # cut upstream: this layer cannot be judged
                bypassable = out.shape == inp.shape and out.is_floating_point()
                if not out.requires_grad:
                    found.append(Layer(name, "cut", bypassable))
                    continue
                if not out.is_floating_point():
                    continue
                try:
                    (vjp,) = torch.autograd.grad(out, inp, torch.randn_like(out), retain_graph=True, allow_unused=True)
                except RuntimeError:
                    continue
                rows = inp.shape[0] if inp.dim() else 1
                if vjp is None or bool((vjp.reshape(rows, -1) == 0).all()):
                    found.append(Layer(name, "zero", bypassable))
    finally:
        for h in hooks:
            h.remove()
    return found


@contextlib.contextmanager
def bypass(model: nn.Module, names: list[str]) -> Iterator[None]:
    """BPDA with the identity: inside the block, the layers ``names`` keep their forward values but pass the
    gradient through unchanged (``out = x + (layer(x) - x).detach()``).

    References:
        Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018 (BPDA).
    """
    modules = dict(model.named_modules())

    def straight_through(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor:
        inp = next(t for t in inputs if isinstance(t, Tensor))
        return inp + (output.to(inp.dtype) - inp).detach()

    hooks = [modules[name].register_forward_hook(straight_through) for name in names if name in modules]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()
