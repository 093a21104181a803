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
    RouteOpt,
    SeedOpt,
    check_writable,
    count_progress,
    emit_json,
    fmt,
    load_inputs,
    out_console,
    user_errors,
)
from robustlab.errors import ConfigError, RobustlabError

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
            str,
            typer.Option(
                "--attack",
                "-a",
                help="A registered attack: fgsm, ifgsm, pgd, mifgsm, cw, ead, apgd, apgd-t, fab-t, square, autoattack, "
                "gpga (needs --surrogate).",
            ),
        ] = "pgd",
        loss: Annotated[
            str | None,
            typer.Option("--loss", help="ce or dlr: the loss of an attack that has one (pgd, apgd ...)."),
        ] = None,
        version: Annotated[
            str | None,
            typer.Option("--version", help="standard, plus or rand: the AutoAttack version (--attack autoattack)."),
        ] = None,
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
        surrogate: Annotated[
            str | None,
            typer.Option(
                "--surrogate",
                help="A model of the same data and classes (zoo name or weights file) whose gradients guide the "
                "attack: a transfer attack judged on MODEL; gpga uses both models' gradients.",
            ),
        ] = None,
        save_adversarials: Annotated[
            Path | None, typer.Option("--save-adversarials", help="Write the adversarial examples (safetensors).")
        ] = None,
        device: DeviceOpt = "cpu",
        route: RouteOpt = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Attack MODEL on DATASET and report robust accuracy, success rate and distortions."""
        from rich.table import Table

        from robustlab.attacks import attack, check_takes_surrogate, parse_eps
        from robustlab.models import load_model

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
            params = _parse_params(param or [], {*settings, *_NOT_OPTIONS, "loss", "version"})
            params.update(_own_settings(attack_name, loss, version))
            _check_request(attack_name, params, norm, minimal, steps)  # before loading anything
            if surrogate is not None:
                check_takes_surrogate(attack_name)
            if batch_size is None:
                del settings["batch_size"]  # the library's bounded default, not "all images at once"
            if save_adversarials is not None:
                check_writable(save_adversarials, "--save-adversarials")  # before the work, not after it
            inputs = load_inputs(model, dataset, "test", n, seed, data, device, route)
            ds = inputs.data
            images = ds.images().to(device)
            if surrogate is not None:
                try:
                    settings["surrogate"] = load_model(
                        surrogate, data_dir=data, device=device, input_shape=tuple(images.shape[1:])
                    )
                except RobustlabError as err:
                    raise ConfigError(f"--surrogate {surrogate}: {err}") from err
            with count_progress(f"{attack_name}", "model calls (at most)") as bar:
                result = attack(
                    inputs.model,
                    images,
                    ds.y.to(device),
                    attack_name,
                    **settings,
                    progress=bar,
                    index=ds.indices,  # the dataset rows, recorded and saved with the adversarial examples
                    **params,
                )
            saved = str(result.save_adversarials(save_adversarials)) if save_adversarials is not None else None
        summary = result.summary()
        summary.setdefault("flags", [])  # codes; only some attacks raise flags (AutoAttack's checks)
        payload = {
            "model": model,
            "dataset": dataset,
            "subset": inputs.subset,
            "adversarials": saved,
            "surrogate": surrogate,
            **summary,
            "params": result.params,
        }
        if json_out:
            emit_json({**payload, "route": inputs.model.route})
            return
        searched = "search_attempts" in result.extra  # a fixed-budget attack run with --minimal
        budget_text = f"minimal search from eps={fmt(result.eps)}" if searched else f"eps={fmt(result.eps)}"
        aim = "" if result.target_mode == "untargeted" else f", {result.target_mode} target"
        version_text = f" {summary['version']}" if "version" in summary else ""
        title = f"{result.attack}{version_text} ({result.norm}, {budget_text}{aim}) on {model}"
        table = Table("metric", "value", title=title)
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
        expected = summary.get("expected_robust_accuracy")
        if expected:
            table.add_row(
                "expected_robust_accuracy",
                f"{fmt(expected['value'])} (95 % {fmt(expected['low'])}–{fmt(expected['high'])}, "
                f"{expected['draws']} draws per point)",
            )
        if saved:
            table.add_row("adversarials", saved)
        out_console.print(table)
        _print_cascade(summary)


def _own_settings(attack_name: str, loss: str | None, version: str | None) -> dict[str, Any]:
    """``--loss`` and ``--version`` as the attack's ``loss`` and ``version`` settings.

    Raises:
        UnknownNameError: an unknown attack (close matches suggested).
        ConfigError: ``--loss`` for an attack without a loss, ``--version`` for an attack other than autoattack.
    """
    from robustlab.attacks import ATTACKS

    method = ATTACKS.get(attack_name)
    out: dict[str, Any] = {}
    if loss is not None:
        if "loss" not in method.param_names():
            with_loss = [n for n in ATTACKS.names() if "loss" in ATTACKS.get(n).param_names()]
            raise ConfigError(
                f"--loss applies to attacks with a loss setting ({', '.join(with_loss)}); {method.name!r} has none"
            )
        if loss == "kl":
            raise ConfigError(
                "--loss kl is TRADES' training loss (it needs the clean logits as reference), not an evaluation "
                "loss: use ce, margin or dlr"
            )
        out["loss"] = loss
    if version is not None:
        if "version" not in method.param_names():
            raise ConfigError(f"--version applies to --attack autoattack only, not {method.name!r}; drop --version")
        out["version"] = version
    return out


def _check_request(name: str, params: dict[str, Any], norm: str | None, minimal: bool, steps: int | None) -> None:
    """Validate the attack, norm and settings before any data or model is loaded; for AutoAttack also that the
    version covers the norm (e.g. ``plus`` has no L1 cascade).

    Raises:
        ConfigError, UnknownNameError: what is wrong, with close matches where there are any.
    """
    from robustlab.attacks import ATTACKS, check_params

    check_params(name, params, norm=norm, minimal=minimal, steps=steps)
    method = ATTACKS.get(name)
    if hasattr(method, "stages"):  # a cascade (AutoAttack): its version must cover the norm
        configured: Any = method.configure(steps, None, params)
        configured.stages(norm or method.default_norm)


def _print_cascade(summary: dict[str, Any]) -> None:
    """AutoAttack's cascade as a table, then every flag with its message."""
    from rich.table import Table

    cascade = summary.get("cascade")
    if cascade:
        table = Table("stage", "attacked", "broken", "robust accuracy after", "seconds", title="cascade")
        for c in cascade:
            table.add_row(
                c["attack"], str(c["attacked"]), str(c["broken"]), fmt(c["robust_accuracy_after"]), fmt(c["seconds"])
            )
        out_console.print(table)
        last, final = cascade[-1]["robust_accuracy_after"], summary.get("robust_accuracy")
        if last is not None and final is not None and abs(last - final) > 1e-9:
            out_console.print(
                f"note: the cascade left {fmt(last)} robust, the evaluator's final pass judged {fmt(final)}: the "
                "model's answers change from one pass to the next",
                soft_wrap=True,
            )
    note = summary.get("robust_accuracy_note")
    if note:
        out_console.print(f"note: {note}", soft_wrap=True)
    for f in summary.get("flag_details", []):
        out_console.print(f"flag {f['code']}: {f['message']}", soft_wrap=True)
