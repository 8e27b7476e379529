"""Answers HTTP with the versions of psycopg2 and of the libpq it loaded at start-up.

Importing psycopg2 proves the image has the run-time library (libpq5) and a psycopg2 built
from source (the -binary wheel bundles its own libpq and is not installed here).
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.extensions

INFO = {
    "app": "poetry-psycopg",
    "psycopg2": psycopg2.__version__,
    "libpq": psycopg2.extensions.libpq_version(),
    "psycopg2_file": psycopg2.__file__,
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(INFO).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler).serve_forever()
