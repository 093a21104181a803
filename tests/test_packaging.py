"""What the package ships: every data file under ``src/robustlab`` (the zoos' weights, sidecars, manifests and
audits, the report templates) is named by ``[tool.setuptools.package-data]``, so that a wheel carries what an
editable install reads from the source tree."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest

import robustlab

PACKAGE = Path(robustlab.__file__).parent
PYPROJECT = PACKAGE.parents[1] / "pyproject.toml"


def _data_files() -> set[str]:
    return {
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }


def test_every_data_file_of_the_package_is_shipped() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    patterns = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]["robustlab"]
    shipped = {f for pattern in patterns for f in glob.glob(pattern, root_dir=PACKAGE)}  # setuptools' globbing
    files = _data_files()
    assert {"models/zoo/manifest.json", "models/zoo/robust/manifest.json", "models/zoo/sweep/manifest.json"} <= files
    assert not files - shipped, f"not in package-data: {sorted(files - shipped)}"
