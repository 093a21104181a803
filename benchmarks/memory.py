"""Peak memory of ``robustlab attack`` on MNIST: does it grow with the number of images?

    ROBUSTLAB_DATA=../shared/data nice python benchmarks/memory.py [--steps 3] [--write-docs]

Runs ``robustlab attack --n 1000`` and ``--n 10000`` (PGD L∞ ε 0.3, a few steps, ``--json``) on advertorch's
PGD-trained MNIST LeNet5 (``benchmarks/_lenet5.py``), each in its own process under ``/usr/bin/time -v`` (Debian's
``time``: ``apt-get install time``), and records each peak resident set size and their ratio. The target (issue
12): peak(10000) ≤ 1.5 × peak(1000). Each size is also run with ``--batch-size`` given (``--batch-sizes``), to
separate what the number of images costs from what attacking them all at once costs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import describe_machine, machine, write_section  # benchmarks/, first on sys.path when a script runs

HERE = Path(__file__).resolve().parent
SECTION = "## Memory: attack --n 10000 against --n 1000"
TARGET = 1.5


def peak_rss(n: int, steps: int, batch_size: int | None) -> dict[str, Any]:
    """One ``robustlab attack`` in a fresh process under ``/usr/bin/time -v``: its peak RSS, wall time, result."""
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "robustlab",
        "attack",
        "-m",
        f"{HERE / '_lenet5.py'}:lenet5",
        "-d",
        "mnist",
        "--n",
        str(n),
        "-a",
        "pgd",
        "--norm",
        "linf",
        "--eps",
        "0.3",
        "--steps",
        str(steps),
        "--json",
    ]
    if batch_size is not None:
        cmd += ["--batch-size", str(batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    kb = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr)
    if kb is None or wall is None:
        raise SystemExit(f"no peak RSS in /usr/bin/time's output:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall.group(1).split(":"))))
    return {
        "n": n,
        "batch_size": batch_size,
        "peak_rss_mib": int(kb.group(1)) / 1024,
        "wall_s": seconds,
        "robust_accuracy": result["robust_accuracy"],
        "clean_accuracy": result["clean_accuracy"],
    }


def markdown(res: dict[str, Any]) -> str:
    lines = [
        SECTION,
        "",
        f"`python benchmarks/memory.py --steps {res['steps']}`: `robustlab attack -m benchmarks/_lenet5.py:lenet5 "
        f"-d mnist --n N -a pgd --norm linf --eps 0.3 --steps {res['steps']} --json` (advertorch's PGD-trained "
        "LeNet5), each run in a fresh process under `/usr/bin/time -v`; peak = its maximum resident set size "
        f"(the Python process, torch included). Target: peak(10000) ≤ {TARGET} × peak(1000).",
        "",
        describe_machine(res["machine"]),
        "",
        "| --batch-size | peak, n = 1000 (MiB) | peak, n = 10000 (MiB) | ratio | target met | wall 1000 / 10000 (s) |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for row in res["rows"]:
        small, big = row["runs"]
        ratio = big["peak_rss_mib"] / small["peak_rss_mib"]
        lines.append(
            f"| {row['batch_size'] or 'default'} | {small['peak_rss_mib']:.0f} | {big['peak_rss_mib']:.0f} | "
            f"{ratio:.2f}× | {'yes' if ratio <= TARGET else 'no'} | {small['wall_s']:.0f} / {big['wall_s']:.0f} |"
        )
    for note in res.get("notes", []):
        lines += ["", note]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="PGD steps (the memory does not depend on them)")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--batch-sizes", default="default,256", help="'default' = no --batch-size option")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "memory.json")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--note", action="append", default=[], help="a paragraph for the docs section (repeatable)")
    ap.add_argument("--from-json", type=Path, default=None, help="render a saved result instead of measuring")
    args = ap.parse_args()
    if args.from_json is not None:
        res = json.loads(args.from_json.read_text())
        res["notes"] = args.note or res.get("notes", [])
        _emit(res, args)
        return
    if not Path("/usr/bin/time").exists():
        raise SystemExit("/usr/bin/time is missing: apt-get install time")
    sizes = [int(s) for s in args.sizes.split(",")]
    res: dict[str, Any] = {"steps": args.steps, "sizes": sizes, "rows": [], "notes": args.note}
    for b in args.batch_sizes.split(","):
        batch = None if b == "default" else int(b)
        runs = []
        for n in sizes:
            run = peak_rss(n, args.steps, batch)
            print(json.dumps(run), file=sys.stderr)
            runs.append(run)
        res["rows"].append({"batch_size": batch, "runs": runs})
    res["machine"] = machine()
    _emit(res, args)


def _emit(res: dict[str, Any], args: argparse.Namespace) -> None:
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    text = markdown(res)
    print(text)
    if args.write_docs:
        write_section(HERE.parent / "docs" / "benchmarks.md", SECTION, text)
        print("wrote the Memory section of docs/benchmarks.md", file=sys.stderr)


if __name__ == "__main__":
    main()
