"""``robustlab corrupt``: accuracy under common corruptions (per corruption × severity) and mCE."""

from __future__ import annotations

from typing import Annotated

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
    count_progress,
    emit_json,
    load_inputs,
    out_console,
    rate,
    user_errors,
)
from robustlab.errors import ConfigError


def _int_list(text: str, what: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise ConfigError(f"{what} must be comma-separated integers, e.g. 1,2,3,4,5; got {text!r}") from exc


def register(app: typer.Typer) -> None:
    """Add the ``corrupt`` command to ``app``."""

    @app.command("corrupt")
    def corrupt_cmd(
        model: ModelOpt,
        dataset: DatasetOpt = "cifar10",
        split: SplitOpt = "test",
        n: NOpt = None,
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
        seed: SeedOpt = 0,
        baseline: Annotated[
            str | None,
            typer.Option("--baseline", help="Model that normalises CE / mCE (ImageNet-C used AlexNet: alexnet-w50)."),
        ] = None,
        constants: Annotated[str, typer.Option(help="auto (by image size), cifar or imagenet.")] = "auto",
        batch_size: BatchSizeOpt = 256,
        device: DeviceOpt = "cpu",
        route: RouteOpt = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Accuracy of MODEL on DATASET under common corruptions, per corruption × severity, with mCE."""
        from rich.table import Table

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
            inputs = load_inputs(model, dataset, split, n, seed, data, device, route)
            base = load_model(baseline, data_dir=data, device=device) if baseline is not None else None
            with count_progress("corruptions", "corruption × severity") as bar:

                def progress(name: str, done: int, total: int) -> None:
                    bar(done, total, f"corruptions ({name})")

                report = corruption_report(
                    inputs.model,
                    inputs.data,
                    names,
                    sev,
                    baseline=base,
                    seed=seed,
                    batch_size=batch_size,
                    constants=constants,  # type: ignore[arg-type]
                    progress=progress,
                )
        res, err = report.result, report.errors
        if json_out:
            rates = {
                "clean_accuracy": rate(res.clean_correct, res.n),
                "accuracy": {c: {str(s): rate(k, res.n) for s, k in d.items()} for c, d in res.correct.items()},
            }
            emit_json({**report.to_dict(), "rates": rates, "route": inputs.model.route})
            return
        table = Table("corruption", *[f"s{s}" for s in res.severities], "mean err", *(["CE"] if err.ce else []))
        for c in res.corruptions:
            row = [c, *[f"{res.accuracy[c][s]:.3f}" for s in res.severities], f"{err.mean_error[c]:.3f}"]
            if err.ce is not None:
                ce = err.ce[c]
                row.append("-" if ce is None else f"{ce:.3f}")
            table.add_row(*row)
        out_console.print(table)
        clean = rate(res.clean_correct, res.n)
        summary = f"{res.model} on {res.dataset} (n={res.n}): clean accuracy {res.clean_accuracy:.4f} "
        summary += f"(95 % interval {clean['low']:.4f}–{clean['high']:.4f}), "
        summary += f"mean corruption error {err.mean_corruption_error:.4f}"
        if err.mce is not None:
            summary += f", mCE {err.mce:.4f} and relative mCE "
            summary += "-" if err.relative_mce is None else f"{err.relative_mce:.4f}"
            summary += f" vs {err.baseline}"
        out_console.print(summary)
