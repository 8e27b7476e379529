"""The data-survival test API: writes and reads rows in PostgreSQL and keys in Redis.

It connects exactly as ProjectDeployer tells it to (``env_vars = {DATABASE_URL = "auto",
REDIS_URL = "auto"}``): the full URLs, passwords included, are in the files named by
``DATABASE_URL_FILE`` / ``REDIS_URL_FILE``. Every request reads those files and opens new
connections, so a rotated password is used as soon as a deploy gives the container the new file.

POST /rows?v=TEXT      insert a row, -> {"id": N}
GET  /rows             -> {"rows": [TEXT, ...]} in insertion order
POST /keys?k=K&v=V     SET survival:K V
GET  /keys             -> {"keys": {K: V, ...}}
GET  /info             -> {"version", "mark", "max_connections", "db_user", "backend_pid"}
GET  /health           -> {"ok": true} (no database: the deploy's check is the process only)
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import pg8000.native
import redis

VERSION = "1"
PREFIX = "survival:"


def _url(name: str) -> str:
    with open(os.environ[f"{name}_FILE"]) as handle:
        return handle.read().strip()


def pg() -> pg8000.native.Connection:
    url = urlparse(_url("DATABASE_URL"))
    conn = pg8000.native.Connection(
        user=unquote(url.username or ""),
        password=unquote(url.password or ""),
        host=url.hostname,
        port=url.port or 5432,
        database=url.path.lstrip("/"),
        timeout=5,
    )
    conn.run("CREATE TABLE IF NOT EXISTS survival (id serial PRIMARY KEY, v text NOT NULL)")
    return conn


def rds() -> redis.Redis:
    return redis.Redis.from_url(_url("REDIS_URL"), socket_timeout=5, socket_connect_timeout=5, decode_responses=True)


class Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/health":
            return self._json(200, {"ok": True})
        try:
            if (method, url.path) == ("POST", "/rows"):
                conn = pg()
                try:
                    (row,) = conn.run("INSERT INTO survival (v) VALUES (:v) RETURNING id", v=query["v"])
                finally:
                    conn.close()
                return self._json(200, {"id": row[0]})
            if (method, url.path) == ("GET", "/rows"):
                conn = pg()
                try:
                    rows = conn.run("SELECT v FROM survival ORDER BY id")
                finally:
                    conn.close()
                return self._json(200, {"rows": [r[0] for r in rows]})
            if (method, url.path) == ("POST", "/keys"):
                with rds() as client:
                    client.set(PREFIX + query["k"], query["v"])
                return self._json(200, {"ok": True})
            if (method, url.path) == ("GET", "/keys"):
                with rds() as client:
                    names = sorted(client.scan_iter(match=PREFIX + "*"))
                    values = client.mget(names) if names else []
                return self._json(200, {"keys": {n[len(PREFIX) :]: v for n, v in zip(names, values, strict=True)}})
            if (method, url.path) == ("GET", "/info"):
                conn = pg()
                try:
                    (row,) = conn.run("SELECT current_setting('max_connections'), current_user, pg_backend_pid()")
                finally:
                    conn.close()
                return self._json(200, {"version": VERSION, "mark": os.environ.get("MARK", ""), "max_connections": int(row[0]), "db_user": row[1], "backend_pid": row[2]})
        except Exception as exc:  # noqa: BLE001 - the test polls until the databases answer
            return self._json(503, {"error": f"{type(exc).__name__}: {exc}"})
        return self._json(404, {"error": "not found"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"survival api listening on {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
