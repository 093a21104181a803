"""The one evaluator: attacks propose, the evaluator projects, clips, re-runs the model and judges.

No attack decides its own success. Whatever an attack returns is projected into the threat model, clipped
to [0, 1] and classified by a fresh forward pass with the model in eval mode; only then is it a success
(untargeted: prediction != label; targeted: prediction == target). Non-finite logits make a sample a
``numerical_error``, which is never counted as robust.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.models.adapter import predict_logits
from robustlab.threat import Norm
from robustlab.threat.semantic import SemanticThreat

STATUS_SUCCESS = "success"
STATUS_FAILURE = "failure"
STATUS_MISCLASSIFIED = "misclassified"
STATUS_NUMERICAL_ERROR = "numerical_error"


class PassCounter:
    """Per-sample counts of forward-only and forward+input-gradient passes.

    Attributes:
        on_call: Called with the running total of per-sample model calls (gradient passes and forward queries
            counted by the attack) after each counted call (progress reporting); ``None`` for none.

    Shape:
        - forward, gradient: ``(N,)`` int64 on the CPU
    """

    def __init__(self, n: int) -> None:
        self.forward = torch.zeros(n, dtype=torch.int64)
        self.gradient = torch.zeros(n, dtype=torch.int64)
        self.calls_total = 0
        self.on_call: Callable[[int], None] | None = None

    def add_forward(self, idx: Tensor) -> None:
        """Count one forward pass for the samples at ``idx`` (global indices)."""
        self.forward[idx.cpu()] += 1
        self._called(idx)

    def add_gradient(self, idx: Tensor, times: int = 1) -> None:
        """Count ``times`` forward + input-gradient passes for the samples at ``idx`` (global indices)."""
        self.gradient[idx.cpu()] += times
        self._called(idx, times)

    def _called(self, idx: Tensor, times: int = 1) -> None:
        self.calls_total += int(idx.numel()) * times
        if self.on_call is not None:
            self.on_call(self.calls_total)


def is_success(logits: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
    """The success rule, the same for every attack: untargeted pred != label, targeted pred == target.

    Rows with a non-finite logit are never a success.

    Shape:
        - logits: ``(N, K)``; labels, targets: ``(N,)``
        - output: ``(N,)`` bool
    """
    pred = logits.argmax(1)
    ok = pred != labels if targets is None else pred == targets
    return ok & torch.isfinite(logits).all(1)


def correct_fraction(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    draws: int = 1,
    batch_size: int = 256,
    counter: PassCounter | None = None,
    index: Tensor | None = None,
) -> Tensor:
    """The fraction of ``draws`` forward passes that classify each point correctly; non-finite logits count as wrong.

    For a deterministic model ``draws=1`` gives 0 or 1; for a randomised one, each point's accuracy expected over
    its randomness. With a ``counter``, each draw is counted as one forward pass of the rows ``index``.

    Shape:
        - x: ``(N, *)``; labels, index: ``(N,)``
        - output: ``(N,)`` float64 on the CPU
    """
    n = int(x.shape[0])
    hits = torch.zeros(n, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(draws):
            for lo in range(0, n, batch_size):
                logits = model(x[lo : lo + batch_size])
                ok = (logits.argmax(1) == labels[lo : lo + batch_size]) & torch.isfinite(logits).all(1)
                hits[lo : lo + batch_size] += ok.double().cpu()
            if counter is not None and index is not None:
                counter.add_forward(index)
    return hits / max(draws, 1)


def finite_rows(logits: Tensor) -> Tensor:
    """Shape: ``(N, K)`` → ``(N,)`` bool, True where every logit is finite."""
    return torch.isfinite(logits).all(1)


@dataclass
class Judgement:
    """What the evaluator decided for each sample.

    Shape:
        - x_adv: ``(N, C, H, W)``; pred, success, finite, l0, l1, l2, linf: ``(N,)``
    """

    x_adv: Tensor
    pred: Tensor
    success: Tensor
    finite: Tensor
    l0: Tensor
    l1: Tensor
    l2: Tensor
    linf: Tensor


def constrain(x: Tensor, x_adv: Tensor, norm: Norm, eps: float | Tensor | None) -> Tensor:
    """Project ``x_adv`` into the eps-ball of ``norm`` around ``x`` (if ``eps`` is given) and clip to [0, 1].

    Clipping after the projection keeps the point inside the ball: it only shrinks each coordinate of the
    perturbation towards zero.

    Shape:
        - x, x_adv: ``(N, *)``; eps: scalar or ``(N,)``
        - output: ``(N, *)``
    """
    delta = x_adv - x
    if eps is not None:
        delta = norm.project(delta, eps)
    return (x + delta).clamp(0.0, 1.0)


def constrain_(
    x: Tensor, x_adv: Tensor, norm: Norm, eps: float | Tensor | None, keep: tuple[Tensor | None, ...] = ()
) -> Tensor:
    """:func:`constrain` computed in ``x_adv``'s memory: the same numbers, no new tensor per step (one pass over
    the batch less of allocation and cache traffic each; about 3 % of a small network's PGD step).

    ``x_adv`` must be a tensor the caller owns and no longer needs (a step just computed); one that needs
    gradients or shares memory with ``x`` or with a tensor of ``keep`` is constrained out of place instead.

    Shape:
        - x, x_adv: ``(N, *)``; eps: scalar or ``(N,)``
        - output: ``(N, *)``
    """
    mine = x_adv.untyped_storage().data_ptr()
    if x_adv.requires_grad or any(t is not None and t.untyped_storage().data_ptr() == mine for t in (x, *keep)):
        return constrain(x, x_adv, norm, eps)
    delta = x_adv.sub_(x)
    if eps is not None:
        delta = norm.project_(delta, eps)
    return delta.add_(x).clamp_(0.0, 1.0)  # delta + x: the same sum as x + delta


def distortions(delta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """L0, L1, L2 and L∞ norms of each perturbation.

    Shape:
        - delta: ``(N, *)``
        - output: four ``(N,)`` tensors
    """
    flat = delta.reshape(delta.shape[0], -1)
    return (
        (flat != 0).sum(1).to(flat.dtype),
        flat.abs().sum(1),
        torch.linalg.vector_norm(flat, ord=2, dim=1),
        flat.abs().amax(1) if flat.shape[1] else flat.new_zeros(flat.shape[0]),
    )


def judge(
    model: nn.Module,
    x: Tensor,
    x_adv: Tensor,
    labels: Tensor,
    targets: Tensor | None,
    norm: Norm,
    eps: float | Tensor | None,
    batch_size: int | None = None,
) -> Judgement:
    """Constrain the proposed examples, classify them afresh and judge success.

    Args:
        model: The classifier (its train/eval mode is restored afterwards).
        x: Clean inputs.
        x_adv: Proposed adversarial examples.
        labels: True labels.
        targets: Targets, or ``None`` for untargeted.
        norm: Threat-model norm used for the projection.
        eps: Budget (scalar or per-sample); ``None`` for an unbounded attack (only the box applies).
        batch_size: Forward-pass batch size.

    Shape:
        - x, x_adv: ``(N, C, H, W)``; labels, targets: ``(N,)``
    """
    final = constrain(x, x_adv.detach(), norm, eps)
    return judge_image(model, x, final, labels, targets, batch_size)


def judge_image(
    model: nn.Module,
    x: Tensor,
    final: Tensor,
    labels: Tensor,
    targets: Tensor | None,
    batch_size: int | None = None,
) -> Judgement:
    """Classify the final (constrained or re-rendered) images afresh and judge success; distortions from ``x``.

    Shape:
        - x, final: ``(N, C, H, W)``; labels, targets: ``(N,)``
    """
    logits = predict_logits(model, final, batch_size)
    l0, l1, l2, linf = distortions(final - x)
    return Judgement(
        x_adv=final,
        pred=logits.argmax(1),
        success=is_success(logits, labels, targets),
        finite=finite_rows(logits),
        l0=l0,
        l1=l1,
        l2=l2,
        linf=linf,
    )


def judge_semantic(
    model: nn.Module,
    x: Tensor,
    u: Tensor,
    delta: Tensor | None,
    labels: Tensor,
    targets: Tensor | None,
    threat: SemanticThreat,
    batch_size: int | None = None,
) -> tuple[Judgement, Tensor, Tensor | None]:
    """Judge proposed semantic parameters: project them into the threat model, re-render the image from them and
    classify it afresh (the attack's own image is never trusted).

    Returns the judgement and the projected parameters (what the records store).

    Shape:
        - x: ``(N, C, H, W)``; u: ``(N, A)``; delta: like ``x``; labels, targets: ``(N,)``
    """
    u, delta = threat.project(u.detach(), None if delta is None else delta.detach())
    bs = batch_size or max(int(x.shape[0]), 1)
    with torch.no_grad():
        final = (
            torch.cat(
                [
                    threat.render(x[lo : lo + bs], u[lo : lo + bs], None if delta is None else delta[lo : lo + bs])
                    for lo in range(0, int(x.shape[0]), bs)
                ]
            )
            if x.shape[0]
            else x.clone()
        )
    return judge_image(model, x, final, labels, targets, batch_size), u, delta


def statuses(finite: Tensor, clean_pred: Tensor, label: Tensor, success: Tensor) -> list[str]:
    """Each sample's status: a numerical error, misclassified clean input, success or failure (in that order).

    Shape: every input ``(N,)`` on the CPU."""
    return [
        STATUS_NUMERICAL_ERROR
        if not bool(finite[i])
        else STATUS_MISCLASSIFIED
        if int(clean_pred[i]) != int(label[i])
        else STATUS_SUCCESS
        if bool(success[i])
        else STATUS_FAILURE
        for i in range(int(label.numel()))
    ]
