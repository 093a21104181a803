"""The ``attack()`` façade: validate the request, run the registered method on the rows still to attack (or the
minimal search around it), judge every example with the one evaluator and build the :class:`AttackResult`."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks._evaluator import (
    PassCounter,
    finite_rows,
    is_success,
    judge,
    statuses,
)
from robustlab.attacks._gradient import StartGradients
from robustlab.attacks._methods import ATTACKS, AttackMethod, Batch, Cost, RunContext, check_value, unknown_key
from robustlab.attacks._minimal import minimal_search
from robustlab.attacks._result import AttackResult
from robustlab.attacks._semantic import semantic_attack
from robustlab.errors import ConfigError, RobustlabError
from robustlab.models.adapter import check_images, eval_mode, predict_logits, trusted_inputs
from robustlab.threat import L1, Norm, check_labels, get_norm, resolve_targets

logger = logging.getLogger(__name__)

#: Relative precision of the minimal-distortion search: an image is resolved once its bracket is narrower than
#: this fraction of its smallest successful distortion.
DEFAULT_RTOL = 0.02


def list_attacks() -> list[str]:
    """Names of the registered Lp attacks (``attack()`` also takes ``"semantic"``, the semantic threat models'
    attack, which has a threat model of its own)."""
    return ATTACKS.names()


def _semantic(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    norm: str | None,
    eps: float | str | None,
    steps: int | None,
    step_size: float | None,
    target: str | Tensor,
    minimal: bool,
    seed: int,
    batch_size: int | None,
    keep_adversarials: bool,
    progress: Callable[[int, int], None] | None,
    index: Tensor | None,
    params: dict[str, Any],
) -> AttackResult:
    """``attack(..., "semantic")``: the semantic threat model's attack; ``eps`` is its L∞ pixel budget."""
    if norm not in (None, "linf"):
        raise ConfigError(f"the semantic attack's pixel residual is L∞ (norm='linf'), got norm={norm!r}")
    if minimal or step_size is not None:
        raise ConfigError(
            "the semantic attack has no minimal search and no absolute step_size (its step is rel_step / steps)"
        )
    _check_int("steps", steps, 0)  # 0: the single-attribute sweeps alone (SemanticConfig checks the rest)
    if steps is not None:
        params["steps"] = steps
    return semantic_attack(
        model, x, y, pixel_eps=parse_eps(eps), target=target, seed=seed, batch_size=batch_size,
        keep_adversarials=keep_adversarials, progress=progress, index=index, **params,
    )  # fmt: skip


