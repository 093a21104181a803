"""The corruption registry, the :class:`Corruption` record and the :func:`corrupt` entry point."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from robustlab._registry import Registry
from robustlab.errors import ConfigError, InputContractError
from robustlab.models.adapter import check_images

log = logging.getLogger(__name__)


#: Highest severity; severity 0 is the identity.
MAX_SEVERITY = 5

#: Channel counts the corruptions take (grey, RGB) and the smallest image side.
CHANNELS = (1, 3)
MIN_SIDE = 8

#: Which published constants a corruption uses: CIFAR-10-C (32×32) or ImageNet-C (224×224), or pick by size.
ConstantSet = Literal["auto", "cifar", "imagenet"]

#: The 15 benchmark corruptions of CIFAR-10-C / ImageNet-C, in the order of the paper's tables.
BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)

#: The four extra ("validation") corruptions released with the benchmark.
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

#: ``fn(x, params, generator, constant_set) -> corrupted x``; ``x`` is float32/64 (N, C, H, W) in [0, 1].
CorruptionFn = Callable[[Tensor, Any, torch.Generator, str], Tensor]

#: Largest side that still uses the CIFAR-10-C constants under ``constants="auto"``.
CIFAR_MAX_SIDE = 32


@dataclass(frozen=True)
class Corruption:
    """One registered corruption: its published constants and a batched torch implementation.

    Attributes:
        name: Registry name, e.g. ``"gaussian_noise"``.
        family: ``"noise"``, ``"blur"``, ``"weather"`` or ``"digital"``.
        benchmark: One of the 15 benchmark corruptions (the other four are the extra ones).
        stochastic: Draws random numbers (from the generator passed in); deterministic ones ignore it.
        cifar: Parameters for severities 1..5 from ``make_cifar_c.py`` (32×32 images).
        imagenet: Parameters for severities 1..5 from ``make_imagenet_c.py`` (224×224 images).
        fn: The implementation, ``fn(x, params, generator, constant_set)``.
    """

    name: str
    family: str
    benchmark: bool
    stochastic: bool
    cifar: tuple[Any, ...]
    imagenet: tuple[Any, ...]
    fn: CorruptionFn = field(repr=False, compare=False)

    def params(self, severity: int, constants: str) -> Any:
        """The constants of ``severity`` (1..5) from the ``"cifar"`` or ``"imagenet"`` table."""
        table = self.cifar if constants == "cifar" else self.imagenet
        return table[severity - 1]

    def __call__(
        self,
        x: Tensor,
        severity: int,
        generator: torch.Generator | None = None,
        constants: ConstantSet = "auto",
    ) -> Tensor:
        """Same as :func:`corrupt` with this corruption."""
        return corrupt(x, self.name, severity, generator=generator, constants=constants)


#: All corruptions by name (``list(CORRUPTIONS)`` is sorted; see also :data:`BENCHMARK_CORRUPTIONS`).
CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def get_corruption(name: str) -> Corruption:
    """The registered corruption ``name``.

    Raises:
        UnknownNameError: with close matches, e.g. ``"gausian_noise"`` → ``gaussian_noise``.
    """
    return CORRUPTIONS.get(name)


def list_corruptions(which: Literal["all", "benchmark", "extra"] = "all") -> list[str]:
    """Corruption names in the benchmark's order: the 15 benchmark ones, then the 4 extra ones."""
    if which == "benchmark":
        return list(BENCHMARK_CORRUPTIONS)
    if which == "extra":
        return list(EXTRA_CORRUPTIONS)
    if which == "all":
        return [*BENCHMARK_CORRUPTIONS, *EXTRA_CORRUPTIONS]
    raise ConfigError(f"which must be 'all', 'benchmark' or 'extra', got {which!r}")


def constant_set_for(height: int, width: int, constants: str = "auto") -> str:
    """Resolve ``"auto"``: CIFAR-10-C constants up to 32×32, ImageNet-C constants for larger images."""
    if constants == "auto":
        return "cifar" if max(height, width) <= CIFAR_MAX_SIDE else "imagenet"
    if constants in ("cifar", "imagenet"):
        return constants
    raise ConfigError(f"constants must be 'auto', 'cifar' or 'imagenet', got {constants!r}")


