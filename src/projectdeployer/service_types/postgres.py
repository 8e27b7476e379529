"""The ``postgres`` service type: PostgreSQL, backed up with pg_dump at 02:00 daily by default."""

from __future__ import annotations

from collections.abc import Callable

from attrs import define

from ..core.backups import BackupJob, BackupMethod, BackupTarget, JobRunner
from ..core.containers import SECRETS_MOUNT, ContainerParts
from ..core.model import DatabaseSpec, Project, ServiceSpec
from ..core.resolver import ResourceResolver, ensure_password
from ..core.monitoring import HealthCheck
from ..core.servicetype import ServiceType
from ..hookspecs import hookimpl
from .databases import backup_script, database_type, tcp_health_checks


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


class PostgresBackup(BackupMethod):
    """``pg_dump`` in custom format, verified with ``pg_restore --list``; restored into a side
    database that is swapped in only once the restore succeeded (see the scripts in
    ``backup_scripts/``)."""

    extension = "dump"

    def _connection(self, target: BackupTarget) -> tuple[dict[str, str], dict[str, str]]:
        project, env, service = target.project.name, target.env, target.service.name
        user = ResourceResolver.get_db_user(project, env, service)
        password = ensure_password(project, env, service)
        env_vars = {
            "PGHOST": target.host, "PGPORT": str(target.port), "PGUSER": user,
            "PGDATABASE": ResourceResolver.get_db_name(project, env, service),
            "PGPASSFILE": f"{SECRETS_MOUNT}/pgpass", "PGCONNECT_TIMEOUT": "10",
        }
        # Any database name: a restore also connects to "postgres" and the side database.
        return env_vars, {"pgpass": f"{target.host}:{target.port}:*:{user}:{password}\n"}

    def backup_job(self, target: BackupTarget) -> BackupJob:
        env_vars, files = self._connection(target)
        return BackupJob(command=("sh", "-c", backup_script("postgres_backup.sh")), env=env_vars, secret_files=files)

    def verify_job(self, target: BackupTarget, file: str) -> BackupJob:
        return BackupJob(command=("pg_restore", "--list", f"/backups/{file}"), isolated=True)

    def restore(self, target: BackupTarget, file: str, runner: JobRunner, log: Callable[[str], None]) -> float:
        env_vars, files = self._connection(target)
        job = BackupJob(command=("sh", "-c", backup_script("postgres_restore.sh")), env={**env_vars, "BACKUP_FILE": file}, secret_files=files)
        code, lines = runner.run_once(job, "restore")
        for line in lines:
            log(f"{target.service.name}: {line}")
        if code != 0:
            from ..core.backups import BackupError

            tail = "\n".join(f"    {line}" for line in lines[-15:])
            raise BackupError(f"{target.service.name}: the restore of {file} failed (exit code {code}); the database was left as it was.\n{tail}")
        swap = [line.split("=", 1)[1] for line in lines if "swap_seconds=" in line]
        return float(swap[-1]) if swap else 0.0


@hookimpl
def backup_method(service: ServiceSpec) -> BackupMethod | None:
    return PostgresBackup() if service.type == POSTGRES.name else None
