"""The ``audit`` job kind: a spec entry → one audit job per model and budget → per-point records and per-rung, flag
and verdict constants in the store → the report's section; resumable; bad entries refused before anything runs.

The store is compared with :func:`robustlab.audit.audit` run in memory on the same points, seed and budgets (the
model is deterministic, so both runs are the same computation): what the kind writes and the analysis reads back
must be what the audit found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from typer.testing import CliRunner

from robustlab.analysis import analyse_run
from robustlab.audit import AuditConfig, audit
from robustlab.bench import parse_spec, run_study
from robustlab.data import load_dataset
from robustlab.errors import ConfigError
from robustlab.models import load_model
from robustlab.report import write_report

from . import planted as P

pytestmark = pytest.mark.usefixtures("one_thread")

PLANTED = Path(__file__).with_name("planted.py")
QUANTISED, TEMPLATE = f"{PLANTED}:make_quantised_template", f"{PLANTED}:make_template"
#: Small budgets: the test is about the kind; test_audit.py is about the audit's numbers.
BUDGETS = {"steps_short": 5, "steps_long": 10, "apgd_steps": 10, "restarts": 1, "square_queries": 30, "min_points": 1}
N = 40


def _spec(tmp_path: Path, entries: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    data = P.write_npz(tmp_path / "toy.npz", 60, seed=3)
    spec: dict[str, Any] = {
        "name": "audit study",
        "output": str(tmp_path / "out"),
        "models": [QUANTISED, TEMPLATE],
        "dataset": {"name": f"npz:{data}", "n": N, "seed": 0},
        "batch_size": 32,
        "corruptions": None,
        "audit": entries,
    }
    spec.update(over)
    return spec


def _entry(**over: Any) -> dict[str, Any]:
    return {"eps": 0.1, "surrogate": TEMPLATE, "params": BUDGETS, **over}


def _records(run: Path) -> dict[str, list[dict[str, Any]]]:
    """Every audit record, per model, in the order the job audited the points."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in sorted((run / "records" / "audit").glob("*.parquet")):
        for r in pq.read_table(f).to_pylist():
            out.setdefault(r["model"], []).append(r)
    return out


def test_an_audit_entry_writes_what_the_audit_found_and_the_report_shows_flags_resume_does_nothing(
    tmp_path: Path, data_dir: Path
) -> None:
    spec = parse_spec(_spec(tmp_path, [_entry()]))
    run = tmp_path / "run"
    summary = run_study(spec, run, data_dir=data_dir)
    assert summary.executed == 2 + 2  # clean, then one audit per model
    recs = _records(run)
    assert set(recs) == {QUANTISED, TEMPLATE} and all(len(r) == N for r in recs.values())

    rows = [r["index"] for r in recs[QUANTISED]]
    ds = load_dataset(spec.dataset.name, "test").take(torch.tensor(rows))
    for ref, mine in recs.items():
        direct = audit(
            load_model(ref, input_shape=(1, 8, 8)),
            ds.images(),
            ds.y,
            eps=0.1,
            surrogate=load_model(TEMPLATE, input_shape=(1, 8, 8)),
            surrogate_name=TEMPLATE,
            config=AuditConfig(**BUDGETS),
            seed=spec.seed,
            batch_size=32,
        )
        first = mine[0]
        # Per point: the rung that broke it first; the answers on the point and on its worst candidate.
        assert [r["broken_by"] for r in mine] == direct.broken_by
        assert [r["index"] for r in mine] == rows and [r["label"] for r in mine] == ds.y.tolist()
        robust = sum(r["adv_pred"] == r["label"] for r in mine)
        assert robust / N == pytest.approx(first["robust_accuracy"]) == pytest.approx(direct.honest["robust_accuracy"])
        assert sum(r["clean_pred"] == r["label"] for r in mine) / N == pytest.approx(direct.clean_accuracy)
        # Per rung, the flags and the verdict: the audit's own.
        assert first["rungs"] == [r.rung.label for r in direct.rungs]
        assert first["rung_attacked"] == [r.attacked for r in direct.rungs]
        assert first["rung_broken"] == [r.broken for r in direct.rungs]
        assert first["flags"] == direct.codes and first["verdict"] == direct.verdict
        assert first["flag_evidence"] == [f.evidence for f in direct.flags]
        assert first["honest_attack"] == direct.honest["attack"]
        assert first["first_pgd_robust_accuracy"] == direct.honest["first_pgd"]["value"]
        assert first["skipped"] == [s["attack"] for s in direct.skipped]

    a = analyse_run(run)["audit"]
    row = next(r for r in a.rows if r["model"] == QUANTISED)
    assert row["n"] == N and row["first_pgd"] == "pgd-5" and row["first_pgd_robust_accuracy"] == pytest.approx(1.0)
    assert row["robust_accuracy"] < 1.0  # BPDA or Square found what PGD could not
    assert {"zero-gradients", "non-differentiable-layers"} <= set(row["flags"]) and row["masking_suspected"]
    ladder = [r for r in a.rungs if r["model"] == QUANTISED]
    assert [r["attack"] for r in ladder] == recs[QUANTISED][0]["rungs"]
    assert ladder[-1]["step"] == len(ladder)

    html = write_report(run, tmp_path / "report", png=False).html.read_text()
    assert '<section id="audit"><h2>Gradient-masking audit</h2>' in html
    assert "<code>zero-gradients</code>" in html and "<code>non-differentiable-layers</code>" in html
    evidence = next(f["evidence"] for f in a.flags if f["model"] == QUANTISED and f["code"] == "zero-gradients")
    assert evidence.split(" ")[0] in html and "masking suspected" in html
    assert (tmp_path / "report" / "tables" / "audit_rungs.csv").is_file()

    files = {p: p.stat().st_mtime_ns for p in (run / "records" / "audit").glob("*.parquet")}
    again = run_study(spec, run, data_dir=data_dir)
    assert (again.executed, again.skipped) == (0, 4)  # every job already in the store
    assert {p: p.stat().st_mtime_ns for p in (run / "records" / "audit").glob("*.parquet")} == files


