"""Many services on this machine's engine (issue 12 item 8): a first deploy of 20 web services
succeeds, and an unchanged redeploy of the 20 costs at most twice one of a single service.

Ratios inside one run, never absolute times (the machine is shared and noisy): the two
projects are redeployed alternately and the medians compared. Every service runs one image
built once (tests.support.manyservices), so no build is timed."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from projectdeployer import ProjectDeployer
from projectdeployer.core.runtime import LABEL_PROJECT, LABEL_SERVICE
from projectdeployer.environment.releases import ReleaseHistory
from tests.docker.conftest import remove_project
from tests.support.manyservices import build_shared_image, many_services_toml, service_names

pytestmark = pytest.mark.docker

QUIET = {"log": lambda line: None}
#: Unchanged redeploys of each project, alternately; the medians are compared.
REPEATS = 5


@pytest.fixture
def projects(tmp_path: Path, bed: dict[str, str], docker_client) -> Iterator[dict[int, tuple[str, ProjectDeployer]]]:  # type: ignore[no-untyped-def]
    """A 1-service and a 20-service project sharing one built image; all removed afterwards."""
    base = f"ms{os.getpid() % 10000}{int(time.time() * 1000) % 100000}"
    names = {1: f"{base}one", 20: f"{base}twenty"}
    try:
        image = build_shared_image(tmp_path, base)
        made = {}
        for count, name in names.items():
            path = tmp_path / f"{name}.toml"
            path.write_text(many_services_toml(name, count, image))
            made[count] = (name, ProjectDeployer(str(path), path=path))
        yield made
    finally:
        for name in [*names.values(), base]:
            remove_project(docker_client, name)


def _ids(docker_client, name: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """container name -> id of the project's service containers."""
    found = docker_client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={name}"})
    return {c.name: c.id for c in found if c.labels.get(LABEL_SERVICE)}


def test_an_unchanged_redeploy_of_20_services_costs_at_most_twice_one_of_a_single_service(projects: dict[int, tuple[str, ProjectDeployer]], docker_client) -> None:  # type: ignore[no-untyped-def]
    for count, (name, project) in projects.items():
        report = project.deploy(env="dev", **QUIET)
        assert sorted(o.service for o in report.outcomes if o.action == "create") == service_names(count)
        assert len(_ids(docker_client, name)) == count
        # Every toggle's release is in the history (parallel records lost most of them).
        assert sorted(r.service for r in ReleaseHistory(name, "dev").load()) == service_names(count)

    times: dict[int, list[float]] = {1: [], 20: []}
    before = {count: _ids(docker_client, name) for count, (name, _) in projects.items()}
    for _ in range(REPEATS):
        for count, (_, project) in projects.items():
            started = time.monotonic()
            report = project.deploy(env="dev", **QUIET)
            times[count].append(time.monotonic() - started)
            assert [o.action for o in report.outcomes] == ["unchanged"] * count
    for count, (name, _) in projects.items():
        assert _ids(docker_client, name) == before[count]  # nothing restarted
    ratio = statistics.median(times[20]) / statistics.median(times[1])
    print(f"unchanged redeploy: 1 service {times[1]}, 20 services {times[20]}, ratio of medians {ratio:.2f}")
    assert ratio <= 2.0, f"an unchanged redeploy of 20 services took {ratio:.2f}x one of a single service"

    # The deploy still reads the engine afresh at its start: a container removed by another
    # process is seen missing and created again; the other 19 stay as they are.
    name, project = projects[20]
    gone = f"{name}_dev_web07_a"
    docker_client.containers.get(gone).remove(force=True)
    report = project.deploy(env="dev", **QUIET)
    assert {o.service: o.action for o in report.outcomes if o.action != "unchanged"} == {"web07": "create"}
    after = _ids(docker_client, name)
    assert gone in after and {n: i for n, i in after.items() if n != gone} == {n: i for n, i in before[20].items() if n != gone}
