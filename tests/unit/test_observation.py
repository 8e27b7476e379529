"""The engine reads a server once per deploy (issue 12 item 8): deploy/observation.py's kept
values and their invalidation, the one-request container listing, and the deploy's plan
(deploy/planner.py on the engine's one server) and ServerDeployer.observe counting reads on a fake
runtime: one listing and one router read for 20 services, the containers kept until one
changes through the engine, the router until read anew."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pluggy
import pytest

from projectdeployer.core.registry import build_registry
from projectdeployer.core.runtime import LABEL_CONFIG, LABEL_ENV, LABEL_PROJECT, LABEL_SERVICE, LABEL_SLOT, ContainerInfo
from projectdeployer.deploy.observation import Kept, Observation, WatchedRuntime, pick_active
from projectdeployer.deploy.server import ServerDeployer
from projectdeployer.plugins import load_plugins, make_plugin_manager
from projectdeployer.project.file import build_project
from projectdeployer.providers.docker_runtime import _brief_info
from tests.support.fakes import RuntimeOnlyServer

pytestmark = pytest.mark.unit

ENV = "dev"


def info(name: str, *, service: str = "api", state: str = "running", started: str | None = "2026-01-01T00:00:00Z", slot: str = "a", config: str = "c") -> ContainerInfo:
    labels = {LABEL_PROJECT: "shop", LABEL_ENV: ENV, LABEL_SERVICE: service, LABEL_SLOT: slot, LABEL_CONFIG: config}
    return ContainerInfo(id=name, name=name, image_id="sha256:img", labels=labels, state=state, health=None, exit_code=None, started_at=started)


# --- pick_active --------------------------------------------------------------------------------


def test_the_routed_container_serves_else_the_newest_running_one() -> None:
    old, new = info("api_a", started="2026-01-01T00:00:00Z"), info("api_b", started="2026-01-02T00:00:00Z")
    assert pick_active([old, new], {"api_a"}) is old
    assert pick_active([old, new], set()) is new
    assert pick_active([old, info("api_b", state="exited")], {"api_b"}) is old  # routed but stopped
    assert pick_active([info("api_a", state="exited")], {"api_a"}) is None
    observation = Observation(containers={"api": (old, new)}, routed=frozenset({"api_a"}))
    assert observation.active("api") is old and observation.active("web") is None
    assert observation.of("api") == [old, new] and observation.by_service() == {"api": [old, new]}


# --- Kept: a value valid while its generation stays -------------------------------------------


def test_a_kept_value_is_reused_until_its_generation_moves() -> None:
    generation = [0]
    reads: list[int] = []

    def read() -> int:
        reads.append(generation[0])
        return len(reads)

    kept: Kept[int] = Kept(lambda: generation[0])
    assert kept.get(read) == 1
    assert kept.get(read) == 1 and len(reads) == 1  # nothing changed: not read again
    generation[0] += 1
    assert kept.get(read) == 2 and len(reads) == 2  # a change: read anew
    assert kept.get(read, fresh=True) == 3  # fresh: always read
    assert kept.get(read) == 3
    kept.put(42)
    assert kept.get(read) == 42 and len(reads) == 3  # put: the truth as of now
    kept.drop()
    assert kept.get(read) == 4


def test_a_value_read_while_something_changed_is_not_kept() -> None:
    generation = [0]
    reads = []

    def read_across_a_change() -> int:
        reads.append(1)
        if len(reads) == 1:
            generation[0] += 1  # a container started while the listing was under way
        return len(reads)

    kept: Kept[int] = Kept(lambda: generation[0])
    assert kept.get(read_across_a_change) == 1  # the caller gets what was read...
    assert kept.get(read_across_a_change) == 2  # ...but it was not kept
    assert kept.get(read_across_a_change) == 2


# --- WatchedRuntime: every changing call is counted --------------------------------------------


class CountingRuntime:
    """A runtime's shape: records calls; ``remove`` of ``"boom"`` fails."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.bind_address = "127.0.0.1"

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if name == "remove" and args == ("boom",):
                raise RuntimeError("engine said no")
            return []

        return call


def test_the_watched_runtime_counts_changes_and_passes_everything_through() -> None:
    inner = CountingRuntime()
    watched = WatchedRuntime(inner)
    assert watched.wrapped is inner and watched.bind_address == "127.0.0.1"
    for read in ("list", "list_brief", "get", "logs", "image_id", "wait", "exec", "ensure_network"):
        getattr(watched, read)("x")
    assert watched.changes == 0
    for change in ("start", "create", "start_existing", "stop", "remove"):
        before = watched.changes
        getattr(watched, change)("x")
        assert watched.changes == before + 2  # before and after: a read overlapping it is stale
    with pytest.raises(RuntimeError):
        watched.remove("boom")
    assert watched.changes == 12  # a failed change may still have changed something
    assert inner.calls[-1] == "remove"


