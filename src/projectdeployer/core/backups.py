"""Backups of stateful services: the scheduled backup containers, listing, verification, restore.

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
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

from .containers import SECRETS_MOUNT, container_name, network_name
from .errors import ProjectDeployerError
from .model import DatabaseSpec, Project, ServiceSpec
from .runtime import LABEL_CONFIG, LABEL_ENV, LABEL_PROJECT, LABEL_ROLE, ContainerInfo, ContainerRuntime, ContainerSpec, Mount

if TYPE_CHECKING:
    from .provider import Server
    from .servicetype import ServiceType

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


# --- policy ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class BackupPolicy:
    """When a service is backed up and for how long backups are kept."""

    enabled: bool
    schedule: str
    retention_days: int


def backup_policy(spec: ServiceSpec, stype: ServiceType) -> BackupPolicy | None:
    """The service's backup policy: ``backup_config`` over the type's defaults; ``None`` when the
    type has no backups at all."""
    if not stype.stateful or not stype.backup_schedule or not isinstance(spec, DatabaseSpec):
        return None
    config = spec.backup_config
    if config is None:
        return BackupPolicy(enabled=True, schedule=stype.backup_schedule, retention_days=7)
    return BackupPolicy(enabled=config.enabled, schedule=config.schedule or stype.backup_schedule, retention_days=config.retention_days)


# --- what a service type provides -------------------------------------------------------------


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


# --- listing ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Backup:
    """One backup file on a server."""

    service: str
    timestamp: str
    file: str
    size_bytes: int
    #: verified, corrupt (checksum mismatch), unverified (no checksum: never finished)
    status: str
    server: str

    @property
    def created(self) -> float:
        return datetime.strptime(self.timestamp, TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc).timestamp()

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """The seed's fields (timestamp, size_mb, age_hours) and the rest."""
        now = time.time() if now is None else now
        return {
            "service": self.service,
            "timestamp": self.timestamp,
            "size_mb": round(self.size_bytes / 1_000_000, 3),
            "age_hours": round((now - self.created) / 3600, 2),
            "status": self.status,
            "file": self.file,
            "server": self.server,
        }


def backups_dir(data_root: str, project: str, env: str, service: str) -> str:
    return f"{data_root.rstrip('/')}/{project}/{env}/backups/{service}"


def backup_container_name(project: str, env: str, service: str) -> str:
    return f"{project}_{env}_{service}_backup"


def parse_backup_name(service: str, extension: str, name: str) -> str | None:
    """The timestamp of ``{service}_{YYYYmmdd_HHMMSS}.{extension}``, else ``None``."""
    prefix, suffix = f"{service}_", f".{extension}"
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    stamp = name[len(prefix) : -len(suffix)]
    if len(stamp) != 15 or not stamp.replace("_", "").isdigit():
        return None
    try:
        datetime.strptime(stamp, TIMESTAMP_FORMAT)
    except ValueError:
        return None
    return stamp


def read_backups(server: Server, directory: str, service: str, extension: str) -> list[Backup]:
    """The backups of ``service`` in ``directory`` on ``server``, oldest first, each checked
    against its checksum file. Works through the server interface only (remote servers too)."""
    found = server.run(["find", directory, "-maxdepth", "1", "-type", "f", "-printf", "%f\\t%s\\n"])
    if not found.ok:
        if "No such file" in found.stderr:
            return []
        raise BackupError(f"{service}: cannot list {directory} on {server.name}: {found.stderr.strip()}")
    sizes: dict[str, int] = {}
    for line in found.stdout.splitlines():
        name, _, size = line.partition("\t")
        sizes[name] = int(size or 0)
    candidates = sorted((stamp, name) for name in sizes if (stamp := parse_backup_name(service, extension, name)))
    if not candidates:
        return []
    sums = server.run(["sha256sum", *[f"{directory}/{name}" for _, name in candidates]])
    actual: dict[str, str] = {}
    for line in sums.stdout.splitlines():
        digest, _, path = line.partition("  ")
        actual[path.rsplit("/", 1)[-1]] = digest.strip()
    backups = []
    for stamp, name in candidates:
        status = "unverified"
        if f"{name}.sha256" in sizes:
            try:
                recorded = server.get_file(f"{directory}/{name}.sha256").decode().split()[0]
            except (OSError, IndexError, UnicodeDecodeError):
                recorded = ""
            status = "verified" if recorded and recorded == actual.get(name) else "corrupt"
        backups.append(Backup(service=service, timestamp=stamp, file=name, size_bytes=sizes[name], status=status, server=server.name))
    return backups


