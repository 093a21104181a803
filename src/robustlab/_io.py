"""Small file utilities shared by every package: digests, atomic writes and verified downloads."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from robustlab.errors import ChecksumError, DataError


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(
    path: str | os.PathLike[str],
    expected: str,
    algorithm: str = "sha256",
    name: str | None = None,
    digest: Callable[[Path, str], str] | None = None,
) -> None:
    """Check a file's digest: the one checksum comparison of robustlab (weights, datasets, downloads).

    Args:
        path: The file.
        expected: Its expected hex digest (case-insensitive).
        algorithm: A :mod:`hashlib` algorithm name.
        name: How messages name the file (default: its path).
        digest: Computes ``digest(path, algorithm)`` (default: :func:`file_digest`; the datasets pass a cached
            one).

    Raises:
        ChecksumError: naming the file, the algorithm, the expected and the actual digest.
    """
    actual = (digest or file_digest)(Path(path), algorithm)
    if actual != expected.lower():
        raise ChecksumError(name or str(path), algorithm, expected.lower(), actual)


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


def fetch(url: str, out: BinaryIO, timeout: float = 60.0) -> None:
    """Copy the body of ``url`` (http or https only) into ``out``."""
    import shutil
    import urllib.request

    if not url.startswith(("https://", "http://")):
        raise DataError(f"refusing to download from {url!r}: only http(s) URLs are allowed")
    request = urllib.request.Request(url, headers={"User-Agent": "robustlab"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        shutil.copyfileobj(response, out, length=1 << 20)


def download(
    url: str,
    dest: str | os.PathLike[str],
    expected: str | None,
    algorithm: str = "sha256",
    fetcher: Callable[[str, BinaryIO], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` via a temporary file, verify its checksum, then rename.

    Nothing is left at ``dest`` if the transfer or the checksum fails. ``expected=None`` skips the check (for
    sources without a published digest); ``fetcher`` replaces :func:`fetch` (tests stay off the network).

    Raises:
        OSError: the transfer failed (no network, HTTP error).
        ChecksumError: the downloaded bytes are not the expected file.
    """
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            (fetcher or fetch)(url, out)
        if expected is not None:
            verify_file(tmp, expected, algorithm, name=f"{dest} (downloaded from {url})")
    return dest
