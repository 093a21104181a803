"""The audit's default surrogate: without one named, the cheapest standard zoo model of the same data guides the
transfer rungs (never the audited model itself), and the result records which one and why; with none fitting (MNIST,
a user dataset) or ``--surrogate none``, the transfer rungs are skipped with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from robustlab.audit import AuditConfig, audit, choose_surrogate
from robustlab.cli import app
from robustlab.models import list_models

from . import planted as P

pytestmark = pytest.mark.usefixtures("one_thread")

#: Budgets small enough for a handful of CIFAR-10 images: these tests are about which surrogate runs.
TINY = AuditConfig(
    steps_short=2,
    steps_long=3,
    restarts=1,
    apgd_steps=3,
    square_queries=5,
    sweep=(2.0,),
    gradient_points=4,
    min_points=1,
)
#: One step of everything (an eps of 0.2/255 leaves points for the transfer rungs to attack).
BUDGET = [
    *("--eps", "0.2/255", "-p", "steps_short=1", "-p", "steps_long=1", "-p", "apgd_steps=1", "-p", "restarts=1"),
    *("-p", "square_queries=1", "-p", "sweep=2", "-p", "gradient_points=2", "-p", "min_points=1"),
]


def test_the_default_is_the_standard_cifar10_zoo_model_with_the_fewest_flops_never_the_model_itself() -> None:
    cifar = [s for s in list_models("zoo") if s.dataset == "cifar10"]
    by_flops = sorted(cifar, key=lambda s: s.metrics["flops"])
    choice = choose_surrogate(input_shape=(3, 32, 32), num_classes=10, dataset="cifar10")
    assert choice.name == by_flops[0].name == "vgg8-w25" and choice.how == "default"
    assert "fewest FLOPs (9.1 MFLOPs)" in choice.reason and "cifar10" in choice.reason
    other = choose_surrogate(input_shape=(3, 32, 32), num_classes=10, dataset="cifar10", exclude=("vgg8-w25",))
    assert other.name == by_flops[1].name
    # the dataset unknown: shape and classes decide
    assert choose_surrogate(input_shape=(3, 32, 32), num_classes=10).name == "vgg8-w25"


@pytest.mark.parametrize(
    ("shape", "classes", "dataset"),
    [((1, 28, 28), 10, "mnist"), ((3, 32, 32), 10, "mnist"), ((3, 32, 32), 5, "cifar10"), ((1, 8, 8), 10, None)],
)
def test_no_standard_zoo_model_of_the_data_means_no_surrogate_and_says_why(
    shape: tuple[int, ...], classes: int, dataset: str | None
) -> None:
    choice = choose_surrogate(input_shape=shape, num_classes=classes, dataset=dataset)
    assert choice.name is None and choice.how == "none"
    assert choice.reason.startswith("no surrogate given and no standard zoo model")
    assert f"{shape}" in choice.reason and "--surrogate" in choice.reason


def test_audit_without_a_surrogate_on_data_no_zoo_model_takes_skips_the_transfer_rungs_with_the_reason() -> None:
    x, y = P.data(20, seed=5)
    result = audit(P.make_template(), x, y, eps=0.1, config=TINY)
    assert result.surrogate is None and result.surrogate_choice is not None
    assert result.surrogate_choice.how == "none"
    skipped = {s["attack"]: s["reason"] for s in result.skipped}
    assert skipped["transfer-pgd-3"] == result.surrogate_choice.reason
    assert "no standard zoo model taking (1, 8, 8) inputs" in skipped["guided-pgd-3"]
    assert "no standard zoo model taking (1, 8, 8) inputs" in skipped["gpga-3"]
    out = result.to_dict()
    assert out["surrogate_choice"] == {"name": None, "how": "none", "reason": result.surrogate_choice.reason}
    explicit = audit(P.make_template(), x, y, eps=0.1, config=TINY, surrogate=None)
    assert {s["attack"]: s["reason"] for s in explicit.skipped}["transfer-pgd-3"] == "no surrogate given"


def _json(args: list[str]) -> dict[str, Any]:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_cli_audit_of_a_cifar10_model_without_surrogate_uses_vgg8_and_records_why(data_dir: Path) -> None:
    base = ["audit", "--model", "alexnet-w25", "--dataset", "cifar10", "--n", "4", *BUDGET]
    out = _json(base)
    assert out["surrogate"] == "vgg8-w25"
    assert out["surrogate_choice"]["how"] == "default" and "fewest FLOPs" in out["surrogate_choice"]["reason"]
    ran = {r["attack"]: r for r in out["rungs"]}
    assert ran["transfer-pgd-1"]["attacked"] > 0 and ran["guided-pgd-1"]["attacked"] > 0
    assert ran["gpga-1"]["registered_attack"] == "gpga" and ran["gpga-1"]["guide"] == "surrogate"
    none = CliRunner().invoke(app, [*base, "--surrogate", "none"])
    assert none.exit_code == 0, none.output
    assert "skipped transfer-pgd-1: no surrogate given" in " ".join(none.stdout.split())


def test_cli_audit_of_the_cheapest_model_itself_takes_the_next_one_and_says_why(data_dir: Path) -> None:
    cifar = sorted((s for s in list_models("zoo") if s.dataset == "cifar10"), key=lambda s: s.metrics["flops"])
    table = CliRunner().invoke(app, ["audit", "--model", "vgg8-w25", "--dataset", "cifar10", "--n", "2", *BUDGET])
    assert table.exit_code == 0, table.output
    said = " ".join(table.stdout.split())
    assert (
        f"surrogate {cifar[1].name}: no surrogate given: {cifar[1].name} is the standard zoo model of cifar10" in said
    )
