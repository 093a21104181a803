"""The layout a network trains in (robustlab.train.layout): channels-last weights on CPU for a convolutional
network, the same arithmetic as row-major up to summation order, the model handed back as it came, and a network
that cannot run channels-last trained row-major (or refused when channels-last was asked for)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from robustlab import ConfigError, ModelAdapter, TrainConfig, train_model
from robustlab.train import layout
from robustlab.train.loop import StepReport

pytestmark = pytest.mark.usefixtures("one_thread")


class ViewHead(nn.Module):
    """Flattens with ``view``, which a channels-last activation refuses."""

    def forward(self, x: Tensor) -> Tensor:
        return x.view(x.size(0), -1)


def _model(head: nn.Module | None = None, seed: int = 0) -> ModelAdapter:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1, stride=2),
        nn.ReLU(),
        head if head is not None else nn.Flatten(),
        nn.Linear(6 * 4 * 4, 3),
    )
    return ModelAdapter(net, num_classes=3, input_shape=(1, 8, 8), mean=(0.5,), std=(0.3,))


def _data() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (100,), generator=g)
    x = (torch.rand(100, 1, 8, 8, generator=g) * 0.4 + y[:, None, None, None] * 0.3).clamp(0, 1)
    return x, y


CFG = TrainConfig(
    epochs=2, batch_size=25, lr=0.05, augment="none", method="pgd-at", method_params={"eps": 0.1, "steps": 2}
)


def _strides(model: ModelAdapter) -> dict[str, tuple[int, ...]]:
    return {k: v.stride() for k, v in model.net.state_dict().items()}


def test_auto_trains_a_conv_net_channels_last_on_cpu_and_hands_it_back_row_major(tmp_path: Path) -> None:
    model, (x, y) = _model(), _data()
    before = _strides(model)
    conv2 = model.net[3].weight
    seen: list[bool] = []

    def during(report: StepReport) -> None:
        seen.append(conv2.is_contiguous(memory_format=torch.channels_last) and not conv2.is_contiguous())

    result = train_model(model, x, y, CFG, tmp_path / "run", on_step=during)
    assert result.memory_format == "channels_last"
    assert seen and all(seen)  # every step ran with the weight in channels-last order
    assert _strides(model) == before  # handed back with its own strides


def test_channels_last_computes_what_row_major_computes(tmp_path: Path) -> None:
    """Two epochs of PGD-AT in each layout from the same start: the same weights up to float summation order
    (and the weights did move: a layout change that cut the optimiser off its parameters would fail here)."""
    (x, y), start = _data(), _model().net.state_dict()
    fast, plain = _model(), _model()
    assert train_model(fast, x, y, CFG, tmp_path / "cl", memory_format="channels_last").memory_format == "channels_last"
    assert train_model(plain, x, y, CFG, tmp_path / "rm", memory_format="contiguous").memory_format == "contiguous"
    for k, a in fast.net.state_dict().items():
        b = plain.net.state_dict()[k]
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5), k
    assert not torch.allclose(fast.net[0].weight, start["0.weight"], atol=1e-3)


def test_the_layout_is_not_part_of_the_fingerprint(tmp_path: Path) -> None:
    """A run interrupted after its first epoch row-major resumes channels-last (an execution setting, like the
    device)."""
    (x, y), model = _data(), _model()

    def hook(epoch: int, step: int, steps: int, loss: float) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(model, x, y, CFG, tmp_path / "run", memory_format="contiguous", progress=hook)
    resumed = train_model(_model(), x, y, CFG, tmp_path / "run", memory_format="auto")
    assert resumed.memory_format == "channels_last" and resumed.resumed_from == 1 and len(resumed.epochs) == 2


def test_an_interrupted_run_hands_the_model_back_row_major(tmp_path: Path) -> None:
    model, (x, y) = _model(), _data()
    before = _strides(model)

    def stop(epoch: int, step: int, steps: int, loss: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(model, x, y, CFG, tmp_path / "run", progress=stop)
    assert _strides(model) == before


def test_a_network_that_cannot_run_channels_last_trains_row_major_under_auto(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, (x, y) = _model(ViewHead()), _data()
    with caplog.at_level("INFO", logger="robustlab.train.layout"):
        result = train_model(model, x, y, CFG, tmp_path / "run")
    assert result.memory_format == "contiguous" and len(result.epochs) == 2
    assert "forward pass fails channels-last" in caplog.text


def test_asking_channels_last_of_such_a_network_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    model, (x, y) = _model(ViewHead()), _data()
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    with pytest.raises(ConfigError, match=r"cannot train channels-last \(its forward pass fails.*use memory_format"):
        train_model(model, x, y, CFG, tmp_path / "run", memory_format="channels_last")
    assert not (tmp_path / "run").exists()
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, before[k]) and v.is_contiguous(), k


def test_an_unknown_memory_format_is_refused_with_the_choices(tmp_path: Path) -> None:
    model, (x, y) = _model(), _data()
    with pytest.raises(ConfigError, match="memory_format must be one of auto, channels_last, contiguous; got 'nhwc'"):
        train_model(model, x, y, CFG, tmp_path / "run", memory_format="nhwc")
    assert not (tmp_path / "run").exists()


def test_auto_keeps_a_network_without_convolutions_row_major() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    model = ModelAdapter(net, num_classes=3, input_shape=(1, 8, 8), mean=(0.5,), std=(0.3,))
    assert layout.resolve("auto", model, _data()[0][:2]) == "contiguous"


def test_the_probe_changes_nothing_of_the_model() -> None:
    """resolve() forwards a probe in eval mode without gradients: batch-norm statistics, mode and weights stay."""
    model = _model().train()
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    assert layout.resolve("auto", model, _data()[0][:2]) == "channels_last"
    assert model.training
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, before[k]) and v.is_contiguous(), k


def test_auto_keeps_a_network_off_the_cpu_row_major() -> None:
    """The layout's gain is measured on CPU only; elsewhere ``auto`` leaves PyTorch's default (and runs no probe:
    a meta-device network cannot compute one)."""
    net = _model().net.to("meta")
    model = ModelAdapter(net, num_classes=3, input_shape=(1, 8, 8), mean=(0.5,), std=(0.3,)).to("meta")
    assert layout.resolve("auto", model, torch.empty(2, 1, 8, 8, device="meta")) == "contiguous"


class Noisy(nn.Module):
    """A randomised layer (as randomised defences have): Gaussian noise on the activations, also in eval mode, drawn
    in row-major order whatever the activation's layout (the same draws give the same logits in both layouts)."""

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.1 * torch.randn(x.shape, dtype=x.dtype, device=x.device)


def test_the_probe_leaves_the_callers_random_state_and_judges_a_randomised_network_by_equal_draws() -> None:
    torch.manual_seed(7)
    before = torch.get_rng_state()
    model = _model(nn.Sequential(Noisy(), nn.Flatten()))
    torch.set_rng_state(before)
    assert layout.resolve("channels_last", model, _data()[0][:2]) == "channels_last"
    assert torch.equal(torch.get_rng_state(), before)
