"""The model zoo: recipes (as data) and the builder that trains, exports and records them.

``robustlab zoo build`` trains every recipe on the CIFAR-10 training images available (offline: rows
0–9999), exports safetensors weights with a JSON sidecar into the package's zoo folder, measures test
accuracy on the 10,000 test images, parameters and FLOPs, and rewrites ``manifest.json`` from the sidecars.
Each recipe trains in its own resumable run directory, so an interrupted build continues where it stopped.

``robustlab zoo build --robust`` does the same for the adversarially trained recipes (:data:`ROBUST_RECIPES`:
CIFAR-10 at L∞ 8/255 with ``pgd-at`` and ``trades``, MNIST at L∞ 0.3 with ``fgsm-rs`` and ``pgd-at``) into their
own folder (``zoo/robust``, with its own ``manifest.json``: the models span datasets, so they stay out of the
CIFAR-10 zoo's manifest), and records each model's robustness: its budget, PGD-20 robust accuracy (random start,
step 2.5·ε/20) on the test images, and the AutoAttack robust accuracy, ``"pending"`` until AutoAttack is run.
``robustlab zoo audit --robust`` (:func:`audit_zoo`) runs the gradient-masking audit on built robust models at
their budget and records its summary (``metrics["audit"]``) in their sidecars and the manifest.

``robustlab zoo build --sweep`` builds the TRADES β sweep's other arms (:data:`SWEEP_RECIPES`: vgg8-w25 at β 1 and 3
beside the robust zoo's β 6 model) into ``zoo/sweep``, recorded the same way: an experiment, not robust-zoo members.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab._io import atomic_write_text, file_digest
from robustlab._registry import Registry
from robustlab.data import Dataset, load_dataset
from robustlab.errors import UnknownNameError
from robustlab.models.loading import ZOO_DIR, load_model
from robustlab.models.spec import CIFAR10_MEAN, CIFAR10_STD, ModelSpec
from robustlab.models.weights import save_weights
from robustlab.train.loop import ProgressFn, TrainConfig
from robustlab.train.standalone import fit_and_export

log = logging.getLogger(__name__)

ZOO_EPOCHS = 15

#: Where ``robustlab zoo build --robust`` writes by default (its own manifest: the robust models span datasets).
ROBUST_ZOO_DIR = ZOO_DIR / "robust"


@dataclass(frozen=True)
class ZooRecipe:
    """How one zoo model is built: architecture, size, training config and data.

    Attributes:
        name: Zoo name.
        family: Architecture family shown in listings.
        arch: Registered architecture.
        arch_kwargs: Its arguments.
        config: Training config (method and settings included).
        dataset: ``cifar10`` or ``mnist``.
        train_images: Train on a seeded random subset of this many training images (``None``: all available).
        normalize: Normalise with the dataset's channel statistics; ``False``: raw [0, 1] pixels (mean 0, std 1),
            as the published MNIST recipes train.
        eval_images: Test images the PGD-20 robust accuracy is measured on (``None``: all).
        autoattack_images: Test images standard AutoAttack is run on (a fixed subset of the PGD-20 images).
    """

    name: str
    family: str
    arch: str
    arch_kwargs: dict[str, Any]
    config: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=ZOO_EPOCHS))
    dataset: str = "cifar10"
    train_images: int | None = None
    normalize: bool = True
    eval_images: int | None = None
    autoattack_images: int = 500

    @property
    def robust(self) -> bool:
        """Whether the recipe trains adversarially."""
        return self.config.method != "standard"

    def spec(self) -> ModelSpec:
        """The model spec (without weights) that the trained model is saved under."""
        mnist = self.dataset == "mnist"
        mean: tuple[float, ...] = MNIST_MEAN if mnist else CIFAR10_MEAN
        std: tuple[float, ...] = MNIST_STD if mnist else CIFAR10_STD
        if not self.normalize:
            mean, std = (0.0,) * len(mean), (1.0,) * len(std)
        return ModelSpec(
            name=self.name,
            family=self.family,
            arch=self.arch,
            arch_kwargs=dict(self.arch_kwargs),
            num_classes=10,
            input_shape=(1, 28, 28) if mnist else (3, 32, 32),
            mean=mean,
            std=std,
            dataset=self.dataset,
            source="zoo",
        )


RECIPES: Registry[ZooRecipe] = Registry("zoo recipe")
for _r in [
    ZooRecipe("alexnet-w50", "alexnet", "alexnet_cifar", {"width": 0.5}),
    ZooRecipe("alexnet-w25", "alexnet", "alexnet_cifar", {"width": 0.25}),
    ZooRecipe("vgg11-w50", "vgg", "vgg", {"depth": 11, "width": 0.5}),
    ZooRecipe("vgg8-w25", "vgg", "vgg", {"depth": 8, "width": 0.25}),
    ZooRecipe("resnet20", "resnet", "resnet_cifar", {"depth": 20}),
    ZooRecipe("resnet8", "resnet", "resnet_cifar", {"depth": 8}),
    ZooRecipe("inception-b4-w25", "inception", "inception_cifar", {"width": 0.25, "blocks": 4}),
    ZooRecipe("inception-b2-w25", "inception", "inception_cifar", {"width": 0.25, "blocks": 2}),
    ZooRecipe("densenet-bc16-k12", "densenet", "densenet_bc", {"depth": 16, "growth": 12}),
    ZooRecipe("densenet-bc10-k16", "densenet", "densenet_bc", {"depth": 10, "growth": 16}),
    # DenseNet-BC-16 with k = 12 reached 68.66 % in 15 epochs: a wider, longer-trained member of the family.
    ZooRecipe("densenet-bc16-k16", "densenet", "densenet_bc", {"depth": 16, "growth": 16}, TrainConfig(epochs=25)),
    ZooRecipe("mobilenetv2-w50", "mobilenet", "mobilenetv2_cifar", {"width": 0.5, "stem_stride": 2}),
    ZooRecipe("mobilenetv1-w50", "mobilenet", "mobilenetv1_cifar", {"width": 0.5}, TrainConfig(epochs=20)),
]:
    RECIPES.register(_r.name, _r)

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR_EPS, MNIST_EPS = 8 / 255, 0.3
#: Epochs of the CIFAR-10 adversarial recipes: 15 (not the 30+ of the papers) so that a robust model costs 10–40
#: CPU-minutes on a 2-core machine; enough for the robust accuracy to stand 20+ points above the standard twin's 0.
CIFAR_AT_EPOCHS = 15
#: Recipes that get twice the epochs: TRADES β 6 stood 19.2 (alexnet-w25) and 18.0 (resnet8) points above its
#: standard twin under AutoAttack after 15 epochs (measured 2026-12-02), short of the 20 the zoo promises; 30 epochs:
#: 21.8 and 21.4.
_LONGER: dict[str, int] = {"alexnet-w25-trades": 30, "resnet8-trades": 30}


def _cifar_at(
    method: str, params: dict[str, Any] | None = None, seed: int = 0, epochs: int = CIFAR_AT_EPOCHS
) -> TrainConfig:
    """PGD-7-style adversarial training at 8/255 on the 10,000 CIFAR-10 images (SGD, one-cycle, crop-flip)."""
    return TrainConfig(
        epochs=epochs,
        lr=0.1,
        seed=seed,
        method=method,
        method_params={"eps": CIFAR_EPS, "steps": 7, **(params or {})},
    )


def _mnist_at(method: str, seed: int, **params: Any) -> TrainConfig:
    """Wong et al.'s MNIST recipe: 10 epochs, batch 100, Adam with a cyclic rate peaking at 5e-3 at 2/5."""
    return TrainConfig(
        epochs=10,
        batch_size=100,
        lr=5e-3,
        optimizer="adam",
        schedule="cyclic",
        warmup=0.4,
        weight_decay=0.0,
        augment="none",
        seed=seed,
        method=method,
        method_params={"eps": MNIST_EPS, **params},
        monitor_n=500,
    )


