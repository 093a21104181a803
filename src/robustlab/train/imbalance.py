"""The imbalanced-data experiment of the Semantic Image Attack paper, made measurable: does oversampling minority
classes with semantic adversarial examples beat re-balancing and random-attribute augmentation?

A long-tailed training set keeps ``n_c = floor(n_max · ratio^(-c/(K-1)))`` images of class ``c`` (class 0 the
largest; which images is seeded), e.g. 1000, 599, …, 10 (2,478 images) from CIFAR-10's 10,000 offline training
images at ratio 100. Six arms train the same architecture from the same initialisation on it:

- ``erm``: plain cross-entropy on the long-tailed set;
- ``resample``: class-balanced oversampling (every class repeated up to ``n_max``);
- ``reweight``: cross-entropy weighted by the effective number of samples (Cui et al., CVPR 2019, β = 0.999);
- ``augment``: random attributes (the ``mild`` box) on every image: strong augmentation;
- ``random-oversample``: the balanced set, its duplicated share of each class augmented with random attributes;
- ``sia-oversample``: the balanced set, its duplicated share of each class replaced by semantic adversarial examples
  generated from the current model at every step (``mild``, pixel 1/255, ``sia_steps`` steps).

Arms on the balanced set see ``n_max · K`` images per epoch instead of ``sum n_c``; they run proportionally fewer
epochs, so every arm takes the same number of training steps (a fixed compute budget). Evaluation on the balanced
test set: balanced accuracy (the mean of per-class accuracies), minority accuracy (the mean over the ``K // 2``
smallest classes), worst-class accuracy and each class's accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustlab.errors import ConfigError
from robustlab.train.loop import TrainConfig, train_model

ARMS = ("erm", "resample", "reweight", "augment", "random-oversample", "sia-oversample")
#: Balanced-set arms (oversampled to the largest class).
_BALANCED = ("resample", "random-oversample", "sia-oversample")


def long_tailed_counts(num_classes: int, largest: int, ratio: float) -> list[int]:
    """``floor(largest · ratio^(-c/(K-1)))`` images per class (class 0 keeps ``largest``, the last
    ``largest / ratio``)."""
    if not (math.isfinite(ratio) and ratio >= 1):
        raise ConfigError(f"the imbalance ratio must be >= 1 (largest / smallest class), got {ratio}")
    if num_classes < 2:
        raise ConfigError(f"an imbalanced dataset needs at least 2 classes, got {num_classes}")
    return [max(1, int(largest * ratio ** (-c / (num_classes - 1)) + 1e-9)) for c in range(num_classes)]


def long_tailed(y: Tensor, ratio: float, seed: int, largest: int | None = None) -> Tensor:
    """Row indices (sorted) of a seeded long-tailed subset of labels ``y``.

    Args:
        y: Labels of the full training set, ``0..K-1``.
        ratio: Largest class size over smallest.
        seed: Which images each class keeps.
        largest: Images of class 0 (default: the smallest class count in ``y``, so every class can supply it).

    Raises:
        ConfigError: a ratio below 1, or a class that has fewer images than its long-tailed count.
    """
    y = torch.as_tensor(y).long()
    k = int(y.max()) + 1
    available = torch.bincount(y, minlength=k)
    top = int(available.min()) if largest is None else int(largest)
    counts = long_tailed_counts(k, top, ratio)
    g = torch.Generator().manual_seed(int(seed))
    keep = []
    for c, n_c in enumerate(counts):
        rows = (y == c).nonzero().flatten()
        if n_c > len(rows):
            raise ConfigError(f"class {c} has {len(rows)} images, fewer than the {n_c} its long-tailed count needs")
        keep.append(rows[torch.randperm(len(rows), generator=g)[:n_c]])
    return torch.sort(torch.cat(keep)).values


def effective_number_weights(counts: list[int], beta: float = 0.999) -> list[float]:
    """Cui et al.'s class-balanced weights ``(1 - β) / (1 - β^n_c)``, scaled to mean 1 over the classes."""
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    mean = sum(raw) / len(raw)
    return [w / mean for w in raw]


def balanced_indices(y: Tensor) -> Tensor:
    """Each class's rows repeated (cycling through them) up to the largest class's count: the oversampled set."""
    y = torch.as_tensor(y).long()
    k = int(y.max()) + 1
    top = int(torch.bincount(y, minlength=k).max())
    out = []
    for c in range(k):
        rows = (y == c).nonzero().flatten()
        out.append(rows.repeat(math.ceil(top / len(rows)))[:top])
    return torch.cat(out)


