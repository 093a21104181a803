"""The imbalanced-data experiment: long-tailed counts and subsets, re-balancing, re-weighting, the arms' training
budgets, the seed aggregation, a tiny end-to-end run and ``robustlab imbalance`` (resume, table, --json, and every
bad input a one-line error with exit code 2 and no output folder)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from robustlab.cli import app
from robustlab.errors import ConfigError
from robustlab.train.imbalance import (
    ImbalanceConfig,
    aggregate_seeds,
    arm_training,
    balanced_holdout,
    balanced_indices,
    effective_number_weights,
    long_tailed,
    long_tailed_counts,
    run_arm,
    summarise_accuracies,
)

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


def _labels(counts: list[int]) -> torch.Tensor:
    """Labels with ``counts[c]`` rows of class ``c``, in a fixed shuffled order."""
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]


# -- long-tailed subsets ---------------------------------------------------------------------------------------


def test_long_tailed_counts_known_answers() -> None:
    """The note's numbers (semantic-attacks.md §5d): 1000, 599, ..., 10 at ratio 100, 1000, 774, ..., 100 at 10."""
    assert long_tailed_counts(10, 1000, 100) == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    assert sum(long_tailed_counts(10, 1000, 100)) == 2478
    at_10 = long_tailed_counts(10, 1000, 10)
    assert at_10[:2] == [1000, 774] and at_10[-1] == 100 and sum(at_10) == 4084
    assert long_tailed_counts(4, 30, 1) == [30, 30, 30, 30]
    with pytest.raises(ConfigError, match="ratio must be >= 1"):
        long_tailed_counts(10, 1000, 0.5)


def test_long_tailed_is_seeded_exact_and_ordered() -> None:
    y = _labels([40, 35, 50, 45])
    a, b, other = long_tailed(y, 4, seed=0, largest=30), long_tailed(y, 4, seed=0, largest=30), long_tailed(y, 4, 1, 30)
    assert torch.equal(a, b) and not torch.equal(a, other)
    assert torch.equal(a, torch.sort(a).values) and len(set(a.tolist())) == len(a)
    counts = torch.bincount(y[a], minlength=4).tolist()
    assert counts == long_tailed_counts(4, 30, 4) == [30, 18, 11, 7]  # class 0 the largest, decreasing
    assert torch.bincount(y[other], minlength=4).tolist() == counts
    with pytest.raises(ConfigError, match="class 0 has 40 images, fewer than the 41"):
        long_tailed(y, 4, 0, largest=41)


def test_balanced_indices_equal_counts_and_every_row() -> None:
    y = _labels([5, 3, 1, 4])
    rows = balanced_indices(y)
    assert torch.bincount(y[rows], minlength=4).tolist() == [5, 5, 5, 5]
    assert set(rows.tolist()) == set(range(len(y)))


def test_effective_number_weights_closed_form_mean_one_monotone() -> None:
    counts, beta = [1000, 100, 10], 0.999
    w = effective_number_weights(counts, beta)
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    assert w == pytest.approx([r / (sum(raw) / 3) for r in raw])
    assert sum(w) / len(w) == pytest.approx(1.0)
    assert w[0] < w[1] < w[2]  # fewer images, larger weight


def test_balanced_holdout_is_balanced_disjoint_and_seeded() -> None:
    y = _labels([10, 7, 9])
    train, test = balanced_holdout(y, 3, seed=0)
    assert torch.bincount(y[test], minlength=3).tolist() == [3, 3, 3]
    assert not set(train.tolist()) & set(test.tolist()) and len(train) + len(test) == len(y)
    assert torch.equal(test, balanced_holdout(y, 3, seed=0)[1])
    with pytest.raises(ConfigError, match="class 1 has 7 images"):
        balanced_holdout(y, 7)


# -- accuracies and their aggregation ---------------------------------------------------------------------------


def test_summarise_accuracies_by_hand() -> None:
    s = summarise_accuracies([0.9, 0.8, 0.5, 0.2], [100, 50, 20, 10])
    assert s["balanced"] == pytest.approx(0.6)
    assert sorted(s["minority_classes"]) == [2, 3] and s["minority"] == pytest.approx(0.35)
    assert s["worst"] == pytest.approx(0.2)


def _run(arm: str, seed: int, balanced: float, minority: float = 0.0, ratio: float = 100) -> dict[str, object]:
    return {"ratio": ratio, "arm": arm, "seed": seed, "balanced": balanced, "minority": minority, "worst": 0.0}


