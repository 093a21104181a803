"""AugMax's training inputs, batched in torch against the reference's PIL loop one image at a time.

What the reference (VITA-Group/AugMax, ``augmax_modules/augmax.py``) builds per training sample, in
``AugMaxDataset.__getitem__``: two tuples (``img_tuple_num = 2``), each the original ``preprocess(x)`` and
``mixture_width = 3`` AugMix chains ``aug(x, preprocess, mixture_depth=-1, aug_severity=3)``; ``preprocess`` is
``ToTensor``. So 8 images per sample, which PyTorch's default collate turns into two tuples of four batches. Both
sides produce those eight ``(N, 3, 32, 32)`` batches for ``--n`` CIFAR-10 training images (default 256, one
training batch):

- ``robustlab``: the originals are the float batch ``x`` itself and the six chains come from one
  ``sample_chains(x, g, width=6)`` call (ops grouped across the batch, uint8 levels inside);
- ``pil loop``: this file's own re-implementation of the reference's ``aug`` with PIL and ``np.random`` (AugMix's
  ``augmentations.py`` semantics: nine ops, levels ``uniform(0.1, 3)``, random signs), one image at a time,
  ``ToTensor`` as torchvision does it, then the default collate (``torch.stack`` per slot).

Not timed on either side: reading the images (the reference's dataset hands out PIL images, ours a float batch),
and the random flip and crop that the reference applies before AugMax (the same cost for both). Both run in this
process with the same torch thread count (``--threads``, default 1; the PIL loop is single-threaded). Wall and CPU
seconds, best of ``--repeats`` (the two sides interleaved), in a process that retains freed memory as robustlab's
own processes do (``robustlab._allocator``). Target: robustlab ≥ 10× faster (wall). A distribution check rides
along: the mean absolute change ``|chain − x|`` and the fraction of changed pixels, over all chains, for both sides
(same distribution of ops and levels, different random draws, so they agree to sampling noise, not exactly).

    ROBUSTLAB_DATA=../shared/data .venv/bin/python benchmarks/augmax_speed.py          # n 256, best of 5
    .venv/bin/python benchmarks/augmax_speed.py --quick                                # n 64, best of 2, no file

Results: ``benchmarks/results/augmax_speed.json``, and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

from robustlab._allocator import retain_freed_memory
from robustlab.data import load_dataset
from robustlab.transforms import sample_chains

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "augmax_speed.json"
TARGET_SPEEDUP = 10.0
WIDTH, TUPLES, SEVERITY = 3, 2, 3


# ---- the reference's per-image pipeline, re-implemented with PIL -------------------------------------------------


def _level(severity: float) -> float:
    """AugMix's ``sample_level``: uniform in [0.1, severity)."""
    return float(np.random.uniform(0.1, severity))


def _signed(value: float) -> float:
    return -value if np.random.uniform() > 0.5 else value


def _affine(img: Image.Image, data: tuple[float, ...]) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)


def _pil_ops(size: int) -> list[Callable[[Image.Image, float], Image.Image]]:
    """AugMix's nine ``augmentations`` (the list AugMax uses), each ``op(image, severity)`` drawing its own level."""
    shift_max = size / 3

    def autocontrast(img: Image.Image, _: float) -> Image.Image:
        return ImageOps.autocontrast(img)

    def equalize(img: Image.Image, _: float) -> Image.Image:
        return ImageOps.equalize(img)

    def posterize(img: Image.Image, s: float) -> Image.Image:
        return ImageOps.posterize(img, 4 - int(_level(s) * 4 / 10))

    def rotate(img: Image.Image, s: float) -> Image.Image:
        return img.rotate(_signed(int(_level(s) * 30 / 10)), resample=Image.Resampling.BILINEAR)

    def solarize(img: Image.Image, s: float) -> Image.Image:
        return ImageOps.solarize(img, 256 - int(_level(s) * 256 / 10))

    def shear_x(img: Image.Image, s: float) -> Image.Image:
        return _affine(img, (1, _signed(_level(s) * 0.3 / 10), 0, 0, 1, 0))

    def shear_y(img: Image.Image, s: float) -> Image.Image:
        return _affine(img, (1, 0, 0, _signed(_level(s) * 0.3 / 10), 1, 0))

    def translate_x(img: Image.Image, s: float) -> Image.Image:
        return _affine(img, (1, 0, _signed(int(_level(s) * shift_max / 10)), 0, 1, 0))

    def translate_y(img: Image.Image, s: float) -> Image.Image:
        return _affine(img, (1, 0, 0, 0, 1, _signed(int(_level(s) * shift_max / 10))))

    return [autocontrast, equalize, posterize, rotate, solarize, shear_x, shear_y, translate_x, translate_y]


