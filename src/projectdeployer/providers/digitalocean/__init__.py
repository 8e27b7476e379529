"""The ``digitalocean`` provider: droplets in DigitalOcean's regions (through pydo).

The provider (``provider.py``) lists droplets by tag, creates them from the cheapest fitting
size into the environment's VPC and firewall, tags their state and slot, resizes and destroys
them; the API layer (``api.py``) handles DigitalOcean's errors, rate limits, pagination and
actions once. Both are imported when the provider is first used, not when plugins load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...core.provider import Provider
from ...hookspecs import hookimpl

#: DigitalOcean's region slugs (the seed lists lon1, nyc1, nyc3, sfo3, sgp1, fra1, tor1, ams3, blr1).
REGIONS = frozenset({"nyc1", "nyc2", "nyc3", "sfo1", "sfo2", "sfo3", "ams2", "ams3", "sgp1", "lon1", "fra1", "tor1", "blr1", "syd1", "atl1"})


class _Lazy:
    """Makes the provider on first use: its modules (and pydo) load only then."""

    def __call__(self) -> Provider:
        from .provider import DigitalOceanProvider  # noqa: PLC0415 - deferred: loaded with the plugins, used rarely

        return DigitalOceanProvider()

    @staticmethod
    def for_project(project: Any) -> Provider:
        """A provider whose template snapshots hold the project's nginx and Python images."""
        from .provider import DigitalOceanProvider  # noqa: PLC0415 - deferred: loaded with the plugins, used rarely

        return DigitalOceanProvider.for_project(project)


@hookimpl
def register_providers(register: Callable[..., None]) -> None:
    register("digitalocean", _Lazy(), zones=REGIONS, api_token=True)
