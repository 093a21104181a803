"""``robustlab audit``: is a model's robustness real? The gradient-masking audit on a dataset subset."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Annotated, Any

import typer

from robustlab.cli._attack import _parse_params
from robustlab.cli._common import (
    DataOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    NOpt,
    RouteOpt,
    SeedOpt,
    count_progress,
    emit_json,
    fmt,
    load_inputs,
    out_console,
    user_errors,
)
from robustlab.errors import ConfigError, RobustlabError


def _config(params: dict[str, Any]) -> Any:
    """``-p steps_long=50`` settings as an :class:`~robustlab.audit.AuditConfig`.

    Raises:
        ConfigError: an unknown setting (with close matches) or an invalid value.
    """
    from robustlab.audit import AuditConfig

    known = [f.name for f in dataclasses.fields(AuditConfig)]
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown audit setting {key!r}.{hint} Known: {', '.join(known)}.")
    if "sweep" in params:
        value = params["sweep"]
        params["sweep"] = tuple(value) if isinstance(value, list) else (value,)
    return AuditConfig(**params)


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command to ``app``."""

    @app.command("audit")
    def audit_cmd(
        model: ModelOpt,
        dataset: DatasetOpt = "cifar10",
        n: NOpt = None,
        norm: Annotated[str, typer.Option("--norm", help="linf, l2 or l1.")] = "linf",
        eps: Annotated[
            str | None, typer.Option("--eps", help="Budget, e.g. 8/255 or 0.5 (default: the norm's usual one).")
        ] = None,
        surrogate: Annotated[
            str | None,
            typer.Option(
                "--surrogate",
                help="A model of the same data and classes whose gradients guide the transfer attacks (default: "
                "the standard zoo model of the same data with the fewest FLOPs, e.g. vgg8-w25 for CIFAR-10; the "
                "transfer checks are skipped when there is none, or with --surrogate none).",
            ),
        ] = None,
        param: Annotated[
            list[str] | None,
            typer.Option(
                "--param",
                "-p",
                help="Audit budget KEY=VALUE, repeatable: steps_short, steps_long, restarts, apgd_steps, "
                "square_queries, eot_iter, judge_draws, eval_draws, sweep, gradient_points, min_points.",
            ),
        ] = None,
        seed: SeedOpt = 0,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images attacked at once.")] = 256,
        device: DeviceOpt = "cpu",
        route: RouteOpt = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Audit MODEL on DATASET for gradient masking: checks, a ladder of attacks, flags and a verdict."""
        from robustlab.attacks import parse_eps
        from robustlab.audit import audit
        from robustlab.models import load_model
        from robustlab.threat import get_norm

        with user_errors():
            norm_obj = get_norm(norm)
            eps_value = parse_eps(eps) if eps is not None else norm_obj.default_eps
            if eps_value is None or not eps_value > 0:
                raise ConfigError(
                    f"--eps must be > 0, got {eps}: at eps = 0 no attack can change an image, so there is nothing "
                    "to audit"
                )
            config = _config(_parse_params(param or [], set()))  # before loading anything
            inputs = load_inputs(model, dataset, "test", n, seed, data, device, route)
            ds = inputs.data
            images = ds.images().to(device)
            guide: Any = "auto" if surrogate is None else None
            if surrogate is not None and surrogate.lower() != "none":
                try:
                    guide = load_model(surrogate, data_dir=data, device=device, input_shape=tuple(images.shape[1:]))
                except RobustlabError as err:
                    raise ConfigError(f"--surrogate {surrogate}: {err}") from err
            with count_progress("audit", "model calls") as bar:
                result = audit(
                    inputs.model,
                    images,
                    ds.y.to(device),
                    eps=eps_value,
                    norm=norm_obj.name,
                    surrogate=guide,
                    surrogate_name=surrogate if guide is not None and guide != "auto" else None,
                    dataset=ds.name,
                    config=config,
                    seed=seed,
                    batch_size=batch_size,
                    index=ds.indices,
                    progress=lambda label, done, total: bar(done, total, description=f"audit {label}"),
                )
        payload = {"model": model, "dataset": dataset, "subset": inputs.subset, "seed": seed, **result.to_dict()}
        if json_out:
            emit_json({**payload, "route": inputs.model.route})
            return
        _print(result, model)


def _print(result: Any, model: str) -> None:
    """The ladder as a table, the flags with their evidence and fix, the verdict."""
    from rich.table import Table

    title = f"audit of {model} ({result.norm}, eps={fmt(result.eps)}, {result.n} points)"
    table = Table("attack", "eps", "attacked", "broken", "robust accuracy", "seconds", title=title)
    table.add_row("clean", "-", "-", "-", fmt(result.clean_accuracy), "-")
    for r in result.rungs:
        alone = " (alone)" if r.rung.standalone else ""
        table.add_row(
            r.rung.label, fmt(r.eps), str(r.attacked), str(r.broken), fmt(r.robust_accuracy) + alone, fmt(r.seconds)
        )
    out_console.print(table)
    choice = result.surrogate_choice
    if choice is not None and choice.name is not None and choice.how != "given":
        out_console.print(f"surrogate {choice.name}: {choice.reason}", soft_wrap=True)
    for s in result.skipped:
        out_console.print(f"skipped {s['attack']}: {s['reason']}", soft_wrap=True)
    for f in result.flags:
        out_console.print(f"flag {f.code}: {f.evidence}", soft_wrap=True)
        out_console.print(f"  fix: {f.check.fix}", soft_wrap=True)
    out_console.print(f"verdict: {result.verdict}", soft_wrap=True)
