"""Multi-process training with PyTorch DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node N -m robustlab train ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT`` set; :func:`setup` joins the process group (gloo on CPU,
NCCL on GPU). Every process walks the same global batches (the same seeded permutation, augmentation and random
starts, drawn for the whole global batch) and trains on its own contiguous slice of each; DDP averages the
gradients, and each process's loss is weighted by its share of the batch, so N processes give the model that one
process gives with the same global batch (up to floating-point summation order). Only rank 0 writes checkpoints
and metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from robustlab.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` processes (a single process: 0 of 1)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes checkpoints and metrics."""
        return self.rank == 0

    def rows(self, n: int) -> slice:
        """This process's contiguous slice of a global batch of ``n`` rows (sizes differ by at most one)."""
        base, extra = divmod(n, self.size)
        lo = self.rank * base + min(self.rank, extra)
        return slice(lo, lo + base + (1 if self.rank < extra else 0))

    def barrier(self) -> None:
        """Wait for every process (nothing for a single process)."""
        if self.size > 1:
            dist.barrier()


def current() -> World:
    """The world of an initialised process group, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched_by_torchrun() -> bool:
    """Whether the environment of ``torchrun`` (``WORLD_SIZE`` and ``RANK``) is set."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def setup(device: str = "cpu") -> World:
    """Join the process group that ``torchrun`` describes (gloo on CPU, NCCL on CUDA); a single process otherwise.

    Raises:
        ConfigError: NCCL asked for without CUDA, or the process group cannot be formed.
    """
    if not launched_by_torchrun():
        return World()
    if dist.is_initialized():
        return current()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ConfigError("NCCL needs CUDA; train on --device cpu (gloo) or on a machine with GPUs")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group(backend=backend)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot join the torchrun process group ({backend}): {exc}") from exc
    return current()


def teardown() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_flag(value: bool, world: World) -> bool:
    """Rank 0's ``value`` on every process (e.g. "stop now")."""
    if world.size == 1:
        return value
    t = torch.tensor([1 if value else 0], dtype=torch.int64)
    dist.broadcast(t, 0)
    return bool(t.item())
