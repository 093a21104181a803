"""The memory layout a network trains in: its 4-D weights in channels-last order on CPU, where oneDNN's
convolutions run faster that way.

PyTorch stores a convolution's weight as (out, in, kh, kw) in row-major order by default. Its CPU convolutions
(oneDNN) choose their layout from the strides of the input and the weight: with the weights in channels-last
order, the activations come out channels-last too, and on many networks the convolutions' forward and backward
kernels run faster that way (a row-major step's profile also shows reorders of the activations that a
channels-last one does not). Measured on this project's CPU (`benchmarks/training_layout.py`: one PGD-7 epoch,
one thread), a channels-last epoch took 0.70× the row-major one on vgg8-w25, 0.73× on alexnet-w25, 0.91× on
ResNet-20, and the same (1.01×, within the noise) on ResNet-8 and fast_mnist. The arithmetic is the same up to
floating-point summation order (logits agree to ~1e-6 relative); a run is as reproducible in either layout, but the
two layouts' runs drift apart at float precision as two thread counts do.

The layout is an execution setting, like the device or the thread count, not a hyper-parameter: it is not part of a
run's fingerprint, and a run may resume in the other layout.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from robustlab.errors import ConfigError

if TYPE_CHECKING:
    from robustlab.models.adapter import ModelAdapter

log = logging.getLogger(__name__)

#: Accepted values of ``memory_format``.
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def _has_conv2d(net: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in net.modules())


def _tensors(net: nn.Module) -> Iterator[Tensor]:
    yield from net.parameters()
    yield from net.buffers()


def _forward(model: nn.Module, probe: Tensor) -> Tensor:
    """``model(probe)`` in eval mode without gradients, its random draws (a randomised model's) from a fork of the
    caller's generator: every probe forward draws the same numbers, and the caller's random state is left as it
    was."""
    was = model.training
    model.eval()
    cuda = [probe.device.index or 0] if probe.device.type == "cuda" else []
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            out: Tensor = model(probe)
            return out
    finally:
        model.train(was)


def check_memory_format(memory_format: str) -> None:
    """Raises ConfigError unless ``memory_format`` is one of :data:`MEMORY_FORMATS`."""
    if memory_format not in MEMORY_FORMATS:
        raise ConfigError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}; got {memory_format!r}")


def resolve(memory_format: str, model: ModelAdapter, probe: Tensor) -> str:
    """The layout to train in: ``"channels_last"`` or ``"contiguous"``.

    ``"auto"`` is channels-last when the network has a 2-D convolution, trains on CPU (on a GPU the layout's gain
    depends on the precision and the card, and it is not measured here: contiguous) and computes the same logits
    on ``probe`` in both layouts (a layer that reshapes with ``view`` cannot run channels-last; it trains
    contiguous, and the log says why).

    Args:
        memory_format: ``"auto"``, ``"channels_last"`` or ``"contiguous"``.
        model: What the training calls (the adapter, with its normalisation); its network's weights change layout.
        probe: A few inputs of the training data (float, on the model's device), forwarded in eval mode without
            gradients: nothing of the model changes.

    Raises:
        ConfigError: an unknown ``memory_format``, or ``"channels_last"`` for a network that cannot run in it.
    """
    check_memory_format(memory_format)
    if memory_format == "contiguous":
        return "contiguous"
    if memory_format == "auto":
        device = next(iter(model.net.parameters()), probe).device
        if device.type != "cpu" or probe.dim() != 4 or not _has_conv2d(model.net):
            return "contiguous"
    why = _channels_last_mismatch(model, probe)
    if why is None:
        return "channels_last"
    if memory_format == "channels_last":
        raise ConfigError(f"the network cannot train channels-last ({why}); use memory_format 'contiguous'")
    log.info("training in the contiguous layout: %s", why)
    return "contiguous"


def _channels_last_mismatch(model: ModelAdapter, probe: Tensor) -> str | None:
    """Why ``model`` does not compute the same logits on ``probe`` channels-last, or ``None`` when it does."""
    if probe.dim() != 4:
        return f"its inputs have {probe.dim()} dimensions, not 4"
    reference = _forward(model, probe)
    with channels_last(model.net):
        try:
            out = _forward(model, probe)
        except RuntimeError as e:
            return f"its forward pass fails channels-last: {str(e).splitlines()[0]}"
    finite = reference[reference.isfinite()]
    atol = 1e-5 * max(float(finite.abs().max()) if finite.numel() else 0.0, 1.0)
    if out.shape != reference.shape or not torch.allclose(out, reference, rtol=1e-4, atol=atol, equal_nan=True):
        return "its logits differ channels-last"
    return None


@contextmanager
def channels_last(net: nn.Module) -> Iterator[None]:
    """``net``'s row-major 4-D parameters and buffers in channels-last order inside the block, with their own
    strides again after it.

    The tensors keep their identity (``.data`` is replaced), so an optimiser built on the parameters and a
    DistributedDataParallel wrapper built inside the block see the same objects; values never change.
    """
    moved = [(t, t.stride()) for t in _tensors(net) if t.dim() == 4 and t.is_contiguous()]
    for t, _ in moved:
        # a copy with channels-last strides, also where both orders coincide (one input channel, 1×1 kernels) and
        # `contiguous` would keep the row-major strides: convolutions choose their layout by the strides
        t.data = torch.empty_like(t.data, memory_format=torch.channels_last).copy_(t.data)
    try:
        yield
    finally:
        for t, stride in moved:
            if t.stride() != stride:
                t.data = torch.empty_strided(t.shape, stride, dtype=t.dtype, device=t.device).copy_(t.data)
