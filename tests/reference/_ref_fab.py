"""Reference side of the FAB-T comparison (runs in the reference environment): pyautoattack's FAB-T."""

from __future__ import annotations

import time
from typing import Any

import torch
from _models import build
from pyautoattack.fab_pt import FABAttack_PT
from torch import Tensor


def fab_t(job: dict[str, Any]) -> dict[str, Tensor]:
    """``job = {"model", "x", "y", "norm" ("Linf"/"L2"/"L1"), "eps", "batch_size"}`` → ``{"x_adv", "seconds"}``.

    FAB-T exactly as AutoAttack's standard version configures it (targeted, 1 restart, 100 iterations,
    9 target classes), run on consecutive batches of ``batch_size`` like ``run_standard_evaluation``.
    """
    model = build(job["model"])
    attack = FABAttack_PT(
        model,
        norm=job["norm"],
        n_restarts=1,
        n_iter=int(job.get("steps", 100)),
        eps=float(job["eps"]),
        seed=0,
        targeted=True,
        device="cpu",
        n_target_classes=int(job.get("targets", 9)),
    )
    x, y, bs = job["x"], job["y"], int(job["batch_size"])
    start = time.process_time()
    out = torch.cat([attack.perturb(x[i : i + bs], y[i : i + bs]) for i in range(0, x.shape[0], bs)])
    seconds = time.process_time() - start
    return {"x_adv": out, "seconds": torch.tensor(seconds)}
