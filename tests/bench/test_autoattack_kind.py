"""The ``autoattack`` job kind: spec grid → jobs → records with ``broken_by`` → cascade per model → report.

The analysis reads the cascade back from the store (DuckDB over the records); the tests compare it with the
cascade :func:`robustlab.attack` reports for the same images and seed, computed in memory. Small cascades of
registered attacks stand in for AutoAttack's where a test is about the kind, not the attacks; one test runs the
real standard cascade with few steps and queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from robustlab.analysis import analyse_run
from robustlab.attacks import ATTACKS, attack
from robustlab.attacks import _autoattack as aa
from robustlab.bench import parse_spec, run_study
from robustlab.data import load_dataset
from robustlab.errors import ConfigError
from robustlab.models import load_model
from robustlab.report import write_report
from robustlab.stats import Rate

from .conftest import HERE, spec_dict

MODELS = HERE / "autoattack_models.py"
TEMPLATE, DROPOUT, NAN = (f"{MODELS}:make_{m}" for m in ("template", "dropout", "nan"))
#: A two-stage stand-in for the standard cascade (both stages take ``steps``).
SMALL = [("ifgsm", "ifgsm", {}), ("pgd", "pgd", {"restarts": 1})]


@pytest.fixture
def small_cascade(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(aa.VERSIONS, "standard", {"linf": SMALL, "l2": SMALL})


def _spec(models: list[str], section: list[dict[str, Any]], n: int = 8, **over: Any) -> dict[str, Any]:
    spec = spec_dict(n=n, models=models, attacks=[], corruptions=None, autoattack=section, batch_size=8)
    spec.update(name="autoattack study", **over)
    return spec


def _records(run: Path) -> list[dict[str, Any]]:
    """Every autoattack record, each job's rows in the order the job attacked them."""
    files = sorted((run / "records" / "autoattack").glob("*.parquet"))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    return sorted(rows, key=lambda r: (r["model"], r["key"]))  # stable: keeps each job's order


def _direct(model_ref: str, rows: list[int], **kwargs: Any) -> Any:
    """The same attack run in memory on the same dataset rows (the reference the store is compared with)."""
    ds = load_dataset("cifar10", "test").take(torch.tensor(rows))
    model = load_model(model_ref, input_shape=(3, 32, 32))
    return attack(model, ds.images(), ds.y, "autoattack", index=ds.indices, batch_size=8, **kwargs)


@pytest.mark.usefixtures("small_cascade")
def test_grid_jobs_records_and_cascade_agree_with_the_attack_and_a_missing_seed_records_the_default(
    tmp_path: Path, data_dir: Path
) -> None:
    spec = parse_spec(_spec([TEMPLATE], [{"norm": "linf", "eps": ["2/255", "8/255"], "steps": 3}]))
    assert "seed" not in _spec([TEMPLATE], [])  # the spec names no seed: the study's default is used
    summary = run_study(spec, tmp_path / "run", data_dir=data_dir)
    assert summary.executed == 1 + 2  # clean, then one job per eps
    recs = _records(tmp_path / "run")
    assert {r["seed"] for r in recs} == {spec.seed} == {0}
    assert {r["version"] for r in recs} == {"standard"} and {tuple(r["stages"]) for r in recs} == {("ifgsm", "pgd")}

    a = analyse_run(tmp_path / "run")["autoattack"]
    assert [r["label"] for r in a.rows] == [
        "AutoAttack standard, L∞ 2/255 (steps=3)",
        "AutoAttack standard, L∞ 8/255 (steps=3)",
    ]
    for row in a.rows:
        mine = [r for r in recs if r["key"] == row["key"]]
        direct = _direct(TEMPLATE, [r["index"] for r in mine], norm="linf", eps=row["eps_budget"], steps=3, seed=0)
        s = direct.summary()
        # Per point: the stage that broke it and the verdicts are those of the in-memory run.
        assert [r["broken_by"] for r in mine] == direct.columns["broken_by"]
        assert [r["robust"] for r in mine] == direct.robust.tolist()
        # Per stage: the cascade read back from the store equals the attack's own table.
        stages = a.stages(row["model"], row["key"])
        assert [(c["attack"], c["attacked"], c["broken"]) for c in stages] == [
            (c["attack"], c["attacked"], c["broken"]) for c in s["cascade"]
        ]
        for mine_stage, theirs in zip(stages, s["cascade"], strict=True):
            assert mine_stage["robust_accuracy_after"] == pytest.approx(theirs["robust_accuracy_after"])
        # Robust accuracy with its Wilson interval, counted from the records.
        k = sum(r["robust"] for r in mine)
        low, high = Rate(k, len(mine)).interval
        assert row["robust_accuracy"] == pytest.approx(s["robust_accuracy"]) == pytest.approx(k / len(mine))
        assert (row["robust_accuracy_low"], row["robust_accuracy_high"]) == pytest.approx((low, high))
        assert stages[-1]["robust_accuracy_after"] == pytest.approx(row["robust_accuracy"])  # deterministic model
    assert a.rows[0]["robust_accuracy"] >= a.rows[1]["robust_accuracy"]  # a larger budget never helps the model

    report = write_report(tmp_path / "run", tmp_path / "report", png=False)
    html = report.html.read_text()
    assert '<section id="autoattack"><h2>AutoAttack</h2>' in html
    assert "after ifgsm" in html and "after pgd" in html and "Robust accuracy after each stage" in html
    assert (tmp_path / "report" / "tables" / "autoattack_cascade.csv").is_file()


