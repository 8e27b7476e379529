"""Fixtures shared by every test module."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Environment variables that would make a test depend on the machine it runs on.
_MACHINE_ENV = (
    "PROJECTDEPLOYER_PROJECTS_DIR",
    "DIGITALOCEAN_API_TOKEN",
    "PROJECTDEPLOYER_LOAD_PLUGINS",
)


@pytest.fixture(autouse=True)
def pd_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets a fresh, empty ``$PROJECTDEPLOYER_HOME`` and none of the machine's settings.

    Request it by name to get the path.
    """
    home = tmp_path / "pd_home"
    home.mkdir()
    monkeypatch.setenv("PROJECTDEPLOYER_HOME", str(home))
    for name in _MACHINE_ENV:
        monkeypatch.delenv(name, raising=False)
    return home
