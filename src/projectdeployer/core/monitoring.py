"""Values exchanged by the monitoring hooks: health checks, metric samples, alerts."""

from __future__ import annotations

from typing import Literal

import attrs


@attrs.frozen(kw_only=True)
class HealthCheck:
    """How to tell that a container of a service is ready and well."""

    kind: Literal["http", "tcp", "command", "image"]
    #: Container port probed (http/tcp).
    port: int | None = None
    #: HTTP path (http) or the command's arguments (command).
    path: str = "/"
    command: tuple[str, ...] = ()
    interval: float = 1.0
    timeout: float = 5.0
    #: How long a new container may take to become healthy before the deploy gives up.
    start_period: float = 60.0


@attrs.frozen(kw_only=True)
class MetricSample:
    """One measurement on one server."""

    server: str
    service: str | None
    name: Literal["cpu_percent", "memory_percent", "rps"]
    value: float
    timestamp: float


@attrs.frozen(kw_only=True)
class Alert:
    """Something an operator must hear about."""

    severity: Literal["info", "warning", "critical"]
    title: str
    body: str
    project: str | None = None
    env: str | None = None
    server: str | None = None
