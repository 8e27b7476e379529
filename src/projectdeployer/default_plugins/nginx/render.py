"""The nginx sidecar's configuration, rendered from routes: pure functions, no Docker.

:func:`render_config` turns routes into the files of one configuration version (``http/*.conf``
for the HTTP proxy, ``stream/*.conf`` for the TCP proxy), :func:`render_main_config` writes a
proxy's main ``nginx.conf`` and :func:`render_active` the one file whose rename makes a version
live. The same routes always give the same bytes: versions are compared by their hash.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ...core.routing import SIDECAR_HOST, Backend, Route, RoutingError, check_domain

if TYPE_CHECKING:  # imported on first render (see _templates)
    import jinja2

#: The two proxies of a sidecar: ``http`` (HTTP routes and domains) and ``tcp`` (TCP routes).
Kind = Literal["http", "tcp"]

#: Everything the http proxy owns inside the sidecar container.
PD_ROOT = "/etc/nginx/pd"
MAIN_CONF = f"{PD_ROOT}/nginx.conf"
ACTIVE_CONF = f"{PD_ROOT}/active.conf"
VERSIONS_DIR = f"{PD_ROOT}/v"
CERTS_DIR = f"{PD_ROOT}/certs"
ACME_ROOT = f"{PD_ROOT}/acme"
PID_FILE = "/run/nginx-pd.pid"
#: The container's PID 1: starts both proxies' masters, forwards stop signals, exits with them.
RUN_SCRIPT = f"{PD_ROOT}/run.sh"
#: Everything the tcp proxy owns (its own main configuration, versions and pid file).
TCP_ROOT = "/etc/nginx/pd-tcp"
TCP_PID_FILE = "/run/nginx-pd-tcp.pid"


@attrs.frozen
class ProxyPaths:
    """Where one proxy (one nginx master) of the sidecar keeps its files."""

    kind: Kind
    root: str
    pid_file: str

    @property
    def main_conf(self) -> str:
        return f"{self.root}/nginx.conf"

    @property
    def active_conf(self) -> str:
        return f"{self.root}/active.conf"

    @property
    def versions_dir(self) -> str:
        return f"{self.root}/v"

    @property
    def certs_dir(self) -> str:
        return f"{self.root}/certs"


HTTP_PATHS = ProxyPaths("http", PD_ROOT, PID_FILE)
TCP_PATHS = ProxyPaths("tcp", TCP_ROOT, TCP_PID_FILE)
PATHS: dict[str, ProxyPaths] = {"http": HTTP_PATHS, "tcp": TCP_PATHS}
#: The name apps use for the sidecar on the project network.
NETWORK_ALIAS = SIDECAR_HOST
#: Seconds an old worker may keep a long-lived connection after a reload before nginx closes it;
#: ``None``: until the connection ends. A reload retires the workers, not the backends: a
#: database session or a websocket to a service the reload did not change is as good as before,
#: and closing it would fail whatever the client sends next (the deploy drains the connections to
#: the backends a switch retired itself, see ``wait_drained``).
DEFAULT_SHUTDOWN_TIMEOUT: int | None = None

#: Hash of what the container was created from (image id, ports, main configuration).
LABEL_SIDECAR = "io.projectdeployer.sidecar"
ROLE = "sidecar"

#: Ports the sidecar itself listens on for domains; no internal port may take them.
RESERVED_PORTS = frozenset({80, 443})
#: How long apply() waits for the new workers after SIGHUP.
RELOAD_TIMEOUT = 20.0
#: Bump when the main configuration's template changes: running sidecars are then recreated.
#: 3: HTTP and TCP routes in two nginx masters under one PID 1 (run.sh); no
#: worker_shutdown_timeout by default.
MAIN_CONF_VERSION = 3

# Container names ([a-zA-Z0-9][a-zA-Z0-9_.-]*) and DNS names; nothing nginx would parse as syntax.
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?\Z")
_VERSION_LINE = re.compile(r"^# pd-version (\w+)$", re.M)


# --- rendering (pure) --------------------------------------------------------------------------


def _safe_name(text: str, limit: int = 40) -> str:
    """Letters, digits and ``_`` only: safe in upstream names and file names."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")[:limit]
    return name or "svc"


def _backend_address(route: Route, backend: Backend) -> str:
    """``host:port`` as nginx wants it (IPv6 in brackets); invalid values are a RoutingError."""
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
def _templates() -> jinja2.Environment:
    """The templates' environment, made once: jinja2 compiles a template once per environment."""
    import jinja2  # noqa: PLC0415 - deferred: jinja2 (start-up: ~50 ms), imported on first render

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
        served = check_domain(route.domain) if route.domain is not None else None
        cert = certs.get(served) if served else None
        https = https or cert is not None
        files[f"http/{ctx['name']}-{route.internal_port}.conf"] = env.get_template("nginx-http-route.conf.j2").render(
            **ctx,
            domain=served,
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
    *,
    project: str,
    env: str,
    has_stream: bool,
    load_module: str | None = None,
    shutdown_timeout: int | None = DEFAULT_SHUTDOWN_TIMEOUT,
    kind: Kind = "http",
) -> str:
    """A proxy's main ``nginx.conf``: workers, events, the stream module, ``include active.conf``.

    :param has_stream: whether the image has the stream module (built in, or ``load_module``).
    :param load_module: the path of a dynamic stream module to load (the ``tcp`` proxy), or ``None``.
    :param shutdown_timeout: ``worker_shutdown_timeout`` in seconds; ``None`` leaves it out (old
        workers keep their connections until they end).
    :param kind: which proxy: ``http`` or ``tcp``.
    """
    return (
        _templates()
        .get_template("nginx-main.conf.j2")
        .render(
            project=_safe_name(project, 64),
            env=_safe_name(env, 64),
            kind=kind,
            has_stream=has_stream,
            load_module=load_module if kind == "tcp" else None,
            shutdown_timeout=None if shutdown_timeout is None else f"{int(shutdown_timeout)}s",
            pid=PATHS[kind].pid_file,
            active=PATHS[kind].active_conf,
        )
    )


def render_run_script(*, tcp: bool) -> str:
    """The sidecar container's PID 1 (POSIX ``sh``, which every nginx image has).

    :param tcp: whether to run the tcp proxy's master too (the image has the stream module).
    """
    return _templates().get_template("nginx-run.sh.j2").render(http_conf=HTTP_PATHS.main_conf, tcp_conf=TCP_PATHS.main_conf if tcp else None)


def render_active(version_dir: str, *, version: str, kind: Kind = "http") -> str:
    """``active.conf``: which version is live. One file, so the switch is one rename.

    The ``http`` proxy includes the version's ``http/*.conf``, the ``tcp`` proxy its
    ``stream/*.conf`` (a version without any file there is a valid, empty ``stream {}``).
    """
    context, folder = ("http", "http") if kind == "http" else ("stream", "stream")
    return "\n".join([f"# pd-version {version}", f"{context} {{", f"    include {version_dir}/{folder}/*.conf;", "}"]) + "\n"


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
