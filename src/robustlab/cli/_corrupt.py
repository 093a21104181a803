"""``robustlab corrupt``: accuracy under common corruptions (per corruption × severity) and mCE."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from robustlab.cli._common import (
    DataOpt,
    DatasetOpt,
    JsonOpt,
    ModelOpt,
    SplitOpt,
    count_progress,
    emit_json,
    out_console,
    user_errors,
)
from robustlab.errors import ConfigError


def _int_list(text: str, what: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise ConfigError(f"{what} must be comma-separated integers, e.g. 1,2,3,4,5; got {text!r}") from exc


def register(app: typer.Typer) -> None:
    @app.command("corrupt")
    def corrupt_cmd(
        model: ModelOpt,
        dataset: DatasetOpt = "cifar10",
        split: SplitOpt = "test",
        n: Annotated[
            int | None, typer.Option("--n", help="Evaluate a seeded subset of N images (default: all).")
        ] = None,
        corruptions: Annotated[
            str | None,
            typer.Option(
                "--corruptions",
                "-c",
                help="Comma-separated names (default: the 15 benchmark corruptions); 'all' for 19.",
            ),
        ] = None,
        severities: Annotated[
            str, typer.Option("--severities", help="Comma-separated severities in 1..5.")
        ] = "1,2,3,4,5",
        seed: Annotated[int, typer.Option(help="Seed of the subset and of the corruptions.")] = 0,
        baseline: Annotated[
            str | None,
            typer.Option("--baseline", help="Model that normalises CE / mCE (ImageNet-C used AlexNet: alexnet-w50)."),
        ] = None,
        constants: Annotated[str, typer.Option(help="auto (by image size), cifar or imagenet.")] = "auto",
        batch_size: Annotated[int, typer.Option(help="Batch size.")] = 256,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Accuracy of MODEL on DATASET under common corruptions, per corruption × severity, with mCE."""
        from robustlab.data import load_dataset
        from robustlab.data.corruptions import list_corruptions
        from robustlab.metrics.corruption import corruption_report
        from robustlab.models import load_model

        with user_errors():
            names = None
            if corruptions is not None:
                names = (
                    list_corruptions()
                    if corruptions.strip() == "all"
                    else [c.strip() for c in corruptions.split(",") if c.strip()]
                )
            sev = _int_list(severities, "--severities")
            ds = load_dataset(dataset, split, data).subset(n, seed)
            net = load_model(model, data_dir=data)
            base = load_model(baseline, data_dir=data) if baseline is not None else None
            with count_progress("corruptions") as bar:

                def progress(name: str, done: int, total: int) -> None:
                    bar(done, total, name)

                report = corruption_report(
                    net,
                    ds,
                    names,
                    sev,
                    baseline=base,
                    seed=seed,
                    batch_size=batch_size,
                    constants=constants,  # type: ignore[arg-type]
                    progress=progress,
                )
        if json_out:
            emit_json(report.to_dict())
            return
        res, err = report.result, report.errors
        table = Table("corruption", *[f"s{s}" for s in res.severities], "mean err", *(["CE"] if err.ce else []))
        for c in res.corruptions:
            row = [c, *[f"{res.accuracy[c][s]:.3f}" for s in res.severities], f"{err.mean_error[c]:.3f}"]
            if err.ce is not None:
                ce = err.ce[c]
                row.append("-" if ce is None else f"{ce:.3f}")
            table.add_row(*row)
        out_console.print(table)
        summary = f"{res.model} on {res.dataset} (n={res.n}): clean accuracy {res.clean_accuracy:.4f}, "
        summary += f"mean corruption error {err.mean_corruption_error:.4f}"
        if err.mce is not None:
            summary += f", mCE {err.mce:.4f} and relative mCE "
            summary += "-" if err.relative_mce is None else f"{err.relative_mce:.4f}"
            summary += f" vs {err.baseline}"
        out_console.print(summary)
