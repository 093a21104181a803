"""Fixtures for the known-answer suite: float64 linear models, inputs away from the [0, 1] edges."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test here runs on one thread (``one_thread`` is in tests/conftest.py)."""
