"""What the application service types (python, nodejs, react, generic) share."""

from __future__ import annotations

import attrs

from ..core.model import ServiceSpec
from ..core.monitoring import HealthCheck
from ..core.servicetype import ServiceType


@attrs.frozen(kw_only=True)
class AppType(ServiceType):
    """An application type: checked over HTTP when it has a port."""

    def health_checks(self, service: ServiceSpec) -> list[HealthCheck] | None:
        """HTTP on the service's port when it has one; otherwise the image's HEALTHCHECK (or running).

        Scheduled jobs run and exit, so they get no health check at all.
        """
        if service.is_scheduled:
            return None
        if service.port is None:
            return [HealthCheck(kind="image")]
        return [HealthCheck(kind="http", port=service.port, path=service.health_path)]


def uses_generator(service: ServiceSpec) -> bool:
    """Whether the type should generate this service's Dockerfile (the user gave none)."""
    return getattr(service, "dockerfile", None) is None and getattr(service, "dockerfile_content", None) is None


def package_notes(system: list[str], build: list[str]) -> tuple[str, ...]:
    """Build-log lines naming the Debian packages a generated Dockerfile installs, and where."""
    notes = []
    if build:
        notes.append(f"Debian build_packages (build stage only): {' '.join(dict.fromkeys(build))}")
    if system:
        notes.append(f"Debian system_packages (in the image): {' '.join(dict.fromkeys(system))}")
    return tuple(notes)
