"""Reference side of the Square comparison (runs in the reference environment): pyautoattack's SquareAttack."""

from __future__ import annotations

import time
from typing import Any

import torch
from _models import build
from pyautoattack.square import SquareAttack
from torch import Tensor

NORMS = {"linf": "Linf", "l2": "L2"}


def square(job: dict[str, Any]) -> dict[str, Tensor]:
    """Square as AutoAttack runs it, with each point's query count.

    Job keys: ``model`` (spec), ``x``, ``y``, ``norm``, ``eps``, ``queries``, ``p_init``, ``seed``, ``batch_size``,
    ``loss`` (default margin), ``rescale`` (default False).

    AutoAttack attacks the clean-correct points in consecutive chunks of ``batch_size``; for each chunk
    ``perturb`` re-seeds the global generator and runs ``attack_single_run`` (one restart). ``perturb`` does not
    return the query counts, so this does exactly what it does with one restart, calling ``attack_single_run``
    itself, and judges the returned points with one forward pass as ``perturb`` does.

    Returns:
        ``queries`` (``(N,)``, 0 for the clean-misclassified), ``robust`` (bool: still correctly classified after
        the attack), ``x_adv`` (the attack's last best points; the clean image of unattacked points), ``seconds``
        (process time of the attack).
    """
    model = build(job["model"])
    x, y = job["x"].float(), job["y"]
    attack = SquareAttack(
        model,
        norm=NORMS[job["norm"]],
        n_queries=int(job["queries"]),
        eps=float(job["eps"]),
        p_init=float(job.get("p_init", 0.8)),
        n_restarts=1,
        seed=int(job["seed"]),
        loss=str(job.get("loss", "margin")),
        resc_schedule=bool(job.get("rescale", False)),
        device="cpu",
    )
    attack.init_hyperparam(x)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    todo = correct.nonzero().squeeze(1)
    queries = torch.zeros(x.shape[0], dtype=torch.int64)
    robust = correct.clone()
    x_adv = x.clone()
    bs = int(job["batch_size"])
    start = time.process_time()
    for i in range(0, todo.numel(), bs):
        rows = todo[i : i + bs]
        torch.random.manual_seed(attack.seed)
        n_queries, adv = attack.attack_single_run(x[rows], y[rows])
        with torch.no_grad():
            still = model(adv).argmax(1) == y[rows]
        queries[rows] = n_queries.long()
        robust[rows] = still
        x_adv[rows] = adv
    seconds = time.process_time() - start
    return {"queries": queries, "robust": robust, "x_adv": x_adv, "seconds": torch.tensor(seconds)}


def schedule(job: dict[str, Any]) -> dict[str, Tensor]:
    """The reference's p schedule and L2 window pattern.

    Job keys: ``schedules`` (a list of ``[queries, p_init, rescale]``), ``sides`` (pattern sizes).

    Returns:
        ``p_<k>`` (float64, ``(queries,)``: p at every iteration of the k-th schedule) and ``eta_<s>`` for each
        side ``s`` (the untransposed pattern).
    """
    out: dict[str, Tensor] = {}
    for k, (queries, p_init, rescale) in enumerate(job["schedules"]):
        attack = SquareAttack(
            None, norm="L2", n_queries=int(queries), eps=1.0, p_init=float(p_init), resc_schedule=bool(rescale)
        )
        out[f"p_{k}"] = torch.tensor([attack.p_selection(i) for i in range(int(queries))], dtype=torch.float64)
    attack = SquareAttack(None, norm="L2", eps=1.0, device="cpu")
    for s in job["sides"]:
        # eta() transposes its pattern when its one draw from the global generator exceeds 0.5: find a state
        # whose next draw does not.
        gen_state = torch.get_rng_state()
        while float(torch.rand(1)) > 0.5:
            gen_state = torch.get_rng_state()
        torch.set_rng_state(gen_state)
        out[f"eta_{s}"] = attack.eta(int(s))
    return out
