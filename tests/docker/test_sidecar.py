"""The nginx sidecar on the real Docker engine: routes, TLS, and zero-downtime switches.

Backends are small Python servers (pd-test/python) on the project network; clients run in
containers on the same network and reach the sidecar as ``nginx:<internal port>``, as apps do.
Domain routes are reached from the host through the published ports. Every container and
network is removed by the fixtures, whatever the outcome.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import ssl
import tarfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from projectdeployer.core.provider import CommandResult, Server
from projectdeployer.core.routing import Backend, Route
from projectdeployer.default_plugins.nginx.plugin import ACME_ROOT, ACTIVE_CONF, VERSIONS_DIR, NginxSidecar, RoutingError
from projectdeployer.default_plugins.tls_selfsigned import self_signed_certificate
from tests.docker.conftest import wait_for

pytestmark = pytest.mark.docker

ENV = "test"
BACKEND_PORT = 8000

# A backend: JSON {name, path, headers} for any GET; /stream sends n chunks, `every` seconds apart
# (chunked, flushed: a streaming response). HTTP/1.1, so the sidecar keeps connections to it alive.
BACKEND = r"""
import json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

NAME = os.environ["NAME"]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/stream":
            n, every = int(query["n"][0]), float(query["every"][0])
            print(f"stream-start {NAME}", flush=True)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(n):
                chunk = f"{NAME}{i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                if i < n - 1:
                    time.sleep(every)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        body = json.dumps({"name": NAME, "path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("0.0.0.0", 8000), Handler)
print("ready", flush=True)
server.serve_forever()
"""

# Load through the sidecar until /tmp/stop exists: threads that open a fresh connection per
# request and threads that each keep one connection alive (argv: port, fresh, keep-alive).
# Prints its counts as JSON lines.
#
# The keep-alive client does what HTTP/1.1 clients do (RFC 9112, 9.3.1; browsers, Go, urllib3):
# when a *reused* connection turns out to be closed before any byte of the response arrived,
# the request was not processed and is sent again on a new connection. A graceful nginx reload
# closes idle keep-alive connections of the old workers, so this happens; those retries are
# counted apart, and every request is still answered.
HAMMER = r"""
import http.client, json, os, sys, threading, time

PORT = int(sys.argv[1])
STOP = "/tmp/stop"
counts = {"fresh": {}, "keepalive": {}}
failures = []
retries = [0]
lock = threading.Lock()

def record(kind, body):
    name = json.loads(body)["name"]
    with lock:
        counts[kind][name] = counts[kind].get(name, 0) + 1

def fresh():
    while not os.path.exists(STOP):
        conn = http.client.HTTPConnection("nginx", PORT, timeout=10)
        try:
            conn.request("GET", "/fresh")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200:
                record("fresh", body)
            else:
                failures.append(f"fresh: HTTP {resp.status} {body[:200]!r}")
        except Exception as exc:
            failures.append(f"fresh: {type(exc).__name__}: {exc}")
        finally:
            conn.close()

def keepalive():
    conn = None
    while not os.path.exists(STOP):
        reused = conn is not None
        if conn is None:
            conn = http.client.HTTPConnection("nginx", PORT, timeout=10)
        try:
            conn.request("GET", "/keepalive")
            resp = conn.getresponse()
            body = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            conn.close()
            conn = None
            if reused:
                retries[0] += 1
            else:
                failures.append(f"keepalive (new connection): {type(exc).__name__}: {exc}")
            continue
        except Exception as exc:
            failures.append(f"keepalive: {type(exc).__name__}: {exc}")
            conn.close()
            conn = None
            continue
        if resp.status == 200:
            record("keepalive", body)
        else:
            failures.append(f"keepalive: HTTP {resp.status} {body[:200]!r}")
        if resp.will_close:
            conn.close()
            conn = None

threads = [threading.Thread(target=fresh) for _ in range(int(sys.argv[2]))]
threads += [threading.Thread(target=keepalive) for _ in range(int(sys.argv[3]))]
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    with lock:
        print(json.dumps({"counts": counts, "failures": len(failures), "retries": retries[0]}), flush=True)
    time.sleep(0.2)
print("FINAL " + json.dumps({"counts": counts, "failures": failures, "retries": retries[0]}), flush=True)
"""

# One streaming request through the sidecar: when its first and last bytes arrived (this
# container's clock is the host's: one kernel).
STREAM_CLIENT = r"""
import http.client, json, sys, time
conn = http.client.HTTPConnection("nginx", int(sys.argv[1]), timeout=60)
start = time.time()
conn.request("GET", "/stream?n=7&every=0.5")
resp = conn.getresponse()
first = resp.readline()
t_first = time.time()
rest = resp.read()
t_done = time.time()
print(json.dumps({"status": resp.status, "body": (first + rest).decode(), "start": start, "first": t_first, "done": t_done}))
"""

FETCH = r"""
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as resp:
    print(json.dumps({"status": resp.status, "body": resp.read().decode()}))
"""

PING = r"""
import socket, sys
with socket.create_connection(("nginx", int(sys.argv[1])), timeout=10) as s:
    s.sendall(b"PING\r\n")
    print(s.recv(64).decode().strip())
"""

# One long TCP session (a pooled database connection): PING every 0.2 s for `seconds` on the
# same connection; JSON {ok, error} at the end. Any cut, reset or wrong answer is the error.
SESSION = r"""
import json, socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
ok, error = 0, None
s = socket.create_connection(("nginx", port), timeout=5)
end = time.time() + seconds
try:
    while time.time() < end:
        s.sendall(b"PING\r\n")
        data = s.recv(64)
        if data != b"+PONG\r\n":
            error = "answer %r after %d pings" % (data, ok)
            break
        ok += 1
        time.sleep(0.2)
except Exception as exc:
    error = "%r after %d pings" % (exc, ok)
print(json.dumps({"ok": ok, "error": error}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Bed:
    """One project's sidecar, its network and the containers a test starts on it."""

    def __init__(self, client: Any, images: dict[str, str]) -> None:
        self.client = client
        self.images = images
        self.project = f"pdt{uuid.uuid4().hex[:8]}"
        self.http_port = _free_port()
        self.https_port = _free_port()
        self.started: list[Any] = []
        self.sidecar = self.make_sidecar()

    def make_sidecar(self, **overrides: Any) -> NginxSidecar:
        settings: dict[str, Any] = {"http_port": self.http_port, "https_port": self.https_port, **overrides}
        return NginxSidecar(self.client, project=self.project, env=ENV, image=self.images["nginx"], **settings)

    def run(self, image: str, name: str, command: list[str], **kwargs: Any) -> Any:
        container = self.client.containers.run(
            image,
            command,
            name=f"{self.project}_{ENV}_{name}",
            network=self.sidecar.network_name,
            detach=True,
            labels={"io.projectdeployer.project": self.project, "pd-test": "sidecar"},
            **kwargs,
        )
        self.started.append(container)
        return container

    def backend(self, name: str) -> Backend:
        """A backend container answering with ``name``; returns its address on the network."""
        container = self.run(self.images["python"], name, ["python", "-u", "-c", BACKEND], environment={"NAME": name})
        wait_for(lambda: b"ready" in container.logs(), timeout=30, what=f"backend {name}")
        return Backend(host=container.name, port=BACKEND_PORT)

    def client_container(self) -> Any:
        return self.run(self.images["python"], f"client{len(self.started)}", ["python", "-c", "import time; time.sleep(3600)"])

    def exec_python(self, container: Any, script: str, *args: str) -> str:
        result = container.exec_run(["python", "-c", script, *args])
        assert result.exit_code == 0, result.output.decode(errors="replace")
        return result.output.decode()

    def fetch(self, container: Any, port: int, path: str = "/") -> dict[str, Any]:
        """GET http://nginx:<port><path> from ``container``: {status, body (parsed JSON)}."""
        out = json.loads(self.exec_python(container, FETCH, f"http://nginx:{port}{path}"))
        out["body"] = json.loads(out["body"])
        return out

    def cleanup(self) -> None:
        for container in self.started:
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        for container in self.client.containers.list(all=True, filters={"label": f"io.projectdeployer.project={self.project}"}):
            container.remove(force=True)
        self.sidecar.remove()
        for network in self.client.networks.list(names=[self.sidecar.network_name]):
            if network.name == self.sidecar.network_name:
                network.remove()


@pytest.fixture
def bed_sidecar(docker_client: Any, bed: dict[str, str]) -> Iterator[Bed]:
    """A fresh project with its sidecar ensured; everything removed afterwards."""
    setup = Bed(docker_client, bed)
    try:
        setup.sidecar.ensure()
        yield setup
    finally:
        setup.cleanup()


def http_route(backend: Backend, port: int = 5100, domain: str | None = None, service: str = "api") -> Route:
    return Route(service=service, internal_port=port, protocol="http", backends=(backend,), domain=domain)


def host_get(port: int, host: str, path: str = "/") -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def https_get(port: int, server_name: str, path: str = "/") -> tuple[int, bytes, bytes]:
    """GET over TLS to 127.0.0.1:``port`` with SNI ``server_name`` (no verification):
    (status, body, the server certificate in DER)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True) or b""
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
        response.begin()
        return response.status, response.read(), der


# --- routes ----------------------------------------------------------------------------------


def test_http_route_reaches_the_backend_from_the_network(bed_sidecar: Bed) -> None:
    a = bed_sidecar.backend("A")
    assert bed_sidecar.sidecar.apply([http_route(a)]) is True
    client = bed_sidecar.client_container()
    answer = bed_sidecar.fetch(client, 5100, "/hello?x=1")
    assert answer["status"] == 200
    assert answer["body"]["name"] == "A" and answer["body"]["path"] == "/hello?x=1"
    headers = {k.lower(): v for k, v in answer["body"]["headers"].items()}
    assert headers["host"] == "nginx:5100"  # the client's Host, port included
    assert headers["x-forwarded-for"] == headers["x-real-ip"]  # the client container's address
    assert headers["x-forwarded-proto"] == "http"
    assert "connection" not in headers or headers["connection"].lower() != "close"  # kept alive upstream
    assert bed_sidecar.sidecar.live_routes() == (http_route(a),)


def test_tcp_route_proxies_to_redis(bed_sidecar: Bed) -> None:
    redis = bed_sidecar.run(bed_sidecar.images["redis"], "redis", [])
    wait_for(lambda: b"Ready to accept connections" in redis.logs(), timeout=30, what="redis")
    route = Route(service="cache", internal_port=5200, protocol="tcp", backends=(Backend(host=redis.name, port=6379),))
    assert bed_sidecar.sidecar.apply([route]) is True
    client = bed_sidecar.client_container()
    assert bed_sidecar.exec_python(client, PING, "5200").strip() == "+PONG"


def test_domain_route_from_the_host_over_http_and_https(bed_sidecar: Bed) -> None:
    a = bed_sidecar.backend("A")
    cert, key = self_signed_certificate(bed_sidecar.project, ENV, "api.localhost")
    assert bed_sidecar.sidecar.apply([http_route(a, domain="api.localhost")], {"api.localhost": (cert, key), "unused.localhost": (cert, key)})

    status, body = host_get(bed_sidecar.http_port, "api.localhost", "/via-http")
    assert status == 200 and json.loads(body)["path"] == "/via-http"
    status, body = host_get(bed_sidecar.http_port, "unknown.localhost")
    assert status == 404

    status, body, der = https_get(bed_sidecar.https_port, "api.localhost", "/via-https")
    assert status == 200 and json.loads(body)["headers"]["X-Forwarded-Proto"] == "https"
    assert der == ssl.PEM_cert_to_DER_cert(cert)  # the certificate we gave it
    with pytest.raises(ssl.SSLError):  # an unknown name gets no certificate at all
        https_get(bed_sidecar.https_port, "unknown.localhost")

    # The certificate files inside the sidecar are private; only the used domain's are written.
    sidecar = bed_sidecar.client.containers.get(bed_sidecar.sidecar.container_name)
    listing = sidecar.exec_run(["sh", "-c", "stat -c '%a %U %n' /etc/nginx/pd/certs /etc/nginx/pd/certs/*"]).output.decode().split("\n")
    assert listing[0].startswith("700 root ")
    files = [line for line in listing[1:] if line]
    assert len(files) == 2 and all(line.startswith("600 root /etc/nginx/pd/certs/api.localhost-") for line in files)

    # HTTP-01 challenges come from the sidecar's webroot; the rest of that path from the app.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"token-123.thumbprint"
        info = tarfile.TarInfo("acme-challenge/token-123")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    sidecar.exec_run(["mkdir", "-p", f"{ACME_ROOT}/.well-known"])
    assert sidecar.put_archive(f"{ACME_ROOT}/.well-known", buffer.getvalue())
    assert host_get(bed_sidecar.http_port, "api.localhost", "/.well-known/acme-challenge/token-123") == (200, b"token-123.thumbprint")
    status, body = host_get(bed_sidecar.http_port, "api.localhost", "/.well-known/acme-challenge/other")
    assert status == 200 and json.loads(body)["name"] == "A"


# --- zero downtime -----------------------------------------------------------------------------


def _hammer_state(hammer: Any) -> dict[str, Any]:
    lines = [line for line in hammer.logs().decode().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"counts": {"fresh": {}, "keepalive": {}}, "failures": 0, "retries": 0}


def test_switching_backends_under_load_loses_no_request(bed_sidecar: Bed) -> None:
    a, b = bed_sidecar.backend("A"), bed_sidecar.backend("B")
    sidecar = bed_sidecar.sidecar
    assert sidecar.apply([http_route(a)])
    switches = ((b, "B"), (a, "A"), (b, "B"), (a, "A"))
    hammer = bed_sidecar.run(bed_sidecar.images["python"], "hammer", ["python", "-u", "-c", HAMMER, "5100", "3", "2"])
    try:

        def served(name: str, at_least: int) -> Callable[[], bool]:
            def check() -> bool:
                counts = _hammer_state(hammer)["counts"]
                return all(counts[kind].get(name, 0) >= at_least for kind in ("fresh", "keepalive"))

            return check

        wait_for(served("A", 30), timeout=30, what="load on A")
        for target, name in switches:
            baseline = {kind: _hammer_state(hammer)["counts"][kind].get(name, 0) for kind in ("fresh", "keepalive")}
            assert sidecar.apply([http_route(target)]) is True
            wait_for(served(name, max(baseline.values()) + 30), timeout=30, what=f"load on {name}")
            assert sidecar.wait_drained(timeout=30) is True
    finally:
        hammer.exec_run(["touch", "/tmp/stop"])
        hammer.wait(timeout=60)
    final_lines = [line for line in hammer.logs().decode().splitlines() if line.startswith("FINAL ")]
    assert final_lines, hammer.logs().decode()[-2000:]
    final = json.loads(final_lines[-1][len("FINAL ") :])
    total = sum(n for kind in final["counts"].values() for n in kind.values())
    print(f"\nunder load: {total} requests answered, {final['retries']} keep-alive retries, counts {final['counts']}")
    assert final["failures"] == [], final["failures"][:10]
    assert total > 200
    # At most one retry per keep-alive connection per reload: the old worker closing it once.
    assert final["retries"] <= 2 * len(switches)


def test_streaming_response_in_flight_finishes_before_wait_drained_returns(bed_sidecar: Bed, docker_client: Any) -> None:
    a, b = bed_sidecar.backend("A"), bed_sidecar.backend("B")
    sidecar = bed_sidecar.sidecar
    assert sidecar.apply([http_route(a)])
    client = bed_sidecar.client_container()
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(json.loads(bed_sidecar.exec_python(client, STREAM_CLIENT, "5100"))))
    thread.start()
    try:
        backend_a = docker_client.containers.get(a.host)
        wait_for(lambda: b"stream-start A" in backend_a.logs(), timeout=15, what="the stream to start")
        assert sidecar.apply([http_route(b)]) is True
        t_applied = time.time()
        # The stream from A goes on through the old worker, while new requests go to B at once.
        assert any(title.endswith("is shutting down") for title in sidecar.worker_pids().values())
        assert bed_sidecar.fetch(bed_sidecar.client_container(), 5100)["body"]["name"] == "B"
        drained = sidecar.wait_drained(timeout=30)
        t_drained = time.time()
    finally:
        thread.join(timeout=60)
    assert drained is True
    assert result["status"] == 200
    assert result["body"].split() == [f"A{i}" for i in range(7)]  # complete, all from the old backend
    assert result["first"] - result["start"] < 1.0  # streamed through, not buffered to the end
    assert result["done"] <= t_drained  # wait_drained returned only after the stream ended ...
    assert t_drained - t_applied > 1.0  # ... and so really waited for it


# --- TCP routes live apart: a web deploy never touches a database session -------------------


def _redis(bed: Bed, name: str = "redis") -> Backend:
    redis = bed.run(bed.images["redis"], name, [])
    wait_for(lambda: b"Ready to accept connections" in redis.logs(), timeout=30, what="redis")
    return Backend(host=redis.name, port=6379)


def _tcp_route(backend: Backend, port: int = 5200, service: str = "cache") -> Route:
    return Route(service=service, internal_port=port, protocol="tcp", backends=(backend,))


class _Session:
    """SESSION running in a client container, on its own thread."""

    def __init__(self, bed: Bed, port: int, seconds: float) -> None:
        self.result: dict[str, Any] = {}
        client = bed.client_container()
        self.thread = threading.Thread(target=lambda: self.result.update(json.loads(bed.exec_python(client, SESSION, str(port), str(seconds)))))
        self.thread.start()

    def join(self) -> dict[str, Any]:
        self.thread.join(timeout=120)
        return self.result


def _connected(sidecar: NginxSidecar, backend: Backend) -> int:
    from projectdeployer.default_plugins.nginx.netconns import in_flight_to

    text = sidecar.http.exec(sidecar._running_container(), ["cat", "/proc/net/tcp", "/proc/net/tcp6"])[1]
    return in_flight_to(text, sidecar._addresses([backend]))


def test_web_switches_never_reload_the_tcp_proxy_nor_cut_its_sessions(bed_sidecar: Bed, docker_client: Any) -> None:
    """The pooled-connection failure: with one nginx, a session opened before a web switch rode
    an old worker and was cut at worker_shutdown_timeout. The TCP proxy is not reloaded by web
    switches, so a session outlives the (short, here) shutdown timeout by far; and the drain of
    the web switch waits for the web backend only, not for the open session."""
    sidecar = bed_sidecar.sidecar = bed_sidecar.make_sidecar(shutdown_timeout=2)
    sidecar.ensure()
    a, b, cache = bed_sidecar.backend("A"), bed_sidecar.backend("B"), _redis(bed_sidecar)
    assert sidecar.apply([http_route(a), _tcp_route(cache)])
    tcp_pids = sidecar.worker_pids("tcp")
    assert len(tcp_pids) >= 2 and not set(tcp_pids) & set(sidecar.worker_pids())  # two masters
    session = _Session(bed_sidecar, 5200, seconds=8)
    wait_for(lambda: _connected(sidecar, cache) > 0, timeout=15, what="the session to open")
    for target in (b, a):
        http_pids = sidecar.worker_pids()
        assert sidecar.apply([http_route(target), _tcp_route(cache)]) is True
        assert sidecar.worker_pids() != http_pids  # the http proxy reloaded ...
        assert sidecar.worker_pids("tcp") == tcp_pids  # ... the tcp proxy did not
        started = time.monotonic()
        retired = b if target is a else a
        assert sidecar.wait_drained(timeout=10, backends=[retired]) is True
        assert time.monotonic() - started < 2.0  # the open session is nobody's business here
    result = session.join()
    assert result["error"] is None, result
    assert result["ok"] >= 25  # ~8 s of pings on one connection, well past the 2 s timeout
    assert bed_sidecar.fetch(bed_sidecar.client_container(), 5100)["body"]["name"] == "A"


def test_a_tcp_route_change_keeps_the_sessions_of_the_other_routes(bed_sidecar: Bed) -> None:
    """Adding a database reloads the tcp proxy: the session to the first one stays on its old
    worker (no shutdown timeout by default) until it ends; the drain of a retired backend waits
    for exactly its sessions."""
    sidecar = bed_sidecar.sidecar
    cache, other = _redis(bed_sidecar), _redis(bed_sidecar, "redis2")
    assert sidecar.apply([_tcp_route(cache)])
    session = _Session(bed_sidecar, 5200, seconds=6)
    wait_for(lambda: _connected(sidecar, cache) > 0, timeout=15, what="the session to open")
    assert sidecar.apply([_tcp_route(cache), _tcp_route(other, 5201, "queue")]) is True
    assert any(title.endswith("is shutting down") for title in sidecar.worker_pids("tcp").values())
    # The session is in flight to `cache`: a drain of it times out, one of `other` does not wait.
    assert sidecar.wait_drained(timeout=1, backends=[cache]) is False
    assert sidecar.wait_drained(timeout=1, backends=[other]) is True
    result = session.join()
    assert result["error"] is None and result["ok"] >= 20, result
    assert sidecar.wait_drained(timeout=10, backends=[cache]) is True  # ended: nothing in flight
    assert bed_sidecar.exec_python(bed_sidecar.client_container(), PING, "5201").strip() == "+PONG"


def test_both_proxies_live_and_die_together(bed_sidecar: Bed, docker_client: Any) -> None:
    """One container, one lifecycle: a master that dies takes the container down and its
    restart policy brings both back with their routes; a recreation (new ports) keeps both
    proxies' routes; a graceful stop stops both."""
    sidecar = bed_sidecar.sidecar
    cache, a = _redis(bed_sidecar), bed_sidecar.backend("A")
    assert sidecar.apply([http_route(a), _tcp_route(cache)])
    client = bed_sidecar.client_container()
    container = docker_client.containers.get(sidecar.container_name)
    restarts = container.attrs["RestartCount"]
    tcp_master = min(pid for pid, title in sidecar.worker_pids("tcp").items() if title.startswith("nginx: master"))
    assert container.exec_run(["sh", "-c", f"kill -KILL {tcp_master}"], user="root").exit_code == 0

    def back() -> bool:
        container.reload()
        return container.attrs["RestartCount"] > restarts and container.status == "running" and len(sidecar.worker_pids("tcp")) >= 2

    wait_for(back, timeout=30, what="the sidecar restarted by its restart policy")
    assert bed_sidecar.exec_python(client, PING, "5200").strip() == "+PONG"
    assert bed_sidecar.fetch(client, 5100)["body"]["name"] == "A"
    # Recreated (new ports): both proxies' routes are carried into the new container.
    bed_sidecar.sidecar = replaced = bed_sidecar.make_sidecar(http_port=_free_port())
    replaced.ensure()
    assert docker_client.containers.get(replaced.container_name).id != container.id
    assert replaced.live_routes() == (http_route(a), _tcp_route(cache))
    assert replaced.apply([http_route(a), _tcp_route(cache)]) is False
    assert bed_sidecar.exec_python(client, PING, "5200").strip() == "+PONG"
    # A graceful stop (SIGQUIT to PID 1) ends both masters: the container exits by itself.
    recreated = docker_client.containers.get(replaced.container_name)
    recreated.stop(timeout=20)
    recreated.reload()
    assert recreated.status == "exited" and recreated.attrs["State"]["ExitCode"] == 0


# --- failures keep the old routes ------------------------------------------------------------


def test_a_broken_route_is_refused_and_the_old_routes_keep_serving(bed_sidecar: Bed) -> None:
    a = bed_sidecar.backend("A")
    sidecar = bed_sidecar.sidecar
    assert sidecar.apply([http_route(a)])
    client = bed_sidecar.client_container()
    pids = sidecar.worker_pids()

    broken = http_route(Backend(host="pd-no-such-backend", port=8000))
    with pytest.raises(RoutingError, match='host not found in upstream "pd-no-such-backend:8000"') as excinfo:
        sidecar.apply([broken])
    assert len(str(excinfo.value).splitlines()) == 1
    with pytest.raises(RoutingError, match="invalid domain 'bad;domain'"):
        sidecar.apply([http_route(a, domain="bad;domain")])
    with pytest.raises(RoutingError, match=r"nginx rejected the new routes: .*certificate"):
        sidecar.apply([http_route(a, domain="api.localhost")], {"api.localhost": ("not a certificate", "not a key")})

    assert sidecar.worker_pids() == pids  # never reloaded
    assert sidecar.live_routes() == (http_route(a),)
    assert bed_sidecar.fetch(client, 5100)["body"]["name"] == "A"
    container = bed_sidecar.client.containers.get(sidecar.container_name)
    versions = container.exec_run(["ls", VERSIONS_DIR]).output.decode().split()
    assert len(versions) == 1  # rejected versions are not left behind


def test_a_reload_that_fails_after_nginx_t_restores_the_old_routes(bed_sidecar: Bed, docker_client: Any) -> None:
    """The backend disappears between ``nginx -t`` and the reload: the master refuses the new
    configuration, the previous ``active.conf`` is put back and the error names the cause."""
    a, b = bed_sidecar.backend("A"), bed_sidecar.backend("B")
    sidecar = bed_sidecar.sidecar
    assert sidecar.apply([http_route(a)])
    client = bed_sidecar.client_container()
    container = docker_client.containers.get(sidecar.container_name)
    active_before = container.exec_run(["cat", ACTIVE_CONF]).output
    pids = sidecar.worker_pids()

    real_exec = sidecar.http.exec

    def exec_then_remove_b(target: Any, command: list[str]) -> tuple[int, str]:
        result = real_exec(target, command)
        if command[:2] == ["nginx", "-t"] and result[0] == 0:
            docker_client.containers.get(b.host).remove(force=True)
        return result

    sidecar.http.exec = exec_then_remove_b  # type: ignore[method-assign]
    with pytest.raises(RoutingError, match=r"reload failed, the previous routes stay live: .*host not found in upstream"):
        sidecar.apply([http_route(b)])
    sidecar.http.exec = real_exec  # type: ignore[method-assign]

    assert container.exec_run(["cat", ACTIVE_CONF]).output == active_before
    assert sidecar.live_routes() == (http_route(a),)
    assert sidecar.worker_pids() == pids
    assert bed_sidecar.fetch(client, 5100)["body"]["name"] == "A"


# --- idempotence -------------------------------------------------------------------------------


def test_apply_with_unchanged_routes_does_not_reload(bed_sidecar: Bed) -> None:
    a = bed_sidecar.backend("A")
    sidecar = bed_sidecar.sidecar
    routes = [http_route(a, domain="api.localhost")]
    cert = self_signed_certificate(bed_sidecar.project, ENV, "api.localhost")
    assert sidecar.apply(routes, {"api.localhost": cert}) is True
    pids = sidecar.worker_pids()
    # Another NginxSidecar object (another process, say) sees the same live configuration.
    assert bed_sidecar.make_sidecar().apply(list(reversed(routes)), {"api.localhost": cert}) is False
    assert sidecar.worker_pids() == pids
    # A renewed certificate is a change.
    renewed = self_signed_certificate(bed_sidecar.project, ENV, "other.localhost")
    assert sidecar.apply(routes, {"api.localhost": renewed}) is True
    assert sidecar.worker_pids() != pids


def test_ensure_is_idempotent_and_recreates_on_new_ports_keeping_routes(bed_sidecar: Bed, docker_client: Any) -> None:
    sidecar = bed_sidecar.sidecar
    container = docker_client.containers.get(sidecar.container_name)
    started = time.monotonic()
    sidecar.ensure()
    assert time.monotonic() - started < 2.0  # cheap when already right
    again = docker_client.containers.get(sidecar.container_name)
    assert again.id == container.id
    assert again.labels["io.projectdeployer.role"] == "sidecar" and again.labels["io.projectdeployer.project"] == bed_sidecar.project
    assert again.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    endpoint = again.attrs["NetworkSettings"]["Networks"][sidecar.network_name]
    assert "nginx" in endpoint["Aliases"]
    bindings = again.attrs["HostConfig"]["PortBindings"]
    assert bindings["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(bed_sidecar.http_port)}]
    assert bindings["443/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(bed_sidecar.https_port)}]

    a = bed_sidecar.backend("A")
    assert sidecar.apply([http_route(a, domain="api.localhost")])
    moved = _free_port()
    bed_sidecar.sidecar = replaced = bed_sidecar.make_sidecar(http_port=moved)
    replaced.ensure()
    recreated = docker_client.containers.get(replaced.container_name)
    assert recreated.id != container.id
    assert replaced.live_routes() == (http_route(a, domain="api.localhost"),)
    assert host_get(moved, "api.localhost")[0] == 200
    assert replaced.apply([http_route(a, domain="api.localhost")]) is False  # the same routes are live


def test_a_taken_domain_port_is_one_clear_error(bed_sidecar: Bed, docker_client: Any) -> None:
    other = NginxSidecar(docker_client, project=f"pdt{uuid.uuid4().hex[:8]}", env=ENV, image=bed_sidecar.images["nginx"], http_port=bed_sidecar.http_port)
    try:
        with pytest.raises(RoutingError, match=rf"cannot start the nginx sidecar {other.container_name}: .*{bed_sidecar.http_port}"):
            other.ensure()
        assert not other.exists()
    finally:
        other.remove()


def test_an_image_without_the_stream_module_serves_http_and_refuses_tcp(docker_client: Any, bed: dict[str, str]) -> None:
    """Debian's nginx without libnginx-mod-stream: detected, no load_module, tcp routes refused."""
    tag = f"pd-test-tmp/nginx-nostream:{uuid.uuid4().hex[:8]}"
    dockerfile = f"FROM {bed['nginx']}\nRUN rm /usr/lib/nginx/modules/ngx_stream_module.so /etc/nginx/modules-enabled/50-mod-stream.conf\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, pull=False)
    setup = Bed(docker_client, {**bed, "nginx": tag})
    try:
        setup.sidecar.ensure()
        a = setup.backend("A")
        assert setup.sidecar.apply([http_route(a)])
        with pytest.raises(RoutingError, match="has no nginx stream module"):
            setup.sidecar.apply([http_route(a), Route(service="db", internal_port=5200, protocol="tcp", backends=(a,))])
        assert setup.fetch(setup.client_container(), 5100)["body"]["name"] == "A"
    finally:
        setup.cleanup()
        docker_client.images.remove(tag, force=True)


def test_a_missing_image_is_one_clear_error(docker_client: Any) -> None:
    sidecar = NginxSidecar(docker_client, project=f"pdt{uuid.uuid4().hex[:8]}", env=ENV, image="pd-test/no-such-nginx:0")
    try:
        with pytest.raises(RoutingError, match=r"the nginx image pd-test/no-such-nginx:0 is not on this Docker engine"):
            sidecar.ensure()
        assert not sidecar.exists()
        with pytest.raises(RoutingError, match="is missing: run ensure"):
            sidecar.apply([])
    finally:
        sidecar.remove()


# --- the hooks ---------------------------------------------------------------------------------


class EngineServer(Server):
    """This machine's engine as a server."""

    name = "local"
    zone = "local"
    private_address = public_address = "127.0.0.1"

    def __init__(self, client: Any) -> None:
        self.client = client
        self.tags: dict[str, str] = {}

    def run(self, command, *, timeout=None):  # type: ignore[no-untyped-def]
        return CommandResult(exit_code=1, stdout="", stderr="not used")

    def docker(self) -> Any:
        return self.client

    def put_file(self, remote_path, data, *, mode=0o644):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def get_file(self, remote_path):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def test_configure_routing_hook_drives_the_sidecar(bed_sidecar: Bed, docker_client: Any) -> None:
    from projectdeployer.core.registry import build_registry
    from projectdeployer.core.routing import domain_certificates
    from projectdeployer.plugins import load_plugins, make_plugin_manager
    from projectdeployer.project.file import build_project

    manager = load_plugins(make_plugin_manager(), env={})
    project = build_project(
        {"project": {"name": bed_sidecar.project}, "images": {"nginx": bed_sidecar.images["nginx"]}, "services": {}},
        source="test.toml",
        registry=build_registry(manager),
    )
    a = bed_sidecar.backend("A")
    server = EngineServer(docker_client)
    routes = [http_route(a, domain="api.localhost")]
    certificates = domain_certificates(manager, server, project.name, ENV, routes)
    manager.hook.configure_routing(server=server, project=project, env=ENV, routes=routes, certificates=certificates)
    client = bed_sidecar.client_container()
    assert bed_sidecar.fetch(client, 5100)["body"]["name"] == "A"
    # The domain got its certificate from obtain_certificate (self-signed, cached in the home).
    container = docker_client.containers.get(f"{bed_sidecar.project}_{ENV}_nginx")
    assert "listen 443 ssl;" in container.exec_run(["sh", "-c", f"cat {VERSIONS_DIR}/*/http/api-5100.conf"]).output.decode()
    if hasattr(manager.hook, "wait_drained"):
        assert manager.hook.wait_drained(server=server, project=project, env=ENV, timeout=10.0, backends=[a]) is True
