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
    parser.add_argument("--servers", action="store_true", help="droplets are real servers (sandbox servers of this machine's Docker engine, reachable over SSH)")
    parser.add_argument("--namespace", default="rehearsal", help="with --servers: the name this fake's servers are labelled with (default rehearsal)")
    args = parser.parse_args(argv)
    certificate = self_signed(Path(tempfile.mkdtemp(prefix="fake-do-")), args.host) if args.tls else None
    machines = None
    if args.servers:
        from .sandbox_machines import SandboxMachines  # noqa: PLC0415 - deferred: the docker SDK, only with --servers

        machines = SandboxMachines(args.namespace)
    fake = FakeDigitalOcean(Cloud(machines, action_seconds=args.action_seconds), host=args.host, port=args.port, tokens=set(args.token) if args.token else None, certificate=certificate)
    print(f"DIGITALOCEAN_API_URL={fake.url}", flush=True)
    if certificate is not None:
        print(f"certificate (pass as connection_verify / REQUESTS_CA_BUNDLE): {certificate[0]}", flush=True)
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if machines is not None:
            print("removing the droplets' servers", flush=True)
            machines.purge()
    return 0


if __name__ == "__main__":
    sys.exit(main())
