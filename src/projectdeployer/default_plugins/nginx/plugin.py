"""The routing plugin: one nginx sidecar per project/env on each server.

Apps reach every service of their project at ``nginx:<internal port>`` (5000-5999): ``nginx`` is
the network alias of this sidecar on the project's network, and the sidecar proxies to wherever
the service runs now (the base or the secondary host port of its toggle pair, or several
backends). Web services with a ``domain`` are also served on 80/443, published on the server.

The sidecar is one container, ``{project}_{env}_nginx``, running two nginx masters under a small
PID 1 (``run.sh``): the **http proxy** (HTTP routes and domains, files under ``/etc/nginx/pd``)
and the **tcp proxy** (TCP routes: databases, caches; files under ``/etc/nginx/pd-tcp``; only
when the image has the stream module). One network namespace (one ``nginx`` address), one
lifecycle (stopped, restarted and recreated together), but two reloads: a deploy of a web service
reloads the http proxy only, so a database session (a connection pool's, opened before or after
the switch) never rides an old worker of a reload that had nothing to do with it. Old workers
keep the connections they have until these end (no ``worker_shutdown_timeout`` unless the
environment sets ``sidecar_shutdown_timeout``).

Each :meth:`NginxSidecar.apply` is one atomic switch (see ``nginx_proxy``): render the routes
(:func:`render_config`, pure) into a new version of each proxy that changed, ``nginx -t`` each
with its live main configuration (a refusal changes nothing, :class:`RoutingError` carries nginx's
own message), rename it live and SIGHUP the master, wait for the new workers; if the second proxy
fails, the first goes back to its previous version.

Zero downtime rests on nginx's graceful reload: the listening sockets stay open in the master
across the reload (no connection is refused), new connections go to the new workers, and the
old workers finish every request, response stream and TCP session they have before exiting.
:meth:`NginxSidecar.wait_drained` waits until no connection to the backends a switch retired is
open (counted in the namespace's ``/proc/net/tcp``); only then may the deploy stop the old
container.

The container's layout: the http proxy's under :data:`PD_ROOT` (below), the tcp proxy's alike
under ``/etc/nginx/pd-tcp`` (no ``run.sh``, certificates or webroot)::

    run.sh                PID 1: both masters, stop signals forwarded, exits when either exits
    nginx.conf            main configuration (events, workers, load_module), written at creation
    active.conf           ``http { include v/<id>/http/*.conf; }`` (tcp: ``stream { ... }``)
    v/<id>/http/*.conf    one file per route, plus the shared settings and the default servers
    v/<id>/stream/*.conf
    v/<id>/routes.json    the routes of that version (for status)
    certs/<domain>-<hash>.crt|.key   0600, content-addressed (a new certificate is a new version)
    acme/                 the HTTP-01 webroot (``/.well-known/acme-challenge/`` on port 80)

The Docker SDK is imported on first use, never when the CLI starts.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import re
import tarfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.poll import WaitTimeout, wait_until
from ...core.routing import Backend, Route, RoutingError, check_domain
from ...core.runtime import LABEL_ENV, LABEL_PROJECT, LABEL_ROLE
from ...hookspecs import hookimpl
from .netconns import in_flight_to
from .proxy import NginxProxy, Staged, list_processes, read_states
from .render import (
    _VERSION_LINE,
    ACME_ROOT,
    ACTIVE_CONF,
    CERTS_DIR,
    DEFAULT_SHUTDOWN_TIMEOUT,
    LABEL_SIDECAR,
    MAIN_CONF,
    MAIN_CONF_VERSION,
    NETWORK_ALIAS,
    PD_ROOT,
    PID_FILE,
    RELOAD_TIMEOUT,
    RESERVED_PORTS,
    ROLE,
    RUN_SCRIPT,
    TCP_ROOT,
    VERSIONS_DIR,
    _cert_file_stem,
    _nginx_message,
    _routes_json,
    render_active,
    render_config,
    render_main_config,
    render_run_script,
)

if TYPE_CHECKING:
    from ...core.model import Project
    from ...core.provider import Server

#: How often wait_drained looks again.
_DRAIN_POLL = 0.1

#: image id -> (has the stream module, its ``load_module`` path when dynamic); probed once.
_STREAM_MODULE: dict[str, tuple[bool, str | None]] = {}

# `nginx -V`, and where the stream module's file is when it exists (Debian ships it apart).
_STREAM_PROBE = (
    "nginx -V 2>&1; "
    "m=$(nginx -V 2>&1 | tr ' ' '\\n' | sed -n 's/^--modules-path=//p'); "
    "[ -n \"$m\" ] || m=$(nginx -V 2>&1 | tr ' ' '\\n' | sed -n 's/^--prefix=//p')/modules; "
    '[ -e "$m/ngx_stream_module.so" ] && echo "pd-stream-module: $m/ngx_stream_module.so"; '
    "true"
)


class NginxSidecar:
    """The nginx sidecar of one project/env on one Docker engine: one container, two proxies.

    :param docker_client: a Docker SDK client for the server's engine.
    :param project: the project name.
    :param env: the environment name.
    :param image: the nginx image (the project's ``[images] nginx``); never pulled here.
    :param http_port: host port published to the sidecar's port 80 (domains), or ``None``.
    :param https_port: host port published to 443, or ``None``.
    :param bind_address: the host address those ports are published on.
    :param shutdown_timeout: seconds an old worker may keep long-lived connections after a
        reload before nginx closes them (``worker_shutdown_timeout``); ``None``: until they end.
    """

    def __init__(
        self,
        docker_client: Any,
        *,
        project: str,
        env: str,
        image: str,
        http_port: int | None = None,
        https_port: int | None = None,
        bind_address: str = "127.0.0.1",
        shutdown_timeout: int | None = DEFAULT_SHUTDOWN_TIMEOUT,
    ) -> None:
        self.client = docker_client
        self.project = project
        self.env = env
        self.image = image
        self.http_port = http_port
        self.https_port = https_port
        self.bind_address = bind_address
        self.shutdown_timeout = shutdown_timeout
        self.network_name = f"{project}_{env}_network"
        # Container names are engine-global: two projects (or envs) on one server coexist.
        self.container_name = f"{project}_{env}_nginx"
        self.labels = {LABEL_PROJECT: project, LABEL_ENV: env, LABEL_ROLE: ROLE}
        self.http = NginxProxy(docker_client, name=self.container_name, kind="http")
        self.tcp = NginxProxy(docker_client, name=self.container_name, kind="tcp")

    def __repr__(self) -> str:
        return f"NginxSidecar({self.container_name!r}, image={self.image!r})"

    # --- lifecycle --------------------------------------------------------------------------

    def ensure(self) -> None:
        """Make the network and a running sidecar exist as configured; cheap when they do.

        A sidecar created from another image, with other published ports or another main
        configuration is recreated, keeping its live routes (they are copied into the new one).
        """
        image_id = self._image_id()  # first: a missing image is the user's to fix, change nothing
        network = self._ensure_network()
        container = self._find()
        if container is not None and container.labels.get(LABEL_SIDECAR) == self._identity(image_id):
            self._ensure_connected(network, container)
            if container.status != "running":
                self._start(container)
            return
        self._create(image_id, previous=container)

    def exists(self) -> bool:
        """Whether the sidecar container exists (running or not)."""
        return self._find() is not None

    def remove(self) -> None:
        """Stop (gracefully) and remove the sidecar; remove the network too if nothing else uses it."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        container = self._find()
        if container is not None:
            try:
                container.stop(timeout=10)
            except docker.errors.APIError:
                pass
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
        try:
            network = self.client.networks.get(self.network_name)
            network.reload()
            if not network.attrs.get("Containers"):
                network.remove()
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:  # still in use by the project's containers: theirs
            pass

    # --- routes -----------------------------------------------------------------------------

    def apply(self, routes: Sequence[Route], certificates: Mapping[str, tuple[str, str]] = {}) -> bool:
        """Make ``routes`` live: render, stage, ``nginx -t``, swap, reload, wait for new workers.

        Only a proxy whose routes changed reloads. Returns ``False`` (and does nothing) if
        exactly this configuration is live already. ``certificates`` maps a domain to
        ``(cert_pem, key_pem)``; only those of domains the routes serve are written (0600, inside
        the container). On any failure the configuration that was live stays live and
        :class:`RoutingError` says why (nginx's own message).
        """
        container = self._running_container()
        by_domain = {check_domain(d): pair for d, pair in certificates.items()}
        wanted = {check_domain(r.domain) for r in routes if r.domain is not None}
        cert_files: dict[str, tuple[str, int]] = {}
        cert_paths: dict[str, tuple[str, str]] = {}
        for domain in sorted(wanted & set(by_domain)):
            cert_pem, key_pem = by_domain[domain]
            stem = _cert_file_stem(domain, cert_pem, key_pem)
            crt, key = f"certs/{stem}.crt", f"certs/{stem}.key"
            cert_files[crt], cert_files[key] = (cert_pem, 0o600), (key_pem, 0o600)
            cert_paths[domain] = (f"{PD_ROOT}/{crt}", f"{PD_ROOT}/{key}")
        files = render_config(routes, cert_paths)  # every route checked, both proxies' together
        tcp_routes = [r for r in routes if r.protocol == "tcp"]
        http_routes = [r for r in routes if r.protocol == "http"]
        states = read_states(container, [self.http, self.tcp])  # one exec for both proxies
        tcp_state = states["tcp"]
        if tcp_routes and tcp_state.main is None:
            raise RoutingError(f"{self.container_name}: the image {self.image} has no nginx stream module, so tcp routes cannot be served")

        stages: list[tuple[NginxProxy, Staged]] = []
        try:
            # No TCP route now nor ever before: the tcp proxy has nothing to change (no reload).
            if tcp_state.main is not None and (tcp_routes or tcp_state.version != "empty"):
                tcp_files = {n: t for n, t in files.items() if n.startswith("stream/")}
                staged = self.tcp.stage(container, tcp_state, tcp_files, _routes_json(tcp_routes), {}, ())
                if staged is not None:
                    stages.append((self.tcp, staged))
            http_files = {n: t for n, t in files.items() if n.startswith("http/")}
            keep = [Path(p).name for pair in cert_paths.values() for p in pair]
            staged = self.http.stage(container, states["http"], http_files, _routes_json(http_routes), cert_files, keep)
            if staged is not None:
                stages.append((self.http, staged))
        except BaseException:
            for proxy, staged in stages:
                proxy.discard(container, staged)
            raise
        switched: list[tuple[NginxProxy, Staged]] = []
        for i, (proxy, staged) in enumerate(stages):
            # The last switch prunes in the same exec: nothing can need a revert after it.
            last = i == len(stages) - 1
            try:
                proxy.switch(container, staged, prune=last)
            except BaseException:
                for done, done_staged in switched:
                    done.revert(container, done_staged)
                for later, later_staged in stages[i + 1 :]:
                    later.discard(container, later_staged)
                raise
            switched.append((proxy, staged))
        for proxy, staged in switched[:-1]:
            proxy.prune(container, staged)
        return bool(switched)

    def wait_drained(self, timeout: float = 30.0, backends: Sequence[Backend] | None = None) -> bool:
        """Wait until the requests, response streams and TCP sessions in flight to ``backends``
        (the ones a switch retired) have finished: no connection to them is open any more.

        ``backends=None``: until no old worker of either proxy is left (every connection through
        a previous configuration has ended, whatever its backend). Returns ``True`` when drained,
        ``False`` on timeout.
        """
        container = self._running_container()
        began = time.monotonic()
        if backends is None:

            def drained() -> tuple[bool, str]:
                shutting = sum(title.endswith("is shutting down") for _, title in list_processes(container).values())
                return shutting == 0, f"{shutting} old worker(s) shutting down"

        else:
            targets = self._addresses(backends)
            if not targets:
                return True

            def drained() -> tuple[bool, str]:
                code, text = self.http.exec(container, ["cat", "/proc/net/tcp", "/proc/net/tcp6"])
                if code != 0 and not text.strip():
                    raise RoutingError(f"{self.container_name}: cannot read its connections: {text.strip()}")
                in_flight = in_flight_to(text, targets)
                return in_flight == 0, f"{in_flight} connection(s) in flight"

        try:
            wait_until(drained, timeout=max(0.0, timeout - (time.monotonic() - began)), interval=_DRAIN_POLL, what=f"{self.container_name} drained")
        except WaitTimeout:
            return False
        return True

    def live_routes(self) -> tuple[Route, ...] | None:
        """The routes live now (``()`` before the first apply), or ``None`` without a sidecar."""
        container = self._find()
        if container is None:
            return None
        states = read_states(container, [self.http, self.tcp])
        text = states["http"].routes_json
        if text is None:
            return None
        routes = [r for r in _parse_routes(text) if r.protocol == "http"]
        tcp = states["tcp"].routes_json
        # A sidecar made before the two proxies served its TCP routes from the one tree.
        routes += [r for r in _parse_routes(text if tcp is None else tcp) if r.protocol == "tcp"]
        return tuple(sorted(routes, key=lambda r: r.internal_port))

    def worker_pids(self, kind: str = "http") -> dict[int, str]:
        """One proxy's nginx processes now: pid -> title (``nginx: worker process``, ...)."""
        return (self.http if kind == "http" else self.tcp).processes(self._running_container())

    # --- internals: docker ------------------------------------------------------------------

    def _find(self) -> Any | None:
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        try:
            return self.client.containers.get(self.container_name)
        except docker.errors.NotFound:
            return None

    def _running_container(self) -> Any:
        container = self._find()
        if container is None or container.status != "running":
            state = "missing" if container is None else container.status
            raise RoutingError(f"the nginx sidecar {self.container_name} is {state}: run ensure() first")
        return container

    def _addresses(self, backends: Sequence[Backend]) -> list[tuple[str, int]]:
        """``(ip, port)`` of each backend as the sidecar connects to it: a container's address on
        the project network, or the address itself. A container that is gone has nothing open."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        found: list[tuple[str, int]] = []
        for backend in backends:
            try:
                found.append((str(ipaddress.ip_address(backend.host.strip("[]"))), backend.port))
                continue
            except ValueError:
                pass
            try:
                attrs = self.client.containers.get(backend.host).attrs
            except docker.errors.NotFound:
                continue
            network = (attrs.get("NetworkSettings", {}).get("Networks") or {}).get(self.network_name) or {}
            for key in ("IPAddress", "GlobalIPv6Address"):
                if network.get(key):
                    found.append((network[key], backend.port))
        return found

    def _image_id(self) -> str:
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        try:
            image_id: str = self.client.images.get(self.image).id
            return image_id
        except docker.errors.ImageNotFound:
            raise RoutingError(f"the nginx image {self.image} is not on this Docker engine; pull or build it, or set [images] nginx") from None

    def _ensure_network(self) -> Any:
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        try:
            return self.client.networks.get(self.network_name)
        except docker.errors.NotFound:
            pass
        try:
            return self.client.networks.create(self.network_name, driver="bridge", labels={LABEL_PROJECT: self.project, LABEL_ENV: self.env}, check_duplicate=True)
        except docker.errors.APIError:  # created concurrently by the deploy engine: use theirs
            return self.client.networks.get(self.network_name)

    def _ensure_connected(self, network: Any, container: Any) -> None:
        networks = container.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
        aliases = (networks.get(self.network_name) or {}).get("Aliases") or []
        if self.network_name in networks and NETWORK_ALIAS in aliases:
            return
        if self.network_name in networks:
            network.disconnect(container)
        network.connect(container, aliases=[NETWORK_ALIAS])
        container.reload()

    def _ports(self) -> dict[str, tuple[str, int]]:
        ports: dict[str, tuple[str, int]] = {}
        if self.http_port is not None:
            ports["80/tcp"] = (self.bind_address, int(self.http_port))
        if self.https_port is not None:
            ports["443/tcp"] = (self.bind_address, int(self.https_port))
        return ports

    def _stream_module(self, image_id: str) -> tuple[bool, str | None]:
        """Whether the image's nginx has the stream module, and its path when it is dynamic.

        Debian builds it as a module (``--with-stream=dynamic``, libnginx-mod-stream), the
        official images build it in; ``nginx -V`` says which. Probed once per image, and only
        when a sidecar is created.
        """
        if image_id not in _STREAM_MODULE:
            raw = self.client.containers.run(image_id, ["-c", _STREAM_PROBE], entrypoint=["sh"], remove=True, stdout=True, stderr=True, network_mode="none")
            version = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            found = re.search(r"^pd-stream-module: (\S+)$", version, re.M)
            if "--with-stream=dynamic" in version:
                # Dynamic but not installed (Debian without libnginx-mod-stream): no stream.
                _STREAM_MODULE[image_id] = (True, found.group(1)) if found else (False, None)
            else:
                _STREAM_MODULE[image_id] = (re.search(r"--with-stream(\s|$)", version) is not None, None)
        return _STREAM_MODULE[image_id]

    def _identity(self, image_id: str) -> str:
        """What the container must have been created from; a change means: recreate.

        Computed without running anything (ensure() stays cheap): the main configurations are a
        function of the image, the shutdown timeout and :data:`MAIN_CONF_VERSION`.
        """
        spec = {"image": image_id, "ports": self._ports(), "shutdown": self.shutdown_timeout, "main": MAIN_CONF_VERSION}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def _create(self, image_id: str, previous: Any | None) -> None:
        """Create and start the sidecar; replace ``previous`` (keeping its routes) if given."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        carried: list[bytes] = []
        if previous is not None:
            # Keep the live routes across the recreation: both trees move, the main
            # configurations are then rewritten for the new image.
            for root in (PD_ROOT, TCP_ROOT):
                try:
                    stream, _ = previous.get_archive(root)
                    carried.append(b"".join(stream))
                except docker.errors.APIError:
                    pass
        staging = f"{self.container_name}-new"
        self._remove_named(staging)  # left over by an interrupted ensure()
        container = self._new_container(image_id, staging if previous is not None else self.container_name, carried)
        try:
            if previous is not None:
                # Both publish the same host ports and carry the same alias: one at a time.
                previous.stop(timeout=10)
                previous.remove(force=True)
                container.rename(self.container_name)
            try:
                self._start(container)
            except RoutingError:
                if not carried:
                    raise
                # The copied routes do not load in the new image (a module it lacks): start
                # without routes; the apply() that follows ensure() renders them afresh.
                container.remove(force=True)
                container = self._new_container(image_id, self.container_name, [])
                self._start(container)
        except BaseException:
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
            raise

    def _start(self, container: Any) -> None:
        """Start ``container`` and wait for its workers; a refusal (a port taken) is a RoutingError."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        try:
            container.start()
        except docker.errors.APIError as exc:
            reason = exc.explanation or str(exc)
            raise RoutingError(f"cannot start the nginx sidecar {self.container_name}: {reason}") from None
        self._wait_running(container)

    def _new_container(self, image_id: str, name: str, carried: Sequence[bytes]) -> Any:
        """A created (not started) sidecar with its PID 1, main configurations and routes in place."""
        has_stream, module = self._stream_module(image_id)
        container = self.client.containers.create(
            image_id,
            name=name,
            # run.sh is PID 1: it starts both masters and forwards SIGQUIT (graceful stop) to them.
            entrypoint=["sh", RUN_SCRIPT],
            command=[],
            labels={**self.labels, LABEL_SIDECAR: self._identity(image_id), "io.projectdeployer.image": self.image},
            restart_policy={"Name": "unless-stopped"},
            ports=dict(self._ports()),
            network=self.network_name,
            networking_config={self.network_name: self.client.api.create_endpoint_config(aliases=[NETWORK_ALIAS])},
            # Graceful stop: in-flight requests finish (the official image's STOPSIGNAL too).
            stop_signal="SIGQUIT",
        )
        for tree in carried:
            container.put_archive(str(Path(PD_ROOT).parent), tree)
        carried_versions = _carried_versions(carried)
        for proxy in (self.http, self.tcp) if has_stream else (self.http,):
            paths, version = proxy.paths, carried_versions.get(proxy.kind, "empty")
            main = render_main_config(
                project=self.project, env=self.env, shutdown_timeout=self.shutdown_timeout, has_stream=proxy.kind == "tcp", load_module=module if proxy.kind == "tcp" else None, kind=proxy.kind
            )
            # active.conf is written anew, for the proxy's kind: a sidecar made before the two
            # proxies had one active.conf for both, naming one version with both parts.
            files = {"nginx.conf": (main, 0o644), "active.conf": (render_active(f"{paths.versions_dir}/{version}", version=version, kind=proxy.kind), 0o644)}
            if version == "empty":
                files["v/empty/routes.json"] = ("[]\n", 0o644)
            if proxy is self.http:
                files["run.sh"] = (render_run_script(tcp=has_stream), 0o755)
            proxy.put(container, paths.root, files, private_dirs={"certs"}, dirs=("v", "certs", "acme") if proxy is self.http else ("v",))
        return container

    def _remove_named(self, name: str) -> None:
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        try:
            self.client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass

    def _wait_running(self, container: Any, timeout: float = 15.0) -> None:
        """Until every master has started its workers; an exit means a configuration is broken."""
        began = time.monotonic()
        masters = 2 if self.tcp.runs_in(container) else 1

        def running() -> tuple[bool, str]:
            container.reload()
            if container.status in ("exited", "dead"):
                logs = container.logs(tail=10).decode(errors="replace").strip()
                raise RoutingError(f"the nginx sidecar {self.container_name} exited: {_nginx_message(logs)}")
            if container.status != "running":
                return False, f"state {container.status}"
            everything = list_processes(container)
            parents = {ppid for ppid, title in everything.values() if title == "nginx: worker process"}
            return len(parents) >= masters, f"state running, {len(parents)} of {masters} master(s) with workers"

        try:
            wait_until(running, timeout=max(0.0, timeout - (time.monotonic() - began)), interval=0.1, what=f"the nginx sidecar {self.container_name} running")
        except WaitTimeout as exc:
            raise RoutingError(f"the nginx sidecar {self.container_name} did not start within {timeout:.0f}s ({exc.last})") from None


def _carried_versions(carried: Sequence[bytes]) -> dict[str, str]:
    """kind -> the live version named by each carried tree's ``active.conf``."""
    found: dict[str, str] = {}
    for tree in carried:
        with tarfile.open(fileobj=io.BytesIO(tree)) as tar:
            for member in tar:
                top, _, rest = member.name.partition("/")
                if rest == "active.conf":
                    handle = tar.extractfile(member)
                    match = _VERSION_LINE.search(handle.read().decode() if handle else "")
                    if match:
                        found["tcp" if top == Path(TCP_ROOT).name else "http"] = match.group(1)
    return found


def _parse_routes(text: str) -> list[Route]:
    return [
        Route(
            service=r["service"],
            internal_port=r["internal_port"],
            protocol=r["protocol"],
            backends=tuple(Backend(host=b["host"], port=b["port"]) for b in r["backends"]),
            domain=r["domain"],
        )
        for r in json.loads(text)
    ]


# --- hooks -------------------------------------------------------------------------------------


#: Domain ports published by default (servers: the standard ports; this machine: unprivileged ones).
DEFAULT_DOMAIN_PORTS = {"server": (80, 443), "local": (8080, 8443)}


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def sidecar_for(server: Server, project: Project, env: str) -> NginxSidecar:
    """The sidecar of ``project``/``env`` on ``server``, as the project file configures it.

    Domain ports: the environment's ``http_port``/``https_port`` when set. When unset and some
    service of the environment has a ``domain``: 80/443 on servers, 8080/8443 on this machine
    (a server whose ``bind_address`` is loopback); with no domain, nothing is published.
    They are published on loopback on this machine and on every interface of a server (domains
    are public; the app ports stay on the server's ``bind_address``).
    """
    spec = project.environment(env)
    try:
        image = project.image("nginx")
    except KeyError:
        raise RoutingError(f"{project.name}: no [images] nginx entry for the routing sidecar") from None
    bind = getattr(server, "bind_address", "127.0.0.1")
    local = _is_loopback(bind)
    http_port, https_port = getattr(spec, "http_port", None), getattr(spec, "https_port", None)
    if any(service.domain for service in project.services_for(env).values()):
        default_http, default_https = DEFAULT_DOMAIN_PORTS["local" if local else "server"]
        http_port = default_http if http_port is None else http_port
        https_port = default_https if https_port is None else https_port
    return NginxSidecar(
        server.docker(),
        project=project.name,
        env=env,
        image=image,
        http_port=http_port,
        https_port=https_port,
        bind_address=bind if local else "0.0.0.0",
        shutdown_timeout=getattr(spec, "sidecar_shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT),
    )


@hookimpl
def configure_routing(server: Server, project: Project, env: str, routes: Sequence[Route], certificates: Mapping[str, tuple[str, str]]) -> None:
    """Apply ``routes`` on ``server``'s sidecar (created or fixed first), with the caller's
    ``certificates`` for their domains; RoutingError on failure."""
    sidecar = sidecar_for(server, project, env)
    sidecar.ensure()
    sidecar.apply(routes, certificates)


@hookimpl
def live_routes(server: Server, project: Project, env: str) -> Sequence[Route] | None:
    """What ``server``'s sidecar serves now; ``None`` when it has no sidecar."""
    return sidecar_for(server, project, env).live_routes()


@hookimpl
def wait_drained(server: Server, project: Project, env: str, timeout: float, backends: Sequence[Backend] | None) -> bool | None:
    """Wait until nothing is connected through ``server``'s sidecar to ``backends`` (``None``:
    until its old workers are gone); ``None`` when it has no sidecar."""
    sidecar = sidecar_for(server, project, env)
    if not sidecar.exists():
        return None
    return sidecar.wait_drained(timeout, backends)


@hookimpl
def remove_routing(server: Server, project: Project, env: str) -> None:
    """Stop ``env``'s sidecar containers on ``server`` gracefully (in-flight requests finish)
    and remove them: every container labelled as this environment's sidecar, whatever its name,
    so no part of a split sidecar stays behind. Nothing there: nothing to do."""
    import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

    client = server.docker()
    labels = [f"{LABEL_PROJECT}={project.name}", f"{LABEL_ENV}={env}", f"{LABEL_ROLE}={ROLE}"]
    for container in client.containers.list(all=True, filters={"label": labels}, ignore_removed=True):
        try:
            container.stop(timeout=10)
            container.remove(force=True)
        except docker.errors.NotFound:
            pass  # removed meanwhile: what this hook wanted


__all__ = [
    "ACME_ROOT",
    "ACTIVE_CONF",
    "CERTS_DIR",
    "LABEL_SIDECAR",
    "MAIN_CONF",
    "MAIN_CONF_VERSION",
    "PID_FILE",
    "RELOAD_TIMEOUT",
    "RESERVED_PORTS",
    "VERSIONS_DIR",
    "NginxSidecar",
    "RoutingError",
    "check_domain",
    "configure_routing",
    "live_routes",
    "remove_routing",
    "render_active",
    "render_config",
    "render_main_config",
    "sidecar_for",
    "wait_drained",
]