def choose_backup(backups: Sequence[Backup], timestamp: str) -> Backup:
    """``latest`` (the newest *verified* backup) or the backup taken at ``timestamp``."""
    if not backups:
        raise BackupError("there are no backups")
    if timestamp == "latest":
        verified = [b for b in backups if b.verified]
        if not verified:
            raise BackupError(f"none of the {len(backups)} backup(s) is verified ({', '.join(f'{b.file}: {b.status}' for b in backups[-3:])})")
        return verified[-1]
    matches = [b for b in backups if b.timestamp == timestamp]
    if not matches:
        recent = ", ".join(b.timestamp for b in backups[-5:])
        raise BackupError(f"no backup taken at {timestamp!r} (expected 'latest' or YYYYmmdd_HHMMSS; recent: {recent})")
    chosen = matches[-1]
    if not chosen.verified:
        raise BackupError(f"backup {chosen.file} is {chosen.status}: its checksum does not prove it intact, so it is not restored")
    return chosen


# --- running backup and restore containers ---------------------------------------------------


def _canonical_hash(spec: ContainerSpec, image_id: str, files: Mapping[str, str]) -> str:
    canonical = {
        "image_id": image_id,
        "command": spec.command,
        "env": dict(sorted(spec.env.items())),
        "mounts": [attrs.asdict(m) for m in spec.mounts],
        "network": spec.network,
        "files": {k: hashlib.sha256(v.encode()).hexdigest() for k, v in sorted(files.items())},
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=list).encode()).hexdigest()[:16]


class JobRunner:
    """Builds and runs the backup, verify and restore containers of one service."""

    def __init__(self, target: BackupTarget) -> None:
        self.target = target

    def spec(self, job: BackupJob, name: str, role: str) -> tuple[ContainerSpec, Mapping[str, str], str]:
        """The container for ``job`` (without its private files mounted yet) and its config hash."""
        t = self.target
        mounts = [Mount(source=t.backups_dir, target=BACKUPS_MOUNT, read_only=role == ROLE_RESTORE)]
        for suffix, path in sorted(job.data_volumes.items()):
            mounts.append(Mount(source=t.volume(suffix), target=path, volume=True, read_only=job.data_read_only))
        env = {"TZ": "UTC", "PD_SERVICE": t.service.name, "RETENTION_DAYS": str(t.policy.retention_days), **job.env}
        image = t.image
        if job.image == "python":
            if not t.python_image:
                raise BackupError(f"{t.service.name}: its backups run on the project's [images] python image, which is not on {t.server.name}")
            image = t.python_image
        spec = ContainerSpec(
            name=name,
            image=image,
            command=job.command,
            env=env,
            network="none" if job.isolated else network_name(t.project.name, t.env),
            mounts=tuple(mounts),
            restart="no",
            stop_timeout=60,
            user="0",  # writes /backups (the operator's tree) and reads the private files
        )
        image_id = t.runtime.image_id(image) or ""
        config_hash = _canonical_hash(spec, image_id, job.secret_files)
        labels = {
            LABEL_PROJECT: t.project.name,
            LABEL_ENV: t.env,
            LABEL_ROLE: role,
            LABEL_BACKUP_OF: t.service.name,
            LABEL_CONFIG: config_hash,
        }
        return attrs.evolve(spec, labels=labels), job.secret_files, config_hash

    def with_files(self, spec: ContainerSpec, files: Mapping[str, str]) -> ContainerSpec:
        """``spec`` with ``files`` written privately on the server and mounted."""
        from .secretfiles import write_secret_files

        if not files:
            return spec
        t = self.target
        source = write_secret_files(t.server, t.runtime, t.project.name, t.env, spec.name, spec.image, files, None)
        return attrs.evolve(spec, mounts=(*spec.mounts, Mount(source=source, target=SECRETS_MOUNT, read_only=True)))

    def ensure_dir(self) -> None:
        t = self.target
        result = t.server.run(["mkdir", "-p", "-m", "0700", t.backups_dir])
        if not result.ok:
            raise BackupError(f"{t.service.name}: cannot create {t.backups_dir} on {t.server.name}: {result.stderr.strip()}")

    def run_once(self, job: BackupJob, role: str, *, timeout: float = RUN_TIMEOUT) -> tuple[int, list[str]]:
        """Run ``job`` in a one-off container; its exit code and log lines. The container is
        removed afterwards whatever happened."""
        t = self.target
        name = f"{t.project.name}_{t.env}_{t.service.name}_{role}"
        spec, files, _ = self.spec(job, name, role)
        t.runtime.remove(name)
        spec = self.with_files(spec, files)
        try:
            t.runtime.start(spec)
            code = t.runtime.wait(name, timeout=timeout)
            lines = list(t.runtime.logs(name, tail=200))
        finally:
            t.runtime.remove(name)
        return (code if code is not None else -1), lines


__all__ = [
    "BACKUPS_MOUNT",
    "Backup",
    "BackupError",
    "BackupJob",
    "BackupMethod",
    "BackupPolicy",
    "BackupTarget",
    "JobRunner",
    "LABEL_BACKUP_OF",
    "ROLE_BACKUP",
    "backup_container_name",
    "backup_policy",
    "backups_dir",
    "choose_backup",
    "container_name",
    "parse_backup_name",
    "read_backups",
]
