"""``robustlab zoo``: list the registered models, evaluate them, and build (train) the zoo."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated

import typer

from robustlab.cli._common import (
    DataOpt,
    JsonOpt,
    NOpt,
    ThreadsOpt,
    count_progress,
    emit_json,
    notice,
    out_console,
    set_threads,
    step_progress,
    user_errors,
)
from robustlab.errors import ConfigError, UnknownNameError

#: What ``--sweep`` selects, in the options' help.
_SWEEP_HELP = "The TRADES β sweep's arms (vgg8-w25 at β 1 and 3; an experiment beside the robust zoo, own folder)"

#: The values of ``ModelSpec.source`` that ``--source`` accepts.
_SOURCES = ("zoo", "published")


def _check_source(source: str | None) -> None:
    """Refuse an unknown ``--source`` (with the close match) instead of listing nothing."""
    if source is None or source in _SOURCES:
        return
    import difflib

    close = difflib.get_close_matches(source, _SOURCES, n=1, cutoff=0.5)
    hint = f" Did you mean: {close[0]}?" if close else ""
    raise UnknownNameError(f"unknown --source {source!r}.{hint} Sources: {', '.join(_SOURCES)}.")


@contextmanager
def _zoo_progress(enabled: bool) -> Iterator[Callable[[str, int, int, int, int, float], None]]:
    """``build_zoo``'s progress: one training progress display per recipe, opened when its first step arrives."""
    with ExitStack() as stack:
        current: dict[str, Callable[[int, int, int, float], None]] = {}

        def update(name: str, epochs: int, epoch: int, step: int, steps: int, loss: float) -> None:
            if name not in current:
                stack.close()
                current.clear()
                current[name] = stack.enter_context(step_progress(name, epochs, enabled))
            current[name](epoch, step, steps, loss)

        yield update


def _eps_text(eps: float) -> str:
    """``8/255`` for a budget on the 1/255 grid, else 4 significant digits."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 and k >= 1 else f"{eps:.4g}"


def _built(folder: Path) -> dict[str, dict[str, object]]:
    """The entries of ``folder``'s manifest by name (none when it has no manifest)."""
    import json

    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return {}
    return {e["name"]: e for e in json.loads(manifest.read_text(encoding="utf-8"))["models"]}