@pytest.mark.usefixtures("small_cascade")
def test_jobs_resume_one_by_one_and_a_new_seed_makes_new_jobs(tmp_path: Path, data_dir: Path) -> None:
    spec = parse_spec(_spec([TEMPLATE], [{"eps": ["2/255", "8/255"], "steps": 2}], n=4))
    run = tmp_path / "run"
    assert run_study(spec, run, data_dir=data_dir).executed == 3
    files = sorted((run / "records" / "autoattack").glob("*.parquet"))
    assert len(files) == 2
    kept = pq.read_table(files[1])
    files[0].unlink()  # as if the run had been killed before this job finished
    again = run_study(spec, run, data_dir=data_dir)
    assert (again.executed, again.skipped) == (1, 2)  # the lost job; the clean job and the other kept
    assert pq.read_table(files[1]).equals(kept)  # the finished job was not run again
    seeded = parse_spec(_spec([TEMPLATE], [{"eps": ["2/255", "8/255"], "steps": 2}], n=4, seed=7))
    other = run_study(seeded, tmp_path / "seeded", data_dir=data_dir)
    assert other.executed == 3
    assert {r["seed"] for r in _records(tmp_path / "seeded")} == {7}
    ids = {p.name for p in (tmp_path / "seeded" / "records" / "autoattack").glob("*.parquet")}
    assert not ids & {p.name for p in files}  # the seed is part of the job id


