"""The semantic attack's records: the judged image is re-rendered from the recorded parameters, the parameters lie
in the threat model, the joint attack is never weaker than one attribute alone, the seed fixes the result and the
model's modes are restored.

A random-init conv net on smooth random 3×16×16 images (every image classified as itself: labels are the model's
predictions); steps=5, restarts=1, grid=5 keep each run around a second.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks import AttackResult, attack
from robustlab.attacks._semantic import semantic_attack
from robustlab.threat.semantic import SemanticThreat, semantic_threat

SEARCH: dict[str, Any] = {"steps": 5, "restarts": 1, "grid": 5}

#: Narrow ranges on which the tiny model is fooled on some images and not on others (7 of 16 with seed 0), some
#: of them by one attribute alone.
NARROW = {"rotation": (-6.0, 6.0), "hue": (-0.2, 0.2), "brightness": (-0.05, 0.05), "contrast": (0.8, 1.2)}


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 10)
    )


def problem(n: int = 16, size: int = 16) -> tuple[nn.Module, Tensor, Tensor]:
    """The model, smooth random images (4×4 noise upsampled: regions differ, so predictions do) and their labels."""
    model = tiny_model()
    g = torch.Generator().manual_seed(1)
    x = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(size, size), mode="bilinear", align_corners=False)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def recorded_threat(result: AttackResult) -> SemanticThreat:
    """The threat model rebuilt from the result's summary alone."""
    s = result.summary()
    ranges = {a: (lo, hi) for a, (lo, hi) in s["ranges"].items()}
    return semantic_threat(s["preset"], s["attributes"], ranges, s["pixel_eps"], s["padding"])


def recorded_values(result: AttackResult, threat: SemanticThreat) -> Tensor:
    """The ``attr_*`` columns as an ``(N, A)`` float64 tensor, in the threat's attribute order."""
    return torch.tensor([result.columns[f"attr_{a}"] for a in threat.attributes], dtype=torch.float64).T


def narrow_attack(pixel_eps: float = 0.0, seed: int = 0, **kwargs: Any) -> AttackResult:
    model, x, y = problem()
    return semantic_attack(
        model, x, y, attributes=list(NARROW), ranges=NARROW, pixel_eps=pixel_eps, seed=seed, **SEARCH, **kwargs
    )


@pytest.fixture(scope="module")
def narrow_run() -> AttackResult:
    before = torch.get_num_threads()  # module scope: the per-test one_thread fixture is not active yet
    torch.set_num_threads(1)
    try:
        return narrow_attack()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("preset", ["mild", "caa"])
def test_re_rendering_the_recorded_parameters_reproduces_the_judged_image(preset: str) -> None:
    model, x, y = problem()
    # through the public entry point: eps is the pixel budget, 0 = attributes only (nothing else to record)
    result = attack(model, x, y, "semantic", eps=0, preset=preset, keep_adversarials=True, **SEARCH)
    assert result.adversarials is not None
    threat = recorded_threat(result)
    assert threat.preset == preset and threat.pixel_eps == 0.0
    u = threat.normalise(recorded_values(result, threat)).to(x.dtype)
    again = threat.render(x, u)
    assert (again - result.adversarials).abs().max() < 1e-5
    # and the recorded distortions are those of the judged image
    linf = (result.adversarials - x).flatten(1).abs().amax(1).double()
    assert torch.allclose(result.linf, linf)
    # the images moved: the comparison is not between clean images
    assert bool((result.linf > 0).all())
    with torch.no_grad():
        assert torch.equal(model(result.adversarials).argmax(1), result.adv_pred)


def test_the_pixel_residual_stays_within_its_budget() -> None:
    model, x, y = problem()
    eps = 2 / 255
    result = semantic_attack(model, x, y, preset="mild", pixel_eps=eps, **SEARCH)
    pixel = torch.tensor(result.columns["pixel_linf"], dtype=torch.float64)
    assert float(pixel.max()) <= eps + 1e-7
    assert float(pixel.max()) > eps / 2  # a residual was used
    assert result.eps == eps and result.summary()["pixel_eps"] == eps


