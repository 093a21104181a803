"""Fixtures for robustlab.data tests: no test may reach the network."""

from __future__ import annotations

from typing import BinaryIO

import pytest

from robustlab.data import _files


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the downloader's fetch so that a forgotten ``download=False`` fails fast instead of hanging."""

    def refuse(url: str, out: BinaryIO, timeout: float = 60.0) -> None:
        raise OSError(f"network access is disabled in tests (tried {url})")

    monkeypatch.setattr(_files, "fetch", refuse)
