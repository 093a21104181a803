"""The public threat primitives: a lower package that owns the norms' defaults and feeds the CLI and the spec."""

from __future__ import annotations

import ast
import math
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
    public = {n for n in vars(threat) if not n.startswith("_") and n not in ("losses", "norms", "targets")}
    assert sorted(threat.__all__) == sorted(public)


@pytest.mark.parametrize("name", NORMS.names())
def test_every_norm_knows_the_diameter_of_the_box(name: str) -> None:
    norm = get_norm(name)
    for d in (1, 7, 3072):
        corner = torch.ones((1, d), dtype=torch.float64)  # from the 0 corner to the 1 corner: the longest distance
        assert math.isclose(norm.diameter(d), float(norm.distance(corner)), rel_tol=1e-12)
    assert norm.default_eps > 0 and norm.clever_radius > 0
