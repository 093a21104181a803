"""The ``semantic`` job kind: a spec entry → one semantic attack per model → per-point records with ``attr_*``,
``undone_by`` and ``single_fooled_by`` → the diagnosis per model and class → the report's section with the necessity
histogram, the class-wise numbers and the grid of examples; resumable; bad entries refused before anything runs.

The store is compared with :func:`robustlab.attack` (``"semantic"``) run in memory on the same images, seed and
settings (the template model is deterministic, so both runs are the same computation): what the kind writes and the
analysis reads back must be what the attack found.
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
from robustlab.attacks import attack
from robustlab.bench import parse_spec, run_study
from robustlab.data import load_dataset
from robustlab.errors import ConfigError
from robustlab.metrics.semantic import diagnosis
from robustlab.models import load_model
from robustlab.report import write_report
from robustlab.transforms import ORDER

from .conftest import HERE, spec_dict

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPLATE = f"{HERE / 'tiny_models.py'}:make_a"
ATTRIBUTES = ["hue", "brightness", "rotation"]
#: Small budgets: the test is about the kind; the attack's numbers have tests of their own.
ENTRY: dict[str, Any] = {"attributes": ATTRIBUTES, "steps": 2, "restarts": 0, "params": {"grid": 3}, "examples": 2}
N = 12


def _spec(entries: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    spec = spec_dict(n=N, models=[TEMPLATE], attacks=[], corruptions=None, semantic=entries, batch_size=16)
    spec.update(name="semantic study", **over)
    return spec


def _records(run: Path) -> list[dict[str, Any]]:
    return [r for f in sorted((run / "records" / "semantic").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


@pytest.mark.slow  # a study or a training run end to end (.ci/run runs it after the default run)
def test_an_entry_writes_what_the_attack_found_the_report_shows_it_and_a_lost_job_is_rerun_alone(
    tmp_path: Path, data_dir: Path
) -> None:
    spec = parse_spec(_spec([{**ENTRY, "pixel_eps": ["0", "1/255"]}]))
    run = tmp_path / "run"
    summary = run_study(spec, run, data_dir=data_dir)
    assert summary.executed == 1 + 2  # clean, then one job per pixel budget
    recs = _records(run)
    assert len(recs) == 2 * N and sorted({r["pixel_eps"] for r in recs}) == pytest.approx([0.0, 1 / 255])
    varied = {f"attr_{a}" for a in ATTRIBUTES}
    for r in recs:  # an attribute not varied has no value; the varied ones stay in their ranges
        assert all((r[f"attr_{a}"] is None) == (f"attr_{a}" not in varied) for a in ORDER)
        assert -10 <= r["attr_rotation"] <= 10 and {"undone_by", "single_fooled_by", "pixel_linf"} <= set(r)
        assert all(r[f"shapley_{a}"] is None for a in (*ORDER, "pixel"))  # not asked for
        assert r["attributes"] == ["rotation", "hue", "brightness"] and r["preset"] == "mild"

    mine = [r for r in recs if r["pixel_eps"] > 0]
    ds = load_dataset("cifar10", "test").take(torch.tensor([r["index"] for r in mine]))
    direct = attack(
        load_model(TEMPLATE, input_shape=(3, 32, 32)), ds.images(), ds.y, "semantic", eps=1 / 255, seed=spec.seed,
        batch_size=16, attributes=ATTRIBUTES, steps=2, restarts=0, grid=3, index=ds.indices,
    )  # fmt: skip
    cols = direct.to_columns()
    for name in ("undone_by", "single_fooled_by", "robust", "won", "attr_hue", "attr_rotation", "pixel_linf"):
        assert [r[name] for r in mine] == cols[name], name
    assert any(r["won"] for r in mine)

    a = analyse_run(run)["semantic"]
    row = next(r for r in a.rows if r["pixel_eps"] > 0)
    assert row["label"] == "mild, pixel L∞ 1/255 (attributes rotation, hue, brightness, grid=3, restarts=0, steps=2)"
    assert (row["n"], row["n_success"], row["success_rate_n"]) == (N, sum(cols["won"]), sum(cols["correct"]))
    assert row["robust_accuracy"] == pytest.approx(direct.summary()["robust_accuracy"])
    expected = diagnosis(cols, ["rotation", "hue", "brightness"], ["necessity", "sensitivity"], ds.classes)
    necessity = {h["attribute"]: h for h in a.histogram if h["key"] == row["key"] and h["method"] == "necessity"}
    assert {k: (h["count"], h["denominator"]) for k, h in necessity.items()} == {
        k: (expected["histogram"]["count"][k], expected["histogram"]["denominator"][k]) for k in necessity
    }
    per_class = [c for c in a.classes if c["key"] == row["key"]]
    assert {c["class"] for c in per_class} == set(expected["per_class"]) <= set(ds.classes)  # the class names
    assert sum(c["n_success"] for c in per_class) == row["n_success"]
    assert row["grid"] is not None and Path(row["grid"]).read_bytes().startswith(b"\x89PNG")
    assert a.classwise and a.classwise[0].title.startswith("semantic attack mild")

    html = write_report(run, tmp_path / "report", png=False).html.read_text()
    assert '<section id="semantic"><h2>Semantic attack</h2>' in html
    assert "necessity (of successes)" in html and "fooled alone (of clean-correct)" in html
    assert "Necessity histogram: mild, pixel L" in html and "per class</h4>" in html
    assert 'src="data:image/png;base64,' in html and (tmp_path / "report" / "tables" / "semantic_classes.csv").is_file()

    files = sorted((run / "records" / "semantic").glob("*.parquet"))
    kept = pq.read_table(files[1])
    files[0].unlink()  # as if the run had been killed before this job finished
    again = run_study(spec, run, data_dir=data_dir)
    assert (again.executed, again.skipped) == (1, 2)  # the lost job alone
    assert pq.read_table(files[1]).equals(kept) and files[0].is_file()


def test_each_configuration_has_its_own_key_and_label_and_canonical_settings(data_dir: Path) -> None:
    from robustlab.kinds.semantic import semantic_configs

    entries = [
        {"preset": ["mild", "caa"], "pixel_eps": [0, "2/255"], "n": 6},
        {"attributes": ["hue"], "ranges": {"hue": "-pi/4:pi/4"}, "shapley": True, "seed": 3},
    ]
    configs = semantic_configs(parse_spec(_spec(entries)))
    assert len(configs) == 5 == len({c["key"] for c in configs})
    caa = next(c for c in configs if c["preset"] == "caa" and c["pixel_eps"] > 0)
    assert caa["attributes"] == ["rotation", "hue_hsv", "saturation_hsv", "contrast_mult", "brightness"]
    assert caa["padding"] == "zeros" and caa["config"]["steps"] == 20 and caa["seed"] == 0  # the defaults, spelled out
    hue = configs[-1]
    assert hue["ranges"] == {"hue": pytest.approx([-0.7853981634, 0.7853981634])} and hue["seed"] == 3
    from robustlab.kinds.semantic import config_label

    assert config_label(hue) == "mild, pixel L∞ 1/255 (attributes hue, hue -0.785:0.785, Shapley)"
    # the sweep alone is an entry like any other
    alone = {"preset": "caa", "steps": 0, "restarts": 0, "params": {"grid": 4}}
    (sweep,) = semantic_configs(parse_spec(_spec([alone])))
    assert sweep["config"]["steps"] == 0 and sweep["config"]["grid"] == 4 and "steps=0" in config_label(sweep)


@pytest.mark.parametrize(
    ("entry", "over", "fragments"),
    [
        ({"attributes": ["hue", "rotaton"]}, {}, ("semantic.0", "unknown attribute 'rotaton'", "rotation")),
        ({"attributes": ["saturation"], "ranges": {"saturation": "-0.5:1"}}, {}, ("semantic.0", "leaves its domain")),
        ({"attributes": ["blur"], "ranges": {"blur": [0, 1]}}, {}, ("semantic.0", "blur", "leaves its domain")),
        ({"ranges": {"hue": "0.5"}}, {}, ("semantic.0.ranges", "LOW:HIGH")),
        ({"pixel_eps": "-1/255"}, {}, ("semantic.0.pixel_eps", "must be >= 0")),
        ({"preset": "mld"}, {}, ("semantic.0", "unknown semantic preset 'mld'", "mild")),
        ({"params": {"grd": 3}}, {}, ("semantic.0", "unknown semantic attack setting 'grd'", "grid")),
        ({"params": {"steps": 3}}, {}, ("semantic.0.params", "steps belong(s) at the entry's top level")),
        ({"params": {"loss": "kl"}}, {}, ("semantic.0", "loss must be 'margin' or 'ce'")),
        ({"steps": -1}, {}, ("semantic.0.steps",)),
        ({"steps": 0, "params": {"grid": 0}}, {}, ("semantic.0", "steps=0 is the single-attribute sweep alone")),
        ({"n": N + 1}, {}, ("semantic.0.n", f"{N + 1} points", f"has {N}")),
        (
            {"attributes": None},  # the preset's, with hue and saturation
            {"dataset": {"name": "mnist", "n": N}},
            ("semantic.0.attributes", "hue, saturation need RGB", "mnist has 1 channel"),
        ),
        ({}, {"dataset": {"name": "mnist", "n": N}}, ("semantic.0.attributes", "hue needs RGB")),
    ],
)
def test_a_bad_entry_is_one_error_with_its_path_before_anything_is_written(
    tmp_path: Path, entry: dict[str, Any], over: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    raw = _spec([{**ENTRY, **entry}], output=str(tmp_path / "out"), **over)
    with pytest.raises(ConfigError) as err:
        parse_spec(raw)
    problems = [line for line in str(err.value).splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, str(err.value)
    assert all(f in problems[0] for f in fragments), problems[0]

    from robustlab.cli import app

    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 2 and fragments[0] in result.stderr
    assert not (tmp_path / "out").exists()