_ROBUST_CIFAR_ARCHS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("vgg8-w25", "vgg", "vgg", {"depth": 8, "width": 0.25}),
    ("resnet8", "resnet", "resnet_cifar", {"depth": 8}),
    ("alexnet-w25", "alexnet", "alexnet_cifar", {"width": 0.25}),
]

#: The robust zoo (``robustlab zoo build --robust``): which CIFAR-10 runs fit the CPU is the lead's call; every
#: recipe here is a complete, resumable description.
ROBUST_RECIPES: Registry[ZooRecipe] = Registry("robust zoo recipe")
for _r in [
    *(
        ZooRecipe(
            f"{arch_name}-{m}",
            fam,
            arch,
            kw,
            _cifar_at(
                m,
                {"beta": 6.0} if m == "trades" else None,
                epochs=_LONGER.get(f"{arch_name}-{m}", CIFAR_AT_EPOCHS),
            ),
        )
        for arch_name, fam, arch, kw in _ROBUST_CIFAR_ARCHS
        for m in ("pgd-at", "trades")
    ),
    *(
        ZooRecipe(
            f"fast-mnist-fgsm-rs-s{s}",
            "fast_mnist",
            "fast_mnist",
            {},
            _mnist_at("fgsm-rs", s, alpha=0.375),
            dataset="mnist",
            normalize=False,
        )
        for s in (0, 1, 2)
    ),
    ZooRecipe(
        "fast-mnist-pgd-at",
        "fast_mnist",
        "fast_mnist",
        {},
        # the budget ramps up over the first 3 epochs: at the full 0.3 from the first step the network settles on
        # the uniform prediction (10 epochs at 11.35 % clean, loss ln 10, measured 2026-12-02)
        _mnist_at("pgd-at", 0, steps=10, step_size=0.04, eps_ramp=0.3),
        dataset="mnist",
        normalize=False,
    ),
]:
    ROBUST_RECIPES.register(_r.name, _r)

