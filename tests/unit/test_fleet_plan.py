"""The plan of a deploy on servers (deploy/planner.py): server rows from the allocation, and per
service what changes on which server, compared the way the deploy compares (config hashes)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from projectdeployer.core.errors import DeployFailed
from projectdeployer.core.runtime import LABEL_CONFIG, LABEL_SLOT
from projectdeployer.deploy.allocation import ServerState, allocate
from projectdeployer.deploy.logs import LogSource, merged_lines
from projectdeployer.deploy.planner import _service_plan, server_rows
from projectdeployer.service_types.python import PythonSpec

pytestmark = pytest.mark.unit


def container(name: str, config: str, slot: str = "a") -> SimpleNamespace:
    return SimpleNamespace(name=name, labels={LABEL_CONFIG: config, LABEL_SLOT: slot}, running=True)


class StubEngine:
    """What _service_plan asks of an engine: the serving container and the desired one."""

    def __init__(self, config: str | None) -> None:
        self.config = config

    def active_container(self, containers: list[Any], routed: Any = None) -> Any:
        return containers[0] if containers else None

    def desired(self, spec: Any, slot: str, ports: Any) -> Any:
        if self.config is None:
            raise DeployFailed("image not on the server")
        return SimpleNamespace(config_hash=self.config, spec=SimpleNamespace(image="shop-api:latest"))


def plan(targets, current, engines, *, unreachable=None, single=False):  # type: ignore[no-untyped-def]
    return _service_plan("api", PythonSpec(name="api"), targets, current, engines, unreachable or {}, {}, 2, single)


def test_server_rows_say_what_happens_to_each_server_and_its_state_after() -> None:
    existing = [ServerState(name="n1", zone="nyc3"), ServerState(name="n2", zone="nyc3"), ServerState(name="n3", zone="nyc3", state="reserve")]
    allocation = allocate({"api": PythonSpec(name="api", server_zone="nyc3", servers_count=4)}, existing)
    rows = server_rows(allocation, {"n1": "active", "n2": "active", "n3": "reserve"})
    assert [(r.server, r.action, r.state, r.next_state) for r in rows] == [
        ("n1", "keep", "active", "active"),
        ("n2", "keep", "active", "active"),
        ("n3", "keep", "reserve", "active"),
        ("nyc3#4 (new)", "create", "", "active"),
    ]
    shrink = server_rows(allocate({"api": PythonSpec(name="api", server_zone="nyc3", servers_count=1)}, existing), {"n1": "active", "n2": "active", "n3": "reserve"})
    assert [(r.server, r.action, r.next_state) for r in shrink] == [("n1", "keep", "active"), ("n2", "destroy", "(destroyed)"), ("n3", "destroy", "(destroyed)")]


def test_unchanged_only_when_every_target_runs_the_desired_container() -> None:
    engines = {"n1": StubEngine("h1"), "n2": StubEngine("h1")}
    same = plan(("n1", "n2"), {"n1": [container("c1", "h1")], "n2": [container("c2", "h1")]}, engines)
    assert (same.action, same.reason, same.servers) == ("unchanged", "running and up to date", ("n1", "n2"))
    one_old = plan(("n1", "n2"), {"n1": [container("c1", "h1")], "n2": [container("c2", "h0")]}, engines)
    assert one_old.action == "update" and one_old.reason == "image or configuration changed on n2"


def test_new_servers_missing_images_and_servers_left_are_changes() -> None:
    engines = {"n1": StubEngine(None)}  # the image is on neither machine: the server pulls it
    result = plan(("n1", "nyc3#2 (new)"), {"n1": [container("c1", "h1")], "n9": [container("c9", "h1")]}, engines)
    assert result.action == "update"
    assert result.reason == "to start on new server(s) nyc3#2 (new); image or configuration changed on n1; to stop on n9"
    first = plan(("nyc3#1 (new)",), {}, {})
    assert (first.action, first.reason) == ("create", "to start on new server(s) nyc3#1 (new)")


def test_an_unreachable_server_is_an_error_and_a_database_never_moves() -> None:
    result = plan(("n1", "n2"), {"n1": [container("c1", "h1")]}, {"n1": StubEngine("h1")}, unreachable={"n2": "timed out"})
    assert result.action == "error" and "cannot read n2" in result.reason
    moved = plan(("l2",), {"l1": [container("db", "h1")]}, {"l2": StubEngine("h1")}, single=True)
    assert moved.action == "error" and "keeps its data on l1, but the allocation puts it on l2" in moved.reason


class StubRuntime:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.asked: list[tuple[str, int, bool]] = []

    def logs(self, name: str, *, tail: int = 100, follow: bool = False, **_: Any) -> Any:
        self.asked.append((name, tail, follow))
        return iter(self.lines[-tail:])


def test_log_lines_carry_their_server_in_order_or_as_they_come() -> None:
    one, two = StubRuntime(["a1", "a2", "a3"]), StubRuntime(["b1"])
    sources = [LogSource(server="n1", container="api_a", engine=SimpleNamespace(runtime=one)), LogSource(server="n2", container="api_b", engine=SimpleNamespace(runtime=two))]  # type: ignore[arg-type]
    assert list(merged_lines(sources, lines=2, follow=False)) == ["n1 | a2", "n1 | a3", "n2 | b1"]
    followed = list(merged_lines(sources, lines=5, follow=True))
    assert sorted(followed) == ["n1 | a1", "n1 | a2", "n1 | a3", "n2 | b1"]
    assert [line for line in followed if line.startswith("n1")] == ["n1 | a1", "n1 | a2", "n1 | a3"]  # each server's order kept
    assert one.asked[-1] == ("api_a", 5, True)


def test_the_hooks_get_the_plan_with_its_steps_and_its_errors_stop_the_deploy() -> None:
    """One plan for every provider (this machine is one server): before_deploy, deploy_failed and
    after_deploy get its steps; a service or scheduler that cannot be deployed is an error."""
    from projectdeployer.core.plan import Plan, SchedulerPlan, ServerPlan, ServicePlan

    plan = Plan(
        project="shop",
        env="prod",
        servers=(
            ServerPlan(zone="lon1", server="n1", action="keep", state="active", next_state="active"),
            ServerPlan(zone="lon1", server="lon1#2 (new)", action="create", state="", next_state="active", services=("api",)),
        ),
        services=(
            ServicePlan(service="db", action="unchanged", reason="running and up to date", group=0, stateful=True, servers=("n1",)),
            ServicePlan(service="api", action="update", reason="image or configuration changed on n1", group=1, stateful=False, servers=("n1", "lon1#2 (new)")),
        ),
        scheduler=SchedulerPlan(action="create", reason="not running", jobs=("report",)),
    )
    steps = plan.steps
    assert [(s.action, s.service, s.server) for s in steps] == [
        ("create server", None, "lon1#2 (new)"),
        ("unchanged", "db", "n1"),
        ("update", "api", "n1,lon1#2 (new)"),
        ("create", "scheduler", None),
    ]
    assert steps[2].detail == "image or configuration changed on n1" and plan.errors == []
    broken = Plan(project="shop", env="prod", servers=(), services=(), scheduler=SchedulerPlan(action="error", reason="scheduler: no image"))
    assert broken.errors == ["scheduler: no image"]
