"""The fake account's load balancing: monitors and pools (account-wide) and load balancers
(per zone), validated as Cloudflare does and kept as the JSON objects the API answers.

Load balancing is a paid add-on: with :attr:`LoadBalancing.enabled` off every call answers
403 (code 1002), the "not part of your subscription" answer a client must fall back from.
Pool ``healthy`` comes from the :class:`~.health.HealthChecker` through :attr:`pool_health`.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from . import fields
from .dns import Dns, hostname, new_id, timestamp
from .errors import IN_USE, NAME_TAKEN, NOT_ENTITLED, ApiError, invalid, not_found

MONITOR_TYPES = ("http", "https", "tcp", "udp_icmp", "icmp_ping", "smtp")
STEERING_POLICIES = ("off", "geo", "random", "dynamic_latency", "proximity", "least_outstanding_requests", "least_connections", "")
#: Cloudflare's load-balancing regions (``region_pools`` keys, ``check_regions``).
REGIONS = ("WNAM", "ENAM", "WEU", "EEU", "NSAM", "SSAM", "OC", "ME", "NAF", "SAF", "SAS", "SEAS", "NEAS")
POOL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
EXPECTED_CODES_RE = re.compile(r"^[1-5](\d\d|xx)$")

#: What a monitor is when a create leaves a field out (Cloudflare's defaults).
MONITOR_DEFAULTS: dict[str, Any] = {
    "type": "http",
    "description": "",
    "method": "GET",
    "path": "/",
    "header": {},
    "port": None,
    "timeout": 5,
    "retries": 2,
    "interval": 60,
    "expected_body": "",
    "expected_codes": "200",
    "follow_redirects": False,
    "allow_insecure": False,
    "consecutive_up": 0,
    "consecutive_down": 0,
    "probe_zone": "",
}


class LoadBalancing:
    """Monitors, pools and load balancers of one account, behind ``lock``.

    :param pool_health: the health of a pool by id (``None``: not checked yet), shown as the
        pool's ``healthy``.
    """

    def __init__(self, dns: Dns, lock: threading.RLock, pool_health: Callable[[str], bool | None]) -> None:
        self.dns = dns
        self.lock = lock
        self.pool_health = pool_health
        self.enabled = True
        self.monitors: dict[str, dict[str, Any]] = {}
        self.pools: dict[str, dict[str, Any]] = {}
        self.balancers: dict[str, dict[str, Any]] = {}

    def check_enabled(self) -> None:
        """403 when load balancing is not part of the subscription."""
        if not self.enabled:
            raise ApiError(403, NOT_ENTITLED, "Load Balancing is not enabled for this account: the feature is not allowed with this subscription.")

    # --- monitors ------------------------------------------------------------------------------

    def monitor(self, monitor_id: str) -> dict[str, Any]:
        """One monitor (404 when there is none)."""
        with self.lock:
            found = self.monitors.get(monitor_id)
        if found is None:
            raise not_found(f"monitor {monitor_id}")
        return found

    def put_monitor(self, body: Mapping[str, Any], monitor_id: str | None = None, *, full: bool = True) -> dict[str, Any]:
        """Create (no ``monitor_id``), replace (``full``) or edit a monitor."""
        with self.lock:
            old = self.monitor(monitor_id) if monitor_id else None
            base = dict(MONITOR_DEFAULTS) if full or old is None else dict(old)
            monitor = {**base, **_monitor_fields(body, base)}
            now = timestamp()
            monitor.update(id=old["id"] if old else new_id(), created_on=old["created_on"] if old else now, modified_on=now)
            self.monitors[monitor["id"]] = monitor
            return monitor

    def delete_monitor(self, monitor_id: str) -> str:
        """Delete a monitor no pool uses (409 while one does)."""
        with self.lock:
            self.monitor(monitor_id)
            users = [p["name"] for p in self.pools.values() if p.get("monitor") == monitor_id]
            if users:
                raise ApiError(409, IN_USE, f"This monitor is in use by the pools {', '.join(users)}; remove it from them first.")
            del self.monitors[monitor_id]
            return monitor_id

    # --- pools ---------------------------------------------------------------------------------

    def pool(self, pool_id: str) -> dict[str, Any]:
        """One pool, ``healthy`` included (404 when there is none)."""
        with self.lock:
            found = self.pools.get(pool_id)
        if found is None:
            raise not_found(f"pool {pool_id}")
        healthy = self.pool_health(pool_id)
        return {**found, "healthy": True if healthy is None else healthy}

    def all_pools(self) -> list[dict[str, Any]]:
        """Every pool, ``healthy`` included."""
        with self.lock:
            ids = list(self.pools)
        return [self.pool(i) for i in ids]

    def put_pool(self, body: Mapping[str, Any], pool_id: str | None = None, *, full: bool = True) -> dict[str, Any]:
        """Create (no ``pool_id``), replace (``full``) or edit a pool."""
        with self.lock:
            old = self.pools.get(pool_id) if pool_id else None
            if pool_id and old is None:
                raise not_found(f"pool {pool_id}")
            base: dict[str, Any] = (
                {"description": "", "enabled": True, "minimum_origins": 1, "monitor": None, "notification_email": "", "check_regions": None, "origin_steering": {"policy": "random"}}
                if full or old is None
                else dict(old)
            )
            pool = {**base, **self._pool_fields(body, base, full=full or old is None)}
            now = timestamp()
            pool.update(id=old["id"] if old else new_id(), created_on=old["created_on"] if old else now, modified_on=now, networks=["cloudflare"])
            self.pools[pool["id"]] = pool
            return self.pool(pool["id"])

    def delete_pool(self, pool_id: str) -> str:
        """Delete a pool no load balancer uses (409 while one does)."""
        with self.lock:
            self.pool(pool_id)
            users = [b["name"] for b in self.balancers.values() if pool_id in _pools_of(b)]
            if users:
                raise ApiError(409, IN_USE, f"This pool is in use by the load balancers {', '.join(users)}; remove it from them first.")
            del self.pools[pool_id]
            return pool_id

    def _pool_fields(self, body: Mapping[str, Any], base: Mapping[str, Any], *, full: bool) -> dict[str, Any]:
        name = fields.text(body, "name", None if full else base["name"])
        if not name or not POOL_NAME_RE.match(name):
            raise invalid("pool name is required: letters, digits, hyphens and underscores only")
        raw_origins = fields.objects(body, "origins", None if full else base["origins"])
        if not raw_origins:
            raise invalid("a pool needs at least one origin")
        monitor = fields.text(body, "monitor", base["monitor"])
        if monitor:
            self.monitor(monitor)
        minimum = fields.integer(body, "minimum_origins", base["minimum_origins"])
        if minimum < 1:
            raise invalid("minimum_origins must be at least 1")
        found = {
            "name": name,
            "origins": [_origin(o, i) for i, o in enumerate(raw_origins)],
            "monitor": monitor or None,
            "description": fields.text(body, "description", base["description"]),
            "enabled": fields.boolean(body, "enabled", base["enabled"]),
            "minimum_origins": minimum,
            "notification_email": fields.text(body, "notification_email", base["notification_email"]),
            "check_regions": _regions(fields.strings(body, "check_regions", base["check_regions"]), "check_regions"),
            "origin_steering": fields.mapping(body, "origin_steering", base["origin_steering"]),
        }
        for coordinate in ("latitude", "longitude"):
            value = fields.number(body, coordinate, base.get(coordinate))
            if value is not None:
                found[coordinate] = value
        return found

    # --- load balancers ------------------------------------------------------------------------

    def balancer(self, zone_id: str, lb_id: str) -> dict[str, Any]:
        """One load balancer of a zone (404 when there is none)."""
        zone = self.dns.zone(zone_id)
        with self.lock:
            found = self.balancers.get(lb_id)
        if found is None or found["zone_name"] != zone.name:
            raise not_found(f"load balancer {lb_id}")
        return found

    def balancers_of(self, zone_id: str) -> list[dict[str, Any]]:
        """The load balancers of a zone."""
        zone = self.dns.zone(zone_id)
        with self.lock:
            return [b for b in self.balancers.values() if b["zone_name"] == zone.name]

    def balancer_for_host(self, host: str) -> dict[str, Any] | None:
        """The enabled load balancer serving ``host``, if any (the data plane's lookup)."""
        with self.lock:
            return next((b for b in self.balancers.values() if b["name"] == host and b["enabled"]), None)

    def put_balancer(self, zone_id: str, body: Mapping[str, Any], lb_id: str | None = None, *, full: bool = True) -> dict[str, Any]:
        """Create (no ``lb_id``), replace (``full``) or edit a load balancer."""
        zone = self.dns.zone(zone_id)
        with self.lock:
            old = self.balancer(zone_id, lb_id) if lb_id else None
            base: dict[str, Any] = (
                {
                    "description": "",
                    "ttl": 30,
                    "proxied": False,
                    "enabled": True,
                    "steering_policy": "",
                    "region_pools": {},
                    "country_pools": {},
                    "pop_pools": {},
                    "session_affinity": "none",
                    "adaptive_routing": {"failover_across_pools": False},
                    "location_strategy": {"mode": "pop", "prefer_ecs": "proximity"},
                    "random_steering": {"default_weight": 1},
                    "rules": [],
                    "networks": ["cloudflare"],
                }
                if full or old is None
                else dict(old)
            )
            required = full or old is None
            name = fields.text(body, "name", None if required else base["name"])
            host = hostname(name) if name else None
            if host is None or not (host == zone.name or host.endswith("." + zone.name)):
                raise invalid(f"load balancer name {name!r} must be a full hostname inside the zone {zone.name}")
            if any(b["name"] == host and b["id"] != (old["id"] if old else None) for b in self.balancers.values()):
                raise ApiError(409, NAME_TAKEN, f"A load balancer for {host} already exists.")
            default_pools = fields.strings(body, "default_pools", None if required else base["default_pools"])
            fallback = fields.text(body, "fallback_pool", None if required else base["fallback_pool"])
            if not default_pools or not fallback:
                raise invalid("default_pools and fallback_pool are required")
            policy = fields.text(body, "steering_policy", base["steering_policy"])
            if policy not in STEERING_POLICIES:
                raise invalid(f"steering_policy must be one of {', '.join(repr(p) for p in STEERING_POLICIES)}")
            balancer = {
                **base,
                "name": host,
                "description": fields.text(body, "description", base["description"]),
                "default_pools": default_pools,
                "fallback_pool": fallback,
                "region_pools": fields.string_lists(body, "region_pools", base["region_pools"]),
                "country_pools": fields.string_lists(body, "country_pools", base["country_pools"]),
                "pop_pools": fields.string_lists(body, "pop_pools", base["pop_pools"]),
                "steering_policy": policy,
                "proxied": fields.boolean(body, "proxied", base["proxied"]),
                "enabled": fields.boolean(body, "enabled", base["enabled"]),
                "ttl": fields.integer(body, "ttl", base["ttl"]),
                "adaptive_routing": fields.mapping(body, "adaptive_routing", base["adaptive_routing"]),
                "random_steering": fields.mapping(body, "random_steering", base["random_steering"]),
            }
            _regions(list(balancer["region_pools"]), "region_pools")
            for pool_id in _pools_of(balancer):
                if pool_id not in self.pools:
                    raise invalid(f"pool {pool_id} does not exist")
            now = timestamp()
            balancer.update(id=old["id"] if old else new_id(), zone_name=zone.name, created_on=old["created_on"] if old else now, modified_on=now)
            self.balancers[balancer["id"]] = balancer
            return balancer

    def delete_balancer(self, zone_id: str, lb_id: str) -> str:
        """Delete a load balancer."""
        with self.lock:
            self.balancer(zone_id, lb_id)
            del self.balancers[lb_id]
            return lb_id


def _monitor_fields(body: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    kind = fields.text(body, "type", base["type"])
    if kind not in MONITOR_TYPES:
        raise invalid(f"monitor type must be one of {', '.join(MONITOR_TYPES)}")
    codes = fields.text(body, "expected_codes", base["expected_codes"])
    if kind in ("http", "https") and not all(EXPECTED_CODES_RE.match(c.strip()) for c in codes.split(",")):
        raise invalid("expected_codes must be a code or a class such as 200 or 2xx")
    found = {
        "type": kind,
        "expected_codes": codes,
        "description": fields.text(body, "description", base["description"]),
        "method": fields.text(body, "method", base["method"]),
        "path": fields.text(body, "path", base["path"]),
        "header": fields.string_lists(body, "header", base["header"]),
        "port": fields.integer(body, "port", base["port"]),
        "timeout": fields.integer(body, "timeout", base["timeout"]),
        "retries": fields.integer(body, "retries", base["retries"]),
        "interval": fields.integer(body, "interval", base["interval"]),
        "expected_body": fields.text(body, "expected_body", base["expected_body"]),
        "follow_redirects": fields.boolean(body, "follow_redirects", base["follow_redirects"]),
        "allow_insecure": fields.boolean(body, "allow_insecure", base["allow_insecure"]),
        "consecutive_up": fields.integer(body, "consecutive_up", base["consecutive_up"]),
        "consecutive_down": fields.integer(body, "consecutive_down", base["consecutive_down"]),
        "probe_zone": fields.text(body, "probe_zone", base["probe_zone"]),
    }
    # Cloudflare's smallest interval is 60 s (10 s on Enterprise); the fake takes 1 s and up so
    # that a rehearsal sees a pool go down within seconds.
    if found["interval"] < 1 or found["timeout"] < 1 or found["retries"] < 0:
        raise invalid("interval and timeout must be at least 1, retries at least 0")
    if kind in ("tcp", "smtp", "udp_icmp") and not found["port"]:
        raise invalid(f"a {kind} monitor needs a port")
    return found


def _origin(raw: Mapping[str, Any], index: int) -> dict[str, Any]:
    address = fields.text(raw, "address")
    if not address or (hostname(address) is None and not _is_ip(address)):
        raise invalid(f"origins[{index}].address must be an IP address or a hostname")
    weight = fields.number(raw, "weight", 1.0)
    if not 0 <= weight <= 1:
        raise invalid(f"origins[{index}].weight must be between 0 and 1")
    port = fields.integer(raw, "port", 0)
    if not 0 <= port <= 65535:
        raise invalid(f"origins[{index}].port must be a port number")
    origin: dict[str, Any] = {
        "name": fields.text(raw, "name", address),
        "address": address,
        "enabled": fields.boolean(raw, "enabled", True),
        "weight": weight,
        "port": port,
    }
    header = fields.string_lists(raw, "header")
    if header:
        origin["header"] = header
    return origin


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _regions(values: list[str] | None, field: str) -> list[str] | None:
    unknown = sorted(set(values or []) - set(REGIONS) - {"ALL_REGIONS", "CHINA"})
    if unknown:
        raise invalid(f"{field}: unknown regions {', '.join(unknown)} (regions: {', '.join(REGIONS)})")
    return values


def _pools_of(balancer: Mapping[str, Any]) -> set[str]:
    """Every pool a load balancer names."""
    found = {*balancer["default_pools"], balancer["fallback_pool"]}
    for key in ("region_pools", "country_pools", "pop_pools"):
        for pools in balancer[key].values():
            found.update(pools)
    return found
