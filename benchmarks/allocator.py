"""Forward passes with glibc's default allocator settings against robustlab's (freed memory retained).

    python benchmarks/allocator.py [--model densenet-bc16-k16] [--write docs/benchmarks.md]

Each setting runs in its own fresh process (the allocator setting is process-wide and cannot be undone): load a
zoo model, then time eval-mode forward passes over 256 CIFAR-10 test images in batches of 128, best of 5. The
ratio of the two, measured in one run of this script, is the speed-up of `src/robustlab/_allocator.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, time, torch
from robustlab._allocator import retain_freed_memory
retained = retain_freed_memory()
from robustlab import load_dataset, load_model
from robustlab.models import eval_mode
torch.set_num_threads(int(sys.argv[2]))
net = load_model(sys.argv[1], download=False)
x = load_dataset("cifar10", "test").subset(256, 0).images()
best = float("inf")
with torch.no_grad(), eval_mode(net):
    for _ in range(5):
        t0 = time.process_time()
        for i in range(0, 256, 128):
            net(x[i : i + 128])
        best = min(best, time.process_time() - t0)
print(json.dumps({"retained": retained, "cpu_s": best, "torch": torch.__version__}))
"""


def measure(model: str, threads: int, system: bool) -> dict[str, object]:
    env = {**os.environ, "ROBUSTLAB_MALLOC": "system" if system else ""}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, model, str(threads)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["densenet-bc16-k16", "resnet20", "alexnet-w50"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", default=None, help="Markdown file to write the results section into.")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import cpu_name, write_section

    rows = []
    for model in args.models:
        default, ours = measure(model, args.threads, True), measure(model, args.threads, False)
        assert not default["retained"] and ours["retained"]
        rows.append((model, default["cpu_s"], ours["cpu_s"]))
        print(json.dumps({"model": model, "default_cpu_s": default["cpu_s"], "retained_cpu_s": ours["cpu_s"]}))
    lines = [
        "## Allocator setting",
        "",
        f"`python benchmarks/allocator.py --threads {args.threads}`: eval-mode forward passes over 256 CIFAR-10 test "
        "images (batches of 128), best of 5, CPU seconds, each setting in a fresh process. Machine: "
        f"{cpu_name()}, {os.cpu_count()} cores, {args.threads} torch thread(s), torch {ours['torch']}, Python "
        f"{platform.python_version()}.",
        "",
        "| model | glibc defaults (CPU s) | freed memory retained (CPU s) | speed-up |",
        "|---|---:|---:|---:|",
        *(f"| {m} | {d:.3f} | {o:.3f} | {d / o:.2f}× |" for m, d, o in rows),
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.write:
        write_section(Path(args.write), "## Allocator setting", section)


if __name__ == "__main__":
    main()
