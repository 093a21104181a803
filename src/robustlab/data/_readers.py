"""File-format readers: gzip IDX, CIFAR-10 python batches (without running pickled code), ``.npz``, folders.

The readers of named datasets live in the :data:`READERS` registry, keyed by ``SplitSource.reader``. Each
takes the source and the paths of its files (in ``source.files`` order) and returns numpy arrays
``x`` (N, C, H, W) uint8 and ``y`` (N,) int64. Checksums of whole files are verified before a reader runs;
readers that decode arrays (``cifar-npz``) verify the array checksums themselves.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import logging
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from robustlab._registry import Registry
from robustlab.data._specs import FileSpec, SplitSource
from robustlab.errors import ChecksumError, DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "READERS",
    "Reader",
    "array_sha256",
    "load_npz_arrays",
    "read_cifar_batch",
    "read_idx",
    "read_image_folder",
    "read_npz",
]

logger = logging.getLogger("robustlab.data")

Reader = Callable[[SplitSource, Sequence[Path]], tuple[np.ndarray, np.ndarray]]
"""``reader(source, paths) -> (x, y)`` with x (N, C, H, W) uint8 and y (N,) int64."""

READERS: Registry[Reader] = Registry("dataset file format")

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"})
"""File suffixes (lower case) that :func:`read_image_folder` reads; other files are ignored."""


def array_sha256(a: np.ndarray) -> str:
    """sha256 of an array's C-order bytes (``hashlib.sha256(np.ascontiguousarray(a).tobytes())``)."""
    return hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()


# ---- IDX (MNIST, Fashion-MNIST) ---------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.dtype(np.uint8)}


