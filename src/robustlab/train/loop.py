"""Standard supervised training with resumable checkpoints.

A run directory holds ``checkpoint.pt`` (model, optimiser, scheduler, RNG states, epoch, config; written
atomically after every epoch and loaded with ``weights_only=True``) and ``metrics.jsonl`` (one JSON line
per epoch). Re-running the same call resumes after the last finished epoch and yields the same weights as
an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from robustlab._io import atomic_path
from robustlab.data import to_float_images
from robustlab.errors import ConfigError
from robustlab.metrics.accuracy import predict_classes
from robustlab.models.adapter import ModelAdapter
from robustlab.train.augment import random_crop_flip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of standard training (SGD with Nesterov momentum, one-cycle linear schedule).

    Attributes:
        epochs: Passes over the training set.
        batch_size: Mini-batch size.
        lr: Peak learning rate, reached after ``warmup`` of the steps, then decayed linearly to 0.
        momentum: SGD momentum (Nesterov).
        weight_decay: L2 penalty.
        label_smoothing: Cross-entropy label smoothing.
        warmup: Fraction of steps spent warming up from ``lr / 10``.
        augment: ``"crop-flip"`` (4-pixel padded crop + flip), ``"crop"`` (no flip, e.g. digits) or ``"none"``.
        seed: Seed of initialisation, shuffling and augmentation.
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup: float = 0.15
    augment: str = "crop-flip"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0:
            raise ConfigError(f"epochs and batch_size must be positive, got {self.epochs}, {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.augment not in ("crop-flip", "crop", "none"):
            raise ConfigError(f"augment must be 'crop-flip', 'crop' or 'none', got {self.augment!r}")


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch measured (one line of ``metrics.jsonl``)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    lr: float
    seconds: float
    eval_accuracy: float | None = None


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train_model`."""

    epochs: list[EpochMetrics]
    resumed_from: int
    run_dir: Path


ProgressFn = Callable[[int, int, int, float], None]
"""Called after every step with (epoch, step, steps_per_epoch, loss)."""


def _lr_lambda(total_steps: int, warmup: float) -> Callable[[int], float]:
    warm = max(1, int(total_steps * warmup))

    def f(step: int) -> float:
        if step < warm:
            return 0.1 + 0.9 * step / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return f


def _augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    if cfg.augment == "none":
        return x
    return random_crop_flip(x, gen, pad=4, flip=cfg.augment == "crop-flip")


def accuracy_of(model: ModelAdapter, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` in eval mode over images ``x`` (uint8 or [0, 1] float) and labels ``y``."""
    return float((predict_classes(model, x, batch_size) == y).float().mean()) if len(x) else 0.0


def train_model(
    model: ModelAdapter,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train ``model`` in place; resume from ``run_dir/checkpoint.pt`` when it exists.

    Args:
        model: The model (its adapter normalises inputs); trained on its current device.
        x: Training images, uint8 or float in [0, 1].
        y: Labels.
        cfg: Hyper-parameters; resuming with a different config is refused.
        run_dir: Where the checkpoint and ``metrics.jsonl`` go.
        eval_data: Optional (images, labels) evaluated after every epoch.
        progress: Optional per-step callback (the CLI draws a progress bar with it).

    Shape:
        x: (N, C, H, W); y: (N,) int64.
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = run / "checkpoint.pt", run / "metrics.jsonl"
    device = next(model.parameters()).device
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    params_decay = [p for p in model.parameters() if p.dim() > 1]
    params_no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD(
        [
            {"params": params_decay, "weight_decay": cfg.weight_decay},
            {"params": params_no_decay, "weight_decay": 0},
        ],
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=True,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.epochs * steps_per_epoch, cfg.warmup))
    gen = torch.Generator().manual_seed(cfg.seed)
    config = dataclasses.asdict(cfg)
    start = 0
    history: list[EpochMetrics] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # dropout draws from the (forked) global generator
        if ckpt_path.is_file():
            state: dict[str, Any] = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            if state["config"] != config:
                changed = sorted(k for k in config if state["config"].get(k) != config[k])
                raise ConfigError(
                    f"{run} holds a run with a different training config (changed: {', '.join(changed)}); "
                    "use another run directory or delete it."
                )
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            start = int(state["epoch"])
            if metrics_path.is_file():
                lines = metrics_path.read_text(encoding="utf-8").splitlines()[:start]
                history = [EpochMetrics(**json.loads(line)) for line in lines]
            log.info("resuming %s after epoch %d", run, start)
        elif metrics_path.exists():
            metrics_path.unlink()  # metrics from a run whose checkpoint never got written
        was_training = model.training
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            model.train()
            perm = torch.randperm(len(x), generator=gen)
            loss_sum, correct = 0.0, 0
            for step in range(steps_per_epoch):
                idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                xb = to_float_images(_augment(x[idx], cfg, gen)).to(device)  # (B, C, H, W) in [0, 1]
                yb = y[idx].to(device)
                logits = model(xb)
                loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                sched.step()
                loss_sum += loss.item() * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
                if progress is not None:
                    progress(epoch, step, steps_per_epoch, loss.item())
            ev = accuracy_of(model, *eval_data) if eval_data is not None else None
            m = EpochMetrics(
                epoch + 1,
                loss_sum / len(x),
                correct / len(x),
                float(sched.get_last_lr()[0]),
                time.perf_counter() - t0,
                ev,
            )
            history.append(m)
            state = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch + 1,
                "config": config,
            }
            with atomic_path(ckpt_path) as tmp:
                torch.save(state, tmp)
            with atomic_path(metrics_path) as tmp:
                tmp.write_text("".join(json.dumps(dataclasses.asdict(h)) + "\n" for h in history), encoding="utf-8")
            log.info(
                "epoch %d/%d loss %.4f acc %.4f eval %s",
                epoch + 1,
                cfg.epochs,
                m.train_loss,
                m.train_accuracy,
                ev,
            )
        model.train(was_training)
    return TrainResult(history, start, run)