def check_severity(severity: object) -> int:
    """Validate a severity (an int in 0..5)."""
    if isinstance(severity, bool) or not isinstance(severity, int) or not 0 <= severity <= MAX_SEVERITY:
        raise ConfigError(f"severity must be an integer in 0..{MAX_SEVERITY} (0 = no corruption), got {severity!r}")
    return severity


def _check_corruptible(x: object) -> Tensor:
    """The input contract (:func:`robustlab.models.check_images`) with 1 or 3 channels, plus at least 8×8 pixels."""
    x = check_images(x, CHANNELS, name="corrupt")
    if min(x.shape[2], x.shape[3]) < MIN_SIDE:
        raise InputContractError(
            f"corrupt: corruptions need images of at least {MIN_SIDE}×{MIN_SIDE} pixels, got {tuple(x.shape[2:])}"
        )
    return x


def corrupt(
    x: Tensor,
    name: str,
    severity: int,
    *,
    generator: torch.Generator | None = None,
    constants: ConstantSet = "auto",
) -> Tensor:
    """Apply one common corruption to a batch of images, on the images' device.

    Every image of the batch draws its own random numbers (as the reference corrupts one image at a time),
    all from ``generator``, so the same generator state gives the same corrupted batch. Results do depend on
    how a data set is cut into batches; :func:`robustlab.metrics.corruption_accuracy` therefore corrupts in
    fixed chunks with one generator per chunk.

    Args:
        x: Float images in [0, 1] (float16, bfloat16, float32 or float64; computed in float32 or float64).
        name: A registered corruption (see :func:`list_corruptions`).
        severity: 0 (identity: a copy of ``x``) to 5.
        generator: Source of randomness; ``None`` means ``torch.Generator().manual_seed(0)`` (never the
            global generator). It may live on the CPU for inputs on another device: random numbers are drawn
            on the generator's device and moved, so a CPU generator gives the same images on every device.
        constants: ``"cifar"`` (CIFAR-10-C constants), ``"imagenet"`` (ImageNet-C constants) or ``"auto"``:
            CIFAR-10-C for images up to 32×32, ImageNet-C for larger ones.

    Returns:
        The corrupted images, clipped to [0, 1], with the dtype, shape and device of ``x``.

    Shape:
        - x: ``(N, C, H, W)`` with ``C`` 1 or 3
        - Output: ``(N, C, H, W)``

    Raises:
        UnknownNameError: unknown corruption (close matches listed).
        ConfigError: severity not an integer in 0..5, bad ``constants`` or ``generator``.
        InputContractError: not a float (N, C, H, W) tensor in [0, 1] with 1 or 3 channels.

    References:
        Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
        Perturbations", ICLR 2019 (constants from ``ImageNet-C/create_c/make_cifar_c.py`` and
        ``make_imagenet_c.py`` of github.com/hendrycks/robustness).
    """
    corruption = CORRUPTIONS.get(name)
    severity = check_severity(severity)
    x = _check_corruptible(x)
    cset = constant_set_for(x.shape[2], x.shape[3], constants)
    if severity == 0:
        return x.clone()
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    elif not isinstance(generator, torch.Generator):
        raise ConfigError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    xw = x.detach().to(work_dtype)
    if x.shape[0] == 0:
        return x.clone()
    out = corruption.fn(xw, corruption.params(severity, cset), generator, cset)
    return out.clamp_(0.0, 1.0).to(x.dtype)


def register(
    name: str,
    *,
    family: str,
    stochastic: bool,
    cifar: Sequence[Any],
    imagenet: Sequence[Any],
) -> Callable[[CorruptionFn], CorruptionFn]:
    """Decorator registering ``fn`` as corruption ``name`` with its two constant tables."""
    if len(cifar) != MAX_SEVERITY or len(imagenet) != MAX_SEVERITY:
        raise ValueError(f"corruption {name!r} needs {MAX_SEVERITY} parameters per constant set")

    def wrap(fn: CorruptionFn) -> CorruptionFn:
        CORRUPTIONS.register(
            name,
            Corruption(
                name=name,
                family=family,
                benchmark=name in BENCHMARK_CORRUPTIONS,
                stochastic=stochastic,
                cifar=tuple(cifar),
                imagenet=tuple(imagenet),
                fn=fn,
            ),
        )
        return fn

    return wrap
