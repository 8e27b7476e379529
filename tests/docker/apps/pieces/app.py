"""An app of the usual shape that wants separate settings: it reads POSTGRES_SERVER, _PORT,
_USER, _DB and the password from the environment (POSTGRES_PASSWORD), as ProjectDeployer gives
them with ``"auto:postgres.*"`` pieces and ``secrets_in_env = true``.

At start it connects (retrying for a minute), prints one ``REPORT {json}`` line (never the
password), then serves GET /health; on SIGTERM it prints ``SIGTERM received`` and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pg8000.native


def connect() -> dict:
    settings = {k: os.environ.get(k) for k in ("POSTGRES_SERVER", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_DB")}
    password = os.environ.get("POSTGRES_PASSWORD")
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = pg8000.native.Connection(
                user=settings["POSTGRES_USER"],
                password=password,
                host=settings["POSTGRES_SERVER"],
                port=int(settings["POSTGRES_PORT"] or 0),
                database=settings["POSTGRES_DB"],
                timeout=5,
            )
            break
        except Exception as exc:  # noqa: BLE001 - the database may still be starting
            if time.monotonic() > deadline:
                print(f"cannot connect: {type(exc).__name__}", flush=True)
                sys.exit(1)
            time.sleep(0.5)
    ((user, database),) = conn.run("SELECT current_user, current_database()")
    conn.close()
    file_name = os.environ.get("POSTGRES_PASSWORD_FILE")
    with open(file_name) as handle:
        same_as_file = handle.read().strip() == password
    return {
        **settings,
        "current_user": user,
        "current_database": database,
        "password_from_env": bool(password),
        "password_file": file_name,
        "same_as_file": same_as_file,
        "pid": os.getpid(),
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def stop(signum: int, frame: object) -> None:
    print("SIGTERM received", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    print("REPORT " + json.dumps(connect()), flush=True)
    HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler).serve_forever()
