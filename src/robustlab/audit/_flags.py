"""The audit's flags: the model checks' findings and the ladder's comparisons, each against a documented threshold.

Every threshold is in points of robust accuracy over all audited points (100 points = every point) and is listed in
``docs/audit.md`` with its reason. A ladder flag compares what a group of rungs broke with what the rungs before them
left robust, on the same points: a stronger attack breaking points a weaker one left is evidence that the weaker
one's number overstated robustness.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from robustlab.attacks import CHECKS, Check
from robustlab.audit._ladder import RungResult
from robustlab.audit._model import ModelFacts

#: Thresholds in points of robust accuracy (see docs/audit.md).
THRESHOLDS: dict[str, float] = {
    "single-step-beats-iterative": 1.0,  # FGSM alone below the short PGD alone
    "single-step-far-above-iterative": 20.0,  # FGSM alone far above the short PGD (FGSM-AT, no random start: 83 vs 0.2)
    "still-falling-with-steps": 2.0,  # the long PGD breaks more of what the short one left (NoFrost: 12.0 -> 5.3)
    "losses-disagree": 2.0,  # margin / DLR break what CE left (ClusTR; label smoothing: 3.2 on MNIST)
    "black-box-beats-white-box": 0.5,  # Square after every gradient attack (AutoAttack uses 0.2 after its own)
    "adaptive-beats-white-box": 1.0,  # BPDA / EoT after the plain gradient attacks
    "transfer-beats-white-box": 1.0,  # surrogate-guided attacks after every white-box one
    "not-monotone-in-eps": 1.0,  # robust accuracy higher at a larger eps
    "large-eps-not-broken": 2.0,  # robust accuracy left at half the box
    "strong-attacks-beat-pgd": 5.0,  # the whole ladder below the short PGD alone (FGSM-RS MNIST here: 88 -> 81)
}
#: For the flags that compare attacks of one family (more iterations, another loss), the threshold is also at least
#: this fraction of the robust accuracy the earlier rungs left: an honest model that is still 81 % robust may lose
#: 2.7 more points to 30 more iterations (a small MLP here), a masked one at 12 % loses half of it (NoFrost: 5.3 %).
RELATIVE: dict[str, float] = {
    "still-falling-with-steps": 0.05,
    "losses-disagree": 0.05,
    "strong-attacks-beat-pgd": 0.05,
}

#: The CLEVER comparison (``AuditConfig.clever_points``): raised when CLEVER exceeds the distortion the audit found
#: on more than this fraction of the compared points (CLEVER equals the minimal distortion on linear models, so an
#: honest model exceeds it only where the Weibull fit errs; zero gradients put CLEVER at its radius on every point).
CLEVER_THRESHOLD = 0.1

#: The roles of the plain white-box rungs (the model's own gradients, no adaptation).
PLAIN_ROLES = ("fgsm", "short", "long", "loss", "restarts", "apgd")


@dataclass(frozen=True)
class Finding:
    """A raised flag: its code and the evidence (the values that fill its message).

    Attributes:
        code: A code of :data:`robustlab.attacks.CHECKS`.
        values: The evidence, as numbers and names (JSON-ready).
    """

    code: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def check(self) -> Check:
        """The registered check (explanation, message, fix)."""
        return CHECKS.get(self.code)

    @property
    def evidence(self) -> str:
        """What was seen, in words."""
        return self.check.evidence(**self.values)

    @property
    def masking(self) -> bool:
        """Whether the flag is evidence of gradient masking."""
        return self.check.masking

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{code, evidence, explanation, fix, masking, values}``."""
        check = self.check
        return {
            "code": self.code,
            "evidence": self.evidence,
            "explanation": check.explanation,
            "fix": check.fix,
            "masking": check.masking,
            "values": dict(self.values),
        }


