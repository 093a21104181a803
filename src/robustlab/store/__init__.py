"""The results store: atomic Parquet records per job, artifacts, the run manifest and DuckDB views."""

from robustlab.store.manifest import open_run, spec_changes
from robustlab.store.query import connect, has_view
from robustlab.store.records import (
    artifact_path,
    is_done,
    read_records,
    record_files,
    records_path,
    write_records,
)

__all__ = [
    "artifact_path",
    "connect",
    "has_view",
    "is_done",
    "open_run",
    "read_records",
    "record_files",
    "records_path",
    "spec_changes",
    "write_records",
]
