"""Scheduled services: job containers, and the scheduler container that starts them.

A service with ``schedule = "0 2 * * *"`` is deployed as a *job container*
``{project}_{env}_{service}`` (slot ``job``, label role=job, restart policy "no", no published
ports; environment, private files and mounts exactly as any other service's, through
``build_container``). The deploy *creates* it and never starts it. Its config hash label says
whether a later deploy must replace it:

* unchanged: nothing is touched;
* changed: the old container is removed and a new one created, but never while a run is in
  progress: the deploy waits up to :data:`RUN_WAIT_SECONDS` for the run to end; if it is still
  going then, the deploy leaves the old container (and its old configuration) in place, says so,
  reports the service as ``deferred``, and the next deploy replaces it. The removal itself is
  unforced, so the engine refuses it if a run started at the last moment. Between the removal
  and the creation (a fraction of a second) a scheduled start finds no container: the scheduler
  logs it and that run is missed.

One *scheduler* container per project/env, ``{project}_{env}_scheduler`` (label role=scheduler,
no ``service`` label, so it is never taken for a service), runs while the environment has at
least one scheduled service and is removed when it has none. It runs
``agents/scheduler.py`` (standard library only; see its docstring for the cron syntax
and the Docker-socket trade-off) on the project's ``[images] python`` image, with networking
disabled, the job table and the agent in ``{data_root}/{project}/{env}/scheduler/`` mounted
read-only, and the engine's socket mounted. Its config hash covers the image, the agent's
source and the job table: a changed table (a job added, removed or rescheduled) recreates it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING

import attrs

from ..agents.scheduler import READY
from ..core.containers import JOB_SLOT, container_name
from ..core.errors import DeployFailed, ProjectDeployerError
from ..core.model import ServiceSpec
from ..core.plan import SchedulerPlan, ServiceOutcome, ServicePlan
from ..core.poll import WaitTimeout, wait_until
from ..core.runtime import LABEL_CONFIG, LABEL_ENV, LABEL_PROJECT, LABEL_ROLE, LABEL_SLOT, ContainerInfo, ContainerSpec, Mount
from ..environment.releases import new_release_id
from .backup_jobs import TABLE_SUFFIX, converge, schedule_entries
from .jobcontainers import RUN_WAIT_SECONDS, remove_idle, scheduler_image

if TYPE_CHECKING:
    from .ports import PortAssignment
    from .server import ServerDeployer

# RUN_WAIT_SECONDS (deploy/jobcontainers.py): how long a deploy waits for a job's run in progress
# before leaving its old container; read here at each call, so it can be set on this module.
#: How long a new scheduler may take to load its job table and say it is ready.
READY_SECONDS = 30.0
ROLE_JOB = "job"
ROLE_SCHEDULER = "scheduler"
#: Where the scheduler container sees the agent and its job table.
AGENT_DIR = "/pd-scheduler"
SOCKET_IN_CONTAINER = "/var/run/docker.sock"


def scheduler_name(project: str, env: str) -> str:
    return f"{project}_{env}_scheduler"


def job_name(project: str, env: str, service: str) -> str:
    return container_name(project, env, service, JOB_SLOT)


def scheduler_dir(data_root: str, project: str, env: str) -> str:
    return f"{data_root.rstrip('/')}/{project}/{env}/scheduler"


def ran(stamp: str | None) -> str | None:
    """Docker's StartedAt/FinishedAt, or ``None`` for its zero time (never ran / not finished)."""
    return None if not stamp or stamp.startswith("0001-01-01") else stamp


def agent_source() -> str:
    return resources.files("projectdeployer.agents").joinpath("scheduler.py").read_text(encoding="utf-8")


@attrs.frozen(kw_only=True)
class _DesiredScheduler:
    spec: ContainerSpec
    files: Mapping[str, str]
    config_hash: str


# --- job containers --------------------------------------------------------------------------


