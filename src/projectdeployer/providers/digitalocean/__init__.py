"""The ``digitalocean`` provider: droplets in DigitalOcean's regions (through pydo).

Registration only for now: it declares the regions so project files are validated against
them; creating droplets arrives with the multi-server capability.
"""

from __future__ import annotations

from collections.abc import Callable

from ...core.errors import ProjectDeployerError
from ...core.provider import Provider
from ...hookspecs import hookimpl

#: DigitalOcean's region slugs (the seed lists lon1, nyc1, nyc3, sfo3, sgp1, fra1, tor1, ams3, blr1).
REGIONS = frozenset({"nyc1", "nyc2", "nyc3", "sfo1", "sfo2", "sfo3", "ams2", "ams3", "sgp1", "lon1", "fra1", "tor1", "blr1", "syd1", "atl1"})


def _factory() -> Provider:
    raise ProjectDeployerError("the DigitalOcean provider is not available yet in this version of ProjectDeployer")


@hookimpl
def register_providers(register: Callable[..., None]) -> None:
    register("digitalocean", _factory, zones=REGIONS)
