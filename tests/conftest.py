"""Shared fixtures for the whole test suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    """The shared offline data (``../shared/data`` next to the repository root); sets ``ROBUSTLAB_DATA``."""
    path = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBUSTLAB_DATA", str(path))
        yield path


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run the test on one thread: tiny float64 models run faster so than on a shared, busy thread pool.

    The attack and known-answer suites use it for every test (their conftest.py), CLEVER's tests by ``pytestmark``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
