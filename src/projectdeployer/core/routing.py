"""Routes: what the routing plugin (the nginx sidecar) must serve for one service.

Also the routing contract every router and certificate plugin shares: :class:`RoutingError`,
:func:`check_domain` and the host name apps reach the router by (:data:`SIDECAR_HOST`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import attrs

from .errors import ProjectDeployerError

if TYPE_CHECKING:
    import pluggy

    from .provider import Server

#: The host name apps use for the router (the nginx sidecar's alias on the project network).
SIDECAR_HOST = "nginx"

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}\Z", re.IGNORECASE)


@attrs.frozen(kw_only=True)
class DomainTarget:
    """Where public DNS must send one domain (what ``publish_domains`` receives): per zone, the
    public addresses of the servers that serve its service there now."""

    domain: str
    service: str
    #: The service's health path, for a load balancer's monitor.
    health_path: str
    #: zone -> public addresses, in order; a zone with no server of the service is absent.
    zones: Mapping[str, tuple[str, ...]]


class RoutingError(ProjectDeployerError):
    """Routes could not be applied; the configuration that was live before is still live."""


def check_domain(domain: str) -> str:
    """Return ``domain`` in lower case, or raise :class:`RoutingError` for an invalid name.

    A host name (labels of letters, digits and inner hyphens, 253 characters at most), optionally
    a wildcard ``*.example.com``. Anything else could not be a ``server_name`` (and could smuggle
    nginx syntax into the configuration), so it is refused before anything is rendered.
    """
    if not isinstance(domain, str) or len(domain) > 253 or not _DOMAIN.match(domain):
        raise RoutingError(f"invalid domain {domain!r}: expected a host name such as api.example.com")
    return domain.lower()


@attrs.frozen(kw_only=True)
class Backend:
    """One place a service answers: a container name on the same server or an address:port."""

    host: str
    port: int


@attrs.frozen(kw_only=True)
class Route:
    """``nginx:<internal_port>`` -> backends; plus ``domain`` server blocks for web services."""

    service: str
    internal_port: int
    protocol: Literal["http", "tcp"]
    backends: tuple[Backend, ...]
    domain: str | None = None


def domain_certificates(manager: pluggy.PluginManager, server: Server, project: str, env: str, routes: Sequence[Route]) -> dict[str, tuple[str, str]]:
    """``(cert_pem, key_pem)`` for each domain of ``routes`` from ``manager``'s
    ``obtain_certificate`` hook (self-signed last): what the deploy hands ``configure_routing``
    as ``certificates``. A domain no plugin answers for is left out; no domain, no hook call."""
    domains = sorted({r.domain for r in routes if r.domain is not None})
    certificates = {}
    for domain in domains:
        pair = manager.hook.obtain_certificate(project=project, env=env, domain=domain, servers=[server])
        if pair is not None:
            certificates[domain] = pair
    return certificates
