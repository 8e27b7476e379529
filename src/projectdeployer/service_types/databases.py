"""What the stateful service types (postgres, redis, opensearch) share."""

from __future__ import annotations

from ..core.model import DatabaseSpec, ServiceSpec
from ..core.monitoring import HealthCheck
from ..core.servicetype import ServiceType


def tcp_health_checks(service: ServiceSpec, stype: ServiceType) -> list[HealthCheck] | None:
    """A TCP check on the database's port, for services of ``stype`` only."""
    if service.type != stype.name:
        return None
    return [HealthCheck(kind="tcp", port=service.port or stype.default_port, start_period=120.0)]


def database_type(
    name: str,
    *,
    spec_class: type[DatabaseSpec],
    description: str,
    port: int,
    version: str,
    image: str,
    backup_schedule: str,
    auto_env: tuple[str, ...],
) -> ServiceType:
    """A stateful service type whose fluent method is ``add_<name>()`` and default name ``<name>``."""
    return ServiceType(
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
    )


def backup_script(name: str) -> str:
    """A shell script of ``service_types/backup_scripts/`` (run with ``sh -c``)."""
    from importlib import resources

    return resources.files("projectdeployer.service_types").joinpath("backup_scripts", name).read_text(encoding="utf-8")
