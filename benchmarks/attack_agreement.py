"""Do robustlab's attacks find what torchattacks, foolbox and ART find, on a trained network?

A correctness check, not a speed benchmark: on the published CIFAR-10 ResNet-20 (akamaster) and the first
``--n`` test images, every library runs the same attack at the same budget, and every library's output is
judged by one rule (clip to [0, 1], fresh forward pass, prediction != label). The budgets are small enough that
robust accuracy lies between 0 and the clean accuracy, where an under-attacking implementation shows.

- FGSM and I-FGSM without random start are deterministic: every correct implementation must fool the same
  images (up to float rounding at the decision boundary). robustlab's I-FGSM runs with ``early_stop=False``
  here, like the peers; its default (early stop, which keeps the first successful iterate) must fool at least
  as many. The targeted I-FGSM (least-likely class) checks the targeted success rule the same way.
- PGD (L∞ and L2) draws a random start, so libraries may differ by a few images.
- C&W-L2 and EAD (binary search over c) are compared by success rate and median distortion with foolbox, the
  peer with the same search; torchattacks' C&W runs one fixed c.

Run it with the environment that has the peers::

    ROBUSTLAB_DATA=../shared/data /work/peers-venv/bin/python benchmarks/attack_agreement.py --write-docs
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import art_classifier, judge, write_section  # benchmarks/, first on sys.path when a script runs
from torch import Tensor, nn

import robustlab
import robustlab.attacks as rla
from robustlab.models.adapter import trusted_inputs

log = logging.getLogger("benchmarks.attack_agreement")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADING = "## Attacks: agreement with the peers on a trained network"


Runner = Callable[[Tensor, Tensor, Tensor | None], Tensor]  # (x, labels, targets or None) -> adversarials


@dataclass
class Case:
    """One attack at one budget, run by every library that has it."""

    title: str
    n: int
    targeted: bool
    runners: dict[str, Runner] = field(default_factory=dict)


def ours(model: nn.Module, name: str, **kw: Any) -> Runner:
    def run(x: Tensor, y: Tensor, t: Tensor | None) -> Tensor:
        target = "untargeted" if t is None else "least-likely"
        res = rla.attack(model, x, y, name, target=target, keep_adversarials=True, **kw)
        assert res.adversarials is not None
        return res.adversarials

    return run


def cases(model: nn.Module, a: argparse.Namespace) -> dict[str, Case]:
    """Every case with robustlab's runners; :func:`add_peers` adds the peers'."""
    e_inf, e_t, e_2, steps = rla.parse_eps(a.eps_linf), rla.parse_eps(a.eps_targeted), a.eps_l2, a.steps
    assert e_inf is not None and e_t is not None
    bim = {"steps": steps, "early_stop": False}  # the peers run every step; step eps / steps (rel_step 1)
    search = {"steps": a.cw_steps, "search_steps": a.cw_search}
    out = {
        "fgsm": Case(f"FGSM, L∞ eps {a.eps_linf}", a.n, False, {"robustlab": ours(model, "fgsm", eps=e_inf)}),
        "ifgsm": Case(
            f"I-FGSM, L∞ eps {a.eps_linf}, {steps} steps of eps/{steps}, no random start",
            a.n,
            False,
            {
                "robustlab": ours(model, "ifgsm", eps=e_inf, **bim),
                "robustlab (early stop, default)": ours(model, "ifgsm", eps=e_inf, steps=steps),
            },
        ),
        "ifgsm_ll": Case(
            f"I-FGSM targeted at the least-likely class, L∞ eps {a.eps_targeted}, {steps} steps of eps/{steps}",
            a.n,
            True,
            {"robustlab": ours(model, "ifgsm", eps=e_t, **bim)},
        ),
        "pgd_linf": Case(
            f"PGD, L∞ eps {a.eps_linf}, {steps} steps of eps/4, random start",
            a.n,
            False,
            {"robustlab": ours(model, "pgd", eps=e_inf, steps=steps, step_size=e_inf / 4, early_stop=False)},
        ),
        "pgd_l2": Case(
            f"PGD, L2 eps {e_2}, {steps} steps of eps/4, random start",
            a.n,
            False,
            {"robustlab": ours(model, "pgd", norm="l2", eps=e_2, steps=steps, step_size=e_2 / 4, early_stop=False)},
        ),
        "cw": Case(
            f"C&W-L2, {a.cw_search} × {a.cw_steps} (binary search × iterations), κ = 0, initial c 1e-3",
            a.cw_n,
            False,
            {"robustlab": ours(model, "cw", **search)},
        ),
        "ead": Case(
            f"EAD (EN rule, β = 0.01), {a.cw_search} × {a.cw_steps}, initial c 1e-3",
            a.cw_n,
            False,
            {"robustlab": ours(model, "ead", beta=0.01, **search)},
        ),
    }
    return out


def add_peers(model: nn.Module, c: dict[str, Case], a: argparse.Namespace) -> dict[str, str | None]:
    """Add the peers that import to every case they implement; return their versions."""
    e_inf, e_t, e_2, steps = rla.parse_eps(a.eps_linf), rla.parse_eps(a.eps_targeted), a.eps_l2, a.steps
    assert e_inf is not None and e_t is not None
    versions: dict[str, str | None] = {}
    try:
        import torchattacks as ta

        versions["torchattacks"] = ta.__version__

        def tatk(attack: Any, targeted: bool = False) -> Runner:
            if targeted:
                attack.set_mode_targeted_least_likely()
            return lambda x, y, t: attack(x, y)

        c["fgsm"].runners["torchattacks"] = tatk(ta.FGSM(model, eps=e_inf))
        c["ifgsm"].runners["torchattacks"] = tatk(ta.BIM(model, eps=e_inf, alpha=e_inf / steps, steps=steps))
        c["ifgsm_ll"].runners["torchattacks"] = tatk(ta.BIM(model, eps=e_t, alpha=e_t / steps, steps=steps), True)
        c["pgd_linf"].runners["torchattacks"] = tatk(ta.PGD(model, eps=e_inf, alpha=e_inf / 4, steps=steps))
        c["pgd_l2"].runners["torchattacks"] = tatk(ta.PGDL2(model, eps=e_2, alpha=e_2 / 4, steps=steps))
        c["cw"].runners["torchattacks (fixed c = 1)"] = tatk(
            ta.CW(model, c=1, kappa=0, steps=a.cw_search * a.cw_steps, lr=0.01)
        )
    except ImportError as err:  # pragma: no cover - depends on the environment
        log.warning("torchattacks skipped: %s", err)
    try:
        import foolbox as fb

        versions["foolbox"] = fb.__version__
        fmodel = fb.PyTorchModel(model, bounds=(0, 1))

        def fool(attack: Any, eps: float | None) -> Runner:
            def run(x: Tensor, y: Tensor, t: Tensor | None) -> Tensor:
                crit = y if t is None else fb.criteria.TargetedMisclassification(t)
                with trusted_inputs(model):  # foolbox's EAD evaluates FISTA's extrapolated point outside [0, 1]
                    raw, clipped, won = attack(fmodel, x, crit, epsilons=eps)
                if eps is not None:
                    return clipped
                # foolbox's C&W and EAD return an all-zero image where they found nothing; the judge would count
                # that black image as a success, so a failure gives back the clean input instead
                return torch.where(won.reshape(-1, 1, 1, 1), raw, x)

            return run

        c["fgsm"].runners["foolbox"] = fool(fb.attacks.LinfFastGradientAttack(random_start=False), e_inf)
        bia = fb.attacks.LinfBasicIterativeAttack
        c["ifgsm"].runners["foolbox"] = fool(bia(abs_stepsize=e_inf / steps, steps=steps), e_inf)
        c["ifgsm_ll"].runners["foolbox"] = fool(bia(abs_stepsize=e_t / steps, steps=steps), e_t)
        c["pgd_linf"].runners["foolbox"] = fool(fb.attacks.LinfPGD(abs_stepsize=e_inf / 4, steps=steps), e_inf)
        c["pgd_l2"].runners["foolbox"] = fool(fb.attacks.L2PGD(abs_stepsize=e_2 / 4, steps=steps), e_2)
        c["cw"].runners["foolbox"] = fool(
            fb.attacks.L2CarliniWagnerAttack(binary_search_steps=a.cw_search, steps=a.cw_steps, stepsize=0.01), None
        )
        c["ead"].runners["foolbox"] = fool(
            fb.attacks.EADAttack(
                binary_search_steps=a.cw_search, steps=a.cw_steps, initial_stepsize=0.01, regularization=0.01
            ),
            None,
        )
    except ImportError as err:  # pragma: no cover
        log.warning("foolbox skipped: %s", err)
    try:
        import art
        from art.attacks.evasion import BasicIterativeMethod, FastGradientMethod, ProjectedGradientDescentPyTorch

        versions["ART"] = art.__version__
        clf = art_classifier(model)

        def arts(attack: Any) -> Runner:
            def run(x: Tensor, y: Tensor, t: Tensor | None) -> Tensor:
                return torch.from_numpy(attack.generate(x.numpy(), (y if t is None else t).numpy()))

            return run

        kw: dict[str, Any] = {"batch_size": 512}
        c["fgsm"].runners["ART"] = arts(FastGradientMethod(clf, norm=np.inf, eps=e_inf, **kw))
        c["ifgsm"].runners["ART"] = arts(
            BasicIterativeMethod(clf, eps=e_inf, eps_step=e_inf / steps, max_iter=steps, verbose=False, **kw)
        )
        c["ifgsm_ll"].runners["ART"] = arts(
            BasicIterativeMethod(clf, eps=e_t, eps_step=e_t / steps, max_iter=steps, targeted=True, verbose=False, **kw)
        )
        for name, norm, eps in (("pgd_linf", np.inf, e_inf), ("pgd_l2", 2, e_2)):
            c[name].runners["ART"] = arts(
                ProjectedGradientDescentPyTorch(
                    clf, norm=norm, eps=eps, eps_step=eps / 4, max_iter=steps, num_random_init=1, verbose=False, **kw
                )
            )
    except ImportError as err:  # pragma: no cover
        log.warning("ART skipped: %s", err)
    return versions


def seed_spread(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, seeds: int) -> dict[str, Any]:
    """Success rate of L∞ PGD over ``seeds`` random starts, robustlab against torchattacks: a few images' gap in
    one run says nothing until it exceeds the seed-to-seed spread."""
    out: dict[str, list[float]] = {"robustlab": [], "torchattacks": []}
    try:
        import torchattacks as ta
    except ImportError:  # pragma: no cover
        ta = None
    for s in range(seeds):
        mine = ours(model, "pgd", eps=eps, steps=steps, step_size=eps / 4, early_stop=False, seed=s)
        out["robustlab"].append(judge(model, x, y, mine(x, y, None))[1]["success_rate"])
        if ta is not None:
            torch.manual_seed(s)
            adv = ta.PGD(model, eps=eps, alpha=eps / 4, steps=steps)(x, y)
            out["torchattacks"].append(judge(model, x, y, adv)[1]["success_rate"])
    return {
        lib: {"rates": r, "mean": statistics.mean(r), "stdev": statistics.stdev(r) if len(r) > 1 else 0.0}
        for lib, r in out.items()
        if r
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20-akamaster")
    ap.add_argument("--n", type=int, default=200, help="first N CIFAR-10 test images (gradient attacks)")
    ap.add_argument("--eps-linf", default="1/255")
    ap.add_argument("--eps-targeted", default="4/255", help="L∞ budget of the targeted I-FGSM")
    ap.add_argument("--eps-l2", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--cw-n", type=int, default=32, help="first N images for C&W and EAD (the slow ones)")
    ap.add_argument("--cw-search", type=int, default=5)
    ap.add_argument("--cw-steps", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=8, help="random starts for the PGD seed-to-seed spread (0: skip)")
    ap.add_argument("--only", default=None, help="comma-separated cases (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--write-docs", action="store_true", help=f"rewrite the section {HEADING!r} of {DOCS.name}")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    model = robustlab.load_model(args.model, download=False).eval()
    data = robustlab.load_dataset("cifar10", "test", download=False)
    x_all, y_all = data.images()[: args.n], data.y[: args.n]  # float32 in [0, 1]
    with torch.no_grad():
        logits = model(x_all)
    least_likely = logits.argmin(1)
    todo = cases(model, args)
    versions = {"torch": torch.__version__, "robustlab": robustlab.__version__, **add_peers(model, todo, args)}
    if args.only:
        todo = {k: todo[k] for k in args.only.split(",")}
    results: dict[str, Any] = {
        "model": args.model,
        "n": args.n,
        "clean_accuracy": float((logits.argmax(1) == y_all).double().mean()),
        "versions": versions,
        "cases": {},
    }
    for name, case in todo.items():
        x, y = x_all[: case.n], y_all[: case.n]
        t = least_likely[: case.n] if case.targeted else None
        rows: dict[str, Any] = {}
        masks: dict[str, Tensor] = {}
        for lib, run in case.runners.items():
            t0 = time.perf_counter()
            masks[lib], rows[lib] = judge(model, x, y, run(x, y, t), t)
            rows[lib]["seconds"] = time.perf_counter() - t0
        ref = masks["robustlab"]
        for lib, row in rows.items():
            won = masks[lib]
            row["same_verdict_as_robustlab"] = float((won == ref).double().mean())
            row["only_robustlab"] = int((ref & ~won).sum())
            row["only_this"] = int((won & ~ref).sum())
            log.info("%-9s %-32s %s", name, lib, json.dumps(row))
        results["cases"][name] = {"title": case.title, "n": case.n, "targeted": case.targeted, "libraries": rows}
    if args.seeds > 0 and "pgd_linf" in todo:
        eps = rla.parse_eps(args.eps_linf)
        assert eps is not None
        results["pgd_linf_seeds"] = seed_spread(model, x_all, y_all, eps, args.steps, args.seeds)
        log.info("pgd_linf seeds: %s", json.dumps(results["pgd_linf_seeds"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.write_docs:
        write_section(DOCS, HEADING, render(results))
        log.info("wrote %s", DOCS)


def render(r: dict[str, Any]) -> str:
    v = r["versions"]
    lines = [
        HEADING,
        "",
        "Script: [`benchmarks/attack_agreement.py`](../benchmarks/attack_agreement.py). A correctness check: the",
        f"published {r['model']} (clean accuracy {r['clean_accuracy']:.1%} on the first {r['n']} CIFAR-10 test",
        "images), every library's output judged by one rule (clip to [0, 1], fresh forward pass; success is",
        "prediction ≠ label, or prediction = target for the targeted attack). Deterministic attacks (FGSM, I-FGSM)",
        "must succeed on the same images in every correct implementation; PGD draws random starts, so a few images",
        "may differ. Columns: success rate, robust accuracy, the share of images on which the library's verdict",
        "equals robustlab's, the images only robustlab broke / only this library broke, median L1 and L2 over the",
        "successes on images classified correctly before the attack, the largest L∞ and L2 distortion.",
        "",
        ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
    ]
    for block in r["cases"].values():
        lines += [
            f"**{block['title']}** ({block['n']} images)",
            "",
            "| library | success | robust acc. | same verdict | only robustlab / only this | median L1 | median L2 "
            "| max L∞ | max L2 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for lib, s in block["libraries"].items():
            med = ["—" if s[k] is None else f"{s[k]:.4f}" for k in ("median_l1", "median_l2")]
            lines.append(
                f"| {lib} | {s['success_rate']:.1%} | {s['robust_accuracy']:.1%} | "
                f"{s['same_verdict_as_robustlab']:.1%} | {s['only_robustlab']} / {s['only_this']} | {med[0]} | "
                f"{med[1]} | {s['max_linf']:.5f} | {s['max_l2']:.4f} |"
            )
        lines.append("")
    spread = r.get("pgd_linf_seeds")
    if spread:
        k = len(next(iter(spread.values()))["rates"])
        lines += [
            f"**PGD L∞ over {k} random starts** (seeds 0–{k - 1}; success rate on the {r['n']} images, mean ± "
            "standard deviation): "
            + "; ".join(f"{lib} {v['mean']:.1%} ± {v['stdev']:.1%}" for lib, v in spread.items())
            + ". A gap of a few images in the single run above is within this spread.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