def model_findings(facts: ModelFacts) -> list[Finding]:
    """The flags of the model checks, in a fixed order."""
    out: list[Finding] = []
    if facts.probabilities:
        out.append(Finding("softmax-output"))
    if facts.stochastic:
        out.append(Finding("stochastic-model", {"diff": facts.random_diff}))
    if facts.train_mode:
        shown = ", ".join(facts.train_mode[:5]) + (", ..." if len(facts.train_mode) > 5 else "")
        out.append(Finding("train-mode-bn", {"count": len(facts.train_mode), "names": shown}))
    if facts.batch_diff:
        out.append(Finding("batch-dependent-outputs", {"diff": facts.batch_diff}))
    if facts.gradient_error is not None:
        out.append(Finding("gradients-unavailable", {"error": facts.gradient_error}))
    if facts.non_finite_gradients > 0:
        out.append(Finding("non-finite-gradients", {"fraction": facts.non_finite_gradients}))
    if facts.zero_gradients > 0:
        out.append(Finding("zero-gradients", {"fraction": facts.zero_gradients}))
    if facts.layers:
        names = ", ".join(f"{layer.name} ({layer.kind})" for layer in facts.layers)
        out.append(Finding("non-differentiable-layers", {"names": names}))
    return out


def _points(results: Iterable[RungResult], n: int) -> float:
    """What the rungs broke, in points of all ``n`` points."""
    return 100.0 * sum(r.broken for r in results) / n if n else 0.0


def _by_role(results: list[RungResult], *roles: str) -> list[RungResult]:
    return [r for r in results if r.rung.role in roles]


def _labels(results: list[RungResult]) -> str:
    return ", ".join(r.rung.label for r in results if r.broken) or ", ".join(r.rung.label for r in results)


def ladder_findings(results: list[RungResult], n: int, surrogate: str | None) -> list[Finding]:
    """The flags of the ladder: each group of rungs against the rungs before it, on the same points.

    Args:
        results: The rungs that ran, in order.
        n: Points audited.
        surrogate: The surrogate's name (for the transfer flag's evidence).
    """
    out: list[Finding] = []
    if not n:
        return out
    by_label = {r.rung.role: r for r in results if r.rung.role in ("fgsm", "short")}
    fgsm, short = by_label.get("fgsm"), by_label.get("short")
    if fgsm is not None and short is not None and fgsm.robust_alone is not None and short.robust_alone is not None:
        below = 100.0 * (short.robust_alone - fgsm.robust_alone)  # FGSM below PGD: PGD fails; far above: FGSM does
        for code, points in (("single-step-beats-iterative", below), ("single-step-far-above-iterative", -below)):
            if points > THRESHOLDS[code]:
                values = {"fgsm": fgsm.robust_alone, "pgd": short.robust_alone, "iterative": short.rung.label}
                out.append(Finding(code, {**values, "points": points, "threshold": THRESHOLDS[code]}))
    long = _by_role(results, "long")
    if long and short is not None:
        values = {"long": long[0].rung.label, "short": short.rung.label}
        _compare(out, "still-falling-with-steps", long, n, values, _before(results, long[0]))
    losses = _by_role(results, "loss")
    names = sorted({str(r.params.get("loss")) for r in losses if r.broken}) or ["margin", "DLR"]
    if losses:
        _compare(out, "losses-disagree", losses, n, {"losses": " or ".join(names)}, _before(results, losses[0]))
    if _by_role(results, *PLAIN_ROLES):  # with no plain gradient attack there is nothing to beat
        _compare(out, "adaptive-beats-white-box", _by_role(results, "bpda", "eot"), n, {})
        _compare(out, "black-box-beats-white-box", _by_role(results, "square"), n, {})
        _compare(out, "transfer-beats-white-box", _by_role(results, "transfer", "guided"), n, {"surrogate": surrogate})
    if short is not None and short.robust_alone is not None:
        out.extend(_overall(results, short, n))
    out.extend(_sweep_findings(results, n))
    return out


