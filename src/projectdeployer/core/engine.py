"""The deploy engine: plan what changes, then apply it with the seed's toggle deploy.

Plan (no changes made): for every service, compare the container that should run (its config
hash: image id, command, environment, mounts, secrets' digests) with what runs now, read live
from the server's container labels. Apply, group by startup group, services of a group in
parallel:

stateless (toggle)
    start the new container on the other slot (other host port of the pair), wait until it is
    healthy, switch the sidecar to it (validated config, graceful reload), wait until requests
    in flight through the old config finished, then stop and remove the old container.
    A new container that never gets healthy is removed; the old one never stopped serving.
stateful (one data directory)
    stop, then start on the same volume; the gap is measured and reported.

Crash safety: the old container is stopped only after the sidecar serves the new one, and the
sidecar switch itself is atomic, so a deploy killed at any point leaves the old version serving;
the next deploy finds the leftover container, replaces it and converges.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import pluggy

from . import jobs, paths
from .build import BuildCheck, image_tag
from .coalesce import Coalescer
from .containers import JOB_SLOT, SECRETS_MOUNT, STATEFUL_SLOT, ServiceContainer, build_container, network_name
from .errors import LINE_SHOWN, DeployFailed, ProjectDeployerError, printable
from .fanout import fan_out
from .fsutil import atomic_write
from .model import GenericSpec, Project, ServiceSpec
from .monitoring import HealthCheck
from .observation import Kept, Observation, WatchedRuntime, pick_active
from .order import startup_orders
from .plan import ServiceOutcome, ServicePlan
from .poll import WaitTimeout, wait_until
from .ports import PortAssignment, PortStore
from .provider import Server
from .releases import Release, ReleaseHistory, new_release_id
from .rendersafety import command_argv
from .routing import Backend, Route, domain_certificates
from .runtime import LABEL_CONFIG, LABEL_ENV, LABEL_PROJECT, LABEL_RELEASE, LABEL_ROLE, LABEL_SERVICE, LABEL_SLOT, ContainerInfo, ContainerRuntime, ContainerSpec, Mount
from .secretfiles import write_secret_files
from .servicetype import ServiceType

Log = Callable[[str], None]
#: How long a release command (migrations) may run before the deploy gives up on it.
RELEASE_TIMEOUT = 600.0


class _Exited(Exception):
    """A new container stopped while :meth:`Engine.wait_healthy` waited for it."""


@attrs.frozen(kw_only=True)
class DeployPlan:
    project: str
    env: str
    services: tuple[ServicePlan, ...]
    #: The environment's scheduler container (``None``: it has no scheduled service).
    scheduler: jobs.SchedulerPlan | None = None

    @property
    def changes(self) -> list[ServicePlan]:
        return [s for s in self.services if s.action != "unchanged"]


def _build_plan(spec: ServiceSpec, check: BuildCheck, group: int, stateful: bool, exists: bool, current_slot: str | None, next_slot: str | None, image: str) -> ServicePlan:
    """A service whose image the deploy builds first: created, or updated to the new image."""
    return ServicePlan(
        service=spec.name,
        action="update" if exists else "create",
        reason=f"build: {check.reason}; " + ("new image" if exists else "not running"),
        group=group,
        stateful=stateful,
        current_slot=current_slot,
        next_slot=next_slot,
        image=image,
        build=check.reason,
    )


class Engine:
    """Plans and applies deploys of one project/environment to one server.

    Its per-server steps are public, for whoever orchestrates many servers (core/fleet.py) and
    for jobs (core/jobs.py): :meth:`desired` (the container a service should run),
    :meth:`run_release`, :meth:`prepare_volumes`, :meth:`start`, :meth:`wait_healthy`,
    :meth:`materialize` and :meth:`record`; reads are :meth:`containers`, :meth:`observe`,
    :meth:`active_container` and :meth:`routed_backends`. None of the steps routes: routing is
    this engine's own (:meth:`apply`) or the ``routing`` it was given.
    """

    def __init__(
        self,
        project: Project,
        env: str,
        server: Server,
        manager: pluggy.PluginManager,
        registry: Any,
        *,
        images: Mapping[str, str] | None = None,
        log: Log = print,
        drain_timeout: float = 30.0,
        services: Iterable[str] | None = None,
        routing: Callable[[], None] | None = None,
        image_source: Callable[[str], str | None] | None = None,
    ) -> None:
        """``services``: the services this server holds (``None``: every service of the
        environment; many servers: the ones the allocation places here).
        ``routing``: who routes this server's sidecar. ``None``: this engine configures it from
        its own routes; else called instead of that whenever this engine's routes change (many
        servers: the fleet's router, which knows the containers of every server).
        ``image_source``: planning for many servers, the id of an image the server does not have
        yet, from where the deploy will send it (``None`` when it cannot say); without it such an
        image makes :meth:`desired` fail."""
        self.project = project
        self.env = env
        self.server = server
        self.manager = manager
        self.registry = registry
        self.images = dict(images or {})
        self.log = log
        self.drain_timeout = drain_timeout
        # Seen through a change counter: what observe() read is kept only while nothing changed.
        self._watched = WatchedRuntime(server.runtime())
        self.runtime: ContainerRuntime = self._watched  # type: ignore[assignment]
        self._routing_lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        self._switches: Coalescer[str, Route] = Coalescer(self._apply_switches)
        #: Route changes this engine started or finished (the generation of the kept routes).
        self._route_changes = 0
        self._kept_containers: Kept[dict[str, tuple[ContainerInfo, ...]]] = Kept(lambda: self._watched.changes)
        self._kept_routed: Kept[frozenset[str]] = Kept(lambda: self._route_changes)
        #: image ref -> id, while a plan looks them up (many services often share one image).
        self._image_ids: dict[str, str | None] | None = None
        #: The services placed on this server (``None``: every service of the environment).
        self.services: frozenset[str] | None = None if services is None else frozenset(services)
        #: The router called instead of this engine's own routing (core/fleet.py), or ``None``.
        self.routing = routing
        #: Many servers, planning: the id of an image not on the server yet, where the deploy
        #: will send it from (this machine's engine; streaming and pulls by digest keep ids).
        self.image_source = image_source

    def specs(self) -> dict[str, ServiceSpec]:
        """The services this engine runs: every service, or the ones placed on its server."""
        specs = self.project.services_for(self.env)
        return {n: s for n, s in specs.items() if self.services is None or n in self.services}

    # --- observation ----------------------------------------------------------------------

    def observed(self) -> dict[str, list[ContainerInfo]]:
        """The project's containers on the server, by service (read now)."""
        found: dict[str, list[ContainerInfo]] = {}
        for info in self.runtime.list({LABEL_PROJECT: self.project.name, LABEL_ENV: self.env}):
            service = info.labels.get(LABEL_SERVICE)
            if service:
                found.setdefault(service, []).append(info)
        return found

    def observe(self, *, fresh: bool = False) -> Observation:
        """The project's containers and the router's live backends, read once (one container
        listing, one read of the router) instead of once per service; each kept and handed
        out again until a container or a route changes through this engine
        (core/observation.py). ``fresh``: read both now whatever is kept (a deploy's plan,
        under the environment lock, sees what other processes did before it)."""
        containers = self._kept_containers.get(self._read_containers, fresh=fresh)
        return Observation(containers=containers, routed=self.routed(fresh=fresh))

    def containers(self, *, fresh: bool = False) -> dict[str, list[ContainerInfo]]:
        """The project's containers on the server, by service, as :meth:`observe` reads them
        (one listing, kept until a container changes through this engine's runtime), without
        the router's part: for a caller that routes this server itself (core/fleet.py), whose
        route changes this engine does not see. ``fresh``: read now whatever is kept."""
        kept = self._kept_containers.get(self._read_containers, fresh=fresh)
        return {service: list(found) for service, found in kept.items()}

    def routed(self, *, fresh: bool = False) -> frozenset[str]:
        """Container names the router serves (:meth:`routed_backends`), read once and kept
        until this engine changes a route: for :meth:`active_container` over many services."""
        return self._kept_routed.get(lambda: frozenset(self.routed_backends()), fresh=fresh)

    def _read_containers(self) -> dict[str, tuple[ContainerInfo, ...]]:
        """The project's containers by service in one listing (no inspect per container, so
        no start times), except where two of a service run: which started last may decide
        which one serves (:func:`~projectdeployer.core.observation.pick_active`), so those
        are read in full (a leftover of a killed deploy; none after a finished one)."""
        found: dict[str, list[ContainerInfo]] = {}
        for info in self.runtime.list_brief({LABEL_PROJECT: self.project.name, LABEL_ENV: self.env}):
            service = info.labels.get(LABEL_SERVICE)
            if service:
                found.setdefault(service, []).append(info)
        for service, infos in found.items():
            if sum(c.running for c in infos) > 1:
                full = [self.runtime.get(c.name) if c.running else c for c in infos]
                found[service] = [c for c in full if c is not None]  # None: removed meanwhile
        return {service: tuple(infos) for service, infos in found.items()}

    def containers_of(self, service: str) -> list[ContainerInfo]:
        """``service``'s containers, read now for this service alone (by its label)."""
        return self.runtime.list({LABEL_PROJECT: self.project.name, LABEL_ENV: self.env, LABEL_SERVICE: service})

    def ports(self) -> dict[str, PortAssignment]:
        store = PortStore(paths.env_dir(self.project.name, self.env, "config") / "ports.json")
        return store.assign(self.project.name, self.env, {n: s.port for n, s in self.project.services_for(self.env).items()}, busy=self._published_elsewhere)

    def _published_elsewhere(self) -> set[int]:
        """Host ports the server's other containers publish (other projects and environments):
        a new service's ports avoid them (one listing, asked only when a service is new)."""
        return {port for info in self.runtime.list_brief({}) if (info.labels.get(LABEL_PROJECT), info.labels.get(LABEL_ENV)) != (self.project.name, self.env) for port in info.ports.values()}

    def image_for(self, spec: ServiceSpec, stype: ServiceType) -> str:
        """The image reference a service runs: built tag, its own ``image``, or the type's image."""
        if spec.name in self.images:
            return self.images[spec.name]
        if isinstance(spec, GenericSpec) and spec.image:
            return spec.image
        if stype.buildable:
            return image_tag(self.project, spec.name)
        version = getattr(spec, "version", None) or stype.default_version
        return self.project.image(stype.name, version)

    def desired(self, spec: ServiceSpec, slot: str, ports: Mapping[str, PortAssignment]) -> ServiceContainer:
        stype = self.registry.service_types[spec.type]
        image = self.image_for(spec, stype)
        image_id = self._image_id(image)
        if image_id is None and self.image_source is not None:
            image_id = self.image_source(image)
        if image_id is None:
            raise DeployFailed(f"{spec.name}: image {image} is not on server {self.server.name} (build it first: projectdeployer build)")
        parts = self.manager.hook.container_parts(service=spec, project=self.project, env=self.env)

        def resolve(ref: str) -> str:
            value = self.manager.hook.resolve_secret(project=self.project.name, env=self.env, ref=ref)
            if value is None:
                raise DeployFailed(f"{spec.name}: no plugin resolves the secret reference {ref!r}")
            return value

        # secrets_in_env: the wrapper runs the image's own ENTRYPOINT + CMD. None while the image
        # is not on the server yet (a plan): the config hash does not depend on it.
        image_command = self.runtime.image_command(image) if spec.secrets_in_env else None
        if spec.secrets_in_env and image_command is None and self.image_source is None:
            raise DeployFailed(f"{spec.name}: secrets_in_env runs the image's ENTRYPOINT and CMD, and they cannot be read from {image} on server {self.server.name}")
        return build_container(
            project=self.project,
            env=self.env,
            service=spec,
            stype=stype,
            parts=parts,
            image=image,
            image_id=image_id,
            ports=ports[spec.name],
            slot=slot,
            data_root=self.server.data_root,
            resolve_secret=resolve,
            service_types=self.registry.service_types,
            image_command=image_command,
        )

    def _image_id(self, image: str) -> str | None:
        """The id of ``image`` on the server; looked up once per plan when a plan asks."""
        memo = self._image_ids
        if memo is None:
            return self.runtime.image_id(image)
        if image not in memo:
            memo[image] = self.runtime.image_id(image)
        return memo[image]

    def active_container(self, containers: list[ContainerInfo], routed: Iterable[str] | None = None) -> ContainerInfo | None:
        """The container serving now: the running one the sidecar routes to (else the newest
        running). ``routed``: the router's backends when already read (else read now)."""
        if not any(c.running for c in containers):
            return None
        return pick_active(containers, self.routed_backends() if routed is None else routed)

    def routed_backends(self) -> set[str]:
        """Container names the router serves now: asked of the router itself (the truth), else
        the last routing this machine applied."""
        live = self.manager.hook.live_routes(server=self.server, project=self.project, env=self.env)
        if live is not None:
            return {backend.host for route in live for backend in route.backends}
        state = paths.env_dir(self.project.name, self.env, "config") / "routes.json"
        try:
            return set(json.loads(state.read_text()).get("backends", {}).values())
        except (OSError, ValueError):
            return set()

    # --- plan -----------------------------------------------------------------------------

    def plan(self, services: Iterable[str] | None = None, builds: Mapping[str, BuildCheck] | None = None) -> DeployPlan:
        """What a deploy changes. ``builds`` (``plan`` before a build, core/build.py
        :meth:`~projectdeployer.core.build.ProjectBuilder.check`): a service whose image the
        deploy builds first is ``create``/``update`` with ``build`` saying why, its config hash
        not known until the image exists."""
        builds = builds or {}
        specs = self.specs()
        wanted = set(services) if services is not None else set(specs)
        unknown = wanted - set(specs)
        if unknown:
            raise DeployFailed(f"no service named {', '.join(sorted(unknown))} (services: {', '.join(specs)})")
        self._image_ids = {}
        try:
            return self._plan(specs, wanted, builds, every=services is None)
        finally:
            self._image_ids = None

    def _plan(self, specs: Mapping[str, ServiceSpec], wanted: set[str], builds: Mapping[str, BuildCheck], *, every: bool) -> DeployPlan:
        orders = startup_orders({n: s.depends_on for n, s in specs.items()}, {n: s.startup_order for n, s in specs.items()})
        ports = self.ports()
        # Read once for every service, fresh: what runs now, other processes' work included.
        observation = self.observe(fresh=True)
        observed = observation.by_service()
        plans = []
        for name, spec in specs.items():
            if name not in wanted:
                continue
            check = builds.get(name)
            if check is not None and check.error is not None:
                plans.append(ServicePlan(service=name, action="error", reason=check.error, group=orders[name], stateful=False))
                continue
            stype = self.registry.service_types[spec.type]
            if spec.is_scheduled:  # a job container, started by the scheduler (core/jobs.py)
                if check is not None and check.needed:
                    job = next((c for c in observed.get(name, []) if c.name == jobs.job_name(self.project.name, self.env, name)), None)
                    plans.append(_build_plan(spec, check, orders[name], False, job is not None, JOB_SLOT if job else None, JOB_SLOT, self.image_for(spec, stype)))
                    continue
                plans.append(jobs.plan_job(self, spec, orders[name], ports, observed.get(name, [])))
                continue
            current = observation.active(name)
            if stype.stateful:
                next_slot = STATEFUL_SLOT
            else:
                next_slot = "a" if current is None else ("b" if current.labels.get(LABEL_SLOT) == "a" else "a")
            if check is not None and check.needed:
                now = current.labels.get(LABEL_SLOT) if current else None
                plans.append(_build_plan(spec, check, orders[name], stype.stateful, current is not None, now, next_slot, self.image_for(spec, stype)))
                continue
            try:
                desired = self.desired(spec, next_slot, ports)
            except DeployFailed as exc:
                plans.append(ServicePlan(service=name, action="error", reason=str(exc), group=orders[name], stateful=stype.stateful))
                continue
            if current is None:
                action, reason = "create", "not running"
            elif current.labels.get(LABEL_CONFIG) != desired.config_hash:
                action, reason = "update", "image or configuration changed"
            else:
                action, reason, next_slot = "unchanged", "running and up to date", None
            plans.append(
                ServicePlan(
                    service=name,
                    action=action,
                    reason=reason,
                    group=orders[name],
                    stateful=stype.stateful,
                    current_slot=current.labels.get(LABEL_SLOT) if current else None,
                    next_slot=next_slot,
                    image=desired.spec.image,
                )
            )
        if every:
            for name in sorted(set(observed) - set(specs)):
                plans.append(ServicePlan(service=name, action="remove", reason="no longer in the project file", group=0, stateful=False))
        scheduler = jobs.plan_scheduler(self, specs, observed, plans)
        return DeployPlan(project=self.project.name, env=self.env, services=tuple(plans), scheduler=scheduler)

    # --- apply ----------------------------------------------------------------------------

    def apply(self, plan: DeployPlan) -> list[ServiceOutcome]:
        errors = [p.reason for p in plan.services if p.action == "error"]
        if plan.scheduler is not None and plan.scheduler.action == "error":
            errors.append(plan.scheduler.reason)
        if errors:
            raise DeployFailed("\n".join(errors))
        self.runtime.ensure_network(network_name(self.project.name, self.env), {LABEL_PROJECT: self.project.name, LABEL_ENV: self.env})
        ports = self.ports()
        # The plan's reading when nothing changed since (the deploy's usual case), else anew.
        self._routes = self._current_routes(ports, self.observe())
        outcomes: list[ServiceOutcome] = []
        groups: dict[int, list[ServicePlan]] = {}
        for item in plan.services:
            groups.setdefault(item.group, []).append(item)
        # Make sure the sidecar exists and routes what runs now before anything changes.
        self._apply_routes()
        for group in sorted(groups):
            items = groups[group]
            failures = []
            for done in fan_out(items, lambda item: self._apply_one(item, ports), max_workers=max(1, len(items)), name=lambda item: item.service).values():
                if isinstance(done, ProjectDeployerError):
                    failures.append(done)
                elif isinstance(done, BaseException):
                    raise done  # not a deploy's failure: a bug, raised as it is
                else:
                    outcomes.append(done)
            if failures:
                raise DeployFailed("\n".join(str(f) for f in failures))
        # The job containers are in place: start, recreate or remove the scheduler to match.
        jobs.apply_scheduler(self)
        return outcomes

    def _apply_one(self, item: ServicePlan, ports: Mapping[str, PortAssignment]) -> ServiceOutcome:
        started = time.monotonic()
        if item.action == "unchanged":
            return ServiceOutcome(service=item.service, action="unchanged", slot=item.current_slot, release=None, seconds=0.0)
        if item.action == "remove":
            return self._remove_service(item)
        if item.next_slot == JOB_SLOT:
            return jobs.apply_job(self, item, ports)
        spec = self.project.service(item.service, self.env)
        desired = self.desired(spec, item.next_slot or "a", ports)
        release = new_release_id()
        if item.stateful:
            gap = self._restart_stateful(spec, desired, ports[spec.name], release)
            outcome = ServiceOutcome(service=spec.name, action=item.action, slot=STATEFUL_SLOT, release=release, seconds=time.monotonic() - started, gap_seconds=gap)
        else:
            self.run_release(spec, desired, release)
            self._toggle(spec, desired, ports[spec.name], release)
            outcome = ServiceOutcome(service=spec.name, action=item.action, slot=desired.slot, release=release, seconds=time.monotonic() - started)
        self.record(spec, desired, release)
        return outcome

    # --- the per-server steps (public: core/fleet.py and core/jobs.py drive them too) ---------

    def start(self, desired: ServiceContainer, release: str) -> ContainerInfo:
        """Start ``desired``'s container under ``release`` (:meth:`materialize`), after removing
        a container of the same name (a leftover of a deploy killed in this slot). Neither
        waits for its health nor routes to it: :meth:`wait_healthy` does the one, the caller's
        router the other."""
        spec = self.materialize(desired, release)
        self.runtime.remove(spec.name)  # a leftover of a crashed deploy in this slot
        return self.runtime.start(spec)

    def materialize(self, desired: ServiceContainer, release: str) -> ContainerSpec:
        """``desired``'s container spec, ready to run: its private files written on the server
        (core/secretfiles.py) and mounted read-only, and its release label set. Starts nothing."""
        spec = desired.spec
        mounts = list(spec.mounts)
        if desired.secret_files:
            source = write_secret_files(self.server, self.runtime, self.project.name, self.env, spec.name, spec.image, desired.secret_files, desired.secret_owner)
            mounts.append(Mount(source=source, target=SECRETS_MOUNT, read_only=True))
        return attrs.evolve(spec, mounts=tuple(mounts), labels={**spec.labels, LABEL_RELEASE: release})

    def _toggle(self, spec: ServiceSpec, desired: ServiceContainer, ports: PortAssignment, release: str) -> None:
        old = self._serving(spec.name)
        self.log(f"{spec.name}: starting {desired.spec.name} (release {release})")
        self.start(desired, release)
        self.wait_healthy(spec, desired)
        if spec.port is not None:
            self.log(f"{spec.name}: switching the sidecar to {desired.spec.name}")
            self._switch_route(spec, desired, ports)
        if old is not None and old.name != desired.spec.name:
            if spec.port is not None:
                # Only what is in flight to the old container: a database session or websocket
                # to another service is no reason to keep this one running.
                retired = [Backend(host=old.name, port=spec.port)]
                drained = self.manager.hook.wait_drained(server=self.server, project=self.project, env=self.env, timeout=self.drain_timeout, backends=retired)
                if drained is False:
                    self.log(f"{spec.name}: requests still in flight after {self.drain_timeout:.0f}s; stopping {old.name} anyway")
            self.log(f"{spec.name}: stopping {old.name}")
            self.runtime.stop(old.name, timeout=30)
            self.runtime.remove(old.name)

    def _serving(self, service: str) -> ContainerInfo | None:
        """During apply: the container serving ``service`` now. Its containers are read for it
        alone (parallel toggles of many services must not each read all of them), and the
        router's backend is this deploy's routing table (read live at the start of apply;
        only this service's own toggle changes its route)."""
        route = self._routes.get(service)
        return pick_active(self.containers_of(service), {b.host for b in route.backends} if route else ())

    def _restart_stateful(self, spec: ServiceSpec, desired: ServiceContainer, ports: PortAssignment, release: str) -> float:
        existing = self.runtime.get(desired.spec.name)
        began = time.monotonic()
        if existing is not None:
            # The router resolved the container's name to an address when it last loaded its
            # routes, and the new container may get another address (two stateful services
            # restarted together swap theirs), while an unchanged route reloads nothing. So the
            # route goes before the stop (no route ever names a container that is gone, which
            # the router's config check would refuse) and comes back, resolved anew, once healthy.
            self._drop_route(spec.name)
            self.log(f"{spec.name}: stopping {existing.name} (one data directory: stop, then start)")
            self.runtime.stop(existing.name, timeout=60)
            self.runtime.remove(existing.name)
        self.prepare_volumes(desired)
        self.start(desired, release)
        self.wait_healthy(spec, desired)
        self._switch_route(spec, desired, ports)
        gap = time.monotonic() - began
        if existing is not None:
            self.log(f"{spec.name}: back after a {gap:.1f}s gap")
        return gap if existing is not None else 0.0

    def run_release(self, spec: ServiceSpec, desired: ServiceContainer, release: str) -> None:
        """Run ``spec.release_command`` once, in a one-off container of the new image with the
        service's environment, secrets, mounts and network, before any new container starts.

        Its exit code decides: non-zero (or no exit within :data:`RELEASE_TIMEOUT`) stops the
        deploy with its last log lines, and nothing else has changed, so the old version keeps
        serving. The container has no service label (the deploy never mistakes it for one of
        the service's) and is removed whatever happened.
        """
        if not spec.release_command or spec.name in self.images:
            # self.images holds a rollback's image: its migrations ran when it was deployed, and
            # an old release's `alembic upgrade head` fails against a newer database.
            return
        argv = tuple(command_argv(spec.release_command))
        if desired.spec.entrypoint is not None:
            # secrets_in_env: the wrapper execs its arguments, so the image's ENTRYPOINT leads.
            entrypoint, _ = self.runtime.image_command(desired.spec.image) or ((), ())
            argv = (*entrypoint, *argv)
        # One name per service, whatever the slot: a release still running from a deploy that
        # was killed is found (and never force-removed mid-migration).
        name = f"{self.project.name}_{self.env}_{spec.name}_release"
        leftover = self.runtime.get(name)
        if leftover is not None and leftover.state == "running":
            raise DeployFailed(f"{spec.name}: the release command of an earlier deploy is still running in {name}; wait for it to finish (or remove it) and deploy again")
        one_off = attrs.evolve(
            desired,
            spec=attrs.evolve(
                desired.spec,
                name=name,
                command=argv,
                ports={},
                restart="no",
                labels={LABEL_PROJECT: self.project.name, LABEL_ENV: self.env, LABEL_ROLE: "release"},
            ),
        )
        self.log(f"{spec.name}: release command: {spec.release_command}")
        self.runtime.remove(name)  # a finished leftover of a crashed deploy
        vanished = False
        try:
            self.runtime.start(self.materialize(one_off, release))
            code = self.runtime.wait(name, timeout=RELEASE_TIMEOUT)
            vanished = code is None and self.runtime.get(name) is None
            lines = [] if vanished else list(self.runtime.logs(name, tail=10))
        finally:
            self.runtime.remove(name)
        for line in lines:
            self.log(f"{spec.name} release | {printable(line, LINE_SHOWN)}")
        if code != 0:
            what = "container was removed before it finished" if vanished else f"did not finish within {RELEASE_TIMEOUT:.0f}s" if code is None else f"failed (exit code {code})"
            tail = " / ".join(lines[-3:])
            raise DeployFailed(f"{spec.name}: the release command {what}; nothing was switched and the old version keeps serving" + (f": {tail}" if tail else ""))

    def prepare_volumes(self, desired: ServiceContainer) -> None:
        """Give the data volumes' mount points to ``desired.volume_owner`` (a one-off root
        container on the service's image; only the top directories, never the data below).
        Does nothing without volumes or owner; raises :class:`DeployFailed` when the chown fails.
        Call it before :meth:`start` of a container that owns volumes."""
        volumes = [m for m in desired.spec.mounts if m.volume]
        if not desired.volume_owner or not volumes:
            return
        uid, gid = self.runtime.user_ids(desired.spec.image, desired.volume_owner)
        name = f"{desired.spec.name}_init"
        init = ContainerSpec(
            name=name,
            image=desired.spec.image,
            command=("chown", f"{uid}:{gid}", *[m.target for m in volumes]),
            labels={LABEL_PROJECT: self.project.name, LABEL_ENV: self.env},
            network="none",
            mounts=tuple(volumes),
            restart="no",
            user="0",
        )
        self.runtime.remove(name)
        try:
            self.runtime.start(init)
            code = self.runtime.wait(name, timeout=120)
            lines = list(self.runtime.logs(name, tail=5))
        finally:
            self.runtime.remove(name)
        if code != 0:
            raise DeployFailed(f"{desired.spec.name}: cannot give its volumes to user {desired.volume_owner} (exit code {code}): {' / '.join(lines)}")

    def wait_healthy(self, spec: ServiceSpec, desired: ServiceContainer) -> None:
        """Return once ``desired``'s container passes the service's first health check (HTTP or
        TCP probe, else the image's HEALTHCHECK, else running for 2 s in a row) within the
        check's start period. Otherwise (it exited, or the period ran out) the new container is
        removed and :class:`DeployFailed` says why with its last log lines: whatever served
        before keeps serving, since nothing was routed to it."""
        checks: list[HealthCheck] = [c for found in self.manager.hook.health_checks(service=spec) if found for c in found]
        check = checks[0] if checks else HealthCheck(kind="image")
        host_port = desired.spec.ports.get(spec.port) if spec.port else None
        stable_since: float | None = None

        def probe() -> tuple[bool, str]:
            nonlocal stable_since
            info = self.runtime.get(desired.spec.name)
            if info is None or info.state in ("exited", "dead"):
                raise _Exited(f"container {desired.spec.name} exited with code {info.exit_code if info else '?'}")
            if check.kind == "http" and host_port:
                return self.server.probe_http(host_port, check.path, timeout=check.timeout)
            if check.kind == "tcp" and host_port:
                return self.server.probe_tcp(host_port, timeout=check.timeout)
            if info.health is not None:
                return info.health == "healthy", f"image HEALTHCHECK says {info.health}"
            # No probe to run: running for 2 s in a row counts as healthy.
            stable_since = stable_since or time.monotonic()
            return time.monotonic() - stable_since >= 2.0, "running"

        try:
            detail = wait_until(probe, timeout=check.start_period, interval=check.interval, what=f"{spec.name} healthy")
        except _Exited as exc:
            detail = str(exc)
        except WaitTimeout as exc:
            detail = f"not healthy after {check.start_period:.0f}s: {exc.last or 'no check ran'}"
        else:
            self.log(f"{spec.name}: healthy ({detail})")
            return
        logs = "\n".join(f"    {line}" for line in self.runtime.logs(desired.spec.name, tail=20))
        self.runtime.remove(desired.spec.name)
        raise DeployFailed(f"{spec.name}: the new container never became healthy ({detail}); it was removed and the old version keeps serving.\n  last log lines of {desired.spec.name}:\n{logs}")

    # --- routing --------------------------------------------------------------------------

    def _route_for(self, spec: ServiceSpec, target_name: str, ports: PortAssignment) -> Route | None:
        if spec.port is None:
            return None
        stype = self.registry.service_types[spec.type]
        return Route(
            service=spec.name,
            internal_port=ports.internal,
            protocol="tcp" if stype.stateful or not stype.web else "http",
            backends=(Backend(host=target_name, port=spec.port),),
            domain=spec.domain,
        )

    def _current_routes(self, ports: Mapping[str, PortAssignment], observation: Observation | None = None) -> dict[str, Route]:
        """The routes of what runs now (``observation``, else read now)."""
        routes: dict[str, Route] = {}
        observation = observation or self.observe(fresh=True)
        for name, spec in self.project.services_for(self.env).items():
            if spec.is_scheduled:
                continue  # a job is never routed to, even while it runs
            active = observation.active(name)
            if active is not None and name in ports:
                route = self._route_for(spec, active.name, ports[name])
                if route:
                    routes[name] = route
        return routes

    def _switch_route(self, spec: ServiceSpec, desired: ServiceContainer, ports: PortAssignment) -> None:
        route = self._route_for(spec, desired.spec.name, ports)
        if route is None:
            return
        # Parallel toggles switch together: the routes ready while a reload runs go live in
        # the next one (core/coalesce.py), not in one reload each behind the lock.
        self._switches.submit(spec.name, route)

    def _apply_switches(self, batch: Sequence[tuple[str, Route]]) -> None:
        """Put ``batch``'s routes live in one apply. When it fails the router keeps serving
        what it served, and so does the table (a later switch must not carry a refused route)."""
        with self._routing_lock:
            before = dict(self._routes)
            self._routes.update(batch)
            try:
                self._apply_routes()
            except BaseException:
                self._routes.clear()
                self._routes.update(before)
                raise

    def _drop_route(self, service: str) -> None:
        with self._routing_lock:
            if self._routes.pop(service, None) is not None:
                self._apply_routes()

    @contextlib.contextmanager
    def offline(self, service: str) -> Iterator[None]:
        """Take ``service``'s route out of the router for the block (its container is stopped
        and started again inside, e.g. by a restore) and put it back afterwards, resolved anew:
        the restarted container may have another address, which an unchanged route would never
        make the router look up again."""
        ports = self.ports()
        with self._routing_lock:
            self._routes = self._current_routes(ports)
        self._drop_route(service)
        try:
            yield
        finally:
            spec = self.project.service(service, self.env)
            with self._routing_lock:
                self._routes = self._current_routes(ports)
                self._apply_routes()
            self.log(f"{spec.name}: routed again")

    def _apply_routes(self) -> None:
        # Counted before and after: routes read across a change are never kept.
        self._route_changes += 1
        try:
            self._apply_routes_now()
        finally:
            self._route_changes += 1
        if self.routing is None:
            # The router now serves exactly these (the hook raises otherwise): no need to read back.
            self._kept_routed.put(frozenset(b.host for r in self._routes.values() for b in r.backends))

    def _apply_routes_now(self) -> None:
        if self.routing is not None:
            self.routing()
            return
        routes = [self._routes[name] for name in sorted(self._routes)]
        certificates = domain_certificates(self.manager, self.server, self.project.name, self.env, routes)
        self.manager.hook.configure_routing(server=self.server, project=self.project, env=self.env, routes=routes, certificates=certificates)
        state = paths.env_dir(self.project.name, self.env, "config") / "routes.json"
        atomic_write(state, json.dumps({"backends": {r.service: r.backends[0].host for r in routes}}, indent=2) + "\n")

    # --- removal and history --------------------------------------------------------------

    def _remove_service(self, item: ServicePlan) -> ServiceOutcome:
        with self._routing_lock:
            if self._routes.pop(item.service, None) is not None:
                self._apply_routes()
        for info in self.containers_of(item.service):
            self.log(f"{item.service}: removing {info.name} (no longer in the project file)")
            self.runtime.stop(info.name, timeout=30)
            self.runtime.remove(info.name)
        return ServiceOutcome(service=item.service, action="remove", slot=None, release=None, seconds=0.0)

    def record(self, spec: ServiceSpec, desired: ServiceContainer, release: str) -> None:
        """Add ``release`` of ``spec`` (image, its id on this server, config hash, secrets'
        digest) to the environment's release history, which rollback reads. Call it once the
        release serves; it changes nothing on the server."""
        secrets_version = hashlib.sha256("".join(sorted(desired.secret_files.values())).encode()).hexdigest()[:16]
        ReleaseHistory(self.project.name, self.env).record(
            Release(
                id=release,
                service=spec.name,
                version=self.project.settings.version,
                image=desired.spec.image,
                image_id=self.runtime.image_id(desired.spec.image) or "",
                config_hash=desired.config_hash,
                secrets_version=secrets_version,
                deployed_at=time.time(),
            )
        )


__all__ = ["DeployFailed", "DeployPlan", "Engine", "ServiceOutcome", "ServicePlan"]
