"""Official CIFAR-10 python batches: parsed without executing pickled code."""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from robustlab.data import _files, dataset_spec, load_dataset
from robustlab.data._readers import READERS, read_cifar_batch
from robustlab.errors import ChecksumError, DataError

ROWS = 4  # rows per fake batch


def _s(b: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING: a Python 2 str
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _i(v: int) -> bytes:  # BININT
    return b"J" + struct.pack("<i", v)


def _g(module: str, name: str) -> bytes:  # GLOBAL
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """The bytes Python 2 ``cPickle.dump(batch, f, 2)`` writes for an official batch (str keys, numpy 1)."""
    array = (
        _g("numpy.core.multiarray", "_reconstruct") + _g("numpy", "ndarray") + _i(0) + b"\x85" + _s(b"b")
        + b"\x87R("  # _reconstruct(ndarray, (0,), 'b'), then the state tuple:
        + _i(1) + _i(data.shape[0]) + _i(data.shape[1]) + b"\x86"
        + _g("numpy", "dtype") + _s(b"u1") + _i(0) + _i(1) + b"\x87R"
        + b"(" + _i(3) + _s(b"|") + b"NNN" + _i(-1) + _i(-1) + _i(0) + b"tb"
        + b"\x89" + _s(data.tobytes()) + b"tb"
    )  # fmt: skip
    items = (
        _s(b"batch_label") + _s(b"fake batch")
        + _s(b"labels") + b"](" + b"".join(_i(v) for v in labels) + b"e"
        + _s(b"data") + array
        + _s(b"filenames") + b"](" + b"".join(_s(b"img_%d.png" % k) for k in range(len(labels))) + b"e"
    )  # fmt: skip
    return b"\x80\x02}(" + items + b"u."


def fake_rows(seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (ROWS, 3072), dtype=np.uint8), rng.integers(0, 10, ROWS).tolist()


def make_batches_dir(root: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    """A tiny ``cifar-10-batches-py`` (ROWS rows per batch) under ``root``."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    content = {}
    for k, name in enumerate(f"data_batch_{j}" for j in range(1, 6)):
        content[name] = fake_rows(k)
        (d / name).write_bytes(py2_batch(*content[name]))
    content["test_batch"] = fake_rows(99)
    # The test batch as Python 3 writes it (dict keys are str, bytes via _codecs.encode).
    data, labels = content["test_batch"]
    (d / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": labels}, protocol=2))
    return content


def test_fake_batches_dir_parses_in_order(tmp_path: Path) -> None:
    content = make_batches_dir(tmp_path)
    spec = dataset_spec("cifar10")
    train_source = next(s for s in spec.sources_for("train") if s.reader == "cifar-batches")
    paths = [tmp_path / f.name for f in train_source.files]
    x, y = READERS.get("cifar-batches")(train_source, paths)
    assert x.shape == (5 * ROWS, 3, 32, 32) and x.dtype == np.uint8
    names = [f"data_batch_{k}" for k in range(1, 6)]
    assert np.array_equal(x.reshape(5 * ROWS, 3072), np.concatenate([content[n][0] for n in names]))
    assert y.tolist() == [label for n in names for label in content[n][1]]
    # Row layout: each 3072-byte row is the red, green, blue 32x32 planes.
    assert np.array_equal(x[0, 1].reshape(-1), content["data_batch_1"][0][0, 1024:2048])


def test_fake_archive_parses_without_extracting(tmp_path: Path) -> None:
    content = make_batches_dir(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    spec = dataset_spec("cifar10")
    source = next(s for s in spec.sources_for("test") if s.reader == "cifar-tar")
    before = set(os.listdir(tmp_path))
    x, y = READERS.get("cifar-tar")(source, [archive])
    assert np.array_equal(x.reshape(ROWS, 3072), content["test_batch"][0])
    assert y.tolist() == content["test_batch"][1]
    assert set(os.listdir(tmp_path)) == before  # nothing extracted


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python3_pickles_parse(protocol: int) -> None:
    data, labels = fake_rows(1)
    payload = pickle.dumps({b"data": data, b"labels": np.array(labels)}, protocol=protocol)
    x, y = read_cifar_batch(payload, "t")
    assert np.array_equal(x.reshape(ROWS, -1), data) and y.tolist() == labels


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_that_runs_code_is_refused_without_side_effect(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "marker"
    data, labels = fake_rows(2)
    payload = pickle.dumps({"data": data, "labels": labels, "x": _Evil(marker)}, protocol=protocol)
    with pytest.raises(DataError, match=r"refusing to load evil_batch.*system.*nothing was executed"):
        read_cifar_batch(payload, "evil_batch")
    assert not marker.exists()


def test_other_dangerous_globals_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    # builtins.exec / eval and a non-latin1 _codecs.encode (the one codec call the allow-list permits).
    for payload in (
        b"\x80\x02" + _g("builtins", "exec") + _s(f"open({str(marker)!r}, 'w')".encode()) + b"\x85R.",
        b"\x80\x02" + _g("_codecs", "encode") + _s(b"x") + _s(b"rot13") + b"\x86R.",
    ):
        with pytest.raises(DataError):
            read_cifar_batch(payload, "bad")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2, 3], "holds a list"),
        ({"labels": [1]}, "lack data/labels"),
        ({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, r"shape \(N, 3072\)"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, "labels for 2 images"),
    ],
)
def test_malformed_batches_are_reported(obj: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_cifar_batch(pickle.dumps(obj, protocol=2), "bad")
    with pytest.raises(DataError, match="not a valid CIFAR-10 python batch"):
        read_cifar_batch(b"\x80\x02garbage", "bad")


def test_named_dataset_verifies_md5_before_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    batches = tmp_path / "cifar10" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    (batches / "test_batch").write_bytes(pickle.dumps({"x": _Evil(marker)}, protocol=2))
    with pytest.raises(ChecksumError) as info:
        load_dataset("cifar10", "test", tmp_path, download=False)
    assert info.value.expected == "40351d587109b95175f43aff81a1287e" and "test_batch" in info.value.path
    assert not marker.exists()


def test_archive_member_is_read_into_memory(tmp_path: Path) -> None:
    # A tar member is looked up by exact name: a path-traversal name is never used, nothing is written.
    data, labels = fake_rows(3)
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        payload = pickle.dumps({"data": data, "labels": labels}, protocol=2)
        info = tarfile.TarInfo("../evil")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    source = next(s for s in dataset_spec("cifar10").sources_for("test") if s.reader == "cifar-tar")
    with pytest.raises(DataError, match="lacks the members"):
        READERS.get("cifar-tar")(source, [archive])
    assert not (tmp_path.parent / "evil").exists()


def test_load_prefers_batches_dir_then_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Fake files cannot match the official md5s: skip the md5 check to test the source selection.
    monkeypatch.setattr(_files, "verify_md5", lambda path, md5: None)
    labels = [k % 10 for k in range(10_000)]
    cifar = tmp_path / "cifar10"
    batches = cifar / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for marker, target in ((2, tmp_path / "test_batch"), (1, batches / "test_batch")):
        data = np.zeros((10_000, 3072), np.uint8)
        data[0, 0] = marker
        target.write_bytes(pickle.dumps({"data": data, "labels": labels}, protocol=2))
    with tarfile.open(cifar / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "test_batch", arcname="cifar-10-batches-py/test_batch")
    ds = load_dataset("cifar10", "test", tmp_path, download=False)
    assert int(ds.x[0, 0, 0, 0]) == 1 and ds.x.shape == (10_000, 3, 32, 32)
    assert ds.y[:12].tolist() == labels[:12]
    (batches / "test_batch").unlink()
    assert int(load_dataset("cifar10", "test", tmp_path, download=False).x[0, 0, 0, 0]) == 2
