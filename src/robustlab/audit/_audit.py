"""``audit()``: is a model's robustness real? Model checks, the attack ladder, flags and a verdict.

The audit runs in four steps on the same points, with the model in eval mode:

1. one clean pass (its logits serve every later step);
2. the model checks (:mod:`._model`): probabilities, randomness, train-mode layers, batch dependence, zero or
   non-finite input gradients, autograd failing, layers without a derivative;
3. the ladder (:mod:`._ladder`): FGSM, PGD-20, PGD-100 with CE, margin and DLR, restarts, APGD-CE, APGD-T, then
   the attacks the checks call for (BPDA through the layers found, EoT over randomness), Square, transfer from a
   surrogate and surrogate-initialised PGD, each only on the points still robust; and a PGD ε sweep;
4. the flags (:mod:`._flags`) and the verdict: "no masking found at this budget", or which evidence suggests
   masking, with the honest number — the lowest verified robust accuracy — and the attack that reached it.

References:
    Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018.
    Carlini et al., "On Evaluating Adversarial Robustness", arXiv 1902.06705, 2019.
    Pintor et al., "Indicators of Attack Failure: Debugging and Improving Optimization of Adversarial
    Examples", NeurIPS 2022.
    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
    attacks", ICML 2020.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from robustlab.attacks import PassCounter, check_surrogate, correct_fraction, looks_like_probabilities, parse_eps
from robustlab.audit._flags import (
    CLEVER_THRESHOLD,
    RELATIVE,
    THRESHOLDS,
    Finding,
    clever_findings,
    ladder_findings,
    model_findings,
)
from robustlab.audit._ladder import GRADIENT_ROLES, Ladder, RungResult, build_ladder
from robustlab.audit._model import (
    PROBE_POINTS,
    ModelFacts,
    find_non_differentiable,
    probe_batch_dependence,
    probe_gradients,
    probe_randomness,
    train_mode_layers,
)
from robustlab.audit._surrogate import GIVEN, NONE, SurrogateChoice, choose_surrogate
from robustlab.errors import ConfigError
from robustlab.models.adapter import check_images, eval_mode, predict_logits, trusted_inputs
from robustlab.stats import Rate, wilson_interval
from robustlab.threat import check_labels, get_norm

logger = logging.getLogger(__name__)

#: CLEVER's budgets in the audit (batches of sample points, points per batch), its sampling radius as a multiple
#: of the audit's eps (above 1, so that a score capped at the radius can exceed a found distortion, which is at most
#: eps) and the relative slack before a score counts as above a distortion.
CLEVER_BATCHES = 10
CLEVER_SAMPLES = 20
CLEVER_RADIUS = 2.0
CLEVER_RTOL = 0.01


@dataclass(frozen=True)
class AuditConfig:
    """The audit's budgets.

    Attributes:
        steps_short: PGD steps of the short rung (and of the ε sweep).
        steps_long: PGD steps of the long rungs (CE, margin, DLR, restarts, BPDA, transfer, guided).
        restarts: Restarts of the restarts rung (margin loss).
        apgd_steps: Iterations of APGD-CE, APGD-T and the EoT rungs.
        square_queries: Square's queries per point.
        eot_iter: Draws averaged per gradient in the EoT rungs (randomised models only).
        judge_draws: Forward passes whose majority judges a candidate of a randomised model.
        eval_draws: Fresh forward passes that estimate a randomised model's expected robust accuracy at the end.
        sweep: Budgets of the ε sweep as multiples of eps (the large budget, half the box, is always added).
        gradient_points: Points whose input gradient the model checks look at.
        min_points: Fewer points than this give a warning with the confidence interval they allow.
        clever_points: Points the ladder broke whose CLEVER score is compared with the distortion of their worst
            candidate (``clever-above-found-distortion``); 0 (the default): not run. CLEVER costs
            ``CLEVER_BATCHES × CLEVER_SAMPLES × (K − 1)`` gradients a point (1,800 with 10 classes).
    """

    steps_short: int = 20
    steps_long: int = 100
    restarts: int = 5
    apgd_steps: int = 100
    square_queries: int = 1000
    eot_iter: int = 20
    judge_draws: int = 50
    eval_draws: int = 100
    sweep: tuple[float, ...] = (0.5, 2.0)
    gradient_points: int = 512
    min_points: int = 500
    clever_points: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "clever_points":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f"clever_points must be an integer >= 0, got {value!r}")
            elif f.name == "sweep":
                if not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value):
                    raise ConfigError(f"sweep factors must be numbers > 0, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{f.name} must be an integer >= 1, got {value!r}")


@dataclass
class AuditResult:
    """What the audit found.

    Attributes:
        n: Points audited.
        norm: The threat norm; eps: its budget.
        clean_accuracy: Clean accuracy (expected over draws for a randomised model).
        facts: What the model checks measured.
        rungs: What each attack of the ladder did, in order.
        skipped: The rungs that did not run, each with its reason.
        flags: The flags raised (model checks first, then the ladder's).
        honest: The honest number: ``{robust_accuracy, low, high, attack, lowered_by, expected}``.
        verdict: One sentence a reader can act on.
        warnings: Caveats (too few points, gradients unavailable, ...).
        surrogate: The surrogate's name, or ``None``.
        surrogate_choice: Which surrogate was used and why (given, chosen by default from the zoo, or none).
        broken_by: Per point, the ladder rung that broke it first (``""``: robust, or misclassified clean).
        index: The dataset row of each point.
        seconds: Wall time.
        gradient_passes, forward_passes: Per-sample model calls of the whole audit.
        adversarials: With ``keep_adversarials``: each point's worst candidate at the audit's eps (the clean point
            where no attack did better), so that the honest number can be checked by classifying them again.
        clever: With ``clever_points``: the CLEVER comparison (``ran``, ``reason`` when it did not, the points,
            counts, ratios, radius and budgets); else ``None``.
    """

    n: int
    norm: str
    eps: float
    clean_accuracy: float
    facts: ModelFacts
    rungs: list[RungResult]
    skipped: list[dict[str, str]]
    flags: list[Finding]
    honest: dict[str, Any]
    verdict: str
    warnings: list[str]
    surrogate: str | None
    broken_by: list[str]
    index: Tensor
    seconds: float = 0.0
    gradient_passes: int = 0
    forward_passes: int = 0
    adversarials: Tensor | None = None
    surrogate_choice: SurrogateChoice | None = None
    clever: dict[str, Any] | None = None

    @property
    def masking_suspected(self) -> bool:
        """Whether any flag raised is evidence of gradient masking."""
        return any(f.masking for f in self.flags)

    @property
    def codes(self) -> list[str]:
        """The codes of the flags raised."""
        return [f.code for f in self.flags]

    @property
    def robust_accuracy(self) -> dict[str, float | None]:
        """Per attack: robust accuracy alone (FGSM, the short PGD, the ε sweep) or after it and every rung before
        it (the others, which attack only the points still robust)."""
        return {r.rung.label: r.robust_accuracy for r in self.rungs}

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``verdict``, ``flags`` as ``{code, evidence, ...}``, ``robust_accuracy`` per attack, ...)."""
        return {
            "verdict": self.verdict,
            "masking_suspected": self.masking_suspected,
            "honest": dict(self.honest),
            "flags": [f.to_dict() for f in self.flags],
            "robust_accuracy": self.robust_accuracy,
            "n": self.n,
            "norm": self.norm,
            "eps": self.eps,
            "clean_accuracy": self.clean_accuracy,
            "stochastic": self.facts.stochastic,
            "surrogate": self.surrogate,
            "surrogate_choice": None if self.surrogate_choice is None else self.surrogate_choice.to_dict(),
            "clever": None if self.clever is None else dict(self.clever),
            "checks": self.facts.to_dict(),
            "rungs": [r.to_dict() for r in self.rungs],
            "skipped": list(self.skipped),
            "thresholds": dict(THRESHOLDS),
            "relative_thresholds": dict(RELATIVE),
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
            "gradient_passes": self.gradient_passes,
            "forward_passes": self.forward_passes,
        }


def audit(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float | str,
    norm: str = "linf",
    surrogate: nn.Module | Literal["auto"] | None = "auto",
    surrogate_name: str | None = None,
    config: AuditConfig | None = None,
    seed: int = 0,
    batch_size: int = 256,
    index: Tensor | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    keep_adversarials: bool = False,
    dataset: str | None = None,
) -> AuditResult:
    """Audit ``model``'s robustness on ``(x, y)`` for gradient masking.

    Args:
        model: Any module mapping inputs in [0, 1] to logits ``(N, K)``; its modes are restored afterwards.
        x: Clean inputs in [0, 1].
        y: Labels.
        eps: The budget (a number or a string such as ``"8/255"``); must be > 0.
        norm: ``"linf"``, ``"l2"`` or ``"l1"`` (Square covers L∞ and L2 only).
        surrogate: A model of the same data and classes whose gradients guide the transfer rungs (a standard
            zoo model, or an independently trained one); ``"auto"`` (the default): the standard zoo model of the
            same dataset, input shape and classes with the fewest FLOPs (:func:`choose_surrogate`), the rungs
            skipped when none fits; ``None`` skips them. The result records which one and why
            (``surrogate_choice``).
        surrogate_name: Its name, for the report.
        config: Budgets (default :class:`AuditConfig`).
        seed: Seeds every random start (each rung's seed also depends on its label only).
        batch_size: Points per attack batch.
        index: The dataset row of each point (default ``0..N-1``).
        progress: Called as ``progress(attack, done, total)`` in per-sample model calls of the attack running.
        keep_adversarials: Keep each point's worst candidate in the result (``adversarials``).
        dataset: The data's registry name (``"cifar10"``), for the default surrogate (default: the model's
            ``spec.dataset`` when it has one; else input shape and classes alone decide).

    Returns:
        The :class:`AuditResult`.

    Raises:
        ConfigError: eps missing or not > 0, no points, labels out of range, or a surrogate whose input shape or
            number of classes differs from the model's.
        InputContractError: ``x`` is not a finite float tensor in [0, 1].

    Shape:
        - x: ``(N, C, H, W)``; y, index: ``(N,)``
    """
    t0 = time.perf_counter()
    cfg = config or AuditConfig()
    eps_value = parse_eps(eps)
    if eps_value is None or not eps_value > 0 or not math.isfinite(eps_value):
        raise ConfigError(
            f"the audit needs a finite eps > 0, got {eps!r}: at eps = 0 no attack can change an image, so robust "
            "accuracy is clean accuracy and there is nothing to audit"
        )
    norm_obj = get_norm(norm)
    check_images(x, ndim=None, name="audit")
    n = int(x.shape[0])
    if n == 0:
        raise ConfigError("the audit needs at least one point, got none")
    if not isinstance(y, Tensor) or y.shape != (n,):
        raise ConfigError(f"y must be a tensor of shape ({n},), got {getattr(y, 'shape', type(y))}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    rows_index = torch.arange(n) if index is None else index.detach().to("cpu", torch.int64)
    warnings: list[str] = []

    def warn(message: str) -> None:  # said at once (a long audit should not hide it until the end) and kept
        warnings.append(message)
        logger.warning("%s", message)

    if n < cfg.min_points:
        low, high = wilson_interval(n // 2, n)
        warn(
            f"only {n} points: a robust accuracy near 50 % is known to within {100 * (high - low) / 2:.1f} points "
            f"(95 % Wilson interval), coarser than the flags' thresholds (0.5 to 2 points); use {cfg.min_points} "
            "points or more for the flags to mean what docs/audit.md says"
        )
    x, device = x.detach(), x.device
    y = y.to(device)
    counter = PassCounter(n)
    everyone = torch.arange(n, device=device)
    facts = ModelFacts(train_mode=train_mode_layers(model))
    with eval_mode(model), trusted_inputs(model):
        clean_logits = predict_logits(model, x, batch_size)  # the one clean pass
        counter.add_forward(everyone)
        if clean_logits.dim() != 2:
            raise ConfigError(f"the model must return logits of shape (N, K), got {tuple(clean_logits.shape)}")
        k = int(clean_logits.shape[1])
        check_labels(y, k)
        surrogate, choice = _resolve_surrogate(model, surrogate, surrogate_name, x, k, dataset)
        surrogate_name = choice.name
        if surrogate is not None:
            check_surrogate(surrogate, x, k, surrogate_name)
        _model_checks(model, x, y, clean_logits, facts, cfg, batch_size, counter, everyone)
        draws = cfg.judge_draws if facts.stochastic else 1
        if facts.stochastic:
            clean = correct_fraction(model, x, y, draws, batch_size, counter, everyone)
        else:
            clean = ((clean_logits.argmax(1) == y) & torch.isfinite(clean_logits).all(1)).double().cpu()
        if not facts.gradients_available:
            warn(
                "the model's input gradients are unavailable everywhere ("
                f"{facts.gradient_error}): the audit ran only the gradient-free checks (Square, transfer from a "
                "surrogate) and BPDA through the layers it could bypass"
            )
        ladder = Ladder(
            model,
            x,
            y,
            clean,
            norm=norm_obj,
            eps=eps_value,
            large_eps=norm_obj.diameter(int(x[0].numel())) / 2,
            draws=draws,
            batch_size=batch_size,
            seed=seed,
            counter=counter,
            surrogate=surrogate,
            bypass_layers=facts.bypass,
            progress=progress,
        )
        with contextlib.ExitStack() as guard:
            if surrogate is not None:
                guard.enter_context(eval_mode(surrogate))
                guard.enter_context(trusted_inputs(surrogate))
            _climb(ladder, facts, cfg, k, None if surrogate is not None else choice.reason)
        honest = _honest(ladder, model, y, cfg, facts.stochastic, batch_size, counter, everyone)
        clever_record = (
            _clever(ladder, model, facts, cfg, eps_value, seed, batch_size, counter) if cfg.clever_points else None
        )
    flags = model_findings(facts) + ladder_findings(ladder.results, n, surrogate_name or _name(surrogate))
    flags += clever_findings(clever_record)
    clean_accuracy = float(clean.mean())
    verdict = _verdict(flags, honest, facts, eps_value, n)
    return AuditResult(
        n=n,
        norm=norm_obj.name,
        eps=eps_value,
        clean_accuracy=clean_accuracy,
        facts=facts,
        rungs=ladder.results,
        skipped=ladder.skipped,
        flags=flags,
        honest=honest,
        verdict=verdict,
        warnings=warnings,
        surrogate=surrogate_name or _name(surrogate),
        broken_by=ladder.broken_by,
        index=rows_index,
        seconds=time.perf_counter() - t0,
        gradient_passes=int(counter.gradient.sum()),
        forward_passes=int(counter.forward.sum()),
        adversarials=ladder.worst_x if keep_adversarials else None,
        surrogate_choice=choice,
        clever=clever_record,
    )


def _name(module: nn.Module | None) -> str | None:
    if module is None:
        return None
    return str(getattr(module, "name", type(module).__name__))


def _resolve_surrogate(
    model: nn.Module,
    surrogate: nn.Module | str | None,
    name: str | None,
    x: Tensor,
    k: int,
    dataset: str | None,
) -> tuple[nn.Module | None, SurrogateChoice]:
    """The surrogate module (``None``: none) and the record of how it was chosen."""
    if isinstance(surrogate, nn.Module):
        return surrogate, SurrogateChoice(name or _name(surrogate), GIVEN, "given by the caller")
    if surrogate is None:
        return None, SurrogateChoice(None, NONE, "no surrogate given")
    if surrogate != "auto":
        raise ConfigError(f"surrogate must be a model, 'auto' or None, got {surrogate!r}")
    spec = getattr(model, "spec", None)
    data = dataset if dataset is not None else getattr(spec, "dataset", None)
    own = getattr(model, "name", None)
    choice = choose_surrogate(
        input_shape=tuple(x.shape[1:]), num_classes=k, dataset=data, exclude=(own,) if isinstance(own, str) else ()
    )
    if choice.name is None:
        return None, choice
    from robustlab.models import load_model

    return load_model(choice.name, device=x.device), choice


def _model_checks(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    clean_logits: Tensor,
    facts: ModelFacts,
    cfg: AuditConfig,
    batch_size: int,
    counter: PassCounter,
    everyone: Tensor,
) -> None:
    """Fill ``facts`` with what the forward and backward passes reveal."""
    first = slice(0, min(batch_size, x.shape[0]))  # the clean pass's first batch
    facts.probabilities = looks_like_probabilities(clean_logits)
    facts.random_diff = probe_randomness(model, x[first], clean_logits[first], counter, everyone[first])
    facts.stochastic = facts.random_diff > 0
    if not facts.stochastic:
        facts.batch_diff = probe_batch_dependence(model, x[first], clean_logits[first], counter, everyone[first])
    m = min(cfg.gradient_points, x.shape[0])
    facts.gradient_points = m
    facts.zero_gradients, facts.non_finite_gradients, facts.gradient_error = probe_gradients(
        model, x[:m], y[:m], batch_size, counter, everyone[:m]
    )
    if facts.gradient_error is not None or facts.zero_gradients > 0 or facts.non_finite_gradients > 0:
        facts.layers = find_non_differentiable(model, x[:PROBE_POINTS])


def _condition(role: str, facts: ModelFacts, no_surrogate: str | None) -> str | None:
    """Why a rung of ``role`` does not run on this model (``None``: it runs)."""
    if role in GRADIENT_ROLES and not facts.gradients_available:
        return "the model's input gradients are unavailable"
    if role == "bpda" and not facts.bypass:
        return "no non-differentiable layer with its input's shape was found (nothing to bypass)"
    if role == "eot" and not facts.stochastic:
        return "the model is deterministic (EoT runs on randomised models)"
    if role in ("transfer", "guided") and no_surrogate is not None:
        return no_surrogate
    return None


def _climb(ladder: Ladder, facts: ModelFacts, cfg: AuditConfig, k: int, no_surrogate: str | None) -> None:
    """Run every rung whose condition holds, in order (``no_surrogate``: why there is no surrogate, if none)."""
    rungs = build_ladder(
        steps_short=cfg.steps_short,
        steps_long=cfg.steps_long,
        restarts=cfg.restarts,
        apgd_steps=cfg.apgd_steps,
        square_queries=cfg.square_queries,
        eot_iter=cfg.eot_iter,
        sweep=cfg.sweep,
    )
    starts = {r.init_from for r in rungs if r.init_from}
    ran: set[str] = set()
    for rung in rungs:
        reason = _condition(rung.role, facts, no_surrogate)
        if reason is None and rung.init_from is not None and rung.init_from not in ran:
            reason = f"{rung.init_from} did not run"
        if reason is None and not rung.standalone and not bool(ladder.open.any()):
            reason = "no point left to attack"
        if reason is not None:
            ladder.skip(rung, reason)
            continue
        try:
            method = ladder.configure(rung, k)
        except ConfigError as err:
            ladder.skip(rung, str(err))
            continue
        try:
            ladder.run(rung, method, keep=rung.label in starts)
        except RuntimeError as err:  # autograd failing inside one attack: reported, the others still run
            ladder.skip(rung, f"failed: {str(err).splitlines()[0][:160]}")
            continue
        ran.add(rung.label)


def _clever(
    ladder: Ladder,
    model: nn.Module,
    facts: ModelFacts,
    cfg: AuditConfig,
    eps: float,
    seed: int,
    batch_size: int,
    counter: PassCounter,
) -> dict[str, Any]:
    """CLEVER on the first ``cfg.clever_points`` points the ladder broke, against their worst candidates'
    distortions (Goodfellow 2018: CLEVER above a found distortion is gradient masking or a poor fit)."""
    from robustlab.metrics import clever, compare_with_distortions

    record: dict[str, Any] = {"ran": False, "radius": CLEVER_RADIUS * eps, "threshold": CLEVER_THRESHOLD}
    if facts.stochastic:
        return {**record, "reason": "the model is randomised (CLEVER's sampled gradients would be draws)"}
    if not facts.gradients_available:
        return {**record, "reason": "the model's input gradients are unavailable"}
    broken = torch.tensor([bool(b) for b in ladder.broken_by], dtype=torch.bool)
    rows = broken.nonzero().flatten()[: cfg.clever_points]
    if not rows.numel():
        return {**record, "reason": "no attack broke any point (no distortion to compare with)"}
    t0 = time.perf_counter()
    on = rows.to(ladder.x.device)
    x, adv = ladder.x[on], ladder.worst_x[on]
    distortion = ladder.norm.distance(adv - x)  # (P,)
    result = clever(
        model,
        x,
        ladder.labels[on],
        norm=ladder.norm.name,
        batches=CLEVER_BATCHES,
        samples=CLEVER_SAMPLES,
        radius=CLEVER_RADIUS * eps,
        seed=seed,
        batch_size=batch_size,
    )
    counter.add_gradient(rows, int(result.gradient_passes.max()))
    found = torch.ones_like(distortion, dtype=torch.bool)  # each worst candidate broke its point (verified)
    comparison = compare_with_distortions(result, distortion, found, rtol=CLEVER_RTOL)
    return {
        **record,
        **comparison.summary(),
        "ran": True,
        "rows": rows.tolist(),
        "batches": CLEVER_BATCHES,
        "samples": CLEVER_SAMPLES,
        "rtol": CLEVER_RTOL,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _honest(
    ladder: Ladder,
    model: nn.Module,
    y: Tensor,
    cfg: AuditConfig,
    stochastic: bool,
    batch_size: int,
    counter: PassCounter,
    everyone: Tensor,
) -> dict[str, Any]:
    """The lowest verified robust accuracy (points robust to every ladder rung), its interval and its attack.

    A randomised model's number is the accuracy expected over ``eval_draws`` fresh draws on each point's worst
    candidate (fresh, so that picking the worst candidate by its own draws does not bias the estimate down).
    """
    n = ladder.n
    ladder_rungs = [r for r in ladder.results if r.rung.in_ladder]
    reached = next((r.rung.label for r in reversed(ladder_rungs) if r.broken), None)
    first_pgd = next((r for r in ladder_rungs if r.rung.role == "short"), None)
    lowered = [
        {"attack": r.rung.label, "points": 100.0 * r.broken / n}
        for r in ladder_rungs
        if r.broken and not r.rung.standalone
    ]
    out: dict[str, Any] = {
        "attack": reached,
        "lowered_by": lowered,
        "expected": stochastic,
        "first_pgd": None if first_pgd is None else {"attack": first_pgd.rung.label, "value": first_pgd.robust_alone},
    }
    if stochastic:
        fresh = correct_fraction(model, ladder.worst_x, y, cfg.eval_draws, batch_size, counter, everyone)
        mean = float(fresh.mean())
        half = 1.96 * float(fresh.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
        out.update(
            robust_accuracy=mean,
            low=max(0.0, mean - half),
            high=min(1.0, mean + half),
            draws=cfg.eval_draws,
            majority_robust_accuracy=float(ladder.robust.sum()) / n,
        )
    else:
        rate = Rate(int(ladder.robust.sum()), n)
        out.update(robust_accuracy=rate.value, low=rate.interval[0], high=rate.interval[1], k=rate.k)
    return out


def _verdict(flags: list[Finding], honest: dict[str, Any], facts: ModelFacts, eps: float, n: int) -> str:
    """One sentence: no masking found, or which evidence suggests it and what number to report."""
    value, low, high = honest["robust_accuracy"], honest["low"], honest["high"]
    kind = "expected robust accuracy" if honest["expected"] else "robust accuracy"
    number = f"{100 * value:.1f} % (95 % {100 * low:.1f}–{100 * high:.1f})"
    by = f"reached by {honest['attack']}" if honest["attack"] else "no attack broke any point"
    masking = [f.code for f in flags if f.masking]
    hygiene = [f.code for f in flags if not f.masking]
    note = f"; also: {', '.join(hygiene)}" if hygiene else ""
    if not facts.gradients_available:
        note += "; gradients unavailable: only gradient-free checks and BPDA ran"
    first = honest.get("first_pgd")
    versus = (
        f" ({first['attack']} alone left {100 * first['value']:.1f} %)"
        if first and first.get("value") is not None
        else ""
    )
    if not masking:
        weak = "strong-attacks-beat-pgd" in hygiene
        head = f"no masking found at this budget (eps {eps:.4g}, {n} points)"
        if weak:
            overstated = "but a PGD number alone overstates robustness"
            return f"{head}, {overstated}: the honest {kind} is {number}, {by}{versus}{note}"
        return f"{head}: the honest {kind} is {number}, {by}{note}"
    return f"masking suspected ({', '.join(masking)}): report the lowest verified {kind}, {number}, {by}{versus}{note}"
