"""Reference-side APGD / APGD-T tasks (run by ``_worker.py`` in the reference environment)."""

from __future__ import annotations

from typing import Any

import torch
from _models import build
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
from torch import Tensor

NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}


def apgd(job: dict[str, Any]) -> dict[str, Tensor]:
    """Run pyautoattack's ``perturb`` on all of ``job["x"]`` in one batch.

    Job keys: ``model`` (spec), ``x``, ``y``, ``attack`` (``"apgd"`` | ``"apgd-t"``), ``norm``, ``eps``, ``steps``,
    ``restarts``, ``seed``, ``loss`` (APGD), ``n_target_classes`` (APGD-T), ``l1_eps_schedule``.

    Returns:
        ``x_adv`` (what ``perturb`` returns: the adversarial iterate of fooled points, the clean image of the
        others), ``fooled`` (bool), ``x_best`` (each point's best-loss point of the last run it was in; the clean
        image if never attacked), ``clean_correct`` (bool).
    """
    model = build(job["model"])
    x, y = job["x"].float(), job["y"]
    common: dict[str, Any] = {
        "n_iter": int(job["steps"]),
        "norm": NORMS[job["norm"]],
        "n_restarts": int(job["restarts"]),
        "eps": float(job["eps"]),
        "seed": int(job["seed"]),
        "device": "cpu",
        "use_largereps": bool(job.get("l1_eps_schedule", False)),
    }
    if job["attack"] == "apgd":
        attack: APGDAttack = APGDAttack(model, loss=str(job["loss"]), **common)
    else:
        attack = APGDAttack_targeted(model, n_target_classes=int(job["n_target_classes"]), **common)
    fooled = torch.zeros(x.shape[0], dtype=torch.bool)
    x_best = x.clone()
    flat = x.reshape(x.shape[0], -1)

    def recording(run: Any) -> Any:
        def wrapped(xs: Tensor, ys: Tensor, *args: Any, **kwargs: Any) -> Any:
            result = run(xs, ys, *args, **kwargs)
            rows = (xs.reshape(xs.shape[0], 1, -1) == flat.unsqueeze(0)).all(-1).float().argmax(1)  # (m,) positions
            x_best[rows] = result[0].detach()
            fooled[rows[~result[1]]] = True
            return result

        return wrapped

    if common["use_largereps"]:
        attack.decr_eps_pgd = recording(attack.decr_eps_pgd)  # type: ignore[method-assign]
    else:
        attack.attack_single_run = recording(attack.attack_single_run)  # type: ignore[method-assign]
    with torch.no_grad():
        clean_correct = model(x).max(1)[1] == y
    x_adv = attack.perturb(x, y)
    return {"x_adv": x_adv.detach(), "fooled": fooled, "x_best": x_best, "clean_correct": clean_correct}


def l1_projection(job: dict[str, Any]) -> dict[str, Tensor]:
    """``job = {"x", "y", "eps"}`` → ``{"correction": L1_projection(x, y, eps)}`` (the reference's L1 ∩ box)."""
    from pyautoattack.autopgd_base import L1_projection

    return {"correction": L1_projection(job["x"], job["y"], float(job["eps"]))}
