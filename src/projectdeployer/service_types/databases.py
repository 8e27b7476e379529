"""What the stateful service types (postgres, redis, opensearch) share."""

from __future__ import annotations

from importlib import resources
from typing import TypeVar

import attrs

from ..core.model import DatabaseSpec, ServiceSpec
from ..core.monitoring import HealthCheck
from ..core.servicetype import PasswordRotation, ServiceType


@attrs.frozen(kw_only=True)
class DatabaseType(ServiceType):
    """A stateful type: one data directory, a generated password, checked over TCP."""

    def health_checks(self, service: ServiceSpec) -> list[HealthCheck] | None:
        """A TCP check on the database's port."""
        return [HealthCheck(kind="tcp", port=service.port or self.default_port, start_period=120.0)]


T = TypeVar("T", bound=DatabaseType)


def database_type(
    cls: type[T],
    name: str,
    *,
    spec_class: type[DatabaseSpec],
    description: str,
    port: int,
    version: str,
    image: str,
    backup_schedule: str,
    auto_env: tuple[str, ...],
    auto_pieces: tuple[str, ...],
    rotation: PasswordRotation | None,
) -> T:
    """A stateful service type whose fluent method is ``add_<name>()`` and default name ``<name>``."""
    return cls(
        name=name,
        spec_class=spec_class,
        description=description,
        api_method=f"add_{name}",
        default_name=name,
        default_port=port,
        stateful=True,
        default_images={name: image},
        default_version=version,
        backup_schedule=backup_schedule,
        auto_env=auto_env,
        has_password=True,
        auto_pieces=auto_pieces,
        rotation=rotation,
    )


def backup_script(name: str) -> str:
    """A shell script of ``service_types/backup_scripts/`` (run with ``sh -c``)."""
    return resources.files("projectdeployer.service_types").joinpath("backup_scripts", name).read_text(encoding="utf-8")
