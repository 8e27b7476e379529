"""What a service-type plugin registers: a ``ServiceType`` with its name, spec class, defaults
and behaviour (the Dockerfile it generates, its container's parts, its backups, health checks,
connection strings, pieces and password rotation), and the ``ServiceContext`` a type asks for
passwords, users and ports instead of importing the secrets code.

A type with behaviour subclasses ``ServiceType`` and overrides its methods (as llm's registered
model objects do); the built-in adapter plugin (``default_plugins/service_type_methods.py``)
answers the ``generate_dockerfile``, ``container_parts``, ``backup_method`` and
``health_checks`` hooks from them, after every other plugin (``trylast``), so a plugin's own
hook implementation still wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

import attrs

from .backups import BackupPolicy
from .errors import ProjectDeployerError, SecretError
from .model import DatabaseSpec, ServiceSpec
from .routing import SIDECAR_HOST as SIDECAR_HOST  # re-exported: the host name apps reach services by

if TYPE_CHECKING:
    from pathlib import Path

    from .backups import BackupMethod
    from .build import GeneratedBuild
    from .containers import ContainerParts
    from .model import Project
    from .monitoring import HealthCheck
    from .runtime import CommandResult, ContainerInfo, ContainerRuntime


class ServiceContext(Protocol):
    """What a service type may ask about the project environment it runs in: generated
    passwords, the database user and name, the internal ports. ``secrets``' resolver implements
    it (``secrets.resolver.service_context``, which the plugin manager hands the adapter plugin); a type never reads the files itself."""

    @property
    def project(self) -> str:
        """The project's name."""
        ...

    @property
    def env(self) -> str:
        """The environment's name."""
        ...

    @property
    def sidecar_host(self) -> str:
        """The host name apps connect to (``nginx``)."""
        ...

    def ensure_password(self, service: str) -> str:
        """``service``'s generated password, made (0600) on first use: for the database itself."""
        ...

    def password(self, service: str) -> str:
        """``service``'s password as recorded; a :class:`SecretError` ("deploy first") when none."""
        ...

    def db_user(self, service: str) -> str:
        """The database user of ``service`` (``{project}_user``)."""
        ...

    def db_name(self, service: str) -> str:
        """The database name of ``service`` (``{project}_{hash8}``)."""
        ...

    def service_port(self, service: str) -> int:
        """``service``'s internal port (5000-5999, behind the sidecar), as the deploy recorded it."""
        ...


#: ``contexts(project, env)``: the context of one project environment (what a backup method
#: gets, since it is asked for before the environment is known).
ContextFor = Callable[[str, str], ServiceContext]
Log = Callable[[str], None]


class RotationError(ProjectDeployerError):
    """A rotation could not be done; nothing was changed. Says why."""


class PasswordRotation:
    """How a running database takes a new password, the password only ever on a command's
    standard input. The rotator calls :meth:`begin` before it replaces the password file and
    :meth:`finish` after; a type whose clients may keep the old password a while longer
    (redis: both work until ``finish``) does its second step there."""

    def begin(self, runtime: ContainerRuntime, container: ContainerInfo, service: ServiceSpec, ctx: ServiceContext, old: str, new: str, log: Log) -> None:
        """Make the running database take ``new``; raise :class:`RotationError` when it
        refused (then nothing changed)."""
        raise NotImplementedError

    def finish(self, runtime: ContainerRuntime, container: ContainerInfo, service: ServiceSpec, ctx: ServiceContext, new: str, log: Log) -> None:
        """After the file holds ``new``: drop the old password where it still works. A failure
        here is only a warning (the new password works and is in the file)."""
        return None

    @staticmethod
    def exec(runtime: ContainerRuntime, container: ContainerInfo, argv: list[str], stdin: str, user: str | None = None, timeout: float = 60.0) -> CommandResult:
        """``argv`` run in ``container`` with ``stdin``; a runtime that cannot exec is a RotationError."""
        try:
            return runtime.exec(container.name, argv, stdin=stdin.encode(), user=user, timeout=timeout)
        except NotImplementedError as exc:
            raise RotationError(f"cannot rotate in {container.name}: {exc}") from None


