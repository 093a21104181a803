"""The defects a new user hit (issue 12), each reproduced through the command line: every error is one line on
stderr with exit code 2 and leaves nothing behind; long work reports progress when stderr is not a terminal."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import robustlab.cli._common as common
from robustlab.cli import app
from robustlab.errors import ConfigError, ModelError
from robustlab.metrics import evaluate
from robustlab.models import ModelAdapter, load_model, save_weights
from robustlab.models.spec import ModelSpec

runner = CliRunner()
TINY = Path(__file__).resolve().parents[1] / "bench" / "tiny_models.py"


def _one_error_line(result, fragment: str) -> None:  # type: ignore[no-untyped-def]
    """Exit code 2, nothing on stdout, and the error as the last line of stderr, holding ``fragment``: one line
    (progress lines may come before it), no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and [line for line in lines if line.startswith("error")] == lines[-1:]
    assert lines[-1].startswith("error: ") and fragment in lines[-1], result.stderr


def _factory(tmp_path: Path, body: str, name: str = "net.py") -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "import torch\nfrom torch import nn\nfrom robustlab import ModelAdapter\n\n"
    path.write_text(header + textwrap.dedent(body))
    return str(path)


def _image_folder(root: Path, classes: list[str], per_class: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A folder that cannot be written: read-only for a normal user; for root (who ignores permissions) a path
    under /sys, which refuses new entries."""
    if os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    probe = Path("/sys/robustlab-test-probe")
    try:
        probe.mkdir()
    except OSError:
        yield Path("/sys")
        return
    probe.rmdir()
    pytest.skip("no unwritable folder available")


# 1. labels and class names against the model -------------------------------------------------------------------


def test_eval_refuses_a_5_class_model_on_cifar10(tmp_path: Path, data_dir: Path) -> None:
    ref = _factory(
        tmp_path,
        """
        def make():
            net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 5))
            return ModelAdapter(net, num_classes=5, input_shape=(3, 32, 32), name="five")
        """,
    )
    result = runner.invoke(app, ["eval", "--model", f"{ref}:make", "--n", "50", "--json"])
    _one_error_line(result, "cifar10/test has 10 classes but model five has 5")


def test_evaluate_itself_refuses_labels_outside_the_models_classes(tmp_path: Path, data_dir: Path) -> None:
    from robustlab.data import load_dataset
    from robustlab.models.classes import check_dataset_fits

    net = ModelAdapter(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5)), num_classes=5)
    with pytest.raises(ConfigError, match="cifar10/test has 10 classes but model model has 5"):
        evaluate(net, load_dataset("cifar10", "test").subset(50))
    with pytest.raises(ConfigError, match=r"labels out of range: the model has 5 classes \(0..4\)"):
        check_dataset_fits(net, torch.tensor([0, 4, 7]))


def test_a_study_job_refuses_a_model_whose_classes_do_not_fit(tmp_path: Path, data_dir: Path) -> None:
    import yaml

    ref = _factory(
        tmp_path,
        """
        def make():
            net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 5))
            return ModelAdapter(net, num_classes=5, input_shape=(3, 32, 32), name="five")
        """,
    )
    spec = {
        "name": "five",
        "output": "out",
        "models": [f"{ref}:make"],
        "dataset": {"name": "cifar10", "n": 4, "seed": 0, "subset": "random"},
        "attacks": [{"name": "fgsm", "eps": "8/255"}],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = runner.invoke(app, ["run", str(tmp_path / "spec.yaml"), "--no-report"])
    _one_error_line(result, "cifar10/test has 10 classes but model five has 5")
    assert not list((tmp_path / "out").glob("records/**/*.parquet"))


def test_a_folder_whose_class_names_are_not_the_models_is_refused(tmp_path: Path, data_dir: Path) -> None:
    folder = _image_folder(tmp_path / "pets", ["cat", "dog"])
    result = runner.invoke(app, ["eval", "--model", "resnet20-akamaster", "--dataset", f"folder:{folder}"])
    _one_error_line(result, "label 0: 'cat' vs 'airplane', 1: 'dog' vs 'automobile'")
    for cmd in (["attack", "--attack", "fgsm"], ["clever", "--batches", "2", "--samples", "4"]):
        again = runner.invoke(app, [*cmd, "--model", "resnet20-akamaster", "--dataset", f"folder:{folder}"])
        _one_error_line(again, "are not model resnet20-akamaster's")


def test_a_folder_with_the_models_first_classes_is_accepted(tmp_path: Path, data_dir: Path) -> None:
    folder = _image_folder(tmp_path / "vehicles", ["airplane", "automobile"])
    result = runner.invoke(app, ["eval", "--model", "resnet20-akamaster", "--dataset", f"folder:{folder}", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 4


# 2. progress when stderr is not a terminal ---------------------------------------------------------------------


def test_attack_prints_plain_progress_lines_to_a_pipe(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "PROGRESS_SECONDS", 0.0)  # a line at every update
    args = ["attack", "--model", "resnet20-akamaster", "--n", "8", "--attack", "pgd", "--steps", "3", "--json"]
    result = runner.invoke(app, [*args, "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 2 and all(line.startswith("pgd: ") for line in lines)
    assert all("model calls (at most)" in line and "/s" in line for line in lines)
    assert any("ETA" in line for line in lines[:-1])
    assert "done in" in lines[-1]
    json.loads(result.stdout)  # stdout still holds exactly the JSON


def test_progress_lines_are_periodic_not_per_batch(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "PROGRESS_SECONDS", 3600.0)  # longer than the run: no periodic line is due
    args = ["attack", "--model", "resnet20-akamaster", "--n", "8", "--attack", "pgd", "--steps", "3"]
    result = runner.invoke(app, [*args, "--batch-size", "2", "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "done in" in lines[0]  # four batches, one line: the final one


def test_train_prints_plain_progress_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robustlab.cli import _train

    monkeypatch.setattr(_train, "PLAIN_SECONDS", 0.0)  # a step line at every step
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "toy.npz", x=rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8), y=rng.integers(0, 2, 40))
    args = ["train", "--arch", "mlp", "--arch-kwargs", '{"image_size": 8, "hidden": [8]}']
    args += ["--dataset", f"npz:{tmp_path / 'toy.npz'}", "--epochs", "2", "--batch-size", "20", "--out"]
    result = runner.invoke(app, [*args, str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "epoch 1/2: step 1/2, loss" in result.stderr and "epoch 2/2 done: loss" in result.stderr
    assert "train accuracy" in result.stderr and "test accuracy" not in result.stderr


def test_run_prints_one_line_per_finished_job(tmp_path: Path, data_dir: Path) -> None:
    import yaml

    spec = {
        "name": "progress",
        "output": "out",
        "models": [f"{TINY}:make_a"],
        "dataset": {"name": "cifar10", "n": 4, "seed": 0, "subset": "random"},
        "attacks": [{"name": "fgsm", "eps": "8/255"}, {"name": "fgsm", "eps": "2/255"}],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = runner.invoke(app, ["run", str(tmp_path / "spec.yaml"), "--no-report", "--json"])
    assert result.exit_code == 0, result.output
    finished = [line for line in result.stderr.splitlines() if "elapsed" in line]
    assert len(finished) == 3, result.stderr  # one clean job, two attack jobs
    assert any(line.startswith("clean 1/1: ") for line in finished)
    assert any("attack" in line and " 2/2: " in line for line in finished)


# 3. tracebacks become one-line errors ---------------------------------------------------------------------------


def test_train_into_an_unwritable_folder_is_one_line(unwritable: Path, tmp_path: Path) -> None:
    out = unwritable / "run"
    result = runner.invoke(app, ["train", "--arch", "mlp", "--dataset", "npz:/nonexistent.npz", "--out", str(out)])
    _one_error_line(result, "--out")
    assert "cannot be written" in result.stderr and not out.exists()


def test_an_out_path_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["train", "--arch", "mlp", "--out", str(tmp_path / "file" / "run")])
    _one_error_line(result, "is a file, not a folder")


def test_save_adversarials_to_an_unwritable_path_fails_before_the_attack(
    unwritable: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import robustlab.attacks

    def no_attack(*args: object, **kwargs: object) -> None:
        raise AssertionError("the attack ran before the output was checked")

    monkeypatch.setattr(robustlab.attacks, "attack", no_attack)
    target = unwritable / "adv.safetensors"
    args = ["attack", "--model", "resnet20-akamaster", "--n", "4", "--save-adversarials", str(target)]
    _one_error_line(runner.invoke(app, args), "--save-adversarials")
    assert not target.exists()


def test_a_full_disk_while_saving_is_one_line_and_leaves_no_file(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[1]))

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    target = tmp_path / "adv.safetensors"
    args = ["attack", "--model", "resnet20-akamaster", "--n", "2", "--attack", "fgsm"]
    _one_error_line(runner.invoke(app, [*args, "--save-adversarials", str(target)]), "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_device_cuda_on_a_cpu_build_is_one_line(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    for cmd in ("eval", "attack", "clever", "corrupt"):  # corrupt gained --device
        result = runner.invoke(app, [cmd, "--model", "resnet20-akamaster", "--n", "2", "--device", "cuda"])
        _one_error_line(result, "CUDA is not available in this PyTorch build; use --device cpu")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["eval", "--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["eval", "--n", "0"], "Invalid value for '--n'"),
        (["corrupt", "--batch-size", "-1"], "Invalid value for '--batch-size'"),
        (["clever", "--samples", "0"], "Invalid value for '--samples'"),
        (["attack", "-p", "restarts=abc"], "parameter 'restarts' of attack 'pgd' must be an integer, got 'abc'"),
    ],
)
def test_bad_numbers_are_one_line(args: list[str], fragment: str, data_dir: Path) -> None:
    _one_error_line(runner.invoke(app, [*args, "--model", "resnet20-akamaster"]), fragment)


def test_an_exception_in_a_users_factory_names_the_factory(tmp_path: Path) -> None:
    ref = _factory(tmp_path, "def make():\n    raise RuntimeError('weights/v2.pt not found')\n") + ":make"
    result = runner.invoke(app, ["eval", "--model", ref])
    _one_error_line(result, f"the factory {ref} raised RuntimeError: weights/v2.pt not found")
    verbose = runner.invoke(app, ["-v", "eval", "--model", ref])
    assert verbose.exit_code == 2
    assert "Traceback" in verbose.stderr and "raise RuntimeError" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("error: the factory")


# 4. a user's safetensors are checked against their sidecar ------------------------------------------------------


def test_user_weights_whose_sha256_differs_from_the_sidecar_are_refused(tmp_path: Path) -> None:
    spec = ModelSpec("toy", "mlp", "mlp", 2, (1, 8, 8), (0.5,), (0.25,), "npz:toy", {"image_size": 8})
    from robustlab.models.loading import assemble

    net = assemble(spec).net
    path = tmp_path / "toy.safetensors"
    save_weights(net, spec, path)
    assert load_model(str(path)).num_classes == 2  # the untouched file loads
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))  # same keys, other weights
    with pytest.raises(ModelError, match=r"is not the file its sidecar toy\.json describes"):
        load_model(str(path))
    result = runner.invoke(app, ["eval", "--model", str(path), "--dataset", "mnist"])
    _one_error_line(result, "is not the file its sidecar")


# 6. square brackets survive ------------------------------------------------------------------------------------


def test_error_messages_keep_square_brackets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray missing, whether or not it is installed here
    ray = runner.invoke(app, ["run", "--backend", "ray", "--out", str(tmp_path / "r")])
    _one_error_line(ray, "pip install 'robustlab[ray]'")
    assert not (tmp_path / "r").exists()
    missing = tmp_path / "models" / "[draft]" / "x.py"
    result = runner.invoke(app, ["eval", "--model", f"{missing}:make"])
    _one_error_line(result, f"model file {missing} does not exist")
    assert "[draft]" in result.stderr


def test_tables_keep_square_brackets_in_model_names(tmp_path: Path, data_dir: Path) -> None:
    body = "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))\n"
    ref = _factory(tmp_path, body, "[draft]/x.py")
    result = runner.invoke(app, ["eval", "--model", f"{ref}:make", "--n", "4"])
    assert result.exit_code == 0, result.output
    assert "[draft]/x.py" in "".join(result.stdout.split())  # the table may wrap the long name


def test_a_message_with_markup_like_text_is_printed_as_is(capsys: pytest.CaptureFixture[str]) -> None:
    common.error_line("pip install 'robustlab[ray]' [bold]x[/bold] models/[draft]/x.py")
    assert capsys.readouterr().err == "error: pip install 'robustlab[ray]' [bold]x[/bold] models/[draft]/x.py\n"


# 7. a plain nn.Module from a factory is probed ------------------------------------------------------------------


def test_a_factory_returning_a_plain_sequential_is_probed(
    tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ref = _factory(
        tmp_path,
        """
        def make():
            torch.manual_seed(0)
            return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
        """,
    )
    with caplog.at_level(logging.WARNING):
        result = runner.invoke(app, ["eval", "--model", f"{ref}:make", "--n", "20", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 20
    notices = [r.getMessage() for r in caplog.records if "plain nn.Module" in r.getMessage()]
    assert len(notices) == 1 and "[0, 1] images of shape (3, 32, 32)" in notices[0] and "10 classes" in notices[0]
    model = load_model(f"{ref}:make", input_shape=(3, 32, 32))
    assert model.num_classes == 10 and model.input_shape == (3, 32, 32)


def test_a_plain_module_that_fails_its_probe_is_one_line(tmp_path: Path, data_dir: Path) -> None:
    ref = _factory(tmp_path, "def make():\n    return nn.Linear(7, 3)\n") + ":make"
    result = runner.invoke(app, ["eval", "--model", ref, "--n", "4"])
    _one_error_line(result, f"probing {ref} on one zero image of shape (3, 32, 32) failed")


# 8. small ones ----------------------------------------------------------------------------------------------------


def test_zoo_list_with_a_misspelt_source_says_the_close_match() -> None:
    _one_error_line(runner.invoke(app, ["zoo", "list", "--source", "pubished"]), "Did you mean: published?")


def test_n_above_the_dataset_size_says_so_and_json_records_the_n_used(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "toy.npz", x=rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8), y=rng.integers(0, 2, 30))
    spec = ModelSpec("toy", "mlp", "mlp", 2, (1, 8, 8), (0.5,), (0.25,), "toy", {"image_size": 8})
    from robustlab.models.loading import assemble

    save_weights(assemble(spec).net, spec, tmp_path / "toy.safetensors")
    args = ["eval", "--model", str(tmp_path / "toy.safetensors"), "--dataset", f"npz:{tmp_path / 'toy.npz'}"]
    result = runner.invoke(app, [*args, "--n", "100", "--json"])
    assert result.exit_code == 0, result.output
    assert "--n 100 is more than the 30 images" in result.stderr and "using all 30" in result.stderr
    assert json.loads(result.stdout)["n"] == 30


def test_version() -> None:
    from robustlab import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"robustlab {__version__}\n"


def test_importing_the_cli_imports_no_heavy_package() -> None:
    heavy = ["torch", "numpy", "duckdb", "pyarrow", "plotly", "scipy", "safetensors", "matplotlib"]
    code = f"import sys, robustlab.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# 10. rates carry their denominator and interval ------------------------------------------------------------------


def test_eval_json_rates_carry_k_n_and_the_wilson_interval(data_dir: Path) -> None:
    result = runner.invoke(app, ["eval", "--model", "resnet20-akamaster", "--n", "40", "--json"])
    out = json.loads(result.stdout)
    acc = out["rates"]["accuracy"]
    assert acc["k"] == out["correct"] and acc["n"] == 40 and acc["value"] == out["accuracy"]
    assert acc["low"] < acc["value"] <= acc["high"]


def test_corrupt_and_clever_json_rates(data_dir: Path) -> None:
    corrupt = runner.invoke(
        app, ["corrupt", "-m", "resnet20-akamaster", "--n", "8", "-c", "contrast", "--severities", "1", "--json"]
    )
    out = json.loads(corrupt.stdout)
    assert out["rates"]["clean_accuracy"]["k"] == out["clean_correct"] and out["rates"]["clean_accuracy"]["n"] == 8
    cell = out["rates"]["accuracy"]["contrast"]["1"]
    assert cell["k"] == out["correct"]["contrast"]["1"] and cell["low"] <= cell["value"] <= cell["high"]
    clever = runner.invoke(
        app, ["clever", "-m", "resnet20-akamaster", "--n", "3", "--batches", "3", "--samples", "8", "--json"]
    )
    c = json.loads(clever.stdout)
    assert c["rates"]["clean_accuracy"]["n"] == 3 and c["rates"]["poor_fit"]["k"] == c["n_poor_fit"]
    assert c["rates"]["clean_accuracy"]["k"] == c["n_clean_correct"]


def test_a_resumed_runs_rate_counts_only_the_work_done_since(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run resumed at step 900 of 1,000 that then does 10 steps in 10 s: 1 step/s and 90 s left, not 91/s."""
    clock = [100.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: clock[0])
    said: list[str] = []
    monkeypatch.setattr(common, "notice", said.append)
    monkeypatch.setattr(common, "PROGRESS_SECONDS", 5.0)
    plain = common._PlainProgress("train", "steps")
    clock[0] += 0.5
    plain.update(900, 1000)  # the first report after the resume
    clock[0] += 10.0
    plain.update(910, 1000)
    assert said == ["train: 910/1000 steps (91 %), 1/s, ETA 1m30s"]
