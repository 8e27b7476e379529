"""Tests for the port scheme (projectdeployer.deploy.ports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import projectdeployer.deploy.ports as ports_mod
from projectdeployer.core.errors import ProjectDeployerError
from projectdeployer.deploy.ports import (
    HOST_BASE_RANGE,
    INTERNAL_RANGE,
    SECONDARY_OFFSET,
    PortAssignment,
    PortRecordError,
    PortsExhausted,
    PortStore,
    allocate_ports,
    preferred_host_port,
    preferred_internal_port,
)

pytestmark = pytest.mark.unit

PROJECT, ENV = "shop", "prod"
SRC = Path(ports_mod.__file__).resolve().parents[2]  # the directory holding `projectdeployer`

names = st.from_regex(r"[a-z][a-z0-9_-]{0,20}", fullmatch=True)
container_ports = st.none() | st.integers(1, 65535)
service_maps = st.dictionaries(names, container_ports, max_size=200)


def colliding_names(count: int, *, port: int | None = None) -> list[str]:
    """Brute-force ``count`` names with the same preferred host port (``port`` if given)."""
    by_port: dict[int, list[str]] = defaultdict(list)
    for i in range(1_000_000):
        name = f"svc{i}"
        p = preferred_host_port(PROJECT, ENV, name, None)
        if port is not None and p != port:
            continue
        by_port[p].append(name)
        if len(by_port[p]) == count:
            return by_port[p]
    raise AssertionError("no collision found")  # pragma: no cover


def assert_well_formed(result: dict[str, PortAssignment]) -> None:
    hosts = [a.host for a in result.values()]
    internals = [a.internal for a in result.values()]
    assert len(set(hosts)) == len(hosts), "two services share a host base port"
    assert len(set(internals)) == len(internals), "two services share an internal port"
    for a in result.values():
        assert a.host in HOST_BASE_RANGE
        assert 18000 <= a.secondary <= 18999
        assert a.internal in INTERNAL_RANGE


# --- PortAssignment ---------------------------------------------------------------------


def test_secondary_and_other() -> None:
    a = PortAssignment(host=8123, internal=5321)
    assert a.secondary == 8123 + SECONDARY_OFFSET == 18123
    assert a.other(8123) == 18123
    assert a.other(18123) == 8123
    with pytest.raises(ValueError, match="8124"):
        a.other(8124)


@pytest.mark.parametrize("host, internal", [(7999, 5000), (9000, 5000), (8000, 4999), (8000, 6000)])
def test_assignment_rejects_out_of_range(host: int, internal: int) -> None:
    with pytest.raises(ValueError):
        PortAssignment(host=host, internal=internal)


# --- preferred ports ----------------------------------------------------------------------


def test_preferred_ports_are_pinned() -> None:
    # Records on disk outlive releases: the formula must never change silently.
    assert preferred_host_port("shop", "prod", "api", 8000) == 8936
    assert preferred_host_port("shop", "prod", "api", None) == preferred_host_port("shop", "prod", "api", 0)
    assert preferred_internal_port("shop", "prod", "api") == 5515


@given(names, container_ports)
def test_preferred_ports_in_range(name: str, container_port: int | None) -> None:
    assert preferred_host_port(PROJECT, ENV, name, container_port) in HOST_BASE_RANGE
    assert preferred_internal_port(PROJECT, ENV, name) in INTERNAL_RANGE


_SUBPROCESS = """
import json, sys
from projectdeployer.deploy.ports import allocate_ports
project, env, services = json.load(sys.stdin)
result = allocate_ports(project, env, services, {})
print(json.dumps({n: [a.host, a.internal] for n, a in result.items()}))
"""

NAME_SETS = [
    {"api": 8000, "db": 5432, "cache": 6379, "web": None},
    {n: None for n in colliding_names(4)} | {"worker": 9000},
    {f"svc-{i}": 1000 + i for i in range(120)},
]


@pytest.mark.parametrize("seed", ["1", "4242"])
@pytest.mark.parametrize("services", NAME_SETS, ids=["small", "colliding", "many"])
def test_deterministic_across_processes(services: dict[str, int | None], seed: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONHASHSEED=seed)
    out = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS],
        input=json.dumps([PROJECT, ENV, services]),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    here = allocate_ports(PROJECT, ENV, services, {})
    assert json.loads(out.stdout) == {n: [a.host, a.internal] for n, a in here.items()}


# --- allocation ---------------------------------------------------------------------------


@given(service_maps)
def test_distinct_ports_and_ranges(services: dict[str, int | None]) -> None:
    result = allocate_ports(PROJECT, ENV, services, {})
    assert set(result) == set(services)
    assert_well_formed(result)


@given(st.dictionaries(names, container_ports, max_size=50))
def test_order_of_services_does_not_matter(services: dict[str, int | None]) -> None:
    reversed_services = dict(reversed(list(services.items())))
    assert allocate_ports(PROJECT, ENV, services, {}) == allocate_ports(PROJECT, ENV, reversed_services, {})


def test_digest_collisions_are_probed() -> None:
    clash = colliding_names(5)
    services = {n: None for n in clash} | {f"svc-{i}": 80 for i in range(150)}
    result = allocate_ports(PROJECT, ENV, services, {})
    assert_well_formed(result)
    moved = [n for n in clash if result[n].host != preferred_host_port(PROJECT, ENV, n, None)]
    assert len(moved) >= 4  # at most one of the five colliding names keeps its preferred port


def test_probing_wraps_around_the_range() -> None:
    last = HOST_BASE_RANGE[-1]
    clash = colliding_names(3, port=last)
    result = allocate_ports(PROJECT, ENV, {n: None for n in clash}, {})
    # Sorted-name order: the first name keeps 8999, the next ones wrap to 8000 and 8001.
    assert [result[n].host for n in sorted(clash)] == [last, 8000, 8001]


@given(service_maps, service_maps)
def test_adding_services_never_moves_existing(first: dict[str, int | None], more: dict[str, int | None]) -> None:
    before = allocate_ports(PROJECT, ENV, first, {})
    after = allocate_ports(PROJECT, ENV, more | first, before)
    assert {n: after[n] for n in first} == before
    assert_well_formed(after)


@given(service_maps, st.data())
def test_removing_services_never_moves_others(services: dict[str, int | None], data: st.DataObject) -> None:
    before = allocate_ports(PROJECT, ENV, services, {})
    removed = data.draw(st.sets(st.sampled_from(sorted(services))) if services else st.just(set()))
    kept = {n: p for n, p in services.items() if n not in removed}
    after = allocate_ports(PROJECT, ENV, kept, before)
    assert after == {n: before[n] for n in kept}


def test_removed_service_frees_its_ports() -> None:
    a, b = colliding_names(2)
    first = allocate_ports(PROJECT, ENV, {a: None}, {})
    # `a` is gone, so `b` may now take the preferred port `a` held.
    second = allocate_ports(PROJECT, ENV, {b: None}, first)
    assert second[b].host == first[a].host == preferred_host_port(PROJECT, ENV, b, None)


@given(names, container_ports)
def test_recorded_assignment_off_preferred_port_is_kept(name: str, cport: int | None) -> None:
    def shifted(port: int, ports: range, by: int) -> int:
        return ports.start + (port - ports.start + by) % len(ports)

    off = PortAssignment(
        host=shifted(preferred_host_port(PROJECT, ENV, name, cport), HOST_BASE_RANGE, 7),
        internal=shifted(preferred_internal_port(PROJECT, ENV, name), INTERNAL_RANGE, 10),
    )
    assert allocate_ports(PROJECT, ENV, {name: cport}, {name: off}) == {name: off}


def test_new_service_never_takes_a_recorded_port() -> None:
    a = "api"
    squatter = PortAssignment(
        host=preferred_host_port(PROJECT, ENV, a, None),
        internal=preferred_internal_port(PROJECT, ENV, a),
    )
    result = allocate_ports(PROJECT, ENV, {a: None, "old": None}, {"old": squatter})
    assert result["old"] == squatter
    assert result[a].host == squatter.host + 1 or (squatter.host == 8999 and result[a].host == 8000)
    assert result[a].internal != squatter.internal


def test_a_new_service_avoids_host_ports_other_projects_publish() -> None:
    """Another project on the server publishes the preferred port, or the one 10000 above it
    (the toggle's other slot): a new service's pair includes neither."""
    preferred = preferred_host_port(PROJECT, ENV, "api", 8000)
    for busy in ({preferred}, {preferred + SECONDARY_OFFSET}, {preferred, preferred + 1 + SECONDARY_OFFSET}):
        result = allocate_ports(PROJECT, ENV, {"api": 8000}, {}, busy)
        pair = {result["api"].host, result["api"].secondary}
        assert not pair & busy and result["api"].host in HOST_BASE_RANGE
    assert allocate_ports(PROJECT, ENV, {"api": 8000}, {}, {preferred})["api"].host == 8000 + (preferred - 8000 + 1) % 1000
    # Ports outside both ranges (an SSH port, 80/443) change nothing.
    assert allocate_ports(PROJECT, ENV, {"api": 8000}, {}, {22, 80, 443, 5432}) == allocate_ports(PROJECT, ENV, {"api": 8000}, {})


def test_recorded_ports_never_move_for_busy_ones() -> None:
    first = allocate_ports(PROJECT, ENV, {"api": 8000}, {})
    busy = {first["api"].host, first["api"].secondary}
    assert allocate_ports(PROJECT, ENV, {"api": 8000}, first, busy) == first


def test_the_store_asks_for_busy_ports_only_when_a_service_is_new(tmp_path: Path) -> None:
    asked: list[int] = []

    def busy() -> set[int]:
        asked.append(1)
        return {preferred_host_port(PROJECT, ENV, "web", 8000)}

    store = PortStore(tmp_path / "ports.json")
    first = store.assign(PROJECT, ENV, {"api": 8000, "web": 8000}, busy)
    assert len(asked) == 1 and first["web"].host != preferred_host_port(PROJECT, ENV, "web", 8000)
    assert store.assign(PROJECT, ENV, {"api": 8000, "web": 8000}, busy) == first
    assert len(asked) == 1  # every service recorded: no listing of the server


def test_thousand_services_fill_the_range_exactly() -> None:
    services = {f"s{i}": None for i in range(1000)}
    result = allocate_ports(PROJECT, ENV, services, {})
    assert sorted(a.host for a in result.values()) == list(HOST_BASE_RANGE)
    assert sorted(a.internal for a in result.values()) == list(INTERNAL_RANGE)
    with pytest.raises(PortsExhausted, match=r"all 1000 host ports \(8000-8999\)"):
        allocate_ports(PROJECT, ENV, services | {"one-too-many": None}, result)
    with pytest.raises(PortsExhausted):
        allocate_ports(PROJECT, ENV, services | {"s1000": None}, {})


def test_recorded_clash_names_both_services() -> None:
    recorded = {
        "api": PortAssignment(host=8100, internal=5100),
        "web": PortAssignment(host=8100, internal=5200),
    }
    with pytest.raises(ValueError, match=r"'api' and 'web'.*host port 8100"):
        allocate_ports(PROJECT, ENV, {"api": None, "web": None}, recorded)
    recorded["web"] = PortAssignment(host=8200, internal=5100)
    with pytest.raises(ValueError, match=r"'api' and 'web'.*internal port 5100"):
        allocate_ports(PROJECT, ENV, {"api": None, "web": None}, recorded)


# --- PortStore ----------------------------------------------------------------------------


def test_store_missing_file_is_empty(tmp_path: Path) -> None:
    assert PortStore(tmp_path / "nope.json").load() == {}


@settings(max_examples=30)
@given(service_maps)
def test_store_round_trips(services: dict[str, int | None]) -> None:
    assignments = allocate_ports(PROJECT, ENV, services, {})
    with tempfile.TemporaryDirectory() as tmp:
        store = PortStore(Path(tmp) / "sub" / "ports.json")
        store.save(assignments)
        assert store.load() == assignments


def test_store_format_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    web, api = PortAssignment(host=8200, internal=5200), PortAssignment(host=8123, internal=5321)
    PortStore(path).save({"web": web, "api": api})
    assert path.read_text() == ('{\n  "api": {\n    "host": 8123,\n    "internal": 5321\n  },\n  "web": {\n    "host": 8200,\n    "internal": 5200\n  }\n}\n')


def test_store_assign_writes_only_on_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[Path] = []
    real_write = ports_mod.atomic_write

    def spy(path: Path, text: str, **kw: int) -> None:
        writes.append(path)
        real_write(path, text, **kw)

    monkeypatch.setattr(ports_mod, "atomic_write", spy)
    store = PortStore(tmp_path / "ports.json")
    first = store.assign(PROJECT, ENV, {"api": 8000, "db": 5432})
    assert len(writes) == 1
    assert store.assign(PROJECT, ENV, {"db": 5432, "api": 8000}) == first
    assert len(writes) == 1  # nothing changed, nothing written
    second = store.assign(PROJECT, ENV, {"api": 8000, "db": 5432, "cache": 6379})
    assert len(writes) == 2
    assert {n: second[n] for n in first} == first
    store.assign(PROJECT, ENV, {"api": 8000})
    assert len(writes) == 3
    assert store.load() == {"api": first["api"]}


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        '{"api": 8123}',
        '{"api": {"host": 8123}}',
        '{"api": {"host": 8123, "internal": "5321"}}',
        '{"api": {"host": true, "internal": 5321}}',
        '{"api": {"host": 8123, "internal": 5321, "extra": 1}}',
        '{"api": {"host": 7000, "internal": 5321}}',
        '{"api": {"host": 8123, "internal": 5321}, "web": {"host": 8123, "internal": 5000}}',
    ],
)
def test_store_rejects_malformed_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "shop-prod-ports.json"
    path.write_text(text)
    with pytest.raises(PortRecordError, match=r"shop-prod-ports\.json"):
        PortStore(path).load()


def test_record_errors_are_user_errors() -> None:
    # The CLI prints a ProjectDeployerError as one line; a broken record is not a bug.
    assert issubclass(PortsExhausted, ProjectDeployerError)
    assert issubclass(PortRecordError, ProjectDeployerError)
    assert issubclass(PortRecordError, ValueError)
