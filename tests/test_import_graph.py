"""The import graph follows DESIGN.md's arrows, read from the source's syntax trees (nothing is imported).

``cli → bench/train/report → analysis → store`` and ``bench/train → attacks/metrics → models/data``; the public
lower packages ``threat`` and, below it, ``transforms`` and the base modules (errors, stats, _io, ...) sit below
everything. Every import
counts, also one inside a function or under ``TYPE_CHECKING``: a dependency is a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Modules every package may import, which import only each other.
BASE = {"errors", "stats", "_io", "_registry", "_version", "_allocator"}
#: Packages that judge and measure: none of them may import a package that runs, stores or shows studies.
LOWER = {"attacks", "metrics", "models", "data", "threat", "transforms"}
UPPER = {"bench", "kinds", "store", "report", "cli", "analysis", "train"}
#: The gradient-masking audit runs attacks on models for the packages above it (cli, kinds, train).
MIDDLE = {"audit"}

#: (importer packages, packages they must not import, the arrow it would break)
FORBIDDEN = [
    (
        LOWER,
        UPPER,
        "attacks/metrics/models/data/threat/transforms never import bench, store, report, cli, analysis, train",
    ),
    (LOWER, MIDDLE, "attacks/metrics/models/data/threat/transforms never import audit"),
    (MIDDLE, UPPER, "audit → attacks/metrics/models/data, never up to bench, store, report, cli, analysis, train"),
    ({"models", "data"}, {"attacks", "metrics"}, "attacks/metrics → models/data, never back"),
    (
        {"threat"},
        (LOWER | UPPER) - {"threat", "transforms"},
        "threat is a lower public package: it imports only transforms",
    ),
    (
        {"transforms"},
        (LOWER | UPPER) - {"transforms"},
        "transforms is the lowest public package: it imports only the base",
    ),
    (BASE, LOWER | UPPER, "the base modules import only each other"),
    ({"store"}, UPPER - {"store"}, "store is the bottom of cli → bench/train/report → analysis → store"),
    ({"analysis"}, UPPER - {"analysis", "store"}, "analysis → store only, among the upper packages"),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every ``robustlab`` name the module at ``path`` imports: modules, and ``module.name`` for each name of a
    ``from module import name`` (relative imports resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            if name == "robustlab" or name.startswith("robustlab."):
                yield name, node.lineno


def _edges() -> list[tuple[str, str, str]]:
    """(importer module, imported name, "file:line") for every import in src/robustlab."""
    return [
        (_module_name(path), name, f"{path.relative_to(SRC)}:{line}")
        for path in sorted((SRC / "robustlab").rglob("*.py"))
        for name, line in _imports(path)
    ]


EDGES = _edges()


def _top(name: str) -> str:
    """``robustlab.attacks._gradient`` → ``attacks``; ``robustlab`` → ``""``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_scan_sees_the_imports() -> None:
    # a guard against a scan that finds nothing and so passes everything
    pairs = {(_top(a), _top(b)) for a, b, _ in EDGES}
    assert {("attacks", "threat"), ("metrics", "models"), ("cli", "bench"), ("analysis", "store")} <= pairs
    assert any(b == "robustlab.data.corruptions._base.register" for _, b, _ in EDGES)  # from-imports resolved


@pytest.mark.parametrize(("importers", "forbidden", "arrow"), FORBIDDEN, ids=[f[2] for f in FORBIDDEN])
def test_no_import_goes_against_the_arrows(importers: set[str], forbidden: set[str], arrow: str) -> None:
    bad = [
        f"{where}: {a} imports {b}"
        for a, b, where in EDGES
        if _top(a) in importers and _top(b) in forbidden and _top(a) != _top(b)
    ]
    assert not bad, f"{arrow}:\n" + "\n".join(bad)


def _private_owner(name: str) -> str | None:
    """The package that owns the first ``_private`` part of ``name`` below ``robustlab`` (``None`` if all public).

    ``robustlab.attacks._gradient.x`` → ``robustlab.attacks``; ``robustlab._io`` → ``robustlab`` (every module
    may use the root's private modules).
    """
    parts = name.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def test_no_module_imports_another_packages_private_module_or_name() -> None:
    bad = []
    for a, b, where in EDGES:
        owner = _private_owner(b)
        if owner is not None and not (a == owner or a.startswith(owner + ".")):
            bad.append(f"{where}: {a} imports {b}, private to {owner}")
    assert not bad, "\n".join(bad)


def test_private_owner_reads_the_first_private_part() -> None:
    assert _private_owner("robustlab.attacks._gradient.run") == "robustlab.attacks"
    assert _private_owner("robustlab.bench.spec._Strict") == "robustlab.bench.spec"
    assert _private_owner("robustlab._io.atomic_path") == "robustlab"
    assert _private_owner("robustlab.metrics.clever.__all__") is None
    assert _private_owner("robustlab.models.adapter.check_images") is None


def test_no_two_modules_import_each_other() -> None:
    # e.g. metrics/clever.py re-exported compare_with_attack from _clever_compare, which needs clever's result type
    modules = {_module_name(p): p.name == "__init__.py" for p in (SRC / "robustlab").rglob("*.py")}

    def owner_module(name: str) -> str:
        while name not in modules:  # robustlab.models.adapter.check_images → robustlab.models.adapter
            name = name.rpartition(".")[0]
        return name

    edges = {(a, owner_module(b)) for a, b, _ in EDGES}
    pairs = sorted(
        f"{a} ↔ {b}"
        for a, b in edges
        if a < b and (b, a) in edges and not modules[a] and not modules[b]  # not a package re-exporting its modules
    )
    assert not pairs, "\n".join(pairs)
