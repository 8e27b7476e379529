"""Deploying one environment onto its servers: allocation, images, cross-server routing and the
toggle across hosts. The ONE deploy path, for every provider: this machine (the ``local``
provider) is a fleet of one server.

A deploy:

1. **Servers**: under the provider's creation lock the servers are listed, the environment's
   lock is taken on the lock server (:mod:`~projectdeployer.environment.serverlock`),
   :func:`~projectdeployer.deploy.allocation.allocate` says which to keep, create or destroy and
   which services run where, and the missing servers are created in parallel as ``reserve``
   with their ``slot`` (locked too when one comes first by name); they are marked ``active``
   once their services run. Servers to destroy are marked ``destroying`` once the servers are
   ready and no database would have to move, before any switch. Then the plan is made
   (:mod:`~projectdeployer.deploy.planner`) and handed to whoever asked (the lifecycle hooks);
   a plan with errors stops the deploy before anything changed.
2. **Images** reach every server that runs them (:mod:`~projectdeployer.deploy.images`),
   with the sidecar's image everywhere, only when missing: pushed once and pulled by digest when
   ``[project] registry`` is set, else streamed over SSH (nothing to send to this machine's engine).
3. **Routing**: every server runs the nginx sidecar, and every sidecar routes every service:
   a backend on the same server by container name, one on another server by address and host
   port (the VPC address within a zone, the public one across zones). The fleet keeps one table
   ``service -> [where it runs]`` and renders each server's routes from it. Switches of services
   toggled in parallel are pushed together (:mod:`~projectdeployer.deploy.coalesce`): the ones
   ready while a push runs go live in the next one, not in one reload each.
4. **Services**, group by startup group, the services of a group in parallel:

   stateless (the toggle across hosts)
       start the new container on the other slot of *every* server that runs the service and
       wait until all are healthy; then update and reload *all* sidecars to the new containers;
       only then drain and stop the old ones (also on servers that no longer run it). A new
       container that never gets healthy, or a sidecar that cannot be updated, stops the switch:
       the new containers are removed and every sidecar keeps (or gets back) the old routing.
   stateful
       stop-then-start on its one server, its route out of every sidecar meanwhile.
5. Scheduled jobs, the scheduler and backups run on the first server of their zone; servers the
   allocation no longer needs are destroyed once nothing routes to them.

A server that cannot be reached fails the deploy with its name, after the others were tried;
what runs elsewhere keeps serving, and running the deploy again converges.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import pluggy

from ..build.builder import BuildCheck
from ..core import paths
from ..core.containers import STATEFUL_SLOT, network_name
from ..core.errors import DeployFailed, ProjectDeployerError
from ..core.fanout import failures, fan_out, one_line, successes
from ..core.fsutil import atomic_write
from ..core.model import Project, ServiceSpec
from ..core.plan import Plan
from ..core.provider import Provider, Server, ServerSpec
from ..core.routing import Backend, Route, domain_certificates
from ..core.runtime import LABEL_CONFIG, LABEL_ENV, LABEL_PROJECT, LABEL_SLOT, ContainerInfo
from ..environment.releases import new_release_id
from ..environment.serverlock import local_lock, lock_server, server_lock
from ..project.order import startup_orders
from . import jobs
from .allocation import ACTIVE, DESTROYING, RESERVE, Allocation, ServerState, allocate, slot_of, state_of
from .coalesce import Coalescer
from .containers import ServiceContainer, host_port
from .domains import domain_targets
from .images import ImageNotLocal, ensure_image
from .jobcontainers import scheduler_image
from .planner import local_image_ids, plan_fleet
from .server import ServerDeployer, ServiceOutcome, images_looked_up_once

Log = Callable[[str], None]
T = TypeVar("T")


@attrs.frozen(kw_only=True)
class Placed:
    """One container that serves a service: where, and how other servers reach it."""

    server: str
    container: str
    port: int
    host_port: int


@attrs.frozen(kw_only=True)
class FleetReport:
    allocation: Allocation
    outcomes: tuple[ServiceOutcome, ...]
    created: tuple[str, ...]
    destroyed: tuple[str, ...]
    seconds: float


def _all_or_first_error(results: Mapping[str, T | BaseException]) -> dict[str, T]:
    """A :func:`~projectdeployer.core.fanout.fan_out` result when every call succeeded; else the
    first error in the items' order, raised as it is (as a loop over them would have raised it)."""
    for value in results.values():
        if isinstance(value, BaseException):
            raise value
    return successes(results)


def _explain(errors: Mapping[str, BaseException]) -> str:
    return "; ".join(f"{name}: {exc}" for name, exc in errors.items())


