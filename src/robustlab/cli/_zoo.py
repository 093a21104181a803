"""``robustlab zoo``: list the registered models, and build (train) the zoo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from robustlab.cli._common import (
    DataOpt,
    JsonOpt,
    count_progress,
    emit_json,
    err_console,
    out_console,
    step_progress,
    user_errors,
)


def register(app: typer.Typer) -> None:
    zoo_app = typer.Typer(help="The model zoo: list models, build (train) the zoo.", no_args_is_help=True)
    app.add_typer(zoo_app, name="zoo")

    @zoo_app.command("list")
    def list_cmd(
        source: Annotated[str | None, typer.Option(help="Only 'zoo' or 'published' models.")] = None,
        archs: Annotated[bool, typer.Option("--archs", help="List architecture names instead.")] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Registered models: zoo models and published checkpoints."""
        from robustlab.models import ARCHITECTURES, list_models

        if archs:
            if json_out:
                emit_json({"architectures": ARCHITECTURES.names()})
            else:
                out_console.print("\n".join(ARCHITECTURES.names()))
            return
        specs = list_models(source)
        if json_out:
            emit_json(
                {
                    "models": [
                        {
                            "name": s.name,
                            "family": s.family,
                            "source": s.source,
                            "arch": s.arch,
                            "arch_kwargs": s.arch_kwargs,
                            "dataset": s.dataset,
                            **s.metrics,
                            "weights": None
                            if s.weights is None
                            else {
                                "filename": s.weights.filename,
                                "sha256": s.weights.sha256,
                                "url": s.weights.url,
                            },
                        }
                        for s in specs
                    ]
                }
            )
            return
        table = Table("name", "family", "source", "params", "MFLOPs", "test acc")
        for s in specs:
            m = s.metrics
            table.add_row(
                s.name,
                s.family,
                s.source,
                f"{m['parameters']:,}" if "parameters" in m else "",
                f"{m['flops'] / 1e6:.1f}" if "flops" in m else "",
                f"{m['test_accuracy']:.4f}" if "test_accuracy" in m else "",
            )
        out_console.print(table)

    @zoo_app.command("eval")
    def eval_cmd(
        n: Annotated[int | None, typer.Option("--n", help="Evaluate a seeded subset of N test images.")] = None,
        source: Annotated[str | None, typer.Option(help="Only 'zoo' or 'published' models.")] = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Clean CIFAR-10 accuracy of every registered model whose weights are available, against its record."""
        from robustlab.metrics.zoo_accuracy import evaluate_registered

        with user_errors(), count_progress("zoo eval") as update:
            rows = evaluate_registered(source=source, n=n, data_dir=data, progress=None if json_out else update)
        if json_out:
            emit_json({"n": n or 10_000, "models": rows})
            return
        table = Table("model", "family", "source", "n", "accuracy", "recorded", "seconds", title="clean accuracy")
        for r in rows:
            rec = r["recorded_accuracy"]
            table.add_row(
                r["model"],
                r["family"],
                r["source"],
                str(r["n"]),
                "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}",
                "" if rec is None else f"{rec:.4f}",
                f"{r['seconds']:.1f}",
                style=None if r["accuracy"] is not None else "dim",
            )
        out_console.print(table)

    @zoo_app.command("build")
    def build_cmd(
        only: Annotated[list[str] | None, typer.Option("--only", help="Build only these recipes (repeatable).")] = None,
        runs: Annotated[Path, typer.Option(help="Run directory for resumable training state.")] = Path("runs/zoo"),
        out: Annotated[Path | None, typer.Option(help="Where weights go (default: the package's zoo folder).")] = None,
        threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Train the zoo on CIFAR-10 (resumable), export weights and rewrite the manifest."""
        import torch

        from robustlab.models import ZOO_DIR
        from robustlab.train.zoo import RECIPES, build_one, write_manifest

        if threads:
            torch.set_num_threads(threads)
        out_dir = out or ZOO_DIR
        with user_errors():
            recipes = [RECIPES.get(n) for n in (only or RECIPES.names())]
            built = []
            for r in recipes:
                with step_progress(r.name, enabled=not json_out) as progress:
                    spec = build_one(r, runs, data_dir=data, out_dir=out_dir, progress=progress)
                built.append({"name": spec.name, **spec.metrics})
                if not json_out:
                    err_console.print(f"{spec.name}: test accuracy {spec.metrics['test_accuracy']:.4f}")
            manifest = write_manifest(out_dir)
        if json_out:
            emit_json({"built": built, "manifest_models": len(manifest["models"])})
