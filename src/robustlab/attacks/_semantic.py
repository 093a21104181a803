"""The semantic attack: joint sign ascent on image attributes and a small L∞ pixel residual (Semantic Image Attack,
Luo et al., arXiv 2303.13010, made parametric; see ``docs/semantic.md``).

Per image still classified right, in this order, stopping at the first success (early stop per sample):

1. **Each attribute alone** (``single_starts``, default on): the best of a ``grid``-point sweep over its range, then
   ``steps`` sign steps from there, the other attributes at identity and no pixel residual. These are also the
   single-attribute sensitivities of the diagnosis (H1).
2. **Joint ascent** on every attribute and the residual: one start at the identity, one at each single-attribute
   optimum (so the joint attack is never weaker than any attribute alone), then ``restarts`` uniformly random starts.
   A restart that fools an image ends it; otherwise the iterate with the highest loss is kept.

``steps=0`` is **the sweep alone**: step 1 without its ascent and no step 2, forward passes only (no gradient), each
image kept at its first success or else at its highest-loss sweep point. On one attribute, whose loss along the
range is a curve of one variable, a few points of it reach the strength of ART's 10-step sign ascent for a fraction
of the cost (``docs/benchmarks.md``, "Semantic attack at ART's strength").

One sign step moves ``rel_step / steps`` in normalised units (a range is 2 wide) and ``rel_step * pixel_eps /
steps`` in the residual: with ``rel_step = 2.5`` this is ART's composite attack's step (2.5 · half-range / 10 over
10 steps). The attack proposes parameters; the evaluator projects them, re-renders the image and judges it with a
fresh forward pass.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks._evaluator import (
    PassCounter,
    finite_rows,
    is_success,
    judge_semantic,
    statuses,
)
from robustlab.attacks._result import AttackResult
from robustlab.errors import ConfigError
from robustlab.models.adapter import check_images, eval_mode, predict_logits, trusted_inputs
from robustlab.threat import check_labels, make_loss, resolve_targets
from robustlab.threat.semantic import SemanticThreat, semantic_threat


@dataclass(frozen=True)
class SemanticConfig:
    """Settings of the semantic attack (see the module docstring).

    Attributes:
        steps: Sign steps per ascent; 0: the single-attribute sweeps alone (needs ``single_starts``, ``grid`` >= 2
            and no ``restarts``).
        restarts: Random joint restarts after the identity and single-attribute starts.
        single_starts: Attack each attribute alone first and start one joint restart at each optimum.
        grid: Points of the sweep that starts each single-attribute ascent (0: start at the identity).
        loss: ``margin`` (default; the success margin) or ``ce``.
        rel_step: Sign-step length times ``steps``, in normalised units (and in units of ``pixel_eps``).
        early_stop: Stop each image at its first success (off: keep ascending, for training).
    """

    steps: int = 20
    restarts: int = 3
    single_starts: bool = True
    grid: int = 9
    loss: str = "margin"
    rel_step: float = 2.5
    early_stop: bool = True

    def check(self) -> None:
        """Raise :class:`ConfigError` for a value out of range."""
        for name, minimum in (("steps", 0), ("restarts", 0), ("grid", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"semantic attack: {name} must be an integer >= {minimum}, got {value!r}")
        if self.grid == 1:
            raise ConfigError("semantic attack: grid must be 0 (no sweep) or >= 2 points (both ends of the range)")
        if self.steps == 0 and not (self.single_starts and self.grid >= 2 and self.restarts == 0):
            raise ConfigError(
                "semantic attack: steps=0 is the single-attribute sweep alone; it needs single_starts, grid >= 2 "
                f"and restarts=0 (got single_starts={self.single_starts}, grid={self.grid}, restarts={self.restarts})"
            )
        if not (isinstance(self.rel_step, int | float) and math.isfinite(self.rel_step) and self.rel_step > 0):
            raise ConfigError(f"semantic attack: rel_step must be a number > 0, got {self.rel_step!r}")
        if self.loss not in ("margin", "ce"):
            raise ConfigError(f"semantic attack: loss must be 'margin' or 'ce', got {self.loss!r}")

    def cost(self, threat: SemanticThreat) -> int:
        """Model calls per image if none stops early (a whole-period attribute's sweep has one point less)."""
        attributes = threat.size
        sweeps = sum(len(threat.sweep(k, self.grid)) for k in range(attributes)) if self.grid else 0
        if self.steps == 0:
            return sweeps
        single = sweeps + attributes * (self.steps + 1) if self.single_starts else 0
        starts = 1 + (attributes if self.single_starts else 0) + self.restarts
        return single + starts * (self.steps + 1)


@dataclass
class SemanticProposal:
    """What the attack found for each image: normalised attribute parameters, the pixel residual, and the outcome
    of each single-attribute search.

    Shape:
        - u: ``(N, A)``; delta: ``(N, C, H, W)`` (``None`` without a residual)
        - single_success: ``(N, A)`` bool; single_u: ``(N, A)`` (``None`` without single-attribute starts)
    """

    u: Tensor
    delta: Tensor | None
    single_success: Tensor | None
    single_u: Tensor | None


class _Objective:
    """Loss, success and the pass counting of one attack call."""

    def __init__(self, model: nn.Module, threat: SemanticThreat, loss: str, counter: PassCounter | None) -> None:
        self.model = model
        self.threat = threat
        self.loss = make_loss(loss, kappa=math.inf)
        self.counter = counter

    def evaluate(
        self,
        x: Tensor,
        u: Tensor,
        delta: Tensor | None,
        y: Tensor,
        t: Tensor | None,
        idx: Tensor,
        only: Tensor | None = None,
        grad: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Loss and success at ``(u, delta)``; with ``grad``, also the loss gradients (``None`` for a frozen part)."""
        with torch.enable_grad() if grad else torch.no_grad():
            if grad:
                u = u.detach().requires_grad_(True)
                delta = None if delta is None else delta.detach().requires_grad_(True)
            logits = self.model(self.threat.render(x, u, delta, only=only))
            loss = self.loss(logits, y, t)
            gu = gd = None
            if grad:
                inputs = [u] if delta is None else [u, delta]
                grads = torch.autograd.grad(loss.sum(), inputs)
                gu = grads[0]
                gd = grads[1] if delta is not None else None
        if self.counter is not None:
            (self.counter.add_gradient if grad else self.counter.add_forward)(idx)
        return loss.detach(), is_success(logits.detach(), y, t), gu, gd


def _ascend(
    obj: _Objective,
    x: Tensor,
    y: Tensor,
    t: Tensor | None,
    idx: Tensor,
    u: Tensor,
    delta: Tensor | None,
    free: Tensor,
    cfg: SemanticConfig,
    highest_loss: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """Sign ascent from ``(u, delta)`` on the attributes marked ``free`` (``(A,)`` bool) and on ``delta`` if given.

    ``highest_loss``: keep each row's highest-loss iterate whatever its verdict (the inner maximiser of training);
    otherwise a success beats any failure (with ``early_stop`` the first success, without it the highest-loss one).

    Returns the kept parameters of each row (its first success, else its highest-loss iterate), whether it
    succeeded, and that loss.
    """
    threat = obj.threat
    only = None if bool(free.all()) or delta is not None else free
    step_u = cfg.rel_step / cfg.steps
    step_d = cfg.rel_step * threat.pixel_eps / cfg.steps
    best_u, best_d = u.clone(), None if delta is None else delta.clone()
    best_loss = torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)
    won = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    active = torch.arange(x.shape[0], device=x.device)
    for step in range(cfg.steps + 1):
        last = step == cfg.steps
        a = active
        loss, ok, gu, gd = obj.evaluate(
            x[a], u[a], None if delta is None else delta[a], y[a], None if t is None else t[a], idx[a], only, not last
        )
        higher = loss > best_loss[a]
        if highest_loss:
            better = higher
        elif cfg.early_stop:
            better = ok & ~won[a] | ~ok & ~won[a] & higher
        else:
            better = ok & ~won[a] | (ok == won[a]) & higher
        rows = a[better]
        best_u[rows] = u[rows]
        if delta is not None and best_d is not None:
            best_d[rows] = delta[rows]
        best_loss[a] = torch.where(better, loss, best_loss[a])
        won[a] |= ok
        if last:
            break
        keep = ~ok if cfg.early_stop else torch.ones_like(ok)
        assert gu is not None
        u_new = u[a] + step_u * torch.sign(gu) * free.to(u.dtype)
        u[a] = torch.where(keep.unsqueeze(1), u_new, u[a]).clamp(-1.0, 1.0)
        if delta is not None and gd is not None:
            d_new = (delta[a] + step_d * torch.sign(gd)).clamp(-threat.pixel_eps, threat.pixel_eps)
            delta[a] = torch.where(keep.view(-1, *([1] * (delta.dim() - 1))), d_new, delta[a])
        active = a[keep]
        if active.numel() == 0:
            break
    return best_u, best_d, won, best_loss


def _single(
    obj: _Objective, x: Tensor, y: Tensor, t: Tensor | None, idx: Tensor, k: int, cfg: SemanticConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """Attribute ``k`` alone: the best point of a grid sweep, then a sign ascent from it. Returns ``(u, success,
    loss)`` of each row's kept point."""
    threat = obj.threat
    n = x.shape[0]
    free = torch.zeros(threat.size, dtype=torch.bool, device=x.device)
    free[k] = True
    u = threat.identity(n, x)
    if cfg.grid:
        best_loss = torch.full((n,), -math.inf, dtype=x.dtype, device=x.device)
        kept_loss = best_loss.clone()  # the loss at each row's kept point (best_loss is +inf for a success)
        best_v = u[:, k].clone()
        done = torch.zeros(n, dtype=torch.bool, device=x.device)
        for v in threat.sweep(k, cfg.grid):
            rows = (~done).nonzero().flatten() if cfg.early_stop else torch.arange(n, device=x.device)
            if rows.numel() == 0:
                break
            trial = u[rows].clone()
            trial[:, k] = v
            loss, ok, _, _ = obj.evaluate(
                x[rows], trial, None, y[rows], None if t is None else t[rows], idx[rows], only=free
            )
            score = torch.where(ok, torch.full_like(loss, math.inf), loss)
            better = score > best_loss[rows]
            best_loss[rows] = torch.where(better, score, best_loss[rows])
            best_v[rows] = torch.where(better, torch.full_like(loss, v), best_v[rows])
            kept_loss[rows] = torch.where(better, loss, kept_loss[rows])
            done[rows] |= ok
        u[:, k] = best_v
        if cfg.steps == 0:  # the sweep alone
            return u, done, kept_loss
    best_u, _, won, loss = _ascend(obj, x, y, t, idx, u, None, free, cfg)
    return best_u, won, loss


def propose_semantic(
    model: nn.Module,
    threat: SemanticThreat,
    x: Tensor,
    y: Tensor,
    targets: Tensor | None,
    cfg: SemanticConfig,
    generator: torch.Generator,
    index: Tensor,
    counter: PassCounter | None = None,
) -> SemanticProposal:
    """Search attribute parameters (and a pixel residual) that fool ``model`` on every row of ``x``.

    Rows that start out misclassified are searched too (the caller passes only the rows it wants attacked).

    Shape:
        - x: ``(N, C, H, W)``; y, targets, index: ``(N,)``
    """
    n, a_count = x.shape[0], threat.size
    obj = _Objective(model, threat, cfg.loss, counter)
    everyone = torch.ones(a_count, dtype=torch.bool, device=x.device)
    with_delta = threat.pixel_eps > 0
    best_u = threat.identity(n, x)
    best_d = torch.zeros_like(x) if with_delta else None
    best_loss = torch.full((n,), -math.inf, dtype=x.dtype, device=x.device)
    won = torch.zeros(n, dtype=torch.bool, device=x.device)
    single_success = single_u = None

    def keep(rows: Tensor, u: Tensor, d: Tensor | None, ok: Tensor, loss: Tensor) -> None:
        better = (ok & ~won[rows]) | (~won[rows] & (loss > best_loss[rows]))
        r = rows[better]
        best_u[r] = u[better]
        if best_d is not None:
            best_d[r] = d[better] if d is not None else 0.0
        best_loss[rows] = torch.where(better, loss, best_loss[rows])
        won[rows] |= ok

    def pick(rows: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        return x[rows], y[rows], None if targets is None else targets[rows], index[rows]

    if cfg.single_starts:
        single_success = torch.zeros(n, a_count, dtype=torch.bool, device=x.device)
        single_u = threat.identity(n, x)
        # Of the attributes that fool an image alone, the kept example is the one with the highest loss (not the
        # first in rendering order, which would bias the necessity histogram towards geometry).
        chosen_u, chosen_loss = threat.identity(n, x), torch.full_like(best_loss, -math.inf)
        highest_u, highest_loss = threat.identity(n, x), torch.full_like(best_loss, -math.inf)
        everyone_rows = torch.arange(n, device=x.device)
        for k in range(a_count):
            uk, ok, lk = _single(obj, *pick(everyone_rows), k, cfg)
            single_success[:, k], single_u[:, k] = ok, uk[:, k]
            better = ok & (lk > chosen_loss)
            chosen_u[better], chosen_loss[better] = uk[better], lk[better]
            higher = lk > highest_loss
            highest_u[higher], highest_loss[higher] = uk[higher], lk[higher]
        fooled = single_success.any(1)
        if cfg.steps == 0:  # the sweep alone: the success, else the highest-loss single-attribute point
            best_u = torch.where(fooled.unsqueeze(1), chosen_u, highest_u)
            return SemanticProposal(best_u, best_d, single_success, single_u)
        # the chosen single optimum judged as a joint point (no residual): an early success ends the image
        keep(everyone_rows, chosen_u, None, fooled, torch.where(fooled, math.inf, -math.inf))

    def identity_start(m: int) -> tuple[Tensor, Tensor | None]:
        d0 = torch.zeros(m, *x.shape[1:], dtype=x.dtype, device=x.device) if with_delta else None
        return threat.identity(m, x), d0

    def run_start(rows: Tensor, u0: Tensor, d0: Tensor | None) -> None:
        u, d, ok, loss = _ascend(obj, *pick(rows), u0, d0, everyone, cfg)
        keep(rows, u, d, ok, loss)

    plan: list[str] = ["identity"] + ([f"single:{k}" for k in range(a_count)] if cfg.single_starts else [])
    plan += ["random"] * cfg.restarts
    for kind in plan:
        rows = (~won).nonzero().flatten() if cfg.early_stop else torch.arange(n, device=x.device)
        if rows.numel() == 0:
            break
        m = rows.numel()
        if kind == "identity":
            u0, d0 = identity_start(m)
        elif kind.startswith("single:"):
            k = int(kind.split(":")[1])
            assert single_u is not None
            u0 = threat.identity(m, x)
            u0[:, k] = single_u[rows, k]
            d0 = identity_start(m)[1]
        else:
            u0 = torch.rand(m, a_count, generator=generator, device=generator.device).to(x.device, x.dtype) * 2 - 1
            d0 = None
            if with_delta:
                noise = torch.rand(m, *x.shape[1:], generator=generator, device=generator.device)
                d0 = (noise.to(x.device, x.dtype) * 2 - 1) * threat.pixel_eps
        run_start(rows, u0, d0)
    return SemanticProposal(best_u, best_d, single_success, single_u)


#: Settings of :func:`semantic_attack` that describe the threat model (the rest configure the search).
THREAT_PARAMS = ("preset", "attributes", "ranges", "padding")


def semantic_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    preset: str = "mild",
    attributes: Sequence[str] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    pixel_eps: float | None = None,
    padding: str | None = None,
    target: str | Tensor = "untargeted",
    seed: int = 0,
    batch_size: int | None = 256,
    keep_adversarials: bool = False,
    progress: Callable[[int, int], None] | None = None,
    index: Tensor | None = None,
    necessity: bool = True,
    shapley: bool = False,
    **search: Any,
) -> AttackResult:
    """Attack ``model`` with a semantic threat model and judge every example by re-rendering it.

    ``robustlab.attack(model, x, y, "semantic", ...)`` calls this (``eps`` is the pixel budget there).

    Args:
        model: Maps images in [0, 1] to logits; its modes are restored afterwards.
        x, y: Clean images ``(N, C, H, W)`` and labels.
        preset, attributes, ranges, pixel_eps, padding: The threat model (:func:`robustlab.threat.semantic_threat`).
        target: ``"untargeted"`` or a target mode / tensor, as for every attack (success: prediction == target).
        seed: Seeds the random restarts.
        batch_size: Images attacked at a time.
        keep_adversarials: Keep the judged (re-rendered) images in the result.
        progress: ``progress(done, budget)`` in per-image model calls.
        index: Dataset row of each image (recorded).
        necessity: For each success, reset each attribute to its identity alone and judge again: the column
            ``undone_by`` lists the attributes whose reset undoes the success (the H2 histogram; one forward pass
            per attribute and success).
        shapley: Also the exact Shapley value of each attribute (and of the pixel residual, as one more player) in
            the game "fooled with only these active", per success: columns ``shapley_<name>`` (``2^players``
            forward passes per success; at most 10 players).
        **search: :class:`SemanticConfig` fields (``steps``, ``restarts``, ``single_starts``, ``grid``, ``loss``,
            ``rel_step``, ``early_stop``).

    Returns:
        An :class:`AttackResult` (``attack="semantic"``, ``norm="linf"``, ``eps`` = the pixel budget) whose
        distortions measure the whole change, with per-image columns ``attr_<name>`` (the attribute values of the
        judged example), ``pixel_linf`` (the L∞ norm of its pixel residual) and ``single_fooled_by`` (the
        attributes that fooled the image alone), and in its summary the threat model and ``single_attribute``
        (each attribute's success rate alone: the H1 sensitivity).

    Raises:
        UnknownNameError: unknown preset, attribute or target mode.
        ConfigError: an invalid range, pixel budget, search setting, image shape (colour attributes on one
            channel) or labels.
    """
    t0 = time.perf_counter()
    fields = {f.name for f in dataclasses.fields(SemanticConfig)}
    unknown = sorted(set(search) - fields)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(fields | set(THREAT_PARAMS) | {"pixel_eps"}), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"unknown semantic attack setting {unknown[0]!r}{hint}; settings: {', '.join(sorted(fields))}, "
            f"and the threat model's {', '.join(THREAT_PARAMS)}, pixel_eps"
        )
    cfg = SemanticConfig(**search)
    cfg.check()
    threat = semantic_threat(preset, attributes, ranges, pixel_eps, padding)
    if shapley and len(_players(threat)) > MAX_SHAPLEY_PLAYERS:
        raise ConfigError(
            f"exact Shapley values over {len(_players(threat))} players ({', '.join(_players(threat))}) need "
            f"2^{len(_players(threat))} forward passes per success; use at most {MAX_SHAPLEY_PLAYERS} (fewer "
            "attributes, or pixel_eps=0) or the necessity histogram"
        )
    check_images(x, name="semantic attack")
    threat.check_images(x)
    n = x.shape[0]
    if not isinstance(y, Tensor) or y.shape != (n,):
        raise ConfigError(f"y must be a tensor of shape ({n},), got {getattr(y, 'shape', type(y))}")
    rows_index = torch.arange(n) if index is None else index.detach().to("cpu", torch.int64)
    x = x.detach()
    device = x.device
    generator = torch.Generator(device=device).manual_seed(seed)
    counter = PassCounter(n)
    everyone = torch.arange(n, device=device)
    u_all = threat.identity(n, x)
    d_all = torch.zeros_like(x) if threat.pixel_eps > 0 else None
    single = torch.zeros(n, threat.size, dtype=torch.bool)
    with eval_mode(model):
        clean_logits = predict_logits(model, x, batch_size)
        counter.add_forward(everyone)
        if clean_logits.dim() != 2:
            raise ConfigError(f"the model must return logits of shape (N, K), got {tuple(clean_logits.shape)}")
        y = y.to(device)
        check_labels(y, clean_logits.shape[1])
        mode_name, targets = resolve_targets(target, clean_logits, y, generator)
        clean_ok = finite_rows(clean_logits)
        todo = (clean_ok & ~is_success(clean_logits, y, targets)).nonzero().flatten()
        budget = int(todo.numel()) * cfg.cost(threat)
        if progress is not None:
            progress(0, budget)
            counter.calls_total = 0
            counter.on_call = lambda done: progress(done, budget)
        bs = batch_size or max(n, 1)
        with trusted_inputs(model):
            for start in range(0, todo.numel(), bs):
                rows = todo[start : start + bs]
                prop = propose_semantic(
                    model, threat, x[rows], y[rows], None if targets is None else targets[rows], cfg, generator,
                    rows, counter,
                )  # fmt: skip
                u_all[rows] = prop.u
                if d_all is not None and prop.delta is not None:
                    d_all[rows] = prop.delta
                if prop.single_success is not None:
                    single[rows.cpu()] = prop.single_success.cpu()
        counter.on_call = None
        verdict, u_final, d_final = judge_semantic(model, x, u_all, d_all, y, targets, threat, batch_size)
        counter.add_forward(everyone)
        won = (verdict.success & clean_ok & (clean_logits.argmax(1) == y)).nonzero().flatten()
        attribution = _Attribution(
            model, threat, x, y, targets, u_final, d_final, won, counter, batch_size, clean_logits
        )
        undone = attribution.necessity() if necessity else None
        shares = attribution.shapley() if shapley else None

    clean_pred = clean_logits.argmax(1).cpu()
    label = y.cpu()
    finite_all = (clean_ok & verdict.finite).cpu()
    success = verdict.success.cpu() & finite_all
    status = statuses(finite_all, clean_pred, label, success)
    values = threat.values(u_final).detach().double().cpu()
    columns: dict[str, list[Any]] = {f"attr_{a}": values[:, i].tolist() for i, a in enumerate(threat.attributes)}
    pixel = torch.zeros(n, dtype=torch.float64) if d_final is None else d_final.flatten(1).abs().amax(1).double().cpu()
    columns["pixel_linf"] = pixel.tolist()
    columns["achromatic"] = achromatic(x).cpu().tolist()
    if undone is not None:
        columns["undone_by"] = [
            ",".join(a for i, a in enumerate(threat.attributes) if bool(undone[r, i])) for r in range(n)
        ]
    if shares is not None:
        for i, player in enumerate(_players(threat)):
            columns[f"shapley_{player}"] = [None if math.isnan(v) else v for v in shares[:, i].tolist()]
    columns["single_fooled_by"] = [
        ",".join(a for i, a in enumerate(threat.attributes) if bool(single[r, i])) for r in range(n)
    ]
    correct = (clean_pred == label) & finite_all
    n_correct = int(correct.sum())
    from robustlab.stats import Rate

    single_rates = {
        a: Rate(int((single[:, i] & correct).sum()), n_correct).to_dict() for i, a in enumerate(threat.attributes)
    } if cfg.single_starts else {}  # fmt: skip
    params = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    params.update(preset=threat.preset, attributes=list(threat.attributes), ranges=threat.ranges(),
                  padding=threat.padding)  # fmt: skip
    eps_found = torch.full((n,), float("nan"), dtype=torch.float64)
    eps_found[todo.cpu()] = threat.pixel_eps
    return AttackResult(
        attack="semantic",
        norm="linf",
        eps=threat.pixel_eps,
        target_mode=mode_name,
        minimal=False,
        fixed_budget=True,
        seed=seed,
        params=params,
        index=rows_index,
        label=label,
        target=(targets.cpu() if targets is not None else torch.full((n,), -1, dtype=torch.int64)),
        clean_pred=clean_pred,
        adv_pred=verdict.pred.cpu(),
        success=success,
        status=status,
        l0=verdict.l0.double().cpu(),
        l1=verdict.l1.double().cpu(),
        l2=verdict.l2.double().cpu(),
        linf=verdict.linf.double().cpu(),
        eps_found=eps_found,
        forward_passes=counter.forward.clone(),
        gradient_passes=counter.gradient.clone(),
        seconds=time.perf_counter() - t0,
        adversarials=verdict.x_adv if keep_adversarials else None,
        extra={
            "preset": threat.preset,
            "attributes": list(threat.attributes),
            "ranges": {a: list(r) for a, r in threat.ranges().items()},
            "pixel_eps": threat.pixel_eps,
            "padding": threat.padding,
            "single_attribute": single_rates,
            "model_calls_budget": budget,
        },
        columns=columns,
    )


#: Most players of an exact Shapley computation (2^10 forward passes per success).
MAX_SHAPLEY_PLAYERS = 10
#: An image whose largest YIQ chroma magnitude is below this is achromatic: hue and saturation cannot act on it
#: (nor be blamed for it).
ACHROMATIC_TOL = 1e-3


def achromatic(x: Tensor) -> Tensor:
    """Whether each image is grey (every pixel's chroma below :data:`ACHROMATIC_TOL`); one-channel images are.

    Shape: ``(N, C, H, W)`` → ``(N,)`` bool."""
    if x.shape[1] != 3:
        return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    from robustlab.transforms import chroma

    return chroma(x).abs().flatten(1).amax(1) < ACHROMATIC_TOL


def _players(threat: SemanticThreat) -> list[str]:
    """The players of the Shapley game: the attributes, and ``pixel`` when there is a residual."""
    return [*threat.attributes, *(["pixel"] if threat.pixel_eps > 0 else [])]


class _Attribution:
    """Which attributes a success needs: judged again with some of them reset to identity (a fresh forward pass
    of the re-rendered image, as the evaluator judges).

    Two kinds of reset need no pass, their image being one already judged: a reset that changes nothing (only
    attributes already at identity, the residual kept or zero) leaves the judged adversarial image, a success; and,
    where the identity parameters render the input exactly (every attribute's range holds its identity), a reset
    that leaves nothing is the clean image, judged by the clean pass. A success found by one attribute alone, as
    every success of the single-attribute sweep is, then needs no necessity pass at all.
    """

    def __init__(
        self,
        model: nn.Module,
        threat: SemanticThreat,
        x: Tensor,
        y: Tensor,
        targets: Tensor | None,
        u: Tensor,
        delta: Tensor | None,
        won: Tensor,
        counter: PassCounter,
        batch_size: int | None,
        clean_logits: Tensor,
    ) -> None:
        self.model, self.threat, self.counter, self.batch_size = model, threat, counter, batch_size
        self.won = won
        self.x, self.y = x[won], y[won]
        self.t = None if targets is None else targets[won]
        self.u = u[won]
        self.delta = None if delta is None else delta[won]
        self.ident = threat.identity(1, x)[0]
        self.n = int(x.shape[0])
        self.identity_is_clean = threat.identity_renders_input(x)
        self.clean_success = is_success(clean_logits[won], self.y, self.t)

    def _fooled(self, active: Tensor, with_delta: bool) -> Tensor:
        """Success with only the attributes in ``active`` (``(A,)`` bool) set as found, the rest at identity."""
        u = torch.where(active.unsqueeze(0), self.u, self.ident.unsqueeze(0))
        delta = self.delta if with_delta else None
        unchanged = (u == self.u).all(1)
        if self.delta is not None and delta is None:
            unchanged &= ~self.delta.flatten(1).any(1)
        bare = (u == self.ident.unsqueeze(0)).all(1) & self.identity_is_clean
        if delta is not None:
            bare &= ~delta.flatten(1).any(1)
        out = torch.where(unchanged, True, self.clean_success & bare)
        ask = (~unchanged & ~bare).nonzero().flatten()
        if ask.numel() == 0:
            return out
        x, ua, da = self.x[ask], u[ask], None if delta is None else delta[ask]
        bs = self.batch_size or max(int(x.shape[0]), 1)
        with torch.no_grad():
            images = torch.cat(
                [
                    self.threat.render(x[i : i + bs], ua[i : i + bs], None if da is None else da[i : i + bs])
                    for i in range(0, int(x.shape[0]), bs)
                ]
            )
        logits = predict_logits(self.model, images, self.batch_size)
        self.counter.add_forward(self.won[ask])
        out[ask] = is_success(logits, self.y[ask], None if self.t is None else self.t[ask])
        return out

    def necessity(self) -> Tensor:
        """``(N, A)`` bool: resetting attribute ``k`` alone undoes the success (False for rows that did not win)."""
        out = torch.zeros(self.n, self.threat.size, dtype=torch.bool)
        if self.won.numel() == 0:
            return out
        everyone = torch.ones(self.threat.size, dtype=torch.bool, device=self.u.device)
        for k in range(self.threat.size):
            active = everyone.clone()
            active[k] = False
            out[self.won.cpu(), k] = ~self._fooled(active, self.delta is not None).cpu()
        return out

    def shapley(self) -> Tensor:
        """``(N, P)`` float64: each player's exact Shapley value of ``v(S) = 1[fooled with only S active]`` (NaN for
        rows that did not win). Per success the values sum to ``v(all) - v(none) = 1``."""
        players = _players(self.threat)
        p, a = len(players), self.threat.size
        out = torch.full((self.n, p), float("nan"), dtype=torch.float64)
        if self.won.numel() == 0:
            return out
        value = {}
        for mask in range(1 << p):
            bits = [(mask >> i) & 1 == 1 for i in range(p)]
            active = torch.tensor(bits[:a], dtype=torch.bool, device=self.u.device)
            value[mask] = self._fooled(active, p > a and bits[a]).double().cpu()
        phi = torch.zeros(int(self.won.numel()), p, dtype=torch.float64)
        for i in range(p):
            for mask in range(1 << p):
                if (mask >> i) & 1:
                    continue
                size = bin(mask).count("1")
                weight = math.factorial(size) * math.factorial(p - size - 1) / math.factorial(p)
                phi[:, i] += weight * (value[mask | (1 << i)] - value[mask])
        out[self.won.cpu()] = phi
        return out


def semantic_perturb(
    model: nn.Module,
    threat: SemanticThreat,
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    u0: Tensor,
    delta0: Tensor | None = None,
    loss: str = "ce",
    rel_step: float = 2.5,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The light semantic inner maximiser for training: sign ascent from ``(u0, delta0)`` on every attribute and the
    residual, every row taking every step (no judging, no early stop, no records); the model's mode is the caller's.

    Returns the rendered images of the highest-loss iterate of each row and their parameters (projected).

    Shape:
        - x: ``(B, C, H, W)``; y: ``(B,)``; u0: ``(B, A)``; delta0: like ``x``
        - output: ``(B, C, H, W)``, ``(B, A)``, like ``x``
    """
    cfg = SemanticConfig(steps=steps, restarts=0, single_starts=False, grid=0, loss=loss, rel_step=rel_step,
                         early_stop=False)  # fmt: skip
    cfg.check()
    u0, delta0 = threat.project(u0.detach().clone(), None if delta0 is None else delta0.detach().clone())
    if threat.pixel_eps > 0 and delta0 is None:
        delta0 = torch.zeros_like(x)
    obj = _Objective(model, threat, loss, None)
    everyone = torch.ones(threat.size, dtype=torch.bool, device=x.device)
    idx = torch.arange(x.shape[0], device=x.device)
    u, delta, _, _ = _ascend(
        obj, x, y, None, idx, u0, delta0 if threat.pixel_eps > 0 else None, everyone, cfg, highest_loss=True
    )
    with torch.no_grad():
        images = threat.render(x, u, delta)
    return images.detach(), u.detach(), None if delta is None else delta.detach()