class Orchestrator:
    """Deploys ``project``/``env`` onto the servers of ``provider``."""

    def __init__(
        self,
        project: Project,
        env: str,
        provider: Provider,
        manager: pluggy.PluginManager,
        registry: Any,
        *,
        images: Mapping[str, str] | None = None,
        log: Log = print,
        drain_timeout: float = 30.0,
        max_workers: int = 8,
        local_docker: Any = None,
    ) -> None:
        self.project = project
        self.env = env
        self.provider = provider
        self.manager = manager
        self.registry = registry
        self.images = dict(images or {})
        self.log = log
        self.drain_timeout = drain_timeout
        self.max_workers = max_workers
        self._local_docker = local_docker
        self.servers: dict[str, Server] = {}
        self.engines: dict[str, ServerDeployer] = {}
        #: service -> the containers the sidecars route it to.
        self.table: dict[str, list[Placed]] = {}
        #: Guards the table and every push of it: two services of a group switching at once
        #: must never push their copies to a sidecar in the wrong order.
        self._table_lock = threading.RLock()
        #: Servers being removed: reached on a best-effort basis.
        self.leaving: set[str] = set()
        self.placement: dict[str, tuple[str, ...]] = {}
        #: ``deploy(service=...)``: the one service converged (its images only are sent).
        self.only_service: str | None = None
        #: Servers being removed that could not be reached: never destroyed unread.
        self.unread: set[str] = set()
        #: Route changes of parallel toggles, pushed to every sidecar together (deploy/coalesce.py).
        self._pushes: Coalescer[str, list[Placed] | None] = Coalescer(self._push_table)
        #: Called with the plan once the servers are reached, before anything changes.
        self._on_plan: Callable[[Plan], None] | None = None
        #: server -> the routes this deploy last pushed to its sidecar: a push that would change
        #: nothing there is not repeated (see :meth:`_route_unpushed`).
        self._pushed: dict[str, tuple[Route, ...]] = {}

    def _on(self, server: str) -> str:
        """`` on <server>`` for log lines, when there are several servers to tell apart."""
        return f" on {server}" if len(self.servers) > 1 else ""

    # --- servers and allocation --------------------------------------------------------------

    def stateful(self) -> set[str]:
        types = self.registry.service_types
        return {n for n, s in self.project.services_for(self.env).items() if types[s.type].stateful}

    def allocation(self, servers: Sequence[Server]) -> Allocation:
        states = [ServerState(name=s.name, zone=s.zone, state=state_of(s), slot=slot_of(s)) for s in servers]
        return allocate(
            self.project.services_for(self.env),
            states,
            env_zones=self.project.environment(self.env).zones,
            stateful=self.stateful(),
            max_servers=getattr(self.provider, "max_servers", None),
            zone_of=getattr(self.provider, "zone_of", None),
        )

    def _check_capacity(self, plans: Sequence[Any]) -> None:
        """Stop before anything changes when the provider cannot make the servers ``plans`` ask
        for (servers you list yourself: fewer free ones than needed)."""
        missing = getattr(self.provider, "missing_servers", None)  # a Provider's; test doubles may not have it
        if plans and missing is not None:
            why = missing(self.project.name, self.env, Counter(p.zone for p in plans))
            if why is not None:
                raise DeployFailed(why)

    def _create(self, plans: Sequence[Any]) -> dict[str, Server]:
        """Create the servers of ``plans`` in parallel; label -> server."""
        if plans:
            self.log(f"creating {len(plans)} server(s): {', '.join(p.label for p in plans)}")

        def create(plan: Any) -> Server:
            # ``reserve`` until its services run (a deploy that fails before leaves it so, and
            # the next one reuses it); see :meth:`_settle_states`.
            # ``slot``: its place in the zone's order, so the next deploy puts the same services
            # on it whatever names parallel creation handed out.
            spec = ServerSpec(zone=plan.zone, cpu=plan.cpu, memory=plan.memory, tags={"state": RESERVE, "slot": str(plan.index)})
            return self.provider.create_server(self.project.name, self.env, spec)

        made = fan_out(plans, create, max_workers=self.max_workers, name=lambda plan: plan.label)
        errors = failures(made)
        if errors:
            raise DeployFailed(f"cannot create servers: {_explain(errors)}")
        return successes(made)

    # --- the deploy ----------------------------------------------------------------------------

    def deploy(self, *, lock_wait: float = 0.0, service: str | None = None, on_plan: Callable[[Plan], None] | None = None) -> FleetReport:
        """Converge the environment on its servers (or only ``service``: its containers, on the
        servers the allocation gives it; other services, removed services and servers no longer
        needed are left for the next whole deploy). ``on_plan``: called with the plan, under the
        locks, once the servers are reached and before anything changes on them (the lifecycle
        hooks; raising stops the deploy)."""
        if service is not None and service not in self.project.services_for(self.env):
            raise DeployFailed(f"no service named '{service}' (services: {', '.join(self.project.services_for(self.env))})")
        started = time.monotonic()
        self.only_service = service
        self._on_plan = on_plan
        self._allocation: Allocation | None = None
        with contextlib.ExitStack() as held:
            held.enter_context(local_lock(self.project.name, self.env, wait=lock_wait))
            # The provider's creation lock is held while the servers are listed, the lock
            # server is locked and the missing servers are created (one that comes first by
            # name is locked too): no other operator creates servers beside this deploy, nor
            # locks another lock server, and a first deploy is as exclusive as any other.
            with self.provider.creation_lock(self.project.name, self.env, wait=lock_wait):
                existing = self.provider.list_servers(self.project.name, self.env)
                if not existing and service is not None:
                    raise DeployFailed(f"environment {self.env} has no server yet: deploy the whole environment first (not one service)")
                holder = held.enter_context(server_lock(self.project.name, self.env, existing, wait=lock_wait))
                allocation = self._allocation = self.allocation(existing)
                # One service: only the servers it needs; the others wait for a whole deploy.
                to_create = [p for p in allocation.to_create if service is None or service in p.services]
                self._check_capacity(to_create)
                created = self._create(to_create)
                by_name = {s.name: s for s in existing} | {s.name: s for s in created.values()}
                newest = lock_server(list(by_name.values()))
                if newest is not None and (holder is None or newest.name != holder.name):
                    held.enter_context(server_lock(self.project.name, self.env, [newest], wait=lock_wait))
            # Each server the deploy keeps or created, by its label in the allocation (in its order).
            label_to_name: dict[str, str] = {}
            for p in allocation.servers:
                if p.label in created:
                    label_to_name[p.label] = created[p.label].name
                elif p.action == "keep" and p.name is not None:
                    label_to_name[p.label] = p.name
            self.placement = {svc: tuple(label_to_name[label] for label in labels if label in label_to_name) for svc, labels in allocation.placement.items()}
            keep = [by_name[n] for n in dict.fromkeys(label_to_name.values())]
            dropped = [by_name[p.name] for p in allocation.to_destroy if p.name in by_name]
            # Deploying one service leaves the servers to drop in place (and serving): only a
            # whole deploy drains and destroys them.
            leaving = dropped if service is None else []
            self.servers = {s.name: s for s in keep + dropped}
            self.leaving = {s.name for s in leaving}
            self._prepare()
            for name in [service] if service is not None else list(self.stateful()):
                if name in self.stateful():
                    self._stateful_target(self.project.service(name, self.env))  # before anything changes
            # Marked before the switch: a deploy that stops half-way leaves them ``destroying``,
            # and the next deploy (whatever the counts say then) finishes removing them.
            self._mark(leaving, DESTROYING)
            # Every server has its images now (sent by _prepare): each id looked up once.
            with images_looked_up_once(self.engines.values()):
                outcomes = self._services(service)
                if service is None or self.project.service(service, self.env).is_scheduled:
                    outcomes += self._jobs()
            self._settle_states(keep)
            if service is None:
                outcomes += self._remove_gone_services()
            else:
                self._route_unpushed()
            self._publish_domains()
            destroyed = self._destroy(leaving)
        return FleetReport(allocation=allocation, outcomes=tuple(outcomes), created=tuple(s.name for s in created.values()), destroyed=tuple(destroyed), seconds=time.monotonic() - started)

    def plan(self, service: str | None = None, *, builds: Mapping[str, BuildCheck] | None = None) -> Plan:
        """What :meth:`deploy` would do, changing nothing (:mod:`~projectdeployer.deploy.planner`);
        ``builds``: the images this machine builds first (``Environment.build_checks``)."""
        specs = self.project.services_for(self.env)
        if service is not None and service not in specs:
            raise DeployFailed(f"no service named '{service}' (services: {', '.join(specs)})")
        existing = self.provider.list_servers(self.project.name, self.env)
        if not existing and service is not None:
            raise DeployFailed(f"environment {self.env} has no server yet: deploy the whole environment first (not one service)")
        allocation = self.allocation(existing)
        self._check_capacity([p for p in allocation.to_create if service is None or service in p.services])
        self.placement = dict(allocation.placement)
        image_source = local_image_ids(self.local_docker)
        return plan_fleet(
            self.project,
            self.env,
            existing,
            allocation,
            lambda server: self.server_engine(server, image_source=None if getattr(server, "local_engine", False) else image_source),
            stateful=self.stateful(),
            service=service,
            builds=builds,
            max_workers=self.max_workers,
        )

    def attach(self) -> None:
        """Reach the servers as they are, creating and sending nothing: engines, ports and the
        routing table read live (what :meth:`offline` needs outside a deploy)."""
        existing = [s for s in self.provider.list_servers(self.project.name, self.env) if getattr(s, "running", True)]
        if not existing:
            raise DeployFailed(f"environment {self.env} has no running server: deploy first")
        self.placement = dict(self.allocation(existing).placement)
        self.servers = {s.name: s for s in existing}
        self.engines = _all_or_first_error(fan_out(existing, self.server_engine, max_workers=self.max_workers))
        self.ports = self.engines[next(iter(self.engines))].ports()
        self.table = self._observed_table()

    @contextlib.contextmanager
    def offline(self, service: str) -> Iterator[None]:
        """``service``'s route out of every sidecar for the block (a restore stops and starts
        the database inside), then back in, read anew from the servers (attached first when
        needed: only a restore that takes a database offline reaches every server)."""
        if not self.engines:
            self.attach()
        with self._table_lock:
            previous = self.table.pop(service, None)
            try:
                self._route_everywhere()
            except DeployFailed:
                if previous is not None:
                    self.table[service] = previous
                with contextlib.suppress(DeployFailed):
                    self._route_everywhere()
                raise
        try:
            yield
        except BaseException:
            # The block's own error is the one to report; the route goes back best effort.
            try:
                self._route_back(service)
            except Exception as exc:  # noqa: BLE001 - logged; the block's error follows
                self.log(f"{service}: could not be routed again everywhere: {exc}")
            raise
        self._route_back(service)

    def _route_back(self, service: str) -> None:
        with self._table_lock:
            self.table = self._observed_table()
            self._route_everywhere()
        self.log(f"{service}: routed again on {len(self.servers)} server(s)")

    def _mark(self, servers: Sequence[Server], state: str) -> None:
        """Set the status tag of ``servers``, in parallel (providers without states are skipped)."""
        results = fan_out([s for s in servers if state_of(s) != state], lambda server: self.provider.set_server_state(server, state), max_workers=self.max_workers)
        errors = failures(results)
        if any(isinstance(exc, NotImplementedError) for exc in errors.values()):
            return
        for name, exc in errors.items():  # a tag is bookkeeping; the deploy goes on
            self.log(f"{name}: could not mark it {state}: {exc}")

    def _publish_domains(self) -> None:
        """Public DNS to the servers that serve each domain now (the ``publish_domains`` hook),
        the servers leaving left out: before they are destroyed. A plugin that fails stops the
        deploy there, so those servers stay until a deploy gets DNS past them."""
        kept = {name: server for name, server in self.servers.items() if name not in self.leaving}
        targets = domain_targets(self.project, self.env, self.placement, kept)
        if not targets:
            return
        try:
            self.manager.hook.publish_domains(project=self.project, env=self.env, targets=targets, log=self.log)
        except Exception as exc:  # a DNS plugin's SDK raises its own errors: any of them stops here
            leaving = f"; the servers being removed ({', '.join(sorted(self.leaving))}) are kept until a deploy updates it" if self.leaving else ""
            raise DeployFailed(f"the services are switched, but public DNS could not be updated: {one_line(exc)}{leaving}") from exc

    def _settle_states(self, keep: Sequence[Server]) -> None:
        """Servers that run services now are ``active``; the others ``reserve``."""
        runs = {name for names in self.placement.values() for name in names}
        self._mark([s for s in keep if s.name in runs], ACTIVE)
        self._mark([s for s in keep if s.name not in runs], RESERVE)

    def server_engine(self, server: Server, *, image_source: Callable[[str], str | None] | None = None) -> ServerDeployer:
        """The engine of ``server`` (connects to it): it holds the services :attr:`placement`
        puts there; this fleet routes every sidecar from the one table.
        ``image_source``: see :class:`~projectdeployer.deploy.server.ServerDeployer` (a plan's)."""
        services = frozenset(n for n, names in self.placement.items() if server.name in names)
        return ServerDeployer(
            self.project,
            self.env,
            server,
            self.manager,
            self.registry,
            images=self.images,
            log=self.log,
            drain_timeout=self.drain_timeout,
            services=services,
            image_source=image_source,
        )

    def _prepare(self) -> None:
        """Engines, networks, images, and the routes of what runs now on every sidecar."""
        self.engines = {}
        # Connected in parallel (an SSH connection each); an error is raised as the first
        # server (in order) that fails says it, as one after the other would.
        for name, engine in fan_out(list(self.servers.values()), self.server_engine, max_workers=self.max_workers).items():
            if not isinstance(engine, BaseException):
                self.engines[name] = engine
            elif isinstance(engine, ProjectDeployerError) and name in self.leaving:
                # Unread: it may hold a database's data, so it is neither drained nor destroyed
                # by this deploy (a later one removes it once it can be read).
                self.log(f"{name}: unreachable; left in place (the allocation no longer needs it; a deploy removes it once it answers): {engine}")
                del self.servers[name]
                self.unread.add(name)
            else:
                raise engine
        if self._on_plan is not None:
            self._announce(self._on_plan)
        self._send_images()

        def ready(server: Server) -> None:
            # Containers bind-mount the environment's config/ (pushed by `sync push`).
            config = f"{server.data_root.rstrip('/')}/{self.project.name}/{self.env}/config"
            result = server.run(["mkdir", "-p", config])
            if not result.ok:
                raise DeployFailed(f"cannot create {config}: {result.stderr.strip()}")
            self.engines[server.name].runtime.ensure_network(network_name(self.project.name, self.env), {LABEL_PROJECT: self.project.name, LABEL_ENV: self.env})

        errors = failures(fan_out(list(self.servers.values()), ready, max_workers=self.max_workers))
        for name in [n for n in errors if n in self.leaving]:
            self.log(f"{name}: not ready (the server is being removed): {errors.pop(name)}")
        if errors:
            raise DeployFailed(f"servers not ready: {_explain(errors)}")
        self.ports = self.engines[next(iter(self.engines))].ports()
        # Read by the plan a moment ago under the locks, and kept: no container changed since.
        self.table = self._observed_table(fresh=False)
        # A sidecar that serves exactly this table already (as the plan read it) is left alone
        # for now: the switches of this deploy push to every sidecar, and a deploy that
        # switches nothing pushes to it once at the end (_route_unpushed), which also ensures
        # its image, ports and certificates. The others (new servers, a sidecar a killed deploy
        # left behind) route what runs now before anything starts.
        self._route_everywhere([s for s in self.servers.values() if not self._serves_table(s)])

    def _serves_table(self, server: Server) -> bool:
        """Whether ``server``'s sidecar served exactly the table's routes when the plan read it."""
        engine = self.engines.get(server.name)
        served = None if engine is None else engine.served_routes()
        if served is None:
            return False
        by_port: Callable[[Route], tuple[int, str]] = lambda r: (r.internal_port, r.service)  # noqa: E731 - a sort key
        return sorted(served, key=by_port) == sorted(self.routes_for(server), key=by_port)

    def _announce(self, on_plan: Callable[[Plan], None]) -> None:
        """Make the plan of this deploy from the servers as reached (nothing changed yet), hand
        it to ``on_plan``, and stop on its errors (a service or the scheduler that cannot be
        deployed), as the deploy itself would stop half-way."""
        assert self._allocation is not None
        readable = list(self.servers.values())
        image_source = local_image_ids(self.local_docker)
        for engine in self.engines.values():
            if not getattr(engine.server, "local_engine", False):
                engine.image_source = image_source  # images not sent yet: planned as the deploy will send them
        try:
            plan = plan_fleet(
                self.project,
                self.env,
                readable,
                attrs.evolve(self._allocation, placement=self.placement),
                lambda server: self.engines[server.name],
                stateful=self.stateful(),
                service=self.only_service,
                max_workers=self.max_workers,
            )
        finally:
            for engine in self.engines.values():
                engine.image_source = None
        on_plan(plan)
        errors = plan.errors
        if errors:
            raise DeployFailed("\n".join(errors))

    def _send_images(self) -> None:
        def refs(name: str) -> list[str]:
            engine = self.engines[name]
            wanted = [self.project.image("nginx")] if "nginx" in self.project.images else []
            for svc in sorted(n for n in engine.services or () if self.only_service in (None, n)):
                spec = self.project.service(svc, self.env)
                wanted.append(engine.image_for(spec, self.registry.service_types[spec.type]))
            if any(self.project.service(s, self.env).is_scheduled or s in self.stateful() for s in engine.services or () if self.only_service in (None, s)):
                try:
                    wanted.append(scheduler_image(self.engines[name])[0])
                except DeployFailed:
                    if "python" in self.project.images:
                        wanted.append(self.project.image("python"))
            return list(dict.fromkeys(wanted))

        if all(getattr(s, "local_engine", False) for s in self.servers.values()):
            return  # nothing to send, nothing to push
        # Each server's images once, every server at once (the scheduler's image is looked up on the server).
        wanted = _all_or_first_error(fan_out(list(self.servers), refs, max_workers=self.max_workers))
        pushed = self._push({ref for found in wanted.values() for ref in found})

        def feed(server: Server) -> None:
            for ref in wanted[server.name]:
                try:
                    ensure_image(self.local_docker(), server, ref, log=self.log, registry_ref=pushed.get(ref))
                except ImageNotLocal:
                    if ref.startswith("sha256:"):  # a rollback's image id: nothing can pull it
                        raise DeployFailed(f"image {ref[7:19]} is on neither this machine nor {server.name}: that release cannot be deployed again (rebuild it)") from None
                    # Not on this machine: the server's engine pulls it (a public image on a real server).
                    server.docker().images.pull(ref)

        # This machine's engine (the local provider's server) has every image built here already.
        errors = failures(fan_out([s for s in self.servers.values() if s.name not in self.leaving and not getattr(s, "local_engine", False)], feed, max_workers=self.max_workers))
        if errors:
            raise DeployFailed(f"images could not reach every server: {_explain(errors)}")

    def _push(self, refs: set[str]) -> dict[str, str]:
        """With ``[project] registry``: push the images built for it once; ref -> ``repo@digest``
        (the servers that lack an image pull it by digest instead of having it streamed)."""
        registry = self.project.settings.registry
        if not registry:
            return {}
        pushed = {}
        for ref in sorted(r for r in refs if r.startswith(f"{registry}/")):
            self.log(f"pushing {ref}")
            digest_ref = self.manager.hook.push_image(tag=ref, log=self.log)
            if digest_ref:
                pushed[ref] = digest_ref
        return pushed

    def local_docker(self) -> Any:
        if self._local_docker is None:
            import docker  # noqa: PLC0415 - deferred: docker SDK (start-up: 0.47 s; imported at first use, as providers/docker_runtime.py does)

            self._local_docker = docker.from_env(timeout=600)
        return self._local_docker

    # --- routing -------------------------------------------------------------------------------

    def _observed_table(self, *, fresh: bool = True) -> dict[str, list[Placed]]:
        """service -> where it serves now, read from every server in parallel (its containers
        in one listing and its sidecar's routes once, whatever the number of services).
        ``fresh=False``: what the engines kept from the plan's reads, when nothing changed since."""

        def serving(name: str) -> dict[str, Placed]:
            engine = self.engines[name]
            found: dict[str, Placed] = {}
            routed: frozenset[str] | None = None
            for service, containers in engine.containers(fresh=fresh).items():
                if service not in self.project.services:
                    continue
                spec = self.project.service(service, self.env)
                if spec.is_scheduled or spec.port is None:
                    continue
                if routed is None and any(c.running for c in containers):
                    routed = engine.routed(fresh=fresh)  # kept: the toggles of this deploy start from it
                active = engine.active_container(containers, routed)
                if active is not None:
                    found[service] = self._placed(name, active.name, spec, active.labels.get(LABEL_SLOT, "a"))
            return found

        table: dict[str, list[Placed]] = {}
        for placed in _all_or_first_error(fan_out(list(self.engines), serving, max_workers=self.max_workers)).values():
            for service, where in placed.items():
                table.setdefault(service, []).append(where)
        return table

    def _placed(self, server: str, container: str, spec: ServiceSpec, slot: str) -> Placed:
        assert spec.port is not None
        return Placed(server=server, container=container, port=spec.port, host_port=host_port(self.ports[spec.name], slot))

    def address(self, target: str, viewer: Server) -> str:
        """How ``viewer`` reaches server ``target`` (the provider says: a cloud's VPC address
        within a zone, else the public one)."""
        return self.provider.address_for(self.servers[target], viewer)

    def routes_for(self, viewer: Server, table: Mapping[str, list[Placed]] | None = None) -> list[Route]:
        """``viewer``'s sidecar routes: every service of the table, local containers by name,
        remote ones by address and host port."""
        table = self.table if table is None else table
        routes = []
        for service in sorted(table):
            placed = table[service]
            if not placed:
                continue
            spec = self.project.service(service, self.env)
            stype = self.registry.service_types[spec.type]
            backends = tuple(
                Backend(host=p.container, port=p.port) if p.server == viewer.name else Backend(host=self.address(p.server, viewer), port=p.host_port)
                for p in sorted(placed, key=lambda p: (p.server != viewer.name, p.server))
            )
            routes.append(
                Route(
                    service=service,
                    internal_port=self.ports[service].internal,
                    protocol="tcp" if stype.stateful or not stype.web else "http",
                    backends=backends,
                    domain=spec.domain,
                )
            )
        return routes

    def _route(self, server: Server, table: Mapping[str, list[Placed]] | None = None) -> None:
        routes = self.routes_for(server, table)
        certificates = domain_certificates(self.manager, server, self.project.name, self.env, routes)
        self._pushed.pop(server.name, None)  # unknown while the push runs (a failed one may have done half)
        self.manager.hook.configure_routing(server=server, project=self.project, env=self.env, routes=routes, certificates=certificates)
        self._pushed[server.name] = tuple(routes)
        if getattr(server, "local_engine", False):
            # What this machine's router serves, for a router that cannot be asked (ServerDeployer.routed_backends).
            state = paths.env_dir(self.project.name, self.env, "config") / "routes.json"
            atomic_write(state, json.dumps({"backends": {r.service: r.backends[0].host for r in routes}}, indent=2) + "\n")

    def _push_table(self, batch: Sequence[tuple[str, list[Placed] | None]]) -> None:
        """Put ``batch``'s entries (service -> where it serves; ``None``: out of the table) in
        the table and push it to every sidecar in one go. When the push fails the table is as
        it was (a later push must not carry a refused entry)."""
        with self._table_lock:
            before = {k: list(v) for k, v in self.table.items()}
            for service, placed in batch:
                if placed is None:
                    self.table.pop(service, None)
                else:
                    self.table[service] = placed
            try:
                self._route_everywhere()
            except BaseException:
                self.table = before
                raise

    def _route_everywhere(self, servers: Sequence[Server] | None = None) -> None:
        """Every sidecar (or those of ``servers``) to the current table (read and pushed under
        the table lock, so the last push is always the latest table); raises naming every
        server that could not be updated, except servers being removed (logged)."""
        with self._table_lock:
            table = {k: list(v) for k, v in self.table.items()}
            targets = list(self.servers.values()) if servers is None else list(servers)
            errors = failures(fan_out(targets, lambda s: self._route(s, table), max_workers=self.max_workers))
        for name in [n for n in errors if n in self.leaving]:
            self.log(f"{name}: its sidecar could not be updated (the server is being removed): {errors.pop(name)}")
        if errors:
            raise DeployFailed(f"the routing could not be updated on {', '.join(errors)}: {_explain(errors)}")

    def _route_unpushed(self) -> None:
        """Push the table to the sidecars this deploy has not pushed it to: the ones it never
        pushed to (every deploy configures every sidecar once, which also ensures its image,
        published ports and certificates) and any whose last push differs from the table."""
        with self._table_lock:
            self._route_everywhere([s for s in self.servers.values() if self._pushed.get(s.name) != tuple(self.routes_for(s))])

    def _drain_everywhere(self, service: str, old_table: Mapping[str, list[Placed]]) -> None:
        """Wait on every server until nothing is in flight to the backends of ``service`` that the
        switch from ``old_table`` to the current table retired (as that server names them)."""
        with self._table_lock:
            new_table = {k: list(v) for k, v in self.table.items()}

        def backends(server: Server, table: Mapping[str, list[Placed]]) -> set[Backend]:
            return {b for route in self.routes_for(server, {service: table.get(service, [])}) for b in route.backends}

        def drain(server: Server) -> None:
            retired = sorted(backends(server, old_table) - backends(server, new_table), key=lambda b: (b.host, b.port))
            if retired:
                self.manager.hook.wait_drained(server=server, project=self.project, env=self.env, timeout=self.drain_timeout, backends=retired)

        fan_out(list(self.servers.values()), drain, max_workers=self.max_workers)

    # --- services ------------------------------------------------------------------------------

    def _services(self, only: str | None = None) -> list[ServiceOutcome]:
        specs = {n: s for n, s in self.project.services_for(self.env).items() if not s.is_scheduled}
        orders = startup_orders({n: s.depends_on for n, s in specs.items()}, {n: s.startup_order for n, s in specs.items()})
        outcomes: list[ServiceOutcome] = []
        for group in sorted(set(orders.values())):
            names = [n for n in specs if orders[n] == group and only in (None, n)]
            # One server (this machine): every service of the group at once, as its engine
            # allows; several: at most max_workers services, each over every server.
            done = fan_out(names, self._service, max_workers=max(1, len(names)) if len(self.engines) == 1 else self.max_workers)
            errors = failures(done)
            if errors:
                raise DeployFailed("\n".join(f"{n}: {e}" for n, e in errors.items()))
            outcomes.extend(successes(done).values())
        return outcomes

    def _containers(self, service: str) -> dict[str, list[ContainerInfo]]:
        """server -> the service's containers there, from every server in parallel. Each
        engine's listing is read once and kept until a container changes through it, so the
        services of a deploy do not each list every container of every server."""
        listed = _all_or_first_error(fan_out(list(self.engines), lambda name: self.engines[name].containers().get(service, []), max_workers=self.max_workers))
        return {name: found for name, found in listed.items() if found}

    def _service(self, service: str) -> ServiceOutcome:
        spec = self.project.service(service, self.env)
        if service in self.stateful():
            return self._stateful(spec)
        return self._toggle(spec)

    def _toggle(self, spec: ServiceSpec) -> ServiceOutcome:
        began = time.monotonic()
        targets = self.placement.get(spec.name, ())
        current = self._containers(spec.name)
        release = new_release_id()
        todo: dict[str, ServiceContainer] = {}
        keep: dict[str, ContainerInfo] = {}

        def look(name: str) -> tuple[ContainerInfo | None, ServiceContainer]:
            engine = self.engines[name]
            # The router as read for this deploy (its plan, or the first service): only this
            # service's own switch changes which of its containers a router serves.
            active = engine.active_container(current.get(name, []), engine.routed())
            slot = "a" if active is None else ("b" if active.labels.get(LABEL_SLOT) == "a" else "a")
            return active, engine.desired(spec, slot, self.ports)

        for name, (active, desired) in _all_or_first_error(fan_out(targets, look, max_workers=self.max_workers)).items():
            if active is not None and active.labels.get(LABEL_CONFIG) == desired.config_hash:
                keep[name] = active
            else:
                todo[name] = desired
        leaving = [n for n in current if n not in targets]
        if not todo and not leaving:
            kept = {c.labels.get(LABEL_SLOT) for c in keep.values()}
            return ServiceOutcome(service=spec.name, action="unchanged", slot=kept.pop() if len(kept) == 1 else None, release=None, seconds=0.0)
        with self._table_lock:
            old_table = {k: list(v) for k, v in self.table.items()}
        started: list[tuple[str, ServiceContainer]] = []
        if todo:
            # Once per deploy, on the first server getting the new version, before any starts.
            first = sorted(todo)[0]
            self.engines[first].run_release(spec, todo[first], release)

        def start(name: str) -> None:
            engine = self.engines[name]
            self.log(f"{spec.name}: starting {todo[name].spec.name}{self._on(name)} (release {release})")
            engine.start(todo[name], release)
            started.append((name, todo[name]))
            engine.wait_healthy(spec, todo[name])

        errors = failures(fan_out(list(todo), start, max_workers=self.max_workers))
        if errors:
            self._remove_started(started)
            raise DeployFailed(f"{spec.name}: the new version is not healthy on {', '.join(errors)}; it was removed everywhere and the old version keeps serving.\n{_explain(errors)}")
        if spec.port is not None:
            new = [self._placed(n, todo[n].spec.name, spec, todo[n].slot) for n in todo]
            new += [self._placed(n, keep[n].name, spec, keep[n].labels.get(LABEL_SLOT, "a")) for n in keep]
            self.log(f"{spec.name}: switching the sidecars of {len(self.servers)} server(s)" if len(self.servers) > 1 else f"{spec.name}: switching the sidecar to {new[0].container}")
            try:
                # Parallel toggles of a startup group switch together (one push for those ready).
                self._pushes.submit(spec.name, new)
            except DeployFailed as exc:
                with self._table_lock:
                    self.table[spec.name] = old_table.get(spec.name, [])
                    try:
                        self._route_everywhere()
                    except DeployFailed:
                        pass  # the unreachable server is named in exc; the others are back on the old routes
                self._remove_started(started)
                raise DeployFailed(f"{spec.name}: {exc}; the switch was undone and the old version keeps serving") from None
            self._drain_everywhere(spec.name, old_table)
        survivors = {(n, d.spec.name) for n, d in todo.items()} | {(n, c.name) for n, c in keep.items()}
        self._stop_old(spec.name, {n: [c for c in cs if (n, c.name) not in survivors] for n, cs in current.items()})
        for name, desired in todo.items():
            self.engines[name].record(spec, desired, release)
            break
        slots = {d.slot for d in todo.values()}
        return ServiceOutcome(service=spec.name, action="update" if current else "create", slot=slots.pop() if len(slots) == 1 else None, release=release, seconds=time.monotonic() - began)

    def _remove_started(self, started: Sequence[tuple[str, ServiceContainer]]) -> None:
        """Best effort: a server that cannot be reached keeps its (unrouted) new container until
        the next deploy replaces it."""
        for name, desired in started:
            try:
                self.engines[name].runtime.remove(desired.spec.name)
            except Exception as exc:  # noqa: BLE001 - the deploy's own error is the one to report
                self.log(f"{desired.spec.name}{self._on(name)} could not be removed: {exc}")

    def _stop_old(self, service: str, old: Mapping[str, list[ContainerInfo]]) -> None:
        def stop(name: str) -> None:
            for info in old.get(name, []):
                self.log(f"{service}: stopping {info.name}{self._on(name)}")
                self.engines[name].runtime.stop(info.name, timeout=30)
                self.engines[name].runtime.remove(info.name)

        errors = failures(fan_out([n for n in old if old[n]], stop, max_workers=self.max_workers))
        if errors:
            self.log(f"{service}: old containers left on {', '.join(errors)} (the next deploy removes them): {_explain(errors)}")

    def _stateful_target(self, spec: ServiceSpec) -> str:
        """The one server of a stateful service; an error when its data is on another one (or
        may be: on a server that could not be read)."""
        target = self.placement[spec.name][0]
        found = self._containers(spec.name)
        elsewhere = [n for n in found if n != target]
        if elsewhere:
            raise DeployFailed(
                f"{spec.name} keeps its data on {elsewhere[0]}, but the allocation puts it on {target}: moving a database between servers is not done automatically; no service was changed"
            )
        if target not in found and self.unread:
            raise DeployFailed(
                f"{spec.name} does not run on {target}, and {', '.join(sorted(self.unread))} cannot be read: its data may be there; no service was changed (run the deploy again once it answers)"
            )
        return target

    def _stateful(self, spec: ServiceSpec) -> ServiceOutcome:
        began = time.monotonic()
        target = self._stateful_target(spec)
        engine = self.engines[target]
        desired = engine.desired(spec, STATEFUL_SLOT, self.ports)
        existing = engine.runtime.get(desired.spec.name)
        if existing is not None and existing.running and existing.labels.get(LABEL_CONFIG) == desired.config_hash:
            return ServiceOutcome(service=spec.name, action="unchanged", slot=STATEFUL_SLOT, release=None, seconds=0.0)
        release = new_release_id()
        if existing is not None:
            with self._table_lock:
                previous = self.table.pop(spec.name, None)
                try:
                    self._route_everywhere()
                except DeployFailed as exc:
                    # Nothing was stopped: every sidecar gets the database's route back.
                    if previous is not None:
                        self.table[spec.name] = previous
                    try:
                        self._route_everywhere()
                    except DeployFailed:
                        pass
                    raise DeployFailed(f"{spec.name}: {exc}; {existing.name} was not stopped and keeps serving") from None
            self.log(f"{spec.name}: stopping {existing.name}{self._on(target)} (one data directory: stop, then start)")
            engine.runtime.stop(existing.name, timeout=60)
            engine.runtime.remove(existing.name)
        engine.prepare_volumes(desired)
        engine.start(desired, release)
        engine.wait_healthy(spec, desired)
        if spec.port is not None:
            self._pushes.submit(spec.name, [self._placed(target, desired.spec.name, spec, STATEFUL_SLOT)])
        gap = time.monotonic() - began
        if existing is not None:
            self.log(f"{spec.name}: back after a {gap:.1f}s gap")
        engine.record(spec, desired, release)
        return ServiceOutcome(service=spec.name, action="update" if existing else "create", slot=STATEFUL_SLOT, release=release, seconds=gap, gap_seconds=gap if existing else None)

    # --- jobs, removals, servers ---------------------------------------------------------------

    def _jobs(self) -> list[ServiceOutcome]:
        """Job containers, the scheduler and the backup containers, on each server that runs
        them; the jobs' outcomes, in the project's order."""

        def converge(name: str) -> list[ServiceOutcome]:
            engine = self.engines[name]
            specs = self.project.services_for(self.env)
            scheduled = [n for n, spec in specs.items() if n in (engine.services or ()) and spec.is_scheduled and self.only_service in (None, n)]
            outcomes = []
            if scheduled:
                observed = engine.containers()
                plans = [jobs.plan_job(engine, specs[n], 0, self.ports, observed.get(n, [])) for n in scheduled]
                errors = [p.reason for p in plans if p.action == "error"]
                if errors:
                    raise DeployFailed("\n".join(errors))
                done = fan_out(plans, lambda p: jobs.apply_job(engine, p, self.ports) if p.action != "unchanged" else None, name=lambda p: p.service)
                for item in plans:
                    result = done[item.service]
                    if isinstance(result, BaseException):
                        raise result
                    outcomes.append(result or ServiceOutcome(service=item.service, action="unchanged", slot=item.current_slot, release=None, seconds=0.0))
            if scheduled or self.only_service is None:  # one service's deploy leaves the scheduler alone
                jobs.apply_scheduler(engine)
            return outcomes

        results = fan_out(list(self.engines), converge, max_workers=self.max_workers)
        errors = failures(results)
        if errors:
            raise DeployFailed(f"scheduled jobs and backups: {_explain(errors)}" if len(self.engines) > 1 else "\n".join(str(e) for e in errors.values()))
        order = list(self.project.services)
        return sorted((o for found in successes(results).values() for o in found), key=lambda o: order.index(o.service))

    def _remove_gone_services(self) -> list[ServiceOutcome]:
        """Containers of services that left the project file, on every server."""
        known = set(self.project.services)
        gone: set[str] = set()

        def clean(name: str) -> None:
            engine = self.engines[name]
            for service, containers in engine.containers().items():
                if service in known:
                    continue
                gone.add(service)
                for info in containers:
                    self.log(f"{service}: removing {info.name}{self._on(name)} (no longer in the project file)")
                    engine.runtime.stop(info.name, timeout=30)
                    engine.runtime.remove(info.name)

        with self._table_lock:
            gone_routes = [s for s in self.table if s not in known]
            for service in gone_routes:
                self.table.pop(service)
            if gone_routes:
                self._route_everywhere()
            else:
                self._route_unpushed()
        errors = failures(fan_out(list(self.engines), clean, max_workers=self.max_workers))
        if errors:
            self.log(f"containers of removed services left on {', '.join(errors)} (the next deploy removes them): {_explain(errors)}")
        return [ServiceOutcome(service=service, action="remove", slot=None, release=None, seconds=0.0) for service in sorted(gone)]

    def _destroy(self, leaving: Sequence[Server]) -> list[str]:
        """Destroy the servers the allocation no longer needs: nothing routes to them any more
        (not the ones that could not be read: they might hold data)."""
        leaving = [s for s in leaving if s.name not in self.unread]
        if not leaving:
            return []
        self.log(f"destroying {len(leaving)} server(s) no longer needed: {', '.join(s.name for s in leaving)}")
        errors = failures(fan_out(list(leaving), self.provider.destroy_server, max_workers=self.max_workers))
        if errors:
            self.log(f"could not destroy {', '.join(errors)} (the next deploy tries again): {_explain(errors)}")
        return [s.name for s in leaving if s.name not in errors]


__all__ = ["FleetReport", "Orchestrator", "Placed"]
