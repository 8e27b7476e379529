"""Which server holds an environment's deploy lock, and that the local lock is always taken."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from projectdeployer.core import paths
from projectdeployer.environment.locks import DeployLocked, deploy_lock
from projectdeployer.environment.serverlock import environment_lock, lock_server
from projectdeployer.providers.local import LocalServer

pytestmark = pytest.mark.unit


class Remote(LocalServer):
    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]
        self.held: list[tuple[str, float]] = []

    @property
    def data_root(self) -> str:  # type: ignore[override]
        return "/local"

    @contextlib.contextmanager
    def hold_lock(self, path: str, *, wait: float = 0.0) -> Iterator[None]:
        self.held.append((path, wait))
        yield


def test_the_first_server_by_name_holds_the_lock(pd_home) -> None:  # type: ignore[no-untyped-def]
    b, a = Remote("shop-prod-lon1-2"), Remote("shop-prod-lon1-1")
    assert lock_server([b, a]) is a
    assert lock_server([LocalServer()]) is None
    # the local lock is held too: a second deploy from this machine is refused at once
    with environment_lock("shop", "prod", [b, a], wait=3.0), pytest.raises(DeployLocked), deploy_lock(paths.env_dir("shop", "prod") / "deploy.lock"):
        pass
    assert a.held == [("/local/shop/prod/deploy.lock", 3.0)] and b.held == []


def test_this_machine_alone_uses_the_local_lock(pd_home) -> None:  # type: ignore[no-untyped-def]
    with environment_lock("shop", "dev", [LocalServer()]), pytest.raises(DeployLocked), deploy_lock(paths.env_dir("shop", "dev") / "deploy.lock"):
        pass


class Recording(Remote):
    def __init__(self, name: str, zone: str, events: list[str]) -> None:
        super().__init__(name)
        self.zone = zone  # type: ignore[misc]
        self.tags = {"state": "reserve"}  # type: ignore[misc]
        self.events = events

    @contextlib.contextmanager
    def hold_lock(self, path: str, *, wait: float = 0.0) -> Iterator[None]:
        self.events.append(f"lock {self.name}")
        yield
        self.events.append(f"unlock {self.name}")


class BootProvider:
    """A provider with a creation lock that records what happens under it."""

    name = "boot"

    def __init__(self) -> None:
        self.events: list[str] = []
        self.servers: list[Recording] = []

    @contextlib.contextmanager
    def creation_lock(self, project: str, env: str, *, wait: float = 0.0) -> Iterator[None]:
        self.events.append("creation lock")
        try:
            yield
        finally:
            self.events.append("creation unlock")

    def list_servers(self, project: str, env: str) -> list[Recording]:
        self.events.append(f"list {len(self.servers)}")
        return list(self.servers)

    def create_server(self, project: str, env: str, spec) -> Recording:  # type: ignore[no-untyped-def]
        server = Recording(f"{project}-{env}-{spec.zone}-{sum(s.zone == spec.zone for s in self.servers) + 1}", spec.zone, self.events)
        self.servers.append(server)
        self.events.append(f"create {server.name}")
        return server

    def set_server_state(self, server, state):  # type: ignore[no-untyped-def]
        return server


def test_a_first_deploy_creates_its_servers_under_the_creation_lock_and_locks_them_before_letting_go(pd_home) -> None:  # type: ignore[no-untyped-def]
    from projectdeployer.core.registry import build_registry
    from projectdeployer.deploy.orchestrator import Orchestrator
    from projectdeployer.plugins import load_plugins, make_plugin_manager
    from tests.unit.test_hooks import make_project

    manager = load_plugins(make_plugin_manager(), env={"PROJECTDEPLOYER_LOAD_PLUGINS": "service_python,service_postgres"})
    project = make_project(manager, {"db": {"type": "postgres", "server_zone": "lon1"}, "api": {"type": "python", "port": 8000, "server_zone": "nyc3", "servers_count": 2}})
    provider = BootProvider()
    fleet = Orchestrator(project, "prod", provider, manager, build_registry(manager), log=lambda line: None)  # type: ignore[arg-type]
    for step in ("_prepare", "_jobs", "_remove_gone_services"):
        setattr(fleet, step, lambda: provider.events.append("deploy steps") or [])  # _jobs and _remove_gone_services return their outcomes
    fleet._services = lambda only=None: []  # type: ignore[method-assign]
    report = fleet.deploy()
    boot = provider.events[: provider.events.index("creation unlock") + 1]
    assert boot[:2] == ["creation lock", "list 0"]
    assert sorted(e for e in boot if e.startswith("create ")) == ["create shop-prod-lon1-1", "create shop-prod-nyc3-1", "create shop-prod-nyc3-2"]
    assert boot[-2:] == ["lock shop-prod-lon1-1", "creation unlock"]  # the lock server is held before the creation lock goes
    assert provider.events[-1] == "unlock shop-prod-lon1-1" and provider.events.count("lock shop-prod-lon1-1") == 1
    assert sorted(report.created) == ["shop-prod-lon1-1", "shop-prod-nyc3-1", "shop-prod-nyc3-2"]


def test_a_new_server_that_comes_first_by_name_is_locked_too(pd_home) -> None:  # type: ignore[no-untyped-def]
    from projectdeployer.core.registry import build_registry
    from projectdeployer.deploy.orchestrator import Orchestrator
    from projectdeployer.plugins import load_plugins, make_plugin_manager
    from tests.unit.test_hooks import make_project

    manager = load_plugins(make_plugin_manager(), env={"PROJECTDEPLOYER_LOAD_PLUGINS": "service_python"})
    project = make_project(manager, {"api": {"type": "python", "port": 8000, "server_zone": "nyc3"}, "web": {"type": "python", "port": 8001, "server_zone": "ams3"}})
    provider = BootProvider()
    provider.servers.append(Recording("shop-prod-nyc3-1", "nyc3", provider.events))
    fleet = Orchestrator(project, "prod", provider, manager, build_registry(manager), log=lambda line: None)  # type: ignore[arg-type]
    for step in ("_prepare", "_jobs", "_remove_gone_services"):
        setattr(fleet, step, lambda: [])
    fleet._services = lambda only=None: []  # type: ignore[method-assign]
    fleet.deploy()
    events = provider.events
    # all under the creation lock: nobody else lists the new server before it is locked
    assert events.index("creation lock") < events.index("lock shop-prod-nyc3-1") < events.index("create shop-prod-ams3-1") < events.index("lock shop-prod-ams3-1") < events.index("creation unlock")
    assert events[-2:] == ["unlock shop-prod-ams3-1", "unlock shop-prod-nyc3-1"]


def test_one_service_on_an_environment_without_servers_is_refused_before_anything_is_created(pd_home) -> None:  # type: ignore[no-untyped-def]
    from projectdeployer.core.errors import DeployFailed
    from projectdeployer.core.registry import build_registry
    from projectdeployer.deploy.orchestrator import Orchestrator
    from projectdeployer.plugins import load_plugins, make_plugin_manager
    from tests.unit.test_hooks import make_project

    manager = load_plugins(make_plugin_manager(), env={"PROJECTDEPLOYER_LOAD_PLUGINS": "service_python"})
    project = make_project(manager, {"api": {"type": "python", "port": 8000, "server_zone": "nyc3"}})
    provider = BootProvider()
    fleet = Orchestrator(project, "prod", provider, manager, build_registry(manager), log=lambda line: None)  # type: ignore[arg-type]
    with pytest.raises(DeployFailed, match="no server yet: deploy the whole environment first"):
        fleet.deploy(service="api")
    assert provider.servers == [] and provider.events == ["creation lock", "list 0", "creation unlock"]
