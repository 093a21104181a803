"""Exceptions raised by robustlab.

Every error says what is wrong *and* what to do about it. User-facing errors derive from
:class:`RobustlabError`, so the CLI can print them without a traceback (one line on stderr, exit code 2).

The tree (a test keeps it in step with the classes)::

    RobustlabError (Exception)
    ├── ConfigError (also ValueError)          an argument or configuration value is invalid
    ├── DataError                              a dataset is missing, corrupted or malformed
    │   └── ChecksumError                      a file's digest is not the expected one
    ├── InputContractError (also ValueError)   images are not float (N, C, H, W), finite, in [0, 1]
    ├── ModelError                             a model cannot be built, loaded or used as declared
    └── UnknownNameError (also KeyError)       a name is not registered; close matches are listed
"""

from __future__ import annotations


class RobustlabError(Exception):
    """Base class of every error robustlab raises on purpose."""


class DataError(RobustlabError):
    """A dataset is missing, corrupted or malformed."""


class ChecksumError(DataError):
    """A file's checksum differs from the expected value."""

    def __init__(self, path: str, algorithm: str, expected: str, actual: str) -> None:
        self.path, self.algorithm, self.expected, self.actual = path, algorithm, expected, actual
        super().__init__(
            f"checksum mismatch for {path}: expected {algorithm} {expected}, got {actual}. "
            "The file is corrupted or not the official one: delete it and download it again."
        )


class InputContractError(RobustlabError, ValueError):
    """A model input breaks the contract: float NCHW in [0, 1], finite, of the expected shape."""


class ModelError(RobustlabError):
    """A model cannot be built, loaded or used as declared."""


class UnknownNameError(RobustlabError, KeyError):
    """A name is not in a registry; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(RobustlabError, ValueError):
    """An argument or configuration value is invalid."""
