"""The Typer application: the root options (``-v``, ``--version``), one-line usage errors, and the commands."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from robustlab._allocator import retain_freed_memory
from robustlab._version import __version__
from robustlab.cli import _attack, _audit, _clever, _corrupt, _data, _eval, _imbalance, _semantic, _study, _train, _zoo
from robustlab.cli._common import error_line, setup_logging


class _OneLineErrors(TyperGroup):
    """Usage errors (``--batch-size 0``, an unknown option ...) as one ``error:`` line on stderr, exit code 2."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        from typer._click.exceptions import ClickException, NoArgsIsHelpError

        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except NoArgsIsHelpError:
            sys.exit(2)  # the help has been printed
        except ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            error_line(f"{exc.format_message()}{hint}")
            sys.exit(exc.exit_code)
        except typer.Abort:
            error_line("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="robustlab",
    help="Measure, explain and improve the robustness of image classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_OneLineErrors,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"robustlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress details; print the traceback of an error.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    setup_logging(verbose)


for _module in (_eval, _attack, _audit, _semantic, _clever, _corrupt, _study, _train, _imbalance, _data, _zoo):
    _module.register(app)


def main() -> None:
    """Entry point of the ``robustlab`` console script."""
    retain_freed_memory()
    app()
