"""ART side of benchmarks/semantic.py: ART's composite adversarial attack (CAA) in ART's own environment.

Usage (called by benchmarks/semantic.py): ``ART_PYTHON benchmarks/_art_caa.py JOB.pt OUT.pt``. Never imported by
robustlab's environment; it needs only torch, numpy, ART and kornia.

The job holds the akamaster ResNet-20's state dict (robustlab's network, keys ``conv1.weight``, ``layer1.0...``,
``linear.bias``), the normalisation's mean and std, the images in [0, 1], the labels, the thread count and a list
of tasks, each ``{"name", "x" (a slice: first ``n`` images), "enabled_attack", "attack_order", "max_iter",
"max_inner_iter", "batch_size", "seed"}``. The network is rebuilt here with plain torch (:class:`ResNet20`, the
normalisation inside the module: CAA calls ``classifier.model`` directly and so bypasses ART's preprocessing). The
output holds the clean logits (the caller checks them against robustlab's model) and, per task, the adversarial
images and the wall and CPU seconds of ``generate`` alone, with ART's, kornia's and torch's versions.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Block(nn.Module):
    """conv3×3 → BN → ReLU → conv3×3 → BN, plus the parameter-free "option A" shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = (planes - in_planes) // 2 if stride != 1 or in_planes != planes else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + short)


class ResNet20(nn.Module):
    """akamaster's CIFAR ResNet-20 (He et al. 2016 §4.2: 3 stages × 3 blocks of 16/32/64 channels, option-A
    shortcuts, global average pool, linear 64→10), taking images in [0, 1] and normalising them itself."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, in_planes = [], 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for j in range(3):
                blocks.append(_Block(in_planes, planes, 2 if i > 0 and j == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, 10)
        self.register_buffer("mean", mean.reshape(1, 3, 1, 1).clone(), persistent=False)
        self.register_buffer("std", std.reshape(1, 3, 1, 1).clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = (x - self.mean) / self.std
        out = F.relu(self.bn1(self.conv1(out)))
        out = self.layer3(self.layer2(self.layer1(out)))
        logits: Tensor = self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
        return logits


def _classifier(net: nn.Module) -> Any:
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=net,
        loss=nn.CrossEntropyLoss(),
        input_shape=(3, 32, 32),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )


def main(job_path: str, out_path: str) -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")  # before ART imports tqdm: no progress bars
    import art
    import kornia
    import numpy as np
    from art.attacks.evasion import CompositeAdversarialAttackPyTorch

    job = torch.load(job_path, weights_only=False)  # written by benchmarks/semantic.py a moment ago
    torch.set_num_threads(int(job["threads"]))
    net = ResNet20(job["mean"], job["std"])
    missing, unexpected = net.load_state_dict(job["state_dict"], strict=False)
    # the checkpoint's BN layers have num_batches_tracked (robustlab's copy) or not (akamaster's file): both fine
    if [k for k in missing if not k.endswith("num_batches_tracked")] or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    net.eval()
    x, y = job["x"].float(), job["y"].long()
    with torch.no_grad():
        clean_logits = torch.cat([net(x[i : i + 500]) for i in range(0, len(x), 500)])
    classifier = _classifier(net)
    out: dict[str, Any] = {
        "clean_logits": clean_logits,
        "versions": {"art": art.__version__, "kornia": kornia.__version__, "torch": torch.__version__},
        "threads": torch.get_num_threads(),
        "tasks": {},
    }
    for task in job["tasks"]:
        n = int(task["n"])
        xs = x[:n].numpy().astype(np.float32)
        ys = y[:n].numpy()
        attack = CompositeAdversarialAttackPyTorch(
            classifier,
            enabled_attack=tuple(task["enabled_attack"]),
            attack_order=task["attack_order"],
            max_iter=int(task["max_iter"]),
            max_inner_iter=int(task["max_inner_iter"]),
            batch_size=int(task["batch_size"]),
            verbose=False,
        )
        torch.manual_seed(int(task["seed"]))  # ART draws its random starts from torch's global generator
        np.random.seed(int(task["seed"]))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        adv = attack.generate(xs, ys)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        out["tasks"][task["name"]] = {"x_adv": torch.from_numpy(adv), "wall_seconds": wall, "cpu_seconds": cpu, "n": n}
        print(f"[art] {task['name']}: n {n}, wall {wall:.1f} s, cpu {cpu:.1f} s", file=sys.stderr, flush=True)
        torch.save(out, out_path)  # after every task: a long run that is stopped keeps what it finished
    torch.save(out, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
