"""``robustlab train``: standard training of an architecture, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robustlab.cli._common import DataOpt, JsonOpt, emit_json, err_console, step_progress, user_errors


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        arch: Annotated[str, typer.Option(help="Architecture name (see `robustlab zoo list --archs`).")],
        out: Annotated[Path, typer.Option(help="Run directory (checkpoint, metrics.jsonl, model.safetensors).")],
        dataset: Annotated[str, typer.Option(help="Training dataset (its train split).")] = "cifar10",
        arch_kwargs: Annotated[
            str, typer.Option(help="Architecture arguments as JSON, e.g. '{\"depth\": 20}'.")
        ] = "{}",
        epochs: Annotated[int, typer.Option(help="Epochs.")] = 30,
        batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
        lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.1,
        augment: Annotated[str, typer.Option(help="crop-flip, crop or none.")] = "crop-flip",
        seed: Annotated[int, typer.Option(help="Seed.")] = 0,
        threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Train ARCH on DATASET; re-running the same command resumes from the last finished epoch."""
        import json

        import torch

        from robustlab.train.standalone import train_architecture

        if threads:
            torch.set_num_threads(threads)
        with user_errors():
            try:
                kwargs = json.loads(arch_kwargs)
            except json.JSONDecodeError as exc:
                from robustlab.errors import ConfigError

                raise ConfigError(f"--arch-kwargs is not valid JSON: {exc}") from exc
            from robustlab.train import TrainConfig

            cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, augment=augment, seed=seed)
            with step_progress(f"train {arch}", enabled=not json_out) as progress:
                result = train_architecture(arch, kwargs, dataset, cfg, out, data_dir=data, progress=progress)
        if json_out:
            emit_json(result)
        else:
            err_console.print(f"test accuracy {result['test_accuracy']:.4f}; weights {result['weights']}")
