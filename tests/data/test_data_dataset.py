"""The Dataset container: subsets, take, batches, images, validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import robustlab.data
from robustlab.data import Dataset, load_dataset
from robustlab.errors import ConfigError, DataError


def make(n: int = 50, dtype: torch.dtype = torch.uint8) -> Dataset:
    g = torch.Generator().manual_seed(123)
    x = torch.randint(0, 256, (n, 3, 4, 4), generator=g, dtype=torch.uint8)
    x = x if dtype == torch.uint8 else x.to(dtype) / 255
    return Dataset(
        name="toy",
        split="test",
        x=x,
        y=torch.arange(n, dtype=torch.int64) % 5,
        classes=tuple("abcde"),
        indices=torch.arange(n, dtype=torch.int64),
    )


def test_subset_is_deterministic_and_consistent() -> None:
    full = make()
    a, b, c = full.subset(10, seed=0), full.subset(10, seed=0), full.subset(10, seed=1)
    assert len(a) == 10 and torch.equal(a.indices, b.indices) and torch.equal(a.x, b.x)
    assert not torch.equal(a.indices, c.indices)
    assert torch.equal(a.indices, torch.sort(a.indices).values) and a.indices.unique().numel() == 10
    assert torch.equal(a.x, full.x[a.indices]) and torch.equal(a.y, full.y[a.indices])
    assert set(a.indices.tolist()) <= set(full.subset(20, seed=0).indices.tolist())  # nested for one seed
    # Indices always point into the full split, also for a subset of a subset.
    aa = a.subset(4, seed=7)
    assert torch.equal(aa.x, full.x[aa.indices]) and set(aa.indices.tolist()) <= set(a.indices.tolist())
    assert (aa.name, aa.split, aa.classes) == (full.name, full.split, full.classes)


def test_subset_edge_cases() -> None:
    full = make()
    assert full.subset(None) is full and full.subset(50) is full and full.subset(10_000) is full
    for bad in (0, -3):
        with pytest.raises(ConfigError, match="positive"):
            full.subset(bad)
    with pytest.raises(ConfigError, match="integer"):
        full.subset(2.5)  # type: ignore[arg-type]


def test_real_subset_matches_rows(data_dir: Path) -> None:
    full = load_dataset("mnist", "test", download=False)
    sub = full.subset(100, seed=3)
    assert torch.equal(sub.y, full.y[sub.indices]) and torch.equal(sub.x, full.x[sub.indices])
    assert torch.equal(sub.indices, load_dataset("mnist", download=False).subset(100, seed=3).indices)


def test_take_positions_mask_and_errors() -> None:
    full = make()
    sub = full.subset(10, seed=0)
    t = sub.take(torch.tensor([9, 0, 0]))
    assert t.indices.tolist() == [sub.indices[9].item(), sub.indices[0].item(), sub.indices[0].item()]
    assert torch.equal(t.x, full.x[t.indices])
    m = full.take(full.y == 2)
    assert len(m) == 10 and (m.y == 2).all() and torch.equal(m.x, full.x[m.indices])
    assert len(full.take(torch.tensor([], dtype=torch.int64))) == 0
    with pytest.raises(ConfigError, match=r"0\.\.49"):
        full.take(torch.tensor([50]))
    with pytest.raises(ConfigError, match="integer positions"):
        full.take(torch.tensor([0.0]))
    with pytest.raises(ConfigError, match="mask has length"):
        full.take(torch.ones(3, dtype=torch.bool))


def test_batches_cover_everything_in_order() -> None:
    full = make(23)
    got = list(full.batches(10))
    assert [len(b[1]) for b in got] == [10, 10, 3]
    x = torch.cat([b[0] for b in got])
    assert x.dtype == torch.float32 and torch.equal(x, full.images())
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.equal(torch.cat([b[2] for b in got]), full.indices)
    assert torch.equal(torch.cat([b[1] for b in got]), full.y)
    with pytest.raises(ConfigError):
        next(full.batches(0))


def test_images_dtype_copy_and_float_storage() -> None:
    full = make(5)
    img = full.images(torch.float64)
    assert img.dtype == torch.float64 and torch.equal(img, full.x.double() / 255)
    f = make(5, torch.float32)
    out = f.images()
    out.zero_()
    assert f.x.abs().sum() > 0  # images() never aliases the storage
    with pytest.raises(ConfigError, match="floating"):
        full.images(torch.int32)


def test_validation_and_frozen() -> None:
    ok = make(4)
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        dataclasses.replace(ok, x=ok.x[:, 0])
    with pytest.raises(DataError, match="uint8 or float32"):
        dataclasses.replace(ok, x=ok.x.to(torch.int16))
    with pytest.raises(DataError, match="y must be int64"):
        dataclasses.replace(ok, y=ok.y.to(torch.int32))
    with pytest.raises(DataError, match="indices must be int64 of shape"):
        dataclasses.replace(ok, indices=ok.indices[:2])
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.1"):
        dataclasses.replace(ok, classes=("a", "b"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ok.name = "other"  # type: ignore[misc]
    assert "n=4" in repr(ok) and ok.num_classes == 5


def test_public_api() -> None:
    for name in robustlab.data.__all__:
        assert hasattr(robustlab.data, name)
    assert {"Dataset", "DataCheck", "check_data", "list_datasets", "load_dataset", "resolve_data_dir"} <= set(
        robustlab.data.__all__
    )
