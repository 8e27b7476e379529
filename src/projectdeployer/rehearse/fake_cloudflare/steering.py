"""Which pools, then which origins, a load balancer tries for one request: the data plane's
decisions, kept apart from its sockets.

A request names its client's location with headers (Cloudflare knows it from the data center
that answers; the fake is told): :data:`REGION_HEADER` (a region code such as ``WEU``),
:data:`COUNTRY_HEADER` (``GB``) and :data:`POP_HEADER` (``LHR``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs

REGION_HEADER = "X-Fake-Client-Region"
COUNTRY_HEADER = "X-Fake-Client-Country"
POP_HEADER = "X-Fake-Client-Pop"
#: Policies that pick among ``default_pools`` by ``random_steering`` weights. The fake keeps no
#: counts of requests or connections, so the "least" policies are weighted random too.
WEIGHTED = ("random", "least_outstanding_requests", "least_connections")

T = TypeVar("T")


@attrs.frozen
class Client:
    """Where a request comes from (any part unknown: ``None``)."""

    region: str | None = None
    country: str | None = None
    pop: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Client:
        """The client named by a request's ``X-Fake-Client-*`` headers."""

        lowered = {name.lower(): value for name, value in headers.items()}  # header names are case-blind

        def upper(name: str) -> str | None:
            value = (lowered.get(name.lower()) or "").strip().upper()
            return value or None

        return cls(region=upper(REGION_HEADER), country=upper(COUNTRY_HEADER), pop=upper(POP_HEADER))


def pool_order(balancer: Mapping[str, Any], client: Client, healthy: Callable[[str], bool], rng: random.Random) -> list[str]:
    """The pools to try, in order: the steered pools that are healthy, then the other healthy
    ``default_pools``, then the ``fallback_pool`` (healthy or not, as Cloudflare does)."""
    policy = balancer["steering_policy"]
    geo_maps = (balancer["pop_pools"].get(client.pop or ""), balancer["country_pools"].get(client.country or ""), balancer["region_pools"].get(client.region or ""))
    if policy == "":
        # Cloudflare's "": geo when any geo map is set, else off.
        policy = "geo" if any(balancer[k] for k in ("pop_pools", "country_pools", "region_pools")) else "off"
    steered: list[str] = list(balancer["default_pools"])
    if policy == "geo":
        steered = next((pools for pools in geo_maps if pools), steered)
    elif policy in WEIGHTED:
        weights = balancer["random_steering"] or {}
        default_weight = float(weights.get("default_weight", 1))
        steered = weighted_order(steered, lambda p: float(weights.get("pool_weights", {}).get(p, default_weight)), rng)
    order = [p for p in _unique([*steered, *balancer["default_pools"]]) if healthy(p)]
    if balancer["fallback_pool"] not in order:
        order.append(balancer["fallback_pool"])
    return order


def origin_order(origins: Iterable[Mapping[str, Any]], healthy: Callable[[Mapping[str, Any]], bool], rng: random.Random, *, any_health: bool = False) -> list[Mapping[str, Any]]:
    """A pool's enabled origins to try, healthy ones only (``any_health``: all of them, for a
    fallback pool with none healthy), in a weighted random order (``origin_steering: random``)."""
    usable = [o for o in origins if o["enabled"] and o["weight"] > 0 and (any_health or healthy(o))]
    return weighted_order(usable, lambda o: float(o["weight"]), rng)


def weighted_order(items: list[T], weight: Callable[[T], float], rng: random.Random) -> list[T]:
    """``items`` shuffled so that each comes first in proportion to its weight (weight 0: last)."""

    def key(item: T) -> float:
        w = weight(item)
        return rng.random() ** (1.0 / w) if w > 0 else -1.0

    return sorted(items, key=key, reverse=True)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
