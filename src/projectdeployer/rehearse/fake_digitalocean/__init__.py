"""A fake DigitalOcean: a stateful DigitalOcean API over real HTTP(S), for rehearsing a cloud
deploy on one machine and for the tests (docs/rehearse.md).

Start it with ``python -m projectdeployer.rehearse.fake_digitalocean`` and point the product (or
pydo) at it with ``DIGITALOCEAN_API_URL``. In Python::

    with FakeDigitalOcean() as fake:
        client = pydo.Client(token="any", endpoint=fake.url)
"""

from .cloud import Addresses, ApiError, Cloud, Droplet, Machines, MemoryMachines
from .server import FakeDigitalOcean, RateLimiter, self_signed

__all__ = ["Addresses", "ApiError", "Cloud", "Droplet", "FakeDigitalOcean", "Machines", "MemoryMachines", "RateLimiter", "self_signed"]
