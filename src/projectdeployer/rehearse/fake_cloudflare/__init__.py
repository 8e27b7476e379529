"""A fake Cloudflare: a stateful Cloudflare v4 API (zones, DNS records, load balancing) over
real HTTP, whose load balancers really forward to their pools' origins, for rehearsing a
multi-region deploy on one machine and for the tests (docs/rehearse.md).

Start it with ``python -m projectdeployer.rehearse.fake_cloudflare --zone example.com`` and
point the product (or the ``cloudflare`` SDK) at it with ``CLOUDFLARE_BASE_URL``. In Python::

    with FakeCloudflare(["example.com"]) as fake:
        client = cloudflare.Cloudflare(api_token="any", base_url=fake.url)
"""

from .dns import TxtSink, Zone
from .errors import ApiError
from .server import FakeCloudflare, RateLimiter
from .steering import COUNTRY_HEADER, POP_HEADER, REGION_HEADER

__all__ = ["COUNTRY_HEADER", "POP_HEADER", "REGION_HEADER", "ApiError", "FakeCloudflare", "RateLimiter", "TxtSink", "Zone"]
