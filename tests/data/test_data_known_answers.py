"""Known answers: the loaders reproduce the checksums and facts published in shared/data/*/SOURCE.md."""

from __future__ import annotations

import hashlib
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustlab.data import Dataset, check_data, load_dataset

# From shared/data/cifar10/SOURCE.md: sha256 of the decoded arrays (uint8, N x 32 x 32 x 3, HWC, C order).
CIFAR_SHA256 = {
    "test": (
        "f9b1e2130bab680db56eb06d886f7f1ad0f1183907ceff4659d1735c890f5b04",
        "cec8a24a1e92aa2ecaa0bbd3dbfa86bf6cd8759fbd209a832824c8cf0afca9d5",
    ),
    "train": (
        "fc115a3de050d667b88cbd5b0b9612ebf996c54230fe7758f3a14bb5af9a1c27",
        "d829dbdf32167c9d7b3687cee66d92d80d46c441308b5aca0d11e8b69e27dac9",
    ),
}
# From shared/data/{mnist,fashion-mnist}/SOURCE.md: md5 of the decompressed IDX files.
IDX_MD5 = {
    "mnist": ("2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"),
    "fashion-mnist": ("8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
}
# md5 of the official .gz files.
GZ_MD5 = {
    "mnist/train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "mnist/train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "mnist/t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "mnist/t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "fashion-mnist/train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "fashion-mnist/train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "fashion-mnist/t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def _hwc_sha256(x: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy()).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def cifar_test(data_dir: Path) -> Dataset:
    return load_dataset("cifar10", "test", download=False)  # data dir from ROBUSTLAB_DATA


def test_cifar10_test_reproduces_published_arrays(cifar_test: Dataset) -> None:
    ds = cifar_test
    assert (ds.name, ds.split, len(ds)) == ("cifar10", "test", 10_000)
    assert ds.x.shape == (10_000, 3, 32, 32) and ds.x.dtype == torch.uint8
    assert ds.y.dtype == torch.int64
    assert _hwc_sha256(ds.x) == CIFAR_SHA256["test"][0]
    assert hashlib.sha256(ds.y.to(torch.uint8).numpy().tobytes()).hexdigest() == CIFAR_SHA256["test"][1]
    assert ds.y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert torch.bincount(ds.y, minlength=10).tolist() == [1000] * 10
    assert ds.classes[:3] == ("airplane", "automobile", "bird") and len(ds.classes) == 10
    assert torch.equal(ds.indices, torch.arange(10_000))


def test_cifar10_test_matches_foolbox_sample(cifar_test: Dataset, data_dir: Path) -> None:
    # foolbox's lossless sample 0 is CIFAR-10 test image 0 (label 3).
    sample = np.asarray(Image.open(data_dir / "foolbox-samples" / "cifar10_00_3.png").convert("RGB"))
    assert np.array_equal(cifar_test.x[0].permute(1, 2, 0).numpy(), sample)


def test_cifar10_train_falls_back_to_offline_rows(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="robustlab.data"):
        ds = load_dataset("cifar10", "train", data_dir, download=False)
    assert len(ds) == 10_000
    assert _hwc_sha256(ds.x) == CIFAR_SHA256["train"][0]
    assert ds.y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert torch.bincount(ds.y).tolist() == [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]
    assert "cifar10-train-00000-09999.npz" in caplog.text and "0–9999" in caplog.text


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_test_split_reproduces_decompressed_md5(name: str, data_dir: Path) -> None:
    ds = load_dataset(name, "test", download=False)
    assert ds.x.shape == (10_000, 1, 28, 28) and ds.x.dtype == torch.uint8
    images = struct.pack(">IIII", 0x803, 10_000, 28, 28) + ds.x.numpy().tobytes()
    labels = struct.pack(">II", 0x801, 10_000) + ds.y.to(torch.uint8).numpy().tobytes()
    assert (hashlib.md5(images).hexdigest(), hashlib.md5(labels).hexdigest()) == IDX_MD5[name]
    assert torch.bincount(ds.y).sum() == 10_000 and len(ds.classes) == 10


def test_mnist_train_shape_and_foolbox_sample(data_dir: Path) -> None:
    train = load_dataset("mnist", "train", data_dir, download=False)
    assert train.x.shape == (60_000, 1, 28, 28) and train.y.shape == (60_000,)
    test = load_dataset("MNIST", download=False)  # names are case-insensitive, split defaults to test
    sample = np.asarray(Image.open(data_dir / "foolbox-samples" / "mnist_00_7.png"))
    assert np.array_equal(test.x[0, 0].numpy(), sample) and int(test.y[0]) == 7


def test_check_data_reports_official_checksums(data_dir: Path) -> None:
    checks = check_data(data_dir)
    by_file = {(c.file, c.algorithm): c for c in checks}
    for rel, md5 in GZ_MD5.items():
        c = by_file[(rel, "md5")]
        assert c.present and c.ok and c.expected == md5 and c.actual == md5 and c.status == "ok"
    for split, npz in (("test", "cifar10-test.npz"), ("train", "cifar10-train-00000-09999.npz")):
        for key, sha in zip("xy", CIFAR_SHA256[split], strict=True):
            c = by_file[(f"cifar10/{npz}", f"sha256({key})")]
            assert c.ok and c.actual == sha and c.splits == (split,)
    # The official CIFAR archive is not in the shared data: reported, not raised.
    tar = by_file[("cifar10/cifar-10-python.tar.gz", "md5")]
    assert (tar.present, tar.ok, tar.status) == (False, None, "missing")
    assert tar.expected == "c58f30108f718f92721af3b95e74349a" and set(tar.splits) == {"test", "train"}
    d = tar.to_dict()
    assert d["status"] == "missing" and d["splits"] == ["test", "train"] and d["actual"] is None