def read_idx(path: Path) -> np.ndarray:
    """Read a gzip-compressed IDX file (the MNIST format).

    The header is big-endian: two zero bytes, a type code (``0x08`` = uint8), the number of dimensions ``d``,
    then ``d`` uint32 sizes; the data follow in row-major order.

    Returns:
        A writable uint8 array of the declared shape.

    Raises:
        DataError: if the file is not gzip, not IDX, not uint8, or has the wrong length.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable gzip file: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"{path}: IDX type code 0x{code:02x} is not supported (only 0x08, uint8)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{path}: IDX header declares shape {shape} ({expected} bytes with header), file has {len(raw)}"
        )
    return np.frombuffer(raw, dtype=_IDX_DTYPES[code], offset=header).reshape(shape).copy()


def _read_idx_pair(source: SplitSource, paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = paths
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected images of shape (N, H, W), got {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{labels_path} holds {labels.shape} labels for the {images.shape[0]} images of {images_path}")
    return images[:, None], labels.astype(np.int64)


READERS.register("idx", _read_idx_pair)


# ---- CIFAR-10 python batches, unpickled with an allow-list -----------------------------------------------


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode`` (protocol-2 pickles from Python 3 store bytes this way)."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _numpy_module(name: str) -> Any:
    # numpy >= 2 keeps the implementation in numpy._core; numpy.core still works there but warns.
    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:  # numpy < 2
        return importlib.import_module(f"numpy.core.{name}")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = _numpy_module("multiarray")._reconstruct
    frombuffer = _numpy_module("numeric")._frombuffer
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


class _ForbiddenGlobalError(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays, dicts, lists, numbers and strings, and nothing else.

    ``find_class`` is the only way a pickle reaches code; it returns objects from a fixed allow-list
    (numpy's array/dtype reconstructors and a latin-1-only ``_codecs.encode``) and refuses everything else
    before any of it runs.
    """

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, encoding="latin1")  # latin1: how numpy reads Python 2 array pickles
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _ForbiddenGlobalError(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def read_cifar_batch(data: bytes, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CIFAR-10 python batch (a pickled dict with ``data`` and ``labels``) without running code.

    Args:
        data: The pickle's bytes (Python 2 or 3 pickles; keys may be ``str`` or ``bytes``).
        origin: File name for messages.

    Returns:
        ``(x, y)``: images uint8 and labels int64.

    Shape:
        - x: ``(N, 3, 32, 32)`` (the batch stores each row as 3072 bytes in C, H, W order)
        - y: ``(N,)``

    Raises:
        DataError: if the pickle references anything but numpy arrays (nothing is executed), or is not a
            well-formed batch.
    """
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data)).load()
    except _ForbiddenGlobalError as exc:
        raise DataError(
            f"refusing to load {origin}: its pickle references {exc.qualname}, and an official CIFAR-10 "
            "batch contains only numpy arrays, lists and strings (nothing was executed). The file is not an "
            "official batch or was tampered with: delete it and download cifar-10-python.tar.gz again."
        ) from None
    except Exception as exc:  # a malformed pickle can raise almost anything; report it as bad data
        raise DataError(f"{origin} is not a valid CIFAR-10 python batch: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{origin} is not a CIFAR-10 python batch: it holds a {type(obj).__name__}, not a dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{origin} is not a CIFAR-10 python batch: keys {sorted(map(str, batch))} lack data/labels")
    x = batch["data"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        desc = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{origin}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    try:
        y = np.asarray(batch["labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{origin}: 'labels' is not a list of integers: {exc}") from exc
    if y.shape != (x.shape[0],):
        raise DataError(f"{origin}: {y.shape} labels for {x.shape[0]} images")
    return np.ascontiguousarray(x.reshape(-1, 3, 32, 32)), y


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _read_cifar_batches(source: SplitSource, paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    return _concat([read_cifar_batch(p.read_bytes(), str(p)) for p in paths])


def _read_cifar_tar(source: SplitSource, paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    (path,) = paths
    wanted = set(source.members)
    found: dict[str, bytes] = {}
    try:
        # Stream mode: one sequential pass; members are read into memory, nothing is extracted to disk.
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    f = tar.extractfile(member)
                    if f is not None:
                        found[member.name] = f.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable .tar.gz archive: {exc}") from exc
    missing = [m for m in source.members if m not in found]
    if missing:
        raise DataError(f"{path} lacks the members {missing}; it is not the official CIFAR-10 archive")
    return _concat([read_cifar_batch(found[m], f"{path}:{m}") for m in source.members])


def load_npz_arrays(path: Path, keys: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Load arrays from an ``.npz`` without pickle; every key in ``keys`` must be present."""
    try:
        # Open the file ourselves: np.load leaks its own handle when the archive is invalid.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            present = list(npz.files)
            missing = [k for k in keys if k not in present]
            if missing:
                raise DataError(
                    f"{path} lacks the array(s) {missing}; it holds {present}. "
                    "Expected 'x' (N, H, W[, C]) images and 'y' (N,) integer labels."
                )
            return {k: npz[k] for k in present}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path} is not a readable .npz file (numpy arrays, no pickled objects): {exc}") from exc


def _verify_arrays(path: Path, spec: FileSpec, arrays: dict[str, np.ndarray]) -> None:
    for key, expected in spec.array_sha256:
        actual = array_sha256(arrays[key])
        if actual != expected:
            raise ChecksumError(f"{path} (array {key!r})", "sha256", expected, actual)


def _read_cifar_npz(source: SplitSource, paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    (path,) = paths
    arrays = load_npz_arrays(path, ("x", "y"))
    _verify_arrays(path, source.files[0], arrays)
    x, y = arrays["x"], arrays["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3) or y.shape != (x.shape[0],):
        raise DataError(f"{path}: expected x uint8 (N, 32, 32, 3) and y (N,), got x {x.dtype} {x.shape}, y {y.shape}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y.astype(np.int64)


READERS.register("cifar-batches", _read_cifar_batches)
READERS.register("cifar-tar", _read_cifar_tar)
READERS.register("cifar-npz", _read_cifar_npz)


# ---- npz:PATH ---------------------------------------------------------------------------------------------


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read a user ``.npz`` with ``x`` images, ``y`` labels and optionally ``classes`` names.

    ``x`` is channels-last, ``(N, H, W)`` or ``(N, H, W, C)`` with C = 1 or 3, either uint8 (0..255) or
    floating point in [0, 1]. Float pixels become uint8 when that is lossless, i.e. when
    ``float32(x) == float32(round(255 x)) / 255`` everywhere; otherwise they are returned as float32.
    Without ``classes``, the class names are ``"0" .. str(max(y))``.

    Returns:
        ``(x, y, classes)`` with x uint8 or float32 and y int64.

    Shape:
        - x: ``(N, C, H, W)``
        - y: ``(N,)``

    Raises:
        DataError: missing keys, wrong shapes or dtypes, pixel values outside [0, 1], negative labels,
            too few class names.
    """
    arrays = load_npz_arrays(path, ("x", "y"))
    x, y = arrays["x"], arrays["y"]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        hint = ""
        if x.ndim == 4 and x.shape[1] in (1, 3):
            hint = " It looks channels-first; store it as (N, H, W, C)."
        raise DataError(f"{path}: x must have shape (N, H, W) or (N, H, W, C) with C in (1, 3), got {x.shape}.{hint}")
    if x.shape[0] == 0:
        raise DataError(f"{path}: x holds no images")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{path}: y must have shape ({x.shape[0]},) to match x, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y must hold integer class labels, got dtype {y.dtype}")
    if int(y.min()) < 0:
        raise DataError(f"{path}: labels must be >= 0, got minimum {int(y.min())}")
    n_classes = int(y.max()) + 1
    if "classes" in arrays:
        names = arrays["classes"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(f"{path}: 'classes' must be a 1-D array of strings, got {names.dtype} {names.shape}")
        classes = tuple(str(c.decode() if isinstance(c, bytes) else c) for c in names.tolist())
        if len(classes) < n_classes:
            raise DataError(f"{path}: {len(classes)} class names for labels up to {n_classes - 1}")
    else:
        classes = tuple(str(k) for k in range(n_classes))
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.dtype == np.uint8:
        return x, y.astype(np.int64), classes
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{path}: x must be uint8 (0..255) or float in [0, 1], got dtype {x.dtype}")
    lo, hi = float(np.min(x)), float(np.max(x))
    if not np.isfinite(x).all() or lo < 0.0 or hi > 1.0:
        raise DataError(
            f"{path}: float pixels must be finite and in [0, 1], got min {lo}, max {hi}"
            + (" (not finite)" if not np.isfinite(x).all() else "")
            + ". Divide 0..255 data by 255, or store it as uint8."
        )
    x32 = x.astype(np.float32)
    q = np.rint(x32 * np.float32(255)).astype(np.uint8)
    if np.array_equal(q.astype(np.float32) / np.float32(255), x32):
        return q, y.astype(np.int64), classes
    return x32, y.astype(np.int64), classes


# ---- folder:PATH ------------------------------------------------------------------------------------------

_GRAY_MODES = frozenset({"1", "L", "LA"})
_COLOR_MODES = frozenset({"P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})


def read_image_folder(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read an image folder: one sub-folder per class, class names sorted, files sorted within a class.

    Files whose suffix is not in :data:`IMAGE_SUFFIXES` and hidden entries are ignored. All images must
    have the same size (nothing is resized). If every image is grayscale the result has one channel;
    otherwise all images are converted to RGB. Alpha channels are dropped.

    Returns:
        ``(x, y, classes)``: uint8 images, int64 labels, sorted class (sub-folder) names.

    Shape:
        - x: ``(N, C, H, W)`` with C = 1 or 3
        - y: ``(N,)``

    Raises:
        DataError: no class folders or no images, unreadable images, differing sizes, non-8-bit images.
    """
    if not path.is_dir():
        raise DataError(f"image folder {path} does not exist or is not a directory")
    classes = tuple(sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise DataError(f"image folder {path} has no sub-folders; expected one sub-folder per class")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        for f in sorted((path / name).iterdir()):
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES:
                files.append((f, label))
    if not files:
        raise DataError(
            f"image folder {path} has class folders {list(classes)} but no images "
            f"(suffixes {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    # Pass 1: headers only (mode and size), to choose the channel count and check sizes.
    gray = True
    first = files[0][0]
    size = _probe(first)[1]
    for f, _ in files:
        mode, im_size = _probe(f)
        if mode not in _GRAY_MODES and mode not in _COLOR_MODES:
            raise DataError(f"{f}: image mode {mode!r} is not 8-bit grayscale or color; convert it to PNG L/RGB")
        gray = gray and mode in _GRAY_MODES
        if im_size != size:
            raise DataError(
                f"images in {path} differ in size: {first} is {size[0]}x{size[1]}, {f} is "
                f"{im_size[0]}x{im_size[1]} (width x height). Resize them to one size first."
            )
    target = "L" if gray else "RGB"
    width, height = size
    x = np.empty((len(files), height, width, 1 if gray else 3), dtype=np.uint8)
    # Pass 2: decode.
    for i, (f, _) in enumerate(files):
        try:
            with Image.open(f) as im:
                x[i] = np.asarray(im.convert(target)).reshape(height, width, -1)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot decode image {f}: {exc}") from exc
    y = np.array([label for _, label in files], dtype=np.int64)
    logger.debug("read %d images of %d classes from %s", len(files), len(classes), path)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y, classes


def _probe(f: Path) -> tuple[str, tuple[int, int]]:
    try:
        with Image.open(f) as im:
            return im.mode, im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {f}: {exc}") from exc
