"""A tiny JSON API (standard library only, plus the packages in requirements.txt).

GET /        -> {"service": "python-api", "version": ...}
GET /health  -> {"ok": true}
GET /slow?ms=N -> answers after N milliseconds (for draining tests)
GET /stream?seconds=N -> a chunked response, one chunk every 100 ms for N seconds
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import itsdangerous  # from requirements.txt: proves the dependency was installed

VERSION = os.environ.get("APP_VERSION", "1")


class Handler(BaseHTTPRequestHandler):
    # Headers and body go out as separate writes; without TCP_NODELAY, delayed ACKs on the
    # proxy's kept-alive upstream connection add ~40 ms to every response.
    disable_nagle_algorithm = True
    # HTTP/1.1: keep-alive connections and chunked streaming, as real app servers do.
    protocol_version = "HTTP/1.1"

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/health":
            if os.environ.get("BROKEN"):
                self._json(500, {"ok": False, "why": "BROKEN is set"})
            else:
                self._json(200, {"ok": True})
        elif url.path == "/slow":
            time.sleep(int(parse_qs(url.query).get("ms", ["500"])[0]) / 1000)
            self._json(200, {"slow": True, "version": VERSION})
        elif url.path == "/stream":
            seconds = float(parse_qs(url.query).get("seconds", ["3"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            deadline = time.monotonic() + seconds
            count = 0
            while time.monotonic() < deadline:
                chunk = f"chunk {count} from {VERSION}\n".encode()
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
                count += 1
                time.sleep(0.1)
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/":
            self._json(200, {"service": "python-api", "version": VERSION, "itsdangerous": itsdangerous.__name__})
        else:
            self._json(404, {"error": "not found"})

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"python-api {VERSION} listening on {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
