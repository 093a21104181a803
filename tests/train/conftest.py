"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def toy(tmp_path: Path) -> str:
    """120 8x8 colour images of 4 classes (brightness tells the class) in one ``npz:`` file."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 120)
    x = (rng.random((120, 8, 8, 3)) * 60 + y[:, None, None, None] * 60).astype("uint8")
    np.savez(tmp_path / "toy.npz", x=x, y=y)
    return f"npz:{tmp_path / 'toy.npz'}"
