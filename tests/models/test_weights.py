"""Safe weight loading: safetensors + sidecar round trip, truncated files, malicious pickles, strict keys."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from robustlab import ChecksumError, ModelError, ModelSpec, load_model, save_weights
from robustlab.models import build_architecture, read_torch_checkpoint
from robustlab.models.weights import load_state_dict_strict


def _spec() -> ModelSpec:
    return ModelSpec(
        name="tiny",
        family="lenet",
        arch="lenet",
        num_classes=10,
        input_shape=(1, 28, 28),
        mean=(0.13,),
        std=(0.31,),
        dataset="mnist",
        source="user",
    )


def test_safetensors_round_trip_with_sidecar(tmp_path: Path) -> None:
    net = build_architecture("lenet", num_classes=10, in_channels=1)
    spec = save_weights(net, _spec(), tmp_path / "tiny.safetensors")
    side = json.loads((tmp_path / "tiny.json").read_text())
    assert side["arch"] == "lenet" and side["mean"] == [0.13] and side["weights"]["sha256"] == spec.weights.sha256
    model = load_model(str(tmp_path / "tiny.safetensors"))
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(model(x), net.eval()((x - 0.13) / 0.31))
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave nothing behind


def test_truncated_safetensors_is_refused(tmp_path: Path) -> None:
    net = build_architecture("lenet", num_classes=10, in_channels=1)
    save_weights(net, _spec(), tmp_path / "tiny.safetensors")
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError, match=r"is not the file its sidecar tiny\.json describes"):
        load_model(str(path))  # the sidecar's sha256 catches it first
    sidecar = tmp_path / "tiny.json"
    side = json.loads(sidecar.read_text())
    side["weights"]["sha256"] = ""  # an older sidecar that records none
    sidecar.write_text(json.dumps(side))
    with pytest.raises(ModelError, match="truncated or corrupt"):
        load_model(str(path))  # without a recorded sha256, reading the file finds it


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_without_side_effect(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil(marker)}, f, protocol=2)
    with pytest.raises(ModelError, match=r"refused to load .*weights_only=True"):
        read_torch_checkpoint(path)
    assert not marker.exists()


def test_strict_loading_lists_missing_and_unexpected_keys() -> None:
    net = build_architecture("lenet", num_classes=10, in_channels=1)
    state = dict(net.state_dict())
    state.pop("features.0.weight")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ModelError, match=r"missing keys \['features.0.weight'\]; unexpected keys \['extra.weight'\]"):
        load_state_dict_strict(net, state)


def test_published_checkpoint_with_wrong_checksum_is_refused(tmp_path: Path, data_dir: Path) -> None:
    folder = tmp_path / "pretrained-akamaster-resnet-cifar10"
    folder.mkdir()
    src = data_dir / "pretrained-akamaster-resnet-cifar10" / "resnet20-12fca82f.th"
    blob = bytearray(src.read_bytes())
    blob[-10] ^= 0xFF
    (folder / src.name).write_bytes(bytes(blob))
    with pytest.raises(ChecksumError, match=r"resnet20-12fca82f.th: expected sha256 12fca82f.*, got "):
        load_model("resnet20-akamaster", data_dir=tmp_path, download=False)


def test_missing_published_checkpoint_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"put resnet32-d509ac18.th into .*pretrained-akamaster-resnet-cifar10"):
        load_model("resnet32-akamaster", data_dir=tmp_path, download=False)


def test_user_factory_from_file(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(
        "import torch\nfrom robustlab import ModelAdapter\n"
        "def make():\n"
        "    return ModelAdapter(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)), num_classes=4,\n"
        "                        input_shape=(3, 2, 2))\n"
        "def plain():\n    return torch.nn.Linear(2, 2)\n"
    )
    model = load_model(f"{tmp_path / 'mine.py'}:make")
    assert model(torch.rand(5, 3, 2, 2)).shape == (5, 4)
    with pytest.raises(ModelError, match=r"wrap it in robustlab\.ModelAdapter"):
        load_model(f"{tmp_path / 'mine.py'}:plain")
    with pytest.raises(ModelError, match="has no attribute 'nope'"):
        load_model(f"{tmp_path / 'mine.py'}:nope")
