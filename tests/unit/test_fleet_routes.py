"""The fleet's routing table rendered per server: local backends by container name, remote ones
by address and host port (VPC address within a zone, public address across zones)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from projectdeployer.core.fleet import Fleet, Placed
from projectdeployer.core.ports import PortAssignment
from projectdeployer.core.registry import build_registry
from projectdeployer.plugins import load_plugins, make_plugin_manager
from projectdeployer.core.routing import Backend
from tests.unit.test_hooks import make_project

pytestmark = pytest.mark.unit


def server(name: str, zone: str, private: str, public: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, zone=zone, private_address=private, public_address=public, tags={})


def test_each_sidecar_reaches_local_containers_by_name_and_others_by_address() -> None:
    manager = load_plugins(make_plugin_manager(), env={})
    project = make_project(manager, {"db": {"type": "postgres"}, "api": {"type": "python", "port": 8000, "domain": "api.example.com"}})
    fleet = Fleet(project, "prod", provider=None, manager=manager, registry=build_registry(manager))  # type: ignore[arg-type]
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