def plan_job(engine: ServerDeployer, spec: ServiceSpec, group: int, ports: Mapping[str, PortAssignment], containers: list[ContainerInfo], *, servers: tuple[str, ...] = ()) -> ServicePlan:
    """What the deploy does to the job container of ``spec`` on ``engine``'s server (its one
    server, ``servers`` in the plan), from ``containers`` (the service's, as read)."""
    name = job_name(engine.project.name, engine.env, spec.name)
    current = next((c for c in containers if c.name == name), None)
    others = [c for c in containers if c.name != name]
    try:
        desired = engine.desired(spec, JOB_SLOT, ports)
    except DeployFailed as exc:
        return ServicePlan(service=spec.name, action="error", reason=str(exc), group=group, stateful=False, servers=servers)
    if current is None:
        action, reason = "create", "no job container yet"
    elif current.labels.get(LABEL_CONFIG) != desired.config_hash:
        action, reason = "update", "image or configuration changed" + (" (a run is in progress: the deploy waits for it)" if current.running else "")
    elif others:
        action, reason = "update", f"replaces {', '.join(c.name for c in others)} (now a scheduled job)"
    else:
        return ServicePlan(service=spec.name, action="unchanged", reason="job container up to date", group=group, stateful=False, servers=servers, current_slot=JOB_SLOT, image=desired.spec.image)
    return ServicePlan(
        service=spec.name,
        action=action,
        reason=reason,
        group=group,
        stateful=False,
        servers=servers,
        current_slot=current.labels.get(LABEL_SLOT) if current else (others[0].labels.get(LABEL_SLOT) if others else None),
        next_slot=JOB_SLOT,
        image=desired.spec.image,
    )


def apply_job(engine: ServerDeployer, item: ServicePlan, ports: Mapping[str, PortAssignment]) -> ServiceOutcome:
    started = time.monotonic()
    runtime = engine.runtime
    spec = engine.project.service(item.service, engine.env)
    name = job_name(engine.project.name, engine.env, spec.name)
    if not remove_idle(engine, name, spec.name, wait=RUN_WAIT_SECONDS):
        engine.log(f"{spec.name}: {name} is still running; it keeps its old configuration until the next deploy")
        return ServiceOutcome(service=spec.name, action="deferred", slot=JOB_SLOT, release=None, seconds=time.monotonic() - started)
    # From here until the create, a start by the scheduler finds no container (logged, missed).
    desired = engine.desired(spec, JOB_SLOT, ports)
    release = new_release_id()
    container = engine.materialize(desired, release)
    runtime.create(container)
    engine.log(f"{spec.name}: job container {name} ready (schedule '{spec.schedule}', release {release})")
    for info in engine.containers_of(spec.name):
        if info.name != name:  # the service ran as a long-running one before
            engine.log(f"{spec.name}: removing {info.name} (the service is a scheduled job now)")
            runtime.stop(info.name, timeout=30)
            runtime.remove(info.name)
    engine.record(spec, desired, release)
    return ServiceOutcome(service=spec.name, action=item.action, slot=JOB_SLOT, release=release, seconds=time.monotonic() - started)


def remove_stale_jobs(engine: ServerDeployer, specs: Mapping[str, ServiceSpec]) -> None:
    """Job containers of services that are in the project but not scheduled any more."""
    for info in engine.runtime.list({LABEL_PROJECT: engine.project.name, LABEL_ENV: engine.env, LABEL_ROLE: ROLE_JOB}):
        service = info.name.removeprefix(f"{engine.project.name}_{engine.env}_")
        spec = specs.get(service)
        if spec is not None and not spec.is_scheduled:
            engine.log(f"{service}: removing its job container {info.name} (no schedule any more)")
            engine.runtime.stop(info.name, timeout=30)
            engine.runtime.remove(info.name)


# --- the scheduler ---------------------------------------------------------------------------


def job_table(engine: ServerDeployer, specs: Mapping[str, ServiceSpec], present: Iterable[str]) -> list[dict[str, str]]:
    """The scheduler's table: the scheduled services whose job container exists (or will), and
    the backups of the stateful services (``{service}:backup``, deploy/backup_jobs.py)."""
    here = set(present)
    return [
        {"service": n, "schedule": s.schedule or "", "container": job_name(engine.project.name, engine.env, n)} for n, s in sorted(specs.items()) if s.is_scheduled and n in here
    ] + schedule_entries(engine, specs)


