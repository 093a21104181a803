"""A lock file so that two runs cannot write into one run directory at the same time.

``run/.lock`` holds the pid of the process that owns the directory. It is created with ``O_EXCL``; a lock
left by a process that no longer exists (killed, crashed) is taken over. The lock is advisory between
robustlab processes on one machine (a pid says nothing across machines).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

from robustlab.errors import ConfigError

LOCK_NAME = ".lock"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owner(path: Path) -> int:
    try:
        return int(path.read_text(encoding="utf-8").strip() or 0)
    except (OSError, ValueError):
        return 0


def _age(path: Path) -> float:
    """Seconds since ``path`` was last modified (infinite when it is gone)."""
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def unwritable(run: Path, exc: OSError) -> ConfigError:
    """The one-line error for an output folder that cannot be written (read-only, full, not a folder)."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    hint = " (free some space)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return ConfigError(f"cannot write to the output folder {run}: {reason}{hint}; choose another folder with --out")


@contextlib.contextmanager
def run_lock(run: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``run/.lock`` for the duration of the block (creating ``run`` if needed).

    Raises:
        ConfigError: another live process holds the folder (the message gives its pid), or the folder
            cannot be written.
    """
    run = Path(run)
    path = run / LOCK_NAME
    try:
        run.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                break
            except FileExistsError:
                pid = _owner(path)
                if pid == 0 and _age(path) < 5.0:  # just created: its owner has not written its pid yet
                    raise ConfigError(f"another run is starting in {run}: wait for it to finish or stop it") from None
                if pid != os.getpid() and _alive(pid):
                    raise ConfigError(
                        f"another run (pid {pid}) holds {run}: wait for it to finish or stop it"
                    ) from None
                path.unlink(missing_ok=True)  # stale: its process is gone
        else:
            raise ConfigError(f"could not take the lock {path}: another run keeps creating it")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise unwritable(run, exc) from exc
    try:
        yield path
    finally:
        if _owner(path) == os.getpid():
            path.unlink(missing_ok=True)
