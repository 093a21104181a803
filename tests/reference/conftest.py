"""Side-by-side harness: run a reference implementation (pyautoattack 0.2.0) in its own environment.

The reference lives in a separate virtualenv, never in robustlab's: ``scripts/reference-env.sh PATH`` creates one.
Its interpreter is ``$ROBUSTLAB_REF_PYTHON``, default ``<repo>/../ref-venv/bin/python``; when it is absent (or
cannot import pyautoattack) every test using the fixtures below is skipped with the reason.

API (small on purpose):

- ``reference_python`` (session fixture): the :class:`~pathlib.Path` of the reference interpreter, or a skip.
- ``run_reference`` (fixture): ``run_reference(task, **job) -> dict[str, Tensor]``. It saves ``job`` (tensors,
  numbers, strings, lists, dicts; e.g. a model spec from ``_models.py`` and the inputs) to a ``.pt`` file, runs
  ``_worker.py`` with the reference python, which calls ``task = "module:function"`` (a module of this folder,
  e.g. ``"_ref_apgd:apgd"``, imported only in the reference environment) and returns what it saved. A failing
  worker fails the test with the worker's stderr. ``job["threads"]`` defaults to 1 on both sides (bitwise needs
  the same kernels); the fixture also sets this process to one thread.
- ``_models.py``: torch-only models both sides build from a spec (``build(spec)``; ``MLP``, ``LeNet5``,
  ``train_mlp``). Pass models as specs (``{"arch", "state_dict", "kwargs"}``), never pickled modules.
- ``mnist_test`` (session fixture): the MNIST test split as ``(x float32 (N, 1, 28, 28) in [0, 1], y int64)``;
  ``lenet5_adv`` / ``lenet5_clean`` (session fixtures): the advertorch LeNet5 specs (weights from
  ``../shared/data/pretrained-advertorch-lenet5-mnist``).

To add a comparison: write ``_ref_<attack>.py`` here (runs in the reference env: torch, numpy, pyautoattack and
``_models`` only) and ``test_<attack>_reference.py`` marked ``@pytest.mark.reference``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from robustlab.data import load_dataset

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKER = HERE / "_worker.py"

RunReference = Callable[..., dict[str, Tensor]]


@pytest.fixture(scope="session")
def reference_python() -> Path:
    """The reference interpreter (``$ROBUSTLAB_REF_PYTHON`` or ``<repo>/../ref-venv/bin/python``), or a skip."""
    path = Path(os.environ.get("ROBUSTLAB_REF_PYTHON") or (REPO / ".." / "ref-venv" / "bin" / "python")).absolute()
    if not path.exists():
        pytest.skip(
            f"reference environment absent: {path} does not exist (create it with scripts/reference-env.sh PATH "
            "and point ROBUSTLAB_REF_PYTHON at PATH/bin/python)"
        )
    probe = subprocess.run(
        [str(path), "-c", "import pyautoattack, torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        pytest.skip(f"reference environment at {path} cannot import pyautoattack: {probe.stderr.strip()[-300:]}")
    return path


@pytest.fixture
def run_reference(reference_python: Path, tmp_path: Path) -> Iterator[RunReference]:
    """``run_reference(task, **job)``: run ``task`` in the reference environment, return its dict of tensors."""
    calls = iter(range(1_000_000))

    def run(task: str, **job: Any) -> dict[str, Tensor]:
        n = next(calls)
        job_path, result_path = tmp_path / f"job{n}.pt", tmp_path / f"result{n}.pt"
        job = {"threads": 1, **job, "task": task}
        torch.save(job, job_path)
        done = subprocess.run(
            [str(reference_python), str(WORKER), str(job_path), str(result_path)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if done.returncode != 0:
            pytest.fail(f"reference task {task} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        result: dict[str, Tensor] = torch.load(result_path, map_location="cpu", weights_only=True)
        return result

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield run
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mnist_test(data_dir: Path) -> tuple[Tensor, Tensor]:
    """The MNIST test split: ``x`` float32 ``(10000, 1, 28, 28)`` in [0, 1], ``y`` int64 ``(10000,)``."""
    ds = load_dataset("mnist", "test", data_dir, download=False)
    return ds.images(), ds.y


def _lenet5(data_dir: Path, file: str) -> dict[str, Any]:
    path = data_dir / "pretrained-advertorch-lenet5-mnist" / file
    if not path.exists():
        pytest.skip(f"advertorch LeNet5 weights absent: {path}")
    return {"arch": "lenet5", "state_dict": torch.load(path, map_location="cpu", weights_only=True)}


@pytest.fixture(scope="session")
def lenet5_adv(data_dir: Path) -> dict[str, Any]:
    """Spec of advertorch's adversarially trained MNIST LeNet5 (for ``_models.build``)."""
    return _lenet5(data_dir, "mnist_lenet5_advtrained.pt")


@pytest.fixture(scope="session")
def lenet5_clean(data_dir: Path) -> dict[str, Any]:
    """Spec of advertorch's clean-trained MNIST LeNet5 (for ``_models.build``)."""
    return _lenet5(data_dir, "mnist_lenet5_clntrained.pt")
