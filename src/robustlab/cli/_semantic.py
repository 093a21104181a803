"""``robustlab semantic``: the semantic attack (image attributes plus a small pixel residual) on a model and a dataset
subset, judged by re-rendering, with the diagnosis of which attributes make the model fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from robustlab.cli._attack import _parse_params
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
    ThreadsOpt,
    check_writable,
    count_progress,
    emit_json,
    fmt,
    load_inputs,
    out_console,
    set_threads,
    user_errors,
)
from robustlab.errors import ConfigError

#: What ``--out DIR`` holds.
OUT_FILES = ("semantic.json", "records.parquet", "grid.png")
#: Search settings ``-p`` may set (the others have options of their own).
_PARAMS = ("grid", "single_starts", "loss", "rel_step", "early_stop", "padding")
#: The command's own settings: a ``-p`` of one of them points to the option.
_OWN = {"preset", "attributes", "pixel_eps", "steps", "restarts", "shapley", "seed", "batch_size", "progress", "index"}


def _attributes(text: str | None) -> list[str] | None:
    """``--attributes hue,rotation`` → the names (checked by the threat model)."""
    if text is None:
        return None
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise ConfigError(f"--attributes expects comma-separated attribute names, e.g. hue,rotation; got {text!r}")
    return names


def _ranges(items: list[str]) -> dict[str, tuple[float, float]]:
    """``--range hue=-0.5:0.5`` (repeatable) → attribute → (low, high) (the domain is the threat model's check)."""
    from robustlab.metrics.semantic import parse_range

    out: dict[str, tuple[float, float]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--range expects NAME=LOW:HIGH, e.g. hue=-0.5:0.5 or rotation=-15:15; got {item!r}")
        if name in out:
            raise ConfigError(f"--range {name}: given twice")
        out[name] = parse_range(text, f"--range {name}")
    return out


def _pixel_eps(text: str | None) -> float | None:
    from robustlab.attacks import parse_eps

    try:
        return parse_eps(text)
    except ConfigError as exc:
        raise ConfigError(f"--pixel-eps: {exc} (the pixel budget; 0: attributes only)") from None


def _settings(params: dict[str, Any], steps: int | None, restarts: int | None) -> tuple[dict[str, Any], str | None]:
    """The search settings (checked) and the padding, from ``-p`` and the options.

    Raises:
        ConfigError: an unknown ``-p`` setting (close matches named) or an invalid value.
    """
    import difflib

    from robustlab.metrics.semantic import semantic_config

    for key in params:
        if key not in _PARAMS:
            close = difflib.get_close_matches(key, [*_PARAMS, *(k.replace("_", "-") for k in _OWN)], n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown semantic setting {key!r}.{hint} -p takes: {', '.join(_PARAMS)}.")
    padding = params.pop("padding", None)
    search = {**params, **({"steps": steps} if steps is not None else {})}
    search.update({"restarts": restarts} if restarts is not None else {})
    semantic_config(search)
    return search, padding


def register(app: typer.Typer) -> None:
    """Add the ``semantic`` command to ``app``."""

    @app.command("semantic")
    def semantic_cmd(
        model: ModelOpt,
        dataset: DatasetOpt = "cifar10",
        n: NOpt = None,
        preset: Annotated[
            str,
            typer.Option(
                "--preset",
                help="mild (class-preserving changes, for diagnosis) or caa (ART's composite attack's ranges).",
            ),
        ] = "mild",
        attributes: Annotated[
            str | None,
            typer.Option(
                "--attributes",
                help="Comma-separated attributes (default: the preset's): rotation, translate_x, translate_y, scale, "
                "hue, hue_hsv, saturation, saturation_hsv, contrast, contrast_mult, brightness, gamma, blur.",
            ),
        ] = None,
        range_: Annotated[
            list[str] | None,
            typer.Option(
                "--range",
                help="An attribute's range NAME=LOW:HIGH, repeatable (e.g. hue=-pi/6:pi/6, rotation=-15:15).",
            ),
        ] = None,
        pixel_eps: Annotated[
            str | None,
            typer.Option("--pixel-eps", help="L∞ budget of the pixel residual, e.g. 1/255 (default: the preset's)."),
        ] = None,
        steps: Annotated[
            int | None,
            typer.Option(
                "--steps",
                min=0,
                help=(
                    "Sign steps per ascent; 0: the single-attribute sweeps alone (forward passes only; needs "
                    "--restarts 0)."
                ),
            ),
        ] = None,
        restarts: Annotated[
            int | None, typer.Option("--restarts", min=0, help="Random joint restarts after the fixed starts.")
        ] = None,
        shapley: Annotated[
            bool, typer.Option("--shapley", help="Also exact Shapley values over the attributes (2^A passes each).")
        ] = False,
        param: Annotated[
            list[str] | None,
            typer.Option(
                "--param",
                "-p",
                help="Setting KEY=VALUE, repeatable: grid, single_starts, loss, rel_step, early_stop, padding.",
            ),
        ] = None,
        seed: SeedOpt = 0,
        batch_size: BatchSizeOpt = 256,
        threads: ThreadsOpt = None,
        grid_png: Annotated[
            Path | None,
            typer.Option("--grid-png", help="Write a grid of up to 8 successes (clean | adversarial | values) here."),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option("--out", help=f"Write {', '.join(OUT_FILES)} (the grid when anything succeeded) here."),
        ] = None,
        device: DeviceOpt = "cpu",
        route: RouteOpt = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Attack MODEL on DATASET with image attributes (and a pixel residual) and diagnose which attributes make
        it fail: necessity and single-attribute histograms, per class."""
        from robustlab.attacks import attack
        from robustlab.metrics.semantic import diagnosis, histogram_methods
        from robustlab.threat import semantic_threat

        set_threads(threads)
        with user_errors():
            own = _parse_params(param or [], _OWN)
            search, padding = _settings(own, steps, restarts)
            threat = semantic_threat(
                preset, _attributes(attributes), _ranges(range_ or []), _pixel_eps(pixel_eps), padding
            )
            if grid_png is not None:
                check_writable(grid_png, "--grid-png")  # before the work, not after it
            if out is not None:
                check_writable(out, "--out", folder=True)
            inputs = load_inputs(model, dataset, "test", n, seed, data, device, route)
            ds = inputs.data
            images = ds.images().to(device)
            threat.check_images(images)  # colour attributes on grey images, before the attack
            with count_progress("semantic", "model calls (at most)") as bar:
                result = attack(
                    inputs.model,
                    images,
                    ds.y.to(device),
                    "semantic",
                    eps=threat.pixel_eps,
                    seed=seed,
                    batch_size=batch_size,
                    keep_adversarials=grid_png is not None or out is not None,
                    progress=bar,
                    index=ds.indices,
                    preset=threat.preset,
                    attributes=list(threat.attributes),
                    ranges=threat.ranges(),
                    padding=threat.padding,
                    shapley=shapley,
                    **search,
                )
            cols = result.to_columns()
            methods = histogram_methods(bool(result.params["single_starts"]), shapley)
            diag = diagnosis(cols, threat.attributes, methods, ds.classes)
            payload = _payload(result, diag, model, dataset, inputs.subset, shapley)
            title = f"{model} on {ds.name}"
            written = _write(result, images, cols, threat.ranges(), ds.classes, payload, grid_png, out, title)
        payload.update(written)
        if json_out:
            emit_json({**payload, "route": inputs.model.route})
            return
        _print(payload, model)


def _payload(
    result: Any, diag: dict[str, Any], model: str, dataset: str, subset: bool, shapley: bool
) -> dict[str, Any]:
    """The ``--json`` object: the rates with their intervals, the histograms, per class, the threat model, costs."""
    s = result.summary()
    threat = {k: s[k] for k in ("preset", "attributes", "ranges", "pixel_eps", "padding")}
    config = {k: v for k, v in result.params.items() if k not in threat}
    return {
        "model": model,
        "dataset": dataset,
        "subset": subset,
        "seed": s["seed"],
        "n": s["n"],
        **{k: s[k] for k in ("clean_accuracy", "robust_accuracy", "success_rate", "rates", "n_correct", "n_success")},
        "histogram": diag["histogram"],
        "histograms": diag["histograms"],
        "per_class": diag["per_class"],
        "single_attribute": s["single_attribute"],
        "threat": threat,
        "config": {**config, "shapley": shapley},
        "forward_passes": s["forward_passes"],
        "gradient_passes": s["gradient_passes"],
        "model_calls": s["forward_passes"] + s["gradient_passes"],
        "seconds": s["seconds"],
        "median_linf": s["median_linf"],
        "warnings": s["warnings"],
    }


def _grid(
    result: Any, images: Any, cols: dict[str, list[Any]], ranges: Any, classes: Any, path: Path, title: str
) -> Path | None:
    """The grid of up to 8 successes (clean | re-rendered adversarial | classes and attribute values) as a PNG;
    ``None`` (and no file) when nothing succeeded."""
    from robustlab.metrics.semantic import examples
    from robustlab.report.figures import example_grid_png

    rows, captions = examples(cols, ranges, classes)
    if not rows or result.adversarials is None:
        return None
    adv = result.adversarials.cpu()
    return example_grid_png([images[i].cpu() for i in rows], [adv[i] for i in rows], captions, path, title)


def _write(
    result: Any,
    images: Any,
    cols: dict[str, list[Any]],
    ranges: Any,
    classes: Any,
    payload: dict[str, Any],
    grid_png: Path | None,
    out: Path | None,
    title: str,
) -> dict[str, Any]:
    """The grid (``--grid-png``) and the ``--out`` folder, after the work, each file atomically. If any write fails
    (a full disk, an interrupt), what this call wrote is removed again (the folder too, if it made it)."""
    import shutil

    from robustlab._io import atomic_path, atomic_write_text

    table: Any = None
    if out is not None:
        import pyarrow as pa

        table = pa.table(cols)  # before anything is written
    written: dict[str, Any] = {"grid_png": None, "out": None}
    made_out = out is not None and not out.exists()
    try:
        if grid_png is not None:
            grid = _grid(result, images, cols, ranges, classes, grid_png, title)
            written["grid_png"] = None if grid is None else str(grid)
        if out is not None:
            written["out"] = str(out)
            out.mkdir(parents=True, exist_ok=True)
            import pyarrow.parquet as pq

            with atomic_path(out / "records.parquet") as tmp:
                pq.write_table(table, tmp, compression="zstd")
            _grid(result, images, cols, ranges, classes, out / "grid.png", title)
            text = json.dumps({**payload, **written}, default=str, indent=1) + "\n"
            atomic_write_text(out / "semantic.json", text)
    except BaseException:
        if written["grid_png"] is not None:
            Path(written["grid_png"]).unlink(missing_ok=True)
        if out is not None and made_out:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return written


def _print(payload: dict[str, Any], model: str) -> None:
    """The histogram as a table (attribute | fooled alone | necessity | share), then per class the top attribute."""
    from rich.table import Table

    from robustlab.attacks import format_eps
    from robustlab.metrics.semantic import top_attribute

    def cell(r: dict[str, Any] | None) -> str:
        return "-" if r is None or not r["n"] else f"{fmt(r['value'])} ({r['k']}/{r['n']})"

    t = payload["threat"]
    eps = f", pixel L∞ {format_eps(t['pixel_eps'])}" if t["pixel_eps"] else ", no pixel residual"
    h = payload["histogram"]
    table = Table(
        "attribute", "fooled alone", "necessity", "share", title=f"semantic attack ({t['preset']}{eps}) on {model}"
    )
    for a in t["attributes"]:
        table.add_row(a, cell(payload["single_attribute"].get(a)), cell(h["rates"].get(a)), fmt(h["share"].get(a)))
    out_console.print(table)
    rates = payload["rates"]
    for name in ("clean_accuracy", "robust_accuracy", "success_rate"):
        r = rates[name]
        out_console.print(f"{name}: {fmt(r['value'])} (95 % {fmt(r['low'])}–{fmt(r['high'])}, {r['k']}/{r['n']})")
    out_console.print(
        f"necessity over {h['n']} successes; fooled alone over {payload['n_correct']} clean-correct images; "
        f"{payload['model_calls']} model calls, {fmt(payload['seconds'])} s",
        soft_wrap=True,
    )
    head = ("class", "images", "clean-correct", "successes", "robust accuracy", "top attribute (necessity)")
    classes = Table(*head, title="per class")
    for name, c in payload["per_class"].items():
        top = top_attribute(c["histograms"]["necessity"])
        hist = c["histograms"]["necessity"]
        text = "-" if top is None else f"{top} ({hist['count'][top]}/{hist['denominator'][top]})"
        classes.add_row(name, str(c["n"]), str(c["n_correct"]), str(c["n_success"]), cell(c["robust_accuracy"]), text)
    out_console.print(classes)
    for key in ("grid_png", "out"):
        if payload.get(key):
            out_console.print(f"{key.replace('_', ' ')}: {payload[key]}", soft_wrap=True)
