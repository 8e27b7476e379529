"""A web app shaped like the usual FastAPI + SQLAlchemy one, in the standard library: a pool of
PostgreSQL connections opened when the process starts and reused for its whole life.

The pool never checks or reopens a connection (no ``pool_pre_ping``): a connection that the way
to the database cut shows as a failed request, which is what the test counts. ``POOL_SIZE=0``
runs the same app without a database (the pool-less twin the bench compares switch times with).

GET /            one query on a pooled connection -> {"version", "backend_pid"}
GET /stream      ?seconds=S: a chunked response, one chunk every 0.1 s for S seconds
GET /info        -> {"version", "pool": [backend pid of each pooled connection]}
GET /health      the process only: the deploy's check must not need the database
"""

from __future__ import annotations

import json
import os
import queue
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

# The image's version: a file of the build context, so a new version is a new image.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "version.txt")) as _version:
    VERSION = _version.read().strip()
POOL_SIZE = int(os.environ.get("POOL_SIZE", "4"))
POOL: queue.Queue = queue.Queue()
PIDS: list[int] = []


def _connect():  # type: ignore[no-untyped-def]
    import pg8000.native

    with open(os.environ["DATABASE_URL_FILE"]) as handle:
        url = urlparse(handle.read().strip())
    return pg8000.native.Connection(
        user=unquote(url.username or ""),
        password=unquote(url.password or ""),
        host=url.hostname,
        port=url.port or 5432,
        database=url.path.lstrip("/"),
        timeout=10,
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/health":
            self._json(200, {"ok": True})
        elif url.path == "/info":
            self._json(200, {"version": VERSION, "pool": PIDS})
        elif url.path == "/stream":
            seconds = float(parse_qs(url.query).get("seconds", ["2"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(seconds * 10)):
                chunk = f"{VERSION} {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(0.1)
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/":
            if not POOL_SIZE:
                self._json(200, {"version": VERSION, "backend_pid": None})
                return
            conn = POOL.get(timeout=10)
            try:
                pid = conn.run("SELECT pg_backend_pid()")[0][0]
            except Exception as exc:  # noqa: BLE001 - the failure the test looks for: a pooled connection cut, of whatever type the driver raises
                self._json(500, {"error": f"{type(exc).__name__}: {exc}"})
                return
            finally:
                POOL.put(conn)
            self._json(200, {"version": VERSION, "backend_pid": pid})
        else:
            self._json(404, {"error": "not found"})


def main() -> None:
    for _ in range(POOL_SIZE):
        conn = _connect()
        PIDS.append(conn.run("SELECT pg_backend_pid()")[0][0])
        POOL.put(conn)
    server = ThreadingHTTPServer(("0.0.0.0", 8000), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
