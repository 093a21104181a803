"""The study runner: job identity, resumption after SIGKILL, refused spec changes, transfer matrices, report."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from robustlab import ConfigError
from robustlab.analysis import analyse_run
from robustlab.bench import ProcessExecutor, parse_spec, resolve_output, run_study
from robustlab.bench.plan import Job
from robustlab.cli import app
from robustlab.store import connect

from .conftest import spec_dict


def _records(run: Path) -> dict[str, dict[str, Any]]:
    """Every job's records, by relative path (temporary files excluded by construction)."""
    return {str(p.relative_to(run)): pq.read_table(p).to_pydict() for p in sorted(run.glob("records/*/*.parquet"))}


def test_job_ids_are_content_hashes() -> None:
    a = Job("attack", "m", {"eps": 0.1, "steps": 3}, (1, 2, 3))
    assert a.id == Job("attack", "m", {"steps": 3, "eps": 0.1}, (1, 2, 3)).id
    assert a.id != Job("attack", "m", {"eps": 0.2, "steps": 3}, (1, 2, 3)).id
    assert a.id != Job("attack", "m", {"eps": 0.1, "steps": 3}, (1, 2, 4)).id
    assert len(a.id) == 16


def test_four_model_study_transfer_diagonal_is_white_box_success(
    four_model_run: tuple[Path, Any], data_dir: Path
) -> None:
    run, summary = four_model_run
    assert summary.executed == summary.jobs == 4 + 4 * 5 + 4 + 4  # clean, attacks, corruptions, transfer
    a = analyse_run(run)
    assert len(a["transfer"]) == 3  # fgsm, ifgsm untargeted, ifgsm random-target
    for t in a["transfer"]:
        assert len(t.models) == 4 and all(len(row) == 4 for row in t.rates)
        for i, model in enumerate(t.models):
            row = next(r for r in a["attack"].rows if r["model"] == model and r["key"] == t.key)
            assert t.rates[i][i] == pytest.approx(row["success_rate"]), (t.key, model)
    # no duplicate rows: one record per (job, image)
    con = connect(run)
    assert (
        con.execute("SELECT count(*) FROM attack").fetchone()[0]
        == con.execute("SELECT count(DISTINCT (job_id, index)) FROM attack").fetchone()[0]
    )
    # re-running skips everything
    again = run_study(parse_spec(spec_dict()), run, data_dir=data_dir)
    assert again.executed == 0 and again.skipped == again.jobs


def test_classwise_and_corruptions_from_the_store(four_model_run: tuple[Path, Any]) -> None:
    run, _ = four_model_run
    a = analyse_run(run)
    assert [c.perturbation for c in a.classwise][-1] == "corruptions"
    con = connect(run)
    for c in a.classwise:
        for model, r in c.results.items():
            # class-wise counts add up to the overall counts of the stored records
            table = "corruption" if c.perturbation == "corruptions" else "attack"
            where = "" if table == "corruption" else f" AND key = '{c.perturbation}'"
            pred = "pred" if table == "corruption" else "adv_pred"
            n, clean_ok, robust_ok = con.execute(
                f"SELECT count(*), sum((clean_pred = label)::INT), sum(({pred} = label)::INT) "
                f"FROM {table} WHERE model = ?{where}",
                [model],
            ).fetchone()
            assert sum(r.support) == r.n == n
            assert sum(r.clean_correct) == clean_ok and sum(r.robust_correct) == robust_ok
            assert sum(map(sum, r.confusion)) == n
    assert set(a["corruption"].accuracy) == set(spec_dict()["models"])
    acc = next(iter(a["corruption"].accuracy.values()))
    assert acc.n == 12 and acc.corruptions == ("contrast", "gaussian_noise") and acc.severities == (1, 3)


