"""``Environment`` and the ``Deployment`` made from it: one path for the reads (status, zones,
logs, run) on one server or many, and finding the server holding a container.

The servers are fakes (tests/support/fakes.py ``RuntimeOnlyServer`` over an in-memory runtime),
handed out by a test plugin's ``get_provider``; no engine or sidecar is touched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pluggy
import pytest

from projectdeployer import ProjectDeployer
from projectdeployer.core.errors import ConfigError, ProjectDeployerError
from projectdeployer.core.provider import Provider, Server, ServerSpec
from projectdeployer.core.registry import build_registry
from projectdeployer.core.runtime import LABEL_ENV, LABEL_PROJECT, LABEL_ROLE, LABEL_SERVICE, LABEL_SLOT, ContainerInfo
from projectdeployer.deploy.deployment import Deployment
from projectdeployer.environment.environment import Environment
from projectdeployer.hookspecs import hookimpl
from projectdeployer.plugins import load_plugins, make_plugin_manager
from projectdeployer.project.file import build_project
from tests.support.fakes import RuntimeOnlyServer

pytestmark = pytest.mark.unit

ENV = "prod"
JOB = "shop_prod_report"


class FakeRuntime:
    """One server's containers in memory; logs are canned lines; records what was started."""

    def __init__(self, containers: Sequence[ContainerInfo] = (), lines: Sequence[str] = ()) -> None:
        self.containers = {c.name: c for c in containers}
        self.lines = list(lines)
        self.started: list[str] = []

    def list(self, labels: Mapping[str, str], *, all: bool = True) -> list[ContainerInfo]:
        return [c for c in self.containers.values() if has_labels(c, labels)]

    def list_brief(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        return self.list(labels)

    def get(self, name: str) -> ContainerInfo | None:
        return self.containers.get(name)

    def logs(self, name: str, *, tail: int = 100, follow: bool = False, since: float | None = None) -> Iterator[str]:
        assert name in self.containers
        return iter(self.lines[-tail:] if tail else [])

    def start_existing(self, name: str) -> None:
        self.started.append(name)

    def wait(self, name: str) -> int:
        return 3


def has_labels(container: ContainerInfo, labels: Mapping[str, str]) -> bool:
    return all(container.labels.get(k) == v for k, v in labels.items())


def running(name: str, service: str, slot: str | None = None, *, role: str = "service", state: str = "running") -> ContainerInfo:
    labels = {LABEL_PROJECT: "shop", LABEL_ENV: ENV, LABEL_ROLE: role, LABEL_SERVICE: service}
    if slot:
        labels[LABEL_SLOT] = slot
    return ContainerInfo(id=name, name=name, image_id="sha256:app", labels=labels, state=state, health=None, exit_code=None, started_at=None, ports={8000: 18000})


class FakeServer(RuntimeOnlyServer):
    def __init__(self, name: str, zone: str, runtime: FakeRuntime, state: str = "active") -> None:
        super().__init__(runtime)
        self.name, self.zone = name, zone
        self.tags = {"state": state}


class FakeProvider(Provider):
    name = "fake"

    def __init__(self, servers: Sequence[Server]) -> None:
        self.servers = list(servers)

    def list_servers(self, project: str, env: str) -> list[Server]:
        return list(self.servers)

    def create_server(self, project: str, env: str, spec: ServerSpec) -> Server:
        raise AssertionError("reads create no server")

    def destroy_server(self, server: Server) -> None:
        raise AssertionError("reads destroy no server")


class Servers:
    """The test plugin: the fake provider, and no sidecar (the router serves nothing)."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    @hookimpl
    def get_provider(self, project: Any, env: str, zone: str) -> Provider:
        return self.provider

    @hookimpl(tryfirst=True)
    def live_routes(self, server: Server, project: Any, env: str) -> tuple[()]:
        return ()


@pytest.fixture
def manager() -> pluggy.PluginManager:
    return load_plugins(make_plugin_manager(), env={})


def environment_on(manager: pluggy.PluginManager, tmp_path: Path, servers: Sequence[Server]) -> tuple[Environment, list[str]]:
    manager.register(Servers(FakeProvider(servers)), name="test-servers")
    registry = build_registry(manager)
    project = build_project(
        {
            "project": {"name": "shop"},
            "services": {
                "api": {"type": "generic", "image": "api:1", "port": 8000, "servers_count": 2},
                "report": {"type": "generic", "image": "report:1", "schedule": "0 3 * * *"},
            },
        },
        source=str(tmp_path / "shop.toml"),
        registry=registry,
    )
    lines: list[str] = []
    return Environment(project, ENV, manager, registry, log=lines.append), lines


def deployment_on(manager: pluggy.PluginManager, tmp_path: Path, servers: Sequence[Server]) -> tuple[Deployment, list[str]]:
    environment, lines = environment_on(manager, tmp_path, servers)
    return Deployment(environment), lines


def test_the_project_hands_out_its_environment(pd_home: Path) -> None:
    project = ProjectDeployer.create("shop")
    environment = project.environment(ENV, log=lambda line: None)
    assert isinstance(environment, Environment)
    assert (environment.project.name, environment.env, environment.provider().name) == ("shop", ENV, "local")
    with pytest.raises(ConfigError, match=r"environment\(env='\.\./x'\)"):
        project.environment("../x")


def test_zones_count_the_listed_servers_by_state(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    servers = [FakeServer("n1", "lon1", FakeRuntime()), FakeServer("n2", "lon1", FakeRuntime(), "reserve"), FakeServer("n3", "nyc3", FakeRuntime(), "destroying")]
    deployment, _ = deployment_on(manager, tmp_path, servers)
    assert deployment.zone_status() == {
        "lon1": {"active": 1, "reserve": 1, "destroying": 0, "total": 2},
        "nyc3": {"active": 0, "reserve": 0, "destroying": 1, "total": 1},
    }


def test_this_machine_is_one_active_server_deployed_or_not(pd_home: Path) -> None:
    # The local provider lists this machine without asking its engine anything.
    assert ProjectDeployer.create("shop").status(ENV) == {"local": {"active": 1, "reserve": 0, "destroying": 0, "total": 1}}


def test_a_job_runs_on_the_server_holding_its_container(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    first, second = FakeRuntime(), FakeRuntime([running(JOB, "report", role="job", state="exited")], lines=["ran 1", "ran 2"])
    deployment, log = deployment_on(manager, tmp_path, [FakeServer("n1", "lon1", first), FakeServer("n2", "lon1", second)])
    output: list[str] = []
    assert deployment.run_job("report", output=output.append) == 3
    assert second.started == [JOB] and first.started == [] and output == ["ran 1", "ran 2"]
    assert log == [f"report: started {JOB}"]


def test_a_job_without_its_container_or_still_running_is_refused(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    deployment, _ = deployment_on(manager, tmp_path, [FakeServer("n1", "lon1", FakeRuntime())])
    with pytest.raises(ProjectDeployerError, match="report has no job container in prod: deploy first"):
        deployment.run_job("report")
    busy = FakeRuntime([running(JOB, "report", role="job")])
    deployment, _ = deployment_on(load_plugins(make_plugin_manager(), env={}), tmp_path, [FakeServer("n1", "lon1", busy)])
    with pytest.raises(ProjectDeployerError, match="report: a run is in progress"):
        deployment.run_job("report")
    assert busy.started == []


def test_logs_of_one_source_are_as_written_of_several_prefixed(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    one = FakeRuntime([running("shop_prod_api_a", "api", "a")], lines=["GET /"])
    other = FakeRuntime([running("shop_prod_api_b", "api", "b")], lines=["GET /health"])
    deployment, _ = deployment_on(manager, tmp_path, [FakeServer("n1", "lon1", one), FakeServer("n2", "lon1", FakeRuntime())])
    assert list(deployment.logs("api", lines=10)) == ["GET /"]
    deployment, _ = deployment_on(load_plugins(make_plugin_manager(), env={}), tmp_path, [FakeServer("n1", "lon1", one), FakeServer("n2", "lon1", other)])
    assert list(deployment.logs("api", lines=10)) == ["n1 | GET /", "n2 | GET /health"]


def test_logs_of_a_service_running_nowhere_say_so(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    deployment, _ = deployment_on(manager, tmp_path, [FakeServer("n1", "lon1", FakeRuntime()), FakeServer("n2", "lon1", FakeRuntime())])
    with pytest.raises(ProjectDeployerError, match=r"api is not running in prod \(on none of its 2 server\(s\)\)"):
        deployment.logs("api")
    with pytest.raises(ProjectDeployerError, match="report has no job container in prod: deploy first"):
        deployment.logs("report")


def test_status_rows_have_one_shape_on_one_server_or_many(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    one = FakeRuntime([running("shop_prod_api_a", "api", "a"), running(JOB, "report", role="job", state="exited")])
    deployment, _ = deployment_on(manager, tmp_path, [FakeServer("n1", "lon1", one)])
    alone = {r["service"]: r for r in deployment.service_status()}
    assert alone["api"]["state"] == "running" and alone["api"]["container"] == "shop_prod_api_a" and alone["api"]["servers"] == ["n1"]
    assert alone["api"]["slot"] == "a" and alone["api"]["host_port"] == 18000
    assert alone["report"]["state"] == "scheduled" and alone["report"]["servers"] == [] and alone["report"]["container"] == JOB

    other = FakeRuntime([running("shop_prod_api_b", "api", "b")])
    deployment, _ = deployment_on(load_plugins(make_plugin_manager(), env={}), tmp_path, [FakeServer("n1", "lon1", one), FakeServer("n2", "lon1", other), FakeServer("n3", "lon1", FakeRuntime())])
    many = {r["service"]: r for r in deployment.service_status()}
    assert many["api"]["state"] == "running on 2/2" and many["api"]["servers"] == ["n1", "n2"]
    assert many["api"]["container"] == "shop_prod_api_a"  # the first server's detail
    assert many["report"]["state"] == "scheduled" and many["report"]["container"] == JOB
    assert [sorted(r) for r in alone.values()] == [sorted(r) for r in many.values()]


def test_a_container_is_found_on_its_server_and_an_unreachable_server_is_named(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    holder = FakeRuntime([running("shop_prod_postgres", "postgres", role="stateful")])
    environment, _ = environment_on(manager, tmp_path, [FakeServer("n1", "lon1", FakeRuntime()), FakeServer("n2", "lon1", holder)])
    placed = environment.find_container("shop_prod_postgres")
    assert placed is not None and placed.server.name == "n2" and placed.runtime is holder and placed.info.name == "shop_prod_postgres"
    assert environment.find_container("shop_prod_redis") is None

    class Unreachable(FakeServer):
        def runtime(self) -> Any:
            raise ProjectDeployerError("connection refused")

    environment, _ = environment_on(load_plugins(make_plugin_manager(), env={}), tmp_path, [Unreachable("n1", "lon1", FakeRuntime()), FakeServer("n2", "lon1", FakeRuntime())])
    with pytest.raises(ProjectDeployerError, match="cannot look for shop_prod_redis on n1: connection refused"):
        environment.find_container("shop_prod_redis")
