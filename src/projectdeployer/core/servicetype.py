"""What a service-type plugin registers: a name, a spec class and the type's defaults."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from .model import ServiceSpec


@attrs.frozen(kw_only=True)
class ServiceType:
    """A kind of service (postgres, python, ...), contributed through ``register_service_types``.

    :param name: the value of ``type`` in the project file.
    :param spec_class: attrs class (deriving from ``ServiceSpec``) with the type's fields.
    :param description: one line for ``projectdeployer add --help`` and ``plugins``.
    :param api_method: the fluent-API method that adds it (``add_postgres``); ``None`` = only
        ``project.add(type, name, ...)``.
    :param default_name: the service name used when the API method gets none (``postgres``).
    :param default_port: the port the process listens on inside the container.
    :param stateful: one data directory: stop-then-start instead of the toggle, backed up.
    :param web: serves HTTP (health-checked over HTTP, may have a ``domain``).
    :param buildable: its image is built from source (needs a build context or git repository).
    :param default_images: keys this type adds to ``[images]`` with their default image.
    :param default_version: the ``version`` field's default for database types.
    :param backup_schedule: the default cron schedule of its backups (stateful types).
    :param auto_env: env var names whose ``"auto"`` value is this type's connection string.
    :param unused_fields: common fields (of ``ServiceSpec``) that mean nothing for this type;
        ``projectdeployer add TYPE`` does not offer them. By default: a stateful type runs all
        the time and is checked over TCP (no ``schedule``, no ``health_path``), a type that
        does not serve HTTP has no ``domain`` (nor ``health_path``).
    """

    name: str
    spec_class: type[ServiceSpec]
    description: str
    api_method: str | None = None
    default_name: str | None = None
    default_port: int | None = None
    stateful: bool = False
    web: bool = False
    buildable: bool = False
    default_images: Mapping[str, str] = attrs.field(factory=dict)
    default_version: str | None = None
    backup_schedule: str | None = None
    #: Environment variables that ``"auto"`` resolves to a service of this type
    #: (postgres: ``DATABASE_URL``; redis: ``REDIS_URL``).
    auto_env: tuple[str, ...] = ()
    unused_fields: frozenset[str] = attrs.field(converter=frozenset)
    #: Filled in by the registry: the plugin that registered this type.
    plugin: str = ""

    @unused_fields.default
    def _unused_by_default(self) -> frozenset[str]:
        # What validation refuses (schedule on stateful, domain on non-web) or never reads
        # (health_path outside HTTP checks); a type that knows better passes its own set.
        unused = set()
        if self.stateful:
            unused |= {"schedule", "health_path", "secrets_in_env", "release_command"}
        if not self.web:
            unused |= {"domain", "health_path"}
        return frozenset(unused)
