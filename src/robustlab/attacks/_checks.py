"""Checks of a model and of an evaluation, as flags with stable codes: the one registry of AutoAttack and the audit.

AutoAttack prints these as warnings that scroll away; here each is a flag stored with the results and shown in the
report: a code that never changes (scripts test for it), a one-line explanation, a sentence that says what was seen
(filled with the evidence), and the fix to try. AutoAttack raises the model checks and the black-box check; the
gradient-masking audit (:mod:`robustlab.audit`) raises every code, with thresholds documented in ``docs/audit.md``.

The probes both of them run (probability outputs, input-gradient status) live here too, so that a check means the
same thing wherever it is raised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab._registry import Registry


@dataclass(frozen=True)
class Check:
    """One check: what its flag means, what was seen and what to try.

    Attributes:
        code: The stable code (never changes; scripts test for it).
        explanation: One line: what the flag means.
        message: What was seen, a template whose ``{...}`` fields the evidence fills.
        fix: The fix to try.
        masking: Whether the flag is evidence of gradient masking (``False``: evaluation hygiene or information).
    """

    code: str
    explanation: str
    message: str
    fix: str
    masking: bool = True

    def evidence(self, **values: object) -> str:
        """The message with ``values`` filled in."""
        return self.message.format(**values)


#: Every check, by code.
CHECKS: Registry[Check] = Registry("check")


def _add(code: str, explanation: str, message: str, fix: str, *, masking: bool = True) -> None:
    CHECKS.register(code, Check(code, explanation, message, fix, masking))


# -- checks of the model (AutoAttack and the audit) -------------------------------------------------------------
_add(
    "stochastic-model",
    "the model is randomised: the same input gives different outputs",
    "two forward passes of the same inputs gave different logits (largest difference {diff:.3g}): the model is "
    "randomised, so single-draw verdicts are optimistic; evaluate it with version='rand'",
    "attack the expectation over the randomness (EoT: average the gradient over draws) and report the accuracy "
    "expected over draws; AutoAttack's version='rand' does both",
)
_add(
    "softmax-output",
    "the model returns probabilities, not logits",
    "the model's outputs lie in [0, 1] and sum to 1 per row: they look like probabilities, not logits; the "
    "cross-entropy and DLR losses are then weak — return logits",
    "return the logits (drop the final softmax); saturated probabilities have zero gradients",
)
_add(
    "zero-gradients",
    "the loss's input gradient is exactly zero on some points",
    "the input gradient of the loss is exactly zero for {fraction:.1%} of the checked points: gradient-based "
    "attacks cannot move them, so their robustness may be masked; see the gradient-masking audit",
    "find the layer that kills the gradient (quantisation, thresholding, saturated outputs); attack through it "
    "with BPDA or a margin loss, and check with a gradient-free attack (Square)",
)
_add(
    "non-finite-gradients",
    "the loss's input gradient is NaN or infinite on some points",
    "the input gradient of the loss is NaN or infinite for {fraction:.1%} of the checked points: gradient-based "
    "attacks are unreliable there",
    "find the operation that overflows (a log of zero, a division by a tiny number) and make it stable; check "
    "those points with a gradient-free attack (Square)",
)
_add(
    "gradients-unavailable",
    "autograd cannot compute the input gradient",
    "the input gradient could not be computed ({error}): the gradient-based attacks cannot run as intended; "
    "only the black-box attack's verdicts are meaningful",
    "rely on gradient-free attacks (Square) and transfer from a surrogate; attack non-differentiable layers "
    "with BPDA (straight-through backward)",
)
_add(
    "few-classes",
    "fewer than 10 classes: the targeted attacks use fewer targets",
    "the model has {k} classes, fewer than 10: APGD-T and FAB-T use {targets} target classes instead of 9",
    "nothing to fix: the targeted attacks use every class but the label",
    masking=False,
)
_add(
    "train-mode-bn",
    "normalisation or dropout layers were in train mode when the evaluation was asked for",
    "{count} normalisation or dropout layer(s) were in train mode when the audit was called ({names}): the "
    "outputs then depend on the batch or on chance; the audit evaluated them in eval mode",
    "call model.eval() before evaluating, and report numbers of the model in the mode it is deployed in",
    masking=False,
)
_add(
    "batch-dependent-outputs",
    "in eval mode, a point's output depends on the other points of its batch",
    "in eval mode, a point's logits changed with the other points of its batch (largest difference {diff:.3g}): "
    "a layer still uses batch statistics (batch norm forced into train mode), so attacks and verdicts depend on "
    "the batch",
    "make every normalisation layer use its running statistics in eval mode",
)
_add(
    "non-differentiable-layers",
    "some layers have a zero or missing input gradient",
    "the layer(s) {names} have a zero or missing input gradient on every checked point (a step function, "
    "rounding, or a cut autograd graph): gradient attacks get no signal through them",
    "attack with BPDA (the layer's backward replaced by the identity; the audit does so for layers whose output "
    "has the input's shape) and with a gradient-free attack (Square)",
)
# -- checks of the attack ladder (the audit; AutoAttack raises the black-box one) -------------------------------
_add(
    "single-step-beats-iterative",
    "one gradient step finds adversarial examples that many steps miss",
    "FGSM left {fgsm:.1%} robust, below {iterative}'s {pgd:.1%} (by {points:.2f} points, more than {threshold:g}): "
    "one step found adversarial examples that many steps of the same loss missed, so the iterative attack is "
    "failing (a shattered or noisy loss surface)",
    "trust neither number; raise the steps and restarts, use APGD and a gradient-free attack (Square)",
)
_add(
    "single-step-far-above-iterative",
    "the iterative attack leaves far less robust accuracy than one gradient step",
    "FGSM left {fgsm:.1%} robust, {iterative} only {pgd:.1%} (by {points:.2f} points, more than {threshold:g}): "
    "the loss is far from linear inside the eps-ball, so one step overstates robustness (the degenerate minimum of "
    "single-step adversarial training, catastrophic overfitting)",
    "never report an FGSM number (nor a training run's FGSM accuracy); report the iterative attacks' number, and "
    "retrain with a random start and a smaller step (FGSM-RS), or with PGD",
)
_add(
    "still-falling-with-steps",
    "robust accuracy still falls between the short and the long attack",
    "{long} broke a further {points:.2f} points that {short} left robust (more than {threshold:g}): robust accuracy "
    "is still falling with more iterations, so the short attack's number overstates robustness",
    "report converged attacks only (APGD with 100 or more iterations, restarts) and check that more steps no "
    "longer lower the number",
)
_add(
    "losses-disagree",
    "margin or DLR attacks succeed where cross-entropy attacks fail",
    "attacks with the {losses} loss broke {points:.2f} points that the cross-entropy attacks left robust (more "
    "than {threshold:g}): the cross-entropy gradient is uninformative there (saturated softmax, scaled logits, "
    "label smoothing)",
    "report attacks with a scale-invariant loss (APGD-DLR, APGD-T, margin); return unscaled logits",
)
_add(
    "black-box-beats-white-box",
    "a gradient-free attack succeeds where the gradient attacks fail",
    "Square, run after the white-box attacks, lowered robust accuracy by a further {points:.2f} points (more "
    "than {threshold:g}): the gradient-based attacks were too weak here, a sign of gradient masking",
    "suspect gradient masking; report the number that includes Square, and find why the gradients mislead",
)
_add(
    "strong-attacks-beat-pgd",
    "the whole ladder leaves far less robust accuracy than the first PGD attack",
    "every attack together left {honest:.1%} robust, {points:.2f} points below {short}'s {pgd:.1%} alone (more "
    "than {threshold:g}): an evaluation with {short} alone overstates robustness; most of the difference came from "
    "{attacks}",
    "report the ladder's honest number (AutoAttack-grade attacks), never a PGD number alone; the rungs that broke "
    "the most say why (restarts: a rugged loss; margin, DLR or APGD-T: an uninformative cross-entropy; Square or "
    "transfer: misleading gradients)",
    # a weak evaluation attack, not by itself evidence of masking: PGD-AT models lose 2-13 points to AutoAttack-grade
    # attacks without masking anything; the flags that say why the gradients mislead are raised on their own
    masking=False,
)
_add(
    "adaptive-beats-white-box",
    "attacks adapted to the defence (BPDA, EoT) succeed where plain gradient attacks fail",
    "{attacks} broke {points:.2f} points that every plain gradient attack left robust (more than {threshold:g}): "
    "the model's plain gradient was misleading (shattered by a non-differentiable layer, or randomised)",
    "report the adaptive attack's number (BPDA through the non-differentiable layers, EoT over the randomness)",
)
_add(
    "transfer-beats-white-box",
    "attacks guided by a surrogate model succeed where the model's own gradients fail",
    "attacks guided by the surrogate {surrogate} ({attacks}) broke {points:.2f} points that every white-box "
    "attack left robust (more than {threshold:g}): adversarial examples exist that the model's own gradients "
    "do not lead to",
    "suspect gradient masking (label smoothing, saturated outputs); report the number that includes the "
    "transfer attacks",
)
_add(
    "not-monotone-in-eps",
    "robust accuracy rises with the budget",
    "{attack} left {high:.1%} robust at eps {eps_high:.4g} but only {low:.1%} at the smaller eps {eps_low:.4g} "
    "(by {points:.2f} points, more than {threshold:g}): a larger budget contains every smaller one, so the "
    "attack is failing",
    "find why the attack fails at the larger budget (its step size, zero gradients); use BPDA, a margin loss or Square",
)
_add(
    "large-eps-not-broken",
    "an attack with a very large budget leaves points robust",
    "at eps {eps:.4g} (half the box: a mid-grey image is within reach of every point) {attack} still left "
    "{robust:.1%} of the points robust (more than {threshold:g} points): an attack that fails at such a budget "
    "is not working",
    "find why the gradient is uninformative (zero gradients, saturated outputs) and use BPDA, a margin loss or Square",
)
_add(
    "clever-above-found-distortion",
    "CLEVER's estimate of the minimal distortion lies above a distortion an attack actually found",
    "CLEVER estimated a minimal {norm} distortion above the distortion of an adversarial example the audit found "
    "on {exceeds} of {compared} broken points ({fraction:.0%}, more than {threshold:.0%}; median CLEVER / found "
    "{ratio:.3g}): the gradients sampled around them understate how fast the margin can fall",
    "trust the distortions attacks find, not gradient-based estimates; find what flattens the gradient "
    "(quantisation, saturation, a non-differentiable layer) and attack through it (BPDA, a margin loss, Square)",
)

#: Each code's message template (``{...}`` fields are filled with the evidence).
FLAG_TEXT: dict[str, str] = {code: CHECKS.get(code).message for code in CHECKS}


def flag(code: str, **evidence: object) -> dict[str, str]:
    """A flag: ``{"code", "message"}`` with the evidence filled into the code's sentence."""
    return {"code": code, "message": CHECKS.get(code).evidence(**evidence)}


