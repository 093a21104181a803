"""The results store: one zstd Parquet file per job, written atomically; artifacts in safetensors.

Layout of a run directory::

    manifest.json                    spec, versions, seeds (written once, checked on resume)
    records/<kind>/<job id>.parquet  per-sample records of one job (the file's presence means "done")
    artifacts/<job id>.safetensors   adversarial examples kept for transfer

A job writes its artifact first and its Parquet file last, each to a temporary name that is fsynced and
renamed; a job killed half-way leaves only a temporary file, which every reader ignores (readers glob
``*.parquet``; temporaries end in ``.tmp``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from robustlab._io import atomic_path
from robustlab.store.kinds import schema_of


def records_path(run: str | os.PathLike[str], kind: str, job_id: str) -> Path:
    """Where the records of one job live."""
    return Path(run) / "records" / kind / f"{job_id}.parquet"


def artifact_path(run: str | os.PathLike[str], job_id: str) -> Path:
    """Where the adversarial examples of one job live."""
    return Path(run) / "artifacts" / f"{job_id}.safetensors"


def is_done(run: str | os.PathLike[str], kind: str, job_id: str) -> bool:
    """Whether a job's records are in the store."""
    return records_path(run, kind, job_id).is_file()


def write_records(
    run: str | os.PathLike[str],
    kind: str,
    job_id: str,
    columns: dict[str, list[Any]],
    constants: dict[str, Any] | None = None,
) -> Path:
    """Write one job's per-sample columns (plus constant columns such as the model) atomically.

    The columns must be exactly those of the kind's :class:`~robustlab.store.schema.RecordSchema` (the
    job id is added here); the file carries the kind and its schema version in its metadata.

    Returns:
        The path of the Parquet file.

    Raises:
        SchemaError: a column is missing or unknown, or does not fit its type; nothing is written.
        ValueError: the per-sample columns differ in length.
    """
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"{kind} columns of job {job_id} differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    clash = sorted(set(columns) & set(constants or {}))
    if clash:
        raise ValueError(f"{kind} columns given both per sample and as constants: {', '.join(clash)}")
    data = {"job_id": [job_id] * n, **{k: [v] * n for k, v in (constants or {}).items()}, **columns}
    table = schema_of(kind).table(data)
    final = records_path(run, kind, job_id)
    with atomic_path(final) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return final


def read_records(run: str | os.PathLike[str], kind: str, job_id: str) -> pa.Table:
    """Read one job's records."""
    return pq.read_table(records_path(run, kind, job_id))


def record_files(run: str | os.PathLike[str], kind: str) -> list[Path]:
    """All finished Parquet files of one kind (temporary files excluded)."""
    return sorted((Path(run) / "records" / kind).glob("*.parquet"))
