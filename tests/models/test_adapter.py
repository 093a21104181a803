"""The input contract of ModelAdapter: every bad input is refused with a message that says how to fix it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlab import InputContractError, ModelAdapter, ModelError
from robustlab.errors import ConfigError
from robustlab.models import ProbabilityOutputWarning, eval_mode


def _adapter(num_classes: int = 3, out: int | None = None, softmax: bool = False) -> ModelAdapter:
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(3 * 4 * 4, out or num_classes)]
    if softmax:
        layers.append(nn.Softmax(dim=1))
    return ModelAdapter(
        nn.Sequential(*layers),
        num_classes=num_classes,
        input_shape=(3, 4, 4),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        name="toy",
    )


def test_valid_input_gives_logits_and_normalises_inside() -> None:
    m = _adapter()
    x = torch.rand(2, 3, 4, 4)
    expected = m.net((x - 0.5) / 0.25)
    torch.testing.assert_close(m(x), expected)


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (torch.randint(0, 255, (2, 3, 4, 4), dtype=torch.uint8), "x.float() / 255"),
        ((torch.rand(2, 3, 4, 4) - 0.5) / 0.25, "inputs look normalised"),
        (torch.rand(2, 3, 4, 4) * 255, "divide by 255"),
        (torch.full((2, 3, 4, 4), float("nan")), "NaN"),
        (torch.rand(3, 4, 4), "x.unsqueeze(0)"),
        (torch.rand(2, 4, 4, 3), "x.permute(0, 3, 1, 2)"),
        (torch.rand(2, 3, 5, 5), "does not match (N, 3, 4, 4)"),
    ],
    ids=["uint8", "normalised", "0-255-float", "nan", "no-batch-dim", "nhwc", "wrong-size"],
)
def test_bad_inputs_are_refused_with_a_fix(x: torch.Tensor, fragment: str) -> None:
    with pytest.raises(InputContractError, match="toy") as info:
        _adapter()(x)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("value", "shown"), [(1.00001, "1.00001]"), (-0.03, "[-0.03,")])
def test_inputs_just_outside_the_box_are_told_to_clip(value: float, shown: str) -> None:
    # an unclipped perturbation (e.g. an attack's extrapolated point): the message must show the excess that a
    # 3-digit format would round away ("span [0, 1], outside [0, 1]") and not call the images normalised
    x = torch.rand(2, 3, 4, 4) * 0.5 + 0.25
    x[0, 0, 0, 0] = value
    with pytest.raises(InputContractError, match="toy") as info:
        _adapter()(x)
    assert shown in str(info.value)
    assert "x.clamp(0, 1)" in str(info.value)
    assert "normalised" not in str(info.value)


def test_wrong_num_classes_is_named() -> None:
    m = _adapter(num_classes=5, out=3)
    with pytest.raises(ModelError, match=r"returned shape \(2, 3\), expected \(N, 5\)"):
        m(torch.rand(2, 3, 4, 4))


def test_one_class_model_is_refused() -> None:
    with pytest.raises(ModelError, match="at least 2 classes"):
        ModelAdapter(nn.Identity(), num_classes=1)


def test_probability_outputs_warn() -> None:
    m = _adapter(softmax=True)
    with pytest.warns(ProbabilityOutputWarning, match="remove the final softmax"):
        m(torch.rand(2, 3, 4, 4))


def test_predict_uses_eval_mode_and_restores_caller_mode() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.Dropout(0.9), nn.Linear(8, 3))
    m = ModelAdapter(net, num_classes=3, input_shape=(3, 4, 4))
    m.train()
    x = torch.rand(16, 3, 4, 4)
    a, b = m.predict_logits(x), m.predict_logits(x)
    torch.testing.assert_close(a, b)  # dropout off: deterministic
    assert m.training and net[2].training
    net[2].eval()  # a mixed state is restored module by module
    with eval_mode(m):
        assert not net[1].training
    assert m.training and not net[2].training


def test_trusted_inputs_skips_the_checks_only_inside_the_block() -> None:
    from robustlab.models.adapter import trusted_inputs

    m = _adapter()
    bad = torch.full((1, 3, 4, 4), 2.0)  # outside [0, 1]
    with trusted_inputs(nn.Sequential(m)):  # found inside a wrapper too
        assert m(bad).shape == (1, 3)
    with pytest.raises(InputContractError, match=r"outside \[0, 1\]"):
        m(bad)
    with pytest.raises(RuntimeError, match="boom"), trusted_inputs(m):
        raise RuntimeError("boom")
    assert m.check_inputs  # restored after an exception
    m.check_inputs = False  # a caller's own choice is kept
    with trusted_inputs(m):
        pass
    assert not m.check_inputs


def test_check_images_is_the_adapters_check_with_the_same_words() -> None:
    from robustlab.models import check_images

    m = _adapter()
    for bad in ((torch.rand(2, 3, 4, 4) - 0.5) / 0.25, torch.rand(2, 3, 4, 4) * 255, torch.rand(2, 4, 4, 3)):
        with pytest.raises(InputContractError) as by_adapter:
            m(bad)
        with pytest.raises(InputContractError) as by_function:
            check_images(bad, 3, size=(4, 4), name="toy")
        assert str(by_function.value) == str(by_adapter.value)
    x = torch.rand(2, 3, 4, 4)
    assert check_images(x) is x


def test_check_images_takes_a_set_of_channel_counts_and_flat_rows_when_asked() -> None:
    from robustlab.models import check_images

    check_images(torch.rand(2, 1, 8, 8), (1, 3))
    with pytest.raises(InputContractError, match=r"corrupt: input shape \(2, 4, 8, 8\) does not match \(N, 1 or 3"):
        check_images(torch.rand(2, 4, 8, 8), (1, 3), name="corrupt")
    flat = torch.rand(5, 6)
    assert check_images(flat, ndim=None) is flat  # a linear model's rows
    with pytest.raises(InputContractError, match=r"is not \(N, C, H, W\)"):
        check_images(flat)
    with pytest.raises(InputContractError, match=r"input shape \(6,\) is not \(N, \.\.\.\)\. Add a batch dimension"):
        check_images(flat[0], ndim=None)
    with pytest.raises(InputContractError, match="NaN or infinite"):
        check_images(torch.full((1, 1, 2, 2), float("inf")))
    with pytest.raises(InputContractError, match=r"expected a torch\.Tensor of images, got list"):
        check_images([[0.5]])


def test_predict_logits_runs_batches_in_eval_mode_without_gradients() -> None:
    from robustlab.models import predict_logits

    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.Dropout(0.9), nn.Linear(8, 3))
    sizes: list[int] = []
    net.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    net.train()
    x = torch.rand(10, 3, 4, 4, requires_grad=True)
    out = predict_logits(net, x, 4)
    assert sizes == [4, 4, 2]
    assert net.training and net[2].training  # the caller's mode is restored
    assert not out.requires_grad and out.device == x.device
    with torch.no_grad(), eval_mode(net):
        torch.testing.assert_close(out, net(x))  # dropout off, same numbers as one pass
    sizes.clear()
    torch.testing.assert_close(predict_logits(net, x, None), out)
    assert sizes == [10]  # None: one pass


def test_predict_logits_prepares_each_batch_and_refuses_a_bad_batch_size() -> None:
    from robustlab.data import to_float_images
    from robustlab.models import predict_logits

    m = _adapter()
    pixels = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    got = predict_logits(m, pixels, 2, prepare=to_float_images)
    torch.testing.assert_close(got, m(pixels.float() / 255))
    assert predict_logits(m, pixels[:0], 2, prepare=to_float_images).shape == (0, 3)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match=r"batch_size must be an integer >= 1"):
            predict_logits(m, pixels, bad, prepare=to_float_images)  # type: ignore[arg-type]


def _identity_adapter() -> ModelAdapter:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 10)).double()
    return ModelAdapter(net, num_classes=10, input_shape=(1, 6, 6), mean=(0.0,), std=(1.0,), name="raw")


def _explicit(m: ModelAdapter, x: torch.Tensor) -> torch.Tensor:
    """The adapter's forward with the normalisation always computed."""
    return m.net((x - m.mean.to(x.dtype)) / m.std.to(x.dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_normalisation_is_skipped_with_the_same_logits_and_gradients_to_the_bit(dtype: torch.dtype) -> None:
    m = _identity_adapter().to(dtype)
    x = torch.rand(5, 1, 6, 6, dtype=dtype)
    x[0, 0, 0, 0] = -0.0  # (-0) - 0 is -0: the sign of zero survives either way
    assert m.normalise(x) is x  # skipped: no pass over the batch
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_a, out_b = m(a), _explicit(m, b)
    assert torch.equal(out_a, out_b)
    (ga,) = torch.autograd.grad(out_a.square().sum(), a)
    (gb,) = torch.autograd.grad(out_b.square().sum(), b)
    assert torch.equal(ga, gb)


def test_identity_normalisation_is_rechecked_when_the_buffers_change() -> None:
    m = _identity_adapter()
    x = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    assert m.normalise(x) is x
    m.mean.fill_(0.5)  # changed in place: the version counter moves
    torch.testing.assert_close(m.normalise(x), x - 0.5)
    m.mean.zero_()
    assert m.normalise(x) is x
    m.std = torch.full_like(m.std, 2.0)  # replaced
    torch.testing.assert_close(m.normalise(x), x / 2)


def test_a_real_normalisation_and_integer_inputs_are_never_skipped() -> None:
    m = _adapter()
    x = torch.rand(2, 3, 4, 4)
    assert m.normalise(x) is not x
    raw = _identity_adapter()
    ints = torch.ones(1, 1, 6, 6, dtype=torch.int64)
    assert raw.normalise(ints).dtype == torch.float32  # promoted by the arithmetic, as before