def looks_like_probabilities(logits: Tensor) -> bool:
    """Whether every row is finite, lies in [0, 1] and sums to 1 (to 1e-4): probabilities, not logits.

    Shape:
        - logits: ``(N, K)``
    """
    if not logits.numel() or not bool(torch.isfinite(logits).all()):
        return False
    if not 0 <= float(logits.min()) <= float(logits.max()) <= 1:
        return False
    return bool(torch.allclose(logits.sum(1), torch.ones_like(logits[:, 0]), atol=1e-4))


@dataclass(frozen=True)
class GradientCheck:
    """The status of the cross-entropy input gradient on a batch.

    Attributes:
        zero: ``(N,)`` bool, rows whose gradient is exactly zero everywhere (and finite).
        non_finite: ``(N,)`` bool, rows with a NaN or infinite gradient entry.
        error: The first line of autograd's error when no gradient could be computed (then both masks are
            all ``False``), else ``None``.
    """

    zero: Tensor
    non_finite: Tensor
    error: str | None = None


def check_gradients(model: nn.Module, x: Tensor, labels: Tensor) -> GradientCheck:
    """The cross-entropy input gradient of each row of ``x``: zero, non-finite, or not computable at all.

    Autograd failing (a graph cut by a non-differentiable operation, an in-place error) is reported in ``error``,
    never raised: it is a finding about the model, not a crash.

    Shape:
        - x: ``(N, *)``; labels: ``(N,)``
    """
    none = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    try:
        point = x.detach().clone().requires_grad_(True)
        logits = model(point)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, point, allow_unused=True) if loss.requires_grad else (None,)
        if grad is None:
            return GradientCheck(none, none, "autograd's graph is cut: the output does not depend on the input")
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return GradientCheck(none, none, first if len(first) <= 120 else first[:119] + "…")
    flat = grad.reshape(grad.shape[0], -1)
    bad = ~torch.isfinite(flat).all(1)
    return GradientCheck(zero=(flat == 0).all(1) & ~bad, non_finite=bad)


