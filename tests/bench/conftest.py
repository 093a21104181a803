"""Fixtures for study tests: a spec over four tiny template models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


def spec_dict(n: int = 24, **over: Any) -> dict[str, Any]:
    models = [f"{HERE / 'tiny_models.py'}:make_{c}" for c in "abcd"]
    spec: dict[str, Any] = {
        "name": "test study",
        "output": "out",
        "models": models,
        "dataset": {"name": "cifar10", "n": n, "seed": 0, "subset": "random"},
        "attacks": [
            {"name": "fgsm", "eps": "8/255", "transfer": True},
            {"name": "ifgsm", "eps": "4/255", "steps": 3, "targets": ["untargeted", "random"], "transfer": True},
            {"name": "ifgsm", "steps": 3, "minimal": True},
            {"name": "cw", "steps": 10, "params": {"search_steps": 2}},
        ],
        "batch_size": 16,
        "corruptions": {"names": ["gaussian_noise", "contrast"], "severities": [1, 3], "n": 12},
    }
    spec.update(over)
    return spec


@pytest.fixture
def study_spec(data_dir: Path) -> dict[str, Any]:
    return spec_dict()


@pytest.fixture(scope="session")
def four_model_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A finished 4-model study (shared by the tests that only read it)."""
    from robustlab.bench import parse_spec, run_study

    run = tmp_path_factory.mktemp("study") / "run"
    summary = run_study(parse_spec(spec_dict()), run, data_dir=data_dir)
    return run, summary
