"""ART side of benchmarks/training.py: one PGD adversarial-training epoch with ART in its own environment.

Usage (called by benchmarks/training.py): ``ART_PYTHON benchmarks/_art_ref.py JOB.pt OUT.json``. The job holds the
network (a pickled ``nn.Sequential`` of plain torch modules, written by training.py from robustlab's architecture
with the same initial weights), the training images in [0, 1], the labels and the settings. The output holds the
CPU and wall seconds of the trainer's ``fit`` alone, ART's and torch's versions, and which trainer ran:

- ``adversarial-trainer``: ``AdversarialTrainer(classifier, ProjectedGradientDescent(...), ratio=1.0)``, the
  trainer ``AdversarialTrainerMadryPGD`` builds, but with the attack's ``batch_size`` set to the training batch
  (Madry's wrapper leaves the attack at its default of 32 images and has no argument for it);
- ``madry``: ``AdversarialTrainerMadryPGD`` as shipped (the PGD attack runs on slices of 32 images).

Both use ART's ``PyTorchClassifier`` (cross-entropy, SGD with Nesterov momentum, clip values [0, 1], CPU) and
PGD with ``num_random_init=1`` (a uniform random start), ``eps``, ``eps_step`` and ``max_iter`` as given. ART
shuffles the training set with numpy's global generator (seeded here), not in robustlab's order. A one-batch fit of
a throwaway classifier first warms torch and ART up, as the benchmark does for the in-process contenders.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn


def _classifier(net: nn.Module, job: dict[str, Any]) -> Any:
    from art.estimators.classification import PyTorchClassifier

    opt = torch.optim.SGD(net.parameters(), lr=float(job["lr"]), momentum=float(job["momentum"]), nesterov=True)
    return PyTorchClassifier(
        model=net,
        loss=nn.CrossEntropyLoss(),
        optimizer=opt,
        input_shape=tuple(job["x"].shape[1:]),
        nb_classes=int(job["classes"]),
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )


def _trainer(classifier: Any, job: dict[str, Any]) -> Any:
    from art.attacks.evasion import ProjectedGradientDescent
    from art.defences.trainer import AdversarialTrainer, AdversarialTrainerMadryPGD

    eps, step, steps, batch = float(job["eps"]), float(job["eps_step"]), int(job["steps"]), int(job["batch"])
    if job["trainer"] == "madry":
        return AdversarialTrainerMadryPGD(
            classifier, nb_epochs=1, batch_size=batch, eps=eps, eps_step=step, max_iter=steps, num_random_init=1
        )
    pgd = ProjectedGradientDescent(
        classifier,
        norm=np.inf,
        eps=eps,
        eps_step=step,
        max_iter=steps,
        num_random_init=1,
        batch_size=batch,
        verbose=False,
    )
    return AdversarialTrainer(classifier, pgd, ratio=1.0)


def main(job_path: str, out_path: str) -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")  # before ART imports tqdm: no progress bars
    import art

    job = torch.load(job_path, weights_only=False)  # written by benchmarks/training.py a moment ago
    torch.set_num_threads(int(job["threads"]))
    net = torch.load(job["model"], weights_only=False)  # an nn.Sequential of torch modules, written alongside
    x = job["x"].numpy().astype(np.float32)
    y = job["y"].numpy().astype(np.int64)
    batch = int(job["batch"])
    np.random.seed(int(job["seed"]))
    torch.manual_seed(int(job["seed"]))
    _trainer(_classifier(copy.deepcopy(net), job), job).fit(x[:batch], y[:batch], nb_epochs=1, batch_size=batch)
    trainer = _trainer(_classifier(net, job), job)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    trainer.fit(x, y, nb_epochs=1, batch_size=batch)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    result = {
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "trainer": job["trainer"],
        "attack_batch": int(trainer.attack.batch_size if job["trainer"] == "madry" else batch),
        "art": art.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
