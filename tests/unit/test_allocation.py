"""Server allocation: how many servers per zone, which services where, what to create/destroy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projectdeployer.core.model import GenericSpec
from projectdeployer.deploy.allocation import ACTIVE, DESTROYING, RESERVE, ServerState, allocate

pytestmark = pytest.mark.unit


def svc(name: str, count: int = 1, zone: str = "lon1", **kw: object) -> GenericSpec:
    return GenericSpec(name=name, type="generic", servers_count=count, server_zone=zone, **kw)  # type: ignore[arg-type]


def test_api_on_three_servers_and_postgres_on_the_first() -> None:
    services = {"postgres": svc("postgres", 3), "api": svc("api", 3)}
    result = allocate(services, [], stateful=["postgres"])
    assert [(s.action, s.index, s.services) for s in result.servers] == [
        ("create", 0, ("postgres", "api")),
        ("create", 1, ("api",)),
        ("create", 2, ("api",)),
    ]
    assert result.placement["postgres"] == ("lon1#1 (new)",)  # stateful: one server whatever the count
    assert len(result.placement["api"]) == 3
    assert result.counts() == {"lon1": {ACTIVE: 3, RESERVE: 0, DESTROYING: 0, "total": 3}}


def test_existing_servers_are_reused_in_a_stable_order_and_extras_destroyed() -> None:
    existing = [ServerState(name=f"app-lon1-{n}", zone="lon1") for n in (10, 2, 9, 1)]
    existing.append(ServerState(name="app-lon1-3", zone="lon1", state=RESERVE))
    result = allocate({"api": svc("api", 2)}, existing)
    kept = [(s.name, s.services) for s in result.servers if s.action == "keep"]
    assert kept == [("app-lon1-1", ("api",)), ("app-lon1-2", ("api",))]  # active first, natural order
    assert sorted(s.name for s in result.to_destroy) == ["app-lon1-10", "app-lon1-3", "app-lon1-9"]
    assert not result.to_create


def test_scaling_up_keeps_the_servers_that_run_the_service() -> None:
    existing = [ServerState(name="a-1", zone="lon1"), ServerState(name="a-2", zone="lon1")]
    result = allocate({"api": svc("api", 5)}, existing)
    assert [s.name for s in result.servers if s.action == "keep"] == ["a-1", "a-2"]
    assert len(result.to_create) == 3


def test_zones_one_service_per_zone_and_environment_zones_replicate_stateless_services() -> None:
    services = {"db": svc("db", 1, zone="lon1"), "api": svc("api", 2, zone="nyc3")}
    result = allocate(services, [], stateful=["db"])
    assert {s.zone for s in result.servers} == {"lon1", "nyc3"}
    assert len(result.zone("nyc3")) == 2 and result.zone("lon1")[0].services == ("db",)
    both = allocate(services, [], env_zones=["lon1", "nyc3"], stateful=["db"])
    assert [len(both.zone(z)) for z in ("lon1", "nyc3")] == [2, 2]
    assert both.zone("lon1")[0].services == ("db", "api") and both.zone("nyc3")[0].services == ("api",)


def test_a_zone_no_service_uses_any_more_is_emptied_and_sizes_follow_the_largest_service() -> None:
    existing = [ServerState(name="old-1", zone="ams3")]
    result = allocate({"api": svc("api", 1, server_cpu=2, server_memory=4096), "web": svc("web", 1, server_cpu=4)}, existing)
    assert [s.name for s in result.to_destroy] == ["old-1"]
    assert [(s.cpu, s.memory) for s in result.to_create] == [(4, 4096)]
    assert result.counts()["ams3"] == {ACTIVE: 0, RESERVE: 0, DESTROYING: 1, "total": 1}


def test_servers_already_destroying_are_never_reused() -> None:
    existing = [ServerState(name="a-1", zone="lon1", state=DESTROYING), ServerState(name="a-2", zone="lon1")]
    result = allocate({"api": svc("api", 2)}, existing)
    assert [s.name for s in result.servers if s.action == "keep"] == ["a-2"]
    assert [s.name for s in result.to_destroy] == ["a-1"] and len(result.to_create) == 1


@given(
    counts=st.dictionaries(st.sampled_from(["api", "web", "worker", "db"]), st.integers(1, 6), min_size=1),
    existing=st.integers(0, 8),
)
def test_properties(counts: dict[str, int], existing: int) -> None:
    services = {n: svc(n, k) for n, k in counts.items()}
    servers = [ServerState(name=f"s-{i}", zone="lon1") for i in range(existing)]
    result = allocate(services, servers, stateful=["db"])
    needed = max(1 if n == "db" else k for n, k in counts.items())
    live = result.zone("lon1")
    assert len(live) == needed  # exactly as many servers as the largest count
    for name, k in counts.items():
        assert len(result.placement[name]) == (1 if name == "db" else k)  # every service placed k times, once per server
        assert len(set(result.placement[name])) == len(result.placement[name])
    assert len(result.to_destroy) == max(0, existing - needed) and len(result.to_create) == max(0, needed - existing)
    # the first servers are reused: a server is never destroyed while a new one is created
    assert not (result.to_destroy and result.to_create)


def test_the_slot_given_at_creation_orders_servers_whatever_their_names() -> None:
    """Parallel creation hands out names in any order: the database's server (slot 0) may be
    called -2. The next deploy must still find the database where it is."""
    from types import SimpleNamespace

    from projectdeployer.deploy.allocation import slot_of, state_of

    services = {"postgres": svc("postgres", 1, server_memory=4096), "api": svc("api", 2)}
    first = allocate(services, [], stateful=["postgres"])
    assert [(p.index, p.services, p.memory) for p in first.to_create] == [(0, ("postgres", "api"), 4096), (1, ("api",), 1024)]
    created = [SimpleNamespace(name="app-lon1-2", zone="lon1", tags={"state": "reserve", "slot": "0"}), SimpleNamespace(name="app-lon1-1", zone="lon1", tags={"state": "reserve", "slot": "1"})]
    listed = [ServerState(name=s.name, zone=s.zone, state=ACTIVE, slot=slot_of(s)) for s in created]
    again = allocate(services, listed, stateful=["postgres"])
    assert again.placement["postgres"] == ("app-lon1-2",) and not again.to_create and not again.to_destroy
    assert state_of(created[0]) == "reserve" and slot_of(SimpleNamespace(tags={})) is None


def test_servers_from_before_slots_keep_their_places_ahead_of_new_ones() -> None:
    services = {"postgres": svc("postgres", 1), "api": svc("api", 3)}
    existing = [ServerState(name="app-lon1-1", zone="lon1"), ServerState(name="app-lon1-2", zone="lon1"), ServerState(name="app-lon1-3", zone="lon1", slot=2)]
    result = allocate(services, existing, stateful=["postgres"])
    assert result.placement["postgres"] == ("app-lon1-1",)
    assert result.placement["api"] == ("app-lon1-1", "app-lon1-2", "app-lon1-3")


def test_a_provider_with_one_server_per_zone_and_one_zone_runs_everything_on_it() -> None:
    """This machine (the local provider): ``servers_count`` above 1 still means its one server,
    and every zone a service names is its one zone, so nothing is created or destroyed."""
    services = {"postgres": svc("postgres", 3, zone="nyc3"), "api": svc("api", 3, zone="lon1"), "web": svc("web", 2)}
    result = allocate(services, [ServerState(name="local", zone="local")], env_zones=["lon1", "fra1"], stateful=["postgres"], max_servers=1, zone_of=lambda zone: "local")
    assert [(s.name, s.action, s.services) for s in result.servers] == [("local", "keep", ("postgres", "api", "web"))]
    assert result.placement == {"postgres": ("local",), "api": ("local",), "web": ("local",)}
    capped = allocate({"api": svc("api", 3)}, [], max_servers=2)
    assert [(s.action, s.services) for s in capped.servers] == [("create", ("api",)), ("create", ("api",))]
