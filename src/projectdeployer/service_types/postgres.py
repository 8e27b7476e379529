"""The ``postgres`` service type: PostgreSQL, backed up with pg_dump at 02:00 daily by default."""

from __future__ import annotations

from collections.abc import Callable

from attrs import define

from ..core.containers import SECRETS_MOUNT, ContainerParts
from ..core.model import DatabaseSpec, Project, ServiceSpec
from ..core.resolver import ResourceResolver, ensure_password
from ..core.monitoring import HealthCheck
from ..core.servicetype import ServiceType
from ..hookspecs import hookimpl
from .databases import database_type, tcp_health_checks


@define(kw_only=True)
class PostgresSpec(DatabaseSpec):
    """A PostgreSQL server. Database ``{project}_{hash8}``, user ``{project}_user``."""


POSTGRES = database_type(
    "postgres",
    spec_class=PostgresSpec,
    description="PostgreSQL database (stateful, backed up with pg_dump)",
    port=5432,
    version="15",
    image="postgres:{version}",
    backup_schedule="0 2 * * *",
    auto_env=("DATABASE_URL", "POSTGRES_URL"),
)


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(POSTGRES)


@hookimpl
def health_checks(service: ServiceSpec) -> list[HealthCheck] | None:
    return tcp_health_checks(service, POSTGRES)


@hookimpl
def container_parts(service: ServiceSpec, project: Project, env: str) -> ContainerParts | None:
    """The official image's settings; the password only as a file (POSTGRES_PASSWORD_FILE)."""
    if service.type != POSTGRES.name:
        return None
    name = project.name
    return ContainerParts(
        env={
            "POSTGRES_USER": ResourceResolver.get_db_user(name, env, service.name),
            "POSTGRES_DB": ResourceResolver.get_db_name(name, env, service.name),
            "POSTGRES_PASSWORD_FILE": f"{SECRETS_MOUNT}/password",
            # A subdirectory, so the volume's root (lost+found on some drivers) is never PGDATA.
            "PGDATA": "/var/lib/postgresql/data/pgdata",
        },
        secret_files={"password": ensure_password(name, env, service.name)},
        data_volumes={"data": "/var/lib/postgresql/data"},
        secret_owner="postgres",
    )
