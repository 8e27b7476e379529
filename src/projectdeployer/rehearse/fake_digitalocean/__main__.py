"""``python -m projectdeployer.rehearse.fake_digitalocean``: serve a fake DigitalOcean API
until interrupted, printing the ``DIGITALOCEAN_API_URL`` to use."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .cloud import Cloud
from .server import FakeDigitalOcean, self_signed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projectdeployer.rehearse.fake_digitalocean", description="Serve a fake DigitalOcean API (docs/rehearse.md).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8790, help="port to listen on (default 8790; 0: any free one)")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a new self-signed certificate (its path is printed)")
    parser.add_argument("--token", action="append", help="accept only this API token (repeatable; default: any)")
    parser.add_argument("--action-seconds", type=float, default=1.0, help="the least time an action stays in-progress (default 1)")
    args = parser.parse_args(argv)
    certificate = self_signed(Path(tempfile.mkdtemp(prefix="fake-do-")), args.host) if args.tls else None
    fake = FakeDigitalOcean(Cloud(action_seconds=args.action_seconds), host=args.host, port=args.port, tokens=set(args.token) if args.token else None, certificate=certificate)
    print(f"DIGITALOCEAN_API_URL={fake.url}", flush=True)
    if certificate is not None:
        print(f"certificate (pass as connection_verify / REQUESTS_CA_BUNDLE): {certificate[0]}", flush=True)
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
