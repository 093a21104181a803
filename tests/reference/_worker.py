"""Run one reference task in the reference environment (never imported by the test process).

    <ref python> tests/reference/_worker.py JOB.pt RESULT.pt

``JOB.pt`` is a dict saved with :func:`torch.save` holding tensors, numbers, strings, lists and dicts only (it is
loaded with ``weights_only=True``); ``job["task"] = "module:function"`` names a function in a module of this folder
(e.g. ``"_ref_apgd:apgd"``) that takes the job and returns a dict of tensors, saved to ``RESULT.pt``.
``job["threads"]`` (default 1) sets torch's thread count first, the same as the test process's, so that both
sides pick the same kernels and the comparison can be bitwise.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} JOB.pt RESULT.pt", file=sys.stderr)
        return 2
    job = torch.load(argv[1], map_location="cpu", weights_only=True)
    torch.set_num_threads(int(job.get("threads", 1)))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    module, _, function = str(job["task"]).partition(":")
    result = getattr(importlib.import_module(module), function)(job)
    torch.save(result, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
