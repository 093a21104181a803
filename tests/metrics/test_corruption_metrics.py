"""Corruption accuracy, CE, mCE and relative mCE on a tiny model; the ``robustlab corrupt`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from robustlab.cli import app
from robustlab.data import Dataset
from robustlab.errors import ConfigError
from robustlab.metrics import classwise_metrics, corruption_accuracy, corruption_errors, corruption_report
from robustlab.models import ModelAdapter


def _toy(seed: int, name: str) -> ModelAdapter:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    return ModelAdapter(net, num_classes=10, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), name=name).eval()


@pytest.fixture(scope="module")
def data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    n = 40
    x = (torch.rand(n, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset("toy", "test", x, y, tuple(f"c{k}" for k in range(10)), torch.arange(n))


def test_counts_match_the_predictions_and_batch_size_changes_nothing(data: Dataset) -> None:
    m = _toy(0, "a")
    r = corruption_accuracy(m, data, ["gaussian_noise", "contrast"], [1, 3], seed=5, batch_size=64)
    r7 = corruption_accuracy(m, data, ["gaussian_noise", "contrast"], [1, 3], seed=5, batch_size=7)
    for c in r.corruptions:
        for s in r.severities:
            assert torch.equal(r.predictions[c][s], r7.predictions[c][s])
            assert r.correct[c][s] == int((r.predictions[c][s] == data.y).sum())
            assert r.accuracy[c][s] == pytest.approx(r.correct[c][s] / 40)
    d = r.to_dict(per_sample=True)
    assert d["accuracy"]["contrast"]["3"] == r.accuracy["contrast"][3] and len(d["predictions"]["contrast"]["1"]) == 40
    # class-wise counts of a corruption add up to its overall count
    cw = classwise_metrics(r.labels, r.clean_predictions, r.predictions["contrast"][3], num_classes=10)
    assert sum(cw.robust_correct) == r.correct["contrast"][3] and sum(cw.clean_correct) == r.clean_correct


def test_ce_against_itself_is_one_and_formulas(data: Dataset) -> None:
    rep = corruption_report(_toy(0, "a"), data, ["gaussian_noise", "speckle_noise"], [2, 5], baseline=_toy(1, "b"))
    res, base, err = rep.result, rep.baseline, rep.errors
    assert base is not None and err.baseline == "b"
    for c in res.corruptions:
        ours = sum(1 - res.accuracy[c][s] for s in (2, 5))
        theirs = sum(1 - base.accuracy[c][s] for s in (2, 5))
        assert err.ce is not None and err.ce[c] == pytest.approx(ours / theirs)
        assert err.mean_error[c] == pytest.approx(ours / 2)
    assert err.benchmark == ("gaussian_noise",)  # speckle noise is an extra corruption: not in the mCE
    assert err.mce == pytest.approx(err.ce["gaussian_noise"])  # type: ignore[index]
    self_err = corruption_errors(res, res)
    assert self_err.mce == pytest.approx(1.0)
    assert rep.to_dict()["errors"]["baseline"] == "b"


def test_baseline_on_other_images_is_refused(data: Dataset) -> None:
    a = corruption_accuracy(_toy(0, "a"), data, ["contrast"], [1])
    b = corruption_accuracy(_toy(1, "b"), data.subset(20, 0), ["contrast"], [1])
    with pytest.raises(ConfigError, match=r"evaluated differently \(images\)"):
        corruption_errors(a, b)


@pytest.mark.parametrize(
    ("corruptions", "severities", "fragment"),
    [
        (["fogg"], [1], "Did you mean: fog"),
        (["fog", "fog"], [1], "listed twice"),
        (["fog"], [0], r"severities must be distinct integers in 1\.\.5"),
        (["fog"], [6], r"in 1\.\.5, got \[6\]"),
        ([], [1], "no corruptions"),
    ],
)
def test_bad_requests(data: Dataset, corruptions: list[str], severities: list[int], fragment: str) -> None:
    with pytest.raises(Exception, match=fragment):
        corruption_accuracy(_toy(0, "a"), data, corruptions, severities)


def test_corrupt_cli_json_and_errors(data_dir: Path) -> None:
    runner = CliRunner()
    args = [
        "corrupt",
        "--model",
        "resnet20-akamaster",
        "--n",
        "20",
        "-c",
        "contrast,gaussian_blur",
        "--severities",
        "2",
    ]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n"] == 20 and out["corruptions"] == ["contrast", "gaussian_blur"] and out["severities"] == [2]
    assert 0 <= out["accuracy"]["contrast"]["2"] <= 1 and out["errors"]["mce"] is None
    assert out["errors"]["mean_corruption_error"] == pytest.approx(
        (2 - out["accuracy"]["contrast"]["2"] - out["accuracy"]["gaussian_blur"]["2"]) / 2
    )
    bad = runner.invoke(app, [*args[:6], "gausian_noise", "--severities", "2"])
    assert bad.exit_code == 2 and "Did you mean: gaussian_noise" in " ".join(bad.stderr.split())
    bad = runner.invoke(app, [*args[:7], "--severities", "1,x"])
    assert bad.exit_code == 2 and "comma-separated integers" in bad.stderr


def test_predict_classes_converts_uint8_one_batch_at_a_time_through_the_one_conversion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import robustlab.metrics.accuracy as accuracy
    from robustlab.data import to_float_images

    model = _toy(0, "toy")
    pixels = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    seen: list[tuple[int, ...]] = []

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return to_float_images(x)

    monkeypatch.setattr(accuracy, "to_float_images", spy)
    pred = accuracy.predict_classes(model, pixels, batch_size=4)
    assert [s[0] for s in seen] == [4, 4, 2]  # never the whole set as float
    with torch.no_grad():
        assert torch.equal(pred, model(pixels.float() / 255).argmax(1))
    assert pred.device.type == "cpu" and pred.dtype == torch.int64
