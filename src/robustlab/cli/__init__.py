"""The ``robustlab`` command line: a thin Typer layer; each command calls one library function."""

from __future__ import annotations

from typing import Annotated

import typer

from robustlab._allocator import retain_freed_memory
from robustlab.cli import _attack, _clever, _corrupt, _data, _eval, _study, _train, _zoo
from robustlab.cli._common import setup_logging

app = typer.Typer(
    name="robustlab",
    help="Measure, explain and improve the robustness of image classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    setup_logging(verbose)


for _module in (_eval, _attack, _clever, _corrupt, _study, _train, _data, _zoo):
    _module.register(app)


def main() -> None:
    """Entry point of the ``robustlab`` console script."""
    retain_freed_memory()
    app()
