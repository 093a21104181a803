"""Numbers a researcher can read: every rate of the study analysis with its 95 % Wilson interval and counts,
the Pareto frontier on the median distortion, class-size warnings and no made-up worst class."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from robustlab.analysis import analyse_run
from robustlab.analysis.classwise import classwise_analysis
from robustlab.report.figures import heatmap
from robustlab.stats import Rate
from robustlab.store import write_records
from robustlab.store.kinds import schema_of

CW = {
    "name": "cw",
    "norm": "l2",
    "eps": [None],
    "steps": [20],
    "targets": ["untargeted"],
    "minimal": False,
    "transfer": False,
    "params": {},
}


def _write(run: Path, kind: str, job: str, n: int, **values: Any) -> None:
    """Records of ``kind`` with every column: ``values`` (a list per sample, or one value for all), else a zero
    of the column's type."""
    zero = {"bool": False, "string": "", "int64": 0, "double": 0.0}
    arrow = schema_of(kind).arrow
    cols = {c: values.get(c, zero.get(str(arrow.field(c).type))) for c in schema_of(kind).names if c != "job_id"}
    write_records(run, kind, job, {c: v if isinstance(v, list) else [v] * n for c, v in cols.items()})


def _planted_run(run: Path, distortions: dict[str, list[float]], errors: dict[str, float]) -> None:
    """A run with clean and C&W-L2 records whose successful distortions are ``distortions`` per model."""
    spec = {
        "name": "planted",
        "models": list(distortions),
        "attacks": [CW],
        "seed": 0,
        "dataset": {"name": "cifar10", "split": "test"},
    }
    context = {
        "models": {
            m: {"family": f"fam-{m}", "source": "zoo", "test_accuracy": 1 - e, "test_images": 10_000}
            for m, e in errors.items()
        }
    }
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"spec": spec, "versions": {}, "context": context}))
    for m, d in distortions.items():
        n = len(d)
        _write(
            run, "clean", f"clean-{m}", n, model=m, family=f"fam-{m}", source="zoo", index=list(range(n)), correct=True
        )
        _write(
            run,
            "attack",
            f"cw-{m}",
            n,
            model=m,
            family=f"fam-{m}",
            key="cw-l2-s20-untargeted",
            attack="cw",
            norm="l2",
            target_mode="untargeted",
            index=list(range(n)),
            correct=True,
            won=True,
            success=True,
            robust=False,
            fixed_budget=False,
            l1=d,
            l2=d,
            linf=d,
            status="ok",
            params="{}",
            label=0,
            target=-1,
            clean_pred=0,
            adv_pred=1,
        )


def test_the_pareto_frontier_and_the_log_law_place_each_model_at_its_median_distortion(tmp_path: Path) -> None:
    """One outlier (a success found only at a huge distortion) drives model b's mean above everyone's, which
    would put b on the frontier; its median keeps it where its other inputs are, dominated by model a."""
    distortions = {
        "a": [0.05, 0.05, 0.05, 0.05, 0.05],
        "b": [0.01, 0.01, 0.01, 0.01, 3.0],  # median 0.01, mean 0.608
        "c": [0.02, 0.03, 0.04, 0.04, 0.04],  # median 0.04
    }
    errors = {"a": 0.2, "b": 0.3, "c": 0.1}
    _planted_run(tmp_path / "run", distortions, errors)
    (p,) = analyse_run(tmp_path / "run")["attack"].pareto
    assert {pt.model: pt.distortion for pt in p.points} == pytest.approx({"a": 0.05, "b": 0.01, "c": 0.04})
    assert [pt.model for pt in p.frontier] == ["c", "a"]  # b (0.3 error, 0.01) is dominated by a
    assert p.fit_all is not None and p.fit_all.b < 0  # distortion falls with error once b's outlier is ignored
    assert p.family_medians == pytest.approx({"fam-a": 0.05, "fam-b": 0.01, "fam-c": 0.04})


