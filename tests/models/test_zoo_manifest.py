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


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_manifest_entry_is_reproduced(entry: dict, data_dir: Path) -> None:
    weights = ZOO_DIR / entry["spec"]["weights"]["filename"]
    assert file_digest(weights) == entry["sha256"]
    result = evaluate(load_model(entry["name"]), load_dataset("cifar10", "test", data_dir), batch_size=500)
    assert abs(result.accuracy - entry["test_accuracy"]) <= 0.001
