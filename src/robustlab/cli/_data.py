"""``robustlab data``: check the data directory."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from robustlab.cli._common import DataOpt, JsonOpt, emit_json, out_console, user_errors


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Datasets: check files and checksums.", no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("check")
    def check(data: DataOpt = None, json_out: JsonOpt = False) -> None:
        """Verify every dataset file present in the data directory against its official checksum."""
        from robustlab.data import check_data, resolve_data_dir

        with user_errors():
            root = resolve_data_dir(data)
            checks = check_data(data)
        bad = [c for c in checks if c.status == "mismatch"]
        if json_out:
            emit_json({"data_dir": str(root), "ok": not bad, "files": [c.to_dict() for c in checks]})
        else:
            table = Table("dataset", "file", "status", "algorithm", title=f"data directory {root}")
            for c in checks:
                colour = {"ok": "green", "missing": "yellow"}.get(c.status, "red")
                table.add_row(c.dataset, c.file, Text(c.status, style=colour), c.algorithm or "")
            out_console.print(table)
        if bad:
            raise typer.Exit(1)
