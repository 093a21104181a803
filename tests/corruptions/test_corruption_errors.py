"""Bad inputs raise robustlab errors whose messages say what is wrong and what to do."""

from __future__ import annotations

import pytest
import torch

from robustlab.data.corruptions import corrupt, get_corruption, list_corruptions
from robustlab.errors import ConfigError, InputContractError, UnknownNameError

X = torch.rand(2, 3, 32, 32)


def test_unknown_corruption_lists_close_matches() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown corruption 'gausian_noise'.*Did you mean: gaussian_noise"):
        corrupt(X, "gausian_noise", 1)
    with pytest.raises(UnknownNameError, match="Did you mean: jpeg_compression"):
        get_corruption("jpeg_compresion")


@pytest.mark.parametrize("severity", [6, -1, 2.0, True, "3", None])
def test_severity_out_of_range(severity: object) -> None:
    with pytest.raises(ConfigError, match=r"severity must be an integer in 0\.\.5 \(0 = no corruption\)"):
        corrupt(X, "contrast", severity)  # type: ignore[arg-type]


def test_uint8_input_says_how_to_convert() -> None:
    fragment = r"dtype torch\.uint8 is not floating-point.*Convert with x\.float\(\) / 255"
    with pytest.raises(InputContractError, match=fragment):
        corrupt((X * 255).to(torch.uint8), "contrast", 1)


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (X.numpy(), "got ndarray"),
        (X[0], r"shape \(3, 32, 32\) is not \(N, C, H, W\)\. Add a batch dimension"),
        (torch.rand(2, 4, 32, 32), r"shape \(2, 4, 32, 32\) does not match \(N, 1 or 3, H, W\)"),
        (X * 2 - 1, r"input values span \[-.*outside \[0, 1\]; inputs look normalised"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN or infinite"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.int32), r"dtype torch\.int32 is not floating-point"),
        (torch.rand(1, 3, 4, 4), "at least 8×8"),
    ],
)
def test_input_contract(x: object, fragment: str) -> None:
    with pytest.raises(InputContractError, match=fragment):
        corrupt(x, "contrast", 1)  # type: ignore[arg-type]


def test_bad_constants_and_generator() -> None:
    with pytest.raises(ConfigError, match="constants must be 'auto', 'cifar' or 'imagenet'"):
        corrupt(X, "contrast", 1, constants="tiny")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"generator must be a torch\.Generator"):
        corrupt(X, "gaussian_noise", 1, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="which must be"):
        list_corruptions("weather")  # type: ignore[arg-type]


def test_empty_batch_is_fine() -> None:
    assert corrupt(torch.empty(0, 3, 32, 32), "fog", 3).shape == (0, 3, 32, 32)
