"""DuckDB over the store: one view per record kind (``clean``, ``attack``, ``clever``, ``corruption``,
``transfer``)."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from robustlab.store.records import record_files

KINDS = ("clean", "attack", "clever", "corruption", "transfer")


def connect(run: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per record kind present in ``run``."""
    con = duckdb.connect(":memory:")
    for kind in KINDS:
        if record_files(run, kind):
            pattern = str(Path(run) / "records" / kind / "*.parquet").replace("'", "''")
            con.execute(f"CREATE VIEW {kind} AS SELECT * FROM read_parquet('{pattern}', union_by_name = true)")
    return con


def has_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the connection has a view of that name."""
    return bool(con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [name]).fetchone()[0])  # type: ignore[index]