def test_recorded_attribute_values_lie_in_their_ranges(narrow_run: AttackResult) -> None:
    threat = recorded_threat(narrow_run)
    values = recorded_values(narrow_run, threat)
    assert threat.attributes == ("rotation", "hue", "contrast", "brightness")  # rendering order, not given order
    for i, a in enumerate(threat.attributes):
        low, high = NARROW[a]
        slack = 1e-6 * max(1.0, abs(low), abs(high))  # float32 rounding of low + (u + 1) / 2 (high - low)
        assert float(values[:, i].min()) >= low - slack, a
        assert float(values[:, i].max()) <= high + slack, a
    # the search moved some attribute of every attacked image away from its identity
    ident = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    assert bool(((values - ident).abs().amax(1) > 1e-3).all())


def test_the_joint_attack_is_never_weaker_than_one_attribute_alone(narrow_run: AttackResult) -> None:
    fooled_by = narrow_run.columns["single_fooled_by"]
    single = torch.tensor([bool(f) for f in fooled_by])
    assert int(single.sum()) >= 2 and int((~narrow_run.success).sum()) >= 2  # both kinds of image are there
    assert bool(narrow_run.success[single].all())
    # the summary's single-attribute rates count the same images
    rates = narrow_run.summary()["single_attribute"]
    for a in NARROW:
        assert rates[a]["k"] == sum(a in f.split(",") for f in fooled_by), a
        assert rates[a]["n"] == int(narrow_run.correct.sum()) == 16


def test_the_same_seed_gives_the_same_result() -> None:
    # the narrow threat model leaves 9 of 16 images unfooled, so the random restart runs on them
    a, b, other = (narrow_attack(1 / 255, seed, keep_adversarials=True) for seed in (3, 3, 4))
    assert a.adversarials is not None and b.adversarials is not None and other.adversarials is not None
    assert torch.equal(a.adversarials, b.adversarials)
    assert a.columns == b.columns
    assert torch.equal(a.success, b.success) and torch.equal(a.adv_pred, b.adv_pred)
    assert torch.equal(a.forward_passes, b.forward_passes) and torch.equal(a.gradient_passes, b.gradient_passes)
    assert not torch.equal(a.adversarials, other.adversarials)  # the seed is used


def test_the_model_runs_in_eval_mode_and_its_modes_are_restored() -> None:
    model, x, y = problem(n=4)
    assert isinstance(model, nn.Sequential)
    model.train()
    model[0].eval()  # a mixed state, restored module by module
    seen: list[bool] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    semantic_attack(model, x, y, attributes=["hue", "rotation"], steps=1, restarts=1, grid=2)
    assert seen and not any(seen)
    assert [m.training for m in model.modules()] == [True, False, True, True, True, True]


def test_single_attribute_successes_stay_inside_a_threat_model_whose_range_excludes_an_identity() -> None:
    # blur 0.8-1.5 is always applied: "fooled by hue alone" must mean hue with the others at their (clamped)
    # identity, blur 0.8 included, which is a point of the threat model the joint attack starts from
    ranges = {"rotation": (-6.0, 6.0), "hue": (-0.2, 0.2), "brightness": (-0.05, 0.05), "blur": (0.8, 1.5)}
    model, x, y = problem()
    result = semantic_attack(model, x, y, attributes=list(ranges), ranges=ranges, pixel_eps=0.0, **SEARCH)
    single = torch.tensor([bool(f) for f in result.columns["single_fooled_by"]])
    assert int(single.sum()) >= 1
    assert bool(result.success[single].all())
    assert min(result.columns["attr_blur"]) >= 0.8 - 1e-6


def test_the_sweep_alone_fools_exactly_the_images_some_sweep_point_fools() -> None:
    # steps=0: every attribute alone at each point of its sweep, forward passes only. Brute force over the same
    # points gives the known answer: an image is fooled iff one of its rendered sweep images is misclassified.
    model, x, y = problem()
    threat = semantic_threat("mild", list(NARROW), NARROW, 0.0)
    result = semantic_attack(
        model, x, y, attributes=list(NARROW), ranges=NARROW, pixel_eps=0.0, steps=0, restarts=0, grid=4
    )
    fooled = torch.zeros(len(x), dtype=torch.bool)
    for k in range(threat.size):
        assert len(threat.sweep(k, 4)) == 4  # none of these ranges spans a period
        for v in threat.sweep(k, 4):
            u = threat.identity(len(x), x)
            u[:, k] = v
            with torch.no_grad():
                fooled |= model(threat.render(x, u)).argmax(1) != y
    assert 0 < int(fooled.sum()) < len(x)  # both kinds of image
    assert torch.equal(result.success, fooled)
    assert int(result.gradient_passes.sum()) == 0
    # an image left unfooled: its clean pass, 4 points per attribute, the judging pass; a fooled one skips the rest
    # of a sweep that fooled it, and its necessity needs no pass (one attribute moved: undoing it gives the clean
    # image, undoing another changes nothing)
    per_robust = 1 + 4 * threat.size + 1
    assert bool((result.forward_passes[~fooled] == per_robust).all())
    assert bool((result.forward_passes[fooled] <= per_robust).all())
    moved = [a for a in result.columns["undone_by"] if a]
    assert len(moved) == int(fooled.sum()) and all("," not in a for a in moved)


