"""The committed zoo: weights match the manifest, and every manifest accuracy is reproduced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustlab import evaluate, load_dataset, load_model
from robustlab._io import file_digest
from robustlab.models import ZOO_DIR

MANIFEST = json.loads((ZOO_DIR / "manifest.json").read_text()) if (ZOO_DIR / "manifest.json").is_file() else None
ENTRIES = MANIFEST["models"] if MANIFEST else []


def test_zoo_size_families_and_accuracy_floor() -> None:
    assert MANIFEST is not None, "the zoo manifest is missing: run `robustlab zoo build`"
    families: dict[str, float] = {}
    for e in ENTRIES:
        families[e["family"]] = max(families.get(e["family"], 0.0), e["test_accuracy"])
    assert len(ENTRIES) >= 12 and len(families) >= 6
    assert all(acc >= 0.70 for acc in families.values()), families
    total = sum((ZOO_DIR / e["spec"]["weights"]["filename"]).stat().st_size for e in ENTRIES)
    assert total <= 30 * 2**20


def _reproduction_params() -> list[object]:
    """A full-test-set pass each (``reproduction``: `.ci/run` runs them after the default suite): one model per
    family, the default study's (the cheapest of each); the rest are also ``slow`` (the DenseNet-BC-16s alone took
    40 s apiece on 2 cores): `pytest -m reproduction` and `pytest -m slow`."""
    from robustlab.bench.default import DEFAULT_MODELS

    return [
        pytest.param(
            e,
            id=e["name"],
            marks=(pytest.mark.reproduction,)
            if e["name"] in DEFAULT_MODELS
            else (pytest.mark.reproduction, pytest.mark.slow),
        )
        for e in ENTRIES
    ]


@pytest.mark.parametrize("entry", _reproduction_params())
def test_manifest_entry_is_reproduced(entry: dict, data_dir: Path) -> None:
    weights = ZOO_DIR / entry["spec"]["weights"]["filename"]
    assert file_digest(weights) == entry["sha256"]
    result = evaluate(load_model(entry["name"]), load_dataset("cifar10", "test", data_dir), batch_size=500)
    assert abs(result.accuracy - entry["test_accuracy"]) <= 0.001


def test_evaluate_registered_reports_each_model_to_a_progress_callable(data_dir: Path) -> None:
    from robustlab.metrics.zoo_accuracy import evaluate_registered

    calls: list[tuple[int, int, str]] = []
    rows = evaluate_registered(source="zoo", n=20, data_dir=data_dir, progress=lambda *a: calls.append(a))
    assert [r["model"] for r in rows] == [e["name"] for e in ENTRIES]
    assert [(done, total) for done, total, _ in calls] == [(i + 1, len(rows)) for i in range(len(rows))]
    assert [text for *_, text in calls] == [f"{r['model']}: {r['accuracy']:.4f}" for r in rows]
    assert all(r["n"] == 20 and r["error"] is None for r in rows)