@pytest.mark.slow  # ≈ 18 s idle: a real subprocess killed mid-study; .ci/run runs it after the default run
def test_sigkill_then_resume_gives_identical_records(tmp_path: Path, data_dir: Path) -> None:
    study_spec = spec_dict(
        n=12,
        attacks=[
            {"name": "fgsm", "eps": "8/255", "transfer": True},
            {"name": "ifgsm", "steps": 2, "minimal": True},
            {"name": "ifgsm", "eps": "2/255", "steps": 2, "targets": ["random"]},
        ],
    )
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(study_spec))
    ref = tmp_path / "reference"
    run_study(parse_spec(study_spec), ref, data_dir=data_dir)

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "robustlab", "run", str(spec_file), "--out", str(run), "--no-report", "--json"]
    env = {**os.environ, "ROBUSTLAB_DATA": str(data_dir)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list(run.glob("records/attack/*.parquet"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _records(run)
    assert 0 < len(partial) < len(_records(ref)), "the kill should land in the middle of the run"
    (run / "records" / "attack" / ".leftover.parquet.abc.tmp").write_bytes(b"half a file")  # a killed write

    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    got, want = _records(run), _records(ref)
    assert sorted(got) == sorted(want)
    diff = [(f, col) for f in want for col in want[f] if got[f].get(col) != want[f][col]]
    assert not diff, diff


def test_resume_with_a_changed_spec_is_refused(study_spec: dict, tmp_path: Path, data_dir: Path) -> None:
    small = spec_dict(n=4, attacks=[{"name": "fgsm"}])
    run_study(parse_spec(small), tmp_path, data_dir=data_dir)
    before = (tmp_path / "manifest.json").read_text()
    changed = spec_dict(n=5, attacks=[{"name": "fgsm", "eps": 0.1}])
    with pytest.raises(ConfigError, match=r"(?s)different spec.*attacks\.0\.eps\.0: None → 0\.1.*dataset\.n: 4 → 5"):
        run_study(parse_spec(changed), tmp_path, data_dir=data_dir)
    assert (tmp_path / "manifest.json").read_text() == before


@pytest.mark.slow  # ≈ 35 s; .ci/run runs it right after the default run
def test_process_pool_gives_the_same_records(tmp_path: Path, data_dir: Path) -> None:
    spec = parse_spec(spec_dict(n=8, attacks=[{"name": "ifgsm", "eps": "4/255", "steps": 2, "transfer": True}]))
    run_study(spec, tmp_path / "local", data_dir=data_dir)
    pool = ProcessExecutor(2, str(data_dir))
    try:
        run_study(spec, tmp_path / "pool", data_dir=data_dir, executor=pool)
    finally:
        pool.close()
    assert _records(tmp_path / "local") == _records(tmp_path / "pool")


@pytest.mark.distributed
def test_ray_backend_gives_the_same_records(tmp_path: Path, data_dir: Path) -> None:
    from robustlab.bench import RayExecutor

    spec = parse_spec(spec_dict(n=8, attacks=[{"name": "ifgsm", "eps": "4/255", "steps": 2, "transfer": True}]))
    run_study(spec, tmp_path / "local", data_dir=data_dir)
    ray_exec = RayExecutor(data_dir=str(data_dir), cluster_cpus=2)
    try:
        run_study(spec, tmp_path / "ray", data_dir=data_dir, executor=ray_exec)
    finally:
        ray_exec.ray.shutdown()
    assert _records(tmp_path / "local") == _records(tmp_path / "ray")


def test_malformed_spec_lists_every_error_with_its_path(tmp_path: Path) -> None:
    bad = {
        "models": ["resnet20-akamastr"],
        "dataset": {"n": 0, "subset": "all"},
        "attacks": [{"name": "pgdd"}, {"name": "fgsm", "eps": "eight", "steps": -1, "colour": "red"}],
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2
    err = " ".join(result.stderr.split())
    for fragment in (
        "7 error(s)",
        "models: unknown model 'resnet20-akamastr'",
        "Did you mean: resnet20-akamaster",
        "dataset.n:",
        "dataset.subset:",
        "attacks.0.name: unknown attack 'pgdd'",
        "attacks.1.eps:",
        "attacks.1.steps:",
        "attacks.1.colour: Extra inputs",
    ):
        assert fragment in err, fragment
    assert not (tmp_path / "runs").exists()


def test_attack_params_that_the_runner_passes_itself_are_refused() -> None:
    spec = spec_dict()
    spec["attacks"] = [
        {"name": "pgd", "params": {"seed": 1}},
        {"name": "cw", "params": {"progress": 1, "keep_adversarials": True}},
    ]
    with pytest.raises(
        ConfigError,
        match=r"(?s)attacks\.0\.params: seed belong\(s\) at the attack's top level.*"
        r"attacks\.1\.params: keep_adversarials, progress are set by the runner",
    ):
        parse_spec(spec)


@pytest.mark.parametrize("output", ["../elsewhere", "/tmp/absolute-elsewhere", "a/../../b"])
def test_output_escaping_its_root_is_refused(output: str, tmp_path: Path) -> None:
    spec = parse_spec(spec_dict(output=output))
    with pytest.raises(ConfigError, match="escapes its root"):
        resolve_output(spec, tmp_path)
    assert resolve_output(parse_spec(spec_dict(output="runs/x")), tmp_path) == (tmp_path / "runs" / "x").resolve()


def test_saved_adversarials_of_a_study_carry_dataset_rows(four_model_run: tuple[Path, Any]) -> None:
    from safetensors.torch import load_file

    run, _ = four_model_run
    con = connect(run)
    rows = con.execute("SELECT job_id, list(index ORDER BY index) FROM attack GROUP BY job_id").fetchall()
    saved = {job: sorted(idx) for job, idx in rows if (run / "artifacts" / f"{job}.safetensors").is_file()}
    assert saved, "the spec keeps adversarials for transfer"
    for job, idx in saved.items():
        stored = load_file(str(run / "artifacts" / f"{job}.safetensors"))["index"].tolist()
        assert sorted(stored) == idx  # the dataset rows of the records, not positions 0..n-1
        assert sorted(stored) != list(range(len(stored)))


def test_classwise_command_names_each_worst_class_with_its_interval(four_model_run: tuple[Path, Any]) -> None:
    run, _ = four_model_run
    result = CliRunner().invoke(app, ["classwise", str(run)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert re.search(r"\w+ 0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\] \(\d+/\d+\)", result.stdout), result.stdout