def class_accuracies(pred: Tensor, y: Tensor, num_classes: int) -> list[float]:
    """Accuracy of each class (``nan`` for a class with no test image)."""
    out = []
    for c in range(num_classes):
        m = y == c
        out.append(float((pred[m] == c).double().mean()) if bool(m.any()) else float("nan"))
    return out


def summarise_accuracies(per_class: list[float], counts: list[int]) -> dict[str, Any]:
    """Balanced, minority (the ``K // 2`` classes with the fewest training images) and worst-class accuracy."""
    order = sorted(range(len(counts)), key=lambda c: counts[c])
    minority = order[: len(counts) // 2]
    return {
        "balanced": sum(per_class) / len(per_class),
        "minority": sum(per_class[c] for c in minority) / len(minority),
        "worst": min(per_class),
        "per_class": per_class,
        "minority_classes": minority,
    }


@dataclass(frozen=True)
class ImbalanceConfig:
    """One arm's run: the data, the architecture and the training budget (in long-tailed epochs); ``largest``: images
    of class 0 (``None``: the smallest class count of the training set)."""

    arm: str
    ratio: float = 100.0
    seed: int = 0
    epochs: int = 20
    model: str = "resnet8"
    lr: float = 0.05
    batch_size: int = 128
    sia_steps: int = 3
    pixel_eps: float = 1 / 255
    largest: int | None = 1000
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            import difflib

            close = difflib.get_close_matches(self.arm, ARMS, n=2)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown arm {self.arm!r}{hint}; arms: {', '.join(ARMS)}")


def arm_training(cfg: ImbalanceConfig, y_lt: Tensor, num_classes: int) -> tuple[Tensor, TrainConfig]:
    """The rows (into the long-tailed set) to train on and the training config of one arm."""
    counts = torch.bincount(y_lt, minlength=num_classes).tolist()
    top = max(counts)
    rows = balanced_indices(y_lt) if cfg.arm in _BALANCED else torch.arange(len(y_lt))
    epochs = cfg.epochs if cfg.arm not in _BALANCED else max(1, round(cfg.epochs * len(y_lt) / len(rows)))
    duplicated = ",".join(f"{1 - n / top:.6f}" for n in counts)
    arms: dict[str, tuple[str, dict[str, Any]]] = {
        "erm": ("standard", {}),
        "resample": ("standard", {}),
        "reweight": ("reweighted", {"weights": ",".join(f"{w:.6f}" for w in effective_number_weights(counts))}),
        "augment": ("sia", {"steps": 0, "pixel_eps": cfg.pixel_eps}),
        "random-oversample": ("sia", {"steps": 0, "pixel_eps": cfg.pixel_eps, "class_fraction": duplicated}),
        "sia-oversample": ("sia", {"steps": cfg.sia_steps, "pixel_eps": cfg.pixel_eps, "class_fraction": duplicated}),
    }
    method, params = arms[cfg.arm]
    train = TrainConfig(epochs=epochs, lr=cfg.lr, batch_size=cfg.batch_size, method=method, method_params=params,
                        label_smoothing=0.0, monitor_n=0, seed=cfg.seed)  # fmt: skip
    return rows, train


def run_arm(
    cfg: ImbalanceConfig,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    run_dir: str | Path,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Build the long-tailed set, train the arm (resumable in ``run_dir``) and evaluate it on ``test``.

    Shape:
        train, test: images ``(N, C, H, W)`` (uint8 or float in [0, 1]) and labels ``(N,)``.
    """
    from robustlab.models import MODELS, build_model, predict_logits

    x, y = train[0], torch.as_tensor(train[1]).long()
    k = int(y.max()) + 1
    lt = long_tailed(y, cfg.ratio, cfg.seed, cfg.largest)
    x_lt, y_lt = x[lt], y[lt]
    rows, tcfg = arm_training(cfg, y_lt, k)
    torch.manual_seed(cfg.seed)  # the architecture's initialisation: the same for every arm of a seed
    model = build_model(MODELS.get(cfg.model), pretrained=False, data_dir=data_dir)
    result = train_model(model, x_lt[rows], y_lt[rows], tcfg, run_dir)
    from robustlab.data import to_float_images

    pred = predict_logits(model.eval(), to_float_images(test[0])).argmax(1)
    counts = torch.bincount(y_lt, minlength=k).tolist()
    acc = summarise_accuracies(class_accuracies(pred, torch.as_tensor(test[1]).long(), k), counts)
    return {
        "arm": cfg.arm,
        "ratio": cfg.ratio,
        "seed": cfg.seed,
        "model": cfg.model,
        "train_counts": counts,
        "train_images_per_epoch": len(rows),
        "epochs": tcfg.epochs,
        "method": tcfg.method,
        "method_params": dict(tcfg.method_params),
        "seconds": sum(e.seconds for e in result.epochs),
        **acc,
    }


def balanced_holdout(y: Tensor, per_class: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Split labels ``y`` into training rows and a class-balanced held-out test set of ``per_class`` images per
    class (seeded): the test set of a dataset that has only one split (``npz:``, ``folder:``).

    Returns:
        ``(train_rows, test_rows)``, each sorted.

    Raises:
        ConfigError: ``per_class`` below 1, or a class with no image left for training after the hold-out.
    """
    if per_class < 1:
        raise ConfigError(f"the held-out test set needs at least 1 image per class, got {per_class}")
    y = torch.as_tensor(y).long()
    g = torch.Generator().manual_seed(int(seed))
    train, test = [], []
    for c in range(int(y.max()) + 1):
        rows = (y == c).nonzero().flatten()
        if len(rows) <= per_class:
            raise ConfigError(
                f"class {c} has {len(rows)} images: holding out {per_class} per class for testing leaves it none to "
                "train on"
            )
        rows = rows[torch.randperm(len(rows), generator=g)]
        test.append(rows[:per_class])
        train.append(rows[per_class:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(test)).values


#: The arms every other arm is compared with: the ablation that separates "adversarial" from "more augmentation",
#: and plain re-balancing.
BASELINES = ("random-oversample", "resample")
#: The accuracies of one run that :func:`aggregate_seeds` summarises.
METRICS = ("balanced", "minority", "worst")


def aggregate_seeds(
    results: Iterable[Mapping[str, Any]],
    baselines: Sequence[str] = BASELINES,
    metrics: Sequence[str] = METRICS,
) -> list[dict[str, Any]]:
    """Mean and seed-to-seed spread of each arm, and whether it beats each baseline by more than that spread.

    Results are grouped by ``(ratio, arm)``. For each metric the group's ``mean`` and ``sd`` over its seeds are
    given; ``sd`` is the sample standard deviation (``n - 1`` in the denominator), ``None`` for a single seed.

    **Beats by more than the seed-to-seed spread**: arm A beats baseline B on a metric when the difference of their
    means over seeds exceeds the larger of their two seed SDs, ``mean_A - mean_B > max(sd_A, sd_B)``. The verdict
    is ``None`` (undecided) when either arm has fewer than 2 seeds, when B was not run at that ratio, and for B
    against itself.

    Args:
        results: One mapping per run with ``ratio``, ``arm``, ``seed`` and each metric (e.g. :func:`run_arm`'s).
        baselines: The arms every arm is compared with.
        metrics: The accuracies summarised.

    Returns:
        One row per ``(ratio, arm)`` in order of first appearance: ``ratio``, ``arm``, ``seeds`` (sorted), ``n``,
        ``{metric: {"mean", "sd"}}`` and ``versus``: ``{baseline: {metric: {"difference", "spread", "beats"}}}``
        (``difference`` and ``spread`` ``None`` when the baseline was not run at that ratio).
    """
    groups: dict[tuple[float, str], list[Mapping[str, Any]]] = {}
    for r in results:
        groups.setdefault((float(r["ratio"]), str(r["arm"])), []).append(r)
    stats: dict[tuple[float, str], dict[str, Any]] = {}
    for key, runs in groups.items():
        row: dict[str, Any] = {"ratio": key[0], "arm": key[1], "seeds": sorted(int(r["seed"]) for r in runs)}
        row["n"] = len(runs)
        for m in metrics:
            values = [float(r[m]) for r in runs]
            mean = sum(values) / len(values)
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
            row[m] = {"mean": mean, "sd": sd}
        stats[key] = row
    for (ratio, arm), row in stats.items():
        row["versus"] = {}
        for b in baselines:
            base = stats.get((ratio, b))
            row["versus"][b] = {m: _versus(row, base, m, same=arm == b) for m in metrics}
    return list(stats.values())


def _versus(row: Mapping[str, Any], base: Mapping[str, Any] | None, metric: str, same: bool) -> dict[str, Any]:
    """One arm against one baseline on one metric (see :func:`aggregate_seeds`)."""
    if base is None:
        return {"difference": None, "spread": None, "beats": None}
    a, b = row[metric], base[metric]
    difference = a["mean"] - b["mean"]
    spread = None if a["sd"] is None or b["sd"] is None else max(a["sd"], b["sd"])
    beats = None if same or spread is None else difference > spread
    return {"difference": difference, "spread": spread, "beats": beats}
