"""The architecture registry (a module of its own so that family modules can import it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from robustlab._registry import Registry
from robustlab.errors import ModelError

ArchFactory = Callable[..., nn.Module]

ARCHITECTURES: Registry[ArchFactory] = Registry("architecture")


def build_architecture(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the architecture ``name`` with ``kwargs``.

    Raises:
        UnknownNameError: if ``name`` is not registered (close matches listed).
        ModelError: if the keyword arguments do not fit the factory (an unknown keyword, or a value the family
            refuses, such as a ResNet depth that is not 6n+2).
    """
    factory = ARCHITECTURES.get(name)
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot build architecture {name!r} with arguments {kwargs}: {exc}") from exc
