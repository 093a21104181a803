"""The built-in default study (``robustlab run`` with no spec, ``make demo``) is large enough to read."""

from __future__ import annotations

from pathlib import Path

from robustlab.bench.default import DEFAULT_MODELS, available_models, default_spec
from robustlab.models import MODELS


def test_the_default_study_attacks_at_least_100_images_per_model_from_every_zoo_family(data_dir: Path) -> None:
    spec = default_spec(data_dir)
    assert spec.dataset.n >= 100 and spec.dataset.subset == "common-correct"
    assert spec.dataset.pool is not None and spec.dataset.pool >= 4 * spec.dataset.n
    families = {MODELS.get(m).family for m in spec.models}
    assert families >= {MODELS.get(m).family for m in MODELS if MODELS.get(m).source == "zoo"}
    assert len(spec.models) <= 7  # more models would not fit make demo's ten minutes on two cores


def test_the_default_study_keeps_only_models_that_load_without_a_download(tmp_path: Path) -> None:
    """Published checkpoints whose weights are not on disk are left out; zoo models always stay."""
    kept = available_models(tmp_path, DEFAULT_MODELS)
    assert kept == [m for m in DEFAULT_MODELS if MODELS.get(m).source == "zoo"]
    assert len(available_models(tmp_path)) == len([m for m in MODELS if MODELS.get(m).source == "zoo"])
