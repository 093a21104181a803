"""Known answers: the akamaster checkpoints reproduce their authors' published CIFAR-10 test accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustlab import evaluate, load_dataset, load_model
from robustlab.models import MODELS


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("resnet20-akamaster", marks=pytest.mark.reproduction),
        pytest.param("resnet32-akamaster", marks=(pytest.mark.reproduction, pytest.mark.slow)),
        pytest.param("resnet44-akamaster", marks=(pytest.mark.reproduction, pytest.mark.slow)),
        pytest.param("resnet56-akamaster", marks=(pytest.mark.reproduction, pytest.mark.slow)),
    ],
)
def test_published_accuracy_on_the_full_test_set(name: str, data_dir: Path) -> None:
    result = evaluate(
        load_model(name, data_dir=data_dir, download=False), load_dataset("cifar10", "test", data_dir), batch_size=500
    )
    assert result.n == 10_000
    assert result.correct == round(MODELS.get(name).metrics["test_accuracy"] * 10_000)


@pytest.mark.parametrize(("depth", "millions"), [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85)])
def test_declared_size_matches_the_built_network_and_the_authors_table(depth: int, millions: float) -> None:
    from robustlab.models.loading import assemble
    from robustlab.train.standalone import count_flops

    spec = MODELS.get(f"resnet{depth}-akamaster")
    net = assemble(spec)
    params = sum(p.numel() for p in net.parameters())
    assert params == spec.metrics["parameters"]
    assert round(params / 1e6, 2) == millions  # the upstream README's parameter counts
    assert count_flops(net, spec.input_shape) == spec.metrics["flops"]
