"""Reference side of benchmarks/square_check.py: pyautoattack's SquareAttack in its own environment.

Usage (called by benchmarks/square_check.py): ``REF_PYTHON benchmarks/_square_ref.py JOB.pt OUT.pt``. The job holds
a TorchScript model file, the inputs and the settings. As AutoAttack does, the clean-correct points are attacked in
consecutive chunks of ``batch_size``, the global generator re-seeded for each chunk (what ``perturb`` does with one
restart; ``attack_single_run`` is called directly because ``perturb`` drops the query counts). The output holds the
per-point robust verdicts (one fresh forward pass of the returned points), the query counts, and the CPU and wall
seconds of the attack alone.
"""

from __future__ import annotations

import sys
import time

import torch


def main(job_path: str, out_path: str) -> None:
    from pyautoattack.square import SquareAttack

    job = torch.load(job_path, weights_only=False)
    torch.set_num_threads(int(job["threads"]))
    model = torch.jit.load(job["model"]).eval()
    x, y, bs = job["x"], job["y"], int(job["batch_size"])
    square = SquareAttack(
        model,
        norm=job["norm"],
        n_queries=int(job["queries"]),
        eps=float(job["eps"]),
        p_init=float(job["p_init"]),
        n_restarts=1,
        seed=int(job["seed"]),
        loss="margin",
        resc_schedule=bool(job["rescale"]),
        device="cpu",
    )
    square.init_hyperparam(x)
    with torch.no_grad():
        robust = model(x).argmax(1) == y
    todo = robust.nonzero().squeeze(1)
    queries = torch.zeros(x.shape[0], dtype=torch.int64)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(0, todo.numel(), bs):
        rows = todo[i : i + bs]
        torch.random.manual_seed(square.seed)
        n_queries, adv = square.attack_single_run(x[rows], y[rows])
        with torch.no_grad():
            robust[rows] = model(adv).argmax(1) == y[rows]
        queries[rows] = n_queries.long()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    torch.save({"robust": robust, "queries": queries, "cpu_seconds": cpu, "wall_seconds": wall}, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
