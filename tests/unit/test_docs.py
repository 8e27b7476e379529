"""The docs stay true to the code: every project-file key and every CLI command is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from projectdeployer.core.model import AutoScaling, BackupConfig, EnvironmentSpec, HorizontalScaling, ProjectSettings, VerticalScaling, spec_fields
from projectdeployer.plugins import get_registry

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _builtin_spec_classes() -> list[type]:
    return [t.spec_class for t in get_registry().service_types.values() if t.plugin.startswith("service_")]


@pytest.mark.parametrize("cls", [ProjectSettings, EnvironmentSpec, AutoScaling, VerticalScaling, HorizontalScaling, BackupConfig, *_builtin_spec_classes()], ids=lambda c: c.__name__)
def test_every_project_file_key_is_documented(cls: type) -> None:
    text = (DOCS / "project-file.md").read_text()
    # Documented = in a table cell (`name`) or in an example assignment (name = ...).
    missing = [f.name for f in spec_fields(cls) if f"`{f.name}" not in text and not re.search(rf"\b{f.name}\s*=", text)]
    assert not missing, f"docs/project-file.md does not mention {missing} of {cls.__name__}"


def test_every_cli_command_is_documented() -> None:
    from projectdeployer.cli import make_cli

    text = (DOCS / "cli.md").read_text()
    missing = [name for name in make_cli().commands if f"`{name}" not in text]
    assert not missing, f"docs/cli.md does not mention {missing}"


def _bounds() -> dict[str, float]:
    """Every upper bound validation enforces, by the constant's name."""
    from projectdeployer.core import model, safety
    from projectdeployer.project import file as projectfile
    from projectdeployer.project import pathcheck, rendersafety, validation

    found: dict[str, float] = {}
    for module in (validation, projectfile, pathcheck, rendersafety, safety, model):
        for name, value in vars(module).items():
            if "MAX" in name.split("_") and isinstance(value, int | float) and not isinstance(value, bool):
                found[f"{module.__name__}.{name}"] = value
    return found


@pytest.mark.parametrize("name", sorted(_bounds()))
def test_every_bound_is_documented(name: str) -> None:
    value = _bounds()[name]
    text = (DOCS / "project-file.md").read_text()
    section = text[text.index("## Bounds and patterns") :]
    number = int(value) if float(value).is_integer() else value
    spellings = {f"{number}", f"{number:,}"} | ({f"{number // (1024 * 1024)} MiB"} if number >= 1024 * 1024 and number % (1024 * 1024) == 0 else set())
    assert any(s in section for s in spellings), f"docs/project-file.md's Bounds and patterns does not state {name} = {number}"


def test_the_pinned_poetry_and_uv_releases_are_the_documented_ones() -> None:
    from projectdeployer.service_types.dockerfiles import POETRY_VERSION, UV_VERSION

    text = (DOCS / "project-file.md").read_text()
    assert f"Poetry ({POETRY_VERSION}) and uv ({UV_VERSION})" in text
