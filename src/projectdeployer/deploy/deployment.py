"""``Deployment``: the deploy path as one :class:`~projectdeployer.environment.environment.Environment`
sees it: what runs where (status, logs, jobs, zones) and changing it (plan, deploy, rollback,
taking a service out of the routing for a while).

The environment says what it is (project, provider, servers, locks); this class does the work
that needs the deploy machinery of this package (:class:`~.orchestrator.Orchestrator` over the
servers, :class:`~.server.ServerDeployer` on one). ``ProjectDeployer`` (api/project.py) wires
the two for its ``deploy``, ``plan``, ``status``, ``logs``, ``run_job`` and ``rollback``;
backups make one for the server holding a backup container and for a restore's ``offline``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from ..build.builder import BuildCheck, ProjectBuilder, is_buildable
from ..core.errors import DeployFailed, ProjectDeployerError
from ..core.fanout import fan_out, raise_for_failures
from ..core.plan import DeployResult, Plan
from ..core.provider import Server
from ..core.runtime import LABEL_RELEASE, LABEL_SLOT, ContainerInfo
from ..environment.environment import Environment
from ..environment.releases import ReleaseHistory
from . import jobs
from .allocation import state_of
from .logs import find_sources, merged_lines
from .orchestrator import Orchestrator
from .server import ServerDeployer, ServiceOutcome

Log = Callable[[str], None]


@attrs.frozen(kw_only=True)
class DeployReport:
    """What a deploy did: its plan (as made under the lock, before anything changed), what
    happened to each service, and the URLs of the services with a domain, on every provider."""

    plan: Plan
    outcomes: tuple[ServiceOutcome, ...]
    seconds: float
    urls: dict[str, str]


@attrs.frozen(kw_only=True)
class ServerView:
    """What one server runs of the environment, read once for the status rows."""

    server: Server
    engine: ServerDeployer
    observed: dict[str, list[ContainerInfo]]
    scheduler: ContainerInfo | None
    routed: frozenset[str]


class Deployment:
    """The deploy work on one environment, for every provider (this machine's environment is a
    fleet of one server): plan, deploy, rollback, status, logs, jobs, and the
    :class:`ServerDeployer` of a server."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.project = environment.project
        self.env = environment.env

    @property
    def log(self) -> Log:
        return self.environment.log

    # --- the deploy machinery -----------------------------------------------------------------

    def orchestrator(self, images: dict[str, str] | None = None) -> Orchestrator:
        """The :class:`Orchestrator` of the environment: the one deploy path over its servers
        (this machine's one for a local environment). ``images``: service -> image to deploy
        instead of the built one, as a rollback does."""
        environment = self.environment
        return Orchestrator(
            self.project,
            self.env,
            environment.provider(),
            environment.manager,
            environment.registry,
            images=images,
            log=self.log,
            drain_timeout=self.project.environment(self.env).drain_timeout,
        )

    def server_deployer(self, server: Server, *, images: dict[str, str] | None = None) -> ServerDeployer:
        """The :class:`ServerDeployer` of the environment on one of its servers (reading what
        runs there; ``images`` as for :meth:`orchestrator`)."""
        environment = self.environment
        return ServerDeployer(self.project, self.env, server, environment.manager, environment.registry, images=images, log=self.log, drain_timeout=self.project.environment(self.env).drain_timeout)

    def server_deployer_holding(self, container: str) -> ServerDeployer | None:
        """The :class:`ServerDeployer` of the server holding ``container``
        (:meth:`Environment.find_container`), or ``None`` when no server has it."""
        placed = self.environment.find_container(container)
        return self.server_deployer(placed.server) if placed is not None else None

    def any_server_deployer(self) -> ServerDeployer:
        """The :class:`ServerDeployer` of the environment's first running server by name (the
        one server of this machine's environment), for what reads the project as a whole, e.g.
        which services are backed up."""
        listed, running = self.environment.servers()
        if not running:
            if listed:
                raise ProjectDeployerError(f"environment {self.env}: every server is stopped ({', '.join(sorted(s.name for s in listed))})")
            raise ProjectDeployerError(f"environment {self.env} has no server: deploy first")
        return self.server_deployer(min(running, key=lambda s: s.name))

    def offline(self, service: str) -> contextlib.AbstractContextManager[None]:
        """``service``'s route out of every sidecar of the environment for the block (a restore
        stops and starts the database inside), then back in, resolved anew."""
        return self.orchestrator().offline(service)

    # --- planning and deploying ---------------------------------------------------------------

    def build_checks(self, service: str | None = None) -> dict[str, BuildCheck]:
        """``service -> BuildCheck`` for the buildable services a deploy would build (all, or
        ``service``): what the build would do, found without building (build/builder.py)."""
        environment = self.environment
        specs = self.project.services_for(self.env)
        names = [n for n, s in specs.items() if is_buildable(s) and service in (None, n)]
        builder = ProjectBuilder(self.project, self.env, environment.manager, registry=environment.registry, log=lambda line: None)
        return {name: builder.check(name) for name in names}

    def plan(self, service: str | None = None, *, build: bool = True) -> Plan:
        """What a deploy of the environment would change, on any provider (this machine's is a
        fleet of one server): the servers and, per service, what changes where. Nothing is
        changed. With ``build`` (as ``deploy`` builds first), a service whose image inputs
        changed, or that has no image yet, is planned as a build first."""
        builds = self.build_checks(service) if build else {}
        return self.orchestrator().plan(service, builds=builds)

    def deploy(self, *, service: str | None = None, images: dict[str, str] | None = None, lock_wait: float = 0.0) -> DeployReport:
        """Deploy the environment (or only ``service``) onto its provider's servers through the
        one deploy path (deploy/orchestrator.py). ``before_deploy``, ``deploy_failed`` and
        ``after_deploy`` receive the plan made under the lock, before anything changed."""
        started = time.monotonic()
        hook = self.environment.manager.hook
        orchestrator = self.orchestrator(images)
        announced: list[Plan] = []

        def on_plan(plan: Plan) -> None:
            changes = plan.changes
            self.log(f"deploying {self.project.name}/{self.env}: {len(changes)} change(s), {len(plan.services) - len(changes)} unchanged")
            hook.before_deploy(plan=plan)  # raising vetoes the deploy
            announced.append(plan)

        try:
            result = orchestrator.deploy(lock_wait=lock_wait, service=service, on_plan=on_plan)
        except ProjectDeployerError as exc:
            if announced:
                hook.deploy_failed(plan=announced[0], error=exc)
            raise
        plan = announced[0] if announced else Plan(project=self.project.name, env=self.env)
        report = DeployReport(plan=plan, outcomes=tuple(result.outcomes), seconds=time.monotonic() - started, urls=self.environment.urls())
        hook.after_deploy(result=DeployResult(plan=plan, releases={o.service: o.release for o in result.outcomes if o.release}, seconds=report.seconds))
        return report

    def rollback(self, service: str, version: str | None = None, *, lock_wait: float = 0.0) -> DeployReport:
        """Redeploy ``service`` with the image of its previous release (or of release/version
        ``version``), through the same zero-downtime toggle."""
        history = ReleaseHistory(self.project.name, self.env).for_service(service)
        if not history:
            raise DeployFailed(f"{service}: no release recorded in {self.env} to roll back to")
        current = history[-1]
        if version is None:
            previous = [r for r in history[:-1] if r.image_id != current.image_id]
            if not previous:
                raise DeployFailed(f"{service}: no earlier release with another image than the current one ({current.id})")
            target = previous[-1]
        else:
            matches = [r for r in history if version in (r.id, r.version)]
            if not matches:
                known = ", ".join(f"{r.id} ({r.version})" for r in history[-10:])
                raise DeployFailed(f"{service}: no release '{version}' (recent: {known})")
            target = matches[-1]
        self.log(f"{service}: rolling back to release {target.id} (image {target.image_id[7:19]})")
        return self.deploy(service=service, images={service: target.image_id}, lock_wait=lock_wait)

    # --- what runs where ----------------------------------------------------------------------

    def zone_status(self) -> dict[str, dict[str, int]]:
        """The seed's shape: ``{zone: {active, reserve, destroying, total}}``: the servers the
        provider lists now, by their state (this machine's one server is active)."""
        counts: dict[str, dict[str, int]] = {}
        listed, _ = self.environment.servers()
        for server in listed:
            state = state_of(server)
            row = counts.setdefault(server.zone, {"active": 0, "reserve": 0, "destroying": 0, "total": 0})
            row[state if state in row else "active"] += 1
            row["total"] += 1
        return counts

    def service_status(self) -> list[dict[str, Any]]:
        """One row per service, one shape for one server or many: what runs (``container``,
        ``state``, ``health``, ``slot``, ``release``, ports), where (``servers``: the servers
        running it, read live), its URL, and for a scheduled service its last run. With
        several servers, ``state`` says on how many of the servers it should run on it runs
        (``running on 2/3``) and the container's details are those of the first server."""
        environment = self.environment
        listed, up = environment.servers()
        views = sorted(raise_for_failures(fan_out(up, self._server_view), "reading the containers").values(), key=lambda v: v.server.name)
        history = ReleaseHistory(self.project.name, self.env)
        ports = views[0].engine.ports() if views else {}
        scheduler = next((v.scheduler for v in views if v.scheduler is not None), None)
        urls = environment.urls()
        rows = []
        for name, spec in self.project.services_for(self.env).items():
            current = history.current(name)
            image = current.image if current else None
            running = [v.server.name for v in views if any(c.running for c in v.observed.get(name, []))]
            if spec.is_scheduled:
                rows.append(self._job_row(name, spec, views, scheduler, image) | {"servers": running})
                continue
            held = [(v, v.engine.active_container(v.observed.get(name, []), v.routed)) for v in views]
            active = next((c for _, c in held if c is not None), None)
            if len(listed) > 1:
                wanted = 1 if environment.registry.service_types[spec.type].stateful else spec.servers_count
                state = f"running on {len(running)}/{wanted}" if running else "not deployed"
            else:
                state = active.state if active else "not deployed"
            rows.append(
                {
                    "service": name,
                    "type": spec.type,
                    "container": active.name if active else None,
                    "state": state,
                    "health": (active.health or ("running" if active.running else active.state)) if active else None,
                    "slot": active.labels.get(LABEL_SLOT) if active else None,
                    "release": active.labels.get(LABEL_RELEASE) if active else None,
                    "image": image,
                    "host_port": next(iter(active.ports.values()), None) if active else None,
                    "internal_port": ports[name].internal if name in ports else None,
                    "url": urls.get(name),
                    "schedule": None,
                    "last_run": None,
                    "last_finished": None,
                    "exit_code": None,
                    "servers": running,
                }
            )
        return rows

    def _server_view(self, server: Server) -> ServerView:
        """What ``server`` runs of the environment, read once for the status rows."""
        engine = self.server_deployer(server)
        return ServerView(
            server=server,
            engine=engine,
            observed=engine.observed(),
            scheduler=engine.runtime.get(jobs.scheduler_name(self.project.name, self.env)),
            routed=engine.routed(),  # the router read once, not once per service
        )

    def _job_row(self, name: str, spec: Any, views: list[ServerView], scheduler: ContainerInfo | None, image: str | None) -> dict[str, Any]:
        """A scheduled service's row: ``scheduled``, its schedule, last run, finish and exit code
        (its job container lives on one server)."""
        container = jobs.job_name(self.project.name, self.env, name)
        info = next((c for v in views for c in v.observed.get(name, []) if c.name == container), None)
        fields = jobs.job_status(info, scheduler)
        return {
            "service": name,
            "type": spec.type,
            "container": info.name if info else None,
            "state": fields["state"],
            "health": fields["health"],
            "slot": info.labels.get(LABEL_SLOT) if info else None,
            "release": info.labels.get(LABEL_RELEASE) if info else None,
            "image": image,
            "host_port": None,
            "internal_port": None,
            "url": None,
            "schedule": spec.schedule,
            "last_run": fields["last_run"],
            "last_finished": fields["last_finished"],
            "exit_code": fields["exit_code"],
        }

    def run_job(self, service: str, *, wait: bool = True, output: Log | None = None) -> int:
        """Start ``service``'s job container now, on the server holding it. With ``wait``,
        pass its output lines to ``output`` as they come and return its exit code; without,
        return 0 once it started."""
        spec = self.project.services_for(self.env).get(service)
        if spec is None:
            raise ProjectDeployerError(f"no service named '{service}' (services: {', '.join(self.project.services)})")
        if not spec.is_scheduled:
            raise ProjectDeployerError(f"{service} is not a scheduled service (it has no schedule); only jobs can be run")
        name = jobs.job_name(self.project.name, self.env, service)
        placed = self.environment.find_container(name)
        if placed is None:
            raise ProjectDeployerError(f"{service} has no job container in {self.env}: deploy first")
        if placed.info.running:
            raise ProjectDeployerError(f"{service}: a run is in progress (started {placed.info.started_at}); wait for it to finish")
        runtime = placed.runtime
        runtime.start_existing(name)
        started = runtime.get(name)
        self.log(f"{service}: started {name}")
        if not wait:
            return 0
        since = jobs.since_epoch(started.started_at) if started and started.started_at else None
        emit = output or (lambda line: print(line, flush=True))
        for line in runtime.logs(name, tail=100_000, follow=True, since=since):
            emit(line)
        code = runtime.wait(name)
        return 1 if code is None else code

    def logs(self, service: str, lines: int = 100, follow: bool = False) -> Iterator[str]:
        """The last ``lines`` lines of ``service`` (its job container's for a scheduled one:
        every run's output, oldest first) from every server running it; with ``follow``, then
        the lines as they come. Each line is prefixed ``server | `` when several servers run
        it; the lines of one are as the container wrote them."""
        if service not in self.project.services:
            raise ProjectDeployerError(f"no service named '{service}' (services: {', '.join(self.project.services)})")
        listed, servers = self.environment.servers()
        sources = find_sources(self.project, self.env, service, servers, self.server_deployer)
        if not sources:
            if self.project.service(service, self.env).is_scheduled:
                raise ProjectDeployerError(f"{service} has no job container in {self.env}: deploy first")
            raise ProjectDeployerError(f"{service} is not running in {self.env}" + (f" (on none of its {len(servers)} server(s))" if len(listed) > 1 else ""))
        if len(sources) == 1:
            (source,) = sources
            return source.engine.runtime.logs(source.container, tail=lines, follow=follow)
        return merged_lines(sources, lines=lines, follow=follow)


__all__ = ["DeployReport", "Deployment", "ServerView"]
