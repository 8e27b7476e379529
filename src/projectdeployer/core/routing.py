"""Routes: what the routing plugin (the nginx sidecar) must serve for one service."""

from __future__ import annotations

from typing import Literal

import attrs


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
