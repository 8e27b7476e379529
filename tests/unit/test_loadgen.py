"""Tests for the load generator (projectdeployer.rehearse.loadgen) against local HTTP servers.

Every server here is a ThreadingHTTPServer on 127.0.0.1 whose endpoints misbehave on purpose
(500s, unanswered requests, cut streams, wrong lengths, idle keep-alive connections closed).
Sleeps only ever set the length of a load window; waiting for something uses wait_sent() or
a polling deadline.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from projectdeployer.rehearse import LoadGenerator
from projectdeployer.rehearse.loadgen import LoadResult, main, should_retry_on_stale_keepalive

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------------------------
# A misbehaving test server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(5)
            self.request.do_handshake()
        super().setup()
        self.served_here = 0
        with self.server.lock:
            self.conn_index = len(self.server.conn_requests)
            self.server.conn_requests.append(0)
            self.server.sockets.append(self.request)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self, status: int, body: bytes = b"ok\n") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self) -> None:
        srv = self.server
        self.served_here += 1
        with srv.lock:
            srv.conn_requests[self.conn_index] += 1
            srv.requests += 1
            nth = srv.requests
            srv.hosts.add(self.headers.get("Host", ""))
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        if path == "/ok":
            self._body(200)
        elif path == "/slow":
            srv.stopping.wait(int(q.get("ms", "300")) / 1000)
            self._body(200)
        elif path == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(q.get("chunks", "5"))):
                self._chunk(b"tick %d\n" % i)
                srv.stopping.wait(float(q.get("interval", "0.05")))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/stream-forever":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while not srv.stopping.wait(0.05):
                self._chunk(b"tick\n")
            self.close_connection = True
        elif path == "/cut-stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(b"first\n")
            self._chunk(b"second\n")
            self.close_connection = True  # no last chunk: the stream is cut short
        elif path == "/bad-length":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.close_connection = True
        elif path == "/error":
            self._body(500, b"boom\n")
        elif path == "/close":
            self.close_connection = True  # request read, connection closed, nothing sent
        elif path == "/hang":
            srv.stopping.wait(30)
            self.close_connection = True
        elif path == "/second-closes":
            # The keep-alive race, made deterministic: the first request of every connection
            # is answered; a later one is read and the connection closed without a byte.
            if self.served_here == 1:
                self._body(200)
            else:
                self.close_connection = True
        elif path == "/second-resets":
            # Same race, ending in a reset (RST) rather than a clean close (FIN).
            if self.served_here == 1:
                self._body(200)
            else:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
        elif path == "/second-partial":
            if self.served_here == 1:
                self._body(200)
            else:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")  # some response bytes, then gone
                self.close_connection = True
        elif path == "/dies-after":
            if nth <= int(q["n"]):
                self._body(200)
            else:
                self.close_connection = True
        else:
            self._body(404, b"no such endpoint\n")


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, *, keepalive_timeout: float | None = None, tls: ssl.SSLContext | None = None) -> None:
        handler = type("Handler", (_Handler,), {"timeout": keepalive_timeout})
        super().__init__(("127.0.0.1", 0), handler)
        self.tls = tls
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.conn_requests: list[int] = []
        self.sockets: list[socket.socket] = []
        self.requests = 0
        self.hosts: set[str] = set()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.alive = True

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.server_address[1]}{path}"

    @property
    def connections(self) -> int:
        with self.lock:
            return len(self.conn_requests)

    def kill(self) -> None:
        """Stop listening and cut every open connection, like a process that died."""
        if not self.alive:
            return
        self.alive = False
        self.stopping.set()
        self.shutdown()
        self.server_close()
        with self.lock:
            sockets = list(self.sockets)
        for sock in sockets:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def serve() -> Iterator[Callable[..., LocalServer]]:
    servers: list[LocalServer] = []

    def make(**kwargs: object) -> LocalServer:
        server = LocalServer(**kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.kill()


def run_for(gen: LoadGenerator, seconds: float) -> LoadResult:
    """Run ``gen`` for a load window of ``seconds`` and return its final result."""
    with gen:
        time.sleep(seconds)
    assert gen.result is not None
    return gen.result


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def assert_consistent(r: LoadResult) -> None:
    assert r.in_flight == 0
    assert r.sent == r.ok + r.failed
    assert sum(r.failure_kinds.values()) == r.failed
    assert len(r.failures) == min(r.failed, 50)
    assert r.summary().splitlines()[-1] == f"failed={r.failed} sent={r.sent}"


# --------------------------------------------------------------------------------------------
# Healthy servers


def test_healthy_server_rate_and_both_connection_patterns(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    gen = LoadGenerator(server.url("/ok"), rate=100, concurrency=8, keepalive_share=0.5)
    gen.start()
    time.sleep(2.0)
    t0 = time.monotonic()
    r = gen.stop()
    assert time.monotonic() - t0 < 1.0  # nothing in flight for long against a healthy server
    assert_consistent(r)
    assert r.failed == 0, r.summary()
    assert r.statuses == {200: r.sent}
    # Rate: loose below (noisy machine), strict above (the bucket never over-delivers).
    assert 60 <= r.rps <= 100 * 1.1 + 11 / r.seconds, r.summary()
    assert r.sent == server.requests
    # Server side: some connections carried many requests (keep-alive workers), many carried
    # exactly one (fresh-connection workers).
    per_conn = server.conn_requests
    assert len(per_conn) == r.connections_opened
    assert max(per_conn) > 5
    assert sum(1 for n in per_conn if n == 1) >= 30
    assert r.requests_on_reused_connection > 0
    assert r.retried_on_stale_keepalive == 0
    assert r.latency_p50_ms > 0
    assert server.hosts == {f"127.0.0.1:{server.server_address[1]}"}


def test_slow_requests_and_streams_are_read_to_the_end(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    gen = LoadGenerator(
        server.url("/ok"),
        rate=50,
        concurrency=4,
        slow_path="/slow?ms=300",
        slow_every=0.2,
        stream_path="/stream?chunks=4&interval=0.05",
        streams=2,
        host_header="api.example.com",
    )
    r = run_for(gen, 1.0)
    assert_consistent(r)
    assert r.failed == 0, r.summary()
    assert r.slow_ok == r.slow_sent >= 3
    assert r.by_kind["slow"].p50_ms >= 300
    assert r.stream_ok == r.stream_sent >= 2
    assert r.by_kind["stream"].p50_ms >= 150
    assert r.by_kind["plain"].ok > 20
    assert server.hosts == {"api.example.com"}


def test_stop_waits_for_a_slow_request_in_flight(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    gen = LoadGenerator(server.url("/ok"), rate=20, concurrency=2, slow_path="/slow?ms=800", slow_every=5.0)
    gen.start()
    gen.wait_sent(2, timeout=5)
    wait_until(lambda: gen.snapshot().slow_sent == 1)
    r = gen.stop()  # the slow request is drained, not abandoned
    assert r.failed == 0, r.summary()
    assert r.slow_ok == 1


# --------------------------------------------------------------------------------------------
# Failures are counted


def test_500s_are_failures_with_their_status(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    r = run_for(LoadGenerator(server.url("/error"), rate=50, concurrency=2), 0.5)
    assert_consistent(r)
    assert r.sent > 5
    assert r.failed == r.sent and r.ok == 0
    assert r.statuses == {500: r.sent}
    assert r.failure_kinds == {"HTTP 500": r.sent}
    assert all("HTTP 500" in f for f in r.failures)


def test_connection_closed_without_answer_is_a_failure_never_retried(
    serve: Callable[..., LocalServer],
) -> None:
    server = serve()
    r = run_for(LoadGenerator(server.url("/close"), rate=50, concurrency=4, keepalive_share=0.5), 0.5)
    assert_consistent(r)
    assert r.sent > 5
    assert r.failed == r.sent and r.ok == 0
    # Each failure happened on a fresh connection, which is never retried.
    assert r.retried_on_stale_keepalive == 0
    assert r.requests_on_reused_connection == 0
    assert set(r.failure_kinds) <= {"closed without response", "ConnectionResetError"}
    assert r.statuses == {}


def test_truncated_chunked_stream_is_a_failure(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    gen = LoadGenerator(server.url("/ok"), rate=20, concurrency=2, stream_path="/cut-stream", streams=2)
    r = run_for(gen, 0.6)
    assert_consistent(r)
    assert r.by_kind["plain"].failed == 0
    assert r.stream_sent >= 2
    assert r.stream_ok == 0
    assert r.failure_kinds == {"truncated body": r.stream_sent}
    assert "chunked body cut short after 13 bytes" in r.failures[0]


def test_body_shorter_than_content_length_is_a_failure(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    r = run_for(LoadGenerator(server.url("/bad-length"), rate=50, concurrency=2), 0.5)
    assert_consistent(r)
    assert r.sent > 5
    assert r.failed == r.sent
    assert r.failure_kinds == {"truncated body": r.sent}
    assert "10 of 100 bytes" in r.failures[0]


def test_server_dying_mid_run_is_counted(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    gen = LoadGenerator(server.url("/ok"), rate=100, concurrency=4, timeout=2.0)
    gen.start()
    gen.wait_sent(30, timeout=10)
    assert gen.snapshot().failed == 0
    server.kill()
    wait_until(lambda: gen.snapshot().failed >= 10)
    r = gen.stop()
    assert_consistent(r)
    assert r.ok >= 29
    assert "ConnectionRefusedError" in r.failure_kinds


# --------------------------------------------------------------------------------------------
# Stale keep-alive connections: the one retry, and everything it must not hide


def test_retry_rule_truth_table() -> None:
    ok = dict(method="GET", reused=True, response_bytes=0, closed_by_peer=True)
    assert should_retry_on_stale_keepalive(**ok)
    assert not should_retry_on_stale_keepalive(**{**ok, "method": "POST"})
    assert not should_retry_on_stale_keepalive(**{**ok, "reused": False})
    assert not should_retry_on_stale_keepalive(**{**ok, "response_bytes": 1})
    assert not should_retry_on_stale_keepalive(**{**ok, "closed_by_peer": False})


def test_short_server_keepalive_timeout_costs_no_failures(
    serve: Callable[..., LocalServer],
) -> None:
    # The server drops connections idle for 0.1 s; each keep-alive worker sends every ~0.25 s,
    # so nearly every reuse finds its connection closed (or loses the race with the close).
    server = serve(keepalive_timeout=0.1)
    r = run_for(LoadGenerator(server.url("/ok"), rate=16, concurrency=4, keepalive_share=1.0), 1.5)
    assert_consistent(r)
    assert r.failed == 0, r.summary()
    assert r.stale_keepalive_reconnects + r.retried_on_stale_keepalive > 5, r.summary()
    # A request lost in the race never reached a handler: only its retry did.
    assert server.requests == r.sent


@pytest.mark.parametrize("endpoint", ["/second-closes", "/second-resets"])
def test_the_race_on_a_reused_connection_is_retried_once_and_counted(serve: Callable[..., LocalServer], endpoint: str) -> None:
    # Every reused connection receives the request and closes (FIN, or RST) without a byte:
    # exactly the client-side view of the keep-alive race. Each is resent once on a fresh
    # connection.
    server = serve()
    r = run_for(LoadGenerator(server.url(endpoint), rate=40, concurrency=2, keepalive_share=1.0), 0.8)
    assert_consistent(r)
    assert r.failed == 0, r.summary()
    # Each worker's first request went out on a fresh connection; every later one was sent on
    # a reused connection, lost, and retried.
    assert r.retried_on_stale_keepalive == r.sent - 2 > 10
    assert r.requests_on_reused_connection == r.retried_on_stale_keepalive
    assert server.requests == r.sent + r.retried_on_stale_keepalive
    assert "retried on stale keep-alive" in r.summary()


def test_strict_mode_counts_the_race_as_failures(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    r = run_for(LoadGenerator(server.url("/second-closes"), rate=40, concurrency=2, keepalive_share=1.0, retry_stale_keepalive=False), 0.7)
    assert_consistent(r)
    assert r.retried_on_stale_keepalive == 0
    assert r.failed == r.requests_on_reused_connection > 5
    assert "on a reused keep-alive connection" in r.failures[0]


def test_no_retry_once_a_response_byte_arrived(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    r = run_for(LoadGenerator(server.url("/second-partial"), rate=40, concurrency=2, keepalive_share=1.0), 0.7)
    assert_consistent(r)
    assert r.retried_on_stale_keepalive == 0
    assert r.failed == r.requests_on_reused_connection > 5
    assert r.failure_kinds == {"truncated response": r.failed}


def test_retry_cannot_hide_a_server_that_stopped_answering(
    serve: Callable[..., LocalServer],
) -> None:
    # After 10 answers the server reads every request and closes: retries on fresh connections
    # fail too, and each such request is one failure.
    server = serve()
    gen = LoadGenerator(server.url("/dies-after?n=10"), rate=60, concurrency=2, keepalive_share=1.0)
    r = run_for(gen, 0.8)
    assert_consistent(r)
    assert r.ok == 10
    assert r.failed == r.sent - 10 > 10
    assert r.retried_on_stale_keepalive >= 1  # the reused connections were retried...
    assert set(r.failure_kinds) <= {"closed without response", "ConnectionResetError"}


# --------------------------------------------------------------------------------------------
# Bounds and stopping


def test_stop_is_prompt_and_abandons_what_never_ends(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    gen = LoadGenerator(server.url("/hang"), rate=50, concurrency=3, timeout=1.0, stream_path="/stream-forever", streams=1)
    gen.start()
    gen.wait_sent(4, timeout=5)
    t0 = time.monotonic()
    r = gen.stop()
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0 + 2.0, elapsed
    assert_consistent(r)
    assert r.ok == 0
    assert r.failed == r.sent
    assert r.by_kind["stream"].failed == 1
    assert r.failure_kinds.get("abandoned", 0) >= 1  # the endless stream, cut at stop
    assert r.failure_kinds.get("timeout", 0) >= 1  # hung plain requests
    assert gen.stop() is r  # idempotent


def test_max_seconds_is_honoured(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    gen = LoadGenerator(server.url("/ok"), rate=100, concurrency=4, max_seconds=0.5)
    t0 = time.monotonic()
    gen.start()
    assert gen.wait_done(timeout=5)
    assert time.monotonic() - t0 < 0.5 + 1.0
    served = server.requests
    r = gen.stop()
    assert r.stop_reason == "max_seconds"
    assert 0.45 <= r.seconds <= 1.0
    assert r.failed == 0 and r.sent == served == server.requests
    with pytest.raises(TimeoutError, match="load ended"):
        gen.wait_sent(r.sent + 1, timeout=5)


def test_max_requests_is_honoured(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    gen = LoadGenerator(server.url("/ok"), rate=200, concurrency=4, max_requests=25)
    gen.start()
    assert gen.wait_done(timeout=5)
    r = gen.stop()
    assert r.stop_reason == "max_requests"
    assert r.sent == r.ok == 25 == server.requests


def test_wait_sent_times_out(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    with LoadGenerator(server.url("/ok"), rate=5, concurrency=1) as gen, pytest.raises(TimeoutError, match="only"):
        gen.wait_sent(1000, timeout=0.2)


@pytest.mark.parametrize(
    ("url", "kwargs"),
    [
        ("ftp://127.0.0.1/", {}),
        ("http://127.0.0.1/", {"slow_path": "http://example.com/slow", "slow_every": 1.0}),
        ("http://127.0.0.1/", {"stream_path": "//example.com/s", "streams": 1}),
        ("http://127.0.0.1/", {"streams": 1}),
        ("http://127.0.0.1/", {"rate": 0}),
        ("http://127.0.0.1/", {"keepalive_share": 1.5}),
    ],
)
def test_rejects_other_origins_and_bad_settings(url: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LoadGenerator(url, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# HTTPS with a Host header / SNI, and the command line


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=api.example.com",
            "-addext",
            "subjectAltName=DNS:api.example.com",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_with_host_header_and_sni(serve: Callable[..., LocalServer], tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    sni: set[str | None] = set()
    ctx.sni_callback = lambda sock, name, c: sni.add(name)  # type: ignore[assignment]
    server = serve(tls=ctx)
    url = server.url("/ok", scheme="https")

    r = run_for(LoadGenerator(url, rate=40, concurrency=2, host_header="api.example.com"), 0.5)
    assert r.failed == 0 and r.sent > 5, r.summary()
    assert r.requests_on_reused_connection > 0
    assert r.stale_keepalive_reconnects == 0  # TLS 1.3 tickets do not look like a closed socket
    assert sni == {"api.example.com"}
    assert server.hosts == {"api.example.com"}

    verified = LoadGenerator(url, rate=40, concurrency=1, host_header="api.example.com", verify_tls=True, ca_file=str(cert))
    assert run_for(verified, 0.3).failed == 0

    untrusted = run_for(LoadGenerator(url, rate=20, concurrency=1, verify_tls=True, host_header="api.example.com"), 0.3)
    assert untrusted.sent > 0 and untrusted.failed == untrusted.sent
    assert set(untrusted.failure_kinds) == {"SSLCertVerificationError"}


def test_cli_prints_the_count_last(serve: Callable[..., LocalServer], capsys: pytest.CaptureFixture[str]) -> None:
    server = serve()
    rc = main([server.url("/ok"), "--rate", "50", "--seconds", "0.5", "--host", "api.example.com"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert out[-1].startswith("failed=0 sent=")
    assert int(out[-1].split("sent=")[1]) > 10

    rc = main([server.url("/error"), "--rate", "50", "--seconds", "0.3"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert rc == 1
    failed, sent = (int(part.split("=")[1]) for part in last.split())
    assert failed == sent > 0


def test_cli_runs_as_a_module(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    proc = subprocess.run(
        [sys.executable, "-m", "projectdeployer.rehearse.loadgen", server.url("/ok"), "--rate", "40", "--seconds", "0.3"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.strip().splitlines()[-1].startswith("failed=0 sent=")
