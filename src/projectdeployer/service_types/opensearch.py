"""The ``opensearch`` service type: OpenSearch, backed up through its snapshot API at 04:00 daily by default."""

from __future__ import annotations

from collections.abc import Callable

from attrs import define

from ..core.model import DatabaseSpec, ServiceSpec
from ..core.monitoring import HealthCheck
from ..core.servicetype import ServiceType
from ..hookspecs import hookimpl
from .databases import database_type, tcp_health_checks


@define(kw_only=True)
class OpenSearchSpec(DatabaseSpec):
    """A single-node OpenSearch cluster with the security plugin's admin password generated."""


OPENSEARCH = database_type(
    "opensearch",
    spec_class=OpenSearchSpec,
    description="OpenSearch search engine (stateful, snapshot API backups)",
    port=9200,
    version="2",
    image="opensearchproject/opensearch:{version}",
    backup_schedule="0 4 * * *",
    auto_env=("OPENSEARCH_URL",),
)


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(OPENSEARCH)


@hookimpl
def health_checks(service: ServiceSpec) -> list[HealthCheck] | None:
    return tcp_health_checks(service, OPENSEARCH)