def _str_frozenset(names: Iterable[str]) -> frozenset[str]:
    """A typed ``frozenset``: mypy's attrs plugin cannot tell the argument type of a generic converter."""
    return frozenset(names)


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
    :param has_password: it has a generated password (``{service}_password``), which the services
        depending on it get as a file, and which ``rotation`` (if any) changes.
    :param auto_pieces: the pieces ``env_vars`` values ``"auto:SERVICE.PIECE"`` may name
        (``host``, ``port``, ``user``, ...; ``password`` is never a value but a ``KEY_FILE``).
    :param rotation: how its running database takes a new password; ``None``: not rotatable.
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
    has_password: bool = False
    auto_pieces: tuple[str, ...] = ()
    rotation: PasswordRotation | None = None
    unused_fields: frozenset[str] = attrs.field(converter=_str_frozenset)
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

    # --- behaviour: a type overrides what it has (the adapter plugin answers the hooks from it) --

    def dockerfile(self, service: ServiceSpec, project: Project, context_dir: Path | None) -> GeneratedBuild | None:
        """The Dockerfile generated for ``service`` (and the files it needs), or ``None`` when the
        type builds nothing or the user gave a Dockerfile. ``context_dir``: the build context
        when it is at hand, to look at (the python type reads its lock files)."""
        return None

    def container_parts(self, service: ServiceSpec, ctx: ServiceContext) -> ContainerParts | None:
        """What the type adds to its containers: environment, command, private files, volumes."""
        return None

    def backup_method(self, contexts: ContextFor) -> BackupMethod | None:
        """How services of this type are backed up; ``contexts(project, env)`` gives the method
        the passwords and users of the environment it backs up."""
        return None

    def health_checks(self, service: ServiceSpec) -> list[HealthCheck] | None:
        """The checks a deploy waits for before routing to a new container (the
        ``health_checks`` hook adds other plugins' checks on top)."""
        return None

    def connection_env(self, key: str, target: str, ctx: ServiceContext) -> tuple[dict[str, str], dict[str, str]]:
        """``(environment, private files)`` for ``env_vars[key] = "auto"`` naming ``target``, a
        service of this type: by default ``http://nginx:{port}``. A type with a password puts
        the URL with the password in a file (``KEY_FILE``), never in the environment; two
        connections writing the same file name (``pgpass``) get their lines joined."""
        return {key: f"http://{ctx.sidecar_host}:{ctx.service_port(target)}"}, {}

    def piece(self, name: str, target: str, ctx: ServiceContext) -> str:
        """One of :attr:`auto_pieces` of ``target``, a service of this type, as text."""
        if name in self.auto_pieces:
            if name == "host":
                return ctx.sidecar_host
            if name == "port":
                return str(ctx.service_port(target))
            if name == "password":
                return ctx.password(target)
            if name == "user":
                return ctx.db_user(target)
            if name == "database":
                return ctx.db_name(target)
        raise SecretError(f"no piece {name!r} of a {self.name} service (pieces: {', '.join(self.auto_pieces) or 'none'})")


def backup_policy(spec: ServiceSpec, stype: ServiceType) -> BackupPolicy | None:
    """The service's backup policy: ``backup_config`` over the type's defaults; ``None`` when the
    type has no backups at all."""
    if not stype.stateful or not stype.backup_schedule or not isinstance(spec, DatabaseSpec):
        return None
    config = spec.backup_config
    if config is None:
        return BackupPolicy(enabled=True, schedule=stype.backup_schedule, retention_days=7)
    return BackupPolicy(enabled=config.enabled, schedule=config.schedule or stype.backup_schedule, retention_days=config.retention_days)
