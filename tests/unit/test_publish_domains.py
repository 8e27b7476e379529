"""What a deploy tells public DNS (the ``publish_domains`` hook): per domain, the public
addresses of the servers that serve it, by zone, the servers being removed left out; a DNS
plugin that fails stops the deploy before those servers are destroyed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from projectdeployer.core.errors import DeployFailed
from projectdeployer.core.registry import build_registry
from projectdeployer.core.routing import DomainTarget
from projectdeployer.deploy.domains import domain_targets
from projectdeployer.deploy.orchestrator import Orchestrator
from projectdeployer.hookspecs import hookimpl
from projectdeployer.plugins import load_plugins, make_plugin_manager
from tests.unit.test_fleet_routes import Servers, server
from tests.unit.test_hooks import make_project

pytestmark = pytest.mark.unit

SERVICES = {
    "db": {"type": "postgres", "server_zone": "lon1"},
    "api": {"type": "python", "port": 8000, "domain": "api.example.com", "health_path": "/health", "server_zone": "nyc3", "servers_count": 2},
    "worker": {"type": "python"},
}
SERVERS = {
    "l1": server("l1", "lon1", "10.1.0.2", "198.51.100.1"),
    "n1": server("n1", "nyc3", "10.2.0.2", "203.0.113.2"),
    "n2": server("n2", "nyc3", "10.2.0.3", "203.0.113.1"),
    "n3": server("n3", "nyc3", "10.2.0.4", "203.0.113.9"),
}


def test_each_domain_is_sent_to_the_public_addresses_of_its_servers_by_zone() -> None:
    manager = load_plugins(make_plugin_manager(), env={})
    project = make_project(manager, SERVICES)
    placement = {"db": ("l1",), "api": ("n1", "n2", "n3"), "worker": ("l1",)}
    kept = {n: s for n, s in SERVERS.items() if n != "n3"}  # n3 is being removed
    assert domain_targets(project, "prod", placement, kept) == [DomainTarget(domain="api.example.com", service="api", health_path="/health", zones={"nyc3": ("203.0.113.1", "203.0.113.2")})]
    assert domain_targets(project, "prod", {"api": ()}, kept) == []  # placed nowhere: nothing to publish


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[Sequence[DomainTarget]] = []
        self.fail = fail

    @hookimpl
    def publish_domains(self, project: Any, env: str, targets: Sequence[DomainTarget], log: Any) -> None:
        self.calls.append(list(targets))
        if self.fail:
            raise RuntimeError("the DNS API said 503")


def _fleet(recorder: Recorder) -> Orchestrator:
    manager = load_plugins(make_plugin_manager(), env={})
    manager.register(recorder, name="recorder")
    fleet = Orchestrator(make_project(manager, SERVICES), "prod", provider=Servers(), manager=manager, registry=build_registry(manager), log=lambda line: None)
    fleet.servers = dict(SERVERS)
    fleet.placement = {"db": ("l1",), "api": ("n1", "n2")}
    fleet.leaving = {"n3"}
    return fleet


def test_the_deploy_publishes_without_the_servers_it_removes_and_a_failure_keeps_them() -> None:
    recorder = Recorder()
    _fleet(recorder)._publish_domains()
    assert [[(t.domain, dict(t.zones)) for t in call] for call in recorder.calls] == [[("api.example.com", {"nyc3": ("203.0.113.1", "203.0.113.2")})]]
    failing = _fleet(Recorder(fail=True))
    with pytest.raises(
        DeployFailed, match=r"^the services are switched, but public DNS could not be updated: the DNS API said 503; the servers being removed \(n3\) are kept until a deploy updates it$"
    ):
        failing._publish_domains()
