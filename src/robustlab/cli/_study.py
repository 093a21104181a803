"""``robustlab run`` (the study) and ``robustlab report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robustlab.cli._common import DataOpt, JsonOpt, check_writable, emit_json, job_progress, notice, user_errors


def register(app: typer.Typer) -> None:
    register_classwise(app)

    @app.command("run")
    def run_cmd(
        spec: Annotated[Path | None, typer.Argument(help="Study spec (YAML). Default: the built-in zoo study.")] = None,
        out: Annotated[Path | None, typer.Option(help="Run directory (default: the spec's `output`).")] = None,
        workers: Annotated[int, typer.Option(min=1, help="Local worker processes (1: in-process).")] = 1,
        backend: Annotated[str, typer.Option(help="local or ray.")] = "local",
        address: Annotated[str | None, typer.Option(help="Ray cluster address (backend ray).")] = None,
        num_gpus: Annotated[float, typer.Option(min=0.0, help="GPUs per job (backend ray; fractions allowed).")] = 0.0,
        report: Annotated[bool, typer.Option(help="Write the HTML report at the end.")] = True,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Run (or resume) a robustness study, then write its report. Finished jobs are skipped.

        Progress goes to stderr: a bar per phase on a terminal, one line per finished job otherwise.
        """
        from robustlab.bench import load_spec, make_executor, resolve_output, run_study
        from robustlab.bench.default import default_spec
        from robustlab.report import write_report

        with user_errors():
            study = load_spec(spec) if spec is not None else default_spec(data)
            run_dir = out or resolve_output(study, spec.parent if spec is not None else Path.cwd())
            check_writable(run_dir, "the run directory", folder=True)
            executor = make_executor(
                backend,
                workers=workers,
                address=address,
                data_dir=None if data is None else str(data),
                num_gpus=num_gpus,
            )
            with job_progress(enabled=True) as progress:
                try:
                    summary = run_study(study, run_dir, data_dir=data, executor=executor, progress=progress)
                finally:
                    executor.close()
            result = write_report(run_dir) if report else None
        payload = {**summary.to_dict(), "report": None if result is None else str(result.html)}
        if json_out:
            emit_json(payload)
        else:
            notice(
                f"{summary.executed} job(s) run, {summary.skipped} already done; results in {run_dir}"
                + (f"; report {result.html}" if result else "")
            )

    @app.command("report")
    def report_cmd(
        run: Annotated[Path, typer.Argument(help="Run directory written by `robustlab run`.")],
        out: Annotated[Path | None, typer.Option(help="Where to write (default: the run directory).")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Write report.html (self-contained), figures/*.png and tables/*.csv for a run."""
        from robustlab.report import write_report

        with user_errors():
            check_writable(out or run, "--out" if out else "the run directory", folder=True)
            result = write_report(run, out)
        if json_out:
            emit_json(result.to_dict())
        else:
            notice(f"report: {result.html} ({result.n_plots} plots, {len(result.tables)} tables)")


def register_classwise(app: typer.Typer) -> None:
    @app.command("classwise")
    def classwise_cmd(
        run: Annotated[Path, typer.Argument(help="Run directory written by `robustlab run`.")],
        json_out: JsonOpt = False,
    ) -> None:
        """Class-wise robustness of a finished run: per-class accuracy, confusion, CFPS, and how well CFPS
        tracks per-class vulnerability across models. Computed from the stored records (nothing re-run)."""
        from rich.table import Table

        from robustlab.analysis import analyse_run
        from robustlab.analysis.classwise import worst_class
        from robustlab.cli._common import out_console

        with user_errors():
            analysis = analyse_run(run)
        if json_out:
            emit_json({"run": str(run), "perturbations": [c.to_dict() for c in analysis.classwise]})
            return
        for c in analysis.classwise:
            first = next(iter(c.results.values()))
            table = Table("model", *first.classes, "worst", title=f"CFPS under {c.perturbation}")
            for model, r in c.results.items():
                worst = worst_class(r)  # None when no class has an image: no "worst" to name
                table.add_row(
                    model,
                    *("–" if v is None else f"{v:.3f}" for v in r.cfps),
                    "–" if worst is None else f"{worst[0]} {worst[1]}",
                )
            out_console.print(table)
            if c.correlation is not None:
                out_console.print(
                    f"CFPS vs robust error: Spearman {c.correlation.spearman:.3f} "
                    f"(p={c.correlation.spearman_p:.3g}), Pearson {c.correlation.pearson:.3f}"
                )
