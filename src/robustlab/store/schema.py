"""Record schemas: the one owner of every record kind's columns, types and version.

A record kind (``clean``, ``attack``, ...) declares its columns once, as a :class:`RecordSchema`, in the
module of its job kind (see :mod:`robustlab.store.kinds`) and registers it here. The store then:

- writes every Parquet file with exactly those columns and types (:func:`robustlab.store.write_records`
  refuses a missing or unknown column with a :class:`SchemaError` naming both lists);
- puts the kind and its version into the file's metadata (``robustlab.kind``, ``robustlab.schema_version``),
  so a record file says what it holds without a column repeated on every row;
- gives the version to the job ids (:class:`robustlab.bench.plan.Job`): bumping a kind's version re-runs its
  jobs instead of mixing old records with new ones.

Nothing else declares a record version: attacks and metrics produce columns, the store owns their schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from robustlab._registry import Registry
from robustlab.errors import RobustlabError

#: Columns every record file has: the job that wrote it.
COMMON_FIELDS: tuple[tuple[str, pa.DataType], ...] = (("job_id", pa.string()),)

#: Parquet metadata keys written next to the data.
META_KIND = b"robustlab.kind"
META_VERSION = b"robustlab.schema_version"


class SchemaError(RobustlabError):
    """Columns handed to the store do not match their record kind's schema (a bug in a job kind)."""


@dataclass(frozen=True)
class RecordSchema:
    """The columns of one record kind.

    Attributes:
        kind: Record kind (the folder ``records/<kind>/``, the DuckDB view's name).
        version: Bumped whenever the records change meaning or columns; part of every job id of the kind.
        fields: ``(name, arrow type)`` of every column after ``job_id``, in file order.
    """

    kind: str
    version: int
    fields: tuple[tuple[str, pa.DataType], ...]

    @property
    def arrow(self) -> pa.Schema:
        """The arrow schema of a record file, with the kind and version in its metadata."""
        return pa.schema(
            [pa.field(n, t) for n, t in (*COMMON_FIELDS, *self.fields)],
            metadata={META_KIND: self.kind.encode(), META_VERSION: str(self.version).encode()},
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in (*COMMON_FIELDS, *self.fields))

    def table(self, data: Mapping[str, Sequence[Any]]) -> pa.Table:
        """Build the arrow table of ``data`` (column name → values), refusing missing or unknown columns.

        Raises:
            SchemaError: naming the missing and unknown columns.
        """
        missing = [n for n in self.names if n not in data]
        unknown = sorted(set(data) - set(self.names))
        if missing or unknown:
            raise SchemaError(
                f"{self.kind} records (schema version {self.version}) do not match their schema: "
                f"missing {', '.join(missing) or 'none'}; unknown {', '.join(unknown) or 'none'}. "
                f"Declare new columns in the kind's RecordSchema and bump its version."
            )
        try:
            return pa.table({n: data[n] for n in self.names}, schema=self.arrow)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SchemaError(f"{self.kind} records do not fit their schema: {exc}") from exc


RECORD_SCHEMAS: Registry[RecordSchema] = Registry("record kind")


def register_schema(schema: RecordSchema) -> RecordSchema:
    """Declare a record kind's schema (once per kind)."""
    return RECORD_SCHEMAS.register(schema.kind, schema)