#: Where ``robustlab zoo build --sweep`` writes by default (its own manifest: an experiment beside the robust zoo).
SWEEP_ZOO_DIR = ZOO_DIR / "sweep"
#: The robust zoo's model that is the β sweep's third arm (β 6, TRADES' default).
SWEEP_BASE = "vgg8-w25-trades"

#: The TRADES β sweep (``robustlab zoo build --sweep``): vgg8-w25 trained as the robust zoo's :data:`SWEEP_BASE`
#: (β 6) but with β 1 and β 3, to show what β trades: clean accuracy falls and robust accuracy rises as β grows
#: (docs/findings.md). An experiment, not robust-zoo members: β 1 buys clean accuracy with robustness by design and
#: stays below the bar every robust-zoo model meets (AutoAttack 20+ points above its standard twin's 0 %): 14.0 %
#: after 15 epochs, 18.0 and 17.6 % after 30 and 60 (measured 2026-12-04/05; more epochs buy clean accuracy, not
#: robustness, at 10,000 training images). Its arms keep the zoo's 15 epochs, like for like with the β 6 model.
SWEEP_RECIPES: Registry[ZooRecipe] = Registry("sweep recipe")
for _b in (1.0, 3.0):
    _base = ROBUST_RECIPES.get(SWEEP_BASE)
    _r = dataclasses.replace(
        _base,
        name=f"{SWEEP_BASE}-b{_b:g}",
        config=dataclasses.replace(_base.config, method_params={**_base.config.method_params, "beta": _b}),
    )
    SWEEP_RECIPES.register(_r.name, _r)


