"""The ``redis`` service type: Redis with a password, its RDB snapshot backed up at 03:00 daily by default."""

from __future__ import annotations

from collections.abc import Callable

from attrs import define

from ..core.containers import SECRETS_MOUNT, ContainerParts
from ..core.model import DatabaseSpec, Project, ServiceSpec
from ..core.resolver import ensure_password
from ..core.monitoring import HealthCheck
from ..core.servicetype import ServiceType
from ..hookspecs import hookimpl
from .databases import database_type, tcp_health_checks


@define(kw_only=True)
class RedisSpec(DatabaseSpec):
    """A Redis server protected by a generated password."""


REDIS = database_type(
    "redis",
    spec_class=RedisSpec,
    description="Redis key-value store (stateful, RDB snapshot backups)",
    port=6379,
    version="7-alpine",
    image="redis:{version}",
    backup_schedule="0 3 * * *",
    auto_env=("REDIS_URL",),
)


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(REDIS)


@hookimpl
def health_checks(service: ServiceSpec) -> list[HealthCheck] | None:
    return tcp_health_checks(service, REDIS)


@hookimpl
def container_parts(service: ServiceSpec, project: Project, env: str) -> ContainerParts | None:
    """The password goes into a config file, never onto redis-server's command line."""
    if service.type != REDIS.name:
        return None
    password = ensure_password(project.name, env, service.name)
    config = f"requirepass {password}\nappendonly yes\ndir /data\n"
    return ContainerParts(
        command=("redis-server", f"{SECRETS_MOUNT}/redis.conf"),
        secret_files={"redis.conf": config},
        data_volumes={"data": "/data"},
        secret_owner="redis",
    )