# --- the one-request listing --------------------------------------------------------------------


def test_a_brief_listing_reads_what_docker_ps_says() -> None:
    running = _brief_info(
        {
            "Id": "abc123",
            "Names": ["/other/alias", "/shop_dev_api_a"],
            "ImageID": "sha256:img",
            "Labels": {LABEL_SERVICE: "api"},
            "State": "running",
            "Status": "Up 3 minutes (healthy)",
            "Ports": [{"IP": "127.0.0.1", "PrivatePort": 8000, "PublicPort": 8123, "Type": "tcp"}, {"PrivatePort": 9000, "Type": "tcp"}],
        }
    )
    assert (running.name, running.state, running.health, running.exit_code, running.ports) == ("shop_dev_api_a", "running", "healthy", None, {8000: 8123})
    assert running.running and running.labels == {LABEL_SERVICE: "api"} and running.started_at is None
    exited = _brief_info({"Id": "def456", "Names": ["/job"], "State": "exited", "Status": "Exited (137) 5 seconds ago"})
    assert (exited.name, exited.exit_code, exited.health, exited.image_id, exited.ports) == ("job", 137, None, "", {})
    starting = _brief_info({"Id": "0123456789abcdef", "Names": [], "State": "running", "Status": "Up 1 second (health: starting)"})
    assert (starting.name, starting.health) == ("0123456789ab", "starting")


# --- the engine: one read per deploy ------------------------------------------------------------


class FakeRuntime:
    """The engine's view of a server: containers, one image; counts the reads."""

    def __init__(self, containers: list[ContainerInfo]) -> None:
        self.containers = containers
        self.reads: list[str] = []
        self.lock = threading.Lock()

    def _count(self, what: str) -> None:
        with self.lock:
            self.reads.append(what)

    def list(self, labels: Any, *, all: bool = True) -> list[ContainerInfo]:
        self._count("list")
        return [c for c in self.containers if all_labels(c, labels)]

    def list_brief(self, labels: Any) -> list[ContainerInfo]:
        self._count("list_brief")
        return [attr_evolve(c, started_at=None) for c in self.containers if all_labels(c, labels)]

    def get(self, name: str) -> ContainerInfo | None:
        self._count("get")
        return next((c for c in self.containers if c.name == name), None)

    def image_id(self, ref: str) -> str | None:
        self._count("image_id")
        return "sha256:img"

    def remove(self, name: str, *, force: bool = True) -> None:
        self.containers = [c for c in self.containers if c.name != name]


def all_labels(container: ContainerInfo, labels: Any) -> bool:
    return all(container.labels.get(k) == v for k, v in labels.items())


def attr_evolve(container: ContainerInfo, **changes: Any) -> ContainerInfo:
    import attrs

    return attrs.evolve(container, **changes)


@pytest.fixture
def manager() -> pluggy.PluginManager:
    return load_plugins(make_plugin_manager(), env={})


def engine_with(manager: pluggy.PluginManager, tmp_path: Path, count: int, running: list[ContainerInfo]) -> tuple[ServerDeployer, FakeRuntime, list[str]]:
    services = {f"web{i:02d}": {"type": "generic", "image": "shared:1", "port": 8000} for i in range(count)}
    project = build_project({"project": {"name": "shop"}, "services": services}, source=str(tmp_path / "shop.toml"), registry=build_registry(manager))
    runtime = FakeRuntime(running)
    engine = ServerDeployer(project, ENV, RuntimeOnlyServer(runtime), manager, build_registry(manager), log=lambda line: None)
    router_reads: list[str] = []

    def routed() -> set[str]:
        router_reads.append("live_routes")
        return {c.name for c in runtime.containers if c.labels.get(LABEL_SLOT) == "a"}

    engine.routed_backends = routed  # type: ignore[method-assign]  # no sidecar here
    return engine, runtime, router_reads


def plan(engine: ServerDeployer) -> Any:
    """The deploy's plan on the engine's one server (deploy/planner.py, as for this machine)."""
    from projectdeployer.deploy.allocation import ServerState, allocate
    from projectdeployer.deploy.planner import plan_fleet

    allocation = allocate(engine.project.services_for(ENV), [ServerState(name=engine.server.name, zone=engine.server.zone)], max_servers=1, zone_of=lambda zone: engine.server.zone)
    return plan_fleet(engine.project, ENV, [engine.server], allocation, lambda server: engine, stateful=())


