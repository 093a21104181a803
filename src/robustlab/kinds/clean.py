"""The ``clean`` job kind: every model's clean predictions on the candidate images.

It runs first; its records choose the evaluation subset (``dataset.subset: common-correct`` keeps the images
every model classifies correctly) that the later kinds plan on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from robustlab.analysis.summary import add_rate, query_rows
from robustlab.bench.jobs import JobContext, model_source, record_constants
from robustlab.bench.plan import Job, PlanState, data_params
from robustlab.bench.spec import StudySpec
from robustlab.errors import DataError
from robustlab.models import predict_logits
from robustlab.report.html import Section, rate_cell
from robustlab.stats import Rate
from robustlab.store import has_view, read_records, write_records
from robustlab.store.kinds import JobKind, register_kind
from robustlab.store.schema import RecordSchema

log = logging.getLogger(__name__)


class CleanAnalysis:
    """Clean accuracy per model on the screened candidates, and the top-1 error each model is placed at.

    ``rows``: ``model``, ``family``, ``source``, ``n``, ``correct`` (k of n) and ``accuracy`` with its interval
    (``accuracy_low``, ``accuracy_high``, ``accuracy_k``, ``accuracy_n``). ``errors``: the recorded
    full-test-set error when the run recorded one (the manifest's context), else the candidates'.
    ``error_rates``: the same errors as rates with their intervals, ``None`` where the recorded accuracy
    came without its number of images (then no interval can be given).
    """

    def __init__(self, rows: list[dict[str, Any]], recorded: dict[str, Any]) -> None:
        self.rows = [add_rate(r, "accuracy", r["correct"], r["n"]) for r in rows]
        self.errors: dict[str, float] = {}
        self.error_rates: dict[str, Rate | None] = {}
        for r in rows:
            rec = recorded.get(r["model"]) or {}
            acc, images = rec.get("test_accuracy"), rec.get("test_images")
            self.errors[r["model"]] = 1.0 - float(r["accuracy"] if acc is None else acc)
            if acc is None:
                self.error_rates[r["model"]] = Rate(int(r["n"]) - int(r["correct"]), int(r["n"]))
            elif images:
                self.error_rates[r["model"]] = Rate(round((1.0 - float(acc)) * int(images)), int(images))
            else:
                self.error_rates[r["model"]] = None

    @property
    def sources(self) -> dict[str, str]:
        return {r["model"]: r["source"] for r in self.rows}

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "errors": self.errors,
            "error_rates": {m: None if r is None else r.to_dict() for m, r in self.error_rates.items()},
        }


class Clean(JobKind):
    name = "clean"
    schema = RecordSchema(
        "clean",
        2,
        (
            ("model", pa.string()),
            ("family", pa.string()),
            ("source", pa.string()),
            ("index", pa.int64()),
            ("label", pa.int64()),
            ("pred", pa.int64()),
            ("correct", pa.bool_()),
            ("margin", pa.float64()),
        ),
    )

    def plan(self, spec: StudySpec, state: PlanState) -> list[Job]:
        params = data_params(spec)
        return [Job("clean", m, params, tuple(state.candidates), label=f"clean {m}") for m in spec.models]

    def settle(self, spec: StudySpec, state: PlanState, run: Path) -> None:
        """Choose the evaluation subset from the finished clean records."""
        d = spec.dataset
        if d.subset == "random":
            state.subset = state.candidates
            return
        ok = set(state.candidates)
        for job in state.jobs["clean"]:
            t = read_records(run, "clean", job.id)
            ok &= set(pc.filter(t["index"], t["correct"]).to_pylist())
        chosen = [i for i in state.candidates if i in ok][: d.n]
        if not chosen:
            raise DataError("no image is classified correctly by every model: use subset: random, or fewer models")
        if len(chosen) < d.n:
            log.warning(
                "only %d of the %d candidates are classified correctly by every model (wanted %d); "
                "raise dataset.pool for more",
                len(chosen),
                len(state.candidates),
                d.n,
            )
        state.subset = chosen

    def run(self, job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
        x, y, idx = ctx.images(job)
        model = ctx.model(job.model)
        logits = predict_logits(model, x, job.params["batch_size"]).cpu()
        pred, y = logits.argmax(1), y.cpu()
        top2 = logits.topk(2, dim=1).values
        cols = {
            "index": idx.tolist(),
            "label": y.tolist(),
            "pred": pred.tolist(),
            "correct": (pred == y).tolist(),
            "margin": (top2[:, 0] - top2[:, 1]).tolist(),
        }
        write_records(run, "clean", job.id, cols, record_constants(job, model, source=model_source(model)[1]))
        return {"accuracy": float((pred == y).float().mean())}

    def analyse(self, con: Any, study: Any) -> CleanAnalysis | None:
        if not has_view(con, "clean"):
            return None
        rows = query_rows(
            con,
            "SELECT model, family, source, count(*) AS n, sum(correct::INT) AS correct, "
            "avg(correct::INT) AS accuracy FROM clean GROUP BY ALL ORDER BY model",
        )
        return CleanAnalysis(rows, study.context.get("models", {}))

    def report(self, study: Any) -> list[Section]:
        a: CleanAnalysis | None = study["clean"]
        if a is None:
            return []

        def error(model: str) -> Any:
            rate = a.error_rates[model]
            return f"{a.errors[model]:.4f} (n not recorded)" if rate is None else rate_cell(rate)

        summary = {
            r["model"]: {
                "family": r["family"],
                "clean accuracy (screened)": rate_cell(Rate(r["correct"], r["n"])),
                "top-1 error (test)": error(r["model"]),
            }
            for r in a.rows
        }
        return [Section("clean", "Clean accuracy", summary=summary, tables=[("clean", a.rows)], in_nav=False)]


register_kind(Clean())
