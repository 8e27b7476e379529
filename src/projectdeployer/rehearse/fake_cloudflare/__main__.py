"""``python -m projectdeployer.rehearse.fake_cloudflare``: serve a fake Cloudflare (the v4 API
and its load balancers' data plane) until interrupted, printing the ``CLOUDFLARE_BASE_URL`` and
the data plane's address."""

from __future__ import annotations

import argparse
import sys

from .server import FakeCloudflare
from .steering import REGION_HEADER


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, serve, return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m projectdeployer.rehearse.fake_cloudflare", description="Serve a fake Cloudflare v4 API and its load balancers (docs/rehearse.md).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8791, help="the API's port (default 8791; 0: any free one)")
    parser.add_argument("--proxy-port", type=int, default=8792, help="the load balancers' data plane port (default 8792; 0: any free one)")
    parser.add_argument("--zone", action="append", default=[], help="a zone the account has, e.g. example.com (repeatable)")
    parser.add_argument("--token", action="append", help="accept only this API token (repeatable; default: any)")
    parser.add_argument("--challtestsrv", metavar="URL", help="pebble-challtestsrv's management URL: _acme-challenge TXT records are handed to it")
    args = parser.parse_args(argv)
    fake = FakeCloudflare(args.zone, host=args.host, port=args.port, proxy_port=args.proxy_port, tokens=set(args.token) if args.token else None, challtestsrv_url=args.challtestsrv)
    print(f"CLOUDFLARE_BASE_URL={fake.url}", flush=True)
    print(f"data plane: {fake.dataplane_url} (Host: the load balancer's name; {REGION_HEADER}: the client's region)", flush=True)
    print(f"account id: {fake.account_id}", flush=True)
    for zone in fake.dns.find_zones(None):
        print(f"zone {zone.name}: {zone.id}", flush=True)
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