def to_tensor(img: Image.Image) -> Tensor:
    """torchvision's ``ToTensor`` on a uint8 PIL image: ``(C, H, W)`` floats ``k / 255``."""
    a = np.array(img, np.uint8, copy=True)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(a).permute(2, 0, 1).contiguous().float().div(255)


def pil_inputs(images: list[Image.Image]) -> list[list[Tensor]]:
    """The reference's ``AugMaxDataset.__getitem__`` for every image, then PyTorch's default collate: two tuples of
    four ``(N, C, H, W)`` batches (original, chain 1, chain 2, chain 3)."""
    ops = _pil_ops(images[0].size[0])
    samples = []
    for img in images:
        tuples = []
        for _ in range(TUPLES):
            row = [to_tensor(img)]
            for _ in range(WIDTH):
                aug = img.copy()
                for _ in range(np.random.randint(1, 4)):
                    aug = ops[np.random.randint(len(ops))](aug, SEVERITY)
                row.append(to_tensor(aug))
            tuples.append(row)
        samples.append(tuples)
    return [[torch.stack([s[t][j] for s in samples]) for j in range(WIDTH + 1)] for t in range(TUPLES)]


def robustlab_inputs(x: Tensor, generator: torch.Generator) -> list[list[Tensor]]:
    """The same eight batches from one float batch: the originals are ``x`` itself, the six chains come from one
    :func:`sample_chains` call (``width`` 6, split into the two tuples)."""
    chains = sample_chains(x, generator, width=WIDTH * TUPLES, severity=SEVERITY)
    return [[x, *chains[t * WIDTH : (t + 1) * WIDTH].unbind(0)] for t in range(TUPLES)]


# ---- timing and report --------------------------------------------------------------------------------------------


