"""npz:PATH and folder:PATH datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustlab.data import load_dataset
from robustlab.errors import DataError, UnknownNameError


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_npz_uint8_hwc(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 8, 6, 3), dtype=np.uint8)
    y = np.array([0, 2, 1, 2, 0], dtype=np.int32)
    path = _save(tmp_path / "d.npz", x=x, y=y)
    ds = load_dataset(f"npz:{path}", "train")
    assert (ds.name, ds.split) == (f"npz:{path}", "train")
    assert ds.x.shape == (5, 3, 8, 6) and ds.x.dtype == torch.uint8
    assert np.array_equal(ds.x.permute(0, 2, 3, 1).numpy(), x)
    assert ds.y.tolist() == y.tolist() and ds.y.dtype == torch.int64
    assert ds.classes == ("0", "1", "2")
    assert torch.equal(ds.indices, torch.arange(5))


def test_npz_relative_path_grayscale_and_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.zeros((3, 4, 4), dtype=np.uint8)
    _save(tmp_path / "g.npz", x=x, y=np.array([1, 0, 1]), classes=np.array(["cat", "dog", "eel"]))
    monkeypatch.chdir(tmp_path)
    ds = load_dataset("npz:g.npz")
    assert ds.name == f"npz:{tmp_path / 'g.npz'}"  # absolute path recorded
    assert ds.x.shape == (3, 1, 4, 4) and ds.classes == ("cat", "dog", "eel")


def test_npz_float_exactly_representable_becomes_uint8(tmp_path: Path) -> None:
    k = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    for x in (k.astype(np.float32) / np.float32(255), k / 255.0):  # float32 and float64
        path = _save(tmp_path / f"f{x.dtype.name}.npz", x=x, y=np.array([0]))
        ds = load_dataset(f"npz:{path}")
        assert ds.x.dtype == torch.uint8 and np.array_equal(ds.x[0, 0].numpy(), k[0])
        assert torch.equal(ds.images(), torch.from_numpy((k.astype(np.float32) / 255)[:, None]))


def test_npz_float_not_representable_stays_float(tmp_path: Path) -> None:
    x = np.full((2, 3, 3), 0.5, dtype=np.float64)
    x[1, 0, 0] = 0.123456
    path = _save(tmp_path / "f.npz", x=x, y=np.array([0, 1]))
    ds = load_dataset(f"npz:{path}")
    assert ds.x.dtype == torch.float32
    assert torch.equal(ds.images(), torch.from_numpy(x.astype(np.float32))[:, None])


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((2, 4, 4), np.uint8)}, r"lacks the array\(s\) \['y'\]"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(2, int)}, r"\['x', 'y'\]"),
        ({"x": np.full((2, 4, 4), 1.5), "y": np.zeros(2, int)}, r"in \[0, 1\], got min 1.5, max 1.5"),
        ({"x": np.full((2, 4, 4), -0.1), "y": np.zeros(2, int)}, r"in \[0, 1\]"),
        ({"x": np.full((2, 4, 4), np.nan), "y": np.zeros(2, int)}, "not finite"),
        ({"x": np.zeros((2, 3, 4, 4), np.uint8), "y": np.zeros(2, int)}, "channels-first"),
        ({"x": np.zeros((2, 4), np.uint8), "y": np.zeros(2, int)}, r"shape \(N, H, W\)"),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(3, int)}, r"y must have shape \(2,\)"),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(2)}, "integer class labels"),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, -1])}, "labels must be >= 0"),
        ({"x": np.zeros((2, 4, 4), np.int16), "y": np.zeros(2, int)}, "uint8 .* or float"),
        ({"x": np.zeros((0, 4, 4), np.uint8), "y": np.zeros(0, int)}, "no images"),
        (
            {"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, 2]), "classes": np.array(["a"])},
            "1 class names",
        ),
    ],
)
def test_bad_npz_is_reported(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(f"npz:{path}")
    assert str(path) in str(info.value)


def test_npz_with_pickled_objects_or_not_a_zip_is_refused(tmp_path: Path) -> None:
    obj = np.empty(2, dtype=object)
    obj[:] = [0, 1]
    path = _save(tmp_path / "obj.npz", x=np.zeros((2, 4, 4), np.uint8), y=obj)
    with pytest.raises(DataError, match="no pickled objects"):
        load_dataset(f"npz:{path}")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)


def test_folder_rgb_sorted_classes_and_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    imgs = {}
    for cls, names in (("zebra", ["b.png", "a.png"]), ("ant", ["c.png"])):
        for name in names:
            imgs[(cls, name)] = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
            _png(tmp_path / cls / name, imgs[(cls, name)])
    (tmp_path / "ant" / "notes.txt").write_text("ignored")
    (tmp_path / "ant" / ".hidden.png").write_bytes(b"ignored")
    (tmp_path / "README.md").write_text("ignored: not a folder")
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.name == f"folder:{tmp_path}" and ds.classes == ("ant", "zebra")
    assert ds.x.shape == (3, 3, 5, 7) and ds.y.tolist() == [0, 1, 1]
    expected = [imgs[("ant", "c.png")], imgs[("zebra", "a.png")], imgs[("zebra", "b.png")]]
    assert np.array_equal(ds.x.permute(0, 2, 3, 1).numpy(), np.stack(expected))


def test_folder_grayscale_gives_one_channel_and_mixed_gives_rgb(tmp_path: Path) -> None:
    g = np.arange(20, dtype=np.uint8).reshape(4, 5)
    _png(tmp_path / "gray" / "0" / "a.png", g)
    _png(tmp_path / "gray" / "1" / "b.png", 255 - g)
    ds = load_dataset(f"folder:{tmp_path / 'gray'}")
    assert ds.x.shape == (2, 1, 4, 5) and np.array_equal(ds.x[0, 0].numpy(), g)
    _png(tmp_path / "gray" / "1" / "c.png", np.stack([g, g, g, g], axis=-1))  # RGBA
    ds = load_dataset(f"folder:{tmp_path / 'gray'}")
    assert ds.x.shape == (3, 3, 4, 5) and np.array_equal(ds.x[0, 2].numpy(), g)


def test_bad_folders_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'absent'}")
    (tmp_path / "flat").mkdir()
    _png(tmp_path / "flat" / "x.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(DataError, match="one sub-folder per class"):
        load_dataset(f"folder:{tmp_path / 'flat'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    _png(tmp_path / "sizes" / "a" / "1.png", np.zeros((3, 3), np.uint8))
    _png(tmp_path / "sizes" / "b" / "2.png", np.zeros((3, 4), np.uint8))
    with pytest.raises(DataError, match=r"differ in size: .*1.png is 3x3, .*2.png is 4x3"):
        load_dataset(f"folder:{tmp_path / 'sizes'}")
    (tmp_path / "broken" / "a").mkdir(parents=True)
    (tmp_path / "broken" / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*x.png"):
        load_dataset(f"folder:{tmp_path / 'broken'}")
    assert os.listdir(tmp_path / "broken" / "a") == ["x.png"]


def test_unknown_scheme_suggests_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="Did you mean: npz"):
        load_dataset(f"npy:{tmp_path / 'x.npy'}")
