"""Port scheme: stable host/internal ports per (project, env, service), recorded on disk.

Each service gets a *host base* port (8000-8999), a *secondary* port (base + 10000) that the
toggle deploy alternates with, and a stable *internal* port (5000-5999) that apps reach as
``nginx:<internal>``. The preferred ports come from a sha256 digest (Python's ``hash()`` of a
str changes every process), collisions are resolved by linear probing, and the result is
recorded so that an assignment, once made, never moves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import attrs

from projectdeployer.core.errors import ProjectDeployerError
from projectdeployer.core.fsutil import atomic_write

HOST_BASE_RANGE = range(8000, 9000)
SECONDARY_OFFSET = 10000
INTERNAL_RANGE = range(5000, 6000)


@attrs.frozen
class PortAssignment:
    """The ports of one service: ``host`` (base of the toggle pair) and ``internal``."""

    host: int = attrs.field(validator=attrs.validators.in_(HOST_BASE_RANGE))
    internal: int = attrs.field(validator=attrs.validators.in_(INTERNAL_RANGE))

    @property
    def secondary(self) -> int:
        """The other host port of the toggle pair (18000-18999)."""
        return self.host + SECONDARY_OFFSET

    def other(self, port: int) -> int:
        """Return the other port of the toggle pair: host -> secondary, secondary -> host."""
        if port == self.host:
            return self.secondary
        if port == self.secondary:
            return self.host
        raise ValueError(f"port {port} is neither {self.host} nor {self.secondary}")


class PortsExhausted(ProjectDeployerError):
    """Every port of a range is already taken in one project/env."""


class PortRecordError(ProjectDeployerError, ValueError):
    """The port record is malformed or two of its services clash (a hand-edited file)."""


def _digest_slot(key: str) -> int:
    # First 8 bytes of sha256, so the value is the same in every process and on every machine.
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 1000


def preferred_host_port(project: str, env: str, service: str, container_port: int | None) -> int:
    """The host base port a service gets unless another service already holds it."""
    port = "0" if container_port is None else str(container_port)
    return HOST_BASE_RANGE.start + _digest_slot(f"{project}_{env}_{service}_{port}")


def preferred_internal_port(project: str, env: str, service: str) -> int:
    """The internal port a service gets unless another service already holds it."""
    return INTERNAL_RANGE.start + _digest_slot(f"{project}_{env}_{service}_internal")


def _probe(preferred: int, ports: range, taken: set[int], what: str, where: str) -> int:
    """First port not in ``taken``, from ``preferred`` upwards, wrapping around inside ``ports``."""
    size = len(ports)
    for step in range(size):
        port = ports.start + (preferred - ports.start + step) % size
        if port not in taken:
            return port
    raise PortsExhausted(f"{where}: all {size} {what} ports ({ports.start}-{ports.stop - 1}) are taken")


def _check_clashes(recorded: Mapping[str, PortAssignment], where: str) -> None:
    """Raise PortRecordError if two recorded services share a host base or an internal port."""
    hosts: dict[int, str] = {}
    internals: dict[int, str] = {}
    for name in sorted(recorded):
        a = recorded[name]
        for kind, port, owners in (("host", a.host, hosts), ("internal", a.internal, internals)):
            if port in owners:
                raise PortRecordError(f"{where}: services {owners[port]!r} and {name!r} both record {kind} port {port}")
            owners[port] = name


def allocate_ports(
    project: str,
    env: str,
    services: Mapping[str, int | None],
    recorded: Mapping[str, PortAssignment],
    busy: Collection[int] = (),
) -> dict[str, PortAssignment]:
    """Assign ports to ``services`` (name -> container port), keeping every ``recorded`` one.

    Recorded services still present keep their ports untouched; recorded services no longer
    present are dropped and free their ports. New services are assigned in sorted-name order
    so that the result does not depend on the mapping's order. ``busy``: host ports something
    else on the server publishes (another project's containers); a new service's pair never
    includes one of them (its first deploy would fail on a port already allocated).
    """
    where = f"{project}/{env}"
    _check_clashes(recorded, where)
    result = {name: recorded[name] for name in services if name in recorded}
    taken_hosts = {a.host for a in result.values()} | _blocked_bases(busy)
    taken_internals = {a.internal for a in result.values()}
    for name in sorted(set(services) - set(result)):
        host = _probe(
            preferred_host_port(project, env, name, services[name]),
            HOST_BASE_RANGE,
            taken_hosts,
            "host",
            f"{where} service {name!r}",
        )
        internal = _probe(
            preferred_internal_port(project, env, name),
            INTERNAL_RANGE,
            taken_internals,
            "internal",
            f"{where} service {name!r}",
        )
        taken_hosts.add(host)
        taken_internals.add(internal)
        result[name] = PortAssignment(host=host, internal=internal)
    return {name: result[name] for name in sorted(result)}


def _blocked_bases(busy: Collection[int]) -> set[int]:
    """Host base ports whose pair (base, base + SECONDARY_OFFSET) includes a ``busy`` port."""
    return {p for p in busy if p in HOST_BASE_RANGE} | {p - SECONDARY_OFFSET for p in busy if p - SECONDARY_OFFSET in HOST_BASE_RANGE}


class PortStore:
    """The record of one project/env: JSON ``{"api": {"host": 8123, "internal": 5321}}``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, PortAssignment]:
        """Read the record; a missing file is an empty record, a malformed one a PortRecordError."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise PortRecordError(f"{self.path}: malformed port record: {exc}") from exc
        if not isinstance(data, dict):
            raise PortRecordError(f"{self.path}: malformed port record: expected a JSON object")
        assignments: dict[str, PortAssignment] = {}
        for name, entry in data.items():
            # bool is an int subclass; `true` is never a port.
            if not isinstance(entry, dict) or set(entry) != {"host", "internal"} or not all(type(v) is int for v in entry.values()):
                raise PortRecordError(f'{self.path}: malformed port record for {name!r}: expected {{"host": <int>, "internal": <int>}}, got {entry!r}')
            try:
                assignments[name] = PortAssignment(host=entry["host"], internal=entry["internal"])
            except ValueError as exc:  # out of range
                raise PortRecordError(f"{self.path}: bad port record for {name!r}: {exc}") from exc
        _check_clashes(assignments, str(self.path))
        return assignments

    def save(self, assignments: Mapping[str, PortAssignment]) -> None:
        """Write the record atomically as sorted, indented JSON (stable for diffs)."""
        data = {name: {"host": a.host, "internal": a.internal} for name, a in assignments.items()}
        atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def assign(self, project: str, env: str, services: Mapping[str, int | None], busy: Callable[[], Collection[int]] | None = None) -> dict[str, PortAssignment]:
        """Load the record, allocate ``services``, save if anything changed, return the result.
        ``busy`` is asked for the host ports in use on the server only when a service has no
        recorded ports yet (recorded ports never move)."""
        recorded = self.load()
        fresh = busy is not None and any(name not in recorded for name in services)
        assignments = allocate_ports(project, env, services, recorded, busy() if fresh and busy else ())
        if assignments != recorded:
            self.save(assignments)
        return assignments