def _desired_scheduler(engine: ServerDeployer, table: list[dict[str, str]]) -> _DesiredScheduler:
    project, env, server = engine.project.name, engine.env, engine.server
    image, image_id = scheduler_image(engine)
    agent = agent_source()
    jobs = json.dumps({"jobs": table}, indent=2, sort_keys=True) + "\n"
    directory = scheduler_dir(server.data_root, project, env)
    spec = ContainerSpec(
        name=scheduler_name(project, env),
        image=image,
        command=("python3", "-u", f"{AGENT_DIR}/scheduler_agent.py", f"{AGENT_DIR}/jobs.json", SOCKET_IN_CONTAINER),
        env={"PD_PROJECT": project, "PD_ENV": env, "TZ": "UTC", "PYTHONDONTWRITEBYTECODE": "1"},
        network="none",  # it talks to the engine over the socket only
        mounts=(
            Mount(source=directory, target=AGENT_DIR, read_only=True),
            Mount(source=server.docker_socket, target=SOCKET_IN_CONTAINER),
        ),
        restart="unless-stopped",
        stop_timeout=10,
        user="0",  # the engine's socket belongs to root (and the docker group)
    )
    canonical = {
        "image_id": image_id,
        "command": spec.command,
        "env": dict(sorted(spec.env.items())),
        "mounts": [attrs.asdict(m) for m in spec.mounts],
        "user": spec.user,
        "agent": hashlib.sha256(agent.encode()).hexdigest(),
        "jobs": jobs,
    }
    config_hash = hashlib.sha256(json.dumps(canonical, sort_keys=True, default=list).encode()).hexdigest()[:16]
    labels = {LABEL_PROJECT: project, LABEL_ENV: env, LABEL_ROLE: ROLE_SCHEDULER, LABEL_CONFIG: config_hash}
    return _DesiredScheduler(spec=attrs.evolve(spec, labels=labels), files={"scheduler_agent.py": agent, "jobs.json": jobs}, config_hash=config_hash)


def plan_scheduler(engine: ServerDeployer, specs: Mapping[str, ServiceSpec], observed: Mapping[str, list[ContainerInfo]], plans: Iterable[ServicePlan] = ()) -> SchedulerPlan | None:
    """What the scheduler needs; ``None`` when there is none and none is needed."""

    present = {service for service, containers in observed.items() if any(c.name == job_name(engine.project.name, engine.env, service) for c in containers)} | {
        p.service for p in plans if p.next_slot == JOB_SLOT and p.action in ("create", "update")
    }
    table = job_table(engine, specs, present)
    current = engine.runtime.get(scheduler_name(engine.project.name, engine.env))
    if not table:
        return SchedulerPlan(action="remove", reason="no scheduled service any more") if current is not None else None
    jobs = tuple(j["service"] for j in table)
    try:
        desired = _desired_scheduler(engine, table)
    except DeployFailed as exc:
        if all(j.endswith(TABLE_SUFFIX) for j in jobs):
            # Only backups to schedule: the deploy goes on, and says the backups are manual.
            return SchedulerPlan(action="skip", reason=f"backups are not scheduled: {exc}", jobs=jobs)
        return SchedulerPlan(action="error", reason=str(exc), jobs=jobs)
    if current is None:
        action, reason = "create", "not running"
    elif current.labels.get(LABEL_CONFIG) != desired.config_hash:
        action, reason = "update", "job table, agent or image changed"
    elif not current.running:
        action, reason = "update", f"not running ({current.state})"
    else:
        action, reason = "unchanged", "running and up to date"
    return SchedulerPlan(action=action, reason=reason, jobs=jobs, image=desired.spec.image)


