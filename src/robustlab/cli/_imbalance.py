"""``robustlab imbalance``: the imbalanced-data experiment (long-tailed training sets, six arms, several seeds),
resumable, with a table of balanced, minority and worst-class accuracy per imbalance ratio."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from robustlab.cli._common import (
    DataOpt,
    DatasetOpt,
    JsonOpt,
    ThreadsOpt,
    check_writable,
    emit_json,
    notice,
    out_console,
    set_threads,
    user_errors,
)
from robustlab.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

    from robustlab.train.imbalance import ImbalanceConfig

#: A finished run's record in its run directory.
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class _Plan:
    """Everything validated before the first run: the data, the runs and where each goes."""

    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    runs: list[tuple[ImbalanceConfig, Path]]
    settings: dict[str, Any]  # recorded with each result, compared on resume (with the run's own config)


def _split_list(text: str, what: str) -> list[str]:
    items = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not items:
        raise ConfigError(f"{what} is empty: give a comma-separated list")
    return items


def _seeds(text: str) -> list[int]:
    out = []
    for item in _split_list(text, "--seeds"):
        try:
            seed = int(item)
        except ValueError:
            raise ConfigError(f"--seeds: {item!r} is not an integer (e.g. --seeds 0,1,2)") from None
        if seed < 0:
            raise ConfigError(f"--seeds: seeds must be >= 0, got {seed}")
        out.append(seed)
    return out


def _ratio_dir(ratio: float) -> str:
    return f"{ratio:g}"


def _run_config(cfg: ImbalanceConfig, settings: dict[str, Any]) -> dict[str, Any]:
    """What a stored result must match to be reused."""
    own = {k: v for k, v in asdict(cfg).items() if k != "extra"}
    return {**own, **settings}


def _plan(
    dataset: str,
    data: Path | None,
    ratios: list[float],
    arms: list[str],
    seeds: list[int],
    largest: int,
    holdout: int | None,
    out: Path,
    knobs: dict[str, Any],
) -> _Plan:
    """Load the data, check every setting and every stored result; nothing is written.

    Raises:
        ConfigError: a bad setting, a dataset that does not fit the model or cannot supply the long-tailed counts,
            or a stored result of other settings.
    """
    import torch

    from robustlab.data import DATASETS, load_dataset
    from robustlab.models import MODELS, build_model
    from robustlab.models.classes import check_dataset_fits
    from robustlab.train.imbalance import ImbalanceConfig, arm_training, balanced_holdout, long_tailed

    if largest < 1:
        raise ConfigError(f"--largest must be >= 1 (images of the largest class), got {largest}")
    for r in ratios:
        if not r >= 1:
            raise ConfigError(f"--ratio must be >= 1 (largest class / smallest class), got {r:g}")
        if r > largest:
            raise ConfigError(
                f"--ratio {r:g} with --largest {largest} leaves the smallest class less than 1 image: the ratio "
                f"can be at most {largest}"
            )
    # an unknown arm fails here, with close matches
    configs = {
        (r, a, s): ImbalanceConfig(arm=a, ratio=r, seed=s, largest=largest, **knobs)
        for r in ratios
        for a in arms
        for s in seeds
    }
    spec = MODELS.get(knobs["model"])
    full = load_dataset(dataset, "train", data)
    if full.name in DATASETS:
        if holdout is not None:
            raise ConfigError(f"--holdout is for a dataset with one split (npz:, folder:); {dataset} has a test split")
        test_ds = load_dataset(dataset, "test", data)
        train = (full.x, full.y.long())
        test = (test_ds.x, test_ds.y.long())
    else:  # one split: a class-balanced held-out test set first, the long-tailed sets from the rest
        y_all = full.y.long()
        per_class = holdout if holdout is not None else max(1, int(torch.bincount(y_all).min()) // 5)
        train_rows, test_rows = balanced_holdout(y_all, per_class, seed=0)
        train = (full.x[train_rows], y_all[train_rows])
        test = (full.x[test_rows], y_all[test_rows])
    shape = tuple(full.x.shape[1:])
    if spec.input_shape is not None and tuple(spec.input_shape) != shape:
        raise ConfigError(
            f"model {spec.name} takes images of shape {tuple(spec.input_shape)} (C, H, W); {full.name} has {shape}"
        )
    with torch.random.fork_rng(devices=[]):
        check_dataset_fits(build_model(spec, pretrained=False), full.y, full.classes, dataset=full.name)
    k = int(train[1].max()) + 1
    runs = []
    for (r, a, s), cfg in configs.items():
        try:
            lt = long_tailed(train[1], r, s, largest)  # enough images in every class?
        except ConfigError as exc:
            raise ConfigError(f"{full.name} at --ratio {r:g} --largest {largest}: {exc}") from None
        _, tcfg = arm_training(cfg, train[1][lt], k)
        tcfg.training_method()  # the method's settings (e.g. --sia-steps, --pixel-eps)
        runs.append((cfg, out / _ratio_dir(r) / a / f"seed{s}"))
    settings = {"dataset": full.name, "test_images": len(test[1])}
    if full.name not in DATASETS:
        settings["holdout_per_class"] = len(test[1]) // k
    for cfg, run_dir in runs:
        stored = _stored(run_dir)
        if stored is not None and stored.get("config") != _run_config(cfg, settings):
            old, new = stored.get("config") or {}, _run_config(cfg, settings)
            changed = ", ".join(f"{key} ({old.get(key)!r} → {new[key]!r})" for key in new if old.get(key) != new[key])
            raise ConfigError(
                f"{run_dir / RESULT_FILE} holds a run with other settings ({changed or 'unreadable config'}): "
                "use another --out or remove it"
            )
    return _Plan(train, test, runs, settings)


def _stored(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's stored result, ``None`` when there is none."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}): remove it to re-run that arm") from None
    return result if isinstance(result, dict) else None


def _execute(plan: _Plan, data: Path | None) -> list[dict[str, Any]]:
    """Run (or reuse) every run in order, one progress line each on stderr."""
    from robustlab._io import atomic_write_text
    from robustlab.train.imbalance import run_arm

    results = []
    done = sum(_stored(d) is not None for _, d in plan.runs)
    total = len(plan.runs)
    notice(f"imbalance: {total} runs" + (f", {done} already done (reused)" if done else ""))
    for i, (cfg, run_dir) in enumerate(plan.runs, 1):
        stored = _stored(run_dir)
        where = f"imbalance {i}/{total}: ratio {cfg.ratio:g} {cfg.arm} seed {cfg.seed}"
        if stored is not None:
            results.append(stored)
            notice(f"{where}: balanced accuracy {stored['balanced']:.4f} (reused)")
            continue
        t0 = time.monotonic()
        result = run_arm(cfg, plan.train, plan.test, run_dir, None if data is None else str(data))
        result = {**result, "config": _run_config(cfg, plan.settings), "run_dir": str(run_dir)}
        atomic_write_text(run_dir / RESULT_FILE, json.dumps(result, indent=1, default=str) + "\n")
        results.append(result)
        notice(f"{where}: balanced accuracy {result['balanced']:.4f}, {time.monotonic() - t0:.0f}s")
    return results


def _mean_sd(cell: dict[str, Any]) -> str:
    return f"{cell['mean']:.4f}" + ("" if cell["sd"] is None else f" ± {cell['sd']:.4f}")


def _verdict(versus: dict[str, Any]) -> str:
    def word(v: dict[str, Any]) -> str:
        return "-" if v["beats"] is None else "yes" if v["beats"] else "no"

    return f"{word(versus['balanced'])} / {word(versus['minority'])}"


def _tables(aggregates: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table

    from robustlab.train.imbalance import BASELINES

    for ratio in dict.fromkeys(row["ratio"] for row in aggregates):
        table = Table(
            "arm",
            "seeds",
            "balanced",
            "minority",
            "worst",
            *(f"beats {b} (bal / min)" for b in BASELINES),
            title=f"imbalance ratio {ratio:g}: {title}",
            caption="mean ± SD over seeds; beats: difference of means > the larger of the two seed SDs "
            "(-: fewer than 2 seeds, or not run)",
        )
        for row in aggregates:
            if row["ratio"] == ratio:
                table.add_row(
                    row["arm"],
                    str(row["n"]),
                    _mean_sd(row["balanced"]),
                    _mean_sd(row["minority"]),
                    _mean_sd(row["worst"]),
                    *(_verdict(row["versus"][b]) for b in BASELINES),
                )
        out_console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``imbalance`` command to ``app``."""

    @app.command("imbalance")
    def imbalance_cmd(
        out: Annotated[Path, typer.Option(help="Folder of the runs: OUT/<ratio>/<arm>/seed<k>.")],
        dataset: DatasetOpt = "cifar10",
        ratio: Annotated[
            list[float] | None,
            typer.Option(
                "--ratio", help="Imbalance ratio (largest / smallest class); repeat for several (default: 100)."
            ),
        ] = None,
        arms: Annotated[
            str,
            typer.Option(
                help="Comma-separated arms: erm, resample, reweight, augment, random-oversample, sia-oversample."
            ),
        ] = "erm,resample,reweight,augment,random-oversample,sia-oversample",
        seeds: Annotated[str, typer.Option(help="Comma-separated seeds (data subset and initialisation).")] = "0,1,2",
        epochs: Annotated[
            int, typer.Option(min=1, help="Epochs over the long-tailed set (balanced arms: the same steps).")
        ] = 20,
        model: Annotated[str, typer.Option(help="Architecture: a zoo model name (see `robustlab zoo list`).")] = (
            "resnet8"
        ),
        largest: Annotated[int, typer.Option(help="Training images of the largest class (class 0).")] = 1000,
        holdout: Annotated[
            int | None,
            typer.Option(
                help="A dataset with one split (npz:, folder:): images per class held out as the balanced test set "
                "(default: a fifth of the smallest class)."
            ),
        ] = None,
        lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.05,
        batch_size: Annotated[int, typer.Option(min=1, help="Batch size.")] = 128,
        sia_steps: Annotated[int, typer.Option(min=0, help="sia-oversample: attack steps per training step.")] = 3,
        pixel_eps: Annotated[
            str, typer.Option(help="Pixel L∞ residual of the attribute arms (augment, *-oversample).")
        ] = "1/255",
        threads: ThreadsOpt = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Train the arms of the imbalanced-data experiment on long-tailed subsets of DATASET's training split and
        compare them on its balanced test split.

        For every ratio, arm and seed one run goes to OUT/<ratio>/<arm>/seed<k>; re-running the command reuses
        finished runs (their result.json) and resumes unfinished ones. The table gives, per arm, balanced, minority
        (the smaller half of the classes) and worst-class accuracy, mean ± SD over seeds, and whether the arm beats
        random-oversample and resample by more than the seed-to-seed spread (difference of means > the larger of
        the two SDs).
        """
        from robustlab.attacks import parse_eps
        from robustlab.train.imbalance import aggregate_seeds

        set_threads(threads)
        with user_errors():
            try:
                eps = parse_eps(pixel_eps)
            except ConfigError as exc:
                raise ConfigError(f"--pixel-eps: {exc}") from None
            knobs = {
                "epochs": epochs,
                "model": model,
                "lr": lr,
                "batch_size": batch_size,
                "sia_steps": sia_steps,
                "pixel_eps": eps,
            }
            ratios = list(dict.fromkeys(ratio or [100.0]))
            arm_names, seed_list = _split_list(arms, "--arms"), _seeds(seeds)
            plan = _plan(dataset, data, ratios, arm_names, seed_list, largest, holdout, out, knobs)
            check_writable(out, "--out", folder=True)
            results = _execute(plan, data)
        aggregates = aggregate_seeds(results)
        if json_out:
            emit_json({"out": str(out), **plan.settings, "results": results, "aggregates": aggregates})
            return
        _tables(aggregates, f"{model} on {plan.settings['dataset']}, {len(plan.test[1])} test images")