def test_each_configuration_of_the_grid_has_its_own_key_and_label() -> None:
    from robustlab.kinds.autoattack import autoattack_configs

    section = [{"norm": ["linf", "l2"], "eps": ["8/255", 0.031372], "version": ["standard", "plus"]}]
    configs = autoattack_configs(parse_spec(_spec([TEMPLATE], section, seed=3)))
    assert len(configs) == 8 == len({c["key"] for c in configs})  # budgets 2e-7 apart are kept apart
    assert {c["seed"] for c in configs} == {3}
    assert configs[0]["key"] == "autoattack-standard-linf-eps0.03137254902"


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"version": "standrd"}, "Did you mean 'standard'"),
        ({"version": "plus", "norm": "l1", "eps": 12}, ("'plus'", "linf, l2", "'l1'")),
        ({"version": "rand", "norm": "l1", "eps": 12}, ("'rand'", "linf, l2", "'l1'")),
        ({"norm": "linff"}, "Did you mean: linf"),
        ({"eps": "8/0"}, "cannot read eps"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"eval_draws": 30}, "eval_draws applies to version 'rand' only"),
        ({"version": "rand", "eval_draws": 5}, "eval_draws must be at least 20"),
        ({"versions": "rand"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_sections_fail_when_the_spec_is_parsed_with_their_path(
    section: dict[str, Any], fragment: str | tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(_spec([TEMPLATE], [{"eps": "8/255", **section}]))
    parts = (fragment,) if isinstance(fragment, str) else fragment  # the version, the norms it covers, the norm
    assert all(p in str(err.value) for p in parts) and "autoattack.0" in str(err.value)


def test_a_bad_section_writes_nothing_from_the_command_line(tmp_path: Path, data_dir: Path) -> None:
    import yaml

    from robustlab.cli import app

    spec = _spec([TEMPLATE], [{"eps": "8/255", "version": "plus", "norm": "l1"}], output=str(tmp_path / "out"))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 2 and "'plus'" in result.stderr and "linf, l2" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("small_cascade")
def test_a_randomised_model_under_standard_is_flagged_and_the_report_says_to_use_rand(
    tmp_path: Path, data_dir: Path
) -> None:
    run_study(parse_spec(_spec([TEMPLATE, DROPOUT], [{"eps": "4/255", "steps": 2}])), tmp_path, data_dir=data_dir)
    a = analyse_run(tmp_path)["autoattack"]
    flags = {r["model"]: r["flags"] for r in a.rows}
    assert "stochastic-model" in flags[DROPOUT] and "stochastic-model" not in flags[TEMPLATE]
    detail = next(f for f in a.flags if f["model"] == DROPOUT and f["code"] == "stochastic-model")
    assert "version='rand'" in detail["message"]
    html = write_report(tmp_path, tmp_path / "report", png=False).html.read_text()
    assert "<code>stochastic-model</code>" in html and "evaluate it with version=&#39;rand&#39;" in html


@pytest.mark.usefixtures("small_cascade")
def test_nan_logits_are_numerical_errors_never_robust(tmp_path: Path, data_dir: Path) -> None:
    run_study(parse_spec(_spec([NAN], [{"eps": "2/255", "steps": 2}], n=16)), tmp_path, data_dir=data_dir)
    recs = _records(tmp_path)
    ds = load_dataset("cifar10", "test").take(torch.tensor([r["index"] for r in recs]))
    bright = (ds.images().flatten(1).mean(1) > 0.5).tolist()  # the rows the model answers with NaN
    assert 0 < sum(bright) < len(recs)
    assert [r["status"] == "numerical_error" for r in recs] == bright
    assert not any(r["robust"] or r["correct"] or r["broken_by"] for r, b in zip(recs, bright, strict=True) if b)
    row = analyse_run(tmp_path)["autoattack"].rows[0]
    assert row["n_numerical_error"] == sum(bright)
    assert row["robust_accuracy_k"] == sum(r["robust"] for r in recs) <= len(recs) - sum(bright)
    html = write_report(tmp_path, tmp_path / "report", png=False).html.read_text()
    assert f"autoattack_models.py:make_nan: {sum(bright)} point(s) gave non-finite logits" in html


def test_the_real_standard_cascade_runs_as_jobs(tmp_path: Path, data_dir: Path) -> None:
    section = [{"eps": "2/255", "steps": 2, "queries": 20}]
    run_study(parse_spec(_spec([TEMPLATE], section, n=6)), tmp_path, data_dir=data_dir)
    a = analyse_run(tmp_path)["autoattack"]
    row = a.rows[0]
    assert row["stage_names"] == [label for label, _, _ in aa.VERSIONS["standard"]["linf"]]
    stages = a.stages(TEMPLATE, row["key"])
    after = [c["robust_accuracy_after"] for c in stages]
    assert after == sorted(after, reverse=True) and after[-1] == pytest.approx(row["robust_accuracy"])
    recs = _records(tmp_path)
    direct = _direct(TEMPLATE, [r["index"] for r in recs], norm="linf", eps=2 / 255, steps=2, queries=20, seed=0)
    assert [r["broken_by"] for r in recs] == direct.columns["broken_by"]
    assert [(c["attack"], c["broken"]) for c in stages] == [
        (c["attack"], c["broken"]) for c in direct.summary()["cascade"]
    ]


@pytest.mark.skipif(
    "eot_iter" not in ATTACKS.get("apgd").param_names(),
    reason="version rand needs APGD's eot_iter setting, not implemented yet",
)
def test_the_real_rand_cascade_records_the_expected_robust_accuracy(tmp_path: Path, data_dir: Path) -> None:
    section = [{"eps": "2/255", "steps": 1, "version": "rand", "eval_draws": 20}]
    run_study(parse_spec(_spec([DROPOUT], section, n=6)), tmp_path, data_dir=data_dir)
    rand = analyse_run(tmp_path)["autoattack"].rows[0]
    assert rand["stage_names"] == ["apgd-ce", "apgd-dlr"] and "stochastic-model" not in rand["flags"]
    assert rand["eval_draws"] == 20
    assert rand["expected_robust_accuracy_low"] <= rand["expected_robust_accuracy"]
    assert rand["expected_robust_accuracy"] <= rand["expected_robust_accuracy_high"]
    html = write_report(tmp_path, tmp_path / "report", png=False).html.read_text()
    assert "expected robust accuracy" in html and "(20 draws)" in html


def test_rand_records_the_expected_robust_accuracy_next_to_the_single_draw_one(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kind's handling of version rand, on a small stand-in cascade (the real one is tested above)."""
    monkeypatch.setitem(aa.VERSIONS, "rand", {"linf": SMALL})
    section = [{"eps": "2/255", "steps": 2, "version": "rand", "eval_draws": 25}]
    run_study(parse_spec(_spec([DROPOUT], section)), tmp_path, data_dir=data_dir)
    recs = _records(tmp_path)
    assert {r["eval_draws"] for r in recs} == {25} and {r["version"] for r in recs} == {"rand"}
    row = analyse_run(tmp_path)["autoattack"].rows[0]
    assert "stochastic-model" not in row["flags"]  # rand expects a randomised model
    low, value, high = (row[f"expected_robust_accuracy{s}"] for s in ("_low", "", "_high"))
    assert 0 <= low <= value <= high <= 1
    assert row["label"] == "AutoAttack rand, L∞ 2/255 (steps=2, eval_draws=25)"
    html = write_report(tmp_path, tmp_path / "report", png=False).html.read_text()
    assert "<th>expected robust accuracy</th>" in html and "(25 draws)" in html
    assert "the reference's single-draw figure" in html
