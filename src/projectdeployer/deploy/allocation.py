"""Server allocation (pure): which servers each zone needs and which services run on which.

The rule, per zone (the zones of an environment are ``[environments.X] zones`` when set — every
stateless service then runs in each of them — else each service's ``server_zone``; stateful
services and scheduled jobs always stay in their own ``server_zone``):

* the zone needs ``N = max(servers_count)`` servers over the services it runs;
* servers are taken in a stable order — the active ones first, then reserve ones, each by the
  ``slot`` the deploy gave it at creation, then by name — so the same servers keep the same
  services from one deploy to the next (no reshuffle when a count grows or shrinks, whatever
  names parallel creation handed out);
* a service with ``servers_count = k`` runs on the first ``k`` of them; stateful services (one
  data directory) and scheduled jobs run on the first server only;
* existing servers beyond ``N`` are drained and destroyed; missing ones are created, sized for
  the largest ``server_cpu`` / ``server_memory`` of the services they will run.

Server states follow the seed: ``active`` (runs services), ``reserve`` (provisioned, runs
nothing), ``destroying`` (being removed). Nothing here does I/O: the deploy reads the servers,
calls :func:`allocate`, then carries the result out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

import attrs

from ..core.model import ServiceSpec

ACTIVE, RESERVE, DESTROYING = "active", "reserve", "destroying"
STATES = (ACTIVE, RESERVE, DESTROYING)


@attrs.frozen(kw_only=True)
class ServerState:
    """A server as the provider lists it."""

    name: str
    zone: str
    state: str = ACTIVE
    #: Its place in the zone's order when the deploy created it (the ``slot`` tag).
    slot: int | None = None


def state_of(server: object) -> str:
    """The status tag a provider listed for ``server`` (``active`` when it has none)."""
    return str(getattr(server, "state", None) or getattr(server, "tags", {}).get("state", ACTIVE))


def slot_of(server: object) -> int | None:
    """The ``slot`` tag a deploy gave ``server`` when it created it, if any."""
    value = str(getattr(server, "tags", {}).get("slot", ""))
    return int(value) if value.isdigit() else None


@attrs.frozen(kw_only=True)
class ServerSlot:
    """What happens to one server slot of a zone."""

    zone: str
    #: The server's name; ``None`` for one still to be created.
    name: str | None
    #: keep, create, destroy
    action: str
    #: Position in the zone's order (0 = the first server: stateful services and jobs).
    index: int
    services: tuple[str, ...] = ()
    cpu: int = 1
    memory: int = 1024

    @property
    def label(self) -> str:
        return self.name or f"{self.zone}#{self.index + 1} (new)"


@attrs.frozen(kw_only=True)
class Allocation:
    """The servers of an environment and the placement of its services."""

    servers: tuple[ServerSlot, ...]
    #: service -> the labels of the servers it runs on, in order.
    placement: Mapping[str, tuple[str, ...]]

    def zone(self, zone: str) -> list[ServerSlot]:
        return [s for s in self.servers if s.zone == zone and s.action != "destroy"]

    @property
    def to_create(self) -> list[ServerSlot]:
        return [s for s in self.servers if s.action == "create"]

    @property
    def to_destroy(self) -> list[ServerSlot]:
        return [s for s in self.servers if s.action == "destroy"]

    def counts(self) -> dict[str, dict[str, int]]:
        """The seed's status shape after the allocation: ``{zone: {active, reserve, destroying, total}}``."""
        out: dict[str, dict[str, int]] = {}
        for s in self.servers:
            row = out.setdefault(s.zone, {ACTIVE: 0, RESERVE: 0, DESTROYING: 0, "total": 0})
            state = DESTROYING if s.action == "destroy" else (ACTIVE if s.services else RESERVE)
            row[state] += 1
            row["total"] += 1
        return out


def service_zones(spec: ServiceSpec, env_zones: Iterable[str], *, stateful: bool) -> list[str]:
    """The zones ``spec`` runs in."""
    zones = list(dict.fromkeys(env_zones))
    if not zones or stateful or spec.is_scheduled:
        return [spec.server_zone]
    return zones


def allocate(
    services: Mapping[str, ServiceSpec],
    existing: Iterable[ServerState],
    *,
    env_zones: Iterable[str] = (),
    stateful: Iterable[str] = (),
    max_servers: int | None = None,
    zone_of: Callable[[str], str] | None = None,
) -> Allocation:
    """Allocate ``services`` (name -> spec, as the environment sees them) onto ``existing``
    servers plus the ones to create; ``stateful`` names the one-data-directory services.
    ``max_servers``: the provider's limit of servers per zone (this machine: 1), so a
    ``servers_count`` above it runs on that many; ``zone_of``: the provider's zone for a zone
    a service asks for (this machine's one pseudo-zone for every zone)."""
    one_only = set(stateful)
    env_zones = list(env_zones)
    wanted: dict[str, dict[str, int]] = {}  # zone -> service -> count
    for name, spec in services.items():
        single = name in one_only or spec.is_scheduled
        count = 1 if single else max(1, spec.servers_count)
        if max_servers is not None:
            count = min(count, max_servers)
        zones = service_zones(spec, env_zones, stateful=single)
        for zone in dict.fromkeys(zone_of(z) for z in zones) if zone_of is not None else zones:
            wanted.setdefault(zone, {})[name] = count
    by_zone: dict[str, list[ServerState]] = {}
    for server in existing:
        by_zone.setdefault(server.zone, []).append(server)
    plans: list[ServerSlot] = []
    placement: dict[str, list[str]] = {}
    for zone in sorted(set(wanted) | set(by_zone)):
        counts = wanted.get(zone, {})
        needed = max(counts.values(), default=0)
        order = sorted(
            (s for s in by_zone.get(zone, []) if s.state != DESTROYING),
            # Servers from before slots first (they are the older ones), then by slot.
            key=lambda s: (s.state != ACTIVE, s.slot is not None, s.slot or 0, _natural(s.name)),
        )
        leaving = [s for s in by_zone.get(zone, []) if s.state == DESTROYING]
        for index in range(needed):
            runs = tuple(n for n, k in counts.items() if index < k)
            cpu = max((services[n].server_cpu for n in runs), default=1)
            memory = max((services[n].server_memory for n in runs), default=1024)
            current = order[index] if index < len(order) else None
            plan = ServerSlot(zone=zone, name=current.name if current else None, action="keep" if current else "create", index=index, services=runs, cpu=cpu, memory=memory)
            plans.append(plan)
            for n in runs:
                placement.setdefault(n, []).append(plan.label)
        for index, extra in enumerate(order[needed:] + leaving, start=needed):
            plans.append(ServerSlot(zone=zone, name=extra.name, action="destroy", index=index))
    return Allocation(servers=tuple(plans), placement={n: tuple(v) for n, v in placement.items()})


def _natural(name: str) -> tuple[object, ...]:
    """``app-lon1-10`` after ``app-lon1-9``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


__all__ = ["ACTIVE", "DESTROYING", "RESERVE", "Allocation", "ServerSlot", "ServerState", "allocate", "service_zones", "slot_of", "state_of"]
