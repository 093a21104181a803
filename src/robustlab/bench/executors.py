"""Executors: where jobs run. In-process (default), a local process pool, or a Ray cluster (optional).

Every executor calls :func:`robustlab.bench.jobs.run_job`, which writes results to the store itself; the
executor only returns small summaries. Results therefore never depend on the executor.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from collections.abc import Iterator
from typing import Any, Protocol

from robustlab.bench.jobs import JobContext, init_worker, run_job
from robustlab.errors import ConfigError


class Executor(Protocol):
    """Runs jobs and yields their summaries as they finish (in any order)."""

    def run(self, jobs: list[dict[str, Any]], run_dir: str) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs jobs one after another in this process."""

    def __init__(self, data_dir: str | None = None) -> None:
        self.ctx = JobContext(data_dir=data_dir)

    def run(self, jobs: list[dict[str, Any]], run_dir: str) -> Iterator[dict[str, Any]]:
        for job in jobs:
            yield run_job(job, run_dir, self.ctx)

    def close(self) -> None:
        pass


class ProcessExecutor:
    """Runs jobs in ``workers`` local processes (spawned, ``threads`` torch threads each)."""

    def __init__(self, workers: int, data_dir: str | None = None, threads: int | None = 1) -> None:
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.pool = cf.ProcessPoolExecutor(
            workers, mp_context=mp.get_context("spawn"), initializer=init_worker, initargs=(data_dir, threads)
        )

    def run(self, jobs: list[dict[str, Any]], run_dir: str) -> Iterator[dict[str, Any]]:
        futures = [self.pool.submit(run_job, job, run_dir) for job in jobs]
        for fut in cf.as_completed(futures):
            yield fut.result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class RayExecutor:
    """Runs jobs as Ray tasks (``pip install 'robustlab[ray]'``); GPU jobs ask Ray for ``num_gpus``."""

    def __init__(
        self,
        address: str | None = None,
        data_dir: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        threads: int | None = 1,
        cluster_cpus: int | None = None,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("--backend ray needs Ray: pip install 'robustlab[ray]'") from exc
        self.ray = ray
        if not ray.is_initialized():
            # no address: a local cluster (of ``cluster_cpus`` CPUs, default all)
            ray.init(
                address=address,
                num_cpus=None if address else cluster_cpus,
                include_dashboard=False,
                log_to_driver=False,
            )

        def _task(job: dict[str, Any], run_dir: str) -> dict[str, Any]:
            init_worker(data_dir, threads)
            return run_job(job, run_dir)

        self.task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_task)

    def run(self, jobs: list[dict[str, Any]], run_dir: str) -> Iterator[dict[str, Any]]:
        pending = [self.task.remote(job, run_dir) for job in jobs]
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            yield self.ray.get(done[0])

    def close(self) -> None:
        pass


def make_executor(
    backend: str = "local",
    *,
    workers: int = 1,
    address: str | None = None,
    data_dir: str | None = None,
    num_gpus: float = 0,
) -> Executor:
    """Build an executor by name: ``local`` (``workers`` > 1 gives a process pool) or ``ray``."""
    if backend == "local":
        return LocalExecutor(data_dir) if workers == 1 else ProcessExecutor(workers, data_dir)
    if backend == "ray":
        return RayExecutor(address, data_dir, num_gpus=num_gpus)
    raise ConfigError(f"unknown backend {backend!r}: use 'local' or 'ray'")
