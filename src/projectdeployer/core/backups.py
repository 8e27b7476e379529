"""The backup contract: what a service type's backup method is given and answers, and where backups live.

Every stateful service whose type has a backup method (the ``backup_method`` hook: PostgreSQL
and Redis built in) gets a *backup container* beside it on the same server,
``{project}_{env}_{service}_backup`` (label ``io.projectdeployer.role=backup``, no ``service``
label, so the engine never takes it for a service). The deploy creates it and never starts it;
the environment's scheduler starts it on the backup schedule (the type's default, or
``backup_config.schedule``), and ``projectdeployer backups run`` starts it by hand. It runs
the service's own image (``pg_dump``/``redis-cli`` of the same version as the server), reaches
the database over the project network by container name, reads the password from a private
file, and writes into the server's ``{data_root}/{project}/{env}/backups/{service}/``
(``/backups`` in the container)::

    {service}_{YYYYmmdd_HHMMSS}.{ext}           the backup (UTC timestamp)
    {service}_{YYYYmmdd_HHMMSS}.{ext}.sha256    its checksum, written only after verification

A backup is *verified* when its checksum file exists and matches the file: the job writes the
checksum only after the type's own integrity check (``pg_restore --list``,
``redis-check-rdb``) accepted it, and a later corruption (disk, copy, tampering) breaks the
match. Only verified backups are ever offered as ``latest``, and a restore re-checks both the
checksum and the type's integrity check before it touches the database.

Retention (``backup_config.retention_days``, default 7) is applied by each run, after its own
backup is verified: older backups are removed, never the one just written.

A restore (``BackupManager.restore`` / ``Deployer.rollback(env, service, timestamp=...)``) is the
type's own procedure (see ``BackupMethod.restore``); it reports the outage it caused.
A failed run (non-zero exit of the backup container) raises an alert through the ``send_alert``
hook when ``BackupManager.run_backup`` or ``BackupManager.check_backups`` sees it.

Here only the contract: the implementation is the deploy's (``deploy/backup_jobs.py`` creates the
backup containers, ``deploy/oneoff.py`` runs the one-off ones) and ``backups/`` (``store.py`` lists
and chooses backups, ``manager.py`` is ``BackupManager``).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

import attrs

from .errors import ProjectDeployerError
from .model import Project, ServiceSpec
from .runtime import ContainerRuntime

if TYPE_CHECKING:
    from .provider import Server

Log = Callable[[str], None]

ROLE_BACKUP = "backup"
ROLE_RESTORE = "restore"
#: Which service a backup container backs up (it has no ``service`` label on purpose).
LABEL_BACKUP_OF = "io.projectdeployer.backup-of"
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
#: Where a backup or restore container sees the service's backups directory.
BACKUPS_MOUNT = "/backups"
#: How long a manual backup run may take.
RUN_TIMEOUT = 3600.0


class BackupError(ProjectDeployerError):
    """A backup, listing or restore could not be done. Says why."""


@attrs.frozen(kw_only=True)
class BackupPolicy:
    """When a service is backed up and for how long backups are kept."""

    enabled: bool
    schedule: str
    retention_days: int


@attrs.frozen(kw_only=True)
class BackupTarget:
    """The service being backed up or restored, as a backup method sees it."""

    project: Project
    env: str
    service: ServiceSpec
    server: Server
    runtime: ContainerRuntime
    #: The image the database runs (its client tools match the server's version).
    image: str
    #: The database container's name: its host name on the project network.
    host: str
    #: The database's port inside the project network.
    port: int
    policy: BackupPolicy
    #: The project's ``[images] python`` image on the server (for methods whose tools are
    #: Python scripts, e.g. OpenSearch's snapshot client), when it is there.
    python_image: str | None = None
    #: A context manager factory: the service's route is out of the router inside (a restore
    #: that stops and starts the database wraps that in it, so the router looks the restarted
    #: container up again). ``None``: no router to tell.
    offline: Callable[[], AbstractContextManager[None]] | None = None

    def routed_off(self) -> AbstractContextManager[None]:
        return self.offline() if self.offline is not None else contextlib.nullcontext()

    @property
    def backups_dir(self) -> str:
        return backups_dir(self.server.data_root, self.project.name, self.env, self.service.name)

    def volume(self, suffix: str) -> str:
        return f"{self.project.name}_{self.env}_{self.service.name}_{suffix}"


@attrs.frozen(kw_only=True)
class BackupJob:
    """What a backup (or restore) container runs, beyond the common parts.

    The common parts: the service's image, the project network, ``/backups``, ``TZ=UTC``,
    ``PD_SERVICE``, ``RETENTION_DAYS`` and the private files at ``/run/secrets/pd``.
    """

    command: tuple[str, ...]
    env: Mapping[str, str] = attrs.field(factory=dict)
    #: file name -> content, private (0400) at ``/run/secrets/pd``.
    secret_files: Mapping[str, str] = attrs.field(factory=dict)
    #: The service's data volumes to mount: volume suffix -> container path.
    data_volumes: Mapping[str, str] = attrs.field(factory=dict)
    data_read_only: bool = True
    #: No network (a restore working on the volume alone).
    isolated: bool = False
    #: ``None``: the service's own image; ``"python"``: the project's python image.
    image: str | None = None


class JobRunner(Protocol):
    """Runs a backup method's containers for one :class:`BackupTarget` (the deploy's
    ``projectdeployer.deploy.oneoff.BackupJobRunner``): what a restore is handed."""

    def run_once(self, job: BackupJob, role: str, *, timeout: float = RUN_TIMEOUT) -> tuple[int, list[str]]:
        """Run ``job`` in a one-off container named for ``role`` (``restore``, ``verify``, ...);
        its exit code and last log lines. The container is removed afterwards."""
        ...


class BackupMethod(abc.ABC):
    """How one service type is backed up, verified and restored (the ``backup_method`` hook)."""

    #: The backup files' extension (``dump``, ``rdb``, ...).
    extension: str

    @abc.abstractmethod
    def backup_job(self, target: BackupTarget) -> BackupJob:
        """The scheduled backup container's command: writes a verified backup into
        ``/backups`` with its ``.sha256`` (see this module's docstring), applies retention,
        exits non-zero on any failure."""

    @abc.abstractmethod
    def verify_job(self, target: BackupTarget, file: str) -> BackupJob:
        """A container command that exits 0 only when ``/backups/{file}`` is readable as a
        backup of this type."""

    @abc.abstractmethod
    def restore(self, target: BackupTarget, file: str, runner: JobRunner, log: Log) -> float:
        """Replace the service's data with ``/backups/{file}`` (already verified); the seconds
        the service was unavailable."""


def backups_dir(data_root: str, project: str, env: str, service: str) -> str:
    return f"{data_root.rstrip('/')}/{project}/{env}/backups/{service}"


def backup_container_name(project: str, env: str, service: str) -> str:
    return f"{project}_{env}_{service}_backup"
