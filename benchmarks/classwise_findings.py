"""Class-wise robustness of CIFAR-10 models under common corruptions and PGD (docs/findings.md).

For each model: clean predictions, predictions under the 15 benchmark corruptions × severities, and under
untargeted L∞ PGD; then class-wise metrics (per-class accuracy, CFPS, FP/TP) pooled over all corruption ×
severity conditions, and the correlation between CFPS and per-class vulnerability across models.

Run (under nice, it is long):
    nice -n 19 .venv/bin/python benchmarks/classwise_findings.py --n 1000 --out /tmp/findings \
        --models resnet20-akamaster,resnet32-akamaster,resnet44-akamaster,resnet56-akamaster

Each model's raw per-sample predictions are written to ``OUT/<model>.json`` as soon as it finishes; the summary
(``OUT/summary.json`` and a Markdown table on stdout) is recomputed from whatever is there with ``--summarise``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

import robustlab
from robustlab.analysis.classwise import cfps_vulnerability_correlation
from robustlab.data.corruptions import BENCHMARK_CORRUPTIONS
from robustlab.metrics import classwise_metrics, corruption_accuracy

log = logging.getLogger("classwise_findings")


def run_model(name: str, args: argparse.Namespace, out: Path) -> None:
    ds = robustlab.load_dataset("cifar10", "test", args.data).subset(args.n, args.seed)
    model = robustlab.load_model(name, data_dir=args.data)
    t0 = time.perf_counter()
    record: dict = {"model": name, "n": len(ds), "seed": args.seed, "classes": list(ds.classes)}
    try:
        from robustlab.attacks import attack

        res = attack(model, ds.images(), ds.y, "pgd", norm="linf", eps=args.eps, steps=args.steps, seed=args.seed)
        record["pgd"] = {
            "eps": args.eps,
            "steps": args.steps,
            "clean_pred": res.clean_pred.tolist(),
            "adv_pred": res.adv_pred.tolist(),
        }
        log.info("%s: PGD done in %.0f s", name, time.perf_counter() - t0)
    except ImportError:  # the attacks package is not there
        log.warning("robustlab.attacks.attack is not available: skipping PGD")
    corr = corruption_accuracy(model, ds, list(BENCHMARK_CORRUPTIONS), args.severities, seed=args.seed)
    record["corruptions"] = corr.to_dict(per_sample=True)
    record["seconds"] = time.perf_counter() - t0
    (out / f"{name}.json").write_text(json.dumps(record))
    log.info("%s: done in %.0f s", name, record["seconds"])


def summarise(out: Path) -> dict:
    summary: dict = {"models": {}, "corruption": {}, "pgd": {}}
    per_corr, per_pgd = {}, {}
    for path in sorted(out.glob("*.json")):
        if path.name == "summary.json":
            continue
        rec = json.loads(path.read_text())
        classes = rec["classes"]
        c = rec["corruptions"]
        y = np.asarray(c["labels"])
        clean = np.asarray(c["clean_predictions"])
        ys, cleans, perts = [], [], []
        for name in c["predictions"]:
            for preds in c["predictions"][name].values():
                ys.append(y)
                cleans.append(clean)
                perts.append(np.asarray(preds))
        per_corr[rec["model"]] = classwise_metrics(
            np.concatenate(ys), np.concatenate(cleans), np.concatenate(perts), classes=classes
        )
        if "pgd" in rec:
            per_pgd[rec["model"]] = classwise_metrics(
                y, rec["pgd"]["clean_pred"], rec["pgd"]["adv_pred"], classes=classes
            )
        summary["models"][rec["model"]] = {
            "clean_accuracy": c["clean_accuracy"],
            "corruption_accuracy": per_corr[rec["model"]].robust_accuracy_overall,
            "pgd_accuracy": per_pgd[rec["model"]].robust_accuracy_overall if rec["model"] in per_pgd else None,
        }
    for key, results in (("corruption", per_corr), ("pgd", per_pgd)):
        if not results:
            continue
        summary[key]["per_model"] = {m: r.to_dict() for m, r in results.items()}
        for cfps in ("cfps", "clean_cfps"):
            for vul in ("robust_error", "accuracy_drop"):
                corr = cfps_vulnerability_correlation(results, cfps=cfps, vulnerability=vul)
                summary[key][f"{cfps}~{vul}"] = {k: v for k, v in corr.to_dict().items() if k not in ("points",)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def markdown(summary: dict) -> str:
    """Tables for docs/findings.md: per model, per class (mean over models), correlations."""
    lines = ["| model | clean acc | corruption acc | PGD acc |", "|---|---:|---:|---:|"]
    for m, v in summary["models"].items():
        pgd = "-" if v["pgd_accuracy"] is None else f"{v['pgd_accuracy']:.3f}"
        lines.append(f"| {m} | {v['clean_accuracy']:.3f} | {v['corruption_accuracy']:.3f} | {pgd} |")
    for key, title in (("corruption", "corruptions (pooled)"), ("pgd", "PGD")):
        per = summary[key].get("per_model")
        if not per:
            continue
        classes = next(iter(per.values()))["classes"]
        models = list(per)

        def mean(field: str, c: int, per: dict = per, models: list = models) -> float:
            vals = [per[m][field][c] for m in models if per[m][field][c] is not None]
            return sum(vals) / len(vals) if vals else float("nan")

        rows = [
            (name, mean("clean_accuracy", c), mean("robust_accuracy", c), mean("cfps", c), mean("fp_tp_ratio", c))
            for c, name in enumerate(classes)
        ]
        lines += [
            "",
            f"Per class under {title}, mean over {len(models)} models (sorted by robust accuracy):",
            "",
            "| class | clean acc | robust acc | CFPS | FP/TP |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, ca, ra, cf, ft in sorted(rows, key=lambda r: r[2]):
            lines.append(f"| {name} | {ca:.3f} | {ra:.3f} | {cf:.4f} | {ft:.3f} |")
        lines += ["", "| CFPS of | vulnerability | Pearson (p) | Spearman (p) | points |", "|---|---|---:|---:|---:|"]
        for combo, v in summary[key].items():
            if "~" not in combo:
                continue
            cf, vul = combo.split("~")
            lines.append(
                f"| {cf} | {vul} | {v['pearson']:.2f} ({v['pearson_p']:.3g}) | "
                f"{v['spearman']:.2f} ({v['spearman_p']:.3g}) | {v['n_points']} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet20-akamaster,resnet56-akamaster,resnet32-akamaster,resnet44-akamaster")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--severities", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3, 4, 5])
    p.add_argument("--eps", type=float, default=1 / 255)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--data", default=None)
    p.add_argument("--out", type=Path, default=Path("findings-out"))
    p.add_argument("--summarise", action="store_true", help="only recompute the summary")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarise:
        for name in args.models.split(","):
            if (args.out / f"{name}.json").exists():
                continue
            run_model(name, args, args.out)
    s = summarise(args.out)
    print(markdown(s))


if __name__ == "__main__":
    main()
