"""The routing plugin: one nginx sidecar per project/env on each server.

Apps reach every service of their project at ``nginx:<internal port>`` (5000-5999): ``nginx`` is
the network alias of this sidecar on the project's network, and the sidecar proxies to wherever
the service runs now (the base or the secondary host port of its toggle pair, or several
backends). Web services with a ``domain`` are also served on 80/443, published on the server.

Each :meth:`NginxSidecar.apply` is one atomic switch:

1. render the routes (:func:`render_config`, pure) into a new version directory inside the
   container, with the certificates (mode 0600);
2. ``nginx -t`` that version with the live main configuration: a rejected version is deleted and
   :class:`RoutingError` carries nginx's own message; the live configuration never changed;
3. rename it live (one ``rename(2)`` of ``active.conf``) and send SIGHUP to the master;
4. wait until the new workers run (or the master reported the reload failed: then the previous
   ``active.conf`` is put back and the error raised).

Zero downtime rests on nginx's graceful reload: the listening sockets stay open in the master
across the reload (no connection is refused), new connections go to the new workers, and the
old workers finish every request, response stream and TCP session they have before exiting.
:meth:`NginxSidecar.wait_drained` waits for those old workers; only then may the deploy stop the
old container.

The container's layout (everything under :data:`PD_ROOT`)::

    nginx.conf            main configuration (events, workers, load_module), written at creation
    active.conf           ``http { include v/<id>/http/*.conf; } stream { ... }``: the live version
    v/<id>/http/*.conf    one file per route, plus the shared settings and the default servers
    v/<id>/stream/*.conf
    v/<id>/routes.json    the routes of that version (for status)
    certs/<domain>-<hash>.crt|.key   0600, content-addressed (a new certificate is a new version)
    acme/                 the HTTP-01 webroot (``/.well-known/acme-challenge/`` on port 80)

The Docker SDK is imported on first use, never when the CLI starts.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ProjectDeployerError
from ..core.routing import Backend, Route
from ..core.runtime import LABEL_ENV, LABEL_PROJECT, LABEL_ROLE
from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..core.model import Project
    from ..core.provider import Server

#: Everything the sidecar owns inside its container.
PD_ROOT = "/etc/nginx/pd"
MAIN_CONF = f"{PD_ROOT}/nginx.conf"
ACTIVE_CONF = f"{PD_ROOT}/active.conf"
VERSIONS_DIR = f"{PD_ROOT}/v"
CERTS_DIR = f"{PD_ROOT}/certs"
ACME_ROOT = f"{PD_ROOT}/acme"
PID_FILE = "/run/nginx-pd.pid"
#: The name apps use for the sidecar on the project network.
NETWORK_ALIAS = "nginx"
#: Seconds an old worker may keep long-lived connections after a reload (then they are closed).
DEFAULT_SHUTDOWN_TIMEOUT = 300

#: Hash of what the container was created from (image id, ports, main configuration).
LABEL_SIDECAR = "io.projectdeployer.sidecar"
ROLE = "sidecar"

#: Ports the sidecar itself listens on for domains; no internal port may take them.
RESERVED_PORTS = frozenset({80, 443})
#: How long apply() waits for the new workers after SIGHUP.
RELOAD_TIMEOUT = 20.0
#: Bump when the main configuration's template changes: running sidecars are then recreated.
MAIN_CONF_VERSION = 1

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}\Z", re.IGNORECASE)
# Container names ([a-zA-Z0-9][a-zA-Z0-9_.-]*) and DNS names; nothing nginx would parse as syntax.
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?\Z")
_VERSION_LINE = re.compile(r"^# pd-version (\w+)$", re.M)


class RoutingError(ProjectDeployerError):
    """Routes could not be applied; the configuration that was live before is still live."""


# --- rendering (pure) --------------------------------------------------------------------------


def check_domain(domain: str) -> str:
    """Return ``domain`` in lower case, or raise :class:`RoutingError` for an invalid name.

    A host name (labels of letters, digits and inner hyphens, 253 characters at most), optionally
    a wildcard ``*.example.com``. Anything else could not be a ``server_name`` (and could smuggle
    nginx syntax into the configuration), so it is refused before anything is rendered.
    """
    if not isinstance(domain, str) or len(domain) > 253 or not _DOMAIN.match(domain):
        raise RoutingError(f"invalid domain {domain!r}: expected a host name such as api.example.com")
    return domain.lower()


def _safe_name(text: str, limit: int = 40) -> str:
    """Letters, digits and ``_`` only: safe in upstream names and file names."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")[:limit]
    return name or "svc"


