"""Reference-side tasks every comparison can use (runs in the reference environment)."""

from __future__ import annotations

from typing import Any

import torch
from _models import build
from torch import Tensor


def logits(job: dict[str, Any]) -> dict[str, Tensor]:
    """``job = {"model": spec, "x": images}`` → ``{"logits": model(x)}`` (one batch, no grad)."""
    with torch.no_grad():
        return {"logits": build(job["model"])(job["x"])}
