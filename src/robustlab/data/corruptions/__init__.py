"""Common corruptions (CIFAR-10-C / ImageNet-C), batched in torch on the images' device.

Example:
    >>> import torch
    >>> from robustlab.data.corruptions import corrupt, list_corruptions
    >>> x = torch.rand(8, 3, 32, 32)
    >>> y = corrupt(x, "gaussian_noise", 3, generator=torch.Generator().manual_seed(0))
    >>> y.shape, bool(y.min() >= 0), bool(y.max() <= 1)
    (torch.Size([8, 3, 32, 32]), True, True)
    >>> len(list_corruptions())
    19

The 15 benchmark corruptions (:data:`BENCHMARK_CORRUPTIONS`) and the 4 extra ones
(:data:`EXTRA_CORRUPTIONS`) take severities 1..5 (0 is the identity), float (N, C, H, W) images in [0, 1]
with 1 or 3 channels, and a ``torch.Generator``. Images up to 32×32 get the CIFAR-10-C constants, larger ones
the ImageNet-C constants (``constants=`` overrides).

JPEG compression is libjpeg's baseline codec re-implemented in torch, bit-exact with Pillow.

Deviations from the reference code (Hendrycks & Dietterich's ``make_cifar_c.py``/``make_imagenet_c.py``),
each documented at the corruption:

- frost blends procedurally generated frost textures, not the six photographs (no assets are shipped or
  downloaded);
- motion blur (and the motion-blurred snow layer) is ImageMagick's kernel re-implemented in torch (as
  ``imagecorruptions`` does in NumPy);
- outputs stay float: no 8-bit rounding between steps (the reference rounds through PIL and ``np.uint8``)
  except where the rounding is part of the corruption (glass blur, the snow layer, spatter's shading, JPEG);
- the elastic transform's pixel constants scale with the image side (exact at 32 and 224 pixels).

References:
    Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
    Perturbations", ICLR 2019; Michaelis et al., "Benchmarking Robustness in Object Detection"
    (the ``imagecorruptions`` package), 2019.
"""

from robustlab.data.corruptions import _blur, _digital, _noise, _weather  # noqa: F401  (register)
from robustlab.data.corruptions._base import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    MAX_SEVERITY,
    ConstantSet,
    Corruption,
    constant_set_for,
    corrupt,
    get_corruption,
    list_corruptions,
)

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "MAX_SEVERITY",
    "ConstantSet",
    "Corruption",
    "constant_set_for",
    "corrupt",
    "get_corruption",
    "list_corruptions",
]
