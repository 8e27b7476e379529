"""The example API: reads a greeting from PostgreSQL and counts visits in Redis.

It finds both through the variables ProjectDeployer sets for ``env_vars = {DATABASE_URL =
"auto", REDIS_URL = "auto"}``: ``DATABASE_URL_FILE`` / ``REDIS_URL_FILE`` name private files
holding the full URLs (passwords are never in the environment).
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import pg8000.native
import redis


def _url(name: str) -> str:
    path = os.environ.get(f"{name}_FILE")
    return open(path).read().strip() if path else os.environ[name]


def pg() -> pg8000.native.Connection:
    url = urlparse(_url("DATABASE_URL"))
    return pg8000.native.Connection(
        user=unquote(url.username or ""), password=unquote(url.password or ""),
        host=url.hostname, port=url.port or 5432, database=url.path.lstrip("/"), timeout=5,
    )


def setup() -> None:
    for attempt in range(60):
        try:
            conn = pg()
            conn.run("CREATE TABLE IF NOT EXISTS greetings (id serial PRIMARY KEY, text text NOT NULL)")
            if not conn.run("SELECT 1 FROM greetings LIMIT 1"):
                conn.run("INSERT INTO greetings (text) VALUES (:t)", t="Hello from PostgreSQL")
            conn.close()
            return
        except Exception as exc:  # noqa: BLE001 - the database may still be starting
            print(f"waiting for the database ({exc})", flush=True)
            time.sleep(1)
    raise SystemExit("no database")


class Handler(BaseHTTPRequestHandler):
    # Headers and body go out as separate writes; without TCP_NODELAY, delayed ACKs on the
    # proxy's kept-alive upstream connection add ~40 ms to every response.
    disable_nagle_algorithm = True
    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if path == "/health":
            return self._json(200, {"ok": True})
        if path in ("/", "/api/", "/api"):
            conn = pg()
            greeting = conn.run("SELECT text FROM greetings ORDER BY id LIMIT 1")[0][0]
            conn.close()
            visits = redis.Redis.from_url(_url("REDIS_URL"), socket_timeout=5).incr("visits")
            return self._json(200, {"greeting": greeting, "visits": visits, "version": os.environ.get("APP_VERSION", "1")})
        return self._json(404, {"error": "not found"})

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    setup()
    port = int(os.environ.get("PORT", "8000"))
    print(f"api listening on {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
