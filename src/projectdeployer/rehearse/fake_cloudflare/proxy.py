"""The data plane: the fake load balancers really forward HTTP.

A request's Host header names a load balancer (its hostname); ``X-Fake-Client-Region`` (and
``-Country``, ``-Pop``, see ``steering.py``) say where the client is. The pools are tried in
steering order, healthy ones only, then the fallback pool; inside a pool, its healthy origins
in weighted random order. When an origin refuses the connection (or does not accept it in
time) the request goes to the next origin, then the next pool, as Cloudflare's zero-downtime
failover does; so does a request without a body whose origin closes the connection before
answering (an origin that stops drops the connections waiting in its accept queue). Otherwise
the answer is the origin's. Bodies stream both ways (a chunked
request stays chunked); every answer closes its connection. Requests go to the origin over the
scheme of the pool's monitor (https without certificate checks, as Cloudflare's "Full" mode),
to the origin's port (else 80/443), with the client's Host unless the origin sets its own.

Errors are Cloudflare's: 521 (every origin refused), 522 (none accepted in time), 520 (an
origin broke off before answering), 530 (no origin to try), 404 (no load balancer serves the
host).
"""

from __future__ import annotations

import http.client
import random
import secrets
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .balancing import LoadBalancing
from .health import HealthChecker, origin_host, origin_port
from .steering import Client, origin_order, pool_order

#: Headers that belong to one connection, never forwarded (RFC 9110 section 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"}
CHUNK = 64 * 1024
#: How often a serving loop looks whether it should stop (seconds): a rehearsal stops promptly.
POLL = 0.1


class DataPlane:
    """The load balancers' HTTP front on ``host:port`` (port 0: any free one).

    :param connect_timeout: how long an origin has to accept a connection before the next is tried.
    :param origin_timeout: how long an origin may stay silent once connected (Cloudflare: 100 s).
    """

    def __init__(self, balancing: LoadBalancing, health: HealthChecker, *, host: str = "127.0.0.1", port: int = 0, connect_timeout: float = 5.0, origin_timeout: float = 100.0) -> None:
        self.balancing = balancing
        self.health = health
        self.connect_timeout = connect_timeout
        self.origin_timeout = origin_timeout
        self.rng = random.Random()
        plane = self

        class _Handler(_ProxyHandler):
            dataplane = plane

        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens: ``(host, port)``."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """``http://host:port``: send requests here with the load balancer's name as Host."""
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL,), name="fake-cloudflare-dataplane", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()

    def candidates(self, host: str, client: Client) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """``(pool, origin)`` pairs to try for a request to ``host``, in order."""
        balancer = self.balancing.balancer_for_host(host)
        if balancer is None:
            return
        order = pool_order(balancer, client, lambda p: self.health.pool_healthy(p) is True, self.rng)
        for pool_id in order:
            with self.balancing.lock:
                pool = self.balancing.pools.get(pool_id)
                pool = dict(pool) if pool is not None and pool["enabled"] else None
            if pool is None:
                continue
            origins = origin_order(pool["origins"], self._origin_health(pool_id), self.rng)
            if not origins and pool_id == balancer["fallback_pool"]:
                origins = origin_order(pool["origins"], self._origin_health(pool_id), self.rng, any_health=True)
            for origin in origins:
                yield pool, dict(origin)

    def _origin_health(self, pool_id: str) -> Callable[[Mapping[str, Any]], bool]:
        return lambda origin: self.health.origin_healthy(pool_id, origin)

    def scheme_of(self, pool: dict[str, Any]) -> str:
        """``https`` for a pool whose monitor checks over https, else ``http``."""
        with self.balancing.lock:
            monitor = self.balancing.monitors.get(pool.get("monitor") or "")
        return "https" if monitor is not None and monitor["type"] == "https" else "http"


