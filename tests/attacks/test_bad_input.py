"""Bad input: each case is a clear error (message checked) or a recorded status."""

from __future__ import annotations

import math

import pytest
import torch

from robustlab.attacks import attack, parse_eps
from robustlab.attacks.oracle import LinearClassifier
from robustlab.errors import ConfigError, InputContractError, UnknownNameError


def problem(num_classes: int = 3, n: int = 6):
    g = torch.Generator().manual_seed(0)
    model = LinearClassifier(torch.randn(num_classes, 12, generator=g), torch.zeros(num_classes))
    x = torch.rand((n, 3, 2, 2), generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


@pytest.mark.parametrize("eps", [-0.1, "-1/255", math.nan])
def test_negative_or_nan_eps(eps: float | str) -> None:
    model, x, y = problem()
    with pytest.raises(ConfigError, match="eps must be >= 0"):
        attack(model, x, y, "pgd", eps=eps)


def test_unreadable_eps() -> None:
    with pytest.raises(ConfigError, match="cannot read eps '8/two'"):
        parse_eps("8/two")
    with pytest.raises(ConfigError, match="cannot read eps"):
        parse_eps("1/0")


@pytest.mark.parametrize("steps", [0, -3])
def test_steps_must_be_positive(steps: int) -> None:
    model, x, y = problem()
    with pytest.raises(ConfigError, match=f"steps must be an integer >= 1, got {steps}"):
        attack(model, x, y, "pgd", eps=0.1, steps=steps)


def test_step_size_must_be_positive() -> None:
    model, x, y = problem()
    with pytest.raises(ConfigError, match="step_size must be > 0"):
        attack(model, x, y, "pgd", eps=0.1, step_size=0.0)


def test_fgsm_is_one_step() -> None:
    model, x, y = problem()
    with pytest.raises(ConfigError, match=r"fgsm takes exactly one step.*use 'ifgsm' or 'pgd'"):
        attack(model, x, y, "fgsm", eps=0.1, steps=5)


def test_warm_start_needs_the_minimal_search_of_an_iterative_attack() -> None:
    model, x, y = problem()
    with pytest.raises(ConfigError, match=r"warm_start applies to the minimal search \(minimal=True\) of ifgsm"):
        attack(model, x, y, "ifgsm", eps=0.1, warm_start=True)
    with pytest.raises(ConfigError, match=r"warm_start needs an iterative attack \(ifgsm, pgd, mifgsm\)"):
        attack(model, x, y, "fgsm", eps=0.1, minimal=True, warm_start=True)
    with pytest.raises(ConfigError, match="parameter 'warm_start' of attack 'pgd' must be true or false, got 'yes'"):
        attack(model, x, y, "pgd", eps=0.1, minimal=True, warm_start="yes")
    # C&W keeps its own warm_start setting (restart each inner run from the best example)
    res = attack(model, x, y, "cw", steps=5, search_steps=2, warm_start=True)
    assert res.params["warm_start"] is True


def test_unknown_attack_suggests_close_matches() -> None:
    model, x, y = problem()
    with pytest.raises(UnknownNameError, match=r"unknown attack 'pgdd'\. Did you mean: pgd"):
        attack(model, x, y, "pgdd")
    with pytest.raises(UnknownNameError, match="Did you mean: ifgsm"):
        attack(model, x, y, "i-fgsm")


def test_unknown_norm_suggests_close_matches() -> None:
    model, x, y = problem()
    with pytest.raises(UnknownNameError, match=r"unknown norm 'l_2'.*Did you mean: l2"):
        attack(model, x, y, "pgd", norm="l_2")


def test_norm_the_attack_does_not_support() -> None:
    model, x, y = problem()
    with pytest.raises(ConfigError, match="attack 'cw' does not support norm 'linf'; it supports l2"):
        attack(model, x, y, "cw", norm="linf")


def test_unknown_parameter_suggests_close_matches() -> None:
    model, x, y = problem()
    with pytest.raises(ConfigError, match=r"unknown parameter 'restart' for attack 'pgd'\. Did you mean: restarts"):
        attack(model, x, y, "pgd", restart=3)


def test_unknown_target_mode_suggests_close_matches() -> None:
    model, x, y = problem()
    with pytest.raises(UnknownNameError, match=r"unknown target mode 'least-likly'.*Did you mean: least-likely"):
        attack(model, x, y, "pgd", target="least-likly")


def test_target_mode_the_number_of_classes_cannot_support() -> None:
    model, x, y = problem(num_classes=2)
    with pytest.raises(ConfigError, match="target mode 'least-likely' needs at least 3 classes, the model has 2"):
        attack(model, x, y, "pgd", target="least_likely")


def test_loss_the_number_of_classes_cannot_support() -> None:
    model, x, y = problem(num_classes=3)
    with pytest.raises(ConfigError, match="the targeted DLR loss needs at least 4 classes, the model has 3"):
        attack(model, x, y, "pgd", loss="dlr", target="random")


def test_a_single_class_model_cannot_be_attacked() -> None:
    model, x, _ = problem(num_classes=1)
    with pytest.raises(ConfigError, match="needs at least 2 classes, the model has 1"):
        attack(model, x, torch.zeros(x.shape[0], dtype=torch.int64), "fgsm")


def test_labels_out_of_range() -> None:
    model, x, y = problem(num_classes=3)
    y = y.clone()
    y[2] = 3
    with pytest.raises(ConfigError, match=r"labels out of range: the model has 3 classes \(0..2\).*positions \[2\]"):
        attack(model, x, y, "pgd")
    y[2] = -1
    with pytest.raises(ConfigError, match="labels out of range"):
        attack(model, x, y, "pgd")


def test_labels_must_be_integers_of_the_right_length() -> None:
    model, x, y = problem()
    with pytest.raises(ConfigError, match="labels must be integer class indices"):
        attack(model, x, y.float(), "pgd")
    with pytest.raises(ConfigError, match=r"y must be a tensor of shape \(6,\)"):
        attack(model, x, y[:3], "pgd")


def test_targets_out_of_range_or_equal_to_the_label() -> None:
    model, x, y = problem(num_classes=3)
    with pytest.raises(ConfigError, match="targets out of range: the model has 3 classes"):
        attack(model, x, y, "pgd", target=torch.full_like(y, 5))
    with pytest.raises(ConfigError, match="6 targets equal their label"):
        attack(model, x, y, "pgd", target=y.clone())


def test_inputs_outside_the_unit_box() -> None:
    model, x, y = problem()
    with pytest.raises(InputContractError, match=r"attack: input values span .* outside \[0, 1\]; inputs look norm"):
        attack(model, (x - 0.5) / 0.25, y, "pgd")
    with pytest.raises(InputContractError, match="NaN or infinite"):
        attack(model, x.masked_fill(x > 0.9, math.nan), y, "pgd")
    with pytest.raises(InputContractError, match="floating-point"):
        attack(model, (x * 255).to(torch.uint8), y, "pgd")


def test_minimal_search_needs_a_finite_start() -> None:
    model, x, y = problem()
    with pytest.raises(ConfigError, match="the minimal search needs a finite eps > 0"):
        attack(model, x, y, "pgd", eps=math.inf, minimal=True)


def test_model_that_does_not_return_logits() -> None:
    _, x, y = problem()
    with pytest.raises(ConfigError, match=r"the model must return logits of shape \(N, K\)"):
        attack(torch.nn.Flatten(0), x, y, "pgd")
