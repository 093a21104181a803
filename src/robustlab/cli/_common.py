"""Shared CLI plumbing: options, the load sequence, output checks, errors, progress and number formatting.

Nothing here imports torch at module level: ``robustlab --help`` must stay fast, so every heavy import happens
inside the function that needs it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from robustlab.errors import ConfigError, RobustlabError

if TYPE_CHECKING:
    from robustlab.data import Dataset
    from robustlab.models import ModelAdapter

log = logging.getLogger(__name__)

# No markup anywhere: model names, paths and messages print as they are, square brackets included.
err_console = Console(stderr=True, highlight=False, markup=False)
out_console = Console(width=None if sys.stdout.isatty() else 160, markup=False)  # no truncated names in pipes

#: Seconds between two plain progress lines when stderr is not a terminal.
PROGRESS_SECONDS = 10.0

_verbose = False

# Options several commands share, declared once.
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
NOpt = Annotated[
    int | None,
    typer.Option(
        "--n",
        min=1,
        help="Use a seeded subset of N images (default: all; an N above the split's size uses all, with a notice).",
    ),
]
RouteOpt = Annotated[
    str | None,
    typer.Option(
        "--route",
        help="Multi-branch models (AdvProp, MultiBN, AugMax...): evaluate through this batch-norm route instead of "
        "the inference route the model records (e.g. adv to study the auxiliary branch; select / select-hard for "
        "a selector). The route is recorded with the results.",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the subset and of everything random.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads.")]


def emit_json(obj: dict[str, Any]) -> None:
    """Print exactly one JSON object on stdout."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def fmt(value: Any) -> str:
    """A table cell: ``-`` for nothing, 4 significant digits for floats (:func:`robustlab.stats.format_number`)."""
    from robustlab.stats import format_number

    return format_number(value, missing="-")


def rate(k: int, n: int) -> dict[str, Any]:
    """A rate for ``--json``: value, 95 % Wilson interval, k and n (:class:`robustlab.stats.Rate`)."""
    from robustlab.stats import Rate

    return Rate(k, n).to_dict()


def notice(message: str) -> None:
    """One plain line on stderr (never markup: square brackets are printed as they are)."""
    err_console.print(Text(message), soft_wrap=True)


def error_line(message: str) -> None:
    """``error: <message>`` as one line on stderr, square brackets and all."""
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn robustlab errors and operating-system errors (read-only or full disk ...) into one line on stderr and
    exit code 2. The traceback is printed only under ``robustlab -v``."""
    try:
        yield
    except (RobustlabError, OSError) as exc:
        if _verbose:
            sys.stderr.write("".join(traceback.format_exception(exc)))
        if isinstance(exc, OSError) and not isinstance(exc, RobustlabError):
            where = f" {exc.filename}" if exc.filename else ""
            error_line(f"cannot write or read{where}: {exc.strerror or exc}")
        else:
            error_line(str(exc))
        raise typer.Exit(2) from exc


def check_writable(path: Path, what: str, *, folder: bool = False) -> None:
    """Fail before the work if ``path`` (a file, or a ``folder``) cannot be written; nothing is left behind.

    The nearest existing folder (the file's folder, or the folder itself or its nearest existing parent) gets a
    probe file that is removed at once.

    Raises:
        ConfigError: naming ``what`` (e.g. ``"--out"``), the path and the reason.
    """
    import tempfile

    target = path if folder else path.parent
    probe_dir = target
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if probe_dir.exists() and not probe_dir.is_dir():
        raise ConfigError(f"{what} {path}: {probe_dir} is a file, not a folder")
    if not folder and path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file name")
    try:
        fd, name = tempfile.mkstemp(prefix=".robustlab-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be written: {exc.strerror or exc} ({probe_dir})") from exc


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU threads (nothing when not given)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Inputs:
    """What ``load_inputs`` returns: the model and the (subset of the) dataset it will see.

    Attributes:
        model: The loaded model, in eval mode on the requested device.
        data: The images actually used (a seeded subset, or the whole split).
        full_size: Images in the whole split.
    """

    model: ModelAdapter
    data: Dataset
    full_size: int

    @property
    def subset(self) -> bool:
        """Whether fewer images than the whole split are used."""
        return len(self.data) < self.full_size


def load_inputs(
    model: str,
    dataset: str,
    split: str,
    n: int | None,
    seed: int,
    data: Path | None,
    device: str = "cpu",
    route: str | None = None,
) -> Inputs:
    """The load sequence of ``eval``, ``attack``, ``clever`` and ``corrupt``: device, dataset, subset, model, and
    the check that the dataset's labels and class names fit the model.

    ``route``: evaluate a multi-branch model through that route rather than its recorded inference route.

    An ``n`` above the split's size uses the whole split and says so on stderr (the ``--json`` ``n`` is the number
    actually used).

    Raises:
        ConfigError: unusable device, labels or class names that do not fit the model.
        DataError, ModelError: the dataset or the model cannot be loaded.
    """
    from robustlab.data import load_dataset
    from robustlab.models import load_model
    from robustlab.models.classes import check_dataset_fits
    from robustlab.models.loading import check_device

    check_device(device)
    full = load_dataset(dataset, split, data)
    ds = full.subset(n, seed)
    if n is not None and n > len(full):
        notice(f"note: --n {n} is more than the {len(full)} images of {full.name}/{full.split}; using all {len(full)}")
    net = load_model(model, data_dir=data, device=device, input_shape=tuple(full.x.shape[1:]), route=route)
    if route is None and net.route is not None and net.route != "main":
        notice(f"note: {net.name} runs through its recorded inference route {net.route!r} (--route to change it)")
    check_dataset_fits(net, ds.y, ds.classes, dataset=f"{full.name}/{full.split}")
    return Inputs(net, ds, len(full))


class _PlainProgress:
    """Progress as plain lines on stderr (done/total, rate, ETA), at most every :data:`PROGRESS_SECONDS` and once
    at the end: what a log file or a pipe should get instead of a redrawn bar."""

    def __init__(self, description: str, unit: str = "") -> None:
        self.description, self.unit = description, unit
        self.t0 = self.last = time.monotonic()
        self.done, self.total = 0, 0
        self.extra = ""
        # work already done when the first report came (a resumed run): the rate counts only what this process did
        self.base: int | None = None
        self.t_base = self.t0

    def update(self, done: int, total: int | None, description: str | None = None, extra: str = "") -> None:
        if self.base is None:
            self.base, self.t_base = int(done), time.monotonic()
        self.done, self.total = int(done), int(total or 0)
        if description is not None:
            self.description = description
        self.extra = extra
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            self.line()

    def line(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self.t0
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.description}: {self.done}" + (f"/{self.total}{unit}" if self.total else unit)
        if self.total:
            text += f" ({100 * self.done / self.total:.0f} %)"
        since, base = time.monotonic() - self.t_base, self.base or 0
        if since > 0 and self.done > base:
            speed = (self.done - base) / since
        else:  # nothing done since the first report yet
            speed = self.done / elapsed if elapsed > 0 else 0.0
        text += f", {speed:.3g}/s"
        if final:
            text += f", done in {_duration(elapsed)}"
        elif self.total and speed > 0:
            text += f", ETA {_duration((self.total - self.done) / speed)}"
        if self.extra:
            text += f", {self.extra}"
        notice(text)

    def close(self) -> None:
        """The final line (``done in ...``), unless nothing was ever reported."""
        if self.done or self.total:
            self.line(final=True)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


@contextmanager
def _plain_lines(description: str, unit: str) -> Iterator[_PlainProgress]:
    """Plain progress lines; the final one only when the work finished (an error has its own line)."""
    plain = _PlainProgress(description, unit)
    yield plain
    plain.close()


def _bar(*fields: str, transient: bool) -> Any:
    """A rich progress bar on stderr: description, bar, done/total, the ``fields`` columns, time remaining."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(f) for f in fields),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )


