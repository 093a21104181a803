"""``robustlab train``: standard training of an architecture, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robustlab.cli._common import (
    DataOpt,
    JsonOpt,
    SeedOpt,
    ThreadsOpt,
    check_writable,
    emit_json,
    notice,
    set_threads,
    step_progress,
    user_errors,
)
from robustlab.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""

    @app.command("train")
    def train_cmd(
        arch: Annotated[str, typer.Option(help="Architecture name (see `robustlab zoo list --archs`).")],
        out: Annotated[Path, typer.Option(help="Run directory (checkpoint, metrics.jsonl, model.safetensors).")],
        dataset: Annotated[str, typer.Option(help="Training dataset (its train split).")] = "cifar10",
        arch_kwargs: Annotated[
            str, typer.Option(help="Architecture arguments as JSON, e.g. '{\"depth\": 20}'.")
        ] = "{}",
        epochs: Annotated[int, typer.Option(min=1, help="Epochs.")] = 30,
        batch_size: Annotated[int, typer.Option(min=1, help="Batch size.")] = 128,
        lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.1,
        augment: Annotated[str, typer.Option(help="crop-flip, crop or none.")] = "crop-flip",
        seed: SeedOpt = 0,
        threads: ThreadsOpt = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Train ARCH on DATASET; re-running the same command resumes from the last finished epoch.

        A named dataset's test split is evaluated after training (test accuracy); a npz: file or an image
        folder has one split, so only the accuracy on the training images is reported (train accuracy).
        """
        import json

        from robustlab.train import TrainConfig
        from robustlab.train.standalone import train_architecture

        set_threads(threads)
        with user_errors():
            try:
                kwargs = json.loads(arch_kwargs)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--arch-kwargs is not valid JSON: {exc}") from exc
            cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, augment=augment, seed=seed)
            check_writable(out, "--out", folder=True)
            with step_progress(f"train {arch}", epochs, enabled=not json_out) as progress:
                result = train_architecture(arch, kwargs, dataset, cfg, out, data_dir=data, progress=progress)
        if json_out:
            emit_json(result)
        elif "test_accuracy" in result:
            notice(f"test accuracy {result['test_accuracy']:.4f}; weights {result['weights']}")
        else:
            notice(
                f"train accuracy {result['train_accuracy']:.4f} (on the training images: {dataset} has no "
                f"separate test split); weights {result['weights']}"
            )
