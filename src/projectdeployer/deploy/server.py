"""The deploy steps on ONE server, public for the one deploy path (deploy/orchestrator.py), jobs
(deploy/jobs.py) and backups: the container a service should run (:meth:`ServerDeployer.desired`), its
release command, volumes, start, health wait and release record, and reads of what runs.

None of the steps routes: deploy/orchestrator.py keeps the routing table of every server's sidecar
(this machine's included) and switches it. The toggle itself (start the new container on the
other slot, wait until healthy, switch the sidecars, drain, stop the old one) and the stateful
stop-then-start are the fleet's, for one server or many.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs
import pluggy

from ..build.builder import image_tag
from ..core import paths
from ..core.containers import SECRETS_MOUNT
from ..core.errors import LINE_SHOWN, DeployFailed, printable
from ..core.model import GenericSpec, Project, ServiceSpec
from ..core.monitoring import HealthCheck
from ..core.plan import ServiceOutcome
from ..core.poll import WaitTimeout, wait_until
from ..core.provider import Server
from ..core.routing import Route
from ..core.runtime import LABEL_ENV, LABEL_PROJECT, LABEL_RELEASE, LABEL_ROLE, LABEL_SERVICE, ContainerInfo, ContainerRuntime, ContainerSpec, Mount
from ..core.safety import command_argv
from ..core.servicetype import ServiceType
from ..environment.releases import Release, ReleaseHistory
from .containers import ServiceContainer, build_container
from .observation import Kept, Observation, WatchedRuntime, pick_active
from .ports import PortAssignment, PortStore
from .secretfiles import write_secret_files

Log = Callable[[str], None]
#: How long a release command (migrations) may run before the deploy gives up on it.
RELEASE_TIMEOUT = 600.0
#: The pauses before the second and third health probes of a new container, shorter than its
#: check's interval (every interval after them): a container that answers a moment after a
#: failed first probe is not left waiting a whole interval, and with many servers the slowest
#: one holds the switch of all.
FIRST_PROBE_PAUSES = (0.25, 0.5)


class _Exited(Exception):
    """A new container stopped while :meth:`ServerDeployer.wait_healthy` waited for it."""


class ServerDeployer:
    """The deploy steps of one project/environment on one server.

    Its steps are public, for the orchestrator (deploy/orchestrator.py), jobs (deploy/jobs.py) and backups:
    :meth:`desired` (the container a service should run), :meth:`run_release`,
    :meth:`prepare_volumes`, :meth:`start`, :meth:`wait_healthy`, :meth:`materialize` and
    :meth:`record`; reads are :meth:`containers`, :meth:`observe`, :meth:`active_container` and
    :meth:`routed_backends`. None of the steps routes: the orchestrator does.
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
        image_source: Callable[[str], str | None] | None = None,
    ) -> None:
        """``services``: the services this server holds (``None``: every service of the
        environment; many servers: the ones the allocation places here).
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
        self._kept_containers: Kept[dict[str, tuple[ContainerInfo, ...]]] = Kept(lambda: self._watched.changes)
        # The orchestrator changes routes, not this engine: what the router serves is kept
        # until read anew (``fresh``), as the orchestrator's plan and table reads do.
        self._kept_routed: Kept[frozenset[str]] = Kept(lambda: 0)
        #: The routes the router served when last asked (:meth:`served_routes`).
        self._served: tuple[Route, ...] | None = None
        #: image ref -> id, while a plan looks them up (many services often share one image).
        self._image_ids: dict[str, str | None] | None = None
        #: The services placed on this server (``None``: every service of the environment).
        self.services: frozenset[str] | None = None if services is None else frozenset(services)
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
        (deploy/observation.py). ``fresh``: read both now whatever is kept (a deploy's plan,
        under the environment lock, sees what other processes did before it)."""
        containers = self._kept_containers.get(self._read_containers, fresh=fresh)
        return Observation(containers=containers, routed=self.routed(fresh=fresh))

    def containers(self, *, fresh: bool = False) -> dict[str, list[ContainerInfo]]:
        """The project's containers on the server, by service, as :meth:`observe` reads them
        (one listing, kept until a container changes through this engine's runtime), without
        the router's part: for a caller that routes this server itself (deploy/orchestrator.py), whose
        route changes this engine does not see. ``fresh``: read now whatever is kept."""
        kept = self._kept_containers.get(self._read_containers, fresh=fresh)
        return {service: list(found) for service, found in kept.items()}

    def routed(self, *, fresh: bool = False) -> frozenset[str]:
        """Container names the router serves (:meth:`routed_backends`), read once and kept
        until read ``fresh``: for :meth:`active_container` over many services."""
        return self._kept_routed.get(lambda: frozenset(self.routed_backends()), fresh=fresh)

    def served_routes(self) -> tuple[Route, ...] | None:
        """The routes the router served when :meth:`routed_backends` last asked it (a plan's
        read), not asked again; ``None`` when not asked yet or when no plugin could say. The
        orchestrator compares them with what it would push, before it pushes anything."""
        return self._served

    def _read_containers(self) -> dict[str, tuple[ContainerInfo, ...]]:
        """The project's containers by service in one listing (no inspect per container, so
        no start times), except where two of a service run: which started last may decide
        which one serves (:func:`~projectdeployer.deploy.observation.pick_active`), so those
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
            value: str | None = self.manager.hook.resolve_secret(project=self.project.name, env=self.env, ref=ref)
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

    @contextlib.contextmanager
    def planning(self) -> Iterator[None]:
        """For the block (a plan), each image's id is looked up on the server once, however
        many services run it."""
        self._image_ids = {}
        try:
            yield
        finally:
            self._image_ids = None

    def look_up_images(self) -> None:
        """Inside :meth:`planning`: look up now the ids of the images of every service this
        server holds (a plan reads its servers in parallel, then compares service by service
        from what was read). Outside it: nothing (there is nowhere to keep them)."""
        if self._image_ids is None:
            return
        for spec in self.specs().values():
            self._image_id(self.image_for(spec, self.registry.service_types[spec.type]))

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
        self._served = None if live is None else tuple(live)
        if live is not None:
            return {backend.host for route in live for backend in route.backends}
        state = paths.env_dir(self.project.name, self.env, "config") / "routes.json"
        try:
            return set(json.loads(state.read_text()).get("backends", {}).values())
        except (OSError, ValueError):
            return set()

    # --- the per-server steps (public: deploy/orchestrator.py and deploy/jobs.py drive them) -------------

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
        (deploy/secretfiles.py) and mounted read-only, and its release label set. Starts nothing."""
        spec = desired.spec
        mounts = list(spec.mounts)
        if desired.secret_files:
            source = write_secret_files(self.server, self.runtime, self.project.name, self.env, spec.name, spec.image, desired.secret_files, desired.secret_owner)
            mounts.append(Mount(source=source, target=SECRETS_MOUNT, read_only=True))
        return attrs.evolve(spec, mounts=tuple(mounts), labels={**spec.labels, LABEL_RELEASE: release})

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

        pauses = iter(FIRST_PROBE_PAUSES)

        def pause(seconds: float) -> None:
            time.sleep(min(seconds, next(pauses, seconds)))

        try:
            detail = wait_until(probe, timeout=check.start_period, interval=check.interval, what=f"{spec.name} healthy", sleep=pause)
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

    # --- history -----------------------------------------------------------------------------

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


@contextlib.contextmanager
def images_looked_up_once(deployers: Iterable[ServerDeployer]) -> Iterator[None]:
    """For the block, each of ``deployers`` looks each image's id up once on its server
    (:meth:`ServerDeployer.planning`), however many services run it: a plan, or the services
    of a deploy once every server has its images."""
    with contextlib.ExitStack() as held:
        for deployer in deployers:
            held.enter_context(deployer.planning())
        yield


__all__ = ["DeployFailed", "ServerDeployer", "ServiceOutcome", "images_looked_up_once"]
