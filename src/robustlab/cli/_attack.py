"""``robustlab attack``: run one attack on a model and a dataset subset, judged by the evaluator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from robustlab.cli._common import (
    DataOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    count_progress,
    emit_json,
    out_console,
    user_errors,
)
from robustlab.errors import ConfigError

# Settings the command passes itself: a --param of the same name would collide with them.
_OWN_OPTIONS = {
    "norm": "--norm",
    "eps": "--eps",
    "steps": "--steps",
    "target": "--target",
    "minimal": "--minimal",
    "seed": "--seed",
    "batch_size": "--batch-size",
    "keep_adversarials": "--save-adversarials",
    "progress": None,
}


def _parse_params(items: list[str]) -> dict[str, Any]:
    """``["restarts=5", "loss=margin"]`` → ``{"restarts": 5, "loss": "margin"}`` (values read as JSON if they can)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}")
        if key.strip() in _OWN_OPTIONS:
            option = _OWN_OPTIONS[key.strip()]
            raise ConfigError(
                f"--param {key.strip()}: use the command's own option {option}"
                if option
                else f"--param {key.strip()}: not an attack setting"
            )
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def register(app: typer.Typer) -> None:
    """Add the ``attack`` command to ``app``."""

    @app.command("attack")
    def attack_cmd(
        model: ModelOpt,
        dataset: DatasetOpt = "cifar10",
        n: Annotated[int | None, typer.Option("--n", help="Attack a seeded subset of N images (default: all).")] = None,
        attack_name: Annotated[
            str, typer.Option("--attack", "-a", help="fgsm, ifgsm, pgd, mifgsm, cw or ead.")
        ] = "pgd",
        norm: Annotated[str | None, typer.Option("--norm", help="linf, l2 or l1 (default: the attack's own).")] = None,
        eps: Annotated[
            str | None, typer.Option("--eps", help="Budget, e.g. 8/255 or 0.5 (default: the norm's usual one).")
        ] = None,
        steps: Annotated[int | None, typer.Option("--steps", help="Gradient steps / inner iterations.")] = None,
        target: Annotated[
            str, typer.Option("--target", help="untargeted, random, least-likely or top2.")
        ] = "untargeted",
        minimal: Annotated[
            bool,
            typer.Option(
                "--minimal",
                help="Search each image's smallest successful eps, starting from --eps (halve after a success, "
                "midpoint after a failure); -p warm_start=true starts each attempt from the best success so far.",
            ),
        ] = False,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the subset and of the attack.")] = 0,
        batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images attacked at once.")] = None,
        param: Annotated[
            list[str] | None,
            typer.Option("--param", "-p", help="Attack setting KEY=VALUE, repeatable (e.g. restarts=5, kappa=0.5)."),
        ] = None,
        save_adversarials: Annotated[
            Path | None, typer.Option("--save-adversarials", help="Write the adversarial examples (safetensors).")
        ] = None,
        device: DeviceOpt = "cpu",
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Attack MODEL on DATASET and report robust accuracy, success rate and distortions."""
        from robustlab.attacks import attack, parse_eps
        from robustlab.data import load_dataset
        from robustlab.models import load_model

        with user_errors():
            params = _parse_params(param or [])
            budget = parse_eps(eps)
            full = load_dataset(dataset, "test", data)
            ds = full.subset(n, seed)
            net = load_model(model, data_dir=data, device=device)
            x = ds.images().to(device)
            y = ds.y.to(device)
            with count_progress(f"{attack_name}: gradient passes (at most)") as bar:
                result = attack(
                    net,
                    x,
                    y,
                    attack_name,
                    norm=norm,
                    eps=budget,
                    steps=steps,
                    target=target,
                    minimal=minimal,
                    seed=seed,
                    batch_size=batch_size,
                    keep_adversarials=save_adversarials is not None,
                    progress=bar,
                    **params,
                )
            saved = str(result.save_adversarials(save_adversarials)) if save_adversarials is not None else None
        summary = result.summary()
        payload = {
            "model": model,
            "dataset": dataset,
            "subset": len(ds) < len(full),
            "adversarials": saved,
            **summary,
            "params": result.params,
        }
        if json_out:
            emit_json(payload)
            return
        searched = "search_attempts" in result.extra  # a fixed-budget attack run with --minimal
        budget_text = f"minimal search from eps={_fmt(result.eps)}" if searched else f"eps={_fmt(result.eps)}"
        aim = "" if result.target_mode == "untargeted" else f", {result.target_mode} target"
        table = Table("metric", "value", title=f"{result.attack} ({result.norm}, {budget_text}{aim}) on {model}")
        for key in (
            "n",
            "clean_accuracy",
            "robust_accuracy",
            "success_rate",
            "median_l2",
            "mean_l2",
            "median_linf",
            "median_l1",
            "gradient_passes",
            "gradient_passes_saved",
            "seconds",
        ):
            table.add_row(key, _fmt(summary.get(key)))
        if saved:
            table.add_row("adversarials", saved)
        out_console.print(table)
