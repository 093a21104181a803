"""DuckDB over the store: one view per record kind present in the run (``records/<kind>/*.parquet``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb

from robustlab.store.kinds import present_kinds
from robustlab.store.records import record_files

_IDENT = re.compile(r"[a-z][a-z0-9_]*")


def connect(run: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per record kind that has records in ``run``.

    The kinds are those found on disk, not a list kept here: a new job kind's records get their view
    without an edit to the store.
    """
    con = duckdb.connect(":memory:")
    for kind in present_kinds(run):
        if _IDENT.fullmatch(kind) and record_files(run, kind):
            pattern = str(Path(run) / "records" / kind / "*.parquet").replace("'", "''")
            con.execute(f"CREATE VIEW \"{kind}\" AS SELECT * FROM read_parquet('{pattern}', union_by_name = true)")
    return con


def has_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the connection has a view of that name."""
    return bool(con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [name]).fetchone()[0])  # type: ignore[index]