@contextmanager
def count_progress(description: str, unit: str = "") -> Iterator[Callable[..., None]]:
    """Progress on stderr driven by a ``(done, total, description=None)`` callback: a transient rich bar on a
    terminal, plain periodic lines (see :class:`_PlainProgress`) otherwise."""
    if not err_console.is_terminal:
        with _plain_lines(description, unit) as plain:
            yield plain.update
        return
    with _bar(transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int, description: str | None = None) -> None:
            bar.update(task, completed=done, total=total, description=description)  # None: unchanged

        yield update


@contextmanager
def step_progress(
    description: str, epochs: int, enabled: bool = True
) -> Iterator[Callable[[int, int, int, float], None]]:
    """Training progress driven by a ``(epoch, step, steps_per_epoch, loss)`` callback: a rich bar per epoch on a
    terminal, plain periodic lines over all epochs otherwise."""
    if not enabled:
        yield lambda *_: None
        return
    if not err_console.is_terminal:
        with _plain_lines(description, "steps") as plain:
            yield lambda epoch, step, steps, loss: plain.update(
                epoch * steps + step + 1, epochs * steps, extra=f"epoch {epoch + 1}/{epochs}, loss {loss:.3f}"
            )
        return
    with _bar("loss {task.fields[loss]}", transient=False) as bar:
        task = bar.add_task(description, total=None, loss="-")

        def update(epoch: int, step: int, steps: int, loss: float) -> None:
            bar.update(
                task,
                total=steps,
                completed=step + 1,
                loss=f"{loss:.3f}",
                description=f"{description} epoch {epoch + 1}/{epochs}",
            )

        yield update


@contextmanager
def job_progress(enabled: bool = True) -> Iterator[Callable[[str, int, int, str], None]]:
    """A study's progress, driven by ``run_study``'s ``(phase, done, total, label)`` callback: one rich bar per
    phase on a terminal; otherwise one plain line per finished job (done/total, rate, ETA of the phase)."""
    if not enabled:
        yield lambda *_: None
        return
    if not err_console.is_terminal:
        started: dict[str, tuple[float, int]] = {}

        def line(phase: str, done: int, total: int, label: str) -> None:
            now = time.monotonic()
            t0, first = started.setdefault(phase, (now, done))
            if not label:  # the phase's start: jobs already done are skipped
                notice(f"{phase}: {done}/{total} jobs already done" if done else f"{phase}: {total} jobs")
                return
            ran = done - first
            speed = ran / (now - t0) if now > t0 else 0.0
            eta = f", ETA {_duration((total - done) / speed)}" if speed > 0 and done < total else ""
            notice(f"{phase} {done}/{total}: {label} ({_duration(now - t0)} elapsed{eta})")

        yield line
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=err_console,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int, label: str) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total, last="")
            bar.update(tasks[phase], completed=done, total=total, last=label)

        yield update


def setup_logging(verbose: bool) -> None:
    """Log to stderr: INFO under ``-v`` (which also prints tracebacks of errors), WARNING otherwise."""
    global _verbose
    _verbose = verbose
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
