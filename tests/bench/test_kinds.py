"""Job kinds as plugins: a new kind is one module; the store owns every record schema and its version."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robustlab.analysis import analyse_run
from robustlab.bench import Job, parse_spec, run_study
from robustlab.bench.spec import SpecSection
from robustlab.report import Section, write_report
from robustlab.store import connect, has_view, write_records
from robustlab.store.kinds import JobKind, get_kind, phases, register_kind, schema_of, unregister_kind
from robustlab.store.schema import RECORD_SCHEMAS, RecordSchema, SchemaError

from .conftest import spec_dict

ROOT = Path(__file__).parents[2]


class EchoSection(SpecSection):
    offset: int = 1


class Echo(JobKind):
    """A toy kind written as a plugin would be: the label plus an offset, per candidate image and model."""

    name = "echo"
    field = "echo"
    section = EchoSection | None
    default = None
    after = ("clean",)
    schema = RecordSchema("echo", 1, (("model", pa.string()), ("index", pa.int64()), ("shifted", pa.int64())))

    def plan(self, spec: Any, state: Any) -> list[Job]:
        params = {"dataset": spec.dataset.name, "split": spec.dataset.split, "offset": spec.echo.offset}
        return [Job("echo", m, params, tuple(state.evaluation_subset())) for m in spec.models]

    def run(self, job: Job, run: Path, ctx: Any) -> dict[str, Any]:
        _, y, idx = ctx.images(job)
        cols = {"index": idx.tolist(), "shifted": (y.cpu() + job.params["offset"]).tolist()}
        write_records(run, "echo", job.id, cols, {"model": job.model})
        return {}

    def analyse(self, con: Any, study: Any) -> Any:
        return con.execute("SELECT count(*), sum(shifted) FROM echo").fetchone() if has_view(con, "echo") else None

    def report(self, study: Any) -> list[Section]:
        rows, total = study["echo"]
        return [Section("echo", "Echo section", html=[f"{rows} echoed rows, total {total}"])]


@pytest.fixture
def echo_kind() -> Iterator[Echo]:
    kind = register_kind(Echo())
    try:
        yield kind  # type: ignore[misc]
    finally:
        unregister_kind("echo")


def test_a_new_kind_is_one_module_from_spec_to_report(echo_kind: Echo, tmp_path: Path, data_dir: Path) -> None:
    assert [k.name for k in phases()[1]] == [
        "attack",
        "audit",
        "autoattack",
        "clever",
        "corruption",
        "echo",
        "semantic",
    ]
    spec = parse_spec(spec_dict(n=4, attacks=[], corruptions=None, echo={"offset": 100}))
    summary = run_study(spec, tmp_path / "run", data_dir=data_dir)
    assert summary.executed == 4 + 4  # clean, echo
    con = connect(tmp_path / "run")
    rows, total = con.execute("SELECT count(*), sum(shifted) FROM echo").fetchone()
    labels = con.execute("SELECT sum(label) FROM clean").fetchone()[0]
    assert rows == 16 and total == labels + 16 * 100
    assert analyse_run(tmp_path / "run")["echo"] == (16, total)
    html = write_report(tmp_path / "run", tmp_path / "report", png=False).html.read_text()
    assert '<section id="echo"><h2>Echo section</h2>' in html and f"16 echoed rows, total {total}" in html
    with pytest.raises(Exception, match=r"echo\.offset"):
        parse_spec(spec_dict(echo={"offset": "many"}))


def test_a_spec_without_the_kind_does_not_run_it(echo_kind: Echo, tmp_path: Path, data_dir: Path) -> None:
    summary = run_study(parse_spec(spec_dict(n=2, attacks=[], corruptions=None)), tmp_path, data_dir=data_dir)
    assert summary.executed == 4 and not (tmp_path / "records" / "echo").exists()


def test_kind_dependencies_must_exist_and_not_cycle(echo_kind: Echo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Echo, "after", ("nothing",))
    with pytest.raises(ValueError, match="runs after unknown kind"):
        phases()
    monkeypatch.setattr(Echo, "after", ("transfer",))
    monkeypatch.setattr(type(get_kind("clean")), "after", ("echo",))
    with pytest.raises(ValueError, match="cycle"):
        phases()


def test_the_study_pipeline_names_no_optional_kind() -> None:
    """Only the kinds' own modules name them: the generic code iterates over the registry (the default study's
    spec, data rather than code, names the sections it uses)."""
    paths = [
        "src/robustlab/bench",
        ":!src/robustlab/bench/default.py",
        "src/robustlab/store",
        "src/robustlab/report",
        "src/robustlab/analysis/study.py",
        "src/robustlab/analysis/summary.py",
        "src/robustlab/analysis/__init__.py",
    ]
    found = subprocess.run(
        ["git", "grep", "-n", "-i", "-E", "clever|corruption", "--", *paths], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert found == ""


def test_one_schema_version_per_kind_and_nowhere_else() -> None:
    found = subprocess.run(
        ["git", "grep", "-n", "SCHEMA_VERSION", "--", "src"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert found == ""
    assert {k: schema_of(k).version for k in ("clean", "attack", "clever", "corruption", "transfer")} == {
        "clean": 2,
        "attack": 2,
        "clever": 2,
        "corruption": 1,
        "transfer": 1,
    }


def test_write_records_refuses_missing_and_unknown_columns(tmp_path: Path) -> None:
    cols = {"index": [1, 2], "label": [0, 1], "pred": [0, 0], "correct": [True, False], "margin": [0.5, 0.1]}
    const = {"model": "m", "family": "f", "source": "zoo"}
    with pytest.raises(SchemaError, match=r"missing margin; unknown colour"):
        write_records(
            tmp_path, "clean", "j1", {**{k: v for k, v in cols.items() if k != "margin"}, "colour": ["r", "g"]}, const
        )
    with pytest.raises(SchemaError, match="do not fit their schema"):
        write_records(tmp_path, "clean", "j1", {**cols, "label": ["a", "b"]}, const)
    assert not list(tmp_path.rglob("*"))  # nothing written, not even a temporary file or a folder
    path = write_records(tmp_path, "clean", "j1", cols, const)
    meta = pq.read_schema(path).metadata
    assert meta[b"robustlab.kind"] == b"clean" and meta[b"robustlab.schema_version"] == b"2"
    assert pq.read_table(path).column_names == ["job_id", *[n for n, _ in schema_of("clean").fields]]


def test_a_kinds_schema_version_is_part_of_its_job_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    job = Job("corruption", "m", {"a": 1}, (1, 2))
    other = Job("transfer", "m", {"a": 1}, (1, 2))
    before, other_before = job.id, other.id
    monkeypatch.setitem(RECORD_SCHEMAS._items, "corruption", dataclasses.replace(schema_of("corruption"), version=7))
    assert job.id != before and other.id == other_before
