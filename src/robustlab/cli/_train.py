"""``robustlab train``: standard or adversarial training of an architecture, resumable (and multi-process under
``torchrun``)."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from robustlab.cli._common import (
    DataOpt,
    JsonOpt,
    SeedOpt,
    ThreadsOpt,
    check_writable,
    count_progress,
    emit_json,
    err_console,
    notice,
    set_threads,
    user_errors,
)
from robustlab.errors import ConfigError

if TYPE_CHECKING:
    from robustlab.train.loop import EpochMetrics, StepReport

#: Seconds between two plain progress lines when stderr is not a terminal.
PLAIN_SECONDS = 10.0


def _method_params(
    method: str,
    eps: str | None,
    steps: int | None,
    step_size: str | None,
    alpha: str | None,
    beta: float | None,
    random_start: bool | None,
    eps_ramp: float | None = None,
) -> dict[str, Any]:
    """The method settings given on the command line (``None``: not given, the method's default applies)."""
    from robustlab.attacks import parse_eps

    given: dict[str, Any] = {
        "eps": None if eps is None else _budget(eps, "--eps", parse_eps),
        "steps": steps,
        "step_size": None if step_size is None else _budget(step_size, "--step-size", parse_eps),
        "alpha": None if alpha is None else _budget(alpha, "--alpha", parse_eps),
        "beta": beta,
        "random_start": random_start,
        "eps_ramp": eps_ramp,
    }
    if steps is not None and steps <= 0:
        raise ConfigError(f"--steps must be > 0, got {steps}")
    return {k: v for k, v in given.items() if v is not None}


def _settings(pairs: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs as method settings (JSON values when they parse, else text)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out


def _budget(text: str, what: str, parse: Callable[[str], float | None]) -> float:
    try:
        value = parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    if value is None or not value > 0:
        raise ConfigError(f"{what} must be > 0, got {text}")
    return value


@contextmanager
def _warnings_as_notices() -> Iterator[None]:
    """Library warnings (label smoothing, catastrophic overfitting) as one ``warning:`` line each on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        previous = warnings.showwarning

        def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            notice(f"warning: {message}")

        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = previous


class _TrainProgress:
    """Training progress that shows the inner attack's cost: a redrawn line on a terminal, plain lines (at most
    every :data:`PLAIN_SECONDS`, and one per epoch) in a log file or a pipe."""

    def __init__(self, label: str, epochs: int, enabled: bool) -> None:
        self.label, self.epochs, self.enabled = label, epochs, enabled
        self.last = time.monotonic()
        self.status: Any = None
        if enabled and err_console.is_terminal:
            self.status = err_console.status(label)
            self.status.start()

    def step(self, r: StepReport) -> None:
        if not self.enabled:
            return
        share = 100 * r.inner_seconds / r.seconds if r.seconds > 0 else 0.0
        rate = (r.step + 1) / r.seconds if r.seconds > 0 else 0.0
        eta = (r.steps - r.step - 1) / rate if rate > 0 else 0.0
        text = (
            f"{self.label} epoch {r.epoch + 1}/{self.epochs}: step {r.step + 1}/{r.steps}, loss {r.loss:.3f}, "
            f"{rate:.3g} steps/s, epoch ETA {eta:.0f}s, inner attack {r.inner_passes} grad pass(es)/image/step = "
            f"{share:.0f} % of the time"
        )
        if self.status is not None:
            self.status.update(text)
            return
        now = time.monotonic()
        if now - self.last >= PLAIN_SECONDS:
            self.last = now
            notice(text)

    def epoch(self, m: EpochMetrics) -> None:
        if not self.enabled:
            return
        parts = [f"{self.label} epoch {m.epoch}/{self.epochs} done: loss {m.train_loss:.4f}"]
        parts.append(f"train acc {m.train_accuracy:.4f}")
        if m.monitor_clean is not None:
            mon = f"monitor clean {m.monitor_clean:.3f}"
            if m.monitor_pgd is not None:
                mon += f" FGSM {m.monitor_fgsm:.3f} PGD {m.monitor_pgd:.3f}"
            parts.append(mon)
        parts.append(f"{m.seconds:.0f}s ({m.inner_seconds:.0f}s inner attack)")
        if m.overfit:
            parts.append("CATASTROPHIC OVERFITTING")
        line = ", ".join(parts)
        if self.status is not None:
            err_console.print(line, soft_wrap=True)
        else:
            notice(line)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""

    @app.command("train")
    def train_cmd(
        arch: Annotated[str, typer.Option(help="Architecture name (see `robustlab zoo list --archs`).")],
        out: Annotated[Path, typer.Option(help="Run directory (checkpoint, metrics.jsonl, model.safetensors).")],
        dataset: Annotated[str, typer.Option(help="Training dataset (its train split).")] = "cifar10",
        arch_kwargs: Annotated[
            str, typer.Option(help="Architecture arguments as JSON, e.g. '{\"depth\": 20}'.")
        ] = "{}",
        method: Annotated[
            str,
            typer.Option(
                help="Training method: standard, pgd-at, fgsm-rs, trades, sia, reweighted, advprop, mdprop, multibn, "
                "augmax, nofrost, mixed-at, iat, pyramid-at, dial. Methods with their own model layout (advprop, "
                "mdprop, multibn, augmax: multi-branch batch norm; nofrost: normalizer-free; dial: a domain head) "
                "build it, and the saved model records its inference route."
            ),
        ] = "standard",
        setting: Annotated[
            list[str] | None,
            typer.Option(
                "--set",
                help="Any other method setting as KEY=VALUE (repeatable; VALUE read as JSON when it parses, else "
                "as text), e.g. --set kind=ce --set beta=6 for dial.",
            ),
        ] = None,
        eps: Annotated[str | None, typer.Option(help="Training budget (adversarial methods), e.g. 8/255.")] = None,
        steps: Annotated[int | None, typer.Option(help="Inner attack steps (pgd-at, trades).")] = None,
        step_size: Annotated[
            str | None, typer.Option(help="Inner step size (pgd-at, trades); default 2.5·eps/steps.")
        ] = None,
        alpha: Annotated[str | None, typer.Option(help="FGSM step (fgsm-rs); default 1.25·eps.")] = None,
        beta: Annotated[float | None, typer.Option(help="Weight of the KL term (trades); default 6.")] = None,
        random_start: Annotated[
            bool | None, typer.Option("--random-start/--no-random-start", help="Random start (pgd-at, fgsm-rs).")
        ] = None,
        eps_ramp: Annotated[
            float | None,
            typer.Option(help="pgd-at: fraction of the training over which the budget rises linearly to --eps."),
        ] = None,
        attack_bn: Annotated[str, typer.Option(help="Batch-norm mode of the inner attack: eval or train.")] = "eval",
        epochs: Annotated[int, typer.Option(min=1, help="Epochs.")] = 30,
        batch_size: Annotated[int, typer.Option(min=1, help="Batch size (global, over all processes).")] = 128,
        lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.1,
        optimizer: Annotated[str, typer.Option(help="sgd or adam.")] = "sgd",
        schedule: Annotated[str, typer.Option(help="one-cycle, cyclic, piecewise or constant.")] = "one-cycle",
        warmup: Annotated[
            float, typer.Option(help="one-cycle: warm-up fraction; cyclic: where the rate peaks.")
        ] = 0.15,
        weight_decay: Annotated[float, typer.Option(help="L2 penalty on weights.")] = 5e-4,
        momentum: Annotated[float, typer.Option(help="SGD momentum (Nesterov).")] = 0.9,
        label_smoothing: Annotated[
            float | None, typer.Option(help="Default: 0.1 for standard, 0 for adversarial methods.")
        ] = None,
        augment: Annotated[str, typer.Option(help="crop-flip, crop or none.")] = "crop-flip",
        normalize: Annotated[
            bool, typer.Option("--normalize/--no-normalize", help="Normalise with the training set's statistics.")
        ] = True,
        monitor_n: Annotated[int, typer.Option(min=0, help="Held-out monitor images (0: no monitor).")] = 256,
        on_overfit: Annotated[str, typer.Option(help="On catastrophic overfitting: warn, stop or rollback.")] = "warn",
        device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
        memory_format: Annotated[
            str,
            typer.Option(
                help="The network's layout while it trains: auto (channels-last for a convolutional network on "
                "CPU, where oneDNN's convolutions run faster: a PGD-AT epoch 0.70x on vgg8-w25, 0.91x on "
                "ResNet-20, the same on ResNet-8; contiguous elsewhere or where the network cannot run "
                "channels-last), channels_last or contiguous. Not part of the run's fingerprint; the saved "
                "weights are the same either way up to float summation order."
            ),
        ] = "auto",
        audit: Annotated[
            bool | None,
            typer.Option(
                "--audit/--no-audit",
                help="End an adversarial run (pgd-at, fgsm-rs, trades) with the gradient-masking audit at the "
                "training budget, written to audit.json in --out (default: on for adversarial methods).",
            ),
        ] = None,
        audit_n: Annotated[
            int, typer.Option("--audit-n", help="Held-out test points the audit attacks (the first N).")
        ] = 200,
        seed: SeedOpt = 0,
        threads: ThreadsOpt = None,
        data: DataOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Train ARCH on DATASET with a training method; re-running the same command resumes from the last finished
        epoch (a changed setting is refused, naming it).

        Under `torchrun --nproc_per_node N -m robustlab train ...` the run is data-parallel (DDP; gloo on CPU,
        NCCL on GPU) and only rank 0 writes. A named dataset's test split is evaluated after training (test
        accuracy; its first --monitor-n images are the per-epoch monitor batch); a npz: file or an image folder has
        one split, so only the accuracy on the training images is reported (train accuracy).

        An adversarial run (pgd-at, fgsm-rs, trades) ends with the gradient-masking audit at the training budget on
        the first --audit-n test points (a reduced ladder: minutes, not hours), written to audit.json beside the
        weights; --no-audit skips it.
        """
        import json

        from robustlab.train import TrainConfig
        from robustlab.train import distributed as ddp
        from robustlab.train.layout import check_memory_format
        from robustlab.train.standalone import train_architecture

        set_threads(threads)
        with user_errors(), _warnings_as_notices():
            try:
                kwargs = json.loads(arch_kwargs)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--arch-kwargs is not valid JSON: {exc}") from exc
            params = _method_params(method, eps, steps, step_size, alpha, beta, random_start, eps_ramp)
            params.update(_settings(setting or []))
            check_memory_format(memory_format)
            if audit_n < 1:
                raise ConfigError(f"--audit-n must be >= 1 (points audited), got {audit_n}")
            if audit and method == "standard":
                raise ConfigError(
                    "--audit audits at the training budget, which the standard method has none of: use it with "
                    "pgd-at, fgsm-rs or trades, or run `robustlab audit --model <weights> --eps ...`"
                )
            cfg = TrainConfig(
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                momentum=momentum,
                weight_decay=weight_decay,
                label_smoothing=label_smoothing,
                warmup=warmup,
                augment=augment,
                seed=seed,
                method=method,
                method_params=params,
                optimizer=optimizer,
                schedule=schedule,
                attack_bn=attack_bn,
                monitor_n=monitor_n,
                on_overfit=on_overfit,
            )
            check_writable(out, "--out", folder=True)
            world = ddp.setup(device)
            progress = _TrainProgress(f"train {arch} ({cfg.method})", epochs, enabled=not json_out and world.main)
            audit_bar = ExitStack()
            try:
                result = train_architecture(
                    arch,
                    kwargs,
                    dataset,
                    cfg,
                    out,
                    data_dir=data,
                    normalize=normalize,
                    device=device,
                    memory_format=memory_format,
                    on_step=progress.step,
                    on_epoch=progress.epoch,
                    audit_n=audit_n if audit is not False else None,
                    audit_progress=_lazy_bar(audit_bar, progress.close) if not json_out else None,
                )
            finally:
                progress.close()
                audit_bar.close()
                ddp.teardown()
        if not world.main:
            return
        if json_out:
            emit_json(result)
            return
        if result.get("train_stopped"):
            notice(f"training stopped early: {result['train_stopped']}")
        if "test_accuracy" in result:
            notice(f"test accuracy {result['test_accuracy']:.4f}; weights {result['weights']}")
        else:
            notice(
                f"train accuracy {result['train_accuracy']:.4f} (on the training images: {dataset} has no "
                f"separate test split); weights {result['weights']}"
            )
        if result.get("audit"):
            _audit_lines(result["audit"])


def _lazy_bar(stack: ExitStack, before: Callable[[], None]) -> Callable[[str, int, int], None]:
    """The audit's progress callback: its progress display opens at the first call (after training's closes)."""
    bar: list[Callable[..., None]] = []

    def update(label: str, done: int, total: int) -> None:
        if not bar:
            before()
            bar.append(stack.enter_context(count_progress("audit", "model calls")))
        bar[0](done, total, description=f"audit {label}")

    return update


def _audit_lines(a: dict[str, Any]) -> None:
    """The audit's last lines: the honest number against PGD-20 alone, the flags, the verdict, the file."""

    first = a.get("first_pgd") or {}
    versus = f", {first['attack']} alone {first['value']:.4f}" if first.get("value") is not None else ""
    notice(
        f"audit ({a['n']} points of {a['data']}, {a['norm']} eps {a['eps']:.4g}): honest robust accuracy "
        f"{a['robust_accuracy']:.4f} ({a['attack'] or 'no attack broke a point'}{versus}); "
        f"flags: {', '.join(a['codes']) or 'none'}"
    )
    if a.get("note"):
        notice(f"audit note: {a['note']}")
    notice(f"audit verdict: {a['verdict']}")
    notice(f"audit written to {a['file']}{' (kept: same weights and settings)' if a.get('reused') else ''}")
