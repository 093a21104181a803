"""CLEVER scores: an extreme-value estimate of the minimal adversarial distortion (Weng et al., ICLR 2018).

For an input ``x0`` with label ``y`` and a target class ``k``, the margin ``g(x) = z_y(x) - z_k(x)`` must fall to
zero before ``k`` wins. If ``L`` bounds ``||∇g||_q`` (``q`` the dual of the perturbation norm ``p``) on the Lp ball
of radius ``R`` around ``x0``, no perturbation smaller than ``min(g(x0) / L, R)`` can do it. CLEVER estimates
``L`` with extreme-value theory: draw ``N_s`` points uniformly in the ball, keep the largest gradient norm, repeat
for ``N_b`` batches, fit a reverse Weibull distribution to the ``N_b`` maxima and take its location (the right
end of its support) as ``L``. The untargeted score is the smallest targeted score over all classes ``k != y``.

This implementation follows the reference code (``huanzhang12/CLEVER``): points clipped to the valid input
range, per-batch maxima of the dual gradient norm, a reverse-Weibull fit from several initial shapes with the
best Kolmogorov–Smirnov p-value kept (the code's default ``mle_reg`` method), the sample maximum when every fit
is rejected (p < 0.001). It runs batched: all sample points of all inputs in large forward passes, the
gradients of all targets from one forward pass, and every Weibull fit of every input and target at once.

It is an *estimate*, not a certificate: gradient masking makes it overestimate (Goodfellow 2018), which
:func:`compare_with_attack` detects when an attack found a smaller perturbation.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from robustlab.errors import ConfigError, ModelError
from robustlab.metrics._weibull import FIT_SHAPES, POOR_STATUSES, STATUS_FALLBACK, WeibullFit, fit_reverse_weibull
from robustlab.models.adapter import check_images, eval_mode, predict_logits, trusted_inputs
from robustlab.stats import median
from robustlab.threat import Norm, check_labels, get_norm, resolve_targets

__all__ = ["FIT_METHODS", "CleverResult", "clever"]

logger = logging.getLogger(__name__)

#: Fit methods, named as the reference code's ``--method``: ``mle_reg`` (its default: maximum likelihood with a
#: small penalty that keeps the optimiser from diverging), ``mle`` (plain maximum likelihood, as in the paper; ART
#: fits that way from one initial shape; it often diverges on few batches, see the ``"diverged"`` fit status) and
#: ``maxsamp`` (no fit: the largest observed gradient norm).
FIT_METHODS = ("mle_reg", "mle", "maxsamp")
_SCALE_REG = {"mle_reg": 0.01, "mle": 0.0}


@dataclass
class CleverResult:
    """CLEVER scores of a batch of inputs, with the per-target scores and every fit's diagnostics.

    ``T`` is the number of targets per input: ``K - 1`` (every other class) for ``"untargeted"``, 1 for the
    targeted modes. Per-input and per-target fields are CPU tensors; ``fit_status`` is a nested list.

    Attributes:
        norm: Perturbation norm (``"l1"``, ``"l2"``, ``"linf"``); gradients are measured in its dual.
        target_mode: ``"untargeted"``, ``"random"``, ``"least-likely"``, ``"top2"`` or ``"explicit"``.
        radius: Sampling radius ``R``; every score is at most ``R``.
        batches: ``N_b``, the number of per-batch maxima fitted.
        samples: ``N_s``, the sample points per batch.
        seed: Seed of the generator (sample points and random targets).
        fit: ``"mle_reg"``, ``"mle"`` or ``"maxsamp"``.
        fit_shapes: Initial Weibull shapes tried.
        label: The class the score protects (the given label, else the clean prediction).
        clean_pred: Clean prediction.
        targets: Target class of each (input, target slot).
        margin: ``z_y(x0) - z_k(x0)`` at the clean input.
        target_scores: Per-target score ``min(max(margin, 0) / location, R)``.
        score: Smallest per-target score of each input: the CLEVER score.
        location: Estimated Lipschitz constant (Weibull location) per target.
        shape: Weibull shape ``c`` (``inf`` for a constant series, ``nan`` without a fit).
        scale: Weibull scale (``0`` for a constant series).
        ks_statistic: K–S distance of the kept fit.
        ks_pvalue: Its p-value.
        max_gradient_norm: Largest sampled gradient norm per target.
        batch_maxima: The fitted per-batch maxima.
        fit_status: Per input and target: ``"ok"``, ``"poor"`` (K–S p < 0.05), ``"diverged"`` (the fit puts the
            location > 100 sample ranges above the largest maximum: no finite endpoint, score unreliable),
            ``"fallback"`` (every fit rejected: location = largest sample), ``"degenerate"`` (constant gradient
            norm, e.g. a linear model: location = that constant), ``"nonfinite"`` (NaN or inf gradients: score
            NaN) or ``"maxsamp"``.
        forward_passes: Forward passes per input (sample points plus the clean input).
        gradient_passes: Margin gradients computed per input (``batches * samples * T``).
        seconds: Wall time of the whole call.

    Shape:
        - label, clean_pred, score, forward_passes, gradient_passes: ``(N,)``
        - targets, margin, target_scores, location, shape, scale, ks_statistic, ks_pvalue, max_gradient_norm:
          ``(N, T)``
        - batch_maxima: ``(N, T, batches)``

    References:
        Weng et al., "Evaluating the Robustness of Neural Networks: An Extreme Value Theory Approach", ICLR 2018.
    """

    norm: str
    target_mode: str
    radius: float
    batches: int
    samples: int
    seed: int
    fit: str
    fit_shapes: tuple[float, ...]
    label: Tensor
    clean_pred: Tensor
    targets: Tensor
    margin: Tensor
    target_scores: Tensor
    score: Tensor
    location: Tensor
    shape: Tensor
    scale: Tensor
    ks_statistic: Tensor
    ks_pvalue: Tensor
    max_gradient_norm: Tensor
    batch_maxima: Tensor
    fit_status: list[list[str]]
    forward_passes: Tensor
    gradient_passes: Tensor
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of inputs."""
        return int(self.score.numel())

    @property
    def binding_target(self) -> Tensor:
        """``(N,)`` index into the target slots of the target with the smallest score."""
        s = torch.nan_to_num(self.target_scores, nan=math.inf)
        return s.argmin(1) if s.numel() else torch.zeros(0, dtype=torch.int64)

    @property
    def poor_fit(self) -> Tensor:
        """``(N,)`` bool: the fit behind the score (the binding target's) is poor, rejected or not finite."""
        rows = torch.arange(self.n)
        cols = self.binding_target
        return torch.tensor([self.fit_status[int(i)][int(j)] in POOR_STATUSES for i, j in zip(rows, cols, strict=True)])

    @property
    def mean(self) -> float | None:
        """Mean score over inputs with a finite score (``None`` if there are none)."""
        v = self.score[torch.isfinite(self.score)]
        return float(v.mean()) if v.numel() else None

    @property
    def median(self) -> float | None:
        """Median score over inputs with a finite score (the average of the two middle values for an even count,
        as numpy and DuckDB; ``None`` if there are none)."""
        return median(self.score[torch.isfinite(self.score)])

    def summary(self) -> dict[str, Any]:
        """Aggregate numbers, JSON-serialisable (``None`` where undefined)."""
        statuses = [s for row in self.fit_status for s in row]
        return {
            "norm": self.norm,
            "target": self.target_mode,
            "radius": self.radius,
            "batches": self.batches,
            "samples": self.samples,
            "seed": self.seed,
            "fit": self.fit,
            "n": self.n,
            "mean": self.mean,
            "median": self.median,
            "n_clean_correct": int((self.clean_pred == self.label).sum()),
            "n_poor_fit": int(self.poor_fit.sum()),
            "fit_status_counts": {s: statuses.count(s) for s in sorted(set(statuses))},
            "gradient_passes": int(self.gradient_passes.sum()),
            "forward_passes": int(self.forward_passes.sum()),
            "seconds": self.seconds,
            **self.extra,
        }

    def to_dict(self) -> dict[str, Any]:
        """The summary plus per-input ``scores``, ``labels``, ``poor_fit`` and per-target ``target_scores``
        (non-finite numbers become ``None``)."""
        return {
            **self.summary(),
            "scores": _jsonable(self.score.tolist()),
            "labels": self.label.tolist(),
            "poor_fit": self.poor_fit.tolist(),
            "targets": self.targets.tolist(),
            "target_scores": _jsonable(self.target_scores.tolist()),
        }

    def to_columns(self) -> dict[str, list[Any]]:
        """Column-oriented per-input data for the store: the score, the binding target and its fit, the
        per-target lists and the settings (non-finite numbers become ``None``)."""
        n = self.n
        rows = torch.arange(n)
        j = self.binding_target

        def pick(t: Tensor) -> list[Any]:
            return _jsonable(t[rows, j].tolist()) if n else []

        return {
            "index": list(range(n)),
            "label": self.label.tolist(),
            "clean_pred": self.clean_pred.tolist(),
            "score": _jsonable(self.score.tolist()),
            "target": self.targets[rows, j].tolist() if n else [],
            "margin": pick(self.margin),
            "lipschitz": pick(self.location),
            "ks_pvalue": pick(self.ks_pvalue),
            "fit_status": [self.fit_status[i][int(j[i])] for i in range(n)],
            "poor_fit": self.poor_fit.tolist(),
            "targets": self.targets.tolist(),
            "target_scores": _jsonable(self.target_scores.tolist()),
            "norm": [self.norm] * n,
            "target_mode": [self.target_mode] * n,
            "radius": [self.radius] * n,
            "batches": [self.batches] * n,
            "samples": [self.samples] * n,
            "fit": [self.fit] * n,
            "seed": [self.seed] * n,
            "forward_passes": self.forward_passes.tolist(),
            "gradient_passes": self.gradient_passes.tolist(),
        }

    def __repr__(self) -> str:
        return (
            f"CleverResult(norm={self.norm}, target={self.target_mode}, n={self.n}, mean={self.mean}, "
            f"median={self.median}, radius={self.radius}, batches={self.batches}, samples={self.samples})"
        )


