"""The project model: attrs classes for the project, its environments and its services.

These classes are what a project file becomes once loaded (see :mod:`..project.file`). Every
field has the seed README's default. Service types contribute their own fields by subclassing
one of the spec classes here (:class:`ServiceSpec`, :class:`BuildSpec`, :class:`DatabaseSpec`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs
from attrs import define, field

#: The seed's default thresholds and cooldowns for auto-scaling.
DEFAULT_SCALE_UP_COOLDOWN = 300
DEFAULT_SCALE_DOWN_COOLDOWN = 600
MIN_SERVERS = 1
MAX_SERVERS = 20


@define(kw_only=True)
class VerticalScaling:
    """Resize servers when CPU or memory (percent, 10-minute average) crosses a threshold."""

    cpu_scale_up: float = 75.0
    cpu_scale_down: float = 20.0
    memory_scale_up: float = 80.0
    memory_scale_down: float = 30.0


@define(kw_only=True)
class HorizontalScaling:
    """Add or remove servers when requests per second (per server) cross a threshold."""

    rps_scale_up: float = 500.0
    rps_scale_down: float = 50.0


@define(kw_only=True)
class AutoScaling:
    """Auto-scaling of one service. ``auto_scaling=True`` enables both kinds with defaults;
    a table enables only the kinds it names, each merged over the defaults."""

    vertical: VerticalScaling | None = None
    horizontal: HorizontalScaling | None = None
    min_servers: int = MIN_SERVERS
    max_servers: int = MAX_SERVERS
    scale_up_cooldown: int = DEFAULT_SCALE_UP_COOLDOWN
    scale_down_cooldown: int = DEFAULT_SCALE_DOWN_COOLDOWN

    @classmethod
    def all_defaults(cls) -> AutoScaling:
        return cls(vertical=VerticalScaling(), horizontal=HorizontalScaling())


@define(kw_only=True)
class BackupConfig:
    """Scheduled backups of a stateful service. ``schedule=None`` takes the service type's default."""

    enabled: bool = True
    schedule: str | None = None
    retention_days: int = 7


@define(kw_only=True)
class ServiceSpec:
    """Fields every service has, whatever its type. Defaults are the seed's."""

    #: Filled in by the loader from the table name and the ``type`` key; not written as fields.
    name: str = field(default="", metadata={"internal": True})
    type: str = field(default="", metadata={"internal": True})

    servers_count: int = 1
    server_zone: str = "lon1"
    server_cpu: int = 1
    server_memory: int = 1024
    #: The port the process listens on inside the container (the type's default when unset).
    port: int | None = None
    command: str | None = None
    #: Run once per deploy of a changed service, in a container of the new image, before any
    #: new container starts (migrations, as Heroku's release phase): a failure stops the deploy
    #: with the old version serving.
    release_command: str | None = None
    domain: str | None = None
    #: Values are strings; ``"auto"`` is resolved at deploy (DATABASE_URL, REDIS_URL, ...);
    #: ``secret:...`` references are resolved at deploy and never written in clear.
    env_vars: dict[str, str] = field(factory=dict)
    #: host path -> ``container_path[:ro|:rw]``
    volumes: dict[str, str] = field(factory=dict)
    depends_on: list[str] = field(factory=list)
    #: Manual override; otherwise ``max(order of dependencies) + 1``, or 1 with none.
    startup_order: int | None = None
    #: A cron expression: the service runs as a scheduled job instead of a long-running one.
    schedule: str | None = None
    auto_scaling: bool | AutoScaling = False
    #: HTTP path probed by the health check of a web service.
    health_path: str = "/"
    #: For apps that read passwords only from the environment: the container's entrypoint
    #: becomes a small sh wrapper that exports ``NAME`` from every ``NAME_FILE`` the tool set
    #: (secrets, ``auto`` passwords and URLs) and execs the image's own command. The values
    #: reach the app's process only, never the container's configuration.
    secrets_in_env: bool = False

    @property
    def scaling(self) -> AutoScaling | None:
        """The effective auto-scaling settings, or ``None`` when disabled."""
        if self.auto_scaling is True:
            return AutoScaling.all_defaults()
        if self.auto_scaling is False:
            return None
        return self.auto_scaling

    @property
    def is_scheduled(self) -> bool:
        return self.schedule is not None


@define(kw_only=True)
class BuildSpec(ServiceSpec):
    """A service whose image is built from source: a build context or a git repository."""

    #: ``url@ref`` (https, ssh, ``git@host:path.git@ref`` or file); ref = branch, tag or commit.
    git_repo: str | None = None
    #: A reference to the token (``secret:...``, ``env:NAME``), never the token itself.
    git_token: str | None = None
    build_context: str | None = None
    #: Path of a Dockerfile relative to the build context / repository.
    dockerfile: str | None = None
    #: Dockerfile lines keyed "1", "2", ... rendered in key order.
    dockerfile_content: dict[str, str] | None = None
    #: ``--build-arg`` values, e.g. ``PIP_INDEX_URL`` for a package mirror. Visible in the
    #: image's history: never put secrets here.
    build_args: dict[str, str] = field(factory=dict)


