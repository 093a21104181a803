"""Train a model described by a spec, evaluate it and export it as safetensors + sidecar.

Used by ``robustlab train`` (any architecture, any dataset) and by the zoo builder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from robustlab.data import DATASETS, Dataset, load_dataset
from robustlab.errors import ConfigError
from robustlab.metrics.accuracy import evaluate
from robustlab.models.adapter import eval_mode
from robustlab.models.loading import assemble, check_device
from robustlab.models.spec import ModelSpec
from robustlab.models.weights import save_weights
from robustlab.train.distributed import current
from robustlab.train.loop import EpochMetrics, ProgressFn, StepReport, TrainConfig, train_model

log = logging.getLogger(__name__)


def count_flops(net: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """Floating-point operations of one forward pass on one image (a multiply-add counts as 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with eval_mode(net), torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, *input_shape))
    return int(counter.get_total_flops())


def with_method_needs(spec: ModelSpec, cfg: TrainConfig) -> ModelSpec:
    """``spec`` with the architecture arguments its training method needs (a multi-branch batch norm and its
    routes, a selector...) and the method's inference route.

    Raises:
        ConfigError: the user's ``arch_kwargs`` set one of those arguments to another value.
    """
    method = cfg.training_method()
    needs = method.model_kwargs()
    clash = [k for k, v in needs.items() if k in spec.arch_kwargs and _plain(spec.arch_kwargs[k]) != _plain(v)]
    if clash:
        said = ", ".join(f"{k}={spec.arch_kwargs[k]!r} (it needs {needs[k]!r})" for k in clash)
        raise ConfigError(f"{method.name} builds its own model layout; drop {said} from the architecture arguments")
    route = method.inference_route()
    return dataclasses.replace(spec, arch_kwargs={**spec.arch_kwargs, **needs}, route=route or spec.route)


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def fit_and_export(
    spec: ModelSpec,
    train: Dataset,
    test: Dataset | None,
    cfg: TrainConfig,
    run_dir: str | os.PathLike[str],
    weights_file: str | os.PathLike[str],
    progress: ProgressFn | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    device: str = "cpu",
    memory_format: str = "auto",
) -> ModelSpec:
    """Initialise ``spec``'s architecture (seeded), train it resumably, measure it and save it.

    Args:
        spec: The model to build (without weights).
        train: Training images.
        test: Held-out images; ``None`` when there are none (e.g. one ``npz:`` file). Then no test accuracy is
            recorded, only the accuracy on the training images, under the name ``train_accuracy``.
        cfg: Training hyper-parameters.
        run_dir: Resumable training state.
        weights_file: Where the safetensors file (and its sidecar) go.
        progress: Per-step callback.
        on_step: Per-step callback with the step's report (the inner maximiser's cost included).
        on_epoch: Called with each finished epoch's metrics.
        device: Where to train (``cpu``, ``cuda``, ``cuda:1``; under ``torchrun`` each process its local GPU).
        memory_format: The network's layout while it trains (:func:`~robustlab.train.loop.train_model`); the
            layout it trained in is recorded in the recipe.

    Returns:
        The spec with ``weights`` and ``metrics`` (``test_accuracy`` and ``test_images`` when ``test`` is given,
        else ``train_accuracy``; ``train_images``, parameters, FLOPs) filled in.
    """
    spec = with_method_needs(spec, cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # weight initialisation
        model = assemble(spec)
    if device.startswith("cuda") and current().size > 1:
        device = f"cuda:{torch.cuda.current_device()}"
    model.to(device)
    net = model.net
    monitor = (test.x, test.y) if test is not None else None  # its first cfg.monitor_n images
    result = train_model(
        model,
        train.x,
        train.y,
        cfg,
        run_dir,
        monitor_data=monitor,
        progress=progress,
        on_step=on_step,
        on_epoch=on_epoch,
        memory_format=memory_format,
    )
    if not current().main:
        return spec  # a multi-process run: rank 0 measures and writes
    if test is not None:
        acc = evaluate(model, test)
        measured = {"test_accuracy": acc.accuracy, "test_images": acc.n}
    else:
        measured = {"train_accuracy": evaluate(model, train).accuracy}
    spec = dataclasses.replace(
        spec,
        recipe={
            **cfg.fingerprint(),
            "train_data": f"{train.name}/{train.split} ({len(train)} images)",
            "memory_format": result.memory_format,
        },
        metrics={
            **measured,
            "train_images": len(train),
            "parameters": sum(p.numel() for p in net.parameters()),
            "flops": count_flops(net, spec.input_shape),
            **({"train_stopped": result.stopped} if result.stopped else {}),
        },
    )
    return save_weights(net, spec, weights_file)


def channel_stats(ds: Dataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a dataset's images in [0, 1]."""
    x = ds.x.double() / (255.0 if ds.x.dtype == torch.uint8 else 1.0)  # (N, C, H, W)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def train_architecture(
    arch: str,
    arch_kwargs: dict[str, Any],
    dataset: str,
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    name: str | None = None,
    normalize: bool = True,
    on_step: Callable[[StepReport], None] | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    device: str = "cpu",
    memory_format: str = "auto",
    audit_n: int | None = None,
    audit_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Train ``arch`` on ``dataset``'s train split; write ``model.safetensors`` (+ sidecar) into ``out``.

    The normalisation is the training set's per-channel mean and std. A named dataset's test split is evaluated
    (``test_accuracy``); a ``npz:`` file or an image folder has a single split, so the summary and the sidecar
    record ``train_accuracy`` (measured on the training images) and no test accuracy. Returns a JSON-ready summary
    with the per-epoch metrics (``epochs``) and the weights' path (``weights``).

    Args:
        normalize: Normalise inputs with the training set's channel statistics; ``False``: mean 0, std 1 (the
            raw [0, 1] pixels, as many published MNIST recipes train).
        on_step, on_epoch: Per-step and per-epoch callbacks of :func:`robustlab.train.train_model`.
        device: Where to train.
        memory_format: The network's layout while it trains: ``"auto"``, ``"channels_last"`` or ``"contiguous"``
            (:func:`robustlab.train.train_model`).
        audit_n: An adversarial method's run ends with the gradient-masking audit at the training budget on the
            first ``audit_n`` test points (:func:`robustlab.train.post_audit.audit_run`; a dataset with one split:
            its first training images, said in the record), written to ``audit.json`` in ``out`` and summarised
            under ``audit`` in the returned summary; ``None``: no audit (``audit`` is ``None``, as for the
            standard method).
        audit_progress: The audit's progress callback ``(attack, done, total)``.

    Raises:
        ConfigError: ``audit_n`` given but not an integer >= 1, or an unknown ``memory_format`` (before training).
    """
    from robustlab.train.layout import check_memory_format

    check_memory_format(memory_format)
    train = load_dataset(dataset, "train", data_dir)
    held_out = train.name in DATASETS  # npz: and folder: datasets have one split: "test" is the same images
    test = load_dataset(dataset, "test", data_dir) if held_out else None
    mean, std = channel_stats(train) if normalize else ((0.0,) * train.x.shape[1], (1.0,) * train.x.shape[1])
    spec = ModelSpec(
        name=name or f"{arch}-{dataset}",
        family=arch,
        arch=arch,
        arch_kwargs=dict(arch_kwargs),
        num_classes=len(train.classes),
        input_shape=tuple(train.x.shape[1:]),  # type: ignore[arg-type]
        mean=mean,
        std=std,
        dataset=dataset,
        source="user",
        classes=train.classes,
    )
    from robustlab.train.post_audit import AUDIT_FILE, audit_run, check_audit_n, summary

    if audit_n is not None:
        check_audit_n(audit_n, "audit_n")
    out = Path(out)
    check_device(device)
    spec = fit_and_export(
        spec,
        train,
        test,
        cfg,
        out,
        out / "model.safetensors",
        progress,
        on_step,
        on_epoch,
        device=device,
        memory_format=memory_format,
    )
    metrics_file = out / "metrics.jsonl"
    epochs = (
        [json.loads(line) for line in metrics_file.read_text(encoding="utf-8").splitlines()]
        if (metrics_file.is_file())
        else []
    )
    audited = None
    budget = cfg.method_params.get("eps")
    if audit_n is not None and cfg.method != "standard" and budget is None and current().main:
        log.warning("%s has no L_p training budget (eps): the gradient-masking audit is skipped", cfg.method)
    if audit_n is not None and budget is not None and cfg.method != "standard" and current().main:
        p = cfg.method_params
        record = audit_run(
            out,
            test if test is not None else train,
            eps=float(p["eps"]),
            norm=str(p.get("norm", "linf")),
            n=audit_n,
            seed=cfg.seed,
            device=device,
            note=None if test is not None else f"{dataset} has no held-out split: these are training images",
            progress=audit_progress,
        )
        audited = {**summary(record), "file": str(out / AUDIT_FILE), "reused": record["reused"]}
    return {
        "name": spec.name,
        "weights": str(out / "model.safetensors"),
        **spec.metrics,
        "recipe": spec.recipe,
        "epochs": epochs,
        "audit": audited,
    }
