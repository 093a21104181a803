"""Reference side of benchmarks/autoattack.py: runs pyautoattack in its own environment (never robustlab's).

Usage (called by benchmarks/autoattack.py): ``REF_PYTHON benchmarks/_autoattack_ref.py JOB.pt OUT.pt``. The job holds
a TorchScript model file, the inputs and the settings; the output holds the adversarial examples, the per-point
robust verdicts (one fresh forward pass of the returned points), robust accuracy after each attack and the wall
seconds it took, as the reference logs them (its log gives the total since the start; each stage's share is the
difference), and the wall and CPU seconds of ``run_standard_evaluation`` alone.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

import torch

#: site-packages of the reference's own virtualenv (scripts/reference-env.sh), for benchmarks that import it
#: in-process beside robustlab.
REF_SITE = Path(__file__).resolve().parents[2] / "ref-venv" / "lib" / "python3.11" / "site-packages"


class Counted(torch.nn.Module):
    """The model with its calls, rows and CPU seconds of forward passes counted (both sides use this one)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = self.rows = 0
        self.seconds = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        t0 = time.process_time()
        out: torch.Tensor = self.model(x)
        self.seconds += time.process_time() - t0
        return out


def reference_stage(model: torch.nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps: float,
                    seed: int) -> torch.Tensor:  # fmt: skip
    """The reference's attack ``name`` of the standard cascade on ``(x, y)``, set as ``run_standard_evaluation``
    sets it; its candidates. Also used in-process by ``benchmarks/autoattack_interleaved.py``."""
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, norm=norm, eps=eps, version="standard", seed=seed)
    aa.logger.disabled = True
    if name == "apgd-ce":
        aa.apgd.loss, aa.apgd.seed = "ce", aa.get_seed()
        out: torch.Tensor = aa.apgd.perturb(x, y)
    elif name == "apgd-t":
        aa.apgd_targeted.seed = aa.get_seed()
        out = aa.apgd_targeted.perturb(x, y)
    elif name == "fab-t":
        aa.fab.targeted, aa.fab.n_restarts, aa.fab.seed = True, 1, aa.get_seed()
        out = aa.fab.perturb(x, y)
    elif name == "square":
        aa.square.seed = aa.get_seed()
        out = aa.square.perturb(x, y)
    else:
        raise ValueError(f"unknown stage {name!r}")
    return out


def stage(job: dict, model: torch.nn.Module, out_path: str) -> None:
    """One attack of the standard cascade alone on every point (a job with ``stage``)."""
    counted = Counted(model)
    x, y = job["x"], job["y"]
    cpu0 = time.process_time()
    x_adv = reference_stage(counted, job["stage"], x, y, norm=job["norm"], eps=float(job["eps"]), seed=int(job["seed"]))
    cpu = time.process_time() - cpu0
    with torch.no_grad():
        robust = model(x_adv).argmax(1) == y
    calls = {"calls": counted.calls, "rows": counted.rows, "forward_cpu_seconds": counted.seconds}
    torch.save({"robust": robust, "cpu_seconds": cpu, **calls}, out_path)


def main(job_path: str, out_path: str) -> None:
    from pyautoattack import AutoAttack

    job = torch.load(job_path, weights_only=False)
    torch.set_num_threads(int(job["threads"]))
    model = torch.jit.load(job["model"]).eval()
    if "stage" in job:
        stage(job, model, out_path)
        return
    x, y = job["x"], job["y"]
    after: list[tuple[str, float, float]] = []
    total = [0.0]

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            m = re.search(r"robust accuracy after (\S+):\s*([0-9.]+)% \(total time ([0-9.]+) s\)", record.getMessage())
            if m:
                seconds = float(m.group(3))
                after.append((m.group(1), float(m.group(2)) / 100, seconds - total[0]))
                total[0] = seconds

    log = logging.getLogger("auto-attack")
    log.setLevel(logging.DEBUG)
    log.addHandler(Grab())
    counted = Counted(model) if job.get("count") else None
    net = counted if counted is not None else model
    aa = AutoAttack(net, norm=job["norm"], eps=float(job["eps"]), version=job["version"], seed=int(job["seed"]))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=int(job["batch_size"]))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    with torch.no_grad():
        robust = torch.cat([model(x_adv[i : i + 500]).argmax(1) for i in range(0, len(x), 500)]) == y
    out = {"x_adv": x_adv, "robust": robust, "after": after, "cpu_seconds": cpu, "wall_seconds": wall}
    if counted is not None:
        out.update(calls=counted.calls, rows=counted.rows, forward_cpu_seconds=counted.seconds)
    torch.save(out, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
