"""Architecture families (CIFAR- and MNIST-scale), registered by name in :data:`ARCHITECTURES`.

Each factory takes ``num_classes`` and ``in_channels`` plus family-specific size arguments
(depth, width) and returns a plain ``nn.Module`` that maps *normalised* NCHW input to logits.
Normalisation is added by :class:`robustlab.models.ModelAdapter`, never here.
"""

from __future__ import annotations

from robustlab.models.archs import (  # noqa: F401  (registration)
    alexnet,
    densenet,
    fast_mnist,
    inception,
    lenet,
    mobilenet,
    resnet,
    vgg,
    wideresnet,
)
from robustlab.models.archs._registry import ARCHITECTURES, build_architecture

__all__ = ["ARCHITECTURES", "build_architecture"]
