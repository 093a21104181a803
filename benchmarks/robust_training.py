"""Robust training across distributions (issue 15): each method's claim checked at CPU scale, every number with
the route that produced it.

Every arm trains the same architecture from the same seed on the 10,000 CIFAR-10 training images for the same
epochs, schedule and batch (``--arch``, default ResNet-8 of width 8; ``--epochs``, default 8), through
:func:`robustlab.train.standalone.train_architecture`, i.e. the path ``robustlab train`` takes: the method
declares the model layout it needs (multi-branch batch norm, DuBIN, normalizer-free, a selector or a domain head)
and its inference route, which the saved spec records. Adversarial arms use L∞ 8/255 with ``--steps`` (default 3)
inner steps, the same for all of them, so they differ in their loss, not in their attack budget.

Then every trained model is evaluated on the first ``--n`` test images (``evaluate``): clean accuracy on every
route, the 19 corruptions at severities 1–5 (mean accuracy, and the mCE relative to the ``standard`` arm), PGD-20
at 8/255 (and 2/255), standard AutoAttack L∞ 8/255 on the first ``--n-aa`` images for the adversarial arms, the
worst of 10 random affine transforms (AugMax's spatial check), and, for ``multibn``, the selector's confusion
matrix under attack and the per-type robust accuracy through soft and hard (BPDA) routing.

Run (long; under nice; resumable: finished trainings and evaluations are kept in OUT):
    ROBUSTLAB_DATA=../shared/data nice -n 10 .venv/bin/python benchmarks/robust_training.py train --out /work/runs/rt
    ROBUSTLAB_DATA=../shared/data nice -n 10 .venv/bin/python benchmarks/robust_training.py evaluate --out /work/runs/rt
    .venv/bin/python benchmarks/robust_training.py report --out /work/runs/rt --write docs/findings.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

log = logging.getLogger("robust_training")
ROOT = Path(__file__).resolve().parents[1]
EPS = 8 / 255

#: arm → (method, method params (without the shared budget), label smoothing). ``{eps}`` and ``{steps}`` are
#: filled from the command line for adversarial arms.
ARMS: dict[str, tuple[str, dict[str, Any], float | None]] = {
    "standard": ("standard", {}, 0.0),
    "advprop": ("advprop", {}, 0.0),
    "pyramid-at": ("pyramid-at", {"steps": 3}, 0.0),
    "augmax-random": ("augmax", {"steps": 0}, 0.0),
    "augmix": ("augmix", {}, 0.0),
    "augmax": ("augmax", {}, 0.0),
    "pgd-at": ("pgd-at", {"eps": "{eps}", "steps": "{steps}"}, 0.0),
    "iat": ("iat", {"eps": "{eps}", "steps": "{steps}"}, 0.0),
    "trades": ("trades", {"eps": "{eps}", "steps": "{steps}"}, 0.0),
    "dial": ("dial", {"eps": "{eps}", "steps": "{steps}"}, 0.0),
    "mixed-at": ("mixed-at", {"eps": "{eps}", "steps": "{steps}"}, 0.0),
    "mixed-at-ls": ("mixed-at", {"eps": "{eps}", "steps": "{steps}"}, 0.1),
    "nofrost": ("nofrost", {"eps": "{eps}", "steps": "{steps}"}, 0.0),
    "nofrost-ls": ("nofrost", {"eps": "{eps}", "steps": "{steps}"}, 0.1),
    "multibn": ("multibn", {"steps": "{steps}"}, 0.0),
}


def _fill(params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    values = {"{eps}": EPS, "{steps}": args.steps}
    return {k: values.get(v, v) if isinstance(v, str) else v for k, v in params.items()}


def run_dir(out: Path, arm: str, seed: int) -> Path:
    return out / f"{arm}-s{seed}"


def train_arm(arm: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from robustlab.train import TrainConfig
    from robustlab.train.standalone import train_architecture

    method, params, ls = ARMS[arm]
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=128,
        lr=0.1,
        method=method,
        method_params=_fill(params, args),
        label_smoothing=ls,
        monitor_n=0,
        seed=seed,
    )
    out = run_dir(args.out, arm, seed)
    done = out / "summary.json"
    if done.is_file():
        return dict(json.loads(done.read_text()))
    t0 = time.perf_counter()
    summary = train_architecture(
        "resnet_cifar",
        {"depth": args.depth, "width": args.width},
        "cifar10",
        cfg,
        out,
        data_dir=args.data,
        name=f"{arm}-s{seed}",
    )
    summary["wall_seconds"] = time.perf_counter() - t0
    done.write_text(json.dumps(summary, indent=1))
    log.info(
        "%s seed %d: test accuracy %.4f in %.0f s", arm, seed, summary.get("test_accuracy", -1), summary["wall_seconds"]
    )
    return summary


ADVERSARIAL = {"pgd-at", "iat", "trades", "dial", "mixed-at", "mixed-at-ls", "nofrost", "nofrost-ls", "multibn"}


def corrupted_cache(x: torch.Tensor, args: argparse.Namespace) -> dict[str, dict[int, torch.Tensor]]:
    """The 19 corruptions × 5 severities of the evaluation images, made once (uint8, as CIFAR-10-C ships them)."""
    from robustlab.data.corruptions import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS, corrupt

    path = args.out / f"corrupted-n{len(x)}.pt"
    if path.is_file():
        cached: dict[str, dict[int, torch.Tensor]] = torch.load(path, weights_only=True)
        return cached
    out: dict[str, dict[int, torch.Tensor]] = {}
    for i, name in enumerate((*BENCHMARK_CORRUPTIONS, *EXTRA_CORRUPTIONS)):
        out[name] = {}
        for s in range(1, 6):
            g = torch.Generator().manual_seed(1000 * i + s)
            out[name][s] = (corrupt(x, name, s, generator=g) * 255).round().to(torch.uint8)
        log.info("corrupted: %s", name)
    tmp = path.with_suffix(".tmp")
    torch.save(out, tmp)
    os.replace(tmp, path)
    return out


def worst_of_k_affine(model: Any, x: torch.Tensor, y: torch.Tensor, k: int = 10) -> float:
    """AugMax's spatial check: per image, the worst (highest-loss) of ``k`` random affine transforms (rotation
    uniform in ±30°, translation up to 3/32 of the side each way, zero fill; bilinear here, torchvision's
    ``RandomAffine`` default is nearest), counted correct only if that worst one is."""
    import torch.nn.functional as F

    from robustlab.models.adapter import predict_logits
    from robustlab.transforms import rotate, translate

    g = torch.Generator().manual_seed(0)
    worst_loss = torch.full((len(x),), -float("inf"))
    worst_right = torch.ones(len(x), dtype=torch.bool)
    for _ in range(k):
        angle = (torch.rand(len(x), generator=g) * 2 - 1) * 30
        shift = (torch.rand(len(x), 2, generator=g) * 2 - 1) * 3 * x.shape[-1] / 32
        xt = translate(rotate(x, angle), shift).clamp(0, 1)
        logits = predict_logits(model, xt)
        loss = F.cross_entropy(logits, y, reduction="none")
        take = loss > worst_loss
        worst_loss = torch.where(take, loss, worst_loss)
        worst_right = torch.where(take, logits.argmax(1) == y, worst_right)
    return float(worst_right.float().mean())


def evaluate_arm(arm: str, seed: int, args: argparse.Namespace) -> dict[str, Any] | None:
    from robustlab.attacks import attack
    from robustlab.data import load_dataset
    from robustlab.models import load_model
    from robustlab.models.adapter import predict_logits

    rd = run_dir(args.out, arm, seed)
    weights = rd / "model.safetensors"
    done = rd / f"eval-n{args.n}.json"
    if done.is_file():
        return dict(json.loads(done.read_text()))
    if not weights.is_file():
        return None
    t0 = time.perf_counter()
    test = load_dataset("cifar10", "test", args.data)
    x, y = test.images()[: args.n], torch.as_tensor(test.y[: args.n]).long()
    model = load_model(str(weights))
    rec: dict[str, Any] = {"arm": arm, "seed": seed, "route": model.route, "routes": list(model.routes), "n": len(x)}
    rec["train"] = json.loads((rd / "summary.json").read_text()) if (rd / "summary.json").is_file() else {}
    rec["train"].pop("epochs", None)
    routes = list(model.routes) + (["select", "select-hard"] if hasattr(model.net, "selector") else [])
    rec["clean_by_route"] = {
        r: float((predict_logits(model.with_route(r), x).argmax(1) == y).float().mean()) for r in routes
    } or {"(single)": float((predict_logits(model, x).argmax(1) == y).float().mean())}
    rec["clean"] = float((predict_logits(model, x).argmax(1) == y).float().mean())
    cache = corrupted_cache(x, args)
    acc = {c: {s: float((predict_logits(model, v.float() / 255).argmax(1) == y).float().mean()) for s, v in d.items()}
           for c, d in cache.items()}  # fmt: skip
    rec["corruption_accuracy"] = acc
    rec["corruption_mean"] = sum(sum(d.values()) for d in acc.values()) / sum(len(d) for d in acc.values())
    for eps in ("2/255", "8/255"):
        r = attack(model, x, y, "pgd", eps=eps, steps=20, seed=0).summary()
        rec[f"pgd20 {eps}"] = r["rates"]["robust_accuracy"]
    r = attack(model, x, y, "pgd", norm="l2", eps=0.5, steps=20, seed=0).summary()
    rec["pgd20 l2 0.5"] = r["rates"]["robust_accuracy"]
    m = min(args.n_aa, len(x))
    aa = attack(model, x[:m], y[:m], "autoattack", norm="linf", eps=EPS, seed=0).summary()
    rec["autoattack 8/255"] = aa["rates"]["robust_accuracy"]
    rec["autoattack_n"] = m
    rec["pgd20 8/255 on aa points"] = attack(model, x[:m], y[:m], "pgd", eps=EPS, steps=20, seed=0).summary()["rates"][
        "robust_accuracy"
    ]
    rec["worst_of_10_affine"] = worst_of_k_affine(model, x, y)
    if arm == "multibn":
        rec["selector"] = selector_report(model, x[:m], y[:m], args)
    rec["seconds"] = time.perf_counter() - t0
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1))
    os.replace(tmp, done)
    log.info("%s seed %d evaluated in %.0f s: clean %.3f, pgd %.3f, aa %.3f", arm, seed, rec["seconds"],
             rec["clean"], _value(rec["pgd20 8/255"]), _value(rec["autoattack 8/255"]))  # fmt: skip
    return rec


def selector_report(model: Any, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> dict[str, Any]:
    """The selector's confusion under adaptive attack and per-type robust accuracy, through soft routing, hard
    routing attacked with BPDA, and each single branch (PGD-20 at the training budgets; a held-out corruption)."""
    from robustlab.metrics.routing import routing_report
    from robustlab.train import get_method

    method = get_method("multibn", {"steps": args.steps})
    perturbations = method.perturbations(steps=20)  # type: ignore[attr-defined]
    routes = ("select", "select-hard", *model.routes)
    return routing_report(model, x, y, perturbations, routes=routes, seed=0).to_dict()


#: The findings: (title, the paper's claim, arms compared, metrics shown).
FINDINGS: list[tuple[str, str, list[str], list[str]]] = [
    (
        "AdvProp vs standard",
        "AdvProp (an auxiliary BN for PGD-1 examples, main BN at test) improves clean accuracy (+0.7 % ImageNet, "
        "EfficientNet-B7) and much more corruption robustness (+6.5 % ImageNet-C)",
        ["standard", "advprop"],
        ["clean", "clean_by_route", "corruption_mean", "mce", "pgd20 2/255"],
    ),
    (
        "AugMax-DuBIN vs AugMix-style",
        "AugMax-DuBIN beats the AugMix baseline on CIFAR-10-C (+3.03 %) and on worst-of-k spatial transforms",
        ["standard", "augmix", "augmax-random", "augmax"],
        ["clean", "clean_by_route", "corruption_mean", "mce", "worst_of_10_affine"],
    ),
    (
        "NoFrost vs BN adversarial training, with and without label smoothing",
        "Removing BN boosts clean accuracy at similar robustness (ImageNet 74.06 % / 22.45 % PGD vs BN-AT 59.28 % / "
        "13.57 %); its released model fell to 1.28 % under AutoAttack (issue #2): does the PGD→AA gap reappear?",
        ["mixed-at", "mixed-at-ls", "nofrost", "nofrost-ls"],
        ["clean", "pgd20 8/255 on aa points", "autoattack 8/255", "pgd_aa_gap"],
    ),
    (
        "Interpolated AT vs PGD-AT",
        "IAT raises clean accuracy by 6–8 points at a cost of about 1.5 points of PGD robustness (CIFAR-10 ResNet-18)",
        ["pgd-at", "iat"],
        ["clean", "pgd20 8/255", "autoattack 8/255"],
    ),
    (
        "DIAL vs TRADES",
        "DIAL-KL beats TRADES by about 0.7 points under AutoAttack (53.75 vs 53.08 %, WRN-34-10)",
        ["trades", "dial"],
        ["clean", "pgd20 8/255", "autoattack 8/255"],
    ),
    (
        "Pyramid AT vs standard",
        "Pyramid AT improves clean accuracy (+1.82 %, ViT-B/16 ImageNet) and corruption robustness (ImageNet-C mCE "
        "41.42); the claim is for ViTs",
        ["standard", "pyramid-at"],
        ["clean", "corruption_mean", "mce"],
    ),
    (
        "MultiBN vs single-BN adversarial training",
        "One BN per perturbation type with a learned selector gives robustness to every type at once",
        ["pgd-at", "multibn"],
        ["clean", "pgd20 8/255", "pgd20 l2 0.5", "corruption_mean", "autoattack 8/255"],
    ),
]


def _value(v: Any) -> Any:
    return v["value"] if isinstance(v, dict) and "value" in v else v


def _derived(rec: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    out = {k: _value(v) for k, v in rec.items()}  # rates: their value (the JSON keeps the intervals)
    if "autoattack 8/255" in rec:
        out["pgd_aa_gap"] = out["pgd20 8/255 on aa points"] - out["autoattack 8/255"]
    if base is not None and "corruption_accuracy" in rec:
        ces = []
        for c, by_s in rec["corruption_accuracy"].items():
            err = sum(1 - a for a in by_s.values())
            err_base = sum(1 - a for a in base["corruption_accuracy"][c].values())
            ces.append(err / err_base)
        out["mce"] = sum(ces) / len(ces)
    return out


def _cell(values: list[Any]) -> str:
    if not values or any(v is None for v in values):
        return "–"
    if isinstance(values[0], dict):
        keys = list(values[0])
        return ", ".join(f"{k} {_cell([v[k] for v in values])}" for k in keys)
    if len(values) == 1:
        return f"{100 * values[0]:.1f}" if abs(values[0]) <= 1.5 else f"{values[0]:.3f}"
    mean = sum(values) / len(values)
    spread = (max(values) - min(values)) / 2
    return f"{100 * mean:.1f} ± {100 * spread:.1f}"


def report(args: argparse.Namespace, arms: list[str], seeds: list[int]) -> dict[str, Any]:
    recs: dict[str, list[dict[str, Any]]] = {}
    for arm in arms:
        for seed in seeds:
            f = run_dir(args.out, arm, seed) / f"eval-n{args.n}.json"
            base_f = run_dir(args.out, "standard", seed) / f"eval-n{args.n}.json"
            if f.is_file():
                base = json.loads(base_f.read_text()) if base_f.is_file() else None
                recs.setdefault(arm, []).append(_derived(json.loads(f.read_text()), base))
    lines = [
        f"Every arm: `resnet_cifar` depth {args.depth} width {args.width}, {args.epochs} epochs on the 10,000 CIFAR-10 "
        f"training images, batch 128, SGD one-cycle (peak lr 0.1), seeds among ({', '.join(map(str, seeds))}), "
        "the `seeds` column says how many each arm has; "
        f"adversarial arms L∞ 8/255 with {args.steps} inner steps. Evaluated on the first {args.n} test images "
        f"(AutoAttack: the first {args.n_aa}); percentages, mean ± half-range over seeds where there are several; "
        "mCE relative to the `standard` arm (19 corruptions × 5 severities). Route: the model's recorded inference "
        "route unless the column says otherwise (`clean_by_route`).\n",
    ]
    for title, claim, compared, metrics in FINDINGS:
        lines += [f"### {title}\n", f"Claim: {claim}.\n"]
        lines.append("| arm | route | seeds | " + " | ".join(metrics) + " |")
        lines.append("|---" * (len(metrics) + 3) + "|")
        for arm in compared:
            rs = recs.get(arm, [])
            route = (rs[0]["route"] or "single BN") if rs else "–"
            cells = [_cell([r.get(m) for r in rs]) if rs else "not run" for m in metrics]
            lines.append(f"| {arm} | {route} | {len(rs)} | " + " | ".join(cells) + " |")
        lines.append("")
    for rec in recs.get("multibn", [])[:1]:
        sel = rec.get("selector")
        if not sel:
            continue
        branches = sel["branches"]
        made = ", ".join(f"{b}: {p}" for b, p in sel["perturbations"].items())
        lines += [
            "#### MultiBN: the selector under adaptive attack (seed 0)\n",
            f"Each perturbation type's inputs are made against the route in the first column (`select`: soft routing; "
            f"`select-hard`: arg-max routing attacked with the softmax's gradient, BPDA; a branch: that branch "
            f"alone), on the first {sel['n']} test images: {made}."
            " Accuracy on each type's inputs, and how often the selector sends them to their own branch.\n",
            "| route | " + " | ".join(f"accuracy on {b}" for b in branches) + " | routed to own branch |",
            "|---" * (len(branches) + 2) + "|",
        ]
        for r in sel["routes"]:
            accs = " | ".join(f"{100 * _value(sel['accuracy'][r][b]):.1f}" for b in branches)
            lines.append(f"| {r} | {accs} | {100 * sel['routing_accuracy'][r]:.1f} |")
        conf = sel["confusion"]["select"]
        lines += [
            "",
            "Confusion under soft routing (rows: true type, columns: the selector's branch):\n",
            "| type \\ branch | " + " | ".join(branches) + " |",
            "|---" * (len(branches) + 1) + "|",
        ]
        lines += [f"| {b} | " + " | ".join(str(v) for v in row) + " |" for b, row in zip(branches, conf, strict=True)]
        lines.append("")
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "records": recs}
    (ROOT / "benchmarks" / "results" / "robust_training.json").write_text(json.dumps(result, indent=1) + "\n")
    text = "\n".join(lines)
    print(text)
    if args.write is not None:
        from _common import write_section

        heading = "## Robust training across distributions: measured (issue 15)"
        write_section(args.write, heading, heading + "\n\n" + text)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=("train", "evaluate", "report"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--n-aa", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=os.environ.get("ROBUSTLAB_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--write", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arms {unknown}; arms: {', '.join(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.phase == "train":
        for seed in seeds:
            for arm in arms:
                try:
                    train_arm(arm, seed, args)
                except Exception:  # one arm's failure must not stop the others; its log says why
                    log.exception("%s seed %d failed", arm, seed)
    elif args.phase == "report":
        report(args, arms, seeds)
    elif args.phase == "evaluate":
        for seed in seeds:
            for arm in arms:
                try:
                    evaluate_arm(arm, seed, args)
                except Exception:
                    log.exception("evaluating %s seed %d failed", arm, seed)


if __name__ == "__main__":
    main()
