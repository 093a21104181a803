"""Shared fixtures for the whole test suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    """The shared offline data (``../shared/data`` next to the repository root); sets ``ROBUSTLAB_DATA``."""
    path = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBUSTLAB_DATA", str(path))
        yield path
