"""``python -m robustlab`` runs the command line."""

from robustlab.cli import main

main()
