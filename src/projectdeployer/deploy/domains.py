"""What public DNS must say after a deploy: per domain, the servers that serve it, by zone.

:func:`domain_targets` turns the deploy's placement (service -> the servers it runs on) into the
:class:`~projectdeployer.core.routing.DomainTarget` list the ``publish_domains`` hook receives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..core.model import Project
from ..core.provider import Server
from ..core.routing import DomainTarget


def domain_targets(project: Project, env: str, placement: Mapping[str, Sequence[str]], servers: Mapping[str, Server]) -> list[DomainTarget]:
    """One target per service of ``env`` with a domain: the public addresses, per zone, of the
    servers in ``servers`` that ``placement`` puts it on (a server missing from ``servers``, one
    being removed, is left out). A service placed on no server has no target."""
    targets: list[DomainTarget] = []
    for name, spec in project.services_for(env).items():
        if not spec.domain:
            continue
        zones: dict[str, list[str]] = {}
        for server_name in placement.get(name, ()):
            server = servers.get(server_name)
            if server is not None:
                zones.setdefault(server.zone, []).append(server.public_address)
        if zones:
            targets.append(DomainTarget(domain=spec.domain, service=name, health_path=spec.health_path, zones={z: tuple(sorted(set(a))) for z, a in sorted(zones.items())}))
    return targets
