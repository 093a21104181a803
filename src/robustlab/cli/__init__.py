"""The ``robustlab`` command line: a thin Typer layer; each command calls one library function.

Importing this package imports neither torch nor any other heavy dependency (a test checks it): commands import
what they need inside their bodies, so ``robustlab --help`` and ``robustlab <command> --help`` are fast.
"""

from robustlab.cli._app import app, main

__all__ = ["app", "main"]
