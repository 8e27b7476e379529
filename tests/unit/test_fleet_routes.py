"""The fleet's routing table rendered per server: local backends by container name, remote ones
by address and host port (VPC address within a zone, public address across zones)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from projectdeployer.core.errors import DeployFailed
from projectdeployer.core.provider import Provider, Server, ServerSpec
from projectdeployer.core.registry import build_registry
from projectdeployer.core.routing import Backend
from projectdeployer.deploy.orchestrator import Orchestrator, Placed
from projectdeployer.deploy.ports import PortAssignment
from projectdeployer.hookspecs import hookimpl
from projectdeployer.plugins import load_plugins, make_plugin_manager
from tests.unit.test_hooks import make_project

pytestmark = pytest.mark.unit


class Servers(Provider):
    """A provider that creates nothing: what these tests ask of it is how servers reach each
    other (the default rule) and, for one, the servers it was asked to destroy."""

    name = "test"

    def __init__(self) -> None:
        self.destroyed: list[str] = []

    def list_servers(self, project: str, env: str) -> list[Server]:
        return []

    def create_server(self, project: str, env: str, spec: ServerSpec) -> Server:
        raise AssertionError("no server is created here")

    def destroy_server(self, server: Server) -> None:
        self.destroyed.append(server.name)


def server(name: str, zone: str, private: str, public: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, zone=zone, private_address=private, public_address=public, tags={})


def test_each_sidecar_reaches_local_containers_by_name_and_others_by_address() -> None:
    manager = load_plugins(make_plugin_manager(), env={})
    project = make_project(manager, {"db": {"type": "postgres"}, "api": {"type": "python", "port": 8000, "domain": "api.example.com"}})
    fleet = Orchestrator(project, "prod", provider=Servers(), manager=manager, registry=build_registry(manager))
    fleet.servers = {
        "l1": server("l1", "lon1", "10.1.0.2", "198.51.100.1"),
        "l2": server("l2", "lon1", "10.1.0.3", "198.51.100.2"),
        "n1": server("n1", "nyc3", "10.2.0.2", "203.0.113.1"),
    }
    fleet.ports = {"db": PortAssignment(host=8100, internal=5100), "api": PortAssignment(host=8200, internal=5200)}
    fleet.table = {
        "db": [Placed(server="l1", container="shop_prod_db", port=5432, host_port=8100)],
        "api": [
            Placed(server="l2", container="shop_prod_api_b", port=8000, host_port=18200),
            Placed(server="n1", container="shop_prod_api_a", port=8000, host_port=8200),
        ],
    }
    on_l1 = {r.service: r for r in fleet.routes_for(fleet.servers["l1"])}
    assert on_l1["db"].backends == (Backend(host="shop_prod_db", port=5432),)  # same server: by name
    assert on_l1["db"].protocol == "tcp" and on_l1["db"].internal_port == 5100
    # another server of the zone: VPC address; another zone: public address; host ports of the slot
    assert on_l1["api"].backends == (Backend(host="10.1.0.3", port=18200), Backend(host="203.0.113.1", port=8200))
    assert on_l1["api"].protocol == "http" and on_l1["api"].domain == "api.example.com"
    on_n1 = {r.service: r for r in fleet.routes_for(fleet.servers["n1"])}
    assert on_n1["db"].backends == (Backend(host="198.51.100.1", port=8100),)
    assert on_n1["api"].backends[0] == Backend(host="shop_prod_api_a", port=8000)  # its own first
    # a service with no container anywhere is not routed at all
    fleet.table["db"] = []
    assert "db" not in {r.service for r in fleet.routes_for(fleet.servers["l2"])}


class RoutingRecorder:
    """Records every sidecar update; fails the servers named in ``failing``."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, tuple[str, ...]]] = []
        self.failing: set[str] = set()

    @hookimpl
    def configure_routing(self, server, project, env, routes) -> None:  # type: ignore[no-untyped-def]
        if server.name in self.failing:
            raise RuntimeError(f"{server.name} unreachable")
        self.pushed.append((server.name, tuple(r.service for r in routes)))


def _fleet_with_recorder() -> tuple[Orchestrator, RoutingRecorder]:
    manager = load_plugins(make_plugin_manager(), env={"PROJECTDEPLOYER_LOAD_PLUGINS": "service_redis,service_python"})
    recorder = RoutingRecorder()
    manager.register(recorder)
    project = make_project(manager, {"db": {"type": "redis"}, "api": {"type": "python", "port": 8000}})
    fleet = Orchestrator(project, "prod", provider=Servers(), manager=manager, registry=build_registry(manager), log=lambda line: None)
    fleet.servers = {"l1": server("l1", "lon1", "10.1.0.2", "198.51.100.1"), "n1": server("n1", "nyc3", "10.2.0.2", "203.0.113.1")}
    fleet.ports = {"db": PortAssignment(host=8100, internal=5100), "api": PortAssignment(host=8200, internal=5200)}
    table = {
        "db": [Placed(server="l1", container="shop_prod_db", port=6379, host_port=8100)],
        "api": [Placed(server="n1", container="shop_prod_api_a", port=8000, host_port=8200)],
    }
    fleet.table = {k: list(v) for k, v in table.items()}
    fleet._observed_table = lambda: {k: list(v) for k, v in table.items()}  # type: ignore[method-assign]
    fleet.engines = dict.fromkeys(fleet.servers)  # type: ignore[arg-type]  # attached already
    return fleet, recorder


