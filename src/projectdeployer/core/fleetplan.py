"""What a deploy on servers would do, read live and changing nothing: the servers to keep, create
and destroy (with their states now and after), and for each service what changes on which server.

The comparison is the deploy's own: the container each server should run (its config hash, with
the image id the deploy would send, read from this machine's engine when the server lacks the
image) against the one serving there now. A server that cannot be reached is named in the plan
(``unreachable``) and its services say so; nothing else about the plan depends on it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from .allocation import ACTIVE, DESTROYING, RESERVE, Allocation, state_of
from .build import BuildCheck
from .containers import STATEFUL_SLOT
from .engine import Engine
from .errors import DeployFailed
from .fanout import fan_out
from .model import Project
from .order import startup_orders
from .provider import Server
from .runtime import LABEL_CONFIG, LABEL_SLOT, ContainerInfo


@attrs.frozen(kw_only=True)
class ServerRow:
    """One server of the plan."""

    zone: str
    #: Its name, or ``zone#n (new)`` for one to create.
    server: str
    #: keep, create, destroy
    action: str
    #: Its state now (``""`` for one to create) and after the deploy.
    state: str
    next_state: str
    services: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class FleetServicePlan:
    """What the deploy will do to one service across its servers."""

    service: str
    #: create, update, unchanged, remove, error
    action: str
    reason: str
    group: int
    stateful: bool
    #: The servers it will run on (labels, as in :class:`ServerRow`).
    servers: tuple[str, ...] = ()
    image: str = ""
    #: Why this machine builds a new image first (as :attr:`ServicePlan.build`); ``None``: no build.
    build: str | None = None


@attrs.frozen(kw_only=True)
class FleetPlan:
    project: str
    env: str
    servers: tuple[ServerRow, ...]
    services: tuple[FleetServicePlan, ...]
    #: Servers that could not be read (named with the error).
    unreachable: Mapping[str, str] = attrs.field(factory=dict)
    #: The scheduler runs on the first server of each zone with jobs; it has no row of its own.
    scheduler: None = None

    @property
    def changes(self) -> list[FleetServicePlan]:
        return [s for s in self.services if s.action != "unchanged"]


def server_rows(allocation: Allocation, states: Mapping[str, str]) -> list[ServerRow]:
    """The allocation as plan rows: state now (from ``states``) and after the deploy."""
    rows = []
    for plan in allocation.servers:
        if plan.action == "destroy":
            after = "(destroyed)"
        else:
            after = ACTIVE if plan.services else RESERVE
        now = states.get(plan.name, "") if plan.name else ""
        rows.append(ServerRow(zone=plan.zone, server=plan.label, action=plan.action, state=now, next_state=after, services=plan.services))
    return rows


def local_image_ids(local_docker: Callable[[], Any]) -> Callable[[str], str | None]:
    """An ``image_source`` for a plan's engines: the id of an image on this machine's engine
    (``local_docker()``, its Docker client), which the deploy would send to the server; looked up
    once per image. ``None`` for an image pulled by digest or not on this machine."""
    found: dict[str, str | None] = {}

    def local_id(ref: str) -> str | None:
        if "@sha256:" in ref:
            return None  # pulled by the server itself: a change until it has it
        if ref not in found:
            try:
                found[ref] = local_docker().images.get(ref).id
            except Exception:  # noqa: BLE001 - not on this machine: the server pulls it
                found[ref] = None
        return found[ref]

    return local_id


def plan_fleet(
    project: Project,
    env: str,
    servers: Sequence[Server],
    allocation: Allocation,
    engine_for: Callable[[Server], Engine],
    *,
    stateful: Collection[str],
    service: str | None = None,
    builds: Mapping[str, BuildCheck] | None = None,
    max_workers: int = 8,
) -> FleetPlan:
    """The plan of a deploy of ``env`` onto ``servers`` (as listed now) under ``allocation``
    (or of ``service`` only), read through ``engine_for(server)`` (an engine that connects to
    the server and holds the services placed there); ``stateful``: the services that run on one
    server. ``builds``: the images this machine builds first (a service with a build needed
    changes wherever it runs). The servers are read in parallel."""
    builds = builds or {}
    specs = project.services_for(env)
    states = {s.name: state_of(s) for s in servers}
    engines: dict[str, Engine] = {}
    observed: dict[str, dict[str, list[ContainerInfo]]] = {}
    unreachable: dict[str, str] = {}

    def read(server: Server) -> tuple[Engine, dict[str, list[ContainerInfo]]]:
        engine = engine_for(server)
        return engine, engine.containers(fresh=True)

    readable = [s for s in servers if not (states[s.name] == DESTROYING and not getattr(s, "running", True))]
    for name, result in fan_out(readable, read, max_workers=max_workers).items():
        if isinstance(result, BaseException):  # an unreachable server is part of the answer
            unreachable[name] = str(result).splitlines()[0] if str(result) else type(result).__name__
        else:
            engines[name], observed[name] = result
    ports = next(iter(engines.values())).ports() if engines else {}
    orders = startup_orders({n: s.depends_on for n, s in specs.items()}, {n: s.startup_order for n, s in specs.items()})
    rows = []
    for name, spec in specs.items():
        if service not in (None, name):
            continue
        targets = tuple(allocation.placement.get(name, ()))
        current = {server: found for server, seen in observed.items() if (found := [c for c in seen.get(name, []) if c.running])}
        rows.append(_service_plan(name, spec, targets, current, engines, unreachable, ports, orders[name], name in stateful or spec.is_scheduled, build=builds.get(name)))
    if service is None:
        gone: dict[str, list[str]] = {}
        for server, seen in observed.items():
            for svc in seen:
                if svc not in specs:
                    gone.setdefault(svc, []).append(server)
        for svc, where in sorted(gone.items()):
            rows.append(FleetServicePlan(service=svc, action="remove", reason="no longer in the project file", group=0, stateful=False, servers=tuple(sorted(where))))
    server_plan = server_rows(allocation, states)
    if service is not None:
        # One service: the servers it will run on (created for it when missing); nothing is
        # destroyed by a deploy of one service.
        server_plan = [r for r in server_plan if service in r.services]
    return FleetPlan(project=project.name, env=env, servers=tuple(server_plan), services=tuple(rows), unreachable=unreachable)


def _service_plan(
    name: str,
    spec: Any,
    targets: Sequence[str],
    current: Mapping[str, list[ContainerInfo]],
    engines: Mapping[str, Engine],
    unreachable: Mapping[str, str],
    ports: Mapping[str, Any],
    group: int,
    single: bool,
    *,
    build: BuildCheck | None = None,
) -> FleetServicePlan:
    """One service: compare what each target server runs with what it should run (with a
    ``build`` needed, every server it runs on gets the new image)."""
    if build is not None and build.error is not None:
        return FleetServicePlan(service=name, action="error", reason=build.error, group=group, stateful=single, servers=tuple(targets))
    rebuilt = build is not None and build.needed
    changed: list[str] = []
    new: list[str] = []
    image = ""
    problems: list[str] = []
    for target in targets:
        engine = engines.get(target)
        if engine is None:
            (problems if target in unreachable else new).append(target)
            continue
        if rebuilt:
            changed.append(target)
            image = image or engine.image_for(spec, engine.registry.service_types[spec.type])
            continue
        active = engine.active_container(current.get(target, []))
        if single:
            slot = STATEFUL_SLOT if not spec.is_scheduled else None
        else:
            slot = "a" if active is None else ("b" if active.labels.get(LABEL_SLOT) == "a" else "a")
        if spec.is_scheduled:
            item = next(iter(engine.plan([name]).services), None)
            if item is not None and item.action != "unchanged":
                (problems if item.action == "error" else changed).append(target)
                image = image or item.image
            continue
        try:
            desired = engine.desired(spec, slot or STATEFUL_SLOT, ports)
        except DeployFailed:
            changed.append(target)  # its image is on neither machine yet: the server pulls it
            continue
        image = image or desired.spec.image
        if active is None or active.labels.get(LABEL_CONFIG) != desired.config_hash:
            changed.append(target)
    stop_on = sorted(s for s in current if s not in targets)
    reasons = []
    if rebuilt:
        assert build is not None
        reasons.append(f"build: {build.reason}")
    if problems:
        reasons.append(f"cannot read {', '.join(problems)}")
    if single and stop_on:
        return FleetServicePlan(
            service=name,
            action="error",
            group=group,
            stateful=True,
            servers=tuple(targets),
            image=image,
            reason=f"keeps its data on {stop_on[0]}, but the allocation puts it on {targets[0]}: moving a database between servers is not done automatically",
        )
    if new:
        reasons.append(f"to start on new server(s) {', '.join(new)}")
    if changed:
        fresh = [t for t in changed if t not in current]
        moved = [t for t in changed if t in current]
        if moved:
            reasons.append(f"{'new image' if rebuilt else 'image or configuration changed'} on {', '.join(moved)}")
        if fresh:
            reasons.append(f"not running on {', '.join(fresh)}")
    if stop_on:
        reasons.append(f"to stop on {', '.join(stop_on)}")
    if problems:
        action = "error"
    elif not current:
        action = "create"
    elif reasons:
        action = "update"
    else:
        action = "unchanged"
    reason = "; ".join(reasons) if reasons else ("running and up to date" if current else "not running")
    return FleetServicePlan(service=name, action=action, reason=reason, group=group, stateful=single, servers=tuple(targets), image=image, build=build.reason if rebuilt and build else None)


__all__ = ["FleetPlan", "FleetServicePlan", "ServerRow", "plan_fleet", "server_rows"]