def test_aggregate_seeds_by_hand() -> None:
    runs = [
        *(_run("sia-oversample", s, b, m) for s, b, m in [(0, 0.5, 0.3), (1, 0.6, 0.3), (2, 0.7, 0.3)]),
        *(_run("random-oversample", s, b, m) for s, b, m in [(0, 0.40, 0.2), (1, 0.45, 0.3), (2, 0.50, 0.4)]),
        *(_run("resample", s, b) for s, b in [(0, 0.45), (1, 0.55), (2, 0.65)]),
        _run("erm", 0, 0.9),
        _run("erm", 0, 0.3, ratio=10),
    ]
    rows = {(r["ratio"], r["arm"]): r for r in aggregate_seeds(runs)}
    sia = rows[(100.0, "sia-oversample")]
    assert sia["seeds"] == [0, 1, 2] and sia["n"] == 3
    assert sia["balanced"]["mean"] == pytest.approx(0.6) and sia["balanced"]["sd"] == pytest.approx(0.1)
    # 0.6 - 0.45 = 0.15 > max(0.1, 0.05): beats; on minority 0.3 - 0.3 = 0 is not > max(0, 0.1)
    vs_random = sia["versus"]["random-oversample"]
    assert vs_random["balanced"] == pytest.approx({"difference": 0.15, "spread": 0.1, "beats": True})
    assert vs_random["minority"]["beats"] is False
    # 0.6 - 0.55 = 0.05, not more than the spread 0.1
    assert sia["versus"]["resample"]["balanced"]["beats"] is False
    assert rows[(100.0, "resample")]["versus"]["resample"]["balanced"]["beats"] is None  # itself
    assert rows[(100.0, "erm")]["balanced"]["sd"] is None  # one seed: no spread, no verdict
    assert rows[(100.0, "erm")]["versus"]["resample"]["balanced"]["beats"] is None
    missing = rows[(10.0, "erm")]["versus"]["random-oversample"]["balanced"]  # no baseline at ratio 10
    assert missing == {"difference": None, "spread": None, "beats": None}
    assert [r["arm"] for r in aggregate_seeds(runs)][:3] == ["sia-oversample", "random-oversample", "resample"]


# -- the arms ---------------------------------------------------------------------------------------------------


def test_arm_training_same_budget_and_oversampling_fractions() -> None:
    counts = long_tailed_counts(10, 1000, 100)
    y_lt = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    erm_rows, erm = arm_training(ImbalanceConfig("erm", epochs=20), y_lt, 10)
    erm_steps = erm.epochs * math.ceil(len(erm_rows) / erm.batch_size)
    for arm in ("resample", "random-oversample", "sia-oversample"):
        rows, cfg = arm_training(ImbalanceConfig(arm, epochs=20), y_lt, 10)
        assert len(rows) == 10_000 and cfg.epochs == 5  # round(20 · 2478 / 10000)
        steps = cfg.epochs * math.ceil(len(rows) / cfg.batch_size)
        assert abs(steps - erm_steps) <= math.ceil(len(rows) / cfg.batch_size) / 2  # within one epoch's rounding
        if arm != "resample":
            fractions = [float(f) for f in cfg.method_params["class_fraction"].split(",")]
            assert fractions == pytest.approx([1 - n / 1000 for n in counts], abs=1e-6)
    _, sia = arm_training(ImbalanceConfig("sia-oversample", sia_steps=4), y_lt, 10)
    _, rand = arm_training(ImbalanceConfig("random-oversample"), y_lt, 10)
    assert (sia.method, sia.method_params["steps"], rand.method_params["steps"]) == ("sia", 4, 0)
    _, aug = arm_training(ImbalanceConfig("augment"), y_lt, 10)
    assert aug.method_params["steps"] == 0 and aug.method_params.get("class_fraction") is None
    _, rw = arm_training(ImbalanceConfig("reweight"), y_lt, 10)
    weights = [float(w) for w in rw.method_params["weights"].split(",")]
    assert rw.method == "reweighted" and weights == pytest.approx(effective_number_weights(counts), abs=1e-6)
    with pytest.raises(ConfigError, match="did you mean sia-oversample"):
        ImbalanceConfig("sia-oversampel")


