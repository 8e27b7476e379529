"""Test instruments stand apart from the product (issue 13, item 6).

The package ships no ``projectdeployer.testing``: the suite's fixtures (image bed, fake
OpenSearch, many-services projects) are in tests/support and are not installed. What users may
run to rehearse a deploy is the optional ``projectdeployer.rehearse`` (the ``rehearse`` extra,
docs/rehearse.md), and no module of the package outside it imports it, checked on the syntax
tree of every file, so that a deploy never loads it.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import projectdeployer

pytestmark = pytest.mark.unit

PACKAGE = Path(projectdeployer.__file__).resolve().parent
ROOT = Path(__file__).resolve().parents[2]
REHEARSE = "projectdeployer.rehearse"


def module_name(path: Path) -> str:
    """The dotted name of the package's file ``path`` (a package's ``__init__.py`` is the package)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, *, is_package: bool) -> Iterator[str]:
    """Every module name the source of ``module`` may import: ``import`` and ``from`` statements
    anywhere (inside functions and ``TYPE_CHECKING`` blocks too), relative ones resolved, each
    name imported by ``from X import name`` also as ``X.name`` (it may be a submodule), and the
    constant argument of ``importlib.import_module(...)`` or ``__import__(...)``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *(node.module.split(".") if node.module else [])])
            yield origin
            yield from (f"{origin}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in {"import_module", "__import__"}:
                yield node.args[0].value


def is_rehearse(name: str) -> bool:
    return name == REHEARSE or name.startswith(REHEARSE + ".")


def test_the_package_has_no_testing_module() -> None:
    top_level = {info.name for info in pkgutil.iter_modules(projectdeployer.__path__)}
    assert "rehearse" in top_level  # the listing looks where the package really is
    assert "testing" not in top_level
    assert not (PACKAGE / "testing.py").exists()
    assert not (PACKAGE / "testing" / "__init__.py").exists()
    # A checkout that ran the old code may keep an untracked testing/__pycache__, which Python
    # imports as an empty namespace package; nothing importable may be left in it.
    spec = importlib.util.find_spec("projectdeployer.testing")
    if spec is not None:
        assert spec.origin is None, spec
        assert not [path for location in spec.submodule_search_locations or [] for path in Path(location).glob("*.py")]


def test_nothing_in_the_package_outside_rehearse_imports_it() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50  # the walk sees the whole package
    offenders = []
    for path in files:
        if (PACKAGE / "rehearse") in path.parents:
            continue
        module = module_name(path)
        for name in imported_names(path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py"):
            if is_rehearse(name):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}: {name}")
    assert offenders == []


def test_no_entry_point_loads_rehearse() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    targets = [value for group in project.get("entry-points", {}).values() for value in group.values()]
    targets += list(project.get("scripts", {}).values())
    assert targets  # the plugins and the command are declared here
    assert [target for target in targets if is_rehearse(target.split(":")[0])] == []
    assert "rehearse" in project["optional-dependencies"]  # the extra docs/rehearse.md installs


@pytest.mark.parametrize(
    ("source", "module", "is_package"),
    [
        ("import projectdeployer.rehearse.loadgen", "projectdeployer.deploy.server", False),
        ("from projectdeployer.rehearse import LoadGenerator", "projectdeployer.deploy.server", False),
        ("from projectdeployer import rehearse", "projectdeployer.deploy.server", False),
        ("from ..rehearse.loadgen import LoadGenerator", "projectdeployer.deploy.server", False),
        ("from .. import rehearse", "projectdeployer.deploy.server", False),
        ("from . import rehearse", "projectdeployer", True),
        ("def f():\n    from ...rehearse import loadgen", "projectdeployer.providers.sandbox.server", False),
        ("import importlib\nimportlib.import_module('projectdeployer.rehearse')", "projectdeployer.cli", True),
    ],
)
def test_the_check_sees_every_way_to_import(source: str, module: str, is_package: bool) -> None:
    assert any(is_rehearse(name) for name in imported_names(source, module, is_package=is_package))


def test_the_check_resolves_relative_imports_to_their_own_package() -> None:
    names = set(imported_names("from .loadgen import x\nfrom .. import core", "projectdeployer.service_types.redis", is_package=False))
    assert names == {"projectdeployer.service_types.loadgen", "projectdeployer.service_types.loadgen.x", "projectdeployer", "projectdeployer.core"}
