"""A training run for the multi-process tests, started by ``torchrun`` (or plainly, for one process).

Usage: ``python ddp_worker.py RUN_DIR WEIGHTS_OUT [STOP_AFTER_EPOCH]``. The model, data and config are fixed, so a
run with N processes can be compared with a run with one. ``STOP_AFTER_EPOCH`` interrupts every process once that
epoch is checkpointed (as a kill would), so that a second call resumes.
"""

from __future__ import annotations

import sys

import torch
from safetensors.torch import save_file
from torch import nn

from robustlab import ModelAdapter, TrainConfig, train_model
from robustlab.train import distributed as ddp


def build() -> tuple[ModelAdapter, torch.Tensor, torch.Tensor, TrainConfig]:
    """A tiny conv net (no batch norm: per-process batch statistics would differ from one process's) and data."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    model = ModelAdapter(net, num_classes=3, input_shape=(1, 8, 8), mean=(0.5,), std=(0.3,))
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (110,), generator=g)  # 110 = 3 batches of 40, 40, 30: an uneven last batch
    x = (torch.rand(110, 1, 8, 8, generator=g) * 0.4 + y[:, None, None, None] * 0.3).clamp(0, 1)
    cfg = TrainConfig(
        epochs=3,
        batch_size=40,
        lr=0.05,
        augment="crop",
        method="pgd-at",
        method_params={"eps": 0.1, "steps": 2},
        monitor_n=16,
    )
    return model, x, y, cfg


def main() -> None:
    run, out = sys.argv[1], sys.argv[2]
    stop_after = int(sys.argv[3]) if len(sys.argv) > 3 else None
    world = ddp.setup("cpu")
    model, x, y, cfg = build()

    def hook(epoch: int, step: int, steps: int, loss: float) -> None:
        if stop_after is not None and epoch == stop_after and step == 0:
            raise KeyboardInterrupt

    try:
        train_model(model, x, y, cfg, run, monitor_data=(x[:16], y[:16]), progress=hook)
    except KeyboardInterrupt:
        ddp.teardown()
        sys.exit(3)
    if world.main:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
    ddp.teardown()


if __name__ == "__main__":
    main()