def test_every_rate_of_the_study_analysis_carries_its_interval_and_counts(
    four_model_run: tuple[Path, Any], tmp_path: Path
) -> None:
    from robustlab.report import write_report

    run, _ = four_model_run
    write_report(run, tmp_path, png=False)
    a = json.loads((tmp_path / "analysis.json").read_text())

    def check(d: dict[str, Any], name: str, k: int | None = None, n: int | None = None) -> None:
        rate = Rate(d[f"{name}_k"] if k is None else k, d[f"{name}_n"] if n is None else n)
        expected = rate.to_dict()
        assert (d[name], d[f"{name}_low"], d[f"{name}_high"]) == pytest.approx(
            (expected["value"], expected["low"], expected["high"])
        ), name
        assert (d[f"{name}_k"], d[f"{name}_n"]) == (rate.k, rate.n)

    rows = a["attack"]["rows"]
    for r in rows:
        check(r, "success_rate", r["n_success"], r["n_correct"])
        check(r, "robust_accuracy", r["n_robust"], r["n"])
        check(r, "clean_accuracy", r["n_correct"], r["n"])
        assert not re.search(r"-[0-9a-f]{6}\b", r["label"]), r["label"]  # readable: params, not their hash
    assert {r["label"] for r in rows if r["attack"] == "cw"} == {"cw-l2-s10-untargeted (search_steps=2)"}
    for r in a["clean"]["rows"]:
        check(r, "accuracy", r["correct"], r["n"])
    for r in a["corruption"]["accuracy"]:
        check(r, "accuracy")
    for t in a["transfer"]:
        for i, row in enumerate(t["rates"]):
            for j, v in enumerate(row):
                rate = Rate(t["hits"][i][j], t["counts"][i][j]).to_dict()
                assert (v, t["rates_low"][i][j], t["rates_high"][i][j]) == (rate["value"], rate["low"], rate["high"])
    assert any(t["counts"][0][1] > 0 for t in a["transfer"])
    with (tmp_path / "tables" / "attacks.csv").open() as f:
        header = next(csv.reader(f))
    for name in ("success_rate", "robust_accuracy", "clean_accuracy"):
        assert {name, f"{name}_low", f"{name}_high", f"{name}_k", f"{name}_n"} <= set(header)


def _classwise(labels: list[int], classes: tuple[str, ...] = ("cat", "dog", "ship")) -> Any:
    return classwise_analysis("pgd", [("m", labels, labels, [0] * len(labels))], classes)


def test_classwise_warns_when_a_class_has_fewer_than_20_images_and_only_then() -> None:
    enough = _classwise([0] * 20 + [1] * 25 + [2] * 30)
    assert enough.warning is None and enough.to_dict()["small_classes"] == {}
    small = _classwise([0] * 20 + [1] * 7 + [2] * 30)
    assert small.small_classes == {"dog": 7}
    assert small.warning is not None and "dog (7)" in small.warning and "fewer than 20" in small.warning
    d = small.to_dict()
    assert d["warning"] == small.warning
    assert d["models"]["m"]["rates"]["robust_accuracy"][1] == Rate(0, 7).to_dict()  # dog: all moved to class 0


def test_no_worst_class_when_nothing_was_measured() -> None:
    """A model with no image for any class has no worst class (not the last class, as index -1 would give)."""
    d = _classwise([]).to_dict()["models"]["m"]
    assert d["worst"] is None and d["worst_class"] is None
    assert _classwise([2, 2]).to_dict()["models"]["m"]["worst"]["class"] == "ship"


def test_an_empty_heatmap_cell_is_blank_and_its_hover_says_why() -> None:
    fig = heatmap(
        [[0.5, None]],
        ["x1", "x2"],
        ["y"],
        "t",
        "c",
        "x",
        "y",
        rates=[[Rate(1, 2), None]],
        missing="no input both models classify correctly",
    )
    trace = fig.data[0]
    assert [list(r) for r in trace.text] == [["0.50", ""]]
    hover = [list(r) for r in trace.hovertext]
    assert hover == [["0.500 [0.095, 0.905] (1/2)", "no input both models classify correctly"]]
    assert not any(isinstance(v, float) and math.isnan(v) for v in trace.text[0])