def parse_eps(value: str | float | int | None) -> float | None:
    """Parse a budget: a number, a fraction such as ``"8/255"``, or ``"inf"``.

    Raises:
        ConfigError: not a number, negative or NaN.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            if "/" in text:
                num, den = text.split("/", 1)
                eps = float(num) / float(den)
            else:
                eps = float(text)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(
                f"cannot read eps {value!r}: use a number such as 0.03, a fraction such as 8/255, or inf"
            ) from None
    else:
        eps = float(value)
    if math.isnan(eps) or eps < 0:
        raise ConfigError(f"eps must be >= 0, got {value!r}")
    return eps


def format_eps(eps: float) -> str:
    """A budget as readers write it: ``8/255`` when it is a whole number of 255ths, else 4 significant digits (the
    inverse of :func:`parse_eps` for the budgets people use)."""
    in_255 = eps * 255
    return f"{round(in_255)}/255" if eps > 0 and abs(in_255 - round(in_255)) < 1e-6 else f"{eps:.4g}"


def _check_inputs(x: Tensor, y: Tensor, index: Tensor | None) -> Tensor:
    """Check the images (the one input contract of :func:`robustlab.models.check_images`), the labels' shape and
    the dataset rows; return the rows (``0..N-1`` by default) on the CPU."""
    check_images(x, ndim=None, name="attack")  # (N, ...): models on flat vectors are attacked too
    n = x.shape[0]
    if not isinstance(y, Tensor) or y.shape != (n,):
        raise ConfigError(f"y must be a tensor of shape ({n},), got {getattr(y, 'shape', type(y))}")
    if index is None:
        return torch.arange(n)
    integer = isinstance(index, Tensor) and not (index.dtype.is_floating_point or index.dtype == torch.bool)
    if not integer or index.shape != (n,):
        raise ConfigError(
            f"index must be an integer tensor of shape ({n},) (the dataset row of each image), got "
            f"{getattr(index, 'dtype', type(index).__name__)} of shape {tuple(getattr(index, 'shape', ()))}"
        )
    return index.detach().to("cpu", torch.int64)


def _check_int(name: str, value: int | None, minimum: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


#: Settings that :func:`attack` reads from ``params`` itself (the norm's, the minimal search's), besides the
#: method's own configuration fields; with the type each must have.
_SEARCH_PARAMS: dict[str, Any] = {"warm_start": bool, "tolerance": float, "rtol": float}
_NORM_PARAMS: dict[str, Any] = {"l1_sparsity": float}


@dataclasses.dataclass(frozen=True)
class _Settings:
    """The validated request of one attack (everything but the data)."""

    method: AttackMethod
    norm: Norm
    warm_start: bool
    tolerance: float
    rtol: float


def _own_arguments() -> set[str]:
    """The keyword arguments of :func:`attack` besides ``params``: never valid as an attack parameter."""
    sig = inspect.signature(attack)
    return {p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _settings(
    name: str,
    norm: str | None,
    minimal: bool,
    steps: int | None,
    step_size: float | None,
    params: Mapping[str, Any],
) -> _Settings:
    """Validate an attack's name, norm and settings without touching any data (see :func:`check_params`)."""
    method: AttackMethod = ATTACKS.get(name)
    norm_obj: Norm = get_norm(norm or method.default_norm)
    if norm_obj.name not in method.norms:
        raise ConfigError(
            f"attack {method.name!r} does not support norm {norm_obj.name!r}; it supports {', '.join(method.norms)}"
        )
    params = dict(params)
    own = sorted(set(params) & _own_arguments())
    if own:
        raise ConfigError(
            f"{', '.join(own)} {'is an argument' if len(own) == 1 else 'are arguments'} of attack() (a top-level "
            "setting of the command or the spec), not an attack parameter"
        )
    extra = {**_NORM_PARAMS, **(_SEARCH_PARAMS if method.fixed_budget else {})}  # C&W/EAD: their own warm_start
    known = method.param_names() + list(extra)
    for key, value in params.items():
        if key not in known:
            raise unknown_key(key, known, method.name)
        if key in extra:
            check_value(key, value, extra[key], method.name)
    if "l1_sparsity" in params:
        sparsity = float(params.pop("l1_sparsity"))
        if norm_obj.name != "l1" or not 0 <= sparsity <= 1:
            raise ConfigError("l1_sparsity applies to norm='l1' and must lie in [0, 1]")
        norm_obj = L1(sparsity)
    warm_start = False
    if "warm_start" in params and method.fixed_budget:
        warm_start = params.pop("warm_start")
        if not minimal:
            raise ConfigError(
                f"warm_start applies to the minimal search (minimal=True) of {method.name}: each attempt starts "
                "from the image's best success so far"
            )
    tolerance, rtol = float(params.pop("tolerance", 0.0)), float(params.pop("rtol", DEFAULT_RTOL))
    if (tolerance, rtol) != (0.0, DEFAULT_RTOL) and not (minimal and method.fixed_budget):
        raise ConfigError("tolerance and rtol apply to the minimal search of a fixed-budget attack (minimal=True)")
    if tolerance < 0 or rtol < 0:
        raise ConfigError(f"tolerance and rtol must be >= 0, got {tolerance} and {rtol}")
    _check_int("steps", steps, 1)
    if step_size is not None and not step_size > 0:
        raise ConfigError(f"step_size must be > 0, got {step_size!r}")
    method = method.configure(steps, step_size, params)
    if warm_start and method.cost().gradient == 1:
        raise ConfigError(
            f"warm_start needs an iterative attack (ifgsm, pgd, mifgsm): a {method.name} search already costs one "
            "gradient pass per image, and one step from a warm start is no longer the same attack"
        )
    return _Settings(method, norm_obj, bool(warm_start), tolerance, rtol)