def build_one(
    recipe: ZooRecipe,
    runs_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = ZOO_DIR,
    progress: ProgressFn | None = None,
    audit_n: int | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> ModelSpec:
    """Train one recipe (resuming if interrupted), export its weights and sidecar, return its spec.

    A robust recipe's sidecar also records its robustness (:func:`measure_robustness`) and, unless ``audit_n`` is
    ``None``, the summary of the gradient-masking audit (the training audit's reduced ladder,
    :data:`~robustlab.train.post_audit.TRAINING_AUDIT`) on the first ``audit_n`` of the points PGD-20 was measured
    on, as ``robustlab zoo audit --robust`` records it. ``on_phase`` is told, in words, when each of these
    measurements (minutes each on a CPU) starts."""
    train = load_dataset(recipe.dataset, "train", data_dir)
    test = load_dataset(recipe.dataset, "test", data_dir)
    if recipe.train_images is not None:
        train = train.subset(recipe.train_images, recipe.config.seed)
    spec = fit_and_export(
        recipe.spec(),
        train,
        test,
        recipe.config,
        Path(runs_dir) / recipe.name,
        Path(out_dir) / f"{recipe.name}.safetensors",
        progress,
    )
    log.info("%s: test accuracy %.4f", recipe.name, spec.metrics["test_accuracy"])
    if recipe.robust:
        weights = Path(out_dir) / f"{recipe.name}.safetensors"
        metrics = {**spec.metrics, "robust": measure_robustness(recipe, weights, test, on_phase)}
        if audit_n is not None:
            if on_phase is not None:
                on_phase(f"gradient-masking audit on {audit_n} test points")
            metrics["audit"] = _audit_built(recipe, weights, test, audit_n)
        spec = save_weights(load_model(str(weights)).net, dataclasses.replace(spec, metrics=metrics), weights)
    return spec


def _audit_built(recipe: ZooRecipe, weights: Path, test: Dataset, n: int) -> dict[str, Any]:
    """The audit summary of a just-built robust model, at its training budget, on the first ``n`` of the points its
    PGD-20 number was measured on."""
    from robustlab.train.post_audit import TRAINING_AUDIT, audit_weights, check_audit_n, summary

    check_audit_n(n, "audit_n")
    p = recipe.config.method_params
    data = test if recipe.eval_images is None else test.subset(recipe.eval_images, 0)
    record = audit_weights(
        weights, data, eps=float(p["eps"]), norm=str(p.get("norm", "linf")), n=n, config=TRAINING_AUDIT
    )
    log.info("%s: audit: %s", recipe.name, record["verdict"])
    (weights.parent / AUDITS).mkdir(exist_ok=True)
    atomic_write_text(weights.parent / AUDITS / f"{recipe.name}.json", json.dumps(record, indent=1) + "\n")
    return summary(record)


#: What the robust zoo records before AutoAttack has been run on a model.
PENDING = "pending"


def measure_robustness(
    recipe: ZooRecipe, weights: Path, test: Dataset, on_phase: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The robustness record of a robust zoo model: its threat model, PGD-20 robust accuracy (random start, step
    2.5·ε/20, one restart) on the test images (a fixed subset of ``recipe.eval_images``) and standard AutoAttack's
    on a fixed subset of ``recipe.autoattack_images`` of them (seed 0), with its flags. ``on_phase`` is told when
    each of the two starts.

    Returns:
        ``{"norm", "eps", "method", "pgd20", "pgd20_images", "autoattack", "autoattack_images", "autoattack_flags"}``.
    """
    from robustlab.attacks import attack

    p = recipe.config.method_params
    eps, norm = float(p["eps"]), str(p.get("norm", "linf"))
    data = test if recipe.eval_images is None else test.subset(recipe.eval_images, 0)
    model = load_model(str(weights))
    if on_phase is not None:
        on_phase(f"PGD-20 at {norm} {eps:.4g} on {len(data.y)} test images")
    result = attack(model, data.images(), data.y, "pgd", norm=norm, eps=eps, steps=20, seed=0)
    first = data.subset(min(recipe.autoattack_images, int(data.y.shape[0])), 0)
    if on_phase is not None:
        on_phase(f"standard AutoAttack on {len(first.y)} test images")
    aa = attack(model, first.images(), first.y, "autoattack", norm=norm, eps=eps, seed=0).summary()
    return {
        "norm": norm,
        "eps": eps,
        "method": recipe.config.method,
        "pgd20": float(result.robust.float().mean()),
        "pgd20_images": result.n,
        "autoattack": aa["robust_accuracy"],
        "autoattack_images": aa["n"],
        "autoattack_flags": aa["flags"],
    }


ZooProgressFn = Callable[[str, int, int, int, int, float], None]
"""Called after every training step with (recipe name, epochs, epoch, step, steps_per_epoch, loss)."""


@dataclass(frozen=True)
class ZooBuild:
    """The outcome of :func:`build_zoo`: the specs built (in order) and the rewritten manifest."""

    built: list[ModelSpec]
    manifest: dict[str, Any]


def build_zoo(
    only: Sequence[str] | None,
    runs_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    progress: ZooProgressFn | None = None,
    on_built: Callable[[ModelSpec], None] | None = None,
    robust: bool = False,
    sweep: bool = False,
    audit_n: int | None = None,
    on_phase: Callable[[str, str], None] | None = None,
) -> ZooBuild:
    """Train the zoo's recipes (all, or ``only`` these), export them into ``out_dir`` and rewrite its manifest.

    Every recipe resumes from its own run directory under ``runs_dir``, so an interrupted build continues.

    Args:
        only: Recipe names (close matches suggested for unknown ones); ``None``: every recipe.
        runs_dir: Resumable training state, one folder per recipe.
        out_dir: Where weights, sidecars and ``manifest.json`` go.
        data_dir: Data directory of CIFAR-10.
        progress: Per-step callback, told which recipe is training.
        on_built: Called with each recipe's spec once its weights are written.
        on_phase: Robust zoo: called as ``on_phase(recipe name, what)`` when each robustness measurement starts.
        robust: Build the robust zoo (:data:`ROBUST_RECIPES`, default folder ``ROBUST_ZOO_DIR``) instead.
        sweep: Build the β sweep's arms (:data:`SWEEP_RECIPES`, default folder ``SWEEP_ZOO_DIR``) instead; recorded as
            the robust zoo's models are.
        audit_n: Robust zoo and sweep: audit each built model on this many points (:func:`build_one`); ``None``: no
            audit.

    Raises:
        UnknownNameError: an unknown recipe name (before anything is trained).
        ConfigError: ``audit_n`` not an integer >= 1 (before anything is trained).
    """
    if audit_n is not None:
        from robustlab.train.post_audit import check_audit_n

        check_audit_n(audit_n, "audit_n")  # before anything is trained
    registry, default_dir = (
        (SWEEP_RECIPES, SWEEP_ZOO_DIR) if sweep else (ROBUST_RECIPES, ROBUST_ZOO_DIR) if robust else (RECIPES, ZOO_DIR)
    )
    out_dir = out_dir if out_dir is not None else default_dir
    for name in only or ():
        if name not in registry.names() and (where := _collection(name)) is not None:
            raise UnknownNameError(f"{name!r} is not a {registry.kind}: it is {where}")
    recipes = [registry.get(n) for n in (only or registry.names())]
    built = []
    for r in recipes:
        step = None if progress is None else _told(progress, r)
        told = None if on_phase is None else functools.partial(on_phase, r.name)
        spec = build_one(r, runs_dir, data_dir=data_dir, out_dir=out_dir, progress=step, audit_n=audit_n, on_phase=told)
        built.append(spec)
        if on_built is not None:
            on_built(spec)
    return ZooBuild(built, write_manifest(out_dir))


def _collection(name: str) -> str | None:
    """Which robust collection has a recipe ``name``, in words that say how to build it; ``None``: neither."""
    if name in ROBUST_RECIPES.names():
        return "the robust zoo's (robust=True; --robust on the command line)"
    if name in SWEEP_RECIPES.names():
        return "the β sweep's (sweep=True; --sweep on the command line)"
    return None


def _told(progress: ZooProgressFn, recipe: ZooRecipe) -> ProgressFn:
    """The training loop's per-step callback for one recipe, forwarding to ``progress`` with its name."""

    def step(epoch: int, i: int, steps: int, loss: float) -> None:
        progress(recipe.name, recipe.config.epochs, epoch, i, steps, loss)

    return step


def _robust(spec: ModelSpec) -> dict[str, Any]:
    r: dict[str, Any] = dict(spec.metrics["robust"])
    out: dict[str, Any] = {"robust": {k: r.get(k) for k in ("norm", "eps", "pgd20", "pgd20_images", "autoattack")}}
    if "audit" in spec.metrics:
        out["audit"] = spec.metrics["audit"]
    return out


#: Points ``robustlab zoo audit --robust`` audits by default.
ZOO_AUDIT_N = 300
#: The folder of a zoo where each model's full audit record is kept (``<name>.json``; the sidecar keeps the summary).
AUDITS = "audits"


def audit_zoo(
    only: Sequence[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    n: int = ZOO_AUDIT_N,
    config: Any = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    progress: Callable[[str, str, int, int], None] | None = None,
    on_audited: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Audit built robust zoo models for gradient masking and record the summary in their sidecars.

    Each model is audited at its recorded budget (``metrics["robust"]``) on the first ``n`` test points of its
    dataset, with the default surrogate; :func:`robustlab.train.post_audit.summary` of the audit goes under
    ``metrics["audit"]`` of its sidecar (rewritten atomically; the weights are not touched) and the full record (every
    rung) into ``audits/<name>.json`` beside it, then the manifest is rewritten.

    Args:
        only: Model names (close matches suggested for unknown ones); ``None``: every built robust model.
        out_dir: The robust zoo folder (default :data:`ROBUST_ZOO_DIR`).
        n: Points audited per model.
        config: The ladder's budgets (an :class:`~robustlab.audit.AuditConfig`; default: the audit's defaults).
        data_dir: Data directory.
        device: Where to run.
        progress: Called as ``progress(model, attack, done, total)``.
        on_audited: Called with each model's name and summary once its sidecar is written.

    Returns:
        The summaries, in order, each with ``name``.

    Raises:
        UnknownNameError: a name of ``only`` that is not a built robust model (before any audit).
        ConfigError: ``n`` not an integer >= 1.
    """
    from robustlab.audit import AuditConfig
    from robustlab.train.post_audit import audit_weights, check_audit_n, summary

    check_audit_n(n, "n")
    folder = Path(out_dir) if out_dir is not None else ROBUST_ZOO_DIR
    sidecars = {
        side.stem: side
        for side in sorted(folder.glob("*.json"))
        if side.name != "manifest.json" and "robust" in json.loads(side.read_text(encoding="utf-8")).get("metrics", {})
    }
    for name in only or ():
        if name not in sidecars:
            import difflib

            close = difflib.get_close_matches(name, list(sidecars), n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            if (where := _collection(name)) is not None:  # a model of the other collection: say which
                hint = f" It is {where}."
            raise UnknownNameError(
                f"unknown robust zoo model {name!r} in {folder}.{hint} Built: {', '.join(sidecars) or 'none'}."
            )
    cfg = config if config is not None else AuditConfig()
    done = []
    for name in only or list(sidecars):
        side = sidecars[name]
        raw = json.loads(side.read_text(encoding="utf-8"))
        spec = ModelSpec.from_dict(raw)
        rob = spec.metrics["robust"]
        weights = side.with_suffix(".safetensors")
        step = None if progress is None else (lambda a, d, t, m=name: progress(m, a, d, t))
        record = audit_weights(
            weights,
            load_dataset(spec.dataset, "test", data_dir),
            eps=float(rob["eps"]),
            norm=str(rob.get("norm", "linf")),
            n=n,
            config=cfg,
            device=device,
            progress=step,
        )
        short = summary(record)
        raw["metrics"] = {**raw.get("metrics", {}), "audit": short}
        (folder / AUDITS).mkdir(exist_ok=True)
        atomic_write_text(folder / AUDITS / f"{name}.json", json.dumps(record, indent=1) + "\n")
        atomic_write_text(side, json.dumps(raw, indent=2) + "\n")
        log.info("%s: %s", name, short["verdict"])
        if on_audited is not None:
            on_audited(name, short)
        done.append({"name": name, **short})
    write_manifest(folder)
    return done


def write_manifest(out_dir: str | os.PathLike[str] = ZOO_DIR) -> dict[str, Any]:
    """Rebuild ``manifest.json`` from the sidecars in ``out_dir`` (checksums re-read from the files)."""
    out = Path(out_dir)
    entries = []
    for side in sorted(out.glob("*.json")):
        if side.name == "manifest.json":
            continue
        spec = ModelSpec.from_dict(json.loads(side.read_text(encoding="utf-8")))
        if spec.weights is None:
            continue
        weights = out / spec.weights.filename
        if not weights.is_file() or file_digest(weights) != spec.weights.sha256:
            log.warning("skipping %s: weights missing or checksum differs from its sidecar", spec.name)
            continue
        entry: dict[str, Any] = {
            "name": spec.name,
            "family": spec.family,
            "sha256": spec.weights.sha256,
            **{k: spec.metrics.get(k) for k in ("parameters", "flops", "test_accuracy")},
            "seed": spec.recipe.get("seed"),
            "spec": spec.to_dict(),
        }
        if "robust" in spec.metrics:  # the robust zoo: dataset, recipe's method and the robustness record
            entry = {**entry, "dataset": spec.dataset, "method": spec.recipe.get("method"), **_robust(spec)}
        entries.append(entry)
    datasets = sorted({str(e["spec"]["dataset"]) for e in entries}) or ["cifar10"]
    manifest: dict[str, Any] = {"schema_version": 1, "dataset": datasets[0] if len(datasets) == 1 else datasets}
    manifest["models"] = entries
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest
