"""A load generator that counts every failed request: the instrument behind "zero downtime".

Tests and benches run a :class:`LoadGenerator` through the nginx sidecar while a service is
deployed, rolled back or redeployed, then assert ``result.failed == 0``::

    with LoadGenerator("https://127.0.0.1:8443/", host_header="api.example.com", rate=150,
                       slow_path="/slow?ms=1500", slow_every=0.5,
                       stream_path="/stream?seconds=5", streams=2) as load:
        load.wait_sent(100, timeout=10)      # load is really flowing before the deploy starts
        deploy(...)
    assert load.result.failed == 0, load.result.summary()

Standard library only (threads and sockets; the HTTP/1.1 client is written here so that every
byte received is accounted for), and it only ever talks to the host and port of the URL it is
given: ``slow_path`` and ``stream_path`` are paths on that same origin.

What is sent
    * ``concurrency`` workers share one token bucket refilled at ``rate`` requests per second
      (burst: a tenth of a second's worth, at least one). A worker waits for its token on an
      event, so nothing busy-spins, and :meth:`LoadGenerator.stop` wakes it at once.
    * ``keepalive_share`` of those workers keep one persistent HTTP/1.1 connection (reused
      until the server closes it or an error happens); the others open a fresh connection per
      request and send ``Connection: close``. With ``0 < keepalive_share < 1`` and at least two
      workers there is always at least one of each kind. Both are real client patterns and they
      fail in different ways during a switch.
    * ``slow_path``: every ``slow_every`` seconds one request to that path is started on its own
      thread and fresh connection (at most 64 in flight), so requests are in flight across the
      switch. Not drawn from the token bucket.
    * ``stream_path``: ``streams`` workers each keep one streaming response open at a time
      (fresh connection, read to its very end, the next one started right after), so
      long-lived connections span the switch. Not drawn from the token bucket.

What counts as a failure
    Any response outside 2xx; any connection error (refused, reset, TLS error, ...); a timeout
    (``timeout`` applies to connecting and to every read and write); a body cut short (fewer
    bytes than ``Content-Length``, or a chunked stream that ends before its last chunk); an
    unparsable response; and a request still in flight when the generator has to abandon it
    (see *Stopping*). ``sent == ok + failed`` once stopped.

Stale keep-alive connections: the one retry
    A server may close an idle keep-alive connection at any moment (keep-alive timeout, nginx
    reload, a replaced container). HTTP/1.1 has no way to announce it, so a client that sends
    a request on an idle connection at the same moment loses the race: its request goes out and
    the connection is closed (FIN or RST) without a single response byte. RFC 9112 section 9.3.1
    lets a client retry an idempotent request in that case, and real clients do: Chromium and
    Firefox resend when a *reused* connection fails before any response byte; Go's
    ``net/http`` does the same for idempotent requests. (Python's ``requests`` does only the
    pre-send check below by default; its ``urllib3`` retries when asked to.) This generator
    implements exactly that, and nothing more:

    1. Before sending on an idle kept-alive connection, it polls the socket: readable (EOF or
       unexpected bytes) means the server already closed it, so it is discarded and the request
       goes out on a fresh connection. The request had not been sent, so this is neither a
       retry nor a failure; it is counted as ``stale_keepalive_reconnects``.
    2. If a request was sent on a *reused* connection (one that already carried a complete
       response), its method is ``GET``, and the connection then ends -- clean EOF, reset,
       broken pipe, abort, or TLS EOF -- with **zero** response bytes received, the request is
       sent once more on a *fresh* connection. That second attempt decides the outcome (its
       failure is a failure, whatever it is), and the retry is counted in
       ``retried_on_stale_keepalive``. Latency includes both attempts.

    Never retried: a failure on a fresh connection (a server that closes every connection
    unanswered fails every request), a failure after any response byte (partial status line,
    headers or body), a timeout, a refused connection, a non-GET request, and a second retry.
    ``retry_stale_keepalive=False`` turns rule 2 off for a strict count.

Stopping
    :meth:`LoadGenerator.stop` stops starting requests, waits for those in flight (up to
    ``timeout`` + 0.5 s), then closes the sockets of any still running and counts them as
    failed ("abandoned"). It returns within ``timeout`` + ~1.5 s. The generator stops by itself
    after ``max_seconds`` or ``max_requests`` (same draining), even if ``stop`` is never called.

Command line::

    python -m projectdeployer.rehearse.loadgen https://127.0.0.1:8443/ --rate 150 --seconds 10 \\
        --host api.example.com

prints a summary whose last line is ``failed=N sent=M``; exit status 1 if anything failed.
"""

from __future__ import annotations

import argparse
import math
import select
import socket
import ssl
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Mapping
from types import TracebackType
from typing import Final
from urllib.parse import urlsplit

import attrs

__all__ = [
    "KindResult",
    "LoadGenerator",
    "LoadResult",
    "main",
    "should_retry_on_stale_keepalive",
]

#: How many failure descriptions a result keeps (all are still counted in ``failure_kinds``).
MAX_FAILURES_KEPT: Final = 50
#: Most slow requests in flight at once.
MAX_SLOW_IN_FLIGHT: Final = 64
#: The kinds of request, as keys of :attr:`LoadResult.by_kind`.
KINDS: Final = ("plain", "slow", "stream")

_MAX_LINE: Final = 65536
_MAX_HEADERS: Final = 200
_RECV_SIZE: Final = 65536
_USER_AGENT: Final = "projectdeployer-loadgen/1"
#: The only method sent (and the only one the stale keep-alive retry would ever apply to).
_METHOD: Final = "GET"
#: Pause between two streams of one stream worker (longer after a failed one), so a stream
#: endpoint that answers at once, or a dead server, does not turn a worker into a tight loop.
_STREAM_PAUSE: Final = 0.02
_STREAM_PAUSE_AFTER_FAILURE: Final = 0.2
#: Errors meaning "the peer closed the connection" (as opposed to timeouts, refusals, TLS
#: handshake problems...). With zero response bytes on a reused connection they allow the retry.
_CLOSED_ERRORS: Final = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


# --------------------------------------------------------------------------------------------
# Results


@attrs.frozen
class KindResult:
    """Counts and latencies of one kind of request (``plain``, ``slow`` or ``stream``)."""

    sent: int
    ok: int
    failed: int
    #: Latency percentiles of the completed requests (ok or failed), in milliseconds; 0.0 when
    #: none completed. For streams, the time until the stream's last byte.
    p50_ms: float
    p99_ms: float
    max_ms: float


@attrs.frozen
class LoadResult:
    """What a load run saw. Once stopped, ``sent == ok + failed`` and ``in_flight == 0``."""

    #: Requests started (a retried request counts once).
    sent: int
    ok: int
    failed: int
    #: Started and not finished yet (only non-zero in a :meth:`LoadGenerator.snapshot`).
    in_flight: int
    #: One short description per failure, the first :data:`MAX_FAILURES_KEPT` of them.
    failures: tuple[str, ...]
    #: Every failure counted by category (``HTTP 500``, ``ConnectionRefusedError``,
    #: ``truncated body``, ``closed without response``, ``timeout``, ``abandoned``...).
    failure_kinds: Mapping[str, int]
    #: Final status code -> count, whatever the kind of request.
    statuses: Mapping[int, int]
    #: Requests resent once on a fresh connection after a reused keep-alive connection was
    #: closed with zero response bytes (see the module docstring). Their outcome is in ok/failed.
    retried_on_stale_keepalive: int
    #: Idle keep-alive connections found closed *before* sending and replaced (no request lost).
    stale_keepalive_reconnects: int
    #: TCP connections opened, and requests sent on an already used connection.
    connections_opened: int
    requests_on_reused_connection: int
    #: Length of the load window (start until stop was signalled) and ``sent / seconds``.
    seconds: float
    rps: float
    #: Latencies of the plain (rate-limited) requests, in milliseconds.
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    by_kind: Mapping[str, KindResult]
    #: Why the load ended: ``stop``, ``max_seconds``, ``max_requests``; ``""`` while running.
    stop_reason: str

    @property
    def slow_sent(self) -> int:
        return self.by_kind["slow"].sent

    @property
    def slow_ok(self) -> int:
        return self.by_kind["slow"].ok

    @property
    def stream_sent(self) -> int:
        return self.by_kind["stream"].sent

    @property
    def stream_ok(self) -> int:
        return self.by_kind["stream"].ok

    def summary(self) -> str:
        """A few human lines; the last one is ``failed=N sent=M``."""
        lines = [
            f"sent {self.sent} in {self.seconds:.1f} s ({self.rps:.1f} req/s): "
            f"ok {self.ok}, failed {self.failed}" + (f", in flight {self.in_flight}" if self.in_flight else "") + (f" [ended by {self.stop_reason}]" if self.stop_reason else ""),
            "statuses: " + (", ".join(f"{code}={n}" for code, n in sorted(self.statuses.items())) or "none"),
            f"latency (plain): p50 {self.latency_p50_ms:.1f} ms, p99 {self.latency_p99_ms:.1f} ms, max {self.latency_max_ms:.1f} ms",
        ]
        for kind in ("slow", "stream"):
            k = self.by_kind[kind]
            if k.sent:
                lines.append(f"{kind}: sent {k.sent}, ok {k.ok}, failed {k.failed}, p50 {k.p50_ms:.0f} ms, max {k.max_ms:.0f} ms")
        lines.append(
            f"connections: {self.connections_opened} opened, "
            f"{self.requests_on_reused_connection} requests on reused keep-alive connections, "
            f"{self.stale_keepalive_reconnects} stale idle connections replaced before sending, "
            f"{self.retried_on_stale_keepalive} requests retried on stale keep-alive"
        )
        if self.failed:
            kinds = ", ".join(f"{k}={n}" for k, n in sorted(self.failure_kinds.items()))
            lines.append(f"failures by kind: {kinds}")
            shown = len(self.failures)
            lines.append(f"failures (first {shown} of {self.failed}):")
            lines.extend(f"  {f}" for f in self.failures)
        lines.append(f"failed={self.failed} sent={self.sent}")
        return "\n".join(lines)


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class _Stats:
    """Thread-safe counters; :meth:`result` turns them into a :class:`LoadResult`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent_cond = threading.Condition(self.lock)
        self.sent = dict.fromkeys(KINDS, 0)
        self.ok = dict.fromkeys(KINDS, 0)
        self.failed = dict.fromkeys(KINDS, 0)
        self.latencies = {kind: array("d") for kind in KINDS}
        self.statuses: Counter[int] = Counter()
        self.failure_kinds: Counter[str] = Counter()
        self.failures: list[str] = []
        self.retried = 0
        self.stale_reconnects = 0
        self.connections = 0
        self.reused = 0
        self.finalized = False

    def total_sent(self) -> int:
        return sum(self.sent.values())

    def add(self, attr: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, attr, getattr(self, attr) + n)

    def record(self, kind: str, outcome: _Outcome) -> None:
        with self.lock:
            if self.finalized:  # a straggler abandoned by stop(): already counted as failed
                return
            if outcome.status is not None:
                self.statuses[outcome.status] += 1
            self.latencies[kind].append(outcome.seconds * 1000.0)
            if outcome.ok:
                self.ok[kind] += 1
            else:
                self.failed[kind] += 1
                self._add_failure(outcome.category, f"[{kind}] {outcome.description}")

    def _add_failure(self, category: str, description: str, n: int = 1) -> None:
        self.failure_kinds[category] += n
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(description)

    def finalize(self, stuck_description: str) -> None:
        """Count requests that never finished as failed; ignore anything recorded later."""
        with self.lock:
            for kind in KINDS:
                stuck = self.sent[kind] - self.ok[kind] - self.failed[kind]
                if stuck > 0:
                    self.failed[kind] += stuck
                    self._add_failure("abandoned", f"[{kind}] {stuck_description}", stuck)
            self.finalized = True

    def result(self, seconds: float, stop_reason: str) -> LoadResult:
        with self.lock:
            by_kind = {}
            for kind in KINDS:
                lat = sorted(self.latencies[kind])
                by_kind[kind] = KindResult(
                    sent=self.sent[kind],
                    ok=self.ok[kind],
                    failed=self.failed[kind],
                    p50_ms=_percentile(lat, 50),
                    p99_ms=_percentile(lat, 99),
                    max_ms=lat[-1] if lat else 0.0,
                )
            sent, ok, failed = (sum(d.values()) for d in (self.sent, self.ok, self.failed))
            plain = by_kind["plain"]
            return LoadResult(
                sent=sent,
                ok=ok,
                failed=failed,
                in_flight=sent - ok - failed,
                failures=tuple(self.failures),
                failure_kinds=dict(self.failure_kinds),
                statuses=dict(self.statuses),
                retried_on_stale_keepalive=self.retried,
                stale_keepalive_reconnects=self.stale_reconnects,
                connections_opened=self.connections,
                requests_on_reused_connection=self.reused,
                seconds=seconds,
                rps=sent / seconds if seconds > 0 else 0.0,
                latency_p50_ms=plain.p50_ms,
                latency_p99_ms=plain.p99_ms,
                latency_max_ms=plain.max_ms,
                by_kind=by_kind,
                stop_reason=stop_reason,
            )


# --------------------------------------------------------------------------------------------
# The HTTP/1.1 client


@attrs.frozen
class _Outcome:
    ok: bool
    status: int | None
    seconds: float
    category: str = ""
    description: str = ""


class _RequestFailed(Exception):
    """One attempt failed. ``closed_before_response`` marks the only retryable shape."""

    def __init__(self, category: str, description: str, *, status: int | None = None, closed_before_response: bool = False) -> None:
        super().__init__(description)
        self.category = category
        self.description = description
        self.status = status
        self.closed_before_response = closed_before_response


class _Aborted(Exception):
    """The generator closed this request's socket because it had to stop."""


class _EOF(Exception):
    """The peer closed the connection before the expected bytes arrived."""


class _Connection:
    """One TCP (or TLS) connection with a receive buffer that counts the bytes of a response."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.responses = 0  # complete responses read on this connection
        self.received = 0  # bytes received since the current request was sent

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def is_stale(self) -> bool:
        """True if this idle connection is unusable: closed by the peer, or unexpected bytes.

        The same check urllib3 makes before reusing a pooled connection.
        """
        if self.buf:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        except (AttributeError, OSError, ValueError):  # no poll() on this platform, or closed
            try:
                readable, _, _ = select.select([self.sock], [], [], 0)
                return bool(readable)
            except (OSError, ValueError):
                return True

    def _fill(self) -> None:
        data = self.sock.recv(_RECV_SIZE)
        if not data:
            raise _EOF
        self.received += len(data)
        self.buf += data

    def readline(self) -> bytes:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[: end + 1])
                del self.buf[: end + 1]
                return line
            if len(self.buf) > _MAX_LINE:
                raise _RequestFailed("bad response", "response line longer than 64 KiB")
            self._fill()

    def skip(self, n: int) -> None:
        """Read and discard exactly ``n`` bytes."""
        while n > 0:
            if not self.buf:
                self._fill()
            take = min(n, len(self.buf))
            del self.buf[:take]
            n -= take

    def skip_to_eof(self) -> None:
        self.buf.clear()
        while True:
            try:
                self._fill()
            except _EOF:
                return
            self.buf.clear()


def _read_response(conn: _Connection) -> tuple[int, bool]:
    """Read one whole response; return its status and whether the connection can be reused.

    Raises :class:`_EOF` (connection ended early), :class:`_RequestFailed` (malformed or
    truncated), or the socket's own errors.
    """
    while True:  # skip 1xx informational responses
        line = conn.readline()
        try:
            version, code, *_ = line.decode("latin-1").split(None, 2)
            status = int(code)
        except ValueError:
            raise _RequestFailed("bad response", f"bad status line {line[:60]!r}") from None
        if not version.startswith("HTTP/1.") or not 100 <= status <= 999:
            raise _RequestFailed("bad response", f"bad status line {line[:60]!r}")
        headers: dict[str, list[str]] = {}
        for _ in range(_MAX_HEADERS + 1):
            raw = conn.readline()
            if raw in (b"\r\n", b"\n"):
                break
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                raise _RequestFailed("bad response", f"bad header line {raw[:60]!r}")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        else:
            raise _RequestFailed("bad response", "more than 200 header lines")
        if 100 <= status < 200 and status != 101:
            continue
        break

    connection_tokens = {t.strip().lower() for v in headers.get("connection", []) for t in v.split(",")}
    if version == "HTTP/1.1":
        reusable = "close" not in connection_tokens
    else:
        reusable = "keep-alive" in connection_tokens

    if status in (204, 304) or status == 101:
        return status, reusable and status != 101

    transfer = ",".join(headers.get("transfer-encoding", [])).lower()
    if transfer:
        if transfer.rsplit(",", 1)[-1].strip() != "chunked":
            conn.skip_to_eof()
            return status, False
        _read_chunked(conn)
        return status, reusable

    lengths = {v for v in headers.get("content-length", [])}
    if lengths:
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise _RequestFailed("bad response", f"bad Content-Length {sorted(lengths)}")
        length = int(next(iter(lengths)))
        before = conn.received - len(conn.buf)
        try:
            conn.skip(length)
        except _EOF:
            got = conn.received - before
            raise _RequestFailed("truncated body", f"HTTP {status}: body cut short, {got} of {length} bytes") from None
        return status, reusable

    conn.skip_to_eof()  # delimited by the end of the connection
    return status, False


def _read_chunked(conn: _Connection) -> None:
    total = 0
    try:
        while True:
            line = conn.readline()
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _RequestFailed("bad response", f"bad chunk size line {line[:40]!r} after {total} bytes") from None
            if size == 0:
                while conn.readline() not in (b"\r\n", b"\n"):  # trailers
                    pass
                return
            conn.skip(size)
            total += size
            if conn.readline() not in (b"\r\n", b"\n"):
                raise _RequestFailed("bad response", f"chunk not followed by CRLF after {total} B")
    except _EOF:
        raise _RequestFailed("truncated body", f"chunked body cut short after {total} bytes (no last chunk)") from None


@attrs.frozen
class _Target:
    scheme: str
    host: str  # where to connect
    port: int
    path: str
    host_header: str
    server_hostname: str | None  # SNI / certificate name for https


def _parse_target(url: str, host_header: str | None) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"only http:// and https:// URLs are supported, not {url!r}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {url!r}")
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if host_header is None:
        name = parts.hostname
        if ":" in name:  # IPv6 literal
            name = f"[{name}]"
        host_header = name if port == default_port else f"{name}:{port}"
    sni = _hostname_of(host_header)
    return _Target(parts.scheme, parts.hostname, port, path, host_header, sni)


def _hostname_of(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _check_path(name: str, path: str | None) -> None:
    if path is not None and (not path.startswith("/") or path.startswith("//")):
        raise ValueError(f"{name} must be a path on the same origin, like '/slow', not {path!r}")


def _describe_error(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout", "timeout"
    name = type(exc).__name__
    text = str(exc)
    if len(text) > 100:
        text = text[:97] + "..."
    return name, f"{name}: {text}" if text else name


# --------------------------------------------------------------------------------------------
# The generator


class _Pacer:
    """A token bucket (as a virtual schedule): ``rate`` tokens a second, ``burst`` at most banked.

    Each caller reserves the next slot and sleeps on the stop event until it comes, so waiting
    workers cost nothing and wake at once on stop.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self._interval = 1.0 / rate
        self._credit = burst * self._interval
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event) -> bool:
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now - self._credit)
            self._next = slot + self._interval
        delay = slot - time.monotonic()
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()


class _Client:
    """One worker's connection state; the generator can abort it from another thread."""

    def __init__(self, gen: LoadGenerator, *, keepalive: bool) -> None:
        self.gen = gen
        self.keepalive = keepalive
        self.conn: _Connection | None = None
        self.lock = threading.Lock()
        self.aborted = False

    # -- connection management (abort-safe)

    def _connect(self) -> _Connection:
        gen = self.gen
        target = gen.target
        with self.lock:
            if self.aborted:
                raise _Aborted
        sock = socket.create_connection((target.host, target.port), timeout=gen.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            gen.stats.add("connections")
            with self.lock:  # register before the TLS handshake so that abort() can cut it
                if self.aborted:
                    raise _Aborted
                self.conn = _Connection(sock)
            if gen.ssl_context is not None:
                sock = gen.ssl_context.wrap_socket(sock, server_hostname=target.server_hostname)
                with self.lock:
                    if self.aborted:
                        raise _Aborted
                    self.conn = _Connection(sock)
        except BaseException:
            sock.close()
            with self.lock:
                self.conn = None
            raise
        return self.conn

    def drop(self) -> None:
        with self.lock:
            conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def abort(self) -> None:
        """Cut this client's socket (from another thread); its request becomes "abandoned"."""
        with self.lock:
            self.aborted = True
            conn = self.conn
        if conn is not None:
            try:  # the plain socket call, bypassing SSLSocket.shutdown (not thread-safe)
                socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
            except OSError:
                pass

    # -- one logical request

    def request(self, path: str, kind: str) -> _Outcome:
        started = time.monotonic()
        try:
            status = self._request_with_retry(path, kind)
        except _Aborted:
            return _Outcome(False, None, time.monotonic() - started, "abandoned", self.gen.abandoned_description())
        except _RequestFailed as exc:
            return _Outcome(False, exc.status, time.monotonic() - started, exc.category, f"+{started - self.gen.started_at:.2f}s {exc.description}")
        elapsed = time.monotonic() - started
        if 200 <= status < 300:
            return _Outcome(True, status, elapsed)
        return _Outcome(False, status, elapsed, f"HTTP {status}", f"+{started - self.gen.started_at:.2f}s HTTP {status}")

    def _request_with_retry(self, path: str, kind: str) -> int:
        conn = self.conn if self.keepalive else None
        if conn is not None and conn.is_stale():
            self.gen.stats.add("stale_reconnects")
            self.drop()
            conn = None
        try:
            return self._attempt(conn, path)
        except _RequestFailed as exc:
            if not (exc.closed_before_response and self.gen.retry_stale):
                raise
        self.gen.stats.add("retried")
        return self._attempt(None, path)  # fresh connection; whatever happens now is final

    def _attempt(self, conn: _Connection | None, path: str) -> int:
        """Send one GET and read its response. Only a failure on a reused connection with zero
        response bytes that is a close (not a timeout) is marked ``closed_before_response``."""
        gen = self.gen
        reused = conn is not None
        try:
            if conn is None:
                conn = self._connect()
            else:
                gen.stats.add("reused")
            conn.received = 0
            conn.sock.sendall(gen.request_bytes(path, keepalive=self.keepalive))
            status, reusable = _read_response(conn)
        except _Aborted:
            self.drop()
            raise
        except _RequestFailed:
            self.drop()
            if self.aborted:
                raise _Aborted from None
            raise
        except (_EOF, *_CLOSED_ERRORS) as exc:
            received = conn.received if conn is not None else 0
            self.drop()
            if self.aborted:
                raise _Aborted from None
            retryable = should_retry_on_stale_keepalive(method=_METHOD, reused=reused, response_bytes=received, closed_by_peer=True)
            if isinstance(exc, _EOF):
                category = "closed without response" if received == 0 else "truncated response"
                text = f"connection closed by server after {received} response bytes" if received else "connection closed by server without a response"
            else:
                category, text = _describe_error(exc)
                text += f" (after {received} response bytes)"
            if reused:
                text += " on a reused keep-alive connection"
            raise _RequestFailed(category, text, closed_before_response=retryable) from None
        except OSError as exc:  # refused, timeout, TLS handshake, unreachable...
            self.drop()
            if self.aborted:
                raise _Aborted from None
            category, text = _describe_error(exc)
            if category == "timeout":
                text = f"timeout ({gen.timeout:g}s) " + ("connecting" if conn is None else f"after {conn.received} response bytes")
            raise _RequestFailed(category, text) from None
        conn.responses += 1
        if self.keepalive and reusable:
            self.conn = conn
        else:
            self.drop()
        return status


def should_retry_on_stale_keepalive(*, method: str, reused: bool, response_bytes: int, closed_by_peer: bool) -> bool:
    """The one retry rule (see the module docstring): an idempotent GET, sent on a connection
    that had already carried a response, ended by the peer (EOF/reset/broken pipe, not a
    timeout) before a single response byte arrived."""
    return method == "GET" and reused and response_bytes == 0 and closed_by_peer


class LoadGenerator:
    """Continuous HTTP load against one URL, counting every failure. See the module docstring.

    A context manager: :meth:`start` on enter, :meth:`stop` on exit; the result is then in
    :attr:`result`.
    """

    def __init__(
        self,
        url: str,
        *,
        rate: float = 150.0,
        concurrency: int = 8,
        host_header: str | None = None,
        keepalive_share: float = 0.5,
        slow_path: str | None = None,
        slow_every: float = 0.0,
        stream_path: str | None = None,
        streams: int = 0,
        timeout: float = 10.0,
        max_seconds: float = 600.0,
        max_requests: int = 1_000_000,
        verify_tls: bool = False,
        ca_file: str | None = None,
        retry_stale_keepalive: bool = True,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0 requests per second")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if not 0.0 <= keepalive_share <= 1.0:
            raise ValueError("keepalive_share must be between 0 and 1")
        if slow_every < 0 or streams < 0:
            raise ValueError("slow_every and streams must be >= 0")
        if timeout <= 0 or max_seconds <= 0 or max_requests < 1:
            raise ValueError("timeout, max_seconds and max_requests must be positive")
        _check_path("slow_path", slow_path)
        _check_path("stream_path", stream_path)
        if streams and stream_path is None:
            raise ValueError("streams > 0 needs a stream_path")
        if slow_every and slow_path is None:
            raise ValueError("slow_every > 0 needs a slow_path")

        self.url = url
        # target, timeout, retry_stale, ssl_context, stats and started_at are public: each
        # worker's client reads them (and adds to stats) for every request.
        self.target = _parse_target(url, host_header)
        self._rate = float(rate)
        self._concurrency = concurrency
        keepalive_workers = round(concurrency * keepalive_share)
        if 0 < keepalive_share < 1 and concurrency >= 2:
            keepalive_workers = min(max(keepalive_workers, 1), concurrency - 1)
        self._keepalive_workers = keepalive_workers
        self._slow_path = slow_path
        self._slow_every = slow_every if slow_path else 0.0
        self._stream_path = stream_path
        self._streams = streams if stream_path else 0
        self.timeout = float(timeout)
        self._max_seconds = float(max_seconds)
        self._max_requests = max_requests
        self.retry_stale = retry_stale_keepalive
        self.ssl_context: ssl.SSLContext | None = None
        if self.target.scheme == "https":
            ctx = ssl.create_default_context(cafile=ca_file)
            if not verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self.ssl_context = ctx

        self.stats = _Stats()
        self._pacer = _Pacer(self._rate, burst=max(1.0, self._rate / 10.0))
        self._stop = threading.Event()
        self._drained = threading.Event()
        self._state_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._clients: set[_Client] = set()
        self._slow_in_flight = threading.BoundedSemaphore(MAX_SLOW_IN_FLIGHT)
        self._started = False
        self.started_at = 0.0
        self._ended_at: float | None = None
        self._stop_reason = ""
        self._supervisor: threading.Thread | None = None
        self.result: LoadResult | None = None

    # -- public API

    def __enter__(self) -> LoadGenerator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def keepalive_workers(self) -> int:
        """How many of the ``concurrency`` workers keep a persistent connection."""
        return self._keepalive_workers

    def start(self) -> None:
        """Start all workers; returns at once."""
        with self._state_lock:
            if self._started:
                raise RuntimeError("a LoadGenerator runs once; make a new one")
            self._started = True
            self.started_at = time.monotonic()
        for i in range(self._concurrency):
            keepalive = i < self._keepalive_workers
            self._spawn(self._plain_worker, f"loadgen-{'ka' if keepalive else 'fresh'}-{i}", _Client(self, keepalive=keepalive))
        for i in range(self._streams):
            self._spawn(self._stream_worker, f"loadgen-stream-{i}", _Client(self, keepalive=False))
        if self._slow_every > 0:
            self._spawn(self._slow_dispatcher, "loadgen-slow")
        self._supervisor = threading.Thread(target=self._supervise, name="loadgen-supervisor", daemon=True)
        self._supervisor.start()

    def stop(self) -> LoadResult:
        """Stop sending, drain in-flight requests (abandoning them after ``timeout`` + 0.5 s),
        and return the final result. Idempotent."""
        if not self._started:
            raise RuntimeError("stop() before start()")
        self._signal_stop("stop")
        self._drained.wait(self.timeout + 3.0)
        with self._state_lock:
            if self.result is None:
                self.stats.finalize(self.abandoned_description())
                self.result = self.stats.result(self._window(), self._stop_reason)
            return self.result

    def snapshot(self) -> LoadResult:
        """The counts so far, without stopping (``in_flight`` requests not yet decided)."""
        if self.result is not None:
            return self.result
        return self.stats.result(self._window(), self._stop_reason)

    def wait_sent(self, n: int, timeout: float) -> None:
        """Block until ``n`` requests were sent in total; :class:`TimeoutError` if they were not
        within ``timeout`` seconds, or if the load ended before."""
        deadline = time.monotonic() + timeout
        stats = self.stats
        with stats.sent_cond:
            while stats.total_sent() < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    sent = stats.total_sent()
                    why = f"load ended ({self._stop_reason})" if self._stop.is_set() else f"{timeout:g}s passed"
                    raise TimeoutError(f"only {sent} of {n} requests sent: {why}")
                stats.sent_cond.wait(min(remaining, 0.25))

    def wait_done(self, timeout: float) -> bool:
        """Wait until the load ended by itself (``max_seconds``/``max_requests``) and drained."""
        return self._drained.wait(timeout)

    # -- internals

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        with self._state_lock:
            self._threads.append(thread)
        thread.start()

    def _window(self) -> float:
        if not self._started:
            return 0.0
        end = self._ended_at if self._ended_at is not None else time.monotonic()
        return max(end - self.started_at, 1e-9)

    def _signal_stop(self, reason: str) -> None:
        with self._state_lock:
            if not self._stop.is_set():
                self._stop_reason = reason
                self._ended_at = time.monotonic()
                self._stop.set()
        with self.stats.sent_cond:
            self.stats.sent_cond.notify_all()

    def abandoned_description(self) -> str:
        """What a request still in flight after the load ended is recorded as."""
        return f"abandoned: still in flight {self.timeout + 0.5:g}s after the load ended ({self._stop_reason or 'stop'})"

    def _claim(self, kind: str) -> bool:
        """Count one request as sent, unless the load has ended (which this may decide)."""
        stats = self.stats
        end_reason = ""
        with stats.sent_cond:
            if self._stop.is_set():
                return False
            if time.monotonic() - self.started_at >= self._max_seconds:
                end_reason = "max_seconds"
                claimed = False
            else:
                stats.sent[kind] += 1
                stats.sent_cond.notify_all()
                claimed = True
                if stats.total_sent() >= self._max_requests:
                    end_reason = "max_requests"  # this last one still goes out
        if end_reason:
            self._signal_stop(end_reason)
        return claimed

    def request_bytes(self, path: str, *, keepalive: bool) -> bytes:
        """The bytes of one GET of ``path`` (``Connection: close`` unless ``keepalive``)."""
        lines = [
            f"{_METHOD} {path} HTTP/1.1",
            f"Host: {self.target.host_header}",
            f"User-Agent: {_USER_AGENT}",
            "Accept: */*",
        ]
        if not keepalive:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _plain_worker(self, client: _Client) -> None:
        with self._state_lock:
            self._clients.add(client)
        try:
            while self._pacer.acquire(self._stop):
                if not self._claim("plain"):
                    break
                self.stats.record("plain", client.request(self.target.path, "plain"))
        finally:
            client.drop()

    def _stream_worker(self, client: _Client) -> None:
        assert self._stream_path is not None
        with self._state_lock:
            self._clients.add(client)
        try:
            while not self._stop.is_set():
                if not self._claim("stream"):
                    break
                outcome = client.request(self._stream_path, "stream")
                self.stats.record("stream", outcome)
                pause = _STREAM_PAUSE if outcome.ok else _STREAM_PAUSE_AFTER_FAILURE
                if self._stop.wait(pause):
                    break
        finally:
            client.drop()

    def _slow_dispatcher(self) -> None:
        assert self._slow_path is not None
        next_at = time.monotonic()
        while not self._stop.is_set():
            # Wait for a free slot (bounded in-flight), then for the next tick.
            while not self._slow_in_flight.acquire(timeout=0.2):
                if self._stop.is_set():
                    return
            if self._stop.is_set() or not self._claim("slow"):
                self._slow_in_flight.release()
                return
            client = _Client(self, keepalive=False)
            with self._state_lock:
                self._clients.add(client)
            self._spawn(self._slow_one, "loadgen-slow-req", client)
            next_at = max(next_at + self._slow_every, time.monotonic())
            if self._stop.wait(max(0.0, next_at - time.monotonic())):
                return

    def _slow_one(self, client: _Client) -> None:
        assert self._slow_path is not None
        try:
            self.stats.record("slow", client.request(self._slow_path, "slow"))
        finally:
            client.drop()
            with self._state_lock:
                self._clients.discard(client)
            self._slow_in_flight.release()

    def _supervise(self) -> None:
        """Enforce ``max_seconds``, then drain: wait for in-flight requests, abort stragglers."""
        if not self._stop.wait(self._max_seconds):
            self._signal_stop("max_seconds")
        deadline = time.monotonic() + self.timeout + 0.5
        if not self._join_all(deadline):
            with self._state_lock:
                clients = list(self._clients)
            for client in clients:
                client.abort()
            self._join_all(time.monotonic() + 1.0)
        self._drained.set()

    def _join_all(self, deadline: float) -> bool:
        while True:  # slow requests may still be spawning threads: re-read the list
            with self._state_lock:
                threads = list(self._threads)
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            with self._state_lock:
                alive = [t for t in self._threads if t.is_alive()]
                grew = len(self._threads) != len(threads)
            if not alive and not grew:
                return True
            if time.monotonic() >= deadline:
                return not alive


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m projectdeployer.rehearse.loadgen",
        description="Send continuous HTTP load to one URL and count every failed request.",
    )
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--host", dest="host_header", help="Host header (and TLS SNI)")
    parser.add_argument("--keepalive-share", type=float, default=0.5)
    parser.add_argument("--slow-path")
    parser.add_argument("--slow-every", type=float, default=0.0, help="seconds between slow requests")
    parser.add_argument("--stream-path")
    parser.add_argument("--streams", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--verify-tls", action="store_true")
    parser.add_argument("--ca-file")
    parser.add_argument("--no-retry-stale-keepalive", dest="retry", action="store_false", help="count even the stale keep-alive race as a failure")
    args = parser.parse_args(argv)

    gen = LoadGenerator(
        args.url,
        rate=args.rate,
        concurrency=args.concurrency,
        host_header=args.host_header,
        keepalive_share=args.keepalive_share,
        slow_path=args.slow_path,
        slow_every=args.slow_every,
        stream_path=args.stream_path,
        streams=args.streams,
        timeout=args.timeout,
        max_seconds=args.seconds,
        max_requests=args.max_requests,
        verify_tls=args.verify_tls,
        ca_file=args.ca_file,
        retry_stale_keepalive=args.retry,
    )
    target = gen.target
    print(
        f"loadgen {args.url} (Host: {target.host_header}) rate={args.rate:g}/s "
        f"seconds={args.seconds:g} concurrency={args.concurrency} "
        f"({gen.keepalive_workers} keep-alive, {args.concurrency - gen.keepalive_workers} fresh)",
        flush=True,
    )
    gen.start()
    try:
        gen.wait_done(args.seconds + args.timeout + 5.0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    result = gen.stop()
    print(result.summary(), flush=True)
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