def test_offline_takes_a_route_out_of_every_sidecar_and_puts_it_back_read_anew() -> None:
    fleet, recorder = _fleet_with_recorder()
    with fleet.offline("db"):
        assert sorted(recorder.pushed) == [("l1", ("api",)), ("n1", ("api",))]
        recorder.pushed.clear()
    assert sorted(recorder.pushed) == [("l1", ("api", "db")), ("n1", ("api", "db"))]
    assert "db" in fleet.table


def test_offline_that_cannot_reach_a_sidecar_changes_nothing_and_names_it() -> None:
    fleet, recorder = _fleet_with_recorder()
    recorder.failing = {"n1"}
    ran = []
    with pytest.raises(DeployFailed, match="n1"), fleet.offline("db"):
        ran.append(True)
    assert ran == []  # the database is never stopped
    assert "db" in fleet.table and recorder.pushed[-1] == ("l1", ("api", "db"))  # l1 got its route back


def test_offline_puts_the_route_back_when_the_block_fails_and_keeps_its_error() -> None:
    fleet, recorder = _fleet_with_recorder()
    with pytest.raises(RuntimeError, match="restore failed"), fleet.offline("db"):
        recorder.pushed.clear()
        raise RuntimeError("restore failed")
    assert sorted(recorder.pushed) == [("l1", ("api", "db")), ("n1", ("api", "db"))]
    # a sidecar that cannot be reached then is logged, and the block's error still wins
    recorder.failing = set()
    lines: list[str] = []
    fleet.log = lines.append
    with pytest.raises(RuntimeError, match="restore failed"), fleet.offline("db"):
        recorder.failing = {"n1"}
        raise RuntimeError("restore failed")
    assert any("db: could not be routed again everywhere" in line and "n1" in line for line in lines)


def test_a_dropped_server_that_cannot_be_read_is_never_destroyed_and_blocks_a_database_start() -> None:
    fleet, _ = _fleet_with_recorder()
    fleet.provider = provider = Servers()
    destroyed = provider.destroyed
    fleet.engines = {"n1": SimpleNamespace(containers=lambda: {})}  # type: ignore[dict-item]
    fleet.placement = {"db": ("n1",)}
    fleet.unread = {"l1"}
    spec = fleet.project.service("db", "prod")
    with pytest.raises(DeployFailed, match="db does not run on n1, and l1 cannot be read: its data may be there"):
        fleet._stateful_target(spec)
    assert fleet._destroy([fleet.servers["l1"]]) == [] and destroyed == []
    fleet.unread = set()
    assert fleet._stateful_target(spec) == "n1"  # a first start, nothing unread
    assert fleet._destroy([fleet.servers["l1"]]) == ["l1"] and destroyed == ["l1"]


def test_a_deploy_pushes_to_a_sidecar_only_what_changes_there_and_to_each_sidecar_once() -> None:
    """Before the switches, a sidecar that already serves the table (as the plan read it) is
    left alone; at the end, the sidecars this deploy never pushed to get the table once (which
    ensures their sidecar), and none gets the same routes twice."""
    fleet, recorder = _fleet_with_recorder()
    serving = tuple(reversed(fleet.routes_for(fleet.servers["l1"])))  # the router's own order
    fleet.engines = {"l1": SimpleNamespace(served_routes=lambda: serving), "n1": SimpleNamespace(served_routes=lambda: None)}  # type: ignore[dict-item]
    assert fleet._serves_table(fleet.servers["l1"]) and not fleet._serves_table(fleet.servers["n1"])  # n1: not known
    fleet._route_everywhere([s for s in fleet.servers.values() if not fleet._serves_table(s)])
    assert recorder.pushed == [("n1", ("api", "db"))]
    recorder.pushed.clear()
    fleet._route_unpushed()
    assert recorder.pushed == [("l1", ("api", "db"))]  # once per deploy, though its routes were right
    recorder.pushed.clear()
    fleet._route_unpushed()
    assert recorder.pushed == []
    fleet._push_table([("db", None)])  # a switch reaches every sidecar, and a push after it only a changed one
    assert sorted(recorder.pushed) == [("l1", ("api",)), ("n1", ("api",))]
    recorder.pushed.clear()
    fleet._route_unpushed()
    assert recorder.pushed == []
