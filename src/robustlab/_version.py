"""The package version, in a module that imports nothing (for ``--version``, run manifests and ``robustlab``)."""

__version__ = "0.1.0"