def apply_scheduler(engine: ServerDeployer) -> SchedulerPlan | None:
    """Converge the scheduler to the job containers that exist now."""

    specs = engine.specs()
    remove_stale_jobs(engine, specs)
    converge(engine)
    # The deploy's reading when no container changed since (an unchanged deploy reads once).
    plan = plan_scheduler(engine, specs, engine.containers())
    if plan is None or plan.action == "unchanged":
        return plan
    if plan.action == "skip":
        engine.log(f"scheduler: warning: {plan.reason} (run them with: projectdeployer backups run)")
        return plan
    server, runtime = engine.server, engine.runtime
    name = scheduler_name(engine.project.name, engine.env)
    directory = scheduler_dir(server.data_root, engine.project.name, engine.env)
    if plan.action == "remove":
        engine.log(f"scheduler: removing {name} (no scheduled service any more)")
        runtime.stop(name, timeout=10)
        runtime.remove(name)
        server.run(["rm", "-rf", directory])
        return plan
    if plan.action == "error":
        raise DeployFailed(plan.reason)
    desired = _desired_scheduler(engine, job_table(engine, specs, plan.jobs))
    result = server.run(["mkdir", "-p", directory])
    if not result.ok:
        raise DeployFailed(f"scheduler: cannot create {directory} on {server.name}: {result.stderr.strip()}")
    for file, content in desired.files.items():
        server.put_file(f"{directory}/{file}", content.encode(), mode=0o644)
    engine.log(f"scheduler: {'starting' if plan.action == 'create' else 'recreating'} {name} ({len(plan.jobs)} job(s): {', '.join(plan.jobs)}; {plan.reason})")
    runtime.remove(name)
    try:
        runtime.start(desired.spec)
    except ProjectDeployerError as exc:
        raise DeployFailed(f"scheduler: {exc}") from None
    _wait_ready(engine, name)
    return plan


def _wait_ready(engine: ServerDeployer, name: str) -> None:
    """Return once the scheduler ``name`` says it loaded its table (within :data:`READY_SECONDS`);
    otherwise remove it and raise, with its state and last log lines."""

    state = "missing"

    def ready() -> tuple[bool, str]:
        nonlocal state
        info = engine.runtime.get(name)
        state = info.state if info else "missing"
        if info is None or info.state in ("exited", "dead"):
            raise _Stopped(state)
        return any(READY in line for line in engine.runtime.logs(name, tail=50)), state

    try:
        wait_until(ready, timeout=READY_SECONDS, interval=0.2, what=f"{name} ready")
        return
    except (_Stopped, WaitTimeout):
        pass
    lines = "\n".join(f"    {line}" for line in engine.runtime.logs(name, tail=20))
    engine.runtime.remove(name)
    raise DeployFailed(f"scheduler: {name} did not start ({state}); it was removed, so no job runs on schedule until the next deploy.\n  its last log lines:\n{lines}")


class _Stopped(Exception):
    """The scheduler stopped while :func:`_wait_ready` waited for it."""


# --- status and manual runs ------------------------------------------------------------------


def job_status(info: ContainerInfo | None, scheduler: ContainerInfo | None) -> dict[str, object]:
    """The status fields of a scheduled service's row."""
    if info is None:
        return {"state": "not deployed", "health": None, "last_run": None, "last_finished": None, "exit_code": None}
    last_run = ran(info.started_at)
    finished = None if info.running else ran(info.finished_at)
    exit_code = info.exit_code if last_run and not info.running else None
    if scheduler is None or not scheduler.running:
        health = "scheduler not running"
    elif info.running:
        health = "running"
    elif last_run is None:
        health = "never ran"
    else:
        health = "ok" if exit_code == 0 else "failed"
    return {"state": "scheduled", "health": health, "last_run": last_run, "last_finished": finished, "exit_code": exit_code}


def since_epoch(stamp: str) -> float:
    """Docker's RFC 3339 UTC time (``2024-05-01T02:00:00.123456789Z``) as seconds since the epoch."""
    head, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()
    return seconds + (float("0." + fraction) if fraction.isdigit() else 0.0)


__all__ = [
    "JOB_SLOT",
    "RUN_WAIT_SECONDS",
    "apply_job",
    "apply_scheduler",
    "job_name",
    "job_status",
    "plan_job",
    "plan_scheduler",
    "ran",
    "scheduler_name",
]
