"""The fake DigitalOcean over HTTP(S): DigitalOcean's ``/v2`` paths, bodies, status codes,
pagination (``links``/``meta``), rate-limit headers and error shape, served from a :class:`Cloud`.

Beside ``/v2`` it answers a few rehearsal controls under ``/_fake`` (no token needed): make the
next requests a 429 storm, make the next droplet creates fail, read the request log. See
docs/rehearse.md.
"""

from __future__ import annotations

import json
import math
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from .catalog import region_objects, size_objects
from .cloud import ApiError, Cloud, not_found

#: DigitalOcean's published limits: requests per hour, and per minute.
HOUR_LIMIT = 5000
MINUTE_LIMIT = 250

Handler = Callable[["Request"], tuple[int, Any]]


class Request:
    """One API request as the routes see it."""

    def __init__(self, method: str, path: str, query: dict[str, list[str]], body: Any, groups: tuple[str, ...]) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self.groups = groups

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


class RateLimiter:
    """DigitalOcean's two windows per token, and 429 storms on demand."""

    def __init__(self, hour: int = HOUR_LIMIT, minute: int = MINUTE_LIMIT) -> None:
        self.hour, self.minute = hour, minute
        self._seen: dict[str, deque[float]] = {}
        self._storm = 0
        self._storm_reset = 0.0
        self._lock = threading.Lock()

    def storm(self, requests: int, reset_in: float) -> None:
        """Answer the next ``requests`` requests 429, saying the limit resets in ``reset_in`` s."""
        with self._lock:
            self._storm, self._storm_reset = requests, time.time() + reset_in

    def check(self, token: str) -> tuple[bool, dict[str, str]]:
        """(allowed, the rate-limit headers) for one request of ``token``."""
        now = time.time()
        with self._lock:
            seen = self._seen.setdefault(token, deque())
            while seen and seen[0] <= now - 3600:
                seen.popleft()
            in_minute = sum(1 for t in seen if t > now - 60)
            if self._storm > 0:
                self._storm -= 1
                return False, self._headers(0, self._storm_reset)
            if len(seen) >= self.hour or in_minute >= self.minute:
                oldest = seen[0] if len(seen) >= self.hour else next(t for t in seen if t > now - 60)
                return False, self._headers(max(0, self.hour - len(seen)), oldest + (3600 if len(seen) >= self.hour else 60))
            seen.append(now)
            return True, self._headers(self.hour - len(seen), (seen[0] + 3600) if seen else now + 3600)

    def _headers(self, remaining: int, reset: float) -> dict[str, str]:
        return {"ratelimit-limit": str(self.hour), "ratelimit-remaining": str(remaining), "ratelimit-reset": str(math.ceil(reset))}


