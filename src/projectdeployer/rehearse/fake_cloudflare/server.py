"""The fake Cloudflare over HTTP: the v4 API under ``/client/v4`` in Cloudflare's envelope,
token auth, Cloudflare's rate limit, the rehearsal controls under ``/_fake``, and the data plane
(``proxy.py``) and health checks (``health.py``) beside it. :class:`FakeCloudflare` ties them
together; docs/rehearse.md describes what it serves.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .api import Answer, Request, Routes, routes
from .balancing import LoadBalancing
from .challtestsrv import ChallTestSrv
from .dns import Dns, Zone, new_id
from .errors import AUTHENTICATION, MALFORMED_JSON, METHOD_NOT_ALLOWED, NO_ROUTE, RATE_LIMITED, ApiError
from .health import HealthChecker
from .proxy import POLL, DataPlane

PREFIX = "/client/v4"
#: Cloudflare's global API limit: requests per token in a five-minute window.
LIMIT, WINDOW = 1200, 300.0


class RateLimiter:
    """Cloudflare's limit per token, and 429 storms on demand (each with ``Retry-After``)."""

    def __init__(self, limit: int = LIMIT, window: float = WINDOW) -> None:
        self.limit, self.window = limit, window
        self._seen: dict[str, deque[float]] = {}
        self._storm, self._retry_after = 0, 1.0
        self._lock = threading.Lock()

    def storm(self, requests: int, retry_after: float) -> None:
        """Answer the next ``requests`` requests 429, asking to retry after ``retry_after`` s."""
        with self._lock:
            self._storm, self._retry_after = requests, retry_after

    def check(self, token: str) -> float | None:
        """``None`` when the request may go on, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            if self._storm > 0:
                self._storm -= 1
                return self._retry_after
            seen = self._seen.setdefault(token, deque())
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            if len(seen) >= self.limit:
                return seen[0] + self.window - now
            seen.append(now)
            return None


class FakeCloudflare:
    """A fake Cloudflare account: the v4 API on ``host:port`` and its load balancers' data
    plane on ``host:proxy_port`` (0: any free port).

    :param zones: the zones the account has (e.g. ``["example.com"]``).
    :param tokens: the API tokens it accepts (default: any non-empty token).
    :param challtestsrv_url: pebble-challtestsrv's management URL: ``_acme-challenge.`` TXT
        records are handed to it.

    Use as a context manager, or :meth:`start` / :meth:`stop`. :attr:`url` is the value for
    ``CLOUDFLARE_BASE_URL``; :attr:`dataplane_url` takes requests for the load balancers.
    """

    def __init__(
        self,
        zones: list[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        proxy_port: int = 0,
        tokens: set[str] | None = None,
        challtestsrv_url: str | None = None,
        account_name: str = "Rehearsal account",
    ) -> None:
        self.lock = threading.RLock()
        self.account_id = new_id()
        self.dns = Dns(self.account_id, account_name, self.lock, ChallTestSrv(challtestsrv_url) if challtestsrv_url else None)
        self.balancing = LoadBalancing(self.dns, self.lock, lambda pool_id: self.health.pool_healthy(pool_id))
        self.health = HealthChecker(self.balancing)
        self.dataplane = DataPlane(self.balancing, self.health, host=host, port=proxy_port)
        self.tokens = tokens
        self.limits = RateLimiter()
        self.requests: list[dict[str, Any]] = []
        self.routes: Routes = routes(self.dns, self.balancing, self.health)
        for name in zones or []:
            self.add_zone(name)
        fake = self

        class _Handler(_ApiHandler):
            api = fake

        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The API's base URL, ``http://host:port/client/v4`` (``CLOUDFLARE_BASE_URL``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}{PREFIX}"

    @property
    def dataplane_url(self) -> str:
        """Where the load balancers take requests (Host: the load balancer's name)."""
        return self.dataplane.url

    def add_zone(self, name: str) -> Zone:
        """Give the account the zone ``name`` (Cloudflare makes zones on sign-up, not via the API)."""
        return self.dns.add_zone(name)

    def start(self) -> FakeCloudflare:
        """Serve the API, the data plane and the health checks in background threads."""
        self.health.start()
        self.dataplane.start()
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL,), name="fake-cloudflare", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve the API in this thread (the data plane and checks in the background)."""
        self.health.start()
        self.dataplane.start()
        self._server.serve_forever(POLL)

    def stop(self) -> None:
        """Stop everything and close the sockets."""
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()
        self.dataplane.stop()
        self.health.stop()

    def __enter__(self) -> FakeCloudflare:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def envelope(result: Any = None, *, errors: list[dict[str, Any]] | None = None, result_info: dict[str, int] | None = None) -> dict[str, Any]:
    """Cloudflare's v4 answer: ``success``, ``errors``, ``messages``, ``result`` (and ``result_info``)."""
    body: dict[str, Any] = {"success": not errors, "errors": errors or [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return body


class _ApiHandler(BaseHTTPRequestHandler):
    api: FakeCloudflare
    protocol_version = "HTTP/1.1"
    server_version = "fake-cloudflare"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is self.api.requests (GET /_fake/requests)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            if parts.path.startswith("/_fake/"):
                self._send(200, self._control(parts.path, raw))
                return
            answer = self._answer(parts.path, parse_qs(parts.query), raw)
            self._send(200, envelope(answer.result, result_info=answer.result_info))
        except ApiError as exc:
            self._send(exc.status, envelope(errors=[{"code": exc.code, "message": exc.message}]), exc.headers)

    def _answer(self, path: str, query: dict[str, list[str]], raw: bytes) -> Answer:
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if not token or (self.api.tokens is not None and token not in self.api.tokens):
            raise ApiError(401, AUTHENTICATION, "Authentication error")
        wait = self.api.limits.check(token)
        if wait is not None:
            retry_after = {"Retry-After": str(max(1, math.ceil(wait)))}
            raise ApiError(429, RATE_LIMITED, "Rate limited. Please wait and consider throttling your request speed", retry_after)
        if not path.startswith(PREFIX + "/"):
            raise ApiError(404, NO_ROUTE, "No route for that URI")
        body = _json_object(raw)
        route = path.removeprefix(PREFIX).rstrip("/")
        for pattern, methods in self.api.routes:
            match = pattern.fullmatch(route)
            if match is None:
                continue
            handler = methods.get(self.command)
            if handler is None:
                raise ApiError(405, METHOD_NOT_ALLOWED, f"Method {self.command} not allowed for this route")
            return handler(Request(self.command, query, body, tuple(unquote(g) for g in match.groups()), token))
        raise ApiError(404, NO_ROUTE, "No route for that URI")

    def _control(self, path: str, raw: bytes) -> dict[str, Any]:
        body = _json_object(raw)
        api = self.api
        if self.command == "GET" and path == "/_fake/requests":
            return {"requests": list(api.requests)}
        if self.command == "POST" and path == "/_fake/rate_limit":
            requests = int(body.get("requests", 10))
            api.limits.storm(requests, float(body.get("retry_after", 1.0)))
            return {"storm": requests}
        if self.command == "POST" and path == "/_fake/load_balancing":
            api.balancing.enabled = bool(body.get("enabled", True))
            return {"enabled": api.balancing.enabled}
        if self.command == "POST" and path == "/_fake/zones":
            return api.add_zone(str(body.get("name", ""))).as_json()
        raise ApiError(404, NO_ROUTE, f"no control {self.command} {path}")

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(self.path)
        self.api.requests.append({"method": self.command, "path": parts.path, "query": parts.query, "status": status})
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, MALFORMED_JSON, "Malformed JSON in request body")
    return body
