"""Multi-process training under torchrun (DDP, gloo): two processes give the model that one process gives with the
same global batch, resume after an interruption, and a resume with another world size is refused.

Slow: each torchrun launch imports torch in every process (tens of seconds on a loaded 2-core machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(args: list[str], procs: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if procs == 1:
        cmd = [sys.executable, str(WORKER), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
        cmd += [str(WORKER), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def test_two_gloo_processes_equal_one_and_resume(tmp_path: Path) -> None:
    one = _run([str(tmp_path / "one"), str(tmp_path / "one.safetensors")], 1)
    assert one.returncode == 0, one.stderr
    # two processes, interrupted after epoch 1 (every rank), then resumed by two processes
    cut = _run([str(tmp_path / "two"), str(tmp_path / "two.safetensors"), "1"], 2)
    assert cut.returncode != 0 and not (tmp_path / "two.safetensors").exists()
    state = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["world_size"] == 2
    resumed = _run([str(tmp_path / "two"), str(tmp_path / "two.safetensors")], 2)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
        assert not torch.equal(a[k], torch.zeros_like(a[k]))
    # rank 0 alone wrote the metrics: one line per epoch, the same numbers as one process (float tolerance)
    m1 = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in m2] == [1, 2, 3]
    assert [m["train_loss"] for m in m2] == pytest.approx([m["train_loss"] for m in m1], rel=1e-5)
    assert [m["monitor_pgd"] for m in m2] == [m["monitor_pgd"] for m in m1]


def test_resuming_with_another_world_size_is_a_clear_error(tmp_path: Path) -> None:
    cut = _run([str(tmp_path / "two"), str(tmp_path / "w.safetensors"), "1"], 2)
    assert cut.returncode != 0 and (tmp_path / "two" / "checkpoint.pt").is_file()
    alone = _run([str(tmp_path / "two"), str(tmp_path / "w.safetensors")], 1)
    assert alone.returncode != 0
    assert "was trained by 2 process(es) and is resumed by 1" in alone.stderr
    assert "--nproc_per_node 2" in alone.stderr