def test_a_plan_of_twenty_services_reads_the_server_once(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    engine, runtime, router_reads = engine_with(manager, tmp_path, 20, [])
    result = plan(engine)
    assert [p.action for p in result.services] == ["create"] * 20
    # One listing of the project, one router read; new services: one listing of the server's
    # ports in use. Then the shared image looked up once (and the scheduler's container,
    # whether there is one): nothing once per service.
    assert runtime.reads == ["list_brief", "list_brief", "image_id", "get"] and router_reads == ["live_routes"]
    runtime.reads.clear()
    plan(engine)  # the ports are recorded now
    assert runtime.reads == ["list_brief", "image_id", "get"]


def test_new_services_avoid_the_ports_other_projects_publish_on_the_server(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    from projectdeployer.deploy.ports import preferred_host_port

    preferred = preferred_host_port("shop", ENV, "web00", 8000)
    other = attr_evolve(info("blog_dev_web_a", service="web"), labels={LABEL_PROJECT: "blog", LABEL_ENV: ENV}, ports={8000: preferred})
    mine = attr_evolve(info("shop_dev_web01_a", service="web01"), ports={8000: preferred_host_port("shop", ENV, "web01", 8000)})
    engine, _, _ = engine_with(manager, tmp_path, 2, [other, mine])
    ports = engine.ports()
    assert ports["web00"].host != preferred  # another project's
    assert ports["web01"].host == preferred_host_port("shop", ENV, "web01", 8000)  # its own container's port is no obstacle


def test_the_plans_reading_is_reused_until_the_engine_changes_something(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    running = [info(f"shop_dev_web{i:02d}_a", service=f"web{i:02d}") for i in range(3)]
    engine, runtime, router_reads = engine_with(manager, tmp_path, 3, running)
    plan(engine)
    runtime.reads.clear()
    router_reads.clear()
    first = engine.observe()  # what apply starts from: the plan's reading
    assert runtime.reads == [] and router_reads == []
    assert first.active("web01") is not None and first.active("web01").name == "shop_dev_web01_a"  # type: ignore[union-attr]

    engine.runtime.remove("shop_dev_web01_a")  # a change through the engine: containers read anew
    second = engine.observe()
    assert runtime.reads == ["list_brief"] and router_reads == []  # the routes did not change
    assert second.active("web01") is None

    engine.observe(fresh=True)  # a deploy's plan reads both whatever is kept
    assert runtime.reads == ["list_brief", "list_brief"] and router_reads == ["live_routes"]


def test_two_running_containers_of_a_service_are_read_in_full_to_tell_the_newer(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    """A killed deploy left slot b running beside a; the router routes neither (it was
    recreated empty): the one started last serves, so start times are read for those two."""
    older = info("shop_dev_web00_a", service="web00", slot="x", started="2026-01-01T00:00:00Z")
    newer = info("shop_dev_web00_b", service="web00", slot="y", started="2026-01-02T00:00:00Z")
    engine, runtime, _ = engine_with(manager, tmp_path, 1, [newer, older])
    observation = engine.observe(fresh=True)
    assert runtime.reads == ["list_brief", "get", "get"]
    assert observation.active("web00") == newer


def test_the_fleet_reads_each_server_once_for_every_service(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    from projectdeployer.deploy.orchestrator import Orchestrator

    engines = {}
    for server in ("n1", "n2"):
        running = [info(f"shop_dev_web{i:02d}_a", service=f"web{i:02d}") for i in range(3)]
        engine, runtime, router_reads = engine_with(manager, tmp_path, 3, running)
        engines[server] = (engine, runtime, router_reads)
    fleet = Orchestrator(engines["n1"][0].project, ENV, provider=None, manager=manager, registry=build_registry(manager), log=lambda line: None)  # type: ignore[arg-type]
    fleet.engines = {name: engine for name, (engine, _, _) in engines.items()}
    fleet.ports = engines["n1"][0].ports()
    for _, runtime, _ in engines.values():
        runtime.reads.clear()
    table = fleet._observed_table()
    assert sorted(table) == ["web00", "web01", "web02"] and all(len(placed) == 2 for placed in table.values())
    for name in ("web00", "web01", "web02"):
        assert sorted(fleet._containers(name)) == ["n1", "n2"]
    # Each server: one listing and one router read, whatever the number of services.
    for _, runtime, router_reads in engines.values():
        assert runtime.reads == ["list_brief"] and router_reads == ["live_routes"]
    engines["n2"][0].runtime.remove("shop_dev_web01_a")  # a change through the engine: that server is read anew
    assert sorted(fleet._containers("web01")) == ["n1"]
    assert engines["n1"][1].reads == ["list_brief"] and engines["n2"][1].reads == ["list_brief", "list_brief"]
