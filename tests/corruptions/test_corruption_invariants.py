"""Invariants of every registered corruption: identity at severity 0, range, dtype, shape, seeding."""

from __future__ import annotations

import pytest
import torch

from robustlab.data.corruptions import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    corrupt,
    get_corruption,
    list_corruptions,
)

ALL = list_corruptions()


def _images(n: int = 2, c: int = 3, size: int = 32, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth images with edges, plus exact 0 and 1 values, as real images have
    base = torch.rand(n, c, size // 4, size // 4, generator=g)
    x = torch.nn.functional.interpolate(base, size=(size, size), mode="nearest")
    x[:, :, :2, :2] = 0.0
    x[:, :, -2:, -2:] = 1.0
    return x.to(dtype)


def test_registry_holds_the_15_benchmark_and_4_extra_corruptions() -> None:
    assert len(BENCHMARK_CORRUPTIONS) == 15 and len(EXTRA_CORRUPTIONS) == 4
    assert sorted(CORRUPTIONS.names()) == sorted(ALL)
    assert all(get_corruption(n).benchmark for n in BENCHMARK_CORRUPTIONS)
    assert not any(get_corruption(n).benchmark for n in EXTRA_CORRUPTIONS)


@pytest.mark.parametrize("name", ALL)
def test_severity_zero_is_the_identity(name: str) -> None:
    x = _images()
    y = corrupt(x, name, 0)
    assert torch.equal(y, x) and y is not x and y.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("severity", [1, 5])
def test_range_dtype_shape_kept_and_image_changed(name: str, severity: int) -> None:
    x = _images()
    y = corrupt(x, name, severity, generator=torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    if not (name == "elastic_transform" and severity == 1):  # CIFAR severity 1 is a tiny affine jitter
        assert (y - x).abs().mean() > 1e-4
    assert torch.equal(x, _images())  # the input is not modified


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["gaussian_noise", "zoom_blur", "jpeg_compression", "spatter"])
def test_other_float_dtypes_are_kept(name: str, dtype: torch.dtype) -> None:
    y = corrupt(_images(dtype=dtype), name, 2)
    assert y.dtype == dtype and y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_batch_other_seed_differs_when_stochastic(name: str) -> None:
    x = _images()
    a = corrupt(x, name, 3, generator=torch.Generator().manual_seed(7))
    b = corrupt(x, name, 3, generator=torch.Generator().manual_seed(7))
    c = corrupt(x, name, 3, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert get_corruption(name).stochastic == (not torch.equal(a, c))


def test_default_generator_is_fixed_not_global() -> None:
    x = _images()
    torch.manual_seed(123)
    a = corrupt(x, "gaussian_noise", 3)
    torch.manual_seed(456)
    assert torch.equal(a, corrupt(x, "gaussian_noise", 3))


def test_images_of_a_batch_get_independent_noise() -> None:
    x = _images(n=2)
    x[1] = x[0]
    y = corrupt(x, "gaussian_noise", 3)
    assert not torch.equal(y[0], y[1])


@pytest.mark.parametrize("name", ALL)
def test_grey_and_imagenet_sized_images(name: str) -> None:
    grey = corrupt(_images(n=1, c=1, size=16), name, 4)
    assert grey.shape == (1, 1, 16, 16) and grey.min() >= 0 and grey.max() <= 1
    large = corrupt(_images(n=1, size=40), name, 3)  # > 32 pixels: ImageNet-C constants
    assert large.shape == (1, 3, 40, 40) and large.min() >= 0 and large.max() <= 1


def test_constants_follow_the_image_size_unless_forced() -> None:
    c = get_corruption("gaussian_noise")
    assert c.params(3, "cifar") == 0.08 and c.params(3, "imagenet") == 0.18
    x = _images(n=64)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    auto = corrupt(x, "gaussian_noise", 5, generator=g())
    forced = corrupt(x, "gaussian_noise", 5, generator=g(), constants="imagenet")
    assert torch.equal(auto, corrupt(x, "gaussian_noise", 5, generator=g(), constants="cifar"))
    assert (forced - x).abs().mean() > 1.5 * (auto - x).abs().mean()
