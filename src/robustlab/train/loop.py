"""The training loop: batching, augmentation, optimiser, schedule, checkpoints, metrics, monitor and resume.

What one step computes is the training method's business (:mod:`robustlab.train.methods`: ``standard``,
``pgd-at``, ``fgsm-rs``, ``trades``); everything around it is here.

A run directory holds ``checkpoint.pt`` (model, optimiser, scheduler, RNG states, epoch, config, world size;
written atomically after every epoch and loaded with ``weights_only=True``), ``good.pt`` (the model of the last
epoch the overfitting monitor judged good, for adversarial methods) and ``metrics.jsonl`` (one JSON line per
epoch). Re-running the same call resumes after the last finished epoch and yields the same weights as an
uninterrupted run. The config (method and settings included) is the run's fingerprint: resuming with another is
refused, naming what changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from robustlab._io import atomic_path
from robustlab.data import to_float_images
from robustlab.errors import ConfigError, RobustlabError
from robustlab.metrics.accuracy import predict_classes
from robustlab.models.adapter import ModelAdapter, trusted_inputs
from robustlab.train import layout
from robustlab.train import monitor as mon
from robustlab.train.augment import random_crop_flip
from robustlab.train.distributed import current
from robustlab.train.methods import ATTACK_BN_MODES, StepContext, TrainingMethod, get_method

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("one-cycle", "cyclic", "piecewise", "constant")


class LabelSmoothingWarning(UserWarning):
    """Label smoothing with an adversarial training method: a known cause of gradient masking."""


class CatastrophicOverfittingWarning(UserWarning):
    """The monitor saw PGD accuracy collapse while FGSM accuracy rose (catastrophic overfitting)."""


class TrainingDivergedError(RobustlabError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a training run (its fingerprint: resuming with a different one is refused).

    Attributes:
        epochs: Passes over the training set.
        batch_size: Mini-batch size (the global batch, over all processes of a multi-process run).
        lr: Peak learning rate.
        momentum: SGD momentum (Nesterov); ignored by Adam.
        weight_decay: L2 penalty on weights (not on biases and norm parameters).
        label_smoothing: Label smoothing of the outer cross-entropy; ``None``: 0.1 for ``standard`` (the zoo's
            recipe), 0 for adversarial methods (a non-zero value warns: it masks gradients).
        warmup: ``one-cycle``: fraction of steps warming up from ``lr / 10``; ``cyclic``: fraction of steps at
            which the triangular schedule (from 0, back to 0 at the end) peaks.
        augment: ``"crop-flip"`` (4-pixel padded crop + flip), ``"crop"`` (no flip, e.g. digits) or ``"none"``.
        seed: Seed of initialisation, shuffling, augmentation and random starts.
        method: Training method (:data:`~robustlab.train.methods.TRAINING_METHODS`).
        method_params: The method's settings (e.g. ``{"eps": 8/255, "steps": 7}``); filled with its defaults.
        optimizer: ``"sgd"`` or ``"adam"``.
        schedule: ``"one-cycle"``, ``"cyclic"``, ``"piecewise"`` or ``"constant"``.
        milestones: ``piecewise``: fractions of training after which the rate is multiplied by ``gamma``.
        gamma: ``piecewise``: the factor at each milestone.
        attack_bn: Batch-norm mode of the inner maximiser: ``"eval"`` (default) or ``"train"``.
        monitor_n: Images of the fixed held-out monitor batch (clean, FGSM and PGD accuracy after every epoch);
            0: no monitor.
        monitor_steps: PGD steps of the monitor.
        on_overfit: What catastrophic overfitting triggers: ``"warn"``, ``"stop"`` (keep the weights, end the
            run) or ``"rollback"`` (restore the last good epoch's weights and end the run).
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float | None = None
    warmup: float = 0.15
    augment: str = "crop-flip"
    seed: int = 0
    method: str = "standard"
    method_params: Mapping[str, Any] = field(default_factory=dict)
    optimizer: str = "sgd"
    schedule: str = "one-cycle"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    attack_bn: str = "eval"
    monitor_n: int = 256
    monitor_steps: int = 10
    on_overfit: str = "warn"

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0:
            raise ConfigError(f"epochs and batch_size must be positive, got {self.epochs}, {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.augment not in ("crop-flip", "crop", "none"):
            raise ConfigError(f"augment must be 'crop-flip', 'crop' or 'none', got {self.augment!r}")
        for name, value, allowed in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("schedule", self.schedule, SCHEDULES),
            ("attack_bn", self.attack_bn, ATTACK_BN_MODES),
            ("on_overfit", self.on_overfit, mon.OVERFIT_ACTIONS),
        ):
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup must be in [0, 1), got {self.warmup}")
        if self.monitor_n < 0 or self.monitor_steps <= 0:
            raise ConfigError(
                f"monitor_n must be >= 0 and monitor_steps > 0, got {self.monitor_n}, {self.monitor_steps}"
            )
        if any(not 0 < m < 1 for m in self.milestones) or not self.gamma > 0:
            raise ConfigError("milestones must be fractions of training in (0, 1) and gamma > 0")
        method = get_method(self.method, self.method_params)
        object.__setattr__(self, "method", method.name)
        object.__setattr__(self, "method_params", method.params())
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        if self.label_smoothing is None:
            object.__setattr__(self, "label_smoothing", 0.0 if method.adversarial else 0.1)
        ls = float(self.label_smoothing or 0.0)
        if not 0 <= ls < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {ls}")
        if ls > 0 and method.adversarial:
            warnings.warn(
                f"label smoothing {ls} with the adversarial method {method.name} masks gradients (robustness "
                "measured by gradient attacks is overstated); use label_smoothing=0 unless you study that effect",
                LabelSmoothingWarning,
                stacklevel=3,
            )

    def training_method(self) -> TrainingMethod:
        """The configured method object."""
        return get_method(self.method, self.method_params)

    def fingerprint(self) -> dict[str, Any]:
        """The JSON-ready config recorded in checkpoints and compared on resume."""
        d = dataclasses.asdict(self)
        d["method_params"] = dict(self.method_params)
        d["milestones"] = list(self.milestones)
        return d


#: Values of fields added after runs were first written: an old checkpoint without them had these.
_FIELD_DEFAULTS_OF_OLD_RUNS = {
    "method": "standard",
    "method_params": {},
    "optimizer": "sgd",
    "schedule": "one-cycle",
    "milestones": [0.5, 0.75],
    "gamma": 0.1,
    "attack_bn": "eval",
    "monitor_n": 256,
    "monitor_steps": 10,
    "on_overfit": "warn",
}


#: Method settings added after runs were first written (the value an old run without them had).
_SETTING_DEFAULTS_OF_OLD_RUNS = {"pgd-at": {"eps_ramp": 0.0}}


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints, as ``key (old → new)`` (method settings as ``method_params.key``)."""
    old = {**_FIELD_DEFAULTS_OF_OLD_RUNS, **old}
    added = _SETTING_DEFAULTS_OF_OLD_RUNS.get(str(old["method"]), {})
    old["method_params"] = {**added, **old["method_params"]}
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += [f"{key}.{k} ({a.get(k)} → {b.get(k)})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b and not (isinstance(a, list | tuple) and isinstance(b, list | tuple) and list(a) == list(b)):
            out.append(f"{key} ({a} → {b})")
    return out


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch measured (one line of ``metrics.jsonl``).

    Attributes:
        epoch: 1-based epoch number.
        train_loss: Mean training loss (the method's loss).
        train_accuracy: Accuracy on the points trained on (adversarial ones for ``pgd-at`` and ``fgsm-rs``).
        lr: Learning rate at the end of the epoch.
        seconds: Wall-clock seconds of the epoch (monitor and evaluation included).
        eval_accuracy: Accuracy on ``eval_data`` if given.
        inner_seconds: Seconds spent in the inner maximiser.
        inner_passes: Per-sample forward + input-gradient passes of the inner maximiser.
        monitor_clean, monitor_fgsm, monitor_pgd: Accuracies on the monitor batch.
        overfit: Whether the catastrophic-overfitting detector fired at this epoch.
        logs: The method's own per-epoch means (e.g. TRADES' ``natural_loss`` and ``robust_kl``).
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    lr: float
    seconds: float
    eval_accuracy: float | None = None
    inner_seconds: float = 0.0
    inner_passes: int = 0
    monitor_clean: float | None = None
    monitor_fgsm: float | None = None
    monitor_pgd: float | None = None
    overfit: bool = False
    logs: dict[str, float] = field(default_factory=dict)

    def reading(self) -> mon.MonitorReading | None:
        """The monitor's reading of this epoch, if measured."""
        if self.monitor_clean is None:
            return None
        return mon.MonitorReading(self.monitor_clean, self.monitor_fgsm, self.monitor_pgd)


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train_model`.

    Attributes:
        epochs: Metrics of every finished epoch.
        resumed_from: Epochs already done when this call started.
        run_dir: The run directory.
        stopped: Why the run ended early (``"catastrophic overfitting at epoch 4: ..."``), or ``None``.
        rolled_back_to: The epoch whose weights the model holds after a rollback, or ``None``.
        memory_format: The layout the network trained in (:mod:`robustlab.train.layout`).
    """

    epochs: list[EpochMetrics]
    resumed_from: int
    run_dir: Path
    stopped: str | None = None
    rolled_back_to: int | None = None
    memory_format: str = "contiguous"


ProgressFn = Callable[[int, int, int, float], None]
"""Called after every step with (epoch, step, steps_per_epoch, loss)."""


@dataclass(frozen=True)
class StepReport:
    """What :func:`train_model` reports after every step to ``on_step`` (the CLI's progress shows it).

    Attributes:
        epoch: 0-based epoch.
        step: 0-based step within the epoch.
        steps: Steps per epoch.
        loss: This step's loss.
        seconds: Wall-clock seconds of the epoch so far.
        inner_seconds: Of which in the inner maximiser.
        inner_passes: Inner forward + input-gradient passes per sample and step (the method's cost).
    """

    epoch: int
    step: int
    steps: int
    loss: float
    seconds: float
    inner_seconds: float
    inner_passes: int


def _lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """The multiplier of the peak rate at each optimiser step (0-based) for the configured schedule."""
    if cfg.schedule == "constant":
        return lambda step: 1.0
    if cfg.schedule == "piecewise":
        bounds = [m * total_steps for m in cfg.milestones]
        return lambda step: float(cfg.gamma ** sum(step >= b for b in bounds))
    if cfg.schedule == "cyclic":
        peak = cfg.warmup * total_steps

        def tri(step: int) -> float:
            t = step + 1  # the rate of step s is that of the schedule at (s + 1) / total (Wong et al.'s code)
            if t <= peak:
                return t / peak
            return max(0.0, (total_steps - t) / max(1e-12, total_steps - peak))

        return tri
    warm = max(1, int(total_steps * cfg.warmup))

    def one_cycle(step: int) -> float:
        if step < warm:
            return 0.1 + 0.9 * step / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return one_cycle


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params_decay = [p for p in model.parameters() if p.dim() > 1]
    params_no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups: list[dict[str, Any]] = [
        {"params": params_decay, "weight_decay": cfg.weight_decay},
        {"params": params_no_decay, "weight_decay": 0},
    ]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


def _augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    if cfg.augment == "none":
        return x
    return random_crop_flip(x, gen, pad=4, flip=cfg.augment == "crop-flip")


def accuracy_of(model: ModelAdapter, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` in eval mode over images ``x`` (uint8 or [0, 1] float) and labels ``y``."""
    return float((predict_classes(model, x, batch_size) == y).float().mean()) if len(x) else 0.0


def _monitor_eps(method: TrainingMethod) -> tuple[float | None, str]:
    p = method.params()
    return p.get("eps"), str(p.get("norm", "linf"))


def train_model(
    model: ModelAdapter,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    monitor_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: ProgressFn | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    memory_format: str = "auto",
) -> TrainResult:
    """Train ``model`` in place with ``cfg.method``; resume from ``run_dir/checkpoint.pt`` when it exists.

    Under ``torchrun`` (an initialised process group) the model is wrapped in DistributedDataParallel: every
    process takes its slice of each global batch and only rank 0 writes the run directory.

    Args:
        model: The model (its adapter normalises inputs); trained on its current device.
        x: Training images, uint8 or float in [0, 1].
        y: Labels.
        cfg: Hyper-parameters; resuming with a different config is refused (naming what changed).
        run_dir: Where the checkpoint and ``metrics.jsonl`` go (created only once training starts).
        eval_data: Optional (images, labels) evaluated after every epoch.
        monitor_data: The fixed held-out monitor batch (the first ``cfg.monitor_n`` rows are used); ``None``: no
            monitor.
        progress: Optional per-step callback ``(epoch, step, steps, loss)``.
        on_step: Optional per-step callback with a :class:`StepReport` (inner maximiser's cost included).
        on_epoch: Optional callback with each finished epoch's metrics (after its checkpoint is written).
        memory_format: The network's layout while it trains: ``"auto"`` (channels-last for a convolutional
            network on CPU, where it is faster), ``"channels_last"`` or ``"contiguous"``
            (:mod:`robustlab.train.layout`). An execution setting, not part of the run's fingerprint; the model is
            handed back in the layout it came in.

    Returns:
        The epochs' metrics, where the run resumed, and whether it stopped early (catastrophic overfitting).

    Raises:
        ConfigError: the run directory holds a run with another config or another number of processes; an unknown
            ``memory_format``, or ``"channels_last"`` for a network that cannot run in it.
        TrainingDivergedError: the loss became NaN or infinite (the last good checkpoint is kept).

    Shape:
        x: (N, C, H, W); y: (N,) int64.
    """
    world = current()
    method = cfg.training_method()
    run = Path(run_dir)
    ckpt_path, metrics_path, good_path = run / "checkpoint.pt", run / "metrics.jsonl", run / "good.pt"
    device = next(model.parameters()).device
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, cfg.epochs * steps_per_epoch))
    gen = torch.Generator().manual_seed(cfg.seed)
    config = cfg.fingerprint()
    start = 0
    history: list[EpochMetrics] = []
    stopped: str | None = None
    rolled_back: int | None = None
    monitor_batch = None
    if monitor_data is not None and cfg.monitor_n > 0:
        monitor_batch = (
            to_float_images(monitor_data[0][: cfg.monitor_n]).to(device),
            monitor_data[1][: cfg.monitor_n].to(device),
        )
    eps, norm = _monitor_eps(method)
    layout_name = layout.resolve(memory_format, model, to_float_images(x[:2]).to(device))
    created = not run.exists()
    with (
        torch.random.fork_rng(devices=[]),
        layout.channels_last(model.net) if layout_name == "channels_last" else contextlib.nullcontext(),
    ):
        torch.manual_seed(cfg.seed)  # dropout draws from the (forked) global generator
        if ckpt_path.is_file():
            state: dict[str, Any] = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            changes = config_changes(state["config"], config)
            if changes:
                raise ConfigError(
                    f"{run} holds a run with a different training config (changed: {', '.join(changes)}); "
                    "use another run directory or delete it."
                )
            size = int(state.get("world_size", 1))
            if size != world.size:
                raise ConfigError(
                    f"{run} was trained by {size} process(es) and is resumed by {world.size}; resume it with "
                    f"--nproc_per_node {size} (the world size is part of the run: batches are split per process)."
                )
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            start = int(state["epoch"])
            stopped = state.get("stopped")
            rb = state.get("rolled_back_to")
            rolled_back = int(rb) if rb is not None else None
            if metrics_path.is_file():
                lines = metrics_path.read_text(encoding="utf-8").splitlines()[:start]
                history = [EpochMetrics(**json.loads(line)) for line in lines]
            log.info("resuming %s after epoch %d", run, start)
        elif metrics_path.exists() and world.main:
            metrics_path.unlink()  # metrics from a run whose checkpoint never got written
        world.barrier()
        train_net: nn.Module = model
        if world.size > 1:
            from torch.nn.parallel import DistributedDataParallel

            train_net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        was_training = model.training
        ctx = StepContext(model, gen, float(cfg.label_smoothing or 0.0), cfg.attack_bn, net=train_net)
        try:
            for epoch in range(start, cfg.epochs):
                if stopped is not None:
                    break
                t0 = time.perf_counter()
                ctx.inner_seconds, ctx.inner_passes = 0.0, 0
                model.train()
                perm = torch.randperm(len(x), generator=gen)
                loss_sum, correct = 0.0, 0
                sums: dict[str, float] = {}
                for step in range(steps_per_epoch):
                    idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                    xg = to_float_images(_augment(x[idx], cfg, gen))  # (B, C, H, W) in [0, 1], the global batch
                    rows = world.rows(len(idx))
                    ctx.batch_rows, ctx.batch_size = rows, len(idx)
                    ctx.progress = (epoch * steps_per_epoch + step + 1) / (cfg.epochs * steps_per_epoch)
                    xb, yb = xg[rows].to(device), y[idx][rows].to(device)
                    with trusted_inputs(model):
                        out = method.step(ctx, xb, yb)
                    # Each process's mean loss weighted by its share, so DDP's gradient average is the global mean
                    # (one process: the weight is 1, and the product would only add an operation to the graph).
                    share = len(yb) * world.size / len(idx)
                    loss = out.loss * share if share != 1 else out.loss
                    opt.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    stats = [out.loss.item() * len(yb), float((out.logits.argmax(1) == yb).sum())]
                    if world.size > 1:
                        summed = torch.tensor(stats, dtype=torch.float64, device=device)
                        dist.all_reduce(summed)
                        stats = summed.cpu().tolist()
                    batch_loss = stats[0] / len(idx)
                    if not math.isfinite(batch_loss):
                        last = (
                            f"the checkpoint of epoch {epoch} is kept"
                            if epoch > 0
                            else "no epoch had finished, so no checkpoint was written"
                        )
                        raise TrainingDivergedError(
                            f"the training loss became {batch_loss} at epoch {epoch + 1}, step {step + 1} "
                            f"({method.name}); {last}. Lower the learning rate (--lr) or check the data."
                        )
                    opt.step()
                    sched.step()
                    loss_sum += stats[0]
                    correct += int(stats[1])
                    for k, v in out.logs.items():
                        sums[k] = sums.get(k, 0.0) + v * len(idx)
                    if progress is not None:
                        progress(epoch, step, steps_per_epoch, batch_loss)
                    if on_step is not None:
                        on_step(
                            StepReport(
                                epoch,
                                step,
                                steps_per_epoch,
                                batch_loss,
                                time.perf_counter() - t0,
                                ctx.inner_seconds,
                                method.inner_steps(),
                            )
                        )
                ev = accuracy_of(model, *eval_data) if eval_data is not None else None
                reading = (
                    mon.measure(model, *monitor_batch, eps=eps, norm=norm, steps=cfg.monitor_steps, seed=cfg.seed)
                    if monitor_batch is not None
                    else None
                )
                previous = next((h.reading() for h in reversed(history) if h.reading() is not None), None)
                overfit = reading is not None and mon.is_collapse(previous, reading)
                m = EpochMetrics(
                    epoch + 1,
                    loss_sum / len(x),
                    correct / len(x),
                    float(sched.get_last_lr()[0]),
                    time.perf_counter() - t0,
                    ev,
                    ctx.inner_seconds,
                    ctx.inner_passes,
                    None if reading is None else reading.clean,
                    None if reading is None else reading.fgsm,
                    None if reading is None else reading.pgd,
                    overfit,
                    {k: v / len(x) for k, v in sums.items()},
                )
                history.append(m)
                if overfit and reading is not None and previous is not None:
                    what = (
                        f"catastrophic overfitting at epoch {epoch + 1}: PGD accuracy on the monitor batch fell "
                        f"from {previous.pgd:.3f} to {reading.pgd:.3f} while FGSM accuracy held up (from "
                        f"{previous.fgsm:.3f} to {reading.fgsm:.3f})"
                    )
                    if cfg.on_overfit == "warn":
                        warnings.warn(
                            what + "; consider a smaller step (alpha), PGD-AT, or on_overfit='rollback'",
                            CatastrophicOverfittingWarning,
                            stacklevel=2,
                        )
                    else:
                        stopped = what
                        if cfg.on_overfit == "rollback" and good_path.is_file():
                            good = torch.load(good_path, map_location="cpu", weights_only=True)
                            model.load_state_dict(good["model"])
                            rolled_back = int(good["epoch"])
                            stopped += f"; rolled back to the weights of epoch {rolled_back}"
                        log.warning("%s; training stopped", stopped)
                state = {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "epoch": epoch + 1,
                    "config": config,
                    "world_size": world.size,
                    "stopped": stopped,
                    "rolled_back_to": rolled_back,
                }
                if world.main:
                    run.mkdir(parents=True, exist_ok=True)
                    with atomic_path(ckpt_path) as tmp:
                        torch.save(state, tmp)
                    if reading is not None and not overfit and method.adversarial:
                        with atomic_path(good_path) as tmp:
                            torch.save({"model": model.state_dict(), "epoch": epoch + 1}, tmp)
                    with atomic_path(metrics_path) as tmp:
                        lines_out = "".join(json.dumps(dataclasses.asdict(h)) + "\n" for h in history)
                        tmp.write_text(lines_out, encoding="utf-8")
                world.barrier()
                if on_epoch is not None:
                    on_epoch(m)
                log.info(
                    "epoch %d/%d loss %.4f acc %.4f eval %s monitor %s inner %.1fs of %.1fs",
                    epoch + 1,
                    cfg.epochs,
                    m.train_loss,
                    m.train_accuracy,
                    ev,
                    reading,
                    m.inner_seconds,
                    m.seconds,
                )
        except BaseException:
            if created and world.main and run.is_dir() and not ckpt_path.exists():
                shutil.rmtree(run, ignore_errors=True)  # nothing finished: leave no half-written run directory
            raise
        finally:
            model.train(was_training)
    return TrainResult(history, start, run, stopped, rolled_back, layout_name)