def test_necessity_and_shapley_equal_judging_every_reset_afresh() -> None:
    # The attribution skips the passes whose image was judged already (a reset that changes nothing; one that
    # leaves the clean image); the brute force below judges every reset, every coalition, with a fresh pass.
    model, x, y = problem()
    result = semantic_attack(
        model, x, y, attributes=list(NARROW), ranges=NARROW, pixel_eps=0.0, seed=0, shapley=True, **SEARCH
    )
    threat = recorded_threat(result)
    u = threat.normalise(recorded_values(result, threat)).to(x.dtype)
    won = result.success.nonzero().flatten()
    assert 3 <= len(won) < len(x)

    def fooled(active: int) -> Tensor:  # bit i of active: attribute i as found, else at its identity
        keep = torch.tensor([(active >> i) & 1 == 1 for i in range(threat.size)])
        with torch.no_grad():
            return model(threat.render(x, torch.where(keep, u, threat.identity(len(x), x)))).argmax(1) != y

    everyone = (1 << threat.size) - 1
    for i, a in enumerate(threat.attributes):
        listed = torch.tensor([a in r.split(",") for r in result.columns["undone_by"]])
        assert torch.equal(listed[won], ~fooled(everyone & ~(1 << i))[won]), a
    value = {mask: fooled(mask)[won].double() for mask in range(everyone + 1)}
    for i, a in enumerate(threat.attributes):
        phi = torch.zeros(len(won), dtype=torch.float64)
        for mask in range(everyone + 1):
            if not (mask >> i) & 1:
                size = bin(mask).count("1")
                weight = math.factorial(size) * math.factorial(threat.size - size - 1) / math.factorial(threat.size)
                phi += weight * (value[mask | (1 << i)] - value[mask])
        got = torch.tensor([result.columns[f"shapley_{a}"][int(r)] for r in won], dtype=torch.float64)
        assert torch.allclose(got, phi), a


@pytest.mark.parametrize("search", [{"steps": 0, "restarts": 0, "grid": 4}, {"steps": 2, "restarts": 1, "grid": 4}])
def test_the_progress_budget_is_the_model_calls_of_an_image_nobody_fools(search: dict[str, Any]) -> None:
    # A model that answers class 0 whatever it sees: nothing stops early, so the attack makes exactly the calls its
    # budget announced (a whole-period hue sweep of 4 points renders 3 images).
    class Stubborn(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return F.one_hot(torch.zeros(len(x), dtype=torch.long), 10).float() * 10 + x.mean() * 0

    x = torch.rand(3, 3, 8, 8)
    seen: list[tuple[int, int]] = []
    semantic_attack(
        Stubborn(), x, torch.zeros(3, dtype=torch.long), preset="caa", attributes=["hue_hsv", "brightness"],
        pixel_eps=0.0, progress=lambda done, total: seen.append((done, total)), **search,
    )  # fmt: skip
    threat = semantic_threat("caa", ["hue_hsv", "brightness"], None, 0.0)
    assert [len(threat.sweep(k, 4)) for k in range(2)] == [3, 4]
    done, total = seen[-1]
    assert total == 3 * semantic_config_cost(search, threat) and done == total


def semantic_config_cost(search: dict[str, Any], threat: SemanticThreat) -> int:
    """The calls per image written out: the sweeps (3 + 4 points), then per ascent steps + 1 passes."""
    sweeps = 3 + 4
    if search["steps"] == 0:
        return sweeps
    ascent = search["steps"] + 1
    return sweeps + threat.size * ascent + (1 + threat.size + search["restarts"]) * ascent
