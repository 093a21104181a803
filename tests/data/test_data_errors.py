"""Data directory resolution, missing and corrupted files, downloads (always faked)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest

from robustlab.data import DEFAULT_DATA_DIR, _files, check_data, list_datasets, load_dataset, resolve_data_dir
from robustlab.errors import ChecksumError, ConfigError, DataError, UnknownNameError

MNIST_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path / "b"))
    assert resolve_data_dir(tmp_path / "a") == tmp_path / "a"
    assert resolve_data_dir(str(tmp_path / "a")) == tmp_path / "a"
    assert resolve_data_dir() == tmp_path / "b"
    monkeypatch.delenv("ROBUSTLAB_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir() == tmp_path / ".cache" / "robustlab" / "data"  # may be missing
    assert Path("~/.cache/robustlab/data") == DEFAULT_DATA_DIR


def test_missing_data_dir_names_dir_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        resolve_data_dir(missing)
    assert str(missing) in str(info.value) and "--data" in str(info.value)
    assert "ROBUSTLAB_DATA" in str(info.value)
    monkeypatch.setenv("ROBUSTLAB_DATA", str(missing))
    with pytest.raises(DataError, match=r"nowhere \(from \$ROBUSTLAB_DATA\) does not exist"):
        load_dataset("mnist", download=False)
    with pytest.raises(DataError, match="ROBUSTLAB_DATA"):
        check_data()
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="not a directory"):
        resolve_data_dir(tmp_path / "file")


def test_missing_default_dir_in_check_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROBUSTLAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataError, match=r"\.cache/robustlab/data \(default\) does not exist.*ROBUSTLAB_DATA"):
        check_data()


def test_missing_dataset_lists_files_and_target_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "test", tmp_path, download=False)
    msg = str(info.value)
    assert f"Put these files into {tmp_path / 'mnist'}/" in msg
    for name in MNIST_TEST:
        assert name in msg and MNIST_URL + name in msg
    assert "train-images" not in msg  # only the files of the requested split
    assert "download=False" in msg and "--data" in msg and "ROBUSTLAB_DATA" in msg


def test_missing_cifar_lists_the_alternatives(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", "train", tmp_path, download=False)
    msg = str(info.value)
    assert f"Put one of these into {tmp_path / 'cifar10'}/" in msg
    for name in ("batches-py/data_batch_5", "cifar-10-python.tar.gz", "cifar10-train-00000-09999.npz"):
        assert name in msg
    assert "c58f30108f718f92721af3b95e74349a" in msg and "https://www.cs.toronto.edu/~kriz/" in msg


def test_unknown_name_and_split() -> None:
    assert list_datasets() == ["cifar10", "fashion-mnist", "mnist"]
    with pytest.raises(UnknownNameError, match=r"Did you mean: cifar10\?.*npz:PATH or folder:PATH"):
        load_dataset("cifar")
    with pytest.raises(UnknownNameError, match="fashion-mnist"):
        load_dataset("fashion_mnist")
    with pytest.raises(ConfigError, match=r"unknown split 'val'.*'test', 'train'"):
        load_dataset("mnist", "val")


def _copy_mnist_test(data_dir: Path, target: Path) -> Path:
    (target / "mnist").mkdir(parents=True)
    for name in MNIST_TEST:
        shutil.copy(data_dir / "mnist" / name, target / "mnist" / name)
    return target / "mnist"


def test_corrupted_file_raises_checksum_error(data_dir: Path, tmp_path: Path) -> None:
    mnist = _copy_mnist_test(data_dir, tmp_path)
    assert len(load_dataset("mnist", "test", tmp_path, download=False)) == 10_000
    labels = mnist / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(labels.read_bytes())
    raw[100] ^= 0xFF
    labels.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError) as info:
        load_dataset("mnist", "test", tmp_path, download=False)
    err = info.value
    assert err.path == str(labels) and err.algorithm == "md5"
    assert err.expected == "ec29112dd5afa0611ce80d1b7f02629c" and err.actual != err.expected
    assert str(labels) in str(err) and err.expected in str(err) and err.actual in str(err)
    bad = {c.file: c for c in check_data(tmp_path)}["mnist/t10k-labels-idx1-ubyte.gz"]
    assert (bad.present, bad.ok, bad.status, bad.actual) == (True, False, "mismatch", err.actual)
    json.dumps([c.to_dict() for c in check_data(tmp_path)])  # JSON-ready


def test_modified_cifar_array_raises_checksum_error(data_dir: Path, tmp_path: Path) -> None:
    with np.load(data_dir / "cifar10" / "cifar10-test.npz") as npz:
        x, y = npz["x"].copy(), npz["y"]
    x[1234, 5, 6, 2] ^= 1
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "cifar10-test.npz", x=x, y=y)
    with pytest.raises(ChecksumError) as info:
        load_dataset("cifar10", "test", tmp_path, download=False)
    assert "cifar10-test.npz" in info.value.path and "'x'" in info.value.path
    assert info.value.expected == "f9b1e2130bab680db56eb06d886f7f1ad0f1183907ceff4659d1735c890f5b04"
    assert info.value.algorithm == "sha256"


def test_failed_download_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def half_then_fail(url: str, out: BinaryIO, timeout: float = 60.0) -> None:
        calls.append(url)
        out.write(b"\x1f\x8b" + b"x" * 1000)
        raise OSError("connection reset by peer")

    monkeypatch.setattr(_files, "fetch", half_then_fail)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "test", tmp_path, download=True)
    assert calls == [MNIST_URL + MNIST_TEST[0]]
    msg = str(info.value)
    assert "connection reset by peer" in msg and "Put these files into" in msg
    assert list((tmp_path / "mnist").iterdir()) == []  # no partial file, no temporary file


def test_download_with_wrong_bytes_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_files, "fetch", lambda url, out, timeout=60.0: out.write(b"<html>moved</html>"))
    with pytest.raises(DataError, match=r"checksum mismatch .* md5 9fb629c4189551a2d022fa330f9573f3"):
        load_dataset("mnist", "test", tmp_path)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_download_success_lands_verified_files(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def from_shared(url: str, out: BinaryIO, timeout: float = 60.0) -> None:
        assert url.startswith(MNIST_URL)
        out.write((data_dir / "mnist" / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(_files, "fetch", from_shared)
    target = tmp_path / "fresh"  # a data dir named explicitly must exist; the dataset folder is created
    target.mkdir()
    ds = load_dataset("mnist", "test", target)
    assert len(ds) == 10_000
    assert sorted(p.name for p in (target / "mnist").iterdir()) == sorted(MNIST_TEST)


def test_partial_source_is_ignored_with_warning(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "cifar10" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"")
    shutil.copy(data_dir / "cifar10" / "cifar10-train-00000-09999.npz", tmp_path / "cifar10")
    ds = load_dataset("cifar10", "train", tmp_path, download=False)
    assert len(ds) == 10_000
    assert "incomplete" in caplog.text and "data_batch_2" in caplog.text


def test_digest_cache_sees_changed_files(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"a")
    first = _files.file_digest(f)
    f.write_bytes(b"bb")
    assert _files.file_digest(f) == hashlib.md5(b"bb").hexdigest() != first


def test_verify_md5_is_the_one_checksum_check_with_a_cached_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robustlab import _io

    f = tmp_path / "f"
    f.write_bytes(b"abc")
    hashed: list[str] = []
    real = _files._uncached_digest
    monkeypatch.setattr(_files, "_uncached_digest", lambda p, a: hashed.append(p) or real(p, a))
    _files._cached_digest.cache_clear()
    good = hashlib.md5(b"abc").hexdigest()
    _files.verify_md5(f, good.upper())  # digests compare case-insensitively
    _files.verify_md5(f, good)
    _files.verify_md5(f, None)  # no published md5: nothing to check
    assert len(hashed) == 1  # hashed once per process
    with pytest.raises(ChecksumError) as by_data:
        _files.verify_md5(f, "0" * 32)
    with pytest.raises(ChecksumError) as by_io:
        _io.verify_file(f, "0" * 32, "md5")
    assert str(by_data.value) == str(by_io.value)
    assert good in str(by_data.value) and str(f) in str(by_data.value)
    assert not hasattr(_files, "verify_file") or _files.verify_file is _io.verify_file  # no second contract
