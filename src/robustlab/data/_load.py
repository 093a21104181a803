"""``load_dataset``, ``list_datasets`` and ``check_data``: the public entry points of ``robustlab.data``."""

from __future__ import annotations

import logging
import os
import urllib.error
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustlab._registry import Registry
from robustlab.data import _files
from robustlab.data._dataset import Dataset
from robustlab.data._readers import (
    READERS,
    array_sha256,
    load_npz_arrays,
    read_image_folder,
    read_npz,
)
from robustlab.data._specs import DATASETS, SPLITS, DatasetSpec, FileSpec, SplitSource
from robustlab.errors import ChecksumError, ConfigError, DataError, UnknownNameError

__all__ = ["DataCheck", "check_data", "list_datasets", "load_dataset"]

logger = logging.getLogger("robustlab.data")

DataDir = str | os.PathLike[str] | None

# ``scheme:PATH`` datasets: a file or folder named directly, independent of the data directory.
_PathLoader = Callable[[Path], tuple[np.ndarray, np.ndarray, tuple[str, ...]]]
_SCHEMES: Registry[_PathLoader] = Registry("dataset scheme")
_SCHEMES.register("npz", read_npz)
_SCHEMES.register("folder", read_image_folder)


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted.

    Besides these, :func:`load_dataset` reads ``npz:PATH`` and ``folder:PATH``.
    """
    return DATASETS.names()


def load_dataset(name: str, split: str = "test", data_dir: DataDir = None, *, download: bool = True) -> Dataset:
    """Load one split of a dataset into memory, verifying checksums.

    Named datasets (:func:`list_datasets`) are read from ``<data dir>/<dataset dir>/`` (see
    :func:`resolve_data_dir`). Their split sources are tried in order of preference; for ``cifar10`` that is
    the official ``cifar-10-batches-py/`` directory, then ``cifar-10-python.tar.gz``, then the offline
    ``.npz`` arrays. The offline training file holds only rows 0–9999 of the 50,000 training images; it is
    used (with an info log line) when the official files are absent. When no source of the split is present
    and ``download`` is true, the official files are downloaded (temporary file, md5 check, atomic rename).

    ``npz:PATH`` reads a ``.npz`` with ``x`` (N, H, W[, C]) uint8 or float in [0, 1], ``y`` (N,) integers
    and optionally ``classes``; ``folder:PATH`` reads one sub-folder of images per class. A relative ``PATH``
    is relative to the current directory; the dataset name records the absolute path. For these the split is
    only a label, and ``data_dir`` and ``download`` are not used.

    Args:
        name: ``"cifar10"``, ``"mnist"``, ``"fashion-mnist"``, ``"npz:PATH"`` or ``"folder:PATH"``
            (names are case-insensitive).
        split: ``"test"`` or ``"train"``.
        data_dir: Data directory (``--data DIR``); default ``$ROBUSTLAB_DATA``, else
            ``~/.cache/robustlab/data``.
        download: Whether to download missing official files.

    Returns:
        The dataset, with ``indices = arange(N)``.

    Raises:
        UnknownNameError: unknown dataset name (the message lists close matches).
        ConfigError: unknown split.
        DataError: data directory or files missing (the message says which files to put where), unreadable
            or malformed files, failed download.
        ChecksumError: a file or array differs from the official one.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(repr(s) for s in SPLITS)}")
    scheme, sep, rest = name.partition(":")
    if sep:
        loader = _SCHEMES.get(scheme)
        path = Path(rest).expanduser().absolute()
        x, y, classes = loader(path)
        return _make_dataset(f"{scheme.lower()}:{path}", split, x, y, classes)
    try:
        spec = DATASETS.get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc} Files are read with npz:PATH or folder:PATH.") from None

    root = _files.resolve_data_dir(data_dir)
    directory = root / spec.directory
    sources = spec.sources_for(split)
    source = _first_present(sources, directory)
    if source is None:
        source = _download_or_explain(spec, split, sources, directory, data_dir, download)
    paths = [directory / f.name for f in source.files]
    for f, p in zip(source.files, paths, strict=True):
        _files.verify_md5(p, f.md5)
    x, y = READERS.get(source.reader)(source, paths)
    if x.shape[0] != source.rows:
        raise DataError(
            f"{spec.title} {split}: {source.description} in {directory} gave {x.shape[0]} images, "
            f"expected {source.rows}"
        )
    if not source.complete:
        full = " or ".join(", ".join(f.name for f in s.files) for s in sources if s.complete)
        logger.info(
            "%s %s: using %s from %s: %s. For the full split put %s there.",
            spec.title,
            split,
            ", ".join(f.name for f in source.files),
            directory,
            source.description,
            full or "the official files",
        )
    logger.debug("loaded %s %s (%d images) from %s", spec.name, split, x.shape[0], directory)
    return _make_dataset(spec.name, split, x, y, spec.classes)


