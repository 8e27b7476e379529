"""The ``postgres`` service type: PostgreSQL, backed up with pg_dump at 02:00 daily by default."""

from __future__ import annotations

from collections.abc import Callable

import attrs
from attrs import define

from ..core.backups import BackupError, BackupJob, BackupMethod, BackupTarget, JobRunner
from ..core.containers import SECRETS_MOUNT, ContainerParts
from ..core.model import DatabaseSpec, ServiceSpec
from ..core.runtime import ContainerInfo, ContainerRuntime
from ..core.servicetype import ContextFor, Log, PasswordRotation, RotationError, ServiceContext, ServiceType
from ..hookspecs import hookimpl
from .databases import DatabaseType, backup_script, database_type


@define(kw_only=True)
class PostgresSpec(DatabaseSpec):
    """A PostgreSQL server. Database ``{project}_{hash8}``, user ``{project}_user``."""


class PostgresRotation(PasswordRotation):
    """``ALTER ROLE`` by ``psql`` over the container's local socket; the statement on stdin."""

    def begin(self, runtime: ContainerRuntime, container: ContainerInfo, service: ServiceSpec, ctx: ServiceContext, old: str, new: str, log: Log) -> None:
        user, db = ctx.db_user(service.name), ctx.db_name(service.name)
        quoted_user = '"' + user.replace('"', '""') + '"'
        quoted_password = "'" + new.replace("'", "''") + "'"
        # Keep the statement (it carries the password) out of the server log even on an error.
        sql = f"SET log_statement = 'none';\nSET log_min_error_statement = 'panic';\nSET log_min_duration_statement = -1;\nALTER ROLE {quoted_user} PASSWORD {quoted_password};\n"
        argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", db]
        result = self.exec(runtime, container, argv, sql, user="postgres")
        if not result.ok:
            detail = (result.stderr or result.stdout).strip().replace(new, "***")
            raise RotationError(f"{service.name}: PostgreSQL refused the new password (nothing changed): {detail or f'psql exit code {result.exit_code}'}")


@attrs.frozen(kw_only=True)
class PostgresType(DatabaseType):
    """PostgreSQL: the official image, a user and database per service, pg_dump backups."""

    def container_parts(self, service: ServiceSpec, ctx: ServiceContext) -> ContainerParts:
        """The official image's settings; the password only as a file (POSTGRES_PASSWORD_FILE)."""
        return ContainerParts(
            env={
                "POSTGRES_USER": ctx.db_user(service.name),
                "POSTGRES_DB": ctx.db_name(service.name),
                "POSTGRES_PASSWORD_FILE": f"{SECRETS_MOUNT}/password",
                # A subdirectory, so the volume's root (lost+found on some drivers) is never PGDATA.
                "PGDATA": "/var/lib/postgresql/data/pgdata",
            },
            secret_files={"password": ctx.ensure_password(service.name)},
            data_volumes={"data": "/var/lib/postgresql/data"},
            secret_owner="postgres",
        )

    def backup_method(self, contexts: ContextFor) -> BackupMethod:
        return PostgresBackup(contexts)

    def connection_env(self, key: str, target: str, ctx: ServiceContext) -> tuple[dict[str, str], dict[str, str]]:
        """A URL without the password (and ``PGPASSFILE``); the full URL and a pgpass line as files."""
        host, user, db, port = ctx.sidecar_host, ctx.db_user(target), ctx.db_name(target), ctx.service_port(target)
        password = ctx.password(target)
        files = {key: f"postgresql://{user}:{password}@{host}:{port}/{db}", "pgpass": f"{host}:{port}:{db}:{user}:{password}\n"}
        env = {key: f"postgresql://{user}@{host}:{port}/{db}", f"{key}_FILE": f"{SECRETS_MOUNT}/{key}", "PGPASSFILE": f"{SECRETS_MOUNT}/pgpass"}
        return env, files


POSTGRES = database_type(
    PostgresType,
    "postgres",
    spec_class=PostgresSpec,
    description="PostgreSQL database (stateful, backed up with pg_dump)",
    port=5432,
    version="15",
    image="postgres:{version}",
    backup_schedule="0 2 * * *",
    auto_env=("DATABASE_URL", "POSTGRES_URL"),
    auto_pieces=("host", "port", "user", "database", "password"),
    rotation=PostgresRotation(),
)


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(POSTGRES)


class PostgresBackup(BackupMethod):
    """``pg_dump`` in custom format, verified with ``pg_restore --list``; restored into a side
    database that is swapped in only once the restore succeeded (see the scripts in
    ``backup_scripts/``)."""

    extension = "dump"

    def __init__(self, contexts: ContextFor) -> None:
        self.contexts = contexts

    def _connection(self, target: BackupTarget) -> tuple[dict[str, str], dict[str, str]]:
        ctx, service = self.contexts(target.project.name, target.env), target.service.name
        user = ctx.db_user(service)
        password = ctx.ensure_password(service)
        env_vars = {
            "PGHOST": target.host,
            "PGPORT": str(target.port),
            "PGUSER": user,
            "PGDATABASE": ctx.db_name(service),
            "PGPASSFILE": f"{SECRETS_MOUNT}/pgpass",
            "PGCONNECT_TIMEOUT": "10",
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
            tail = "\n".join(f"    {line}" for line in lines[-15:])
            raise BackupError(f"{target.service.name}: the restore of {file} failed (exit code {code}); the database was left as it was.\n{tail}")
        swap = [line.split("=", 1)[1] for line in lines if "swap_seconds=" in line]
        return float(swap[-1]) if swap else 0.0
