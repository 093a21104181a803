"""The architecture registry (a module of its own so that family modules can import it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from robustlab._registry import Registry
from robustlab.errors import ModelError

ArchFactory = Callable[..., nn.Module]

ARCHITECTURES: Registry[ArchFactory] = Registry("architecture")


def build_architecture(
    name: str,
    *,
    norm_layer: str = "bn",
    routes: Sequence[str] = ("aux",),
    selector: bool = False,
    heads: dict[str, int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Instantiate the architecture ``name`` with ``kwargs``, its batch norms converted to ``norm_layer``.

    Every architecture takes the normalisation this way (:func:`robustlab.models.norm_layers.convert_norm`), so
    the family modules keep their plain batch norms and the variants are declared in a spec's ``arch_kwargs``.

    Args:
        name: Registry name.
        norm_layer: ``bn`` (as built), ``multibn``, ``dubin``, ``gn`` or ``none`` (normalizer-free).
        routes: Auxiliary routes of ``multibn`` / ``dubin``.
        selector: Give a multi-branch model a learned selector over its routes (MultiBN).
        heads: Feature heads to add, name → output width (e.g. ``{"domain": 2}`` for DIAL's domain classifier):
            each reads the input of the network's classifier (:func:`robustlab.models.heads.attach_feature_head`);
            the network's output is unchanged. Built after the norm conversion.
        kwargs: The family's own arguments (``num_classes``, ``in_channels``, depth, width...).

    Raises:
        UnknownNameError: if ``name`` is not registered (close matches listed).
        ModelError: if the keyword arguments do not fit the factory (an unknown keyword, or a value the family
            refuses, such as a ResNet depth that is not 6n+2), or a head cannot be attached.
    """
    from robustlab.models.norm_layers import attach_selector, convert_norm

    factory = ARCHITECTURES.get(name)
    try:
        net = factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot build architecture {name!r} with arguments {kwargs}: {exc}") from exc
    if norm_layer != "bn" or selector:
        convert_norm(net, norm_layer, routes=tuple(routes))
    if selector:
        attach_selector(net, int(kwargs.get("in_channels", 3)))
    if heads:
        from robustlab.models.heads import attach_feature_head

        for head_name, width in dict(heads).items():
            attach_feature_head(net, head_name, width)
    return net
