"""The ``postgres`` service type: PostgreSQL, backed up with pg_dump at 02:00 daily by default."""

from __future__ import annotations

from collections.abc import Callable

from attrs import define

from ..core.model import DatabaseSpec, ServiceSpec
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
