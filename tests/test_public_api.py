"""The curated public API."""

from __future__ import annotations

import robustlab


def test_all_names_exist_and_are_public() -> None:
    for name in robustlab.__all__:
        assert hasattr(robustlab, name), name
    assert sorted(robustlab.__all__) == sorted(set(robustlab.__all__))
    assert not [n for n in robustlab.__all__ if n.startswith("_") and n != "__version__"]


def test_core_entry_points_are_exported() -> None:
    for name in ("load_model", "load_dataset", "ModelAdapter", "evaluate", "train_model"):
        assert name in robustlab.__all__