def _make_dataset(name: str, split: str, x: np.ndarray, y: np.ndarray, classes: tuple[str, ...]) -> Dataset:
    """Wrap numpy arrays (x (N, C, H, W), y (N,)) into a :class:`Dataset` with ``indices = arange(N)``."""
    xt = torch.from_numpy(np.require(x, requirements=("C", "W")))
    yt = torch.from_numpy(np.require(y, dtype=np.int64, requirements=("C", "W")))
    return Dataset(
        name=name,
        split=split,
        x=xt,
        y=yt,
        classes=tuple(classes),
        indices=torch.arange(xt.shape[0], dtype=torch.int64),
    )


def _first_present(sources: tuple[SplitSource, ...], directory: Path) -> SplitSource | None:
    """The first source whose files all exist; warn about sources that are only partly present."""
    for source in sources:
        present = [(directory / f.name).is_file() for f in source.files]
        if all(present):
            return source
        if any(present):
            missing = [f.name for f, ok in zip(source.files, present, strict=True) if not ok]
            logger.warning("%s in %s is incomplete (missing %s); ignoring it", source.description, directory, missing)
    return None


def _download_or_explain(
    spec: DatasetSpec,
    split: str,
    sources: tuple[SplitSource, ...],
    directory: Path,
    data_dir: DataDir,
    download: bool,
) -> SplitSource:
    """Download the first downloadable source, or raise a DataError that says what to put where."""
    target = next((s for s in sources if s.downloadable), None)
    if not download:
        reason = "Automatic download is disabled (download=False)."
    elif target is None:
        reason = f"{spec.title} cannot be downloaded automatically."
    else:
        try:
            for f in target.files:
                path = directory / f.name
                if not path.is_file() and f.url is not None:
                    _files.download_file(f.url, path, f.md5)
            return target
        except (OSError, urllib.error.URLError, ChecksumError, DataError) as exc:
            urls = ", ".join(f.url for f in target.files if f.url)
            reason = f"Downloading {urls} failed: {exc}."
            logger.warning("%s", reason)
    raise DataError(_missing_message(spec, split, sources, directory, data_dir, reason))


def _describe_file(f: FileSpec) -> str:
    extra = []
    if f.md5:
        extra.append(f"md5 {f.md5}")
    if f.url:
        extra.append(f"from {f.url}")
    return f.name + (f" ({', '.join(extra)})" if extra else "")


def _missing_message(
    spec: DatasetSpec,
    split: str,
    sources: tuple[SplitSource, ...],
    directory: Path,
    data_dir: DataDir,
    reason: str,
) -> str:
    origin = _files.data_dir_origin(data_dir)
    lines = [f"{spec.title} split {split!r} not found in {directory} (data directory from {origin})."]
    if len(sources) == 1:
        lines.append(f"Put these files into {directory}/ ({sources[0].description}):")
        lines += [f"  - {_describe_file(f)}" for f in sources[0].files]
    else:
        lines.append(f"Put one of these into {directory}/:")
        for s in sources:
            lines.append(f"  - {s.description}: " + "; ".join(_describe_file(f) for f in s.files))
    lines.append(reason)
    lines.append(
        f"To use another data directory, pass --data DIR (data_dir=...) or set {_files.DATA_ENV_VAR}; "
        f"inside it the files go to {spec.directory}/."
    )
    return "\n".join(lines)