def check_model(model: nn.Module, x: Tensor, labels: Tensor, *, version: str = "standard") -> list[dict[str, str]]:
    """AutoAttack's checks on a batch (the model in eval mode, as the attacks see it).

    Args:
        model: The classifier.
        x: Inputs of the first batch (AutoAttack checks its first batch too).
        labels: Their labels.
        version: The AutoAttack version; ``"rand"`` expects randomness and is not flagged for it.

    Returns:
        The flags raised, in a fixed order.

    Shape:
        - x: ``(N, C, H, W)``; labels: ``(N,)``
    """
    flags: list[dict[str, str]] = []
    with torch.no_grad():
        first, second = model(x), model(x)
    diff = float((first - second).abs().max()) if first.numel() else 0.0
    if version != "rand" and not torch.equal(first, second):
        flags.append(flag("stochastic-model", diff=diff))
    if looks_like_probabilities(first):
        flags.append(flag("softmax-output"))
    k = first.shape[1]
    if k < 10:
        flags.append(flag("few-classes", k=k, targets=k - 1))
    grads = check_gradients(model, x, labels)
    if grads.error is not None:
        flags.append(flag("gradients-unavailable", error=grads.error))
        return flags
    if bool(grads.non_finite.any()):
        flags.append(flag("non-finite-gradients", fraction=float(grads.non_finite.double().mean())))
    if bool(grads.zero.any()):
        flags.append(flag("zero-gradients", fraction=float(grads.zero.double().mean())))
    return flags
