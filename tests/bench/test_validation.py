"""Everything a study can be refused for is found before anything is written; one run per folder; an output
folder that cannot be written is a one-line error."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from robustlab import ConfigError
from robustlab.bench import parse_spec, run_study
from robustlab.cli import app
from robustlab.store import open_run

from .conftest import spec_dict


def _small(**over: object) -> dict:
    return spec_dict(**{"n": 2, "attacks": [{"name": "fgsm"}], "corruptions": None, **over})


def test_dataset_params_and_factory_errors_are_reported_together_before_any_write(tmp_path: Path) -> None:
    bad = spec_dict(
        models=["nope.py:make", spec_dict()["models"][0]],
        dataset={"name": "cifar11"},
        attacks=[{"name": "pgd", "params": {"restart": 5}}, {"name": "cw", "params": {"search_step": 2}}],
        output="runs/x",
    )
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(bad))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 2
    err = " ".join(result.stderr.split())
    for fragment in (
        "4 error(s)",
        "models: model nope.py:make: factory file nope.py does not exist",
        "dataset.name: unknown dataset 'cifar11'",
        "Did you mean: cifar10",
        "attacks.0: unknown parameter 'restart' for attack 'pgd'. Did you mean: restarts?",
        "attacks.1: unknown parameter 'search_step' for attack 'cw'",
    ):
        assert fragment in err, (fragment, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # no run folder, no manifest


def test_a_missing_dataset_file_or_folder_is_refused_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"(?s)dataset\.name: npz:.*nothing\.npz does not exist"):
        parse_spec(_small(dataset={"name": f"npz:{tmp_path / 'nothing.npz'}"}))
    with pytest.raises(ConfigError, match=r"dataset\.name: unknown dataset scheme 'zip'"):
        parse_spec(_small(dataset={"name": "zip:x"}))


def test_a_run_folder_where_no_job_finished_is_replanned_with_a_corrected_spec(tmp_path: Path, data_dir: Path) -> None:
    first = parse_spec(_small(attacks=[{"name": "fgsm", "eps": 0.5}]))
    open_run(tmp_path, first.canonical(), first.digest())  # the manifest of a run that died before its first job
    corrected = parse_spec(_small())
    summary = run_study(corrected, tmp_path, data_dir=data_dir)
    assert summary.executed == summary.jobs > 0
    assert '"spec_sha256": "' + corrected.digest() in (tmp_path / "manifest.json").read_text()


def test_a_second_run_on_a_locked_folder_is_refused_with_the_holders_pid(tmp_path: Path, data_dir: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.mkdir(exist_ok=True)
        (tmp_path / ".lock").write_text(f"{holder.pid}\n")
        with pytest.raises(ConfigError, match=rf"^another run \(pid {holder.pid}\) holds {tmp_path}: wait"):
            run_study(parse_spec(_small()), tmp_path, data_dir=data_dir)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # no manifest, the holder's lock kept
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_released(tmp_path: Path, data_dir: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(f"{dead.pid}\n")
    summary = run_study(parse_spec(_small()), tmp_path, data_dir=data_dir)
    assert summary.executed == summary.jobs and not (tmp_path / ".lock").exists()


def test_an_output_folder_that_cannot_be_created_is_one_line_and_nothing_is_written(
    tmp_path: Path, data_dir: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError) as info:
        run_study(parse_spec(_small()), blocker / "run", data_dir=data_dir)
    assert str(info.value) == (
        f"cannot write to the output folder {blocker / 'run'}: Not a directory; choose another folder with --out"
    )
    assert blocker.read_text() == "not a folder" and [p.name for p in tmp_path.iterdir()] == ["file"]


def test_a_full_disk_is_one_line_and_leaves_no_half_written_record(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import robustlab.store.records as records

    def full(table: object, where: object, **kw: object) -> None:
        Path(str(where)).write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(records.pq, "write_table", full)
    with pytest.raises(ConfigError, match=r"^cannot write to the output folder .*: No space left on device \(free"):
        run_study(parse_spec(_small()), tmp_path, data_dir=data_dir)
    assert not list(tmp_path.glob("records/*/*")) and not (tmp_path / ".lock").exists()


def test_a_model_that_does_not_fit_the_dataset_is_refused_before_any_write(tmp_path: Path) -> None:
    five = f"{Path(__file__).parent / 'tiny_models.py'}:make_five_classes"
    spec = parse_spec(_small(models=[spec_dict()["models"][0], five]))
    with pytest.raises(ConfigError, match=r"model .*make_five_classes: cifar10/test has 10 classes but .* has 5"):
        run_study(spec, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # no manifest, no lock, no records


def test_a_study_accepts_a_factory_returning_a_plain_module(tmp_path: Path) -> None:
    plain = f"{Path(__file__).parent / 'tiny_models.py'}:make_plain"
    summary = run_study(parse_spec(_small(models=[plain])), tmp_path / "run")
    assert summary.executed == summary.jobs == 2  # clean + fgsm
    assert len(list((tmp_path / "run" / "records" / "attack").glob("*.parquet"))) == 1


def test_a_lock_whose_owner_has_not_written_its_pid_yet_is_respected_then_taken_over_when_old(tmp_path: Path) -> None:
    from robustlab.store.lock import run_lock

    lock = tmp_path / ".lock"
    lock.write_text("")  # created with O_EXCL by another run, its pid not written yet
    with pytest.raises(ConfigError, match="another run is starting in"), run_lock(tmp_path):
        pass
    assert lock.exists()
    old = lock.stat().st_mtime - 60
    os.utime(lock, (old, old))  # an empty lock a minute old: its creator died before writing
    with run_lock(tmp_path):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert not lock.exists()
