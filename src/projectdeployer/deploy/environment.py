"""``Environment``: one environment of a project (provider, servers, locks) and the deploy,
status, logs and rollback done on it, handed out by ``ProjectDeployer.environment(env)``.

Kept apart from the fluent API so the project-file machinery stays importable without them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pluggy

from ..core.errors import DeployFailed, ProjectDeployerError
from ..core.model import Project
from ..core.plan import DeployResult, Plan
from ..core.provider import Server
from ..core.registry import Registry
from ..core.runtime import LABEL_RELEASE, LABEL_SLOT, ContainerInfo, ContainerRuntime
from ..environment.releases import ReleaseHistory
from ..project.validation import require_env_name
from . import jobs
from .allocation import state_of
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
class Placed:
    """A container found on one server of the environment (:meth:`Environment.find_container`)."""

    server: Server
    runtime: ContainerRuntime
    #: The container as read when it was found.
    info: ContainerInfo


@attrs.frozen(kw_only=True)
class ServerView:
    """What one server runs of the environment, read once for the status rows."""

    server: Server
    engine: ServerDeployer
    observed: dict[str, list[ContainerInfo]]
    scheduler: ContainerInfo | None
    routed: frozenset[str]


def bound_environment(who: str, project: object, env: str | None, error: type[ProjectDeployerError] = ProjectDeployerError) -> tuple[Environment | None, str]:
    """For the seed's classes that take ``(project, env=None)`` where ``project`` may also be an
    :class:`Environment`: ``(that environment or None, the env name)``. ``env`` is checked as a
    name first; given beside an environment it must be that environment's (else ``error`` names
    ``who``); without either it is ``dev``, as in the seed."""
    if env is not None:
        env = require_env_name(who, env)
    if isinstance(project, Environment):
        if env is not None and env != project.env:
            raise error(f"{who}: env={env!r} given with the environment {project.env!r}; give one of them")
        return project, project.env
    return None, "dev" if env is None else env


def provider_name(project: Project, env: str) -> str:
    """The provider of ``env``: its setting, or ``auto`` = DigitalOcean with a token, else local."""
    setting = project.environment(env).provider
    if setting != "auto":
        return setting
    return "digitalocean" if os.environ.get("DIGITALOCEAN_API_TOKEN") else "local"


class Environment:
    """One environment of a project: its provider, its servers and its locks, and the work
    done on it (deploy, plan, status, logs, run, rollback).

    ``ProjectDeployer.environment(env)`` hands it out; backups, rotation, sync, the bastion
    client and the command line take one instead of reaching into ``ProjectDeployer``.
    """

    def __init__(self, project: Project, env: str, manager: pluggy.PluginManager, registry: Registry, *, log: Log | None = None) -> None:
        self.project = project
        self.env = env
        self.manager = manager
        self.registry = registry
        self.log = log or (lambda line: print(line, flush=True))

    def plan(self, service: str | None = None, *, build: bool = True) -> Plan:
        """What a deploy of the environment would change, on any provider (this machine's is a
        fleet of one server): the servers and, per service, what changes where. Nothing is
        changed. With ``build`` (as ``deploy`` builds first), a service whose image inputs
        changed, or that has no image yet, is planned as a build first."""
        builds = self.build_checks(service) if build else {}
        plan: Plan = self.fleet().plan(service, builds=builds)
        return plan

    def build_checks(self, service: str | None = None) -> dict[str, Any]:
        """``service -> BuildCheck`` for the buildable services a deploy would build (all, or
        ``service``): what the build would do, found without building (core/build.py)."""
        from ..build.builder import ProjectBuilder, is_buildable

        specs = self.project.services_for(self.env)
        names = [n for n, s in specs.items() if is_buildable(s) and service in (None, n)]
        builder = ProjectBuilder(self.project, self.env, self.manager, registry=self.registry, log=lambda line: None)
        return {name: builder.check(name) for name in names}

    def fleet(self, images: dict[str, str] | None = None) -> Any:
        """The :class:`~projectdeployer.deploy.orchestrator.Orchestrator` of the environment: the one deploy
        path over its servers (this machine's one for a local environment)."""
        from .orchestrator import Orchestrator

        return Orchestrator(self.project, self.env, self.provider(), self.manager, self.registry, images=images, log=self.log, drain_timeout=self.project.environment(self.env).drain_timeout)

    def provider(self) -> Any:
        """The provider object of the environment (a plugin's ``get_provider`` first, else by name)."""
        chosen = self.manager.hook.get_provider(project=self.project, env=self.env, zone="local")
        if chosen is not None:
            return chosen
        name = provider_name(self.project, self.env)
        entry = self.registry.providers.get(name)
        if entry is None:
            raise ProjectDeployerError(f"environment {self.env}: no provider named '{name}' is loaded")
        return entry.get(self.project)

    def servers(self) -> tuple[list[Server], list[Server]]:
        """Every server of the environment as the provider lists it now (this machine's one for a
        local environment), and the running ones."""
        listed = self.provider().list_servers(self.project.name, self.env)
        return listed, [s for s in listed if getattr(s, "running", True)]

    def engine_on(self, server: Server, *, images: dict[str, str] | None = None) -> ServerDeployer:
        """An engine of the environment on one of its servers (reading what runs there;
        ``images``: service -> image to deploy instead of the built one, as a rollback does)."""
        return ServerDeployer(self.project, self.env, server, self.manager, self.registry, images=images, log=self.log, drain_timeout=self.project.environment(self.env).drain_timeout)

    def find_container(self, name: str) -> Placed | None:
        """The server holding container ``name`` (a job, backup or database container lives on
        one server), its runtime and the container as read now; ``None`` when no server has
        it. Every running server is asked at once (this machine's environment has one). A
        server that cannot be reached is an error naming it (it might be the one)."""
        from ..core.fanout import failures, fan_out, one_line, successes

        listed, servers = self.servers()

        def look(server: Server) -> Placed | None:
            runtime = server.runtime()
            info = runtime.get(name)
            return Placed(server=server, runtime=runtime, info=info) if info is not None else None

        results = fan_out(servers, look)
        found = sorted((placed for placed in successes(results).values() if placed is not None), key=lambda p: p.server.name)
        if found:
            return found[0]
        errors = failures(results)
        if errors:
            raise ProjectDeployerError(f"cannot look for {name} on " + "; ".join(f"{n}: {one_line(e)}" for n, e in sorted(errors.items())))
        stopped = sorted(s.name for s in listed if s not in servers)
        if stopped:
            raise ProjectDeployerError(f"{name} is on none of the running servers of {self.project.name}/{self.env}; stopped: {', '.join(stopped)} (start them and try again)")
        return None

    def engine_holding(self, container: str) -> ServerDeployer | None:
        """The engine of the server holding ``container`` (:meth:`find_container`), or ``None``."""
        placed = self.find_container(container)
        return self.engine_on(placed.server) if placed is not None else None

    @contextlib.contextmanager
    def lock(self, *, wait: float = 0.0) -> Iterator[None]:
        """The deploy lock of the environment for work that changes it without deploying it
        (restores, rotations): this machine's lock, then the provider's creation lock while
        the lock server's is taken, as a deploy takes them. A provider without a creation lock
        or servers that hold none (this machine's) leave this machine's lock alone."""
        from ..environment.serverlock import local_lock, server_lock

        with local_lock(self.project.name, self.env, wait=wait):
            provider = self.provider()
            with contextlib.ExitStack() as held:
                with provider.creation_lock(self.project.name, self.env, wait=wait):
                    held.enter_context(server_lock(self.project.name, self.env, provider.list_servers(self.project.name, self.env), wait=wait))
                yield

    def offline(self, service: str) -> contextlib.AbstractContextManager[None]:
        """``service``'s route out of every sidecar of the environment for the block (a restore
        stops and starts the database inside), then back in, resolved anew."""
        return self.fleet().offline(service)

    def any_engine(self) -> ServerDeployer:
        """An engine of the environment's first running server by name (the one server of this
        machine's environment), for what reads the project as a whole, e.g. which services are
        backed up."""
        listed, running = self.servers()
        if not running:
            if listed:
                raise ProjectDeployerError(f"environment {self.env}: every server is stopped ({', '.join(sorted(s.name for s in listed))})")
            raise ProjectDeployerError(f"environment {self.env} has no server: deploy first")
        return self.engine_on(min(running, key=lambda s: s.name))

    def deploy(self, *, service: str | None = None, images: dict[str, str] | None = None, lock_wait: float = 0.0) -> DeployReport:
        """Deploy the environment (or only ``service``) onto its provider's servers through the
        one deploy path (deploy/orchestrator.py). ``before_deploy``, ``deploy_failed`` and
        ``after_deploy`` receive the plan made under the lock, before anything changed."""
        started = time.monotonic()
        fleet = self.fleet(images)
        announced: list[Plan] = []

        def on_plan(plan: Plan) -> None:
            changes = plan.changes
            self.log(f"deploying {self.project.name}/{self.env}: {len(changes)} change(s), {len(plan.services) - len(changes)} unchanged")
            self.manager.hook.before_deploy(plan=plan)  # raising vetoes the deploy
            announced.append(plan)

        try:
            result = fleet.deploy(lock_wait=lock_wait, service=service, on_plan=on_plan)
        except ProjectDeployerError as exc:
            if announced:
                self.manager.hook.deploy_failed(plan=announced[0], error=exc)
            raise
        plan = announced[0] if announced else Plan(project=self.project.name, env=self.env)
        report = DeployReport(plan=plan, outcomes=tuple(result.outcomes), seconds=time.monotonic() - started, urls=self.urls())
        self.manager.hook.after_deploy(result=DeployResult(plan=plan, releases={o.service: o.release for o in result.outcomes if o.release}, seconds=report.seconds))
        return report

    def urls(self) -> dict[str, str]:
        """``service -> URL`` for services with a domain, through the sidecar's published ports."""
        settings = self.project.environment(self.env)
        out = {}
        for name, spec in self.project.services_for(self.env).items():
            if spec.domain:
                http_port = getattr(settings, "http_port", None)
                https_port = getattr(settings, "https_port", None)
                if https_port:
                    out[name] = f"https://{spec.domain}:{https_port}/" if https_port != 443 else f"https://{spec.domain}/"
                elif http_port:
                    out[name] = f"http://{spec.domain}:{http_port}/" if http_port != 80 else f"http://{spec.domain}/"
        return out

    def service_status(self) -> list[dict[str, Any]]:
        """One row per service, one shape for one server or many: what runs (``container``,
        ``state``, ``health``, ``slot``, ``release``, ports), where (``servers``: the servers
        running it, read live), its URL, and for a scheduled service its last run. With
        several servers, ``state`` says on how many of the servers it should run on it runs
        (``running on 2/3``) and the container's details are those of the first server."""
        from ..core.fanout import fan_out, raise_for_failures

        listed, up = self.servers()
        views = sorted(raise_for_failures(fan_out(up, self._server_view), "reading the containers").values(), key=lambda v: v.server.name)
        history = ReleaseHistory(self.project.name, self.env)
        ports = views[0].engine.ports() if views else {}
        scheduler = next((v.scheduler for v in views if v.scheduler is not None), None)
        urls = self.urls()
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
                wanted = 1 if self.registry.service_types[spec.type].stateful else spec.servers_count
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
        engine = self.engine_on(server)
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
        placed = self.find_container(name)
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

    def zone_status(self) -> dict[str, dict[str, int]]:
        """The seed's shape: ``{zone: {active, reserve, destroying, total}}``: the servers the
        provider lists now, by their state (this machine's one server is active)."""
        counts: dict[str, dict[str, int]] = {}
        for listed in self.provider().list_servers(self.project.name, self.env):
            state = state_of(listed)
            row = counts.setdefault(listed.zone, {"active": 0, "reserve": 0, "destroying": 0, "total": 0})
            row[state if state in row else "active"] += 1
            row["total"] += 1
        return counts

    def logs(self, service: str, lines: int = 100, follow: bool = False) -> Iterator[str]:
        """The last ``lines`` lines of ``service`` (its job container's for a scheduled one:
        every run's output, oldest first) from every server running it; with ``follow``, then
        the lines as they come. Each line is prefixed ``server | `` when several servers run
        it; the lines of one are as the container wrote them."""
        from .logs import find_sources, merged_lines

        if service not in self.project.services:
            raise ProjectDeployerError(f"no service named '{service}' (services: {', '.join(self.project.services)})")
        listed, servers = self.servers()
        sources = find_sources(self.project, self.env, service, servers, self.engine_on)
        if not sources:
            if self.project.service(service, self.env).is_scheduled:
                raise ProjectDeployerError(f"{service} has no job container in {self.env}: deploy first")
            raise ProjectDeployerError(f"{service} is not running in {self.env}" + (f" (on none of its {len(servers)} server(s))" if len(listed) > 1 else ""))
        if len(sources) == 1:
            (source,) = sources
            return source.engine.runtime.logs(source.container, tail=lines, follow=follow)
        return merged_lines(sources, lines=lines, follow=follow)

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