def _overall(results: list[RungResult], short: RungResult, n: int) -> list[Finding]:
    """The whole ladder against the short PGD alone: how much a PGD-only evaluation overstates."""
    ladder = [r for r in results if r.rung.in_ladder and r.robust_after is not None]
    if not ladder or short.robust_alone is None or ladder[-1].robust_after is None:
        return []
    honest = ladder[-1].robust_after
    points = 100.0 * (short.robust_alone - honest)
    code = "strong-attacks-beat-pgd"
    threshold = max(THRESHOLDS[code], RELATIVE[code] * 100.0 * short.robust_alone)
    if points <= threshold:
        return []
    shares = sorted((r for r in ladder if not r.rung.standalone and r.broken), key=lambda r: -r.broken)[:3]
    attacks = ", ".join(f"{r.rung.label} ({100.0 * r.broken / n:.1f})" for r in shares) or "FGSM"
    values = {
        "honest": honest,
        "pgd": short.robust_alone,
        "short": short.rung.label,
        "points": points,
        "threshold": threshold,
        "attacks": attacks,
    }
    return [Finding(code, values)]


def _before(results: list[RungResult], first: RungResult) -> float:
    """The robust accuracy the ladder rungs before ``first`` left (1 when none ran)."""
    left = 1.0
    for r in results:
        if r is first:
            break
        if r.rung.in_ladder and r.robust_after is not None:
            left = r.robust_after
    return left


def _compare(
    out: list[Finding], code: str, group: list[RungResult], n: int, values: dict[str, Any], before: float = 0.0
) -> None:
    """Raise ``code`` when the rungs of ``group`` broke more than its threshold of points the earlier rungs left
    (``before``: the robust accuracy they left, for a relative threshold)."""
    if not group:
        return
    points = _points(group, n)
    threshold = max(THRESHOLDS[code], RELATIVE.get(code, 0.0) * 100.0 * before)
    if points > threshold:
        out.append(Finding(code, {**values, "attacks": _labels(group), "points": points, "threshold": threshold}))


def _sweep_findings(results: list[RungResult], n: int) -> list[Finding]:
    """Robust accuracy must not rise with eps, and must be near zero at the large eps."""
    out: list[Finding] = []
    sweep = sorted(
        (r for r in results if r.rung.role in ("short", "sweep") and r.robust_alone is not None),
        key=lambda r: r.eps,
    )
    worst: tuple[float, RungResult, RungResult] | None = None
    for i, small in enumerate(sweep):
        for big in sweep[i + 1 :]:
            if big.eps > small.eps and big.robust_alone is not None and small.robust_alone is not None:
                rise = 100.0 * (big.robust_alone - small.robust_alone)
                if worst is None or rise > worst[0]:
                    worst = (rise, small, big)
    threshold = THRESHOLDS["not-monotone-in-eps"]
    if worst is not None and worst[0] > threshold:
        rise, small, big = worst
        out.append(
            Finding(
                "not-monotone-in-eps",
                {
                    "attack": f"pgd-{small.params.get('steps')}",
                    "high": big.robust_alone,
                    "eps_high": big.eps,
                    "low": small.robust_alone,
                    "eps_low": small.eps,
                    "points": rise,
                    "threshold": threshold,
                },
            )
        )
    large = [r for r in results if r.rung.role == "sweep" and r.rung.eps_factor is None]
    threshold = THRESHOLDS["large-eps-not-broken"]
    if large and large[0].robust_alone is not None and 100.0 * large[0].robust_alone > threshold:
        r = large[0]
        out.append(
            Finding(
                "large-eps-not-broken",
                {
                    "eps": r.eps,
                    "attack": f"pgd-{r.params.get('steps')}",
                    "robust": r.robust_alone,
                    "threshold": threshold,
                },
            )
        )
    return out


def clever_findings(summary: dict[str, Any] | None) -> list[Finding]:
    """The CLEVER comparison's flag: CLEVER above the found distortion on more than :data:`CLEVER_THRESHOLD` of
    the compared points (``summary``: the audit's ``clever`` record, ``None`` or not run: no flag)."""
    if not summary or not summary.get("ran") or not summary["n_compared"]:
        return []
    fraction = summary["n_exceeds"] / summary["n_compared"]
    if fraction <= CLEVER_THRESHOLD:
        return []
    values = {
        "norm": summary["norm"],
        "exceeds": summary["n_exceeds"],
        "compared": summary["n_compared"],
        "fraction": fraction,
        "threshold": CLEVER_THRESHOLD,
        "ratio": summary["median_ratio"],
    }
    return [Finding("clever-above-found-distortion", values)]
