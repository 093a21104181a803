"""Architectures, the model registry and its error messages."""

from __future__ import annotations

import pytest
import torch

from robustlab import ModelError, UnknownNameError, build_model, list_models, load_model
from robustlab.models import ARCHITECTURES, MODELS, build_architecture
from robustlab.train.standalone import count_flops
from robustlab.train.zoo import RECIPES


@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_every_architecture_builds_and_gives_logits(name: str) -> None:
    in_ch, size = (1, 28) if name in ("lenet", "mlp") else (3, 32)
    net = build_architecture(name, num_classes=7, in_channels=in_ch).eval()
    assert net(torch.rand(2, in_ch, size, size)).shape == (2, 7)


def test_zoo_has_at_least_twelve_recipes_over_six_families() -> None:
    families = {RECIPES.get(n).family for n in RECIPES}
    assert len(RECIPES) >= 12
    assert {"alexnet", "vgg", "inception", "resnet", "densenet", "mobilenet"} <= families


def test_unknown_model_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown model 'resnet20-akamastr'.*Did you mean: resnet20-akamaster"):
        load_model("resnet20-akamastr")


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"),
    [
        ("resnet_cifar", {"depth": 21}, r"depth must be 6n\+2"),
        ("vgg", {"depth": 12}, "VGG depth must be one of"),
        ("densenet_bc", {"depth": 11}, r"depth must be 6n\+4"),
        ("wideresnet", {"depth": 11}, r"depth must be 6n\+4"),
        ("mobilenetv2_cifar", {"stages": 0}, "stages must be in 1"),
        ("vgg", {"colour": 3}, "unexpected keyword argument 'colour'"),
    ],
)
def test_arguments_an_architecture_refuses_raise_a_model_error_naming_them(
    name: str, kwargs: dict, fragment: str
) -> None:
    with pytest.raises(ModelError, match=rf"cannot build architecture '{name}' with arguments .*{fragment}"):
        build_architecture(name, **kwargs)


def test_unknown_architecture_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean: resnet_cifar"):
        build_architecture("resnet_cifa")


def test_published_checkpoints_are_declared_by_spec() -> None:
    published = {s.name for s in list_models("published")}
    assert published == {f"resnet{d}-akamaster" for d in (20, 32, 44, 56)}
    for name in published:
        w = MODELS.get(name).weights
        assert w is not None and w.url and w.url.endswith(w.filename) and len(w.sha256) == 64


def test_flop_count_of_a_conv_is_exact() -> None:
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # 8 output channels × 32×32 positions × 27 multiply-adds × 2
    assert count_flops(conv, (3, 32, 32)) == 8 * 32 * 32 * 27 * 2


def test_untrained_build_needs_no_weights() -> None:
    m = build_model(MODELS.get("resnet20-akamaster"), pretrained=False)
    assert m(torch.rand(1, 3, 32, 32)).shape == (1, 10)
