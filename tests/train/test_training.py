"""Training: augmentation semantics, exact resumption, refused config changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlab import ConfigError, ModelAdapter, TrainConfig, train_model
from robustlab.data import Dataset
from robustlab.models import ModelSpec
from robustlab.train import random_crop_flip


def test_random_crop_equals_a_slice_of_the_padded_image() -> None:
    x = torch.randint(0, 255, (16, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(x, torch.Generator().manual_seed(3), pad=2, flip=False)
    g = torch.Generator().manual_seed(3)
    oy, ox = torch.randint(0, 5, (16,), generator=g), torch.randint(0, 5, (16,), generator=g)
    padded = F.pad(x, (2, 2, 2, 2))
    expected = torch.stack([padded[i, :, oy[i] : oy[i] + 8, ox[i] : ox[i] + 8] for i in range(16)])
    assert torch.equal(out, expected) and out.dtype == torch.uint8


def test_flip_only_mirrors() -> None:
    x = torch.rand(64, 1, 4, 4)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54


def _model() -> ModelAdapter:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 4))
    return ModelAdapter(net, num_classes=4, input_shape=(3, 8, 8), mean=(0.5,) * 3, std=(0.3,) * 3)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (200,), generator=g)
    x = (torch.rand(200, 3, 8, 8, generator=g) * 30 + y[:, None, None, None] * 60).to(torch.uint8)
    return x, y


def test_resume_gives_identical_weights(tmp_path: Path) -> None:
    x, y = _data()
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05)
    straight = _model()
    train_model(straight, x, y, cfg, tmp_path / "a")
    resumed = _model()
    train_model(resumed, x, y, TrainConfig(epochs=3, batch_size=32, lr=0.05), tmp_path / "b")
    # simulate a kill after epoch 1: rebuild the checkpoint state by training 1 epoch of a 3-epoch schedule
    interrupted = _model()
    ckpt_dir = tmp_path / "c"
    state_after_1 = _train_epochs(interrupted, x, y, cfg, ckpt_dir, stop_after=1)
    assert state_after_1 == 1
    fresh = _model()
    result = train_model(fresh, x, y, cfg, ckpt_dir)
    assert result.resumed_from == 1
    for a, b in zip(straight.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    lines = (ckpt_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert result.epochs[-1].train_accuracy > 0.5  # the toy task is learnable


def _train_epochs(
    model: ModelAdapter, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, run: Path, stop_after: int
) -> int:
    """Run ``train_model`` but kill it (an exception from the progress hook) once epoch ``stop_after`` is saved."""
    steps = -(-len(x) // cfg.batch_size)

    def hook(epoch: int, step: int, total: int, loss: float) -> None:
        if epoch == stop_after and step == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(model, x, y, cfg, run, progress=hook)
    assert steps > 0
    return int(torch.load(run / "checkpoint.pt", weights_only=True)["epoch"])


def test_resuming_with_another_config_is_refused(tmp_path: Path) -> None:
    x, y = _data()
    train_model(_model(), x, y, TrainConfig(epochs=1, batch_size=50), tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="changed: lr"):
        train_model(_model(), x, y, TrainConfig(epochs=1, batch_size=50, lr=0.3), tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(
    ("kwargs", "msg"), [({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"augment": "mixup"}, "augment")]
)
def test_bad_config(kwargs: dict, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        TrainConfig(**kwargs)


def _dataset(x: torch.Tensor, y: torch.Tensor, name: str) -> Dataset:
    return Dataset(name, "train", x, y, ("a", "b", "c", "d"), torch.arange(len(y)))


def _toy_spec() -> ModelSpec:
    return ModelSpec("toy", "mlp", "mlp", 4, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, "toy", {"image_size": 8})


def test_without_a_held_out_split_only_the_training_accuracy_is_recorded_and_named_so(tmp_path: Path) -> None:
    from robustlab.train.standalone import fit_and_export

    x, y = _data()
    cfg = TrainConfig(epochs=1, batch_size=50, lr=0.05)
    train = _dataset(x, y, "npz:/toy.npz")
    spec = fit_and_export(_toy_spec(), train, None, cfg, tmp_path / "run", tmp_path / "m.safetensors")
    assert "test_accuracy" not in spec.metrics and "test_images" not in spec.metrics
    assert 0.0 <= spec.metrics["train_accuracy"] <= 1.0 and spec.metrics["train_images"] == 200
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["metrics"]["train_accuracy"] == spec.metrics["train_accuracy"]


def test_with_a_held_out_split_the_test_accuracy_is_recorded(tmp_path: Path) -> None:
    from robustlab.train.standalone import fit_and_export

    x, y = _data()
    cfg = TrainConfig(epochs=1, batch_size=50, lr=0.05)
    train, test = _dataset(x[:150], y[:150], "toy"), _dataset(x[150:], y[150:], "toy")
    spec = fit_and_export(_toy_spec(), train, test, cfg, tmp_path / "run", tmp_path / "m.safetensors")
    assert spec.metrics["test_images"] == 50 and "train_accuracy" not in spec.metrics
    assert spec.metrics["test_accuracy"] * 50 == round(spec.metrics["test_accuracy"] * 50)


def test_build_zoo_refuses_an_unknown_recipe_before_training_anything(tmp_path: Path) -> None:
    from robustlab.errors import UnknownNameError
    from robustlab.train.zoo import build_zoo

    with pytest.raises(UnknownNameError, match="Did you mean: resnet20"):
        build_zoo(["resnet8", "resnet2O"], tmp_path / "runs", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
