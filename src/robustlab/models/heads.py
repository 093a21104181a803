"""Feature heads: small modules that read a network's penultimate features (the input of its classifier).

A training method that needs a second output besides the class logits (DIAL's domain classifier) does not need
its own architecture: :func:`attach_feature_head` finds the network's classifier (its last :class:`torch.nn.Linear`),
captures what the classifier receives with a forward pre-hook, and adds a :class:`FeatureHead` as an attribute of
the network. The network's ``forward`` is unchanged (it still returns the class logits only); after a forward, the
head's :meth:`FeatureHead.take_features` gives the captured features and the head maps them to its own logits::

    net = build_architecture("resnet_cifar", heads={"domain": 2})
    logits = net(z)                                     # (B, K), as without the head
    domain = net.domain(reverse_gradient(net.domain.take_features(), alpha))   # (B, 2)

The head is part of the state dict (``<name>.*`` keys), so an exported model keeps it; to load such a checkpoint into
the plain architecture, declare ``drop_keys=("<name>.*",)`` in its :class:`~robustlab.models.spec.WeightsSpec`.

:class:`GradientReversal` (with :func:`reverse_gradient`) is the gradient-reversal layer of domain-adversarial
training: identity forward, gradient multiplied by ``-alpha`` backward.

References:
    Ganin, Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015 (gradient reversal).
    Levi, Attias, Kontorovich, "Domain Invariant Adversarial Learning", TMLR (arXiv 2104.00322); its
    ``SmallCNNDANN`` / ``WideResNetDANN`` domain head is FC 100 → BN1d → ReLU → FC 2.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.errors import ModelError


class GradientReversal(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by ``-alpha`` in the backward pass.

    ``alpha`` is a number, not a tensor (it receives no gradient). Use :func:`reverse_gradient`.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, alpha: float) -> Tensor:
        ctx.alpha = float(alpha)
        return x.view_as(x)  # a new node of the graph with x's values

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * (-ctx.alpha), None


def reverse_gradient(x: Tensor, alpha: float) -> Tensor:
    """``x`` unchanged, with its gradient multiplied by ``-alpha`` on the way back (gradient-reversal layer).

    Shape:
        x: any → same
    """
    out: Tensor = GradientReversal.apply(x, float(alpha))  # type: ignore[no-untyped-call]
    return out


class FeatureHead(nn.Module):
    """A head on the features the network's classifier receives: FC(in → hidden) → BN1d → ReLU → FC(hidden → out).

    It is called by the training method on :meth:`take_features`, never by the network's own ``forward``.

    Attributes:
        head_name: The attribute name under which the head sits on the network.
        features: The classifier's input captured at the latest forward pass of the network (``None`` before the
            first, and after :meth:`take_features`). Not part of the state dict; copies and pickles drop it.

    Shape:
        input: (B, in_features) → (B, out_features)
    """

    def __init__(self, in_features: int, out_features: int, hidden: int = 100, *, head_name: str = "head") -> None:
        super().__init__()
        self.head_name = head_name
        self.fc1 = nn.Linear(in_features, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, out_features)
        self.features: Tensor | None = None

    def forward(self, features: Tensor) -> Tensor:
        if features.dim() != 2:
            raise ModelError(
                f"feature head {self.head_name!r} takes (B, F) features, got shape {tuple(features.shape)}: the "
                "network's classifier receives a tensor of another rank"
            )
        out: Tensor = self.fc2(F.relu(self.bn(self.fc1(features))))
        return out

    def capture(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """The classifier's forward pre-hook: keep its input."""
        self.features = args[0]

    def take_features(self) -> Tensor:
        """The features captured at the latest forward pass, forgotten here (so the head holds no graph).

        Raises:
            ModelError: no forward pass of the network since the last call.
        """
        features = self.features
        if features is None:
            raise ModelError(
                f"feature head {self.head_name!r} has no features: run the network's forward pass first (its "
                "classifier's input is captured there)"
            )
        self.features = None
        return features

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = dict(super().__getstate__())  # type: ignore[no-untyped-call]
        state["features"] = None  # a captured non-leaf tensor cannot be deep-copied, and is no state
        return state


def find_classifier(net: nn.Module) -> tuple[str, nn.Linear]:
    """The network's classifier: its last :class:`torch.nn.Linear` (in module order), outside any feature head.

    Raises:
        ModelError: the network has no ``nn.Linear`` outside its heads.
    """
    heads = tuple(f"{n}." for n, m in net.named_modules() if isinstance(m, FeatureHead))
    found = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear) and not f"{n}.".startswith(heads)]
    if not found:
        raise ModelError(
            f"{type(net).__name__} has no nn.Linear classifier, so a feature head has no features to read; "
            "heads need a network whose last layer is an nn.Linear"
        )
    return found[-1]


def attach_feature_head(net: nn.Module, name: str, out_features: int, hidden: int = 100) -> FeatureHead:
    """Add a :class:`FeatureHead` as ``net.<name>`` that reads the input of ``net``'s classifier.

    The head is created with the classifier's device and dtype, in ``net``'s training mode, and a forward pre-hook
    on the classifier stores the classifier's input into ``net.<name>.features`` at every forward pass.

    Args:
        net: The network (its last ``nn.Linear`` is the classifier).
        name: Attribute name of the head (a Python identifier the network does not use yet).
        out_features: Width of the head's output (e.g. 2 domains).
        hidden: Width of the hidden layer (100 in the DIAL reference).

    Returns:
        The head.

    Raises:
        ModelError: a bad name or width, or a network without an ``nn.Linear`` classifier.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ModelError(f"a feature head's name must be a Python identifier, got {name!r}")
    if hasattr(net, name):
        raise ModelError(f"{type(net).__name__} already has an attribute {name!r}; give the head another name")
    for what, value in (("out_features", out_features), ("hidden", hidden)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"feature head {name!r}: {what} must be an integer >= 1, got {value!r}")
    _, classifier = find_classifier(net)
    head = FeatureHead(classifier.in_features, out_features, hidden, head_name=name)
    head = head.to(device=classifier.weight.device, dtype=classifier.weight.dtype)
    head.train(net.training)
    classifier.register_forward_pre_hook(head.capture)
    net.add_module(name, head)
    return head


def feature_head(model: nn.Module, name: str) -> FeatureHead:
    """The feature head called ``name`` anywhere inside ``model`` (e.g. inside its adapter).

    Raises:
        ModelError: ``model`` has no such head.
    """
    for module in model.modules():
        if isinstance(module, FeatureHead) and module.head_name == name:
            return module
    raise ModelError(
        f"the model has no feature head {name!r}; build its architecture with heads={{{name!r}: <width>}} "
        "(build_architecture, or the spec's arch_kwargs)"
    )