# ---- check_data -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataCheck:
    """The state of one checksum of one dataset file (``robustlab data check`` prints a table of these).

    Attributes:
        dataset: Dataset name.
        file: Path relative to the data directory (``"cifar10/cifar10-test.npz"``).
        path: Absolute path.
        splits: Splits that can use this file.
        present: Whether the file exists.
        ok: Whether the checksum matches; ``None`` when the file is absent.
        algorithm: ``"md5"`` (of the file) or ``"sha256(x)"`` (of the decoded array ``x`` of an ``.npz``).
        expected: Official checksum.
        actual: Computed checksum; ``None`` when absent or unreadable.
        message: Explanation when not ok (unreadable file, ...), else ``""``.
    """

    dataset: str
    file: str
    path: str
    splits: tuple[str, ...]
    present: bool
    ok: bool | None
    algorithm: str
    expected: str
    actual: str | None
    message: str = ""

    @property
    def status(self) -> str:
        """``"ok"``, ``"missing"`` or ``"mismatch"``."""
        if not self.present:
            return "missing"
        return "ok" if self.ok else "mismatch"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field plus ``status``."""
        d = asdict(self)
        d["splits"] = list(self.splits)
        d["status"] = self.status
        return d


def check_data(data_dir: DataDir = None) -> list[DataCheck]:
    """Check presence and checksums of every known file of every registered dataset.

    Absent files are reported, not raised: several files are alternatives (CIFAR-10's batches, archive and
    offline arrays). Nothing is downloaded.

    Args:
        data_dir: Data directory, resolved as in :func:`resolve_data_dir`.

    Returns:
        One entry per (file, checksum), datasets in name order.

    Raises:
        DataError: if the data directory does not exist.
    """
    root = _files.resolve_data_dir(data_dir)
    if not root.is_dir():
        raise DataError(
            f"data directory {root} ({_files.data_dir_origin(data_dir)}) does not exist. Pass --data DIR or "
            f"set {_files.DATA_ENV_VAR} to the directory that holds cifar10/, mnist/, fashion-mnist/."
        )
    checks: list[DataCheck] = []
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        for f in spec.files():
            splits = tuple(s.split for s in spec.sources if any(g.name == f.name for g in s.files))
            checks += _check_file(spec, f, root, splits)
    return checks


def _check_file(spec: DatasetSpec, f: FileSpec, root: Path, splits: tuple[str, ...]) -> list[DataCheck]:
    rel = f"{spec.directory}/{f.name}"
    path = root / spec.directory / f.name
    expected = [("md5", f.md5)] if f.md5 else []
    expected += [(f"sha256({key})", sha) for key, sha in f.array_sha256]

    def entry(algorithm: str, exp: str, ok: bool | None, actual: str | None, message: str = "") -> DataCheck:
        if ok is False and not message:
            message = "checksum differs: the file is corrupted or not the official one"
        return DataCheck(spec.name, rel, str(path), splits, path.is_file(), ok, algorithm, exp, actual, message)

    if not path.is_file():
        return [entry(alg, exp, None, None) for alg, exp in expected]
    out: list[DataCheck] = []
    if f.md5:
        actual = _files.file_digest(path, "md5")
        out.append(entry("md5", f.md5, actual == f.md5, actual))
    if f.array_sha256:
        error = ""
        try:
            arrays = load_npz_arrays(path)
        except DataError as exc:
            arrays, error = {}, str(exc)
        for key, sha in f.array_sha256:
            if key in arrays:
                actual = array_sha256(arrays[key])
                out.append(entry(f"sha256({key})", sha, actual == sha, actual))
            else:
                out.append(entry(f"sha256({key})", sha, False, None, error or f"array {key!r} missing"))
    return out
