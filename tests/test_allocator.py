"""The allocator setting of processes robustlab owns: large tensors come from the heap, and it can be turned off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import torch
from robustlab._allocator import retain_freed_memory


def heap():
    size = 0
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
            size += hi - lo
    return size


ok = retain_freed_memory()
before = heap()
x = torch.ones(64 * 2**20 // 4)  # 64 MB: above glibc's largest mmap threshold
del x
print(ok, heap() - before >= 48 * 2**20)  # served from the heap, and still there after the free
"""


def _probe(**env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_tensors_are_served_from_the_heap_and_kept() -> None:
    assert _probe(ROBUSTLAB_MALLOC="") == "True True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_robustlab_malloc_system_keeps_the_defaults() -> None:
    assert _probe(ROBUSTLAB_MALLOC="system") == "False False"