class FakeDigitalOcean:
    """A fake DigitalOcean API served on ``host:port`` (port 0: any free one).

    :param cloud: the account's state (default: a new one with record-only droplets).
    :param tokens: the API tokens it accepts (default: any non-empty token).
    :param certificate: ``(cert_file, key_file)`` to serve HTTPS (pydo sends its bearer token
        over HTTPS only, unless told otherwise).

    Use as a context manager, or :meth:`start` / :meth:`stop`; :attr:`url` is its endpoint, the
    value for ``DIGITALOCEAN_API_URL``.
    """

    def __init__(self, cloud: Cloud | None = None, *, host: str = "127.0.0.1", port: int = 0, tokens: set[str] | None = None, certificate: tuple[str, str] | None = None) -> None:
        self.cloud = cloud or Cloud()
        self.tokens = tokens
        self.limits = RateLimiter()
        self.requests: list[tuple[str, str, int]] = []
        fake = self

        class _Handler(_ApiHandler):
            api = fake

        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self.scheme = "http"
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread: threading.Thread | None = None
        self.routes = _routes(self.cloud)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> FakeDigitalOcean:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-digitalocean", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.cloud.wait_idle()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> FakeDigitalOcean:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _ApiHandler(BaseHTTPRequestHandler):
    api: FakeDigitalOcean
    protocol_version = "HTTP/1.1"
    server_version = "fake-digitalocean"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is self.api.requests

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if parts.path.startswith("/_fake/"):
            self._control(method, parts.path, raw)
            return
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if not token or (self.api.tokens is not None and token not in self.api.tokens):
            self._send(401, {"id": "Unauthorized", "message": "Unable to authenticate you"}, {})
            return
        allowed, headers = self.api.limits.check(token)
        if not allowed:
            self._send(429, {"id": "too_many_requests", "message": "API rate limit exceeded."}, headers)
            return
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            self._send(400, {"id": "bad_request", "message": "unparseable JSON body"}, headers)
            return
        query = parse_qs(parts.query)
        for pattern, methods in self.api.routes:
            match = pattern.fullmatch(parts.path.rstrip("/") or "/")
            if match is None:
                continue
            handler = methods.get(method)
            if handler is None:
                self._send(405, {"id": "method_not_allowed", "message": f"{method} is not allowed on {parts.path}"}, headers)
                return
            try:
                status, answer = handler(Request(method, parts.path, query, body, tuple(unquote(g) for g in match.groups())))
            except ApiError as exc:
                status, answer = exc.status, {"id": exc.error_id, "message": exc.message}
            if isinstance(answer, _Page):
                answer = answer.render(self._base(), parts.path, query)
            if method == "POST" and parts.path.rstrip("/") == "/v2/droplets" and status == 202 and self._lose_answer():
                self.api.requests.append((method, parts.path, 0))
                self.close_connection = True  # done, but the client never hears of it
                return
            self._send(status, answer, headers)
            return
        self._send(404, {"id": "not_found", "message": "The resource you were accessing could not be found."}, headers)

    def _lose_answer(self) -> bool:
        with self.api.cloud.lock:
            lose = self.api.cloud.lost_create_answers > 0
            self.api.cloud.lost_create_answers -= 1 if lose else 0
        return lose

    def _base(self) -> str:
        return f"{self.api.scheme}://{self.headers.get('Host') or 'localhost'}"

    def _control(self, method: str, path: str, raw: bytes) -> None:
        body = json.loads(raw) if raw.strip() else {}
        if method == "POST" and path == "/_fake/rate_limit":
            self.api.limits.storm(int(body.get("requests", 10)), float(body.get("reset_in", 1.0)))
            self._send(200, {"storm": int(body.get("requests", 10))}, {})
        elif method == "POST" and path == "/_fake/failures":
            cloud = self.api.cloud
            with cloud.lock:
                cloud.failing_creates = int(body.get("droplet_create", 0))
                cloud.lost_create_answers = int(body.get("droplet_create_answer_lost", 0))
            self._send(200, {"droplet_create": cloud.failing_creates, "droplet_create_answer_lost": cloud.lost_create_answers}, {})
        elif method == "GET" and path == "/_fake/requests":
            self._send(200, {"requests": [{"method": m, "path": p, "status": s} for m, p, s in self.api.requests]}, {})
        else:
            self._send(404, {"id": "not_found", "message": f"no control {method} {path}"}, {})

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        self.api.requests.append((self.command, urlsplit(self.path).path, status))
        data = b"" if status == 204 else json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Page:
    """A list answer, paginated the way DigitalOcean does (``per_page`` default 20, max 200)."""

    def __init__(self, key: str, items: list[Any], query: dict[str, list[str]]) -> None:
        self.key, self.items = key, items
        try:
            self.per_page = max(1, min(200, int(query.get("per_page", ["20"])[0])))
            self.page = max(1, int(query.get("page", ["1"])[0]))
        except ValueError:
            raise ApiError(400, "bad_request", "page and per_page must be integers") from None

    def render(self, base: str, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        total = len(self.items)
        last = max(1, math.ceil(total / self.per_page))
        chunk = self.items[(self.page - 1) * self.per_page : self.page * self.per_page]

        def link(page: int) -> str:
            kept = {k: v[0] for k, v in query.items() if k != "page"}
            return f"{base}{path}?{urlencode({**kept, 'page': page})}"

        pages: dict[str, str] = {}
        if self.page > 1:
            pages.update(first=link(1), prev=link(min(self.page - 1, last)))
        if self.page < last:
            pages.update(next=link(self.page + 1), last=link(last))
        return {self.key: chunk, "links": {"pages": pages}, "meta": {"total": total}}


def _routes(cloud: Cloud) -> list[tuple[re.Pattern[str], dict[str, Handler]]]:
    def droplet_id(r: Request) -> int:
        try:
            return int(r.groups[0])
        except ValueError:
            raise not_found() from None

    def list_droplets(r: Request) -> tuple[int, Any]:
        found = cloud.list_droplets(tag_name=r.arg("tag_name"), name=r.arg("name"))
        return 200, _Page("droplets", [d.as_json() for d in found], r.query)

    def create_droplet(r: Request) -> tuple[int, Any]:
        if "names" in r.body:
            made = [cloud.create_droplet({**r.body, "name": n}) for n in r.body["names"][:10]]
            return 202, {"droplets": [d.as_json() for d, _ in made], "links": {"actions": [_action_link(a.id) for _, a in made]}}
        droplet, action = cloud.create_droplet(r.body)
        return 202, {"droplet": droplet.as_json(), "links": {"actions": [_action_link(action.id)]}}

    def destroy_droplets(r: Request) -> tuple[int, Any]:
        tag = r.arg("tag_name")
        if not tag:
            raise ApiError(400, "bad_request", "tag_name is required to destroy droplets by tag")
        cloud.destroy_by_tag(tag)
        return 204, None

    def destroy_droplet(r: Request) -> tuple[int, Any]:
        cloud.destroy_droplet(droplet_id(r))
        return 204, None

    def droplet_action(r: Request) -> tuple[int, Any]:
        return 201, {"action": cloud.droplet_action(droplet_id(r), r.body).as_json()}

    def droplet_actions(r: Request) -> tuple[int, Any]:
        wanted = droplet_id(r)
        cloud.droplet(wanted)
        return 200, _Page("actions", [a.as_json() for a in cloud.actions.values() if a.resource_id == wanted], r.query)

    def action(r: Request) -> tuple[int, Any]:
        found = cloud.actions.get(int(r.groups[-1])) if r.groups[-1].isdigit() else None
        if found is None:
            raise not_found()
        return 200, {"action": found.as_json()}

    def images(r: Request) -> tuple[int, Any]:
        private, kind = r.arg("private"), r.arg("type")
        snapshots = [cloud.image_json(s) for s in cloud.snapshots.values()]
        if private == "true" or kind == "snapshot" or kind is None:
            return 200, _Page("images", snapshots, r.query)
        return 200, _Page("images", [], r.query)

    def image(r: Request) -> tuple[int, Any]:
        return 200, {"image": cloud.image_json(cloud.snapshot(r.groups[0]))}

    def delete_image(r: Request) -> tuple[int, Any]:
        cloud.delete_snapshot(r.groups[0])
        return 204, None

    def snapshots(r: Request) -> tuple[int, Any]:
        kind = r.arg("resource_type")
        found = [cloud.snapshot_json(s) for s in cloud.snapshots.values()] if kind in (None, "droplet") else []
        return 200, _Page("snapshots", found, r.query)

    def deleted(delete: Callable[[str], None]) -> Handler:
        def handle(r: Request) -> tuple[int, Any]:
            delete(r.groups[0])
            return 204, None

        return handle

    def tag_resources(add: bool) -> Handler:
        def handle(r: Request) -> tuple[int, Any]:
            cloud.tag_resources(r.groups[0], r.body.get("resources"), add=add)
            return 204, None

        return handle

    return [
        (
            re.compile(r"/v2/account"),
            {
                "GET": lambda r: (
                    200,
                    {"account": {"droplet_limit": 25, "floating_ip_limit": 3, "email": "rehearsal@example.com", "uuid": "fake", "email_verified": True, "status": "active", "status_message": ""}},
                )
            },
        ),
        (re.compile(r"/v2/regions"), {"GET": lambda r: (200, _Page("regions", region_objects(), r.query))}),
        (re.compile(r"/v2/sizes"), {"GET": lambda r: (200, _Page("sizes", size_objects(), r.query))}),
        (re.compile(r"/v2/account/keys"), {"GET": lambda r: (200, _Page("ssh_keys", list(cloud.keys.values()), r.query)), "POST": lambda r: (201, {"ssh_key": cloud.add_key(r.body)})}),
        (re.compile(r"/v2/account/keys/([^/]+)"), {"GET": lambda r: (200, {"ssh_key": cloud.key(r.groups[0])}), "DELETE": deleted(cloud.delete_key)}),
        (re.compile(r"/v2/vpcs"), {"GET": lambda r: (200, _Page("vpcs", list(cloud.vpcs.values()), r.query)), "POST": lambda r: (201, {"vpc": cloud.create_vpc(r.body)})}),
        (re.compile(r"/v2/vpcs/([^/]+)"), {"GET": lambda r: (200, {"vpc": cloud.vpc(r.groups[0])}), "DELETE": deleted(cloud.delete_vpc)}),
        (re.compile(r"/v2/firewalls"), {"GET": lambda r: (200, _Page("firewalls", list(cloud.firewalls.values()), r.query)), "POST": lambda r: (202, {"firewall": cloud.put_firewall(r.body)})}),
        (
            re.compile(r"/v2/firewalls/([^/]+)"),
            {
                "GET": lambda r: (200, {"firewall": cloud.firewall(r.groups[0])}),
                "PUT": lambda r: (200, {"firewall": cloud.put_firewall(r.body, r.groups[0])}),
                "DELETE": deleted(cloud.delete_firewall),
            },
        ),
        (re.compile(r"/v2/tags"), {"GET": lambda r: (200, _Page("tags", [cloud.tag(n) for n in list(cloud.tags)], r.query)), "POST": lambda r: (201, {"tag": cloud.create_tag(r.body.get("name"))})}),
        (re.compile(r"/v2/tags/([^/]+)"), {"GET": lambda r: (200, {"tag": cloud.tag(r.groups[0])}), "DELETE": deleted(cloud.delete_tag)}),
        (re.compile(r"/v2/tags/([^/]+)/resources"), {"POST": tag_resources(True), "DELETE": tag_resources(False)}),
        (re.compile(r"/v2/droplets"), {"GET": list_droplets, "POST": create_droplet, "DELETE": destroy_droplets}),
        (re.compile(r"/v2/droplets/([^/]+)"), {"GET": lambda r: (200, {"droplet": cloud.current(cloud.droplet(droplet_id(r))).as_json()}), "DELETE": destroy_droplet}),
        (re.compile(r"/v2/droplets/([^/]+)/actions"), {"GET": droplet_actions, "POST": droplet_action}),
        (re.compile(r"/v2/droplets/([^/]+)/actions/([^/]+)"), {"GET": action}),
        (re.compile(r"/v2/actions"), {"GET": lambda r: (200, _Page("actions", [a.as_json() for a in list(cloud.actions.values())], r.query))}),
        (re.compile(r"/v2/actions/([^/]+)"), {"GET": action}),
        (re.compile(r"/v2/images"), {"GET": images}),
        (re.compile(r"/v2/images/([^/]+)"), {"GET": image, "DELETE": delete_image}),
        # DigitalOcean's description answers an image action unwrapped (not under "action").
        (re.compile(r"/v2/images/([^/]+)/actions"), {"POST": lambda r: (201, cloud.image_action(r.groups[0], r.body).as_json())}),
        (re.compile(r"/v2/images/([^/]+)/actions/([^/]+)"), {"GET": action}),
        (re.compile(r"/v2/snapshots"), {"GET": snapshots}),
        (re.compile(r"/v2/snapshots/([^/]+)"), {"GET": lambda r: (200, {"snapshot": cloud.snapshot_json(cloud.snapshot(r.groups[0]))}), "DELETE": delete_image}),
    ]


def _action_link(action_id: int) -> dict[str, Any]:
    return {"id": action_id, "rel": "create", "href": f"/v2/actions/{action_id}"}


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[str, str]:
    """A certificate and key for ``host`` (files in ``directory``) to serve HTTPS with; the
    certificate is also what a client passes as ``connection_verify``."""
    import datetime as _dt  # noqa: PLC0415 - deferred: only HTTPS needs it
    import ipaddress  # noqa: PLC0415 - deferred: only HTTPS needs it

    from cryptography import x509  # noqa: PLC0415 - deferred: only HTTPS needs it
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415 - deferred: only HTTPS needs it
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - deferred: only HTTPS needs it
    from cryptography.x509.oid import NameOID  # noqa: PLC0415 - deferred: only HTTPS needs it

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-digitalocean")])
    now = _dt.datetime.now(_dt.UTC)
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([alt, x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "fake-digitalocean.crt", directory / "fake-digitalocean.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_file), str(key_file)