@define(kw_only=True)
class GenericSpec(BuildSpec):
    """``add_service``: a ready image, a Dockerfile, Dockerfile lines, or a git repository."""

    image: str | None = None


@define(kw_only=True)
class DatabaseSpec(ServiceSpec):
    """A stateful service with one data directory; backed up on a schedule."""

    version: str = ""
    backup_config: BackupConfig | None = None


@define(kw_only=True)
class ProjectSettings:
    """The ``[project]`` table."""

    name: str
    docker_hub_user: str | None = None
    #: A registry host (``registry.example.com:5000``) used instead of Docker Hub when set.
    registry: str | None = None
    version: str = "latest"
    default_server_ip: str = "localhost"
    description: str | None = None


@define(kw_only=True)
class HostSpec:
    """A server you already have, listed under ``[[environments.NAME.servers]]`` (the ``ssh``
    provider): how to reach it and the zone it counts in."""

    name: str
    #: Address (or host name) this machine reaches its sshd on.
    address: str
    zone: str
    user: str = "root"
    port: int = 22
    #: Address the other servers of its zone reach it on (its VPC address); unset: ``address``.
    private_address: str | None = None


@define(kw_only=True)
class EnvironmentSpec:
    """An ``[environments.NAME]`` table: where the environment runs and per-env overrides."""

    #: ``auto`` = DigitalOcean when DIGITALOCEAN_API_TOKEN is set, else this machine.
    provider: str = "auto"
    #: Zones to deploy to; empty = the zones the services name.
    zones: list[str] = field(factory=list)
    #: Per-service overrides merged over the service's table (e.g. another git ref in prod).
    services: dict[str, dict[str, Any]] = field(factory=dict)
    #: Host ports where the sidecar serves the domains over HTTP and HTTPS. Unset: 80/443 on
    #: servers, 8080/8443 on this machine (80 and 443 are often taken or need root there).
    http_port: int | None = None
    https_port: int | None = None
    #: Seconds a deploy waits for requests and streams in flight to an old container (through
    #: the sidecar) before it stops that container anyway.
    drain_timeout: int = 30
    #: Seconds an old sidecar worker may keep a long-lived connection (a database session, a
    #: websocket) after a reload; unset: until the connection ends (a reload changes routes,
    #: not the backends of unchanged services).
    sidecar_shutdown_timeout: int | None = None
    #: The servers of a ``provider = "ssh"`` environment (servers you already have).
    servers: list[HostSpec] = field(factory=list)
    #: A reference (``secret:NAME``, ``env:NAME``, ``file:PATH``) to the provider's API token
    #: (DigitalOcean's), never the token itself; unset: the provider's environment variable.
    api_token: str | None = None


@define(kw_only=True)
class Project:
    """A loaded, validated project."""

    settings: ProjectSettings
    images: dict[str, str]
    environments: dict[str, EnvironmentSpec]
    #: In file order.
    services: dict[str, ServiceSpec]
    #: Service specs with each environment's overrides applied: env -> name -> spec.
    env_services: dict[str, dict[str, ServiceSpec]] = field(factory=dict, repr=False)
    source: str | None = None

    @property
    def name(self) -> str:
        return self.settings.name

    def service(self, name: str, env: str | None = None) -> ServiceSpec:
        """The spec of ``name``, with ``env``'s overrides applied when it has any."""
        if env is not None and name in self.env_services.get(env, {}):
            return self.env_services[env][name]
        return self.services[name]

    def services_for(self, env: str | None = None) -> Mapping[str, ServiceSpec]:
        """Every service as ``env`` sees it."""
        return {name: self.service(name, env) for name in self.services}

    def __iter__(self) -> Iterator[ServiceSpec]:
        return iter(self.services.values())

    def environment(self, env: str) -> EnvironmentSpec:
        """The environment's settings; an environment without a table gets the defaults."""
        return self.environments.get(env, EnvironmentSpec())

    def image(self, key: str, version: str | None = None) -> str:
        """Resolve a base image from ``[images]``, filling ``{version}`` when the entry has it."""
        template = self.images[key]
        return template.replace("{version}", version) if version is not None else template


def spec_fields(cls: type) -> list[attrs.Attribute[Any]]:
    """The user-visible fields of a spec class (the internal name/type excluded)."""
    return [a for a in attrs.fields(cls) if not a.metadata.get("internal")]