class _ProxyHandler(BaseHTTPRequestHandler):
    dataplane: DataPlane
    protocol_version = "HTTP/1.1"
    server_version = "cloudflare"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a rehearsal's load generator counts the answers

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_PATCH(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def do_OPTIONS(self) -> None:
        self._forward()

    def _forward(self) -> None:
        self.close_connection = True  # keep-alive is not offered: one request per connection
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip().lower().removesuffix(".")
        if self.dataplane.balancing.balancer_for_host(host) is None:
            self._fail(404, f"error 1001: no load balancer serves {host or 'this request'} on this fake")
            return
        client = Client.from_headers(dict(self.headers.items()))
        status, why = 530, "error 1016: no origin to send the request to"
        for pool, origin in self.dataplane.candidates(host, client):
            scheme = self.dataplane.scheme_of(pool)
            connection = self._connect(origin, scheme)
            if isinstance(connection, tuple):
                status, why = connection  # refused or slow: the next origin gets the request
                continue
            try:
                if self._relay(connection, origin, host, client):
                    return
            finally:
                connection.close()
            status, why = 520, f"error 520: {origin['address']} closed the connection before answering"
        self._fail(status, why)

    def _connect(self, origin: dict[str, Any], scheme: str) -> http.client.HTTPConnection | tuple[int, str]:
        plane = self.dataplane
        address, port = origin["address"], origin_port(origin, scheme)
        if scheme == "https":
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(address, port, timeout=plane.connect_timeout, context=context)
        else:
            connection = http.client.HTTPConnection(address, port, timeout=plane.connect_timeout)
        try:
            connection.connect()
        except TimeoutError:
            connection.close()
            return 522, f"error 522: {address}:{port} did not accept the connection in time"
        except OSError as exc:
            connection.close()
            return 521, f"error 521: {address}:{port} refused the connection ({exc})"
        assert connection.sock is not None
        connection.sock.settimeout(plane.origin_timeout)
        return connection

    def _relay(self, connection: http.client.HTTPConnection, origin: dict[str, Any], host: str, client: Client) -> bool:
        """Send the request to ``origin`` and its answer back: ``False`` when the origin broke
        off before answering a request without a body (nothing is lost: the next may take it)."""
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        has_body = chunked or int(self.headers.get("Content-Length") or 0) > 0
        try:
            self._send_request(connection, origin, host, client, chunked)
            answer = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            # An origin that stops closes the connections still waiting in its accept queue.
            if not has_body:
                return False
            self._fail(520, f"error 520: the origin broke off before answering ({type(exc).__name__}: {exc})")
            return True
        self.send_response_only(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "server":
                self.send_header(name, value)
        self.send_header("Server", "cloudflare")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            while piece := answer.read1(CHUNK):
                self.wfile.write(piece)
                self.wfile.flush()
        except OSError:
            pass  # either side went away mid-body: the connection closes, as Cloudflare's does
        return True

    def _send_request(self, connection: http.client.HTTPConnection, origin: dict[str, Any], host: str, client: Client, chunked: bool) -> None:
        connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in HOP_BY_HOP and name.lower() not in ("host", "x-forwarded-for"):
                connection.putheader(name, value)
        peer = self.client_address[0]
        forwarded = ", ".join(v for v in (self.headers.get("X-Forwarded-For"), peer) if v)
        connection.putheader("Host", origin_host(origin, self.headers.get("Host") or host))
        connection.putheader("X-Forwarded-For", forwarded)
        connection.putheader("X-Forwarded-Proto", "http")
        connection.putheader("CF-Connecting-IP", peer)
        connection.putheader("CF-Ray", f"{secrets.token_hex(8)}-FAKE")
        if client.country:
            connection.putheader("CF-IPCountry", client.country)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        connection.putheader("Connection", "close")
        connection.endheaders()
        for piece in self._request_body(chunked):
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            connection.send(b"0\r\n\r\n")

    def _request_body(self, chunked: bool) -> Iterator[bytes]:
        if chunked:
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass  # trailers end with an empty line
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            piece = self.rfile.read(min(CHUNK, left))
            if not piece:
                return
            left -= len(piece)
            yield piece

    def _fail(self, status: int, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response_only(status, _REASONS.get(status))
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Server", "cloudflare")
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except OSError:
                pass


_REASONS = {520: "Web Server Returned an Unknown Error", 521: "Web Server Is Down", 522: "Connection Timed Out", 530: "Origin Unreachable"}