def _tiny(seed: int = 0, per_class: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """10 classes of 32x32 colour images whose brightness tells the class (uint8)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(10).repeat_interleave(per_class)
    x = (torch.rand(len(y), 3, 32, 32, generator=g) * 80 + y[:, None, None, None] * 17).to(torch.uint8)
    return x, y


@pytest.mark.slow  # a study or a training run end to end (.ci/run runs it after the default run)
def test_run_arm_end_to_end(tmp_path: Path) -> None:
    train, test = _tiny(0, 10), _tiny(1, 2)
    out = {}
    for arm in ("erm", "sia-oversample"):
        cfg = ImbalanceConfig(arm, ratio=4, epochs=1, batch_size=32, sia_steps=1, largest=8)
        out[arm] = run_arm(cfg, train, test, tmp_path / arm)
        assert (tmp_path / arm / "checkpoint.pt").is_file()
    erm, sia = out["erm"], out["sia-oversample"]
    assert erm["train_counts"] == sia["train_counts"] == long_tailed_counts(10, 8, 4)
    assert (erm["train_images_per_epoch"], sia["train_images_per_epoch"]) == (40, 80)
    assert (erm["method"], sia["method"]) == ("standard", "sia")
    for r in out.values():
        assert 0 <= r["worst"] <= r["minority"] <= 1 and 0 <= r["balanced"] <= 1 and len(r["per_class"]) == 10


# -- the command ------------------------------------------------------------------------------------------------


@pytest.fixture
def lt_npz(tmp_path: Path) -> str:
    """120 32x32 colour images, 10 classes of 12 (brightness tells the class), in one ``npz:`` file."""
    x, y = _tiny(0, 12)
    np.savez(tmp_path / "lt.npz", x=x.permute(0, 2, 3, 1).numpy(), y=y.numpy())
    return f"npz:{tmp_path / 'lt.npz'}"


def _args(dataset: str, out: Path, *extra: str) -> list[str]:
    base = ["imbalance", "--dataset", dataset, "--ratio", "4", "--largest", "8", "--epochs", "1"]
    return [*base, "--batch-size", "32", "--arms", "erm,random-oversample", "--seeds", "0,1", "--out", str(out), *extra]


def _error(result: object) -> str:
    """The one error line (exit code 2)."""
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    return lines[0]


@pytest.mark.slow  # trains several arms (.ci/run runs it after the default run)
def test_cli_runs_resumes_and_reports(lt_npz: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    first = runner.invoke(app, _args(lt_npz, out, "--json"))
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert len(doc["results"]) == 4 and doc["test_images"] == 20 and doc["holdout_per_class"] == 2
    assert {(r["arm"], r["seed"]) for r in doc["results"]} == {
        (a, s) for a in ("erm", "random-oversample") for s in (0, 1)
    }
    assert [(a["arm"], a["n"]) for a in doc["aggregates"]] == [("erm", 2), ("random-oversample", 2)]
    assert doc["aggregates"][0]["versus"]["random-oversample"]["balanced"]["beats"] in (True, False)
    for arm in ("erm", "random-oversample"):
        for seed in (0, 1):
            assert (out / "4" / arm / f"seed{seed}" / "result.json").is_file()
    done = [line for line in first.stderr.splitlines() if "balanced accuracy" in line]
    assert len(done) == 4 and done[0].startswith("imbalance 1/4: ratio 4 erm seed 0: balanced accuracy")
    # re-running reuses every finished run, and prints the table
    again = runner.invoke(app, _args(lt_npz, out))
    assert again.exit_code == 0, again.output
    reused = [line for line in again.stderr.splitlines() if "balanced accuracy" in line and line.endswith("(reused)")]
    assert "4 already done" in again.stderr and len(reused) == 4
    assert "imbalance ratio 4" in again.stdout and "beats random-oversample" in again.stdout
    assert "random-oversample" in again.stdout and " ± " in again.stdout
    # other settings in the same folder are refused before anything runs
    line = _error(runner.invoke(app, [*_args(lt_npz, out), "--epochs", "2"]))
    assert "holds a run with other settings (epochs (1 → 2))" in line


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--arms", "erm,sia-oversampel"], "unknown arm 'sia-oversampel' (did you mean sia-oversample"),
        (["--arms", " , "], "--arms is empty"),
        (["--seeds", ""], "--seeds is empty"),
        (["--seeds", "0,x"], "--seeds: 'x' is not an integer"),
        (["--seeds", "-1"], "seeds must be >= 0"),
        (["--ratio", "0.5"], "--ratio must be >= 1"),
        (["--ratio", "20"], "--ratio 20 with --largest 8 leaves the smallest class less than 1 image"),
        (["--largest", "11"], "at --ratio 4 --largest 11: class 0 has 10 images, fewer than the 11"),
        (["--largest", "0"], "--largest must be >= 1"),
        (["--holdout", "0"], "at least 1 image per class"),
        (["--holdout", "12"], "leaves it none to train on"),
        (["--model", "resnet9"], "unknown model 'resnet9'"),
        (["--pixel-eps", "-1"], "--pixel-eps: eps must be >= 0"),
        (["--lr", "0"], "lr must be positive"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_output(
    lt_npz: str, tmp_path: Path, extra: list[str], fragment: str
) -> None:
    line = _error(runner.invoke(app, [*_args(lt_npz, tmp_path / "runs"), *extra]))
    assert fragment in line
    assert not (tmp_path / "runs").exists()


def test_images_the_model_cannot_take_are_refused(toy: str, tmp_path: Path) -> None:
    line = _error(runner.invoke(app, _args(toy, tmp_path / "runs")))
    assert "model resnet8 takes images of shape (3, 32, 32) (C, H, W)" in line and "(3, 8, 8)" in line
    assert not (tmp_path / "runs").exists()
