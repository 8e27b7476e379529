"""Open TCP connections of a network namespace, read from ``/proc/net/tcp`` and ``tcp6``.

The sidecar's drain waits until nothing is connected to the backends a switch retired: every
upstream connection nginx opened to an old container is a row of these tables (in the sidecar's
network namespace) whose remote end is that container's address and port. Counting them is
exact where "are old nginx workers still alive" is not: an old worker also lives on for every
long connection to a backend that did not change (a database session, a websocket), and waiting
for those would make every deploy wait out its timeout.

Pure parsing; the caller reads the files (``cat /proc/net/tcp /proc/net/tcp6`` in the container).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

#: Connection states (``include/net/tcp_states.h``) in which a request may still be in flight:
#: connecting, or established. A socket nginx has closed (FIN_WAIT*, TIME_WAIT, CLOSE) or whose
#: backend has closed (CLOSE_WAIT) carries nothing more to the client.
IN_FLIGHT_STATES = frozenset({"01", "02"})  # ESTABLISHED, SYN_SENT

Endpoint = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def _address(field: str) -> Endpoint:
    """``0100007F:1F90`` -> (127.0.0.1, 8080); IPv6 addresses are four host-order 32-bit words."""
    raw_ip, _, raw_port = field.partition(":")
    data = bytes.fromhex(raw_ip)
    # The kernel prints each 32-bit word of the address in host byte order (little-endian here).
    words = b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return ip, int(raw_port, 16)


def connections(text: str) -> Iterator[tuple[Endpoint, Endpoint, str]]:
    """``(local, remote, state)`` for each row of ``/proc/net/tcp`` / ``tcp6`` text (header
    lines and anything unparsable are skipped)."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or ":" not in fields[1] or fields[0] == "sl":
            continue
        try:
            yield _address(fields[1]), _address(fields[2]), fields[3].upper()
        except ValueError:
            continue


def in_flight_to(text: str, targets: Iterable[tuple[str, int]]) -> int:
    """How many connections in ``text`` are in flight to one of ``targets`` (``(ip, port)``)."""
    wanted = {(ipaddress.ip_address(host), int(port)) for host, port in targets}
    if not wanted:
        return 0
    return sum(1 for _, remote, state in connections(text) if state in IN_FLIGHT_STATES and remote in wanted)


__all__ = ["IN_FLIGHT_STATES", "connections", "in_flight_to"]
