"""``robustlab clever``: CLEVER scores (estimated minimal distortions) of a model on a dataset subset."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from robustlab.cli._common import (
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
    fmt,
    load_inputs,
    out_console,
    rate,
    user_errors,
)


class _Fit(str, Enum):
    mle_reg = "mle_reg"
    mle = "mle"
    maxsamp = "maxsamp"


def register(app: typer.Typer) -> None:
    """Add the ``clever`` command to ``app``."""

    @app.command("clever")
    def clever_cmd(
        model: ModelOpt,
        dataset: DatasetOpt = "cifar10",
        split: SplitOpt = "test",
        n: NOpt = None,
        # Names are checked against the norm and target-mode registries (robustlab.threat) when the command runs,
        # so --help needs no torch import.
        norm: Annotated[str, typer.Option("--norm", help="Perturbation norm: linf, l2 or l1.")] = "l2",
        target: Annotated[
            str, typer.Option("--target", help="Target class of each image: untargeted, random, least-likely, top2.")
        ] = "untargeted",
        batches: Annotated[int, typer.Option("--batches", min=1, help="N_b: batches (Weibull sample size).")] = 20,
        samples: Annotated[int, typer.Option("--samples", min=1, help="N_s: sample points per batch.")] = 50,
        radius: Annotated[
            float | None, typer.Option("--radius", help="Sampling radius R (default: linf 0.1, l2 3, l1 30).")
        ] = None,
        fit: Annotated[
            _Fit, typer.Option("--fit", help="Weibull fit (mle_reg: the reference default).")
        ] = _Fit.mle_reg,
        seed: SeedOpt = 0,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Sample points per forward pass.")] = 256,
        device: DeviceOpt = "cpu",
        route: RouteOpt = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """CLEVER scores of MODEL on DATASET: estimated minimal perturbations (higher = more robust)."""
        from rich.table import Table

        from robustlab.metrics import clever
        from robustlab.threat import get_norm, get_target_mode

        with user_errors():
            get_norm(norm)
            get_target_mode(target)
            inputs = load_inputs(model, dataset, split, n, seed, data, device, route)
            ds = inputs.data
            with count_progress("CLEVER", "sample points") as bar:
                result = clever(
                    inputs.model,
                    ds.images().to(device),
                    ds.y.to(device),
                    norm=norm,
                    target=target,
                    batches=batches,
                    samples=samples,
                    radius=radius,
                    seed=seed,
                    fit=fit.value,
                    batch_size=batch_size,
                    progress=bar,
                )
        s = result.summary()
        rates = {
            "clean_accuracy": rate(s["n_clean_correct"], s["n"]),
            "poor_fit": rate(s["n_poor_fit"], s["n"]),
        }
        if json_out:
            emit_json(
                {
                    "model": model,
                    "route": inputs.model.route,
                    "dataset": f"{dataset}/{split}",
                    "subset": inputs.subset,
                    "indices": ds.indices.tolist(),
                    **result.to_dict(),
                    "rates": rates,
                }
            )
            return
        table = Table("metric", "value", title=f"CLEVER ({result.norm}, {result.target_mode}, R={result.radius:g})")
        for key in ("n", "mean", "median", "n_clean_correct", "n_poor_fit", "gradient_passes", "seconds"):
            table.add_row(key, fmt(s[key]))
        for key, r in rates.items():
            table.add_row(f"{key} (95 % interval)", f"{fmt(r['value'])} ({fmt(r['low'])}–{fmt(r['high'])})")
        out_console.print(table)