def _backend_address(route: Route, backend: Backend) -> str:
    """``host:port`` as nginx wants it (IPv6 in brackets); invalid values are a RoutingError."""
    import ipaddress

    host, port = backend.host, backend.port
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise RoutingError(f"route {route.service}: backend port {port!r} is not a port number")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if not _HOST.match(host):
            raise RoutingError(f"route {route.service}: invalid backend host {host!r}") from None
        return f"{host}:{port}"
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


@functools.lru_cache(maxsize=1)
def _templates() -> Any:
    """The templates' environment, made once: jinja2 compiles a template once per environment."""
    import jinja2  # imported on first render, not when the CLI starts

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        undefined=jinja2.StrictUndefined,  # a typo in a template is an error, not an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # nginx configuration, not HTML
    )


def render_config(routes: Sequence[Route], cert_paths: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """Render ``routes`` into nginx configuration files: relative file name -> text.

    ``http/*.conf`` are included in the ``http`` context, ``stream/*.conf`` in ``stream``.
    ``cert_paths`` maps a domain to the ``(certificate, key)`` paths nginx should load; a domain
    route with an entry there gets a ``listen 443 ssl`` server too. Pure: the same input gives the
    same output, byte for byte (the sidecar compares versions by their hash).

    Raises :class:`RoutingError` (one line, naming the route) for a route that cannot be served:
    no backends, an invalid host, port or domain, two routes on one port or one domain.
    """
    env = _templates()
    certs = {check_domain(domain): paths for domain, paths in cert_paths.items()}
    files: dict[str, str] = {}
    ports: dict[int, str] = {}
    domains: dict[str, str] = {}
    https = False
    http_routes = [r for r in routes if r.protocol == "http"]
    tcp_routes = [r for r in routes if r.protocol == "tcp"]
    for route in routes:
        if route.protocol not in ("http", "tcp"):
            raise RoutingError(f"route {route.service}: protocol {route.protocol!r} is neither 'http' nor 'tcp'")
        port = route.internal_port
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise RoutingError(f"route {route.service}: internal port {port!r} is not a port number")
        if port in RESERVED_PORTS:
            raise RoutingError(f"route {route.service}: internal port {port} is reserved for domains (80, 443)")
        if port in ports:
            raise RoutingError(f"routes {ports[port]} and {route.service} both use internal port {port}")
        ports[port] = route.service
        if not route.backends:
            raise RoutingError(f"route {route.service}: no backends")
        if route.domain is not None:
            if route.protocol != "http":
                raise RoutingError(f"route {route.service}: a domain needs an http route, not {route.protocol}")
            domain = check_domain(route.domain)
            if domain in domains:
                raise RoutingError(f"routes {domains[domain]} and {route.service} both serve {domain}")
            domains[domain] = route.service

    def context(route: Route, kind: str) -> dict[str, Any]:
        name = _safe_name(route.service)
        return {
            "name": name,
            "port": route.internal_port,
            "upstream": f"pd_{kind}_{name}_{route.internal_port}",
            # Sorted and de-duplicated: the order of backends must not make a "new" version.
            "backends": sorted({_backend_address(route, b) for b in route.backends}),
        }

    if http_routes:
        files["http/00-pd-common.conf"] = env.get_template("nginx-http-common.conf.j2").render()
    for route in sorted(http_routes, key=lambda r: r.internal_port):
        ctx = context(route, "http")
        domain = check_domain(route.domain) if route.domain is not None else None
        cert = certs.get(domain) if domain else None
        https = https or cert is not None
        files[f"http/{ctx['name']}-{route.internal_port}.conf"] = env.get_template("nginx-http-route.conf.j2").render(
            **ctx,
            domain=domain,
            certificate=cert[0] if cert else None,
            certificate_key=cert[1] if cert else None,
            acme_root=ACME_ROOT,
        )
    if domains:
        files["http/99-pd-default.conf"] = env.get_template("nginx-http-default.conf.j2").render(https=https)
    if tcp_routes:
        files["stream/00-pd-common.conf"] = env.get_template("nginx-stream-common.conf.j2").render()
    for route in sorted(tcp_routes, key=lambda r: r.internal_port):
        ctx = context(route, "tcp")
        files[f"stream/{ctx['name']}-{route.internal_port}.conf"] = env.get_template("nginx-stream-route.conf.j2").render(**ctx)
    return files


def render_main_config(
    *, project: str, env: str, has_stream: bool, load_module: str | None = None, shutdown_timeout: int = DEFAULT_SHUTDOWN_TIMEOUT
) -> str:
    """The sidecar's main ``nginx.conf``: workers, events, the stream module, ``include active.conf``.

    :param has_stream: whether the image has the stream module (built in, or ``load_module``).
    :param load_module: the path of a dynamic stream module to load, or ``None``.
    """
    return _templates().get_template("nginx-main.conf.j2").render(
        project=_safe_name(project, 64),
        env=_safe_name(env, 64),
        has_stream=has_stream,
        load_module=load_module,
        shutdown_timeout=f"{int(shutdown_timeout)}s",
        pid=PID_FILE,
        active=ACTIVE_CONF,
    )


def render_active(version_dir: str, *, version: str, stream: bool) -> str:
    """``active.conf``: which version is live. One file, so the switch is one rename."""
    lines = [f"# pd-version {version}", "http {", f"    include {version_dir}/http/*.conf;", "}"]
    if stream:
        lines += ["stream {", f"    include {version_dir}/stream/*.conf;", "}"]
    return "\n".join(lines) + "\n"


def _cert_file_stem(domain: str, cert_pem: str, key_pem: str) -> str:
    # Content-addressed: the same certificate gives the same paths (so the same config version);
    # a renewed one gives new paths, a new version, and a reload that loads it.
    digest = hashlib.sha256(f"{cert_pem}\0{key_pem}".encode()).hexdigest()[:12]
    return f"{check_domain(domain).replace('*', '_')}-{digest}"


def _routes_json(routes: Sequence[Route]) -> str:
    data = [
        {
            "service": r.service,
            "internal_port": r.internal_port,
            "protocol": r.protocol,
            "backends": [{"host": b.host, "port": b.port} for b in r.backends],
            "domain": r.domain,
        }
        for r in sorted(routes, key=lambda r: r.internal_port)
    ]
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


# --- the sidecar container ---------------------------------------------------------------------


#: image id -> (has the stream module, its ``load_module`` path when dynamic); probed once.
_STREAM_MODULE: dict[str, tuple[bool, str | None]] = {}

# Lists nginx processes from /proc (the image may have no `ps`): "<pid> <title>" per line.
_PS_SCRIPT = (
    "for d in /proc/[0-9]*; do "
    "t=$(tr '\\000' ' ' 2>/dev/null < \"$d/cmdline\") || continue; "
    "case \"$t\" in nginx:*) echo \"${d#/proc/} $t\";; esac; "
    "done"
)


# `nginx -V`, and where the stream module's file is when it exists (Debian ships it apart).
_STREAM_PROBE = (
    "nginx -V 2>&1; "
    "m=$(nginx -V 2>&1 | tr ' ' '\\n' | sed -n 's/^--modules-path=//p'); "
    "[ -n \"$m\" ] || m=$(nginx -V 2>&1 | tr ' ' '\\n' | sed -n 's/^--prefix=//p')/modules; "
    "[ -e \"$m/ngx_stream_module.so\" ] && echo \"pd-stream-module: $m/ngx_stream_module.so\"; "
    "true"
)


class NginxSidecar:
    """The nginx sidecar of one project/env on one Docker engine.

    :param docker_client: a Docker SDK client for the server's engine.
    :param project: the project name.
    :param env: the environment name.
    :param image: the nginx image (the project's ``[images] nginx``); never pulled here.
    :param http_port: host port published to the sidecar's port 80 (domains), or ``None``.
    :param https_port: host port published to 443, or ``None``.
    :param bind_address: the host address those ports are published on.
    :param shutdown_timeout: seconds an old worker may keep long-lived connections after a
        reload before nginx closes them (``worker_shutdown_timeout``).
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
        shutdown_timeout: int = DEFAULT_SHUTDOWN_TIMEOUT,
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
        import docker.errors

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

    def apply(self, routes: Sequence[Route], certificates: Mapping[str, tuple[str, str]] = {}) -> bool:  # noqa: B006 - read only
        """Make ``routes`` live: render, stage, ``nginx -t``, swap, reload, wait for new workers.

        Returns ``False`` (and does nothing) if exactly this configuration is already live.
        ``certificates`` maps a domain to ``(cert_pem, key_pem)``; only those of domains the
        routes serve are written (0600, inside the container). On any failure the configuration
        that was live stays live and :class:`RoutingError` says why (nginx's own message).
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
        files = render_config(routes, cert_paths)
        stream = any(name.startswith("stream/") for name in files)
        routes_json = _routes_json(routes)
        # Certificates are in the hash through their content-addressed paths.
        version = hashlib.sha256(json.dumps([sorted(files.items()), routes_json]).encode()).hexdigest()[:16]

        live_active = self._read(container, ACTIVE_CONF)
        live_match = _VERSION_LINE.search(live_active or "")
        if live_match and live_match.group(1) == version:
            return False
        main = self._read(container, MAIN_CONF)
        if main is None or f"include {ACTIVE_CONF};" not in main:
            raise RoutingError(f"{self.container_name}: {MAIN_CONF} is missing or not ours; run ensure() (or remove the container)")
        if stream and "# pd-stream yes" not in main:
            raise RoutingError(f"{self.container_name}: the image {self.image} has no nginx stream module, so tcp routes cannot be served")

        vdir = f"{VERSIONS_DIR}/{version}"
        active = render_active(vdir, version=version, stream=stream)
        staged: dict[str, tuple[str, int]] = {f"v/{version}/{name}": (text, 0o644) for name, text in files.items()}
        staged[f"v/{version}/active.conf"] = (active, 0o644)
        staged[f"v/{version}/routes.json"] = (routes_json, 0o644)
        # The test configuration is the live main one with this version instead of active.conf.
        staged[f"v/{version}/test.conf"] = (main.replace(f"include {ACTIVE_CONF};", f"include {vdir}/active.conf;"), 0o644)
        staged[f".active-{version}.tmp"] = (active, 0o644)
        staged.update(cert_files)
        self._put(container, PD_ROOT, staged, private_dirs={"certs"})

        code, output = self._exec(container, ["nginx", "-t", "-q", "-c", f"{vdir}/test.conf"])
        if code != 0:
            self._exec(container, ["rm", "-rf", vdir, f"{PD_ROOT}/.active-{version}.tmp"])
            raise RoutingError(f"{self.container_name}: nginx rejected the new routes: {_nginx_message(output)}")

        before = self._workers(container)
        since = self._engine_time()
        code, output = self._exec(container, ["mv", "-f", f"{PD_ROOT}/.active-{version}.tmp", ACTIVE_CONF])
        if code != 0:
            raise RoutingError(f"{self.container_name}: could not switch to the new routes: {output.strip()}")
        container.kill(signal="SIGHUP")
        error = self._wait_reloaded(container, before, since)
        if error is not None:
            self._restore(container, live_active, version, reload_again=error.startswith("no new workers"))
            raise RoutingError(f"{self.container_name}: reload failed, the previous routes stay live: {error}")
        self._prune(container, keep_version=version, keep_certs=[Path(p).name for pair in cert_paths.values() for p in pair])
        return True

    def wait_drained(self, timeout: float = 30.0) -> bool:
        """Wait until no old worker is left after a reload: every request, response stream and TCP
        session that was in flight through the previous configuration has finished.

        Returns ``True`` when drained, ``False`` on timeout. Reads ``/proc`` inside the container
        (the image may have no ``ps``).
        """
        container = self._running_container()
        deadline = time.monotonic() + timeout
        while True:
            if not any(title.endswith("is shutting down") for title in self._processes(container).values()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def live_routes(self) -> tuple[Route, ...] | None:
        """The routes live now (``()`` before the first apply), or ``None`` without a sidecar."""
        container = self._find()
        if container is None:
            return None
        active = self._read(container, ACTIVE_CONF)
        match = _VERSION_LINE.search(active or "")
        if not match:
            return None
        text = self._read(container, f"{VERSIONS_DIR}/{match.group(1)}/routes.json")
        if text is None:
            return None
        return tuple(
            Route(
                service=r["service"],
                internal_port=r["internal_port"],
                protocol=r["protocol"],
                backends=tuple(Backend(host=b["host"], port=b["port"]) for b in r["backends"]),
                domain=r["domain"],
            )
            for r in json.loads(text)
        )

    def worker_pids(self) -> dict[int, str]:
        """The nginx processes in the container now: pid -> title (``nginx: worker process``, ...)."""
        return self._processes(self._running_container())

    # --- internals: docker ------------------------------------------------------------------

    def _find(self) -> Any | None:
        import docker.errors

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

    def _image_id(self) -> str:
        import docker.errors

        try:
            return self.client.images.get(self.image).id
        except docker.errors.ImageNotFound:
            raise RoutingError(
                f"the nginx image {self.image} is not on this Docker engine; pull or build it, or set [images] nginx"
            ) from None

    def _ensure_network(self) -> Any:
        import docker.errors

        try:
            return self.client.networks.get(self.network_name)
        except docker.errors.NotFound:
            pass
        try:
            return self.client.networks.create(
                self.network_name, driver="bridge", labels={LABEL_PROJECT: self.project, LABEL_ENV: self.env}, check_duplicate=True
            )
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
            raw = self.client.containers.run(
                image_id, ["-c", _STREAM_PROBE], entrypoint=["sh"], remove=True, stdout=True, stderr=True, network_mode="none"
            )
            version = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            found = re.search(r"^pd-stream-module: (\S+)$", version, re.M)
            if "--with-stream=dynamic" in version:
                # Dynamic but not installed (Debian without libnginx-mod-stream): no stream.
                _STREAM_MODULE[image_id] = (True, found.group(1)) if found else (False, None)
            else:
                _STREAM_MODULE[image_id] = (re.search(r"--with-stream(\s|$)", version) is not None, None)
        return _STREAM_MODULE[image_id]

    def _main_config(self, image_id: str) -> str:
        has_stream, module = self._stream_module(image_id)
        return render_main_config(project=self.project, env=self.env, has_stream=has_stream, load_module=module, shutdown_timeout=self.shutdown_timeout)

    def _identity(self, image_id: str) -> str:
        """What the container must have been created from; a change means: recreate.

        Computed without running anything (ensure() stays cheap): the main configuration is a
        function of the image, the shutdown timeout and :data:`MAIN_CONF_VERSION`.
        """
        spec = {"image": image_id, "ports": self._ports(), "shutdown": self.shutdown_timeout, "main": MAIN_CONF_VERSION}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def _create(self, image_id: str, previous: Any | None) -> None:
        """Create and start the sidecar; replace ``previous`` (keeping its routes) if given."""
        import docker.errors

        carried: bytes | None = None
        if previous is not None:
            # Keep the live routes across the recreation: the whole tree moves, the main
            # configuration is then rewritten for the new image.
            try:
                stream, _ = previous.get_archive(PD_ROOT)
                carried = b"".join(stream)
            except docker.errors.APIError:
                carried = None
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
                if carried is None:
                    raise
                # The copied routes do not load in the new image (a module it lacks): start
                # without routes; the apply() that follows ensure() renders them afresh.
                container.remove(force=True)
                container = self._new_container(image_id, self.container_name, None)
                self._start(container)
        except BaseException:
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
            raise

    def _start(self, container: Any) -> None:
        """Start ``container`` and wait for its workers; a refusal (a port taken) is a RoutingError."""
        import docker.errors

        try:
            container.start()
        except docker.errors.APIError as exc:
            reason = exc.explanation or str(exc)
            raise RoutingError(f"cannot start the nginx sidecar {self.container_name}: {reason}") from None
        self._wait_running(container)

    def _new_container(self, image_id: str, name: str, carried: bytes | None) -> Any:
        """A created (not started) sidecar with our main configuration and routes in place."""
        container = self.client.containers.create(
            image_id,
            name=name,
            # nginx is PID 1: SIGHUP (reload) and SIGQUIT (graceful stop) go straight to the master.
            entrypoint=["nginx"],
            command=["-c", MAIN_CONF, "-g", "daemon off;"],
            labels={**self.labels, LABEL_SIDECAR: self._identity(image_id), "io.projectdeployer.image": self.image},
            restart_policy={"Name": "unless-stopped"},
            ports=dict(self._ports()),
            network=self.network_name,
            networking_config={self.network_name: self.client.api.create_endpoint_config(aliases=[NETWORK_ALIAS])},
            # Graceful stop: in-flight requests finish (the official image's STOPSIGNAL too).
            stop_signal="SIGQUIT",
        )
        if carried is not None:
            container.put_archive(str(Path(PD_ROOT).parent), carried)
        files = {"nginx.conf": (self._main_config(image_id), 0o644)}
        if carried is None:
            files["active.conf"] = (render_active(f"{VERSIONS_DIR}/empty", version="empty", stream=False), 0o644)
            files["v/empty/routes.json"] = ("[]\n", 0o644)
        self._put(container, PD_ROOT, files, private_dirs={"certs"}, dirs=("v", "certs", "acme"))
        return container

    def _remove_named(self, name: str) -> None:
        import docker.errors

        try:
            self.client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass

    def _wait_running(self, container: Any, timeout: float = 15.0) -> None:
        """Until the master has started its workers; an exit means the configuration is broken."""
        deadline = time.monotonic() + timeout
        while True:
            container.reload()
            if container.status in ("exited", "dead"):
                logs = container.logs(tail=10).decode(errors="replace").strip()
                raise RoutingError(f"the nginx sidecar {self.container_name} exited: {_nginx_message(logs)}")
            if container.status == "running" and any(t == "nginx: worker process" for t in self._processes(container).values()):
                return
            if time.monotonic() >= deadline:
                raise RoutingError(f"the nginx sidecar {self.container_name} did not start within {timeout:.0f}s (state {container.status})")
            time.sleep(0.1)

    def _exec(self, container: Any, command: list[str]) -> tuple[int, str]:
        result = container.exec_run(command, stdout=True, stderr=True, user="root")
        return result.exit_code, (result.output or b"").decode(errors="replace")

    def _read(self, container: Any, path: str) -> str | None:
        """A file's text through the engine's archive API (no process in the container)."""
        import tarfile

        import docker.errors

        try:
            stream, _ = container.get_archive(path)
        except docker.errors.NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member is not None else None
            return handle.read().decode() if handle is not None else None

    def _put(self, container: Any, where: str, files: Mapping[str, tuple[str, int]], *, private_dirs: Iterable[str] = (), dirs: Iterable[str] = ()) -> None:
        """Write ``files`` (relative path -> (text, mode)) under ``where`` in one archive, owned by root."""
        import tarfile

        private = set(private_dirs)
        buffer = io.BytesIO()
        now = int(time.time())
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            wanted_dirs = set(dirs)
            for name in files:
                parts = name.split("/")[:-1]
                wanted_dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
            root = Path(where).name
            info = tarfile.TarInfo(root)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
            for directory in sorted(wanted_dirs):
                info = tarfile.TarInfo(f"{root}/{directory}")
                info.type = tarfile.DIRTYPE
                info.mode = 0o700 if directory.split("/")[0] in private else 0o755
                info.mtime = now
                tar.addfile(info)
            for name, (text, mode) in sorted(files.items()):
                data = text.encode()
                info = tarfile.TarInfo(f"{root}/{name}")
                info.size, info.mode, info.mtime = len(data), mode, now
                tar.addfile(info, io.BytesIO(data))
        parent = str(Path(where).parent)
        if not container.put_archive(parent, buffer.getvalue()):
            raise RoutingError(f"{self.container_name}: could not write {where}")

    def _processes(self, container: Any) -> dict[int, str]:
        code, output = self._exec(container, ["sh", "-c", _PS_SCRIPT])
        if code != 0:
            raise RoutingError(f"{self.container_name}: cannot list processes: {output.strip()}")
        processes: dict[int, str] = {}
        for line in output.splitlines():
            pid, _, title = line.partition(" ")
            if pid.isdigit():
                processes[int(pid)] = " ".join(title.split())
        return processes

    def _workers(self, container: Any) -> set[int]:
        return {pid for pid, title in self._processes(container).items() if title == "nginx: worker process"}

    def _engine_time(self) -> float:
        """The engine's clock now (logs are filtered by it; the server's clock may differ from ours)."""
        from datetime import datetime

        raw = self.client.info().get("SystemTime", "")
        match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", raw)
        if not match:
            return time.time() - 1
        stamp = datetime.fromisoformat(match.group(1) + (match.group(3) if match.group(3) != "Z" else "+00:00"))
        return stamp.timestamp() + float(match.group(2) or 0) - 0.001

    def _wait_reloaded(self, container: Any, before: set[int], since: float) -> str | None:
        """``None`` once new workers run (none of ``before`` still serving); else what went wrong."""
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while True:
            workers = self._workers(container)
            if workers and not workers & before:
                return None
            logs = container.logs(since=since, stdout=True, stderr=True).decode(errors="replace")
            failures = [line for line in logs.splitlines() if "[emerg]" in line]
            if failures:
                return _nginx_message("\n".join(failures))
            if time.monotonic() >= deadline:
                return f"no new workers within {RELOAD_TIMEOUT:.0f}s"
            time.sleep(0.05)

    def _restore(self, container: Any, live_active: str | None, version: str, *, reload_again: bool) -> None:
        """Put the previous ``active.conf`` back (the master kept running the old configuration)."""
        previous = live_active or render_active(f"{VERSIONS_DIR}/empty", version="empty", stream=False)
        self._put(container, PD_ROOT, {".active-restore.tmp": (previous, 0o644)})
        self._exec(container, ["mv", "-f", f"{PD_ROOT}/.active-restore.tmp", ACTIVE_CONF])
        if reload_again:  # we could not tell whether the reload happened: converge on the old one
            container.kill(signal="SIGHUP")
        self._exec(container, ["rm", "-rf", f"{VERSIONS_DIR}/{version}"])

    def _prune(self, container: Any, *, keep_version: str, keep_certs: Sequence[str]) -> None:
        """Delete versions and certificates the live configuration no longer names.

        Safe while old workers drain: nginx read every file (certificates included) at reload.
        """
        keep = " ".join(keep_certs)
        script = (
            f'for d in {VERSIONS_DIR}/*; do [ "${{d##*/}}" = {keep_version} ] || rm -rf "$d"; done; '
            f'for f in {CERTS_DIR}/*; do case " {keep} " in *" ${{f##*/}} "*) ;; *) rm -f "$f";; esac; done; '
            f"rm -f {PD_ROOT}/.active-*.tmp"
        )
        self._exec(container, ["sh", "-c", script])


def _nginx_message(output: str) -> str:
    """nginx's own error lines, without the timestamps and the ``nginx: `` prefix; one line."""
    lines = []
    for line in output.splitlines():
        line = line.strip()
        if not line or "test failed" in line:
            continue
        line = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", line)
        line = re.sub(r"^nginx: ", "", line)
        line = re.sub(r"^(\[\w+\]) \d+#\d+: ", r"\1 ", line)
        lines.append(line)
    return "; ".join(lines) or "(no message)"


# --- hooks -------------------------------------------------------------------------------------


#: Domain ports published by default (servers: the standard ports; this machine: unprivileged ones).
DEFAULT_DOMAIN_PORTS = {"server": (80, 443), "local": (8080, 8443)}


def _is_loopback(address: str) -> bool:
    import ipaddress

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
        bind_address=bind if local else "0.0.0.0",  # noqa: S104 - domains are public on servers
    )


def _certificates(server: Server, project: Project, env: str, routes: Sequence[Route]) -> dict[str, tuple[str, str]]:
    """A certificate for each domain route, from the ``obtain_certificate`` hook (self-signed last)."""
    domains = sorted({r.domain for r in routes if r.domain is not None})
    if not domains:
        return {}
    from ..plugins import load_plugins, pm

    load_plugins()
    certificates = {}
    for domain in domains:
        pair = pm.hook.obtain_certificate(project=project.name, env=env, domain=domain, servers=[server])
        if pair is not None:
            certificates[domain] = pair
    return certificates


@hookimpl
def configure_routing(server: Server, project: Project, env: str, routes: Sequence[Route]) -> None:
    """Apply ``routes`` on ``server``'s sidecar (created or fixed first); RoutingError on failure."""
    sidecar = sidecar_for(server, project, env)
    sidecar.ensure()
    sidecar.apply(routes, _certificates(server, project, env, routes))


@hookimpl
def live_routes(server: Server, project: Project, env: str) -> Sequence[Route] | None:
    """What ``server``'s sidecar serves now; ``None`` when it has no sidecar."""
    return sidecar_for(server, project, env).live_routes()


@hookimpl
def wait_drained(server: Server, project: Project, env: str, timeout: float) -> bool | None:
    """Wait for the old workers of ``server``'s sidecar; ``None`` when it has no sidecar."""
    sidecar = sidecar_for(server, project, env)
    if not sidecar.exists():
        return None
    return sidecar.wait_drained(timeout)


@hookimpl
def remove_routing(server: Server, project: Project, env: str) -> None:
    """Stop ``env``'s sidecar containers on ``server`` gracefully (in-flight requests finish)
    and remove them: every container labelled as this environment's sidecar, whatever its name,
    so no part of a split sidecar stays behind. Nothing there: nothing to do."""
    import docker.errors

    client = server.docker()
    labels = [f"{LABEL_PROJECT}={project.name}", f"{LABEL_ENV}={env}", f"{LABEL_ROLE}={ROLE}"]
    for container in client.containers.list(all=True, filters={"label": labels}, ignore_removed=True):
        try:
            container.stop(timeout=10)
            container.remove(force=True)
        except docker.errors.NotFound:
            pass  # removed meanwhile: what this hook wanted


__all__ = [
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