def clever(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None = None,
    *,
    norm: str | Norm = "l2",
    target: str | Tensor = "untargeted",
    batches: int = 20,
    samples: int = 50,
    radius: float | None = None,
    seed: int = 0,
    fit: str = "mle_reg",
    fit_shapes: Sequence[float] = FIT_SHAPES,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> CleverResult:
    """CLEVER scores of a batch of inputs: estimated minimal Lp distortions from sampled gradient norms.

    For each input and target ``k``: ``batches`` × ``samples`` points are drawn uniformly in the Lp ball of
    radius ``radius`` around the input and clipped to [0, 1]; at each, the dual norm of the gradient of the
    margin ``z_y - z_k`` is computed; the maximum of each batch is kept; a reverse Weibull is fitted to the
    maxima (``fit``); the score is ``min(margin / location, radius)`` (0 when the margin is not positive). The
    untargeted score is the minimum over all ``k != y``.

    The same ``seed`` draws the same random targets as :func:`robustlab.attacks.attack` (the generator is used
    for targets first), so scores and attack results line up for :func:`compare_with_attack`.

    Args:
        model: Classifier taking [0, 1] images and returning logits (a :class:`~robustlab.ModelAdapter` or any
            module); run in eval mode, its modes restored after.
        x: Inputs in [0, 1].
        y: Labels; default: the clean predictions (as ART's ``clever_u``).
        norm: Perturbation norm ``"l2"``, ``"linf"`` or ``"l1"``; gradients are measured in its dual.
        target: ``"untargeted"``, ``"random"``, ``"least-likely"``, ``"top2"`` or a tensor of target classes.
        batches: ``N_b``, number of batches (maxima fitted per target); at least 2.
        samples: ``N_s``, sample points per batch; at least 1.
        radius: Sampling radius ``R`` (> 0); every score is at most ``R``. Default: the norm's
            ``clever_radius`` (L∞ 0.1, L2 3, L1 30: the scale of the reference code's sampling).
        seed: Seeds the one ``torch.Generator`` (on ``x``'s device) for targets and sample points.
        fit: ``"mle_reg"`` (reference default), ``"mle"`` or ``"maxsamp"``; see :data:`FIT_METHODS`.
        fit_shapes: Initial Weibull shapes; the fit with the best K–S p-value is kept.
        batch_size: Sample points per forward pass (memory vs. speed); results do not depend on it beyond
            floating-point rounding.
        progress: Called as ``progress(done, total)`` in sample points after every forward pass (for a
            progress bar; it does not change the scores).

    Returns:
        Scores, per-target scores and fit diagnostics; see :class:`CleverResult`.

    Raises:
        ConfigError: radius ≤ 0, fewer than 2 batches or 1 sample, unknown fit method, bad shapes or batch
            size, no inputs, labels out of range, a target equal to its label, or a target mode the number of
            classes cannot support.
        ModelError: the model returns fewer than 2 outputs (CLEVER needs a margin between two classes).
        UnknownNameError: unknown norm or target mode (with close matches).
        InputContractError: ``x`` is not a float (N, C, H, W) tensor in [0, 1].

    Shape:
        - x: ``(N, C, H, W)``; y: ``(N,)`` int64; target (tensor): ``(N,)`` int64
        - result: see :class:`CleverResult` (``T = K - 1`` untargeted, else 1)

    References:
        Weng et al., "Evaluating the Robustness of Neural Networks: An Extreme Value Theory Approach", ICLR 2018;
        reference code ``github.com/huanzhang12/CLEVER``.
        Goodfellow, "Gradient Masking Causes CLEVER to Overestimate Adversarial Perturbation Size", 2018.
    """
    t0 = time.perf_counter()
    norm_obj = get_norm(norm)
    r = norm_obj.clever_radius if radius is None else radius
    _check_config(r, batches, samples, fit, fit_shapes, batch_size)
    check_images(x, name="clever")
    x = x.detach()
    n = x.shape[0]
    if n == 0:
        raise ConfigError("x holds no inputs: pass at least one image")
    device = x.device
    generator = torch.Generator(device=device).manual_seed(seed)

    with eval_mode(model):
        clean = predict_logits(model, x, batch_size)
        if clean.dim() != 2 or clean.shape[1] < 2:
            raise ModelError(
                f"CLEVER needs a classifier with at least 2 outputs (logits of shape (N, K), K >= 2); the model "
                f"returned shape {tuple(clean.shape)}"
            )
        k = clean.shape[1]
        pred = clean.argmax(1)
        if y is None:
            y = pred
        else:
            y = y.to(device)
            check_labels(y, k)
            if y.shape[0] != n:
                raise ConfigError(f"x holds {n} inputs but y holds {y.shape[0]} labels")
        mode, chosen = resolve_targets(target, clean, y, generator)
        if chosen is None:  # untargeted: every class but the label, in increasing order
            others = torch.arange(k - 1, device=device).expand(n, -1)
            targets = others + (others >= y[:, None]).long()  # (N, K-1)
        else:
            targets = chosen[:, None]  # (N, 1)
        margins = clean.gather(1, y[:, None]) - clean.gather(1, targets)  # (N, T)
        with trusted_inputs(model):  # sample points are clipped to [0, 1] around the checked x
            maxima = _gradient_maxima(
                model, x, y, targets, norm_obj, r, batches, samples, batch_size, generator, progress
            )

    fits = _fit(maxima, fit, fit_shapes)  # every (input, target) series at once
    t_count = targets.shape[1]
    location = torch.from_numpy(fits.location).reshape(n, t_count)
    m64 = margins.double().cpu()
    raw = torch.where(location > 0, m64.clamp_min(0) / location, torch.full_like(m64, math.inf))
    target_scores = torch.where(m64 > 0, raw.clamp_max(r), torch.zeros_like(m64))  # margin <= 0: already there
    undefined = torch.isnan(location) | torch.isnan(m64)  # non-finite gradients or logits
    target_scores = torch.where(undefined, torch.full_like(m64, math.nan), target_scores)
    score = torch.nan_to_num(target_scores, nan=math.inf).amin(1) if t_count else torch.zeros(n)
    score = torch.where(torch.isnan(target_scores).all(1), torch.full_like(score, math.nan), score)
    statuses = fits.status.reshape(n, t_count).tolist()
    points = batches * samples

    def as_tensor(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).reshape(n, t_count)

    result = CleverResult(
        norm=norm_obj.name,
        target_mode=mode,
        radius=float(r),
        batches=batches,
        samples=samples,
        seed=seed,
        fit=fit,
        fit_shapes=tuple(float(c) for c in fit_shapes),
        label=y.cpu(),
        clean_pred=pred.cpu(),
        targets=targets.cpu(),
        margin=m64,
        target_scores=target_scores,
        score=score,
        location=location,
        shape=as_tensor(fits.shape),
        scale=as_tensor(fits.scale),
        ks_statistic=as_tensor(fits.ks_statistic),
        ks_pvalue=as_tensor(fits.ks_pvalue),
        max_gradient_norm=maxima.amax(2),
        batch_maxima=maxima,
        fit_status=statuses,
        forward_passes=torch.full((n,), points + 1, dtype=torch.int64),
        gradient_passes=torch.full((n,), points * t_count, dtype=torch.int64),
        seconds=time.perf_counter() - t0,
    )
    if int(result.poor_fit.sum()):
        logger.info("CLEVER: %d of %d scores rest on a poor Weibull fit", int(result.poor_fit.sum()), n)
    logger.debug("%r", result)
    return result


# -- sampling and gradients ------------------------------------------------------------------------------------


def _gradient_maxima(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    targets: Tensor,
    norm: Norm,
    radius: float,
    batches: int,
    samples: int,
    batch_size: int,
    generator: torch.Generator,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Per-batch maxima of the dual norm of ``∇(z_y - z_k)`` over points sampled in the ball.

    Sample points of all inputs and batches stream through forward passes of ``batch_size`` rows; the margin
    gradients of all targets of a row come from its one forward pass (one backward per target, the graph
    retained in between; a backward to the input only, no weight gradients).

    Shape:
        - x: ``(N, C, H, W)``; y: ``(N,)``; targets: ``(N, T)``
        - output: ``(N, T, batches)`` float64 on the CPU
    """
    n, t_count = targets.shape
    maxima = torch.full((n * batches, t_count), -math.inf, dtype=torch.float64, device=x.device)
    total, done = n * batches * samples, 0
    if progress is not None:
        progress(0, total)
    for points, series in _sample_points(x, norm, radius, batches, samples, batch_size, generator):
        rows = points.shape[0]
        inputs = series // batches  # (rows,) input index of each point
        yr, tr = y[inputs], targets[inputs]  # (rows,), (rows, T)
        points = points.detach().requires_grad_(True)  # an alias of the sampler's buffer, not the buffer
        norms = torch.empty((rows, t_count), dtype=torch.float64, device=x.device)
        with torch.enable_grad():
            logits = model(points)  # (rows, K): one forward pass for every target
            for t in range(t_count):
                cot = torch.zeros_like(logits)
                cot.scatter_(1, yr[:, None], 1.0)
                cot.scatter_(1, tr[:, t : t + 1], -1.0)  # d(z_y - z_k) / d logits
                (grad,) = torch.autograd.grad(logits, points, cot, retain_graph=t < t_count - 1)
                norms[:, t] = norm.dual(grad)  # (rows,)
        norms = torch.where(torch.isnan(norms), torch.full_like(norms, math.inf), norms)  # keep NaN visible
        maxima.scatter_reduce_(0, series[:, None].expand(rows, t_count), norms, reduce="amax")
        done += rows
        if progress is not None:
            progress(done, total)
    return maxima.reshape(n, batches, t_count).permute(0, 2, 1).contiguous().cpu()


def _sample_points(
    x: Tensor,
    norm: Norm,
    radius: float,
    batches: int,
    samples: int,
    batch_size: int,
    generator: torch.Generator,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Stream the sample points of every (input, batch) in chunks of ``batch_size`` rows.

    Each (input, batch) block of ``samples`` points is drawn at once, in input-then-batch order, uniformly in
    the ball (the norm's ``random_init``: uniform cube for L∞, Gaussian direction × ``R U^{1/d}`` for L2,
    Dirichlet magnitudes with random signs for L1) and clipped to [0, 1], so the points do not depend on
    ``batch_size``. The yielded tensors are one reused buffer: consume each before taking the next.

    Shape:
        - yields points ``(rows, C, H, W)`` and their series index ``input * batches + batch``, ``(rows,)``
    """
    total = x.shape[0] * batches * samples
    buf = torch.empty((min(batch_size, total), *x.shape[1:]), dtype=x.dtype, device=x.device)
    ids = torch.empty(buf.shape[0], dtype=torch.int64, device=x.device)
    fill = 0  # rows of buf already written
    for i in range(x.shape[0]):
        x0 = x[i : i + 1].expand(samples, *x.shape[1:])
        for b in range(batches):
            block = norm.random_init(x0, radius, generator).add_(x0).clamp_(0.0, 1.0)  # (samples, C, H, W)
            used = 0
            while used < samples:  # a block may straddle two forward passes
                take = min(samples - used, buf.shape[0] - fill)
                buf[fill : fill + take] = block[used : used + take]
                ids[fill : fill + take] = i * batches + b
                fill, used = fill + take, used + take
                if fill == buf.shape[0]:
                    yield buf, ids
                    total -= fill
                    fill = 0
                    if total < buf.shape[0]:  # the last, shorter pass
                        buf, ids = buf[:total], ids[:total]
    if fill:
        yield buf[:fill], ids[:fill]


# -- fitting and checks ----------------------------------------------------------------------------------------


def _fit(maxima: Tensor, method: str, shapes: Sequence[float]) -> WeibullFit:
    """Fit every (input, target) series; ``maxsamp`` takes the largest value without fitting.

    Shape:
        - maxima: ``(N, T, B)``
        - fit arrays: ``(N * T,)``
    """
    data = maxima.reshape(-1, maxima.shape[-1]).numpy()
    m = data.shape[0]
    if method == "maxsamp":
        finite = np.isfinite(data).all(axis=1)
        nan = np.full(m, np.nan)
        status = np.where(finite, "maxsamp", "nonfinite")
        top = np.where(finite, data.max(axis=1, initial=-np.inf), np.nan)
        return WeibullFit(nan, top, nan.copy(), nan.copy(), nan.copy(), nan.copy(), status)
    fits = fit_reverse_weibull(data, shapes, scale_reg=_SCALE_REG[method])
    n_fallback = int((fits.status == STATUS_FALLBACK).sum())
    if n_fallback:
        logger.info("CLEVER: %d of %d Weibull fits rejected (K–S p < 0.001): sample maximum used", n_fallback, m)
    return fits


def _check_config(
    radius: float, batches: int, samples: int, fit: str, shapes: Sequence[float], batch_size: int
) -> None:
    if not (isinstance(radius, int | float) and math.isfinite(radius) and radius > 0):
        raise ConfigError(f"radius must be a finite number > 0 (the sampling ball's radius), got {radius!r}")
    for name, value, low in (("batches", batches, 2), ("samples", samples, 1), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            extra = " (the Weibull fit needs at least 2 per-batch maxima)" if name == "batches" else ""
            raise ConfigError(f"{name} must be an integer >= {low}{extra}, got {value!r}")
    if fit not in FIT_METHODS:
        raise ConfigError(f"unknown fit method {fit!r}; choose one of {', '.join(FIT_METHODS)}")
    if len(shapes) == 0 or not all(isinstance(c, int | float) and math.isfinite(c) and c > 0 for c in shapes):
        raise ConfigError(f"fit_shapes must be a non-empty sequence of finite numbers > 0, got {tuple(shapes)!r}")


def _jsonable(values: Any) -> Any:
    if isinstance(values, list):
        return [_jsonable(v) for v in values]
    if isinstance(values, float) and not math.isfinite(values):
        return None
    return values
