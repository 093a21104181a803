"""Data directory resolution, checksums and safe downloads (temporary file → verify → atomic rename)."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from robustlab._io import download, fetch, verify_file
from robustlab._io import file_digest as _uncached_digest
from robustlab.errors import DataError

__all__ = [
    "DATA_ENV_VAR",
    "DEFAULT_DATA_DIR",
    "data_dir_origin",
    "download_file",
    "fetch",
    "file_digest",
    "resolve_data_dir",
    "verify_md5",
]

logger = logging.getLogger("robustlab.data")

DATA_ENV_VAR = "ROBUSTLAB_DATA"
"""Environment variable naming the data directory."""

DEFAULT_DATA_DIR = Path("~/.cache/robustlab/data")
"""Data directory used when neither an argument nor :data:`DATA_ENV_VAR` names one."""

_HOW_TO_SET = f"Name another one with --data DIR (or data_dir=...) or the {DATA_ENV_VAR} environment variable."


def data_dir_origin(data_dir: str | os.PathLike[str] | None) -> str:
    """Where the data directory comes from, for messages: ``"--data"``, the env var, or ``"default"``."""
    if data_dir is not None:
        return "--data / data_dir argument"
    if os.environ.get(DATA_ENV_VAR):
        return f"${DATA_ENV_VAR}"
    return "default"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$ROBUSTLAB_DATA``, else ``~/.cache/robustlab/data``.

    A directory named explicitly (argument or environment variable) must exist. The default directory may be
    missing; it is created when a download writes into it.

    Args:
        data_dir: Directory named by the user (``--data DIR``), or ``None``.

    Returns:
        The absolute path (``~`` expanded).

    Raises:
        DataError: if an explicitly named directory does not exist or is not a directory; the message names
            the directory and how to name another one.
    """
    origin = data_dir_origin(data_dir)
    raw = data_dir if data_dir is not None else os.environ.get(DATA_ENV_VAR) or DEFAULT_DATA_DIR
    path = Path(raw).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise DataError(f"data directory {path} (from {origin}) is not a directory. {_HOW_TO_SET}")
    if origin != "default" and not path.exists():
        raise DataError(
            f"data directory {path} (from {origin}) does not exist. Create it and put the datasets there "
            f"(sub-directories cifar10/, mnist/, fashion-mnist/), or point to an existing one. {_HOW_TO_SET} "
            f"Without either, robustlab uses {DEFAULT_DATA_DIR}."
        )
    return path


@functools.lru_cache(maxsize=64)
def _cached_digest(path: str, size: int, mtime_ns: int, algorithm: str) -> str:
    return _uncached_digest(path, algorithm)


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes.

    Results are cached per process keyed by ``(path, size, mtime)``, so a changed file is hashed again.
    """
    st = path.stat()
    return _cached_digest(str(path.absolute()), st.st_size, st.st_mtime_ns, algorithm)


def verify_md5(path: Path, md5: str | None) -> None:
    """Check a dataset file's md5 (nothing to do when ``md5`` is ``None``): :func:`robustlab._io.verify_file`
    with the cached :func:`file_digest`, so a dataset is hashed once per process.

    Raises:
        ChecksumError: naming the file, the expected and the actual md5.
    """
    if md5 is None:
        return
    verify_file(path, md5, "md5", digest=file_digest)
    logger.debug("md5 ok: %s", path)


def download_file(url: str, dest: Path, md5: str | None) -> None:
    """Download ``url`` to ``dest`` (verified, atomic: see :func:`robustlab._io.download`).

    Raises:
        ChecksumError: if the downloaded bytes have the wrong md5.
        OSError: network or file-system errors (``urllib.error.URLError`` is one).
    """
    logger.info("downloading %s -> %s", url, dest)
    # ``fetch`` is looked up at call time, so tests can monkeypatch this module's name to stay off the network.
    download(url, dest, md5, "md5", fetcher=fetch)
    logger.info("downloaded %s (%d bytes, md5 ok)", dest, dest.stat().st_size)
