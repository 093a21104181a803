"""Small file utilities shared by every package: digests and atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from robustlab.errors import ChecksumError


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: str | os.PathLike[str], expected: str, algorithm: str = "sha256") -> None:
    """Raise :class:`ChecksumError` (naming file, expected and actual) if the digest differs."""
    actual = file_digest(path, algorithm)
    if actual != expected.lower():
        raise ChecksumError(str(path), algorithm, expected.lower(), actual)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success it is fsynced and renamed onto ``final``.

    On an exception the temporary file is removed and ``final`` is untouched, so a reader never sees
    a half-written file.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; final files get the usual permissions
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def download(
    url: str, dest: str | os.PathLike[str], expected: str, algorithm: str = "sha256", timeout: float = 30.0
) -> Path:
    """Download ``url`` to ``dest`` via a temporary file, verify its checksum, then rename.

    Nothing is left at ``dest`` if the transfer or the checksum fails.

    Raises:
        OSError: the transfer failed (no network, HTTP error).
        ChecksumError: the downloaded bytes are not the expected file.
    """
    import urllib.request

    dest = Path(dest)
    with atomic_path(dest) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
        verify_file(tmp, expected, algorithm)
    return dest