def _list_robust(json_out: bool, sweep: bool) -> None:
    """``zoo list --robust``: every robust recipe, built or not, with its budget and robust accuracies. ``--sweep``:
    the TRADES β sweep in order of β, its own arms and the robust zoo's β 6 model, with a β column."""
    from typing import Any

    from rich.table import Table

    from robustlab.train.post_audit import describe
    from robustlab.train.zoo import PENDING, ROBUST_RECIPES, ROBUST_ZOO_DIR, SWEEP_BASE, SWEEP_RECIPES, SWEEP_ZOO_DIR

    arms: list[tuple[Any, dict[str, Any]]]  # (recipe, its manifest entry or {})
    if sweep:
        built, zoo_built = _built(SWEEP_ZOO_DIR), _built(ROBUST_ZOO_DIR)
        arms = [(SWEEP_RECIPES.get(n), built.get(n, {})) for n in SWEEP_RECIPES.names()]
        arms.append((ROBUST_RECIPES.get(SWEEP_BASE), zoo_built.get(SWEEP_BASE, {})))
        arms.sort(key=lambda arm: float(arm[0].config.method_params["beta"]))
    else:
        built = _built(ROBUST_ZOO_DIR)
        arms = [(ROBUST_RECIPES.get(n), built.get(n, {})) for n in ROBUST_RECIPES.names()]
    rows = []
    for r, e in arms:
        rob = e.get("robust", {})
        rows.append(
            {
                "name": r.name,
                "dataset": r.dataset,
                "method": r.config.method,
                "norm": r.config.method_params.get("norm", "linf"),
                "eps": r.config.method_params.get("eps"),
                "built": bool(e),
                "test_accuracy": e.get("test_accuracy"),
                "pgd20": rob.get("pgd20"),
                "autoattack": rob.get("autoattack", PENDING if e else None),
                "audit": e.get("audit"),
                **({"beta": r.config.method_params["beta"], "robust_zoo": r.name == SWEEP_BASE} if sweep else {}),
            }
        )
    if json_out:
        emit_json({"models": rows})
        return
    head = ["name", "dataset", "method", "budget", "clean acc", "PGD-20", "AutoAttack", "audit"]
    title = f"TRADES β sweep ({SWEEP_BASE}: the robust zoo's β 6 model)" if sweep else None
    table = Table(*head[:3], *(["β"] if sweep else []), *head[3:], title=title)
    for row in rows:
        aa = row["autoattack"]
        table.add_row(
            row["name"],
            row["dataset"],
            row["method"],
            *([f"{row['beta']:g}"] if sweep else []),
            f"{row['norm']} {_eps_text(row['eps'])}",
            "not built" if not row["built"] else f"{row['test_accuracy']:.4f}",
            "" if row["pgd20"] is None else f"{row['pgd20']:.4f}",
            "" if aa is None else aa if isinstance(aa, str) else f"{aa:.4f}",
            "" if row["audit"] is None else describe(row["audit"]),
            style=None if row["built"] else "dim",
        )
    out_console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``zoo`` commands to ``app``."""
    zoo_app = typer.Typer(help="The model zoo: list models, build (train) the zoo.", no_args_is_help=True)
    app.add_typer(zoo_app, name="zoo")

    @zoo_app.command("list")
    def list_cmd(
        source: Annotated[str | None, typer.Option(help="Only 'zoo' or 'published' models.")] = None,
        archs: Annotated[bool, typer.Option("--archs", help="List architecture names instead.")] = False,
        robust: Annotated[
            bool,
            typer.Option(
                "--robust", help="The robust zoo: budget, PGD-20 and AutoAttack robust accuracy, the audit's verdict."
            ),
        ] = False,
        sweep: Annotated[bool, typer.Option("--sweep", help=_SWEEP_HELP + ", as --robust lists them.")] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Registered models: zoo models and published checkpoints (--robust: the adversarially trained zoo;
        --sweep: the TRADES β sweep beside it)."""
        from rich.table import Table

        from robustlab.models import ARCHITECTURES, list_models

        if robust or sweep:
            _list_robust(json_out, sweep)
            return
        if archs:
            if json_out:
                emit_json({"architectures": ARCHITECTURES.names()})
            else:
                out_console.print("\n".join(ARCHITECTURES.names()))
            return
        with user_errors():
            _check_source(source)
        specs = list_models(source)
        if json_out:
            emit_json({"models": [s.describe() for s in specs]})
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
        n: NOpt = None,
        source: Annotated[str | None, typer.Option(help="Only 'zoo' or 'published' models.")] = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Clean CIFAR-10 accuracy of every registered model whose weights are available, against its record."""
        from rich.table import Table

        from robustlab.metrics.zoo_accuracy import evaluate_registered

        with user_errors():
            _check_source(source)
            with count_progress("zoo eval", "models") as bar:
                rows = evaluate_registered(source=source, n=n, data_dir=data, progress=bar)
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
        robust: Annotated[
            bool, typer.Option("--robust", help="Build the adversarially trained zoo (its own folder and manifest).")
        ] = False,
        sweep: Annotated[bool, typer.Option("--sweep", help=_SWEEP_HELP + ", built and recorded as --robust.")] = False,
        audit: Annotated[
            bool,
            typer.Option(
                "--audit/--no-audit",
                help="--robust, --sweep: run the gradient-masking audit on each built model and record its verdict.",
            ),
        ] = True,
        audit_n: Annotated[int, typer.Option("--audit-n", help="Points each audit runs on.")] = 300,
        threads: ThreadsOpt = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Train the zoo on CIFAR-10 (resumable), export weights and rewrite the manifest (--robust: the robust zoo,
        CIFAR-10 at 8/255 and MNIST at 0.3, with PGD-20 and AutoAttack robust accuracy and the gradient-masking
        audit's verdict recorded; --no-audit skips the audit; --sweep: the TRADES β sweep's arms, recorded the same
        way)."""
        from robustlab.cli._common import check_writable
        from robustlab.models import ZOO_DIR
        from robustlab.models.spec import ModelSpec
        from robustlab.train.zoo import ROBUST_ZOO_DIR, SWEEP_ZOO_DIR, build_zoo

        set_threads(threads)
        out_dir = out or (SWEEP_ZOO_DIR if sweep else ROBUST_ZOO_DIR if robust else ZOO_DIR)

        def built(spec: ModelSpec) -> None:
            if not json_out:
                r = spec.metrics.get("robust")
                extra = f", PGD-20 robust accuracy {r['pgd20']:.4f} at eps {r['eps']:.4g}" if r else ""
                if "audit" in spec.metrics:
                    extra += f"; audit: {spec.metrics['audit']['verdict']}"
                notice(f"{spec.name}: test accuracy {spec.metrics['test_accuracy']:.4f}{extra}")

        with user_errors():
            if audit_n < 1:
                raise ConfigError(f"--audit-n must be >= 1 (points audited), got {audit_n}")
            check_writable(out_dir, "--out", folder=True)
            check_writable(runs, "--runs", folder=True)
            with _zoo_progress(enabled=not json_out) as progress:
                result = build_zoo(
                    only,
                    runs,
                    out_dir,
                    data_dir=data,
                    progress=progress,
                    on_built=built,
                    robust=robust,
                    sweep=sweep,
                    audit_n=audit_n if (robust or sweep) and audit else None,
                    on_phase=None if json_out else lambda name, what: notice(f"{name}: {what} ..."),
                )
        if json_out:
            emit_json(
                {
                    "built": [{"name": s.name, **s.metrics} for s in result.built],
                    "manifest_models": len(result.manifest["models"]),
                }
            )

    @zoo_app.command("audit")
    def audit_cmd(
        robust: Annotated[
            bool, typer.Option("--robust", help="Audit the robust zoo (the only zoo with a budget).")
        ] = False,
        sweep: Annotated[bool, typer.Option("--sweep", help=_SWEEP_HELP + ", audited as --robust.")] = False,
        only: Annotated[list[str] | None, typer.Option("--only", help="Audit only these models (repeatable).")] = None,
        n: Annotated[int, typer.Option("--n", help="Test points audited per model (the first N).")] = 300,
        param: Annotated[
            list[str] | None,
            typer.Option("--param", "-p", help="Audit budget KEY=VALUE, repeatable (as in `robustlab audit`)."),
        ] = None,
        out: Annotated[
            Path | None, typer.Option(help="The robust zoo (or sweep) folder (default: the package's).")
        ] = None,
        device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
        threads: ThreadsOpt = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Audit built robust zoo models for gradient masking at their budget and record the verdict, the honest
        number and the flags in their sidecars and the manifest (shown by `zoo list --robust`)."""
        from robustlab.cli._attack import _parse_params
        from robustlab.cli._audit import _config
        from robustlab.cli._common import check_writable
        from robustlab.errors import ConfigError
        from robustlab.train.post_audit import describe
        from robustlab.train.zoo import ROBUST_ZOO_DIR, SWEEP_ZOO_DIR, audit_zoo

        set_threads(threads)
        with user_errors():
            if not (robust or sweep):
                raise ConfigError(
                    "zoo audit audits the robust zoo at each model's training budget: add --robust (or --sweep for "
                    "the β sweep; the standard zoo has no budget: audit one with `robustlab audit --model M --eps ...`)"
                )
            if n < 1:
                raise ConfigError(f"--n must be >= 1 (points audited per model), got {n}")
            config = _config(_parse_params(param or [], set()))
            folder = out or (SWEEP_ZOO_DIR if sweep else ROBUST_ZOO_DIR)
            check_writable(folder, "--out", folder=True)

            def audited(name: str, summary: dict[str, object]) -> None:
                if not json_out:
                    notice(f"{name}: {describe(summary)}; {summary['verdict']}")

            with count_progress("zoo audit", "model calls") as bar:
                rows = audit_zoo(
                    only,
                    folder,
                    n=n,
                    config=config,
                    data_dir=data,
                    device=device,
                    progress=lambda model, label, done, total: bar(done, total, description=f"{model} {label}"),
                    on_audited=audited,
                )
        if json_out:
            emit_json({"n": n, "models": rows})
