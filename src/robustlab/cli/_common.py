"""Shared CLI plumbing: JSON output, error reporting, progress bars."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from robustlab.errors import RobustlabError

err_console = Console(stderr=True)
out_console = Console(width=None if sys.stdout.isatty() else 160)  # no truncated names in pipes

# Options several commands share, declared once (each command keeps its own defaults and its own --n help).
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Zoo name, .safetensors file, or file.py:factory.")]
DatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", help="cifar10, mnist, fashion-mnist, npz:PATH, folder:PATH.")
]
SplitOpt = Annotated[str, typer.Option("--split", help="Dataset split.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1 ...")]
DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="Data directory (default: $ROBUSTLAB_DATA, else ~/.cache/robustlab/data)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a table.")]


def emit_json(obj: dict[str, Any]) -> None:
    """Print exactly one JSON object on stdout."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn robustlab errors into a one-line message on stderr and exit code 2 (no traceback)."""
    try:
        yield
    except RobustlabError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


@contextmanager
def step_progress(description: str, enabled: bool = True) -> Iterator[Callable[[int, int, int, float], None]]:
    """A rich progress bar on stderr driven by a (epoch, step, steps_per_epoch, loss) callback."""
    if not enabled:
        yield lambda *_: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None, loss="-")

        def update(epoch: int, step: int, steps: int, loss: float) -> None:
            bar.update(
                task,
                total=steps,
                completed=step + 1,
                loss=f"{loss:.3f}",
                description=f"{description} epoch {epoch + 1}",
            )

        yield update


@contextmanager
def count_progress(description: str) -> Iterator[Callable[..., None]]:
    """A transient rich progress bar on stderr, shown only on a terminal (never in pipes or ``--json`` output),
    driven by a ``(done, total, description=None)`` callback."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int, description: str | None = None) -> None:
            bar.update(task, completed=done, total=total, description=description)  # None: unchanged

        yield update


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