def timed(fn: Callable[[], list[list[Tensor]]], record: dict[str, list[float]]) -> list[list[Tensor]]:
    """Run ``fn`` once, appending its wall and CPU seconds to ``record``."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    record["wall_seconds_all"].append(time.perf_counter() - w0)
    record["cpu_seconds_all"].append(time.process_time() - c0)
    return out


def summary(record: dict[str, list[float]]) -> dict[str, Any]:
    """Best wall and best CPU seconds of the repetitions, and all of them."""
    return {"wall_seconds": min(record["wall_seconds_all"]), "cpu_seconds": min(record["cpu_seconds_all"]), **record}


def stacked(out: list[list[Tensor]]) -> Tensor:
    """The eight batches as one ``(2, 4, N, C, H, W)`` tensor (for the checks; not timed)."""
    return torch.stack([torch.stack(t) for t in out])


def change_stats(inputs: Tensor) -> dict[str, float]:
    """Mean |chain − original| and the fraction of changed values, over every chain of ``(2, 4, N, C, H, W)``."""
    diff = (inputs[:, 1:] - inputs[:, :1]).abs()
    return {"mean_abs_change": float(diff.mean()), "changed_fraction": float((diff > 0.5 / 255).float().mean())}


def table(result: dict[str, Any]) -> str:
    b, p = result["robustlab"], result["pil_loop"]
    n = result["settings"]["n"]
    lines = [
        f"AugMax training inputs for {n} CIFAR-10 images (8 per image: 2 × (original + 3 chains)), "
        f"{result['settings']['threads']} torch thread(s), best of {result['settings']['repeats']}.",
        "",
        "| implementation | wall s | CPU s | ms / image | mean abs change | changed fraction |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("robustlab `sample_chains` (batched)", b), ("reference PIL loop (one image at a time)", p)):
        lines.append(
            f"| {name} | {r['wall_seconds']:.3f} | {r['cpu_seconds']:.3f} | {1000 * r['wall_seconds'] / n:.2f} | "
            f"{r['check']['mean_abs_change']:.4f} | {r['check']['changed_fraction']:.3f} |"
        )
    lines += [
        "",
        f"Speed-up (wall): **{result['speedup_wall']:.1f}×** (CPU {result['speedup_cpu']:.1f}×); target "
        f"≥ {TARGET_SPEEDUP:.0f}×: {'met' if result['target_met'] else 'NOT met'}.",
    ]
    m = result["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v is not None)
    lines.append(
        f"Machine: {m['cpu']}, {m['cores']} cores, load average {' '.join(map(str, m['load_average']))}; "
        f"Python {m['python']}, {libs}; commit {m['commit']}."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256, help="Images (one training batch).")
    p.add_argument("--repeats", type=int, default=5, help="Timed repetitions of each side (best reported).")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the PIL loop is single-threaded).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="n 64, best of 2; prints instead of writing the file.")
    p.add_argument("--data-dir", default=os.environ.get("ROBUSTLAB_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--json", type=Path, default=None, help=f"Results file (default {RESULTS}; --quick: none).")
    args = p.parse_args()
    if args.quick:
        args.n, args.repeats = 64, 2
    out_json = args.json or (None if args.quick else RESULTS)
    retained = retain_freed_memory()  # as robustlab's own processes (CLI, workers) do
    torch.set_num_threads(args.threads)
    np.random.seed(args.seed)

    data = load_dataset("cifar10", "train", args.data_dir, download=False).subset(args.n, args.seed)
    x = data.images()
    images = [Image.fromarray(a.permute(1, 2, 0).numpy()) for a in data.x]  # what the reference's dataset hands out
    generator = torch.Generator().manual_seed(args.seed)

    robustlab_inputs(x[:8], generator)  # warm-up (allocator, first-call dispatch)
    pil_inputs(images[:8])
    records: dict[str, dict[str, list[float]]] = {
        side: {"wall_seconds_all": [], "cpu_seconds_all": []} for side in ("robustlab", "pil_loop")
    }
    load_start = [round(v, 2) for v in os.getloadavg()]
    for _ in range(args.repeats):  # interleaved, so that the shared machine's load drifts over both alike
        ours_last = timed(lambda: robustlab_inputs(x, generator), records["robustlab"])
        ref_last = timed(lambda: pil_inputs(images), records["pil_loop"])
    ours, ref = summary(records["robustlab"]), summary(records["pil_loop"])
    ours_out, ref_out = stacked(ours_last), stacked(ref_last)
    assert ours_out.shape == ref_out.shape == (TUPLES, WIDTH + 1, *x.shape)
    assert torch.equal(ref_out[:, 0], x.expand_as(ref_out[:, 0]))  # same originals on both sides
    ours["check"], ref["check"] = change_stats(ours_out), change_stats(ref_out)

    result: dict[str, Any] = {
        "settings": {
            "n": args.n,
            "repeats": args.repeats,
            "threads": args.threads,
            "seed": args.seed,
            "width": WIDTH,
            "tuples": TUPLES,
            "severity": SEVERITY,
            "depth": "uniform 1..3",
            "dataset": f"cifar10 train, subset({args.n}, {args.seed})",
            "freed_memory_retained": retained,
            "quick": args.quick,
            "command": "python benchmarks/augmax_speed.py " + " ".join(sys.argv[1:]),
        },
        "robustlab": ours,
        "pil_loop": ref,
        "speedup_wall": ref["wall_seconds"] / ours["wall_seconds"],
        "speedup_cpu": ref["cpu_seconds"] / ours["cpu_seconds"],
        "target_speedup": TARGET_SPEEDUP,
        "load_average_start": load_start,
        "machine": machine("PIL"),
    }
    result["target_met"] = result["speedup_wall"] >= TARGET_SPEEDUP
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
