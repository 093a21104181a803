"""Throughput of robustlab's batched corruptions vs ``imagecorruptions`` one image at a time.

All 19 corruptions at one severity (default 3) on the same 1,000 CIFAR-10 test images (seeded subset):

- robustlab: one ``corrupt`` call on the whole batch, with the CIFAR-10-C constants (what robustlab uses for
  32×32 images) and with the ImageNet-C constants (``constants="imagenet"``, the constants ``imagecorruptions``
  uses, so that both sides do the same work);
- reference: ``imagecorruptions.corrupt`` image by image in its own environment (see
  ``_imagecorruptions_ref.py``; three of its corruptions need the documented patch to run at all).

Times are CPU seconds (``time.process_time``) with one torch thread, as the reference is single-threaded and
this machine is shared; wall times are recorded too. Warm-up calls (frost textures, caches) are excluded.

    nice -n 19 .venv/bin/python benchmarks/corruptions.py --ref-python /work/corr-venv/bin/python --write-docs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import describe_machine, machine, write_section  # benchmarks/, first on sys.path when a script runs

import robustlab
from robustlab.data.corruptions import corrupt, list_corruptions

HERE = Path(__file__).resolve().parent
SECTION = "## Corruptions"


def time_ours(x: torch.Tensor, severity: int, constants: str) -> dict[str, dict[str, float]]:
    out = {}
    for name in list_corruptions():
        corrupt(x[:8], name, severity, constants=constants)  # warm-up (frost textures, caches)
        g = torch.Generator().manual_seed(0)
        w0, c0 = time.perf_counter(), time.process_time()
        corrupt(x, name, severity, generator=g, constants=constants)  # type: ignore[arg-type]
        out[name] = {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0, "n": len(x)}
    return out


def markdown(res: dict) -> str:
    ref, cif, imn = res["reference"], res["ours_cifar"], res["ours_imagenet"]
    rv = res["reference_env"]["versions"]
    m = res["machine"]
    lines = [
        SECTION,
        "",
        f"`benchmarks/corruptions.py`: all 19 corruptions at severity {res['severity']} on the same {res['n']} "
        "CIFAR-10 test images (seeded subset). robustlab corrupts the whole batch in one call per corruption "
        "(torch, CPU, 1 thread); `imagecorruptions` corrupts one image at a time (its only mode). Times are CPU "
        "seconds (`process_time`) because the machine was shared with training jobs (load average at the end "
        "below); warm-up calls excluded.",
        "",
        f"{describe_machine(m)} "
        f"Reference: imagecorruptions {rv['imagecorruptions']} with numpy {rv['numpy']}, scipy {rv['scipy']}, "
        f"scikit-image {rv['scikit-image']}, OpenCV {rv['opencv-python-headless']}, Pillow {rv['pillow']}, "
        f"measured on {res['ref_n']} images.",
        "",
        "| corruption | imagecorruptions ms/img | robustlab (ImageNet-C consts) ms/img | speed-up | "
        "robustlab (CIFAR-10-C consts) ms/img |",
        "|---|---:|---:|---:|---:|",
    ]
    tot_ref = tot_imn = tot_cif = 0.0
    for name in list_corruptions():
        r = 1e3 * ref[name]["cpu_s"] / ref[name]["n"]
        i = 1e3 * imn[name]["cpu_s"] / imn[name]["n"]
        c = 1e3 * cif[name]["cpu_s"] / cif[name]["n"]
        tot_ref, tot_imn, tot_cif = tot_ref + r, tot_imn + i, tot_cif + c
        flag = " ¹" if name in res["reference_env"]["fail_unpatched"] else ""
        speed = f"{r / i:.1f}×" if r / i < 10 else f"{r / i:.0f}×"
        lines.append(f"| {name}{flag} | {r:.3f} | {i:.3f} | {speed} | {c:.3f} |")
    lines.append(
        f"| **all 19** | **{tot_ref:.2f}** | **{tot_imn:.3f}** | **{tot_ref / tot_imn:.0f}×** | **{tot_cif:.3f}** |"
    )
    fails = res["reference_env"]["fail_unpatched"]
    lines += [
        "",
        f"¹ fails in imagecorruptions {rv['imagecorruptions']} as released ("
        + "; ".join(f"`{k}`: {v}" for k, v in fails.items())
        + "); timed after the patch in `benchmarks/_imagecorruptions_ref.py` (`np.float_` alias, "
        "`multichannel` → `channel_axis`), which changes no formula.",
        "",
        f"Total for {res['n']} images: imagecorruptions {tot_ref * res['n'] / 1e3:.1f} CPU s, robustlab "
        f"{tot_imn * res['n'] / 1e3:.2f} CPU s with the same (ImageNet-C) constants and "
        f"{tot_cif * res['n'] / 1e3:.2f} CPU s with the CIFAR-10-C constants it uses for 32×32 images. "
        f"Wall time of robustlab's CIFAR-10-C run: {sum(v['wall_s'] for v in cif.values()):.2f} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--severity", type=int, default=3)
    p.add_argument("--ref-python", default="/work/corr-venv/bin/python")
    p.add_argument("--ref-n", type=int, default=None, help="reference images (default: all n)")
    p.add_argument("--data", default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = robustlab.load_dataset("cifar10", "test", args.data).subset(args.n, 0)
    x = ds.images()
    res: dict = {"n": len(x), "severity": args.severity, "ref_n": args.ref_n or len(x), "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        imgs = Path(tmp) / "imgs.npy"
        np.save(imgs, ds.x.permute(0, 2, 3, 1).contiguous().numpy())
        ref_helper = str(HERE / "_imagecorruptions_ref.py")
        subprocess.run([args.ref_python, ref_helper, "probe", f"{tmp}/probe.json"], check=True)
        res["reference_env"] = json.loads(Path(f"{tmp}/probe.json").read_text())
        res["ours_cifar"] = time_ours(x, args.severity, "cifar")
        res["ours_imagenet"] = time_ours(x, args.severity, "imagenet")
        cmd = [
            args.ref_python,
            ref_helper,
            "time",
            str(imgs),
            str(args.severity),
            f"{tmp}/time.json",
            str(res["ref_n"]),
        ]
        subprocess.run(cmd, check=True)
        res["reference"] = json.loads(Path(f"{tmp}/time.json").read_text())
    res["machine"]["load_average"] = machine()["load_average"]
    text = markdown(res)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if args.write_docs:
        write_section(HERE.parent / "docs" / "benchmarks.md", SECTION, text)
        print("wrote the Corruptions section of docs/benchmarks.md", file=sys.stderr)


if __name__ == "__main__":
    main()
