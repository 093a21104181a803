"""``robustlab clever``: CLEVER scores (estimated minimal distortions) of a model on a dataset subset."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from robustlab.cli._common import (
    DataOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    SplitOpt,
    count_progress,
    emit_json,
    out_console,
    user_errors,
)


class _Norm(str, Enum):
    l1 = "l1"
    l2 = "l2"
    linf = "linf"


class _Target(str, Enum):
    untargeted = "untargeted"
    random = "random"
    least_likely = "least-likely"
    top2 = "top2"


class _Fit(str, Enum):
    mle_reg = "mle_reg"
    mle = "mle"
    maxsamp = "maxsamp"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def register(app: typer.Typer) -> None:
    """Add the ``clever`` command to ``app``."""

    @app.command("clever")
    def clever_cmd(
        model: ModelOpt,
        dataset: DatasetOpt = "cifar10",
        split: SplitOpt = "test",
        n: Annotated[int | None, typer.Option("--n", help="Score a seeded subset of N images (default: all).")] = None,
        norm: Annotated[_Norm, typer.Option("--norm", help="Perturbation norm.")] = _Norm.l2,
        target: Annotated[_Target, typer.Option("--target", help="Target class of each image.")] = _Target.untargeted,
        batches: Annotated[int, typer.Option("--batches", help="N_b: batches (Weibull sample size).")] = 20,
        samples: Annotated[int, typer.Option("--samples", help="N_s: sample points per batch.")] = 50,
        radius: Annotated[
            float | None, typer.Option("--radius", help="Sampling radius R (default: linf 0.1, l2 3, l1 30).")
        ] = None,
        fit: Annotated[
            _Fit, typer.Option("--fit", help="Weibull fit (mle_reg: the reference default).")
        ] = _Fit.mle_reg,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the subset, the targets and the samples.")] = 0,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Sample points per forward pass.")] = 256,
        device: DeviceOpt = "cpu",
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """CLEVER scores of MODEL on DATASET: estimated minimal perturbations (higher = more robust)."""
        from robustlab.data import load_dataset
        from robustlab.metrics import clever
        from robustlab.models import load_model

        with user_errors():
            full = load_dataset(dataset, split, data)
            ds = full.subset(n, seed)
            net = load_model(model, data_dir=data, device=device)
            with count_progress("CLEVER: sample points") as bar:
                result = clever(
                    net,
                    ds.images().to(device),
                    ds.y.to(device),
                    norm=norm.value,
                    target=target.value,
                    batches=batches,
                    samples=samples,
                    radius=radius,
                    seed=seed,
                    fit=fit.value,
                    batch_size=batch_size,
                    progress=bar,
                )
        payload = {
            "model": model,
            "dataset": f"{dataset}/{split}",
            "subset": len(ds) < len(full),
            "indices": ds.indices.tolist(),
            **result.to_dict(),
        }
        if json_out:
            emit_json(payload)
            return
        s = result.summary()
        table = Table("metric", "value", title=f"CLEVER ({result.norm}, {result.target_mode}, R={result.radius:g})")
        for key in ("n", "mean", "median", "n_clean_correct", "n_poor_fit", "gradient_passes", "seconds"):
            value = s[key]
            table.add_row(key, _fmt(value) if isinstance(value, float) or value is None else str(value))
        out_console.print(table)