def test_budgets_and_points_are_part_of_the_job_and_each_entry_keeps_its_key(tmp_path: Path, data_dir: Path) -> None:
    small = {**BUDGETS, "square_queries": 10}
    spec = parse_spec(
        _spec(tmp_path, [_entry(n=10, surrogate="none"), _entry(n=10, surrogate=None, params=small)], models=[TEMPLATE])
    )
    summary = run_study(spec, tmp_path / "run", data_dir=data_dir)
    assert summary.executed == 1 + 2  # two audits at one budget, apart by their budgets
    recs = [r for f in (tmp_path / "run" / "records" / "audit").glob("*.parquet") for r in pq.read_table(f).to_pylist()]
    assert len(recs) == 20 and len({r["key"] for r in recs}) == 2
    assert {r["surrogate"] for r in recs} == {None}
    assert all({"transfer-pgd-10", "guided-pgd-10"} <= set(r["skipped"]) for r in recs)  # none named, none fits
    reasons = {r["surrogate_reason"] for r in recs}  # 'none', and the default finding no zoo model of 8x8 images
    assert reasons == {"no surrogate given", next(r for r in reasons if "no standard zoo model" in r)}
    labels = {r["label"] for r in analyse_run(tmp_path / "run")["audit"].rows}
    budgets = {f"no surrogate, {', '.join(f'{k}={v}' for k, v in sorted(BUDGETS.items()))}"}
    budgets.add(", ".join(f"{k}={v}" for k, v in sorted(small.items())))
    assert labels == {f"L∞ 0.1 (first 10 points, {b})" for b in budgets}


@pytest.mark.parametrize(
    ("entry", "fragments"),
    [
        ({"eps": 0}, ("audit.0.eps", "eps must be finite and > 0")),
        ({"eps": [0.1, -0.1]}, ("audit.0.eps", "-0.1")),
        ({"surrogate": "vgg8-w52"}, ("audit.0.surrogate", "Did you mean", "vgg8-w25")),
        ({"surrogate": "missing.py:make"}, ("audit.0.surrogate", "does not exist")),
        ({"params": {"step_long": 5}}, ("audit.0.params", "'step_long'", "steps_long")),
        ({"params": {"restarts": 0}}, ("audit.0.params", "restarts must be an integer >= 1")),
        ({"n": 41}, ("audit.0.n", "41 points", "has 40")),
    ],
)
def test_a_bad_entry_is_one_error_with_its_path_before_anything_is_written(
    tmp_path: Path, entry: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(_spec(tmp_path, [_entry(**entry)]))
    problems = [line for line in str(err.value).splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, str(err.value)
    assert all(f in problems[0] for f in fragments), problems[0]

    from robustlab.cli import app

    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(_spec(tmp_path, [_entry(**entry)])))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 2 and fragments[0] in result.stderr
    assert not (tmp_path / "out").exists()