def check_params(
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    norm: str | None = None,
    minimal: bool = False,
    steps: int | None = None,
    step_size: float | None = None,
) -> dict[str, Any]:
    """Validate an attack's settings up front, without running anything: what :func:`attack` checks first.

    The study spec and the CLI call it before any work, so a typo fails in a second instead of after a run.

    Args:
        name: Registered attack.
        params: Its settings, as :func:`attack` takes them in ``**params``.
        norm: The norm (default: the attack's own).
        minimal: Whether the minimal search wraps the attack (some settings apply only to it).
        steps: Gradient steps or inner iterations.
        step_size: Absolute step length.

    Returns:
        The resolved configuration of the method (every field, defaults filled in).

    Raises:
        UnknownNameError: unknown attack or norm (with close matches).
        ConfigError: an unknown parameter (with its close matches and the valid keys, e.g. ``restart`` → did you
            mean ``restarts``?), a value of the wrong type (``restarts="abc"``) or out of range, an argument of
            :func:`attack` given as a parameter, or a setting that does not apply (``warm_start`` without
            ``minimal``).
    """
    config = _settings(name, norm, minimal, steps, step_size, params or {}).method.config
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def check_takes_surrogate(name: str) -> None:
    """Raise :class:`ConfigError` unless attack ``name`` can take its gradients from a surrogate.

    Raises:
        UnknownNameError: an unknown attack (close matches).
    """
    if name.lower() == "semantic" or not ATTACKS.get(name).takes_surrogate:
        raise ConfigError(
            f"{name} takes no surrogate: it queries the model itself (a transfer attack needs a gradient attack: "
            "pgd, apgd, cw, gpga ...)"
        )


