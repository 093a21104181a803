"""The ``transfer`` job kind: every model's predictions on every model's stored adversarial examples (of the
attack configurations with ``transfer: true``), and the transfer matrices built from them.

It has no spec section: it runs whenever an attack configuration keeps its adversarial examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from robustlab.analysis.transfer import TransferMatrix, transfer_matrices
from robustlab.bench.jobs import JobContext, record_constants
from robustlab.bench.plan import Job, PlanState, data_params
from robustlab.bench.spec import StudySpec
from robustlab.models import predict_logits
from robustlab.report.figures import heatmap, labels
from robustlab.report.html import Section, render, sources_of
from robustlab.stats import Rate
from robustlab.store import artifact_path, read_records, write_records
from robustlab.store.kinds import JobKind, register_kind
from robustlab.store.schema import RecordSchema

_TEXT = """<p>Rows: source model whose adversarial examples are evaluated; columns: target model. Untargeted: error
rate of the target; targeted: rate at which the target predicts the intended class. Over inputs both models
classify correctly, so the diagonal is the white-box success rate. The heatmaps' hover text and the tables give
each rate's 95 % Wilson interval and counts; a blank cell had no input both models classify correctly.</p>"""

_TABLE = """<details><summary>{{ title }}: table with intervals</summary>
<div class="wide"><table><tr><th class="l">source (row) / target (column)</th>
{% for m in names %}<th>{{ m }}</th>{% endfor %}</tr>
{% for row in cells %}<tr><td class="l">{{ names[loop.index0] }}</td>{% for r in row %}<td>{{ rate_cell(r) }}</td>
{% endfor %}</tr>{% endfor %}</table></div></details>"""

_COLUMNS = ("source_job", "source_model", "key", "target_mode", "index", "label", "target", "source_success", "pred")


class Transfer(JobKind):
    name = "transfer"
    after = ("attack",)
    schema = RecordSchema(
        "transfer",
        1,
        (
            ("model", pa.string()),
            ("family", pa.string()),
            ("source_job", pa.string()),
            ("source_model", pa.string()),
            ("key", pa.string()),
            ("target_mode", pa.string()),
            ("index", pa.int64()),
            ("label", pa.int64()),
            ("target", pa.int64()),
            ("source_success", pa.bool_()),
            ("pred", pa.int64()),
        ),
    )

    def plan(self, spec: StudySpec, state: PlanState) -> list[Job]:
        """For each target model, one job over every source's adversarial examples of transfer configurations."""
        sources = [j for j in state.jobs.get("attack", []) if j.params["transfer"]]
        if not sources:
            return []
        src = tuple(sorted(j.id for j in sources))
        params = data_params(spec)
        return [
            Job("transfer", m, params, sources[0].indices, depends=src, label=f"transfer onto {m}") for m in spec.models
        ]

    def run(self, job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
        from safetensors.torch import load_file

        model = ctx.model(job.model)
        parts: dict[str, list[Any]] = {k: [] for k in _COLUMNS}
        for src in job.depends:
            rec = read_records(run, "attack", src).to_pydict()
            adv = load_file(str(artifact_path(run, src)))["adversarials"]  # (N, C, H, W) judged examples
            pred = predict_logits(model, adv, job.params["batch_size"]).argmax(1)
            n = len(pred)
            parts["source_job"] += [src] * n
            parts["source_model"] += rec["model"]
            parts["key"] += rec["key"]
            parts["target_mode"] += rec["target_mode"]
            parts["index"] += rec["index"]
            parts["label"] += rec["label"]
            parts["target"] += rec["target"]
            parts["source_success"] += rec["success"]
            parts["pred"] += pred.tolist()
        write_records(run, "transfer", job.id, parts, record_constants(job, model))
        return {"sources": len(job.depends)}

    def analyse(self, con: Any, study: Any) -> list[TransferMatrix]:
        return transfer_matrices(con)

    def report(self, study: Any) -> list[Section]:
        matrices: list[TransferMatrix] = study["transfer"] or []
        if not matrices:
            return []
        sources = sources_of(study)
        attacks = study["attack"]
        figures = []
        tables = []
        html = [render(_TEXT)]
        for i, t in enumerate(matrices):
            names = labels(t.models, sources)
            title = f"Transfer: {attacks.label(t.key) if attacks is not None else t.key}"
            what = "error rate" if t.target_mode == "untargeted" else "target match rate"
            n = range(len(t.models))
            cells: list[list[Rate | None]] = [[t.rate(a, b) for b in n] for a in n]
            fig = heatmap(
                t.rates,
                names,
                names,
                title,
                what,
                "target model",
                "source model",
                digits=3,
                rates=cells,
                missing="no input both models classify correctly",
            )
            figures.append((f"transfer_{i}", fig))
            html.append(render(_TABLE, title=title, names=names, cells=cells))
            tables.append((f"transfer_{i}_{t.key}", t.rows()))
        return [Section("transfer", "Transfer", html=html, figures=figures, tables=tables)]


register_kind(Transfer())
