"""What a deploy would do, read live and changing nothing, on any provider (this machine is a
fleet of one server): the :class:`~projectdeployer.core.plan.Plan` with the servers to keep,
create and destroy (with their states now and after), for each service what changes on which
server, and the scheduler; the one plan ``plan`` prints and the lifecycle hooks receive.

The comparison is the deploy's own: the container each server should run (its config hash, with
the image id the deploy would send, read from this machine's engine when the server lacks the
image) against the one serving there now. A server that cannot be reached is named in the plan
(``unreachable``) and its services say so; nothing else about the plan depends on it. With one
server, reasons do not name it (``not running``, not ``not running on local``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from ..build.builder import BuildCheck
from ..core.containers import JOB_SLOT, STATEFUL_SLOT
from ..core.errors import DeployFailed
from ..core.fanout import fan_out
from ..core.model import Project
from ..core.plan import Plan, SchedulerPlan, ServerPlan, ServicePlan
from ..core.provider import Server
from ..core.runtime import LABEL_CONFIG, LABEL_SLOT, ContainerInfo
from ..project.order import startup_orders
from . import jobs
from .allocation import ACTIVE, DESTROYING, RESERVE, Allocation, state_of
from .server import ServerDeployer, images_looked_up_once


def server_rows(allocation: Allocation, states: Mapping[str, str]) -> list[ServerPlan]:
    """The allocation as plan rows: state now (from ``states``) and after the deploy."""
    rows = []
    for plan in allocation.servers:
        if plan.action == "destroy":
            after = "(destroyed)"
        else:
            after = ACTIVE if plan.services else RESERVE
        now = states.get(plan.name, "") if plan.name else ""
        rows.append(ServerPlan(zone=plan.zone, server=plan.label, action=plan.action, state=now, next_state=after, services=plan.services))
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
    engine_for: Callable[[Server], ServerDeployer],
    *,
    stateful: Collection[str],
    service: str | None = None,
    builds: Mapping[str, BuildCheck] | None = None,
    max_workers: int = 8,
) -> Plan:
    """The plan of a deploy of ``env`` onto ``servers`` (as listed now) under ``allocation``
    (or of ``service`` only), read through ``engine_for(server)`` (an engine that connects to
    the server and holds the services placed there); ``stateful``: the services that run on one
    server. ``builds``: the images this machine builds first (a service with a build needed
    changes wherever it runs). The servers are read in parallel."""
    builds = builds or {}
    specs = project.services_for(env)
    states = {s.name: state_of(s) for s in servers}
    engines: dict[str, ServerDeployer] = {}
    observed: dict[str, dict[str, list[ContainerInfo]]] = {}
    unreachable: dict[str, str] = {}
    routed: dict[str, frozenset[str]] = {}

    def read(server: Server) -> tuple[ServerDeployer, dict[str, list[ContainerInfo]]]:
        engine = engine_for(server)
        # Each server's containers and router read once, whatever the number of services.
        found = engine.containers(fresh=True)
        routed[server.name] = engine.routed(fresh=True)
        return engine, found

    readable = [s for s in servers if not (states[s.name] == DESTROYING and not getattr(s, "running", True))]
    for name, result in fan_out(readable, read, max_workers=max_workers).items():
        if isinstance(result, BaseException):  # an unreachable server is part of the answer
            unreachable[name] = str(result).splitlines()[0] if str(result) else type(result).__name__
        else:
            engines[name], observed[name] = result
    ports = next(iter(engines.values())).ports() if engines else {}
    # This machine's engine gets no image sent: an image missing there is an error, as it is for the deploy.
    here = {s.name for s in servers if getattr(s, "local_engine", False)}
    named = len(allocation.servers) > 1 or len(servers) > 1
    orders = startup_orders({n: s.depends_on for n, s in specs.items()}, {n: s.startup_order for n, s in specs.items()})
    with images_looked_up_once(engines.values()):  # an image shared by many services looked up once
        # Every server's images at once, before the services are compared one by one.
        fan_out(list(engines.values()), ServerDeployer.look_up_images, max_workers=max_workers, name=lambda engine: engine.server.name)
        rows = _service_rows(specs, service, allocation, observed, engines, unreachable, ports, orders, stateful, builds, named=named, no_transfer=here, routed=routed)
        scheduler = _scheduler_plan(engines, observed, rows, max_workers=max_workers)
    server_plan = server_rows(allocation, states)
    if service is not None:
        # One service: the servers it will run on (created for it when missing); nothing is
        # destroyed by a deploy of one service.
        server_plan = [r for r in server_plan if service in r.services]
    return Plan(project=project.name, env=env, servers=tuple(server_plan), services=tuple(rows), unreachable=unreachable, scheduler=scheduler)


def _service_rows(
    specs: Mapping[str, Any],
    service: str | None,
    allocation: Allocation,
    observed: Mapping[str, Mapping[str, list[ContainerInfo]]],
    engines: Mapping[str, ServerDeployer],
    unreachable: Mapping[str, str],
    ports: Mapping[str, Any],
    orders: Mapping[str, int],
    stateful: Collection[str],
    builds: Mapping[str, BuildCheck],
    *,
    named: bool,
    no_transfer: Collection[str],
    routed: Mapping[str, frozenset[str]],
) -> list[ServicePlan]:
    """One row per service (or ``service`` only), then one per service no longer in the project."""
    rows = []
    for name, spec in specs.items():
        if service not in (None, name):
            continue
        targets = tuple(allocation.placement.get(name, ()))
        # A job container is created, never left running: it counts as there when it exists.
        current = {server: found for server, seen in observed.items() if (found := [c for c in seen.get(name, []) if c.running or spec.is_scheduled])}
        rows.append(
            _service_plan(
                name,
                spec,
                targets,
                current,
                engines,
                unreachable,
                ports,
                orders[name],
                name in stateful or spec.is_scheduled,
                build=builds.get(name),
                named=named,
                no_transfer=no_transfer,
                routed=routed,
            )
        )
    if service is None:
        gone: dict[str, list[str]] = {}
        for server, seen in observed.items():
            for svc in seen:
                if svc not in specs:
                    gone.setdefault(svc, []).append(server)
        for svc, where in sorted(gone.items()):
            rows.append(ServicePlan(service=svc, action="remove", reason="no longer in the project file", group=0, stateful=False, servers=tuple(sorted(where))))
    return rows


def _scheduler_plan(engines: Mapping[str, ServerDeployer], observed: Mapping[str, Mapping[str, list[ContainerInfo]]], rows: Sequence[ServicePlan], *, max_workers: int = 8) -> SchedulerPlan | None:
    """The scheduler of the first server (by name) that has one or needs one (every server
    asked at once; an error is raised as the first server by name would raise it)."""

    def plan(name: str) -> SchedulerPlan | None:
        engine = engines[name]
        return jobs.plan_scheduler(engine, engine.specs(), observed[name], [r for r in rows if name in r.servers])

    found = fan_out(sorted(engines), plan, max_workers=max_workers, name=str)
    for result in found.values():
        if isinstance(result, BaseException):
            raise result
        if result is not None:
            return result
    return None


def _service_plan(
    name: str,
    spec: Any,
    targets: Sequence[str],
    current: Mapping[str, list[ContainerInfo]],
    engines: Mapping[str, ServerDeployer],
    unreachable: Mapping[str, str],
    ports: Mapping[str, Any],
    group: int,
    single: bool,
    *,
    build: BuildCheck | None = None,
    named: bool = True,
    no_transfer: Collection[str] = (),
    routed: Mapping[str, frozenset[str]] | None = None,
) -> ServicePlan:
    """One service: compare what each target server runs with what it should run (with a
    ``build`` needed, every server it runs on gets the new image). ``named``: reasons name the
    servers (not with one server); ``no_transfer``: servers no image is sent to (this machine's
    engine), where a missing image is an error; ``routed``: each server's router as read for
    the plan (else asked again by the engines)."""
    if build is not None and build.error is not None:
        return ServicePlan(service=name, action="error", reason=build.error, group=group, stateful=single, servers=tuple(targets))
    if spec.is_scheduled and len(targets) == 1 and targets[0] in engines and not (build is not None and build.needed):
        # A job container on its one server: the job module's own comparison.
        return jobs.plan_job(engines[targets[0]], spec, group, ports, current.get(targets[0], []), servers=tuple(targets))

    def on(where: Sequence[str]) -> str:
        return f" on {', '.join(where)}" if named else ""

    rebuilt = build is not None and build.needed
    changed: list[str] = []
    new: list[str] = []
    image = ""
    problems: list[str] = []
    failed: list[str] = []
    slots_now: set[str | None] = set()
    slots_next: set[str | None] = set()
    for target in targets:
        engine = engines.get(target)
        if engine is None:
            (problems if target in unreachable else new).append(target)
            continue
        active = (
            next((c for c in current.get(target, []) if c.name == jobs.job_name(engine.project.name, engine.env, name)), None)
            if spec.is_scheduled
            else engine.active_container(current.get(target, []), None if routed is None else routed.get(target, frozenset()))
        )
        if spec.is_scheduled:
            slot = JOB_SLOT
        elif single:
            slot = STATEFUL_SLOT
        else:
            slot = "a" if active is None else ("b" if active.labels.get(LABEL_SLOT) == "a" else "a")
        slots_now.add(active.labels.get(LABEL_SLOT) if active is not None else None)
        if rebuilt:
            changed.append(target)
            slots_next.add(slot)
            image = image or engine.image_for(spec, engine.registry.service_types[spec.type])
            continue
        try:
            desired = engine.desired(spec, slot, ports)
        except DeployFailed as exc:
            if target in no_transfer:
                failed.append(str(exc))  # nothing brings the image there: the deploy would stop
            else:
                changed.append(target)  # its image is on neither machine yet: the server pulls it
                slots_next.add(slot)
            continue
        image = image or desired.spec.image
        if active is None or active.labels.get(LABEL_CONFIG) != desired.config_hash:
            changed.append(target)
            slots_next.add(slot)
    current_slot = next(iter(slots_now)) if len(slots_now) == 1 else None
    next_slot = next(iter(slots_next)) if len(slots_next) == 1 else None
    if failed:
        return ServicePlan(service=name, action="error", reason="; ".join(failed), group=group, stateful=single, servers=tuple(targets), current_slot=current_slot)
    stop_on = sorted(s for s in current if s not in targets)
    reasons = []
    if rebuilt:
        assert build is not None
        reasons.append(f"build: {build.reason}")
    if problems:
        reasons.append(f"cannot read {', '.join(problems)}")
    if single and stop_on and not spec.is_scheduled:
        return ServicePlan(
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
            reasons.append(f"{'new image' if rebuilt else 'image or configuration changed'}{on(moved)}")
        if fresh:
            reasons.append(f"not running{on(fresh)}")
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
        next_slot = None
    reason = "; ".join(reasons) if reasons else ("running and up to date" if current else "not running")
    return ServicePlan(
        service=name,
        action=action,
        reason=reason,
        group=group,
        stateful=single,
        servers=tuple(targets),
        image=image,
        build=build.reason if rebuilt and build else None,
        current_slot=current_slot,
        next_slot=next_slot if action != "error" else None,
    )


__all__ = ["local_image_ids", "plan_fleet", "server_rows"]
