"""The example specs shipped in examples/ stay valid and name only registered models."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustlab.bench import load_spec
from robustlab.models import MODELS

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_spec_is_valid(path: Path) -> None:
    spec = load_spec(path)
    for name in spec.models:
        MODELS.get(name)  # raises with close matches if an example names a model that does not exist
    assert any(a.transfer for a in spec.attacks) or "transfer" not in path.name


def test_there_are_examples() -> None:
    assert EXAMPLES
