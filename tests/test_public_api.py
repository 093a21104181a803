"""The curated public API, httpx-style: each public package's ``__all__`` is exactly its public names, sorted."""

from __future__ import annotations

import importlib
import pkgutil
import re
import types
from pathlib import Path

import pytest

import robustlab

#: Dunder names that belong to the public API (httpx exports its ``__version__`` the same way).
PUBLIC_DUNDERS = {"__version__"}


def _public_packages() -> list[str]:
    """``robustlab`` and every sub-package whose dotted name has no ``_``-prefixed part."""
    names = ["robustlab"]
    for info in pkgutil.walk_packages(robustlab.__path__, "robustlab."):
        if info.ispkg and not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def _ruff_order(name: str) -> tuple[int, list[int | str]]:
    """The order ruff's RUF022 keeps ``__all__`` in (isort style): CONSTANTS, then CamelCase, then the rest,
    each in natural order (``b2`` before ``b10``)."""
    group = 0 if name.upper() == name and name.lower() != name else 1 if name[0].isupper() else 2
    return group, [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _public_names(module: types.ModuleType) -> list[str]:
    """What the package's namespace offers (``dir``, so names a PEP 562 module loads lazily count): its names
    that are not private, not sub-modules and not ``from __future__`` features, in ruff's order."""
    names = [
        name
        for name in dir(module)
        if (not name.startswith("_") or name in PUBLIC_DUNDERS)
        and not isinstance(getattr(module, name), types.ModuleType)
        and type(getattr(module, name)).__module__ != "__future__"  # `annotations` of a __future__ import
    ]
    return sorted(names, key=_ruff_order)


def test_the_order_is_ruffs() -> None:
    names = ["b2", "b10", "B_X", "BX", "Ba", "a", "_x", "__version__", "A1", "AB", "Ab", "aB", "ab"]
    expected = ["A1", "AB", "BX", "B_X", "Ab", "Ba", "__version__", "_x", "a", "aB", "ab", "b2", "b10"]
    assert sorted(names, key=_ruff_order) == expected  # what `ruff check --select RUF022 --fix` writes


@pytest.mark.parametrize("package", _public_packages())
def test_all_lists_exactly_the_public_names_in_order(package: str) -> None:
    module = importlib.import_module(package)
    assert hasattr(module, "__all__"), f"{package} has no __all__"
    assert module.__all__ == _public_names(module)


def test_the_core_entry_points_and_the_version_are_exported() -> None:
    for name in ("load_model", "load_dataset", "ModelAdapter", "evaluate", "train_model", "__version__"):
        assert name in robustlab.__all__


def test_the_version_is_the_one_in_pyproject() -> None:
    from robustlab._version import __version__

    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    declared = re.search(r'^\[project\][^[]*?^version = "([^"]+)"', pyproject, re.M | re.S)
    assert declared is not None
    assert __version__ == robustlab.__version__ == declared.group(1)
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", __version__)


def test_the_errors_docstring_draws_the_exception_tree() -> None:
    import robustlab.errors as errors

    drawn: dict[str, str] = {}  # class → parent, read from the drawing
    parents: list[str] = []
    for line in errors.__doc__.splitlines():  # type: ignore[union-attr]
        match = re.match(r"^ {4}((?:[│ ] {3})*)(?:[├└]── )?(\w+Error)\b", line)
        if match is None:
            continue
        depth = len(match.group(1)) // 4 + (1 if "──" in line else 0)
        del parents[depth:]
        if parents:
            drawn[match.group(2)] = parents[-1]
        parents.append(match.group(2))
    classes = {
        name: cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.RobustlabError) and cls is not errors.RobustlabError
    }
    actual = {name: cls.__mro__[1].__name__ for name, cls in classes.items()}
    assert drawn == actual


def test_the_semantic_attack_runs_from_the_top_level_attack() -> None:
    """``robustlab.attack(model, x, y, "semantic", ...)`` (issue 16): ``eps`` is the pixel budget, the threat model's
    and the search's settings pass through, and the records carry the attribute values and the necessity test."""
    import torch
    from torch import nn

    class Luma(nn.Module):  # class 1 when the mean value is above 0.5: brightness decides
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([0.5 - m, m - 0.5], dim=1) * 50

    x = torch.full((4, 3, 8, 8), 0.52)
    x[2:] = 0.48
    y = torch.tensor([1, 1, 0, 0])
    result = robustlab.attack(Luma(), x, y, "semantic", eps=0, attributes=["brightness", "rotation"], steps=2,
                              restarts=0, grid=3)  # fmt: skip
    assert isinstance(result, robustlab.AttackResult) and result.attack == "semantic" and result.eps == 0
    assert result.summary()["success_rate"] == 1.0
    assert result.columns["undone_by"] == ["brightness"] * 4  # resetting brightness alone undoes every success
    assert all(abs(v) <= 0.1 + 1e-6 for v in result.columns["attr_brightness"]) and "attr_rotation" in result.columns
