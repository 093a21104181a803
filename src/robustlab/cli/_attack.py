"""``robustlab attack``: run one attack on a model and a dataset subset, judged by the evaluator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from robustlab.cli._common import (
    DataOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    NOpt,
    SeedOpt,
    check_writable,
    count_progress,
    emit_json,
    fmt,
    load_inputs,
    out_console,
    user_errors,
)
from robustlab.errors import ConfigError

#: Settings of ``attack()`` whose command-line option is not ``--`` + the name; a key the command passes and
#: that is not here is spelled ``--<name>``.
_OPTION_NAMES = {"keep_adversarials": "--save-adversarials"}
#: Settings the command passes that no option sets.
_NOT_OPTIONS = {"progress", "index"}


def _parse_params(items: list[str], own: set[str]) -> dict[str, Any]:
    """``["restarts=5", "loss=margin"]`` → ``{"restarts": 5, "loss": "margin"}`` (values read as JSON if they can).

    Args:
        items: The ``--param`` values.
        own: The settings the command passes to ``attack()`` itself: a ``--param`` of the same name is refused,
            pointing to the command's option.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}")
        if key in own:
            option = _OPTION_NAMES.get(key, "--" + key.replace("_", "-"))
            raise ConfigError(
                f"--param {key}: not an attack setting"
                if key in _NOT_OPTIONS
                else f"--param {key}: use the command's own option {option}"
            )
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key] = value
    return out


def register(app: typer.Typer) -> None:
    """Add the ``attack`` command to ``app``."""

    @app.command("attack")
    def attack_cmd(
        model: ModelOpt,
        dataset: DatasetOpt = "cifar10",
        n: NOpt = None,
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
        seed: SeedOpt = 0,
        batch_size: Annotated[
            int | None, typer.Option("--batch-size", min=1, help="Images attacked at once (default: the attack's).")
        ] = None,
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
        from rich.table import Table

        from robustlab.attacks import attack, parse_eps

        with user_errors():
            settings: dict[str, Any] = {
                "norm": norm,
                "eps": parse_eps(eps),
                "steps": steps,
                "target": target,
                "minimal": minimal,
                "seed": seed,
                "batch_size": batch_size,
                "keep_adversarials": save_adversarials is not None,
            }
            params = _parse_params(param or [], {*settings, *_NOT_OPTIONS})
            if batch_size is None:
                del settings["batch_size"]  # the library's bounded default, not "all images at once"
            if save_adversarials is not None:
                check_writable(save_adversarials, "--save-adversarials")  # before the work, not after it
            inputs = load_inputs(model, dataset, "test", n, seed, data, device)
            ds = inputs.data
            with count_progress(f"{attack_name}", "model calls (at most)") as bar:
                result = attack(
                    inputs.model,
                    ds.images().to(device),
                    ds.y.to(device),
                    attack_name,
                    **settings,
                    progress=bar,
                    index=ds.indices,  # the dataset rows, recorded and saved with the adversarial examples
                    **params,
                )
            saved = str(result.save_adversarials(save_adversarials)) if save_adversarials is not None else None
        summary = result.summary()
        payload = {
            "model": model,
            "dataset": dataset,
            "subset": inputs.subset,
            "adversarials": saved,
            **summary,
            "params": result.params,
        }
        if json_out:
            emit_json(payload)
            return
        searched = "search_attempts" in result.extra  # a fixed-budget attack run with --minimal
        budget_text = f"minimal search from eps={fmt(result.eps)}" if searched else f"eps={fmt(result.eps)}"
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
            r = summary.get("rates", {}).get(key)
            interval = "" if r is None else f" (95 % {fmt(r['low'])}–{fmt(r['high'])}, {r['k']}/{r['n']})"
            table.add_row(key, fmt(summary.get(key)) + interval)
        if saved:
            table.add_row("adversarials", saved)
        out_console.print(table)
