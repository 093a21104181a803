"""The public threat primitives: a lower package that owns the norms' defaults and feeds the CLI and the spec."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import robustlab.threat as threat
from robustlab.threat import NORMS, get_norm

THREAT_DIR = Path(threat.__file__).parent
HIGHER = ("attacks", "metrics", "bench", "store", "report", "cli", "analysis", "train", "models", "data")


def test_the_threat_package_imports_no_package_above_it() -> None:
    found = []
    for path in sorted(THREAT_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [(path.name, n) for n in names if n.split(".")[:2][-1] in HIGHER and n.startswith("robustlab")]
    assert found == []


def test_the_threat_package_exports_exactly_its_public_names() -> None:
    modules = ("losses", "norms", "projections", "semantic", "targets")
    public = {n for n in vars(threat) if not n.startswith("_") and n not in modules}
    assert sorted(threat.__all__) == sorted(public)


@pytest.mark.parametrize("name", NORMS.names())
def test_every_norm_knows_the_diameter_of_the_box(name: str) -> None:
    norm = get_norm(name)
    for d in (1, 7, 3072):
        corner = torch.ones((1, d), dtype=torch.float64)  # from the 0 corner to the 1 corner: the longest distance
        assert math.isclose(norm.diameter(d), float(norm.distance(corner)), rel_tol=1e-12)
    assert norm.default_eps > 0 and norm.clever_radius > 0


_NEW_NORM_AND_MODE = """
from robustlab.threat import NORMS, TARGET_MODES, L2, Top2

class L3(L2):
    name, p, default_eps, clever_radius = "l3", 3.0, 0.4, 2.0

class RunnerUp(Top2):
    name = "runner-up"

NORMS.register("l3", L3())
TARGET_MODES.register("runner-up", RunnerUp())

from robustlab.kinds.attack import AttackSection
from robustlab.kinds.clever import CleverSection
s = CleverSection(norm="L3", target="runner-up")
a = AttackSection(name="pgd", norm="l3", targets=["runner-up"])
print(s.norm, s.target, a.norm, a.targets, round(L3().diameter(8), 9))

import torch
from robustlab.attacks import attack
from robustlab.attacks.oracle import LinearClassifier
model = LinearClassifier(torch.eye(3, 4), torch.zeros(3))
x = torch.rand((2, 4), generator=torch.Generator().manual_seed(0))
res = attack(model, x, model(x).argmax(1), "pgd", norm="l3", target="runner-up")
print(res.norm, res.eps, res.target_mode, bool((res.l2 > 0).all()))
"""


def test_a_new_norm_and_target_mode_reach_the_study_spec_and_the_attacks_from_one_registration() -> None:
    # the norm's defaults too: its diameter (8 ** (1 / 3) = 2) and its default budget (0.4) for PGD
    out = subprocess.run(
        [sys.executable, "-c", _NEW_NORM_AND_MODE], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.split() == ["l3", "runner-up", "l3", "['runner-up']", "2.0", "l3", "0.4", "runner-up", "True"]


def test_the_spec_names_the_close_match_of_a_misspelt_target_mode_or_norm() -> None:
    from pydantic import ValidationError

    from robustlab.kinds.clever import CleverSection

    with pytest.raises(ValidationError, match="Did you mean: least-likely"):
        CleverSection(target="least-likly")
    with pytest.raises(ValidationError, match="Did you mean: linf"):
        CleverSection(norm="lnf")
    spelt = CleverSection(norm="inf", target="least_likely")
    assert (spelt.norm, spelt.target) == ("linf", "least-likely")  # stored under the canonical names
