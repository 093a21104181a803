"""``robustlab eval``: clean accuracy of a model on a dataset."""

from __future__ import annotations

import typer

from robustlab.cli._common import (
    BatchSizeOpt,
    DataOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    NOpt,
    RouteOpt,
    SeedOpt,
    SplitOpt,
    emit_json,
    fmt,
    load_inputs,
    out_console,
    rate,
    user_errors,
)


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""

    @app.command("eval")
    def eval_cmd(
        model: ModelOpt,
        dataset: DatasetOpt = "cifar10",
        split: SplitOpt = "test",
        n: NOpt = None,
        seed: SeedOpt = 0,
        batch_size: BatchSizeOpt = 256,
        device: DeviceOpt = "cpu",
        route: RouteOpt = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Clean top-1 accuracy of MODEL on DATASET."""
        from rich.table import Table

        from robustlab.metrics import evaluate

        with user_errors():
            inputs = load_inputs(model, dataset, split, n, seed, data, device, route)
            result = evaluate(inputs.model, inputs.data, batch_size)
        accuracy = rate(result.correct, result.n)
        if json_out:
            emit_json(
                {
                    **result.to_dict(),
                    "rates": {"accuracy": accuracy},
                    "subset": inputs.subset,
                    "seed": seed if inputs.subset else None,
                    "route": inputs.model.route,
                }
            )
            return
        table = Table("model", "dataset", "n", "accuracy", "95 % interval", "seconds")
        table.add_row(
            result.model,
            result.dataset,
            str(result.n),
            f"{result.accuracy:.4f}",
            f"{fmt(accuracy['low'])}–{fmt(accuracy['high'])}",
            f"{result.seconds:.1f}",
        )
        out_console.print(table)
