"""``robustlab eval``: clean accuracy of a model on a dataset."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from robustlab.cli._common import DataOpt, DatasetOpt, JsonOpt, ModelOpt, SplitOpt, emit_json, out_console, user_errors


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        model: ModelOpt,
        dataset: DatasetOpt = "cifar10",
        split: SplitOpt = "test",
        n: Annotated[
            int | None, typer.Option("--n", help="Evaluate a seeded subset of N images (default: all).")
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of the subset.")] = 0,
        batch_size: Annotated[int, typer.Option(help="Batch size.")] = 256,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Clean top-1 accuracy of MODEL on DATASET."""
        from robustlab.data import load_dataset
        from robustlab.metrics import evaluate
        from robustlab.models import load_model

        with user_errors():
            full = load_dataset(dataset, split, data)
            ds = full.subset(n, seed)
            result = evaluate(load_model(model, data_dir=data), ds, batch_size)
        payload = {**result.to_dict(), "subset": len(ds) < len(full), "seed": seed if len(ds) < len(full) else None}
        if json_out:
            emit_json(payload)
            return
        table = Table("model", "dataset", "n", "accuracy", "seconds")
        table.add_row(result.model, result.dataset, str(result.n), f"{result.accuracy:.4f}", f"{result.seconds:.1f}")
        out_console.print(table)
