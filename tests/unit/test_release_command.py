"""``release_command`` (issue 12 item 7) as validation sees it; the deploy's behaviour is proven
against the real engine in tests/docker/test_deploy.py."""

from __future__ import annotations

import pytest

from projectdeployer.core.errors import ConfigError
from projectdeployer.plugins import get_registry
from projectdeployer.project.file import build_project
from projectdeployer.project.ownnames import Shape, collisions

pytestmark = pytest.mark.unit


def _load(**services: dict) -> None:
    build_project({"project": {"name": "shop"}, "services": services}, source="f.toml", registry=get_registry())


def test_a_web_service_takes_a_release_command() -> None:
    _load(api={"type": "python", "release_command": "alembic upgrade head && echo done"})


@pytest.mark.parametrize(
    ("services", "fragment"),
    [
        ({"db": {"type": "postgres", "release_command": "x"}}, "services.db.release_command: a postgres service runs its image as it is"),
        ({"job": {"type": "python", "schedule": "0 2 * * *", "release_command": "x"}}, "services.job.release_command: a scheduled job runs its own command"),
        ({"api": {"type": "python", "release_command": "migrate\nrm -rf /"}}, "services.api.release_command: 'migrate\\nrm -rf /' contains control characters"),
        ({"api": {"type": "python", "release_command": "  "}}, "services.api.release_command: is empty"),
        ({"api": {"type": "python", "release_command": "echo 'unclosed"}}, "cannot be split into arguments"),
    ],
    ids=["stateful", "scheduled", "newline", "blank", "unbalanced-quote"],
)
def test_a_release_command_that_cannot_run_is_one_line(services: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(**services)
    (line,) = info.value.lines()
    assert fragment in line, line


def test_the_release_container_name_is_the_tools_own() -> None:
    # api's release container is api_release: a job of that name would collide.
    found = dict(collisions({"api": Shape.SLOTTED, "api_release": Shape.SINGLE}))
    assert found == {"api_release": "'api_release' would name a container or volume 'api_release', as service 'api' does"}