def check_surrogate(surrogate: nn.Module, x: Tensor, num_classes: int, name: str | None = None) -> None:
    """Refuse a surrogate that does not take ``x``'s inputs or does not have the model's ``num_classes`` classes.

    Raises:
        ConfigError: naming the surrogate, its shape or classes and the model's.
    """
    who = f"the surrogate {name}" if name else "the surrogate"
    shape = tuple(int(s) for s in x.shape[1:])
    declared = getattr(surrogate, "input_shape", None)
    if declared is not None and tuple(declared) != shape:
        raise ConfigError(
            f"{who} takes inputs of shape {tuple(declared)}, the data has {shape}: use a surrogate trained on the "
            "same data"
        )
    try:
        with eval_mode(surrogate), torch.no_grad():
            logits = surrogate(x[:2])
    except (RuntimeError, RobustlabError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{who} cannot classify the data's inputs of shape {shape}: {first}") from err
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[1] != num_classes:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ConfigError(
            f"{who} returns outputs of shape {got}, the model has {num_classes} classes: use a surrogate of the same "
            "data and classes"
        )


def attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    name: str,
    *,
    norm: str | None = None,
    eps: float | str | None = None,
    steps: int | None = None,
    step_size: float | None = None,
    target: str | Tensor = "untargeted",
    minimal: bool = False,
    seed: int = 0,
    batch_size: int | None = 256,
    keep_adversarials: bool = False,
    search_attempts: int = 10,
    progress: Callable[[int, int], None] | None = None,
    index: Tensor | None = None,
    surrogate: nn.Module | None = None,
    **params: Any,
) -> AttackResult:
    """Attack ``model`` on ``(x, y)`` and judge every example with the one evaluator.

    Args:
        model: Any module mapping float NCHW inputs in [0, 1] to logits ``(N, K)``. Its train/eval mode is
            restored afterwards; it is not otherwise modified.
        x: Clean inputs in [0, 1].
        y: Labels in ``[0, K)``.
        name: Registered attack (``fgsm``, ``ifgsm``, ``pgd``, ``mifgsm``, ``cw``, ``ead``).
        norm: ``"linf"``, ``"l2"`` or ``"l1"``; default: the attack's own (L∞ for the gradient attacks, L2 for
            C&W, L1 for EAD).
        eps: Budget (a number or a string such as ``"8/255"``). Fixed-budget attacks default to the
            norm's ``default_eps`` (L∞ 8/255, L2 0.5, L1 12); for C&W and EAD it only bounds the evaluation
            (examples are projected into the ball). With ``minimal=True`` it is the largest eps searched.
        steps: Gradient steps (gradient attacks) or inner iterations per constant (C&W, EAD).
        step_size: Absolute step length for gradient attacks (default: relative to ``eps / steps``).
        target: ``"untargeted"``, ``"random"``, ``"least-likely"``, ``"top2"`` or a tensor of targets.
        minimal: Search each image's smallest successful eps (fixed-budget attacks; C&W and EAD are minimal
            by construction).
        seed: Seeds the one generator used for random starts and random targets.
        batch_size: Attack this many samples at a time; ``None``: all at once. The default bounds memory: with
            all 10,000 MNIST test images in one batch, ``robustlab attack`` peaked 7.7x the memory of 1,000
            images; with batches of 256, 1.22x (``benchmarks/memory.py``).
        keep_adversarials: Keep the judged adversarial examples in the result (for transfer, or to save
            with :meth:`AttackResult.save_adversarials`).
        search_attempts: Most attacks per image in the minimal search.
        progress: Called as ``progress(done, budget)`` after every model call, in per-sample model calls
            (gradient passes and forward queries): ``budget`` is what the attack would spend if no sample left
            early, so ``done`` may stop
            short of it (for a progress bar; it does not change the attack).
        index: The dataset row of each image, recorded as the result's ``index`` (and saved with the
            adversarial examples); default ``0..N-1``. It changes nothing in the attack.
        surrogate: A model of the same inputs and classes whose gradients guide the attack instead of
            ``model``'s (a transfer attack: candidates are still judged on ``model``); ``gpga`` takes both models'
            gradients and needs one. Query-only attacks (Square) and AutoAttack take none.
        **params: Attack-specific settings: ``restarts``, ``random_start``, ``momentum``, ``loss``, ``kappa``,
            ``rel_step``, ``early_stop`` (gradient attacks); ``search_steps``, ``initial_const``, ``lr``,
            ``kappa``, ``abort_early`` (C&W); plus ``beta``, ``decision``, ``fista`` (EAD);
            ``l1_sparsity`` (L1 steps); ``tolerance`` and ``rtol`` (minimal search: an image is resolved once
            its bracket is narrower than ``max(tolerance, rtol * upper)``; defaults ``0`` and ``0.02``);
            ``warm_start`` (minimal search of an iterative attack: each attempt starts from the image's best
            success so far instead of the clean input; fewer passes and usually a smaller eps found, but no
            longer the seed study's plain attack at each eps; default ``False``; for C&W and EAD, each inner
            run starts from the best example so far).

    Returns:
        Per-sample records and a summary; see :class:`AttackResult`.

    Raises:
        UnknownNameError: unknown attack, norm, loss or target mode (with close matches).
        ConfigError: invalid budget, steps, parameters, labels or targets, or a target mode the number of
            classes cannot support.
        InputContractError: ``x`` is not a finite float tensor in [0, 1].

    Shape:
        - x: ``(N, C, H, W)``; y: ``(N,)`` int64; target (tensor): ``(N,)`` int64
    """
    if surrogate is not None:
        check_takes_surrogate(name)
    if isinstance(name, str) and name.lower() == "semantic":
        return _semantic(model, x, y, norm, eps, steps, step_size, target, minimal, seed, batch_size,
                         keep_adversarials, progress, index, params)  # fmt: skip
    t0 = time.perf_counter()
    settings = _settings(name, norm, minimal, steps, step_size, params)
    method, norm_obj = settings.method, settings.norm
    warm_start, tolerance, rtol = settings.warm_start, settings.tolerance, settings.rtol
    eps_value = parse_eps(eps)
    _check_int("batch_size", batch_size, 1)
    _check_int("search_attempts", search_attempts, 1)
    rows_index = _check_inputs(x, y, index)
    minimal_search_on = minimal and method.fixed_budget
    if method.fixed_budget and eps_value is None:
        eps_value = norm_obj.diameter(x[0].numel()) if minimal_search_on else norm_obj.default_eps
    search_eps = 0.0
    if minimal_search_on:
        if eps_value is None or not math.isfinite(eps_value) or eps_value <= 0:
            raise ConfigError(f"the minimal search needs a finite eps > 0 to start from, got {eps_value}")
        search_eps = eps_value

    x = x.detach()
    n = x.shape[0]
    device = x.device
    generator = torch.Generator(device=device).manual_seed(seed)
    counter = PassCounter(n)
    everyone = torch.arange(n, device=device)
    eps_found = torch.full((n,), float("nan"), dtype=torch.float64)

    with eval_mode(model), eval_mode(surrogate) if surrogate is not None else contextlib.nullcontext():
        clean_logits = predict_logits(model, x, batch_size)
        counter.add_forward(everyone)
        if clean_logits.dim() != 2:
            raise ConfigError(f"the model must return logits of shape (N, K), got {tuple(clean_logits.shape)}")
        k = clean_logits.shape[1]
        if surrogate is not None:
            check_surrogate(surrogate, x, k)
        y = y.to(device)
        check_labels(y, k)
        mode_name, targets = resolve_targets(target, clean_logits, y, generator)
        method.check_classes(k, targets is not None)
        clean_ok = finite_rows(clean_logits)
        todo = (clean_ok & ~is_success(clean_logits, y, targets)).nonzero().flatten()
        # What the attack would spend with no sample ever leaving the batch (the progress bar's total), in model
        # calls (gradient passes and forward queries alike, so gradient-free attacks fit).
        # A minimal search judges each attempt with one more forward pass.
        cost = (method.cost() + Cost(0, 1)) * search_attempts if minimal_search_on else method.cost()
        budget, gradient_budget = int(todo.numel()) * cost.calls, int(todo.numel()) * cost.gradient
        if progress is not None:
            progress(0, budget)
            counter.calls_total = 0  # the attack's own calls, not the clean pass above
            counter.on_call = lambda done: progress(done, budget)
        x_adv = x.clone()
        eps_t = torch.full((n,), eps_value if eps_value is not None else float("inf"), dtype=x.dtype, device=device)
        ctx = RunContext(
            model=model,
            norm=norm_obj,
            generator=generator,
            counter=counter,
            start_grads=StartGradients(x) if minimal_search_on else None,  # todo rows only: none is adversarial
            unconverged=torch.zeros(n, dtype=torch.bool),
            gradient_model=surrogate,
        )
        bs = batch_size or max(n, 1)
        with trusted_inputs(model):  # iterates are built from the checked x and kept in [0, 1]
            for start in range(0, todo.numel(), bs):
                rows = todo[start : start + bs]
                xb, yb = x[rows], y[rows]
                tb = None if targets is None else targets[rows]
                if minimal_search_on:

                    def run_at(
                        sub: Tensor,
                        e: Tensor,
                        init: Tensor | None,
                        xb: Tensor = xb,
                        yb: Tensor = yb,
                        tb: Tensor | None = tb,
                        rows: Tensor = rows,
                    ) -> Tensor:
                        t_sub = None if tb is None else tb[sub]
                        return method.propose(ctx, Batch(xb[sub], yb[sub], t_sub, e, rows[sub], init=init))

                    out = minimal_search(
                        model,
                        xb,
                        yb,
                        tb,
                        run=run_at,
                        norm=norm_obj,
                        eps_max=search_eps,
                        attempts=search_attempts,
                        tolerance=tolerance,
                        rtol=rtol,
                        counter=counter,
                        index=rows,
                        warm_start=warm_start,
                    )
                    x_adv[rows] = out.x_adv
                    eps_found[rows.cpu()] = out.eps_found.double().cpu()
                else:
                    x_adv[rows] = method.propose(ctx, Batch(xb, yb, tb, eps_t[rows], rows))
        if method.fixed_budget and not minimal_search_on:
            eps_found[todo.cpu()] = float(eps_value) if eps_value is not None else float("nan")
        counter.on_call = None  # the evaluator's pass is not the attack's progress
        verdict = judge(model, x, x_adv, y, targets, norm_obj, eps_value, batch_size)
        counter.add_forward(everyone)
        reported, columns = method.summarise(ctx, x, verdict.x_adv, y, clean_ok & (clean_logits.argmax(1) == y))

    # What the attack would have spent with no sample ever leaving the batch, and what leaving saved.
    extra: dict[str, Any] = {
        "gradient_passes_budget": gradient_budget,
        "gradient_passes_saved": gradient_budget - int(counter.gradient.sum()),
        "model_calls_budget": budget,
    }
    extra.update(reported)
    if minimal_search_on:
        extra.update(
            search_attempts=search_attempts,
            search_tolerance=tolerance,
            search_rtol=rtol,
            search_warm_start=warm_start,
            gradient_passes_every_eps=gradient_budget,
        )

    clean_pred = clean_logits.argmax(1).cpu()
    label = y.cpu()
    finite_all = (clean_ok & verdict.finite).cpu()
    success = verdict.success.cpu() & finite_all
    status = statuses(finite_all, clean_pred, label, success)
    eps_found[verdict.success.cpu() & ~torch.isin(everyone.cpu(), todo.cpu())] = 0.0  # adversarial as given
    resolved = {f.name: getattr(method.config, f.name) for f in dataclasses.fields(method.config)}
    result = AttackResult(
        attack=method.name,
        norm=norm_obj.name,
        eps=eps_value,
        target_mode=mode_name,
        minimal=bool(minimal),
        fixed_budget=method.fixed_budget and not minimal_search_on,
        seed=seed,
        params=resolved,
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
        extra=extra,
        warnings=method.diagnose(ctx.unconverged, success, int(todo.numel())),
        columns=columns,
    )
    for message in result.warnings:
        logger.warning("%s", message)
    logger.debug("attack %s: %s", method.name, result.summary())
    return result
