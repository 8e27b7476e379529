"""The ``redis`` service type: Redis with a password, its RDB snapshot backed up at 03:00 daily by default."""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
from attrs import define

from ..core.backups import BackupError, BackupJob, BackupMethod, BackupTarget, JobRunner
from ..core.containers import SECRETS_MOUNT, ContainerParts
from ..core.model import DatabaseSpec, ServiceSpec
from ..core.poll import WaitTimeout, wait_until
from ..core.runtime import ContainerInfo, ContainerRuntime
from ..core.servicetype import ContextFor, Log, PasswordRotation, RotationError, ServiceContext, ServiceType
from ..hookspecs import hookimpl
from .databases import DatabaseType, backup_script, database_type


@define(kw_only=True)
class RedisSpec(DatabaseSpec):
    """A Redis server protected by a generated password."""


class RedisRotation(PasswordRotation):
    """Two phases by ``redis-cli`` (commands on stdin): ``ACL SETUSER default >new`` first (the
    old and the new password both work), ``CONFIG SET requirepass new`` once the file holds the
    new one (only the new one works): no client is locked out meanwhile."""

    def _redis(self, runtime: ContainerRuntime, container: ContainerInfo, service: str, password: str, command: str, what: str) -> None:
        """``AUTH password`` then ``command`` through redis-cli's standard input; both must say OK."""
        result = self.exec(runtime, container, ["redis-cli", "--no-auth-warning"], f"AUTH {password}\n{command}\n")
        lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        if not result.ok or lines != ["OK", "OK"]:
            detail = " / ".join(lines) or result.stderr.strip() or f"redis-cli exit code {result.exit_code}"
            for secret in password, command:
                detail = detail.replace(secret, "***")
            raise RotationError(f"{service}: Redis refused to {what}: {detail}")

    def begin(self, runtime: ContainerRuntime, container: ContainerInfo, service: ServiceSpec, ctx: ServiceContext, old: str, new: str, log: Log) -> None:
        # Both passwords valid until the file holds the new one: no client is locked out.
        self._redis(runtime, container, service.name, old, f"ACL SETUSER default >{new}", "add the new password (nothing changed; is the password file the one the running server uses?)")

    def finish(self, runtime: ContainerRuntime, container: ContainerInfo, service: ServiceSpec, ctx: ServiceContext, new: str, log: Log) -> None:
        try:
            self._redis(runtime, container, service.name, new, f"CONFIG SET requirepass {new}", "drop the old password")
        except RotationError as exc:
            # The new password works and is in the file; only the old one still works too.
            log(f"warning: {exc}; the old password keeps working until {service.name} is redeployed")


@attrs.frozen(kw_only=True)
class RedisType(DatabaseType):
    """Redis with ``requirepass`` and an append-only file, RDB snapshot backups."""

    def container_parts(self, service: ServiceSpec, ctx: ServiceContext) -> ContainerParts:
        """The password goes into a config file, never onto redis-server's command line."""
        password = ctx.ensure_password(service.name)
        config = f"requirepass {password}\nappendonly yes\ndir /data\n"
        return ContainerParts(
            command=("redis-server", f"{SECRETS_MOUNT}/redis.conf"),
            secret_files={"redis.conf": config},
            data_volumes={"data": "/data"},
            secret_owner="redis",
        )

    def backup_method(self, contexts: ContextFor) -> BackupMethod:
        return RedisBackup(contexts)

    def connection_env(self, key: str, target: str, ctx: ServiceContext) -> tuple[dict[str, str], dict[str, str]]:
        """``redis://nginx:{port}/0``; the URL with the password as a file."""
        host, port = ctx.sidecar_host, ctx.service_port(target)
        env = {key: f"redis://{host}:{port}/0", f"{key}_FILE": f"{SECRETS_MOUNT}/{key}"}
        return env, {key: f"redis://:{ctx.password(target)}@{host}:{port}/0"}


REDIS = database_type(
    RedisType,
    "redis",
    spec_class=RedisSpec,
    description="Redis key-value store (stateful, RDB snapshot backups)",
    port=6379,
    version="7-alpine",
    image="redis:{version}",
    backup_schedule="0 3 * * *",
    auto_env=("REDIS_URL",),
    auto_pieces=("host", "port", "password"),
    rotation=RedisRotation(),
)


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(REDIS)


class RedisBackup(BackupMethod):
    """A fresh RDB snapshot (BGSAVE) copied from the volume and checked with
    ``redis-check-rdb``; restored with the database stopped, through a private redis-server
    that rewrites the append-only file from the snapshot (see ``backup_scripts/``)."""

    extension = "rdb"

    def __init__(self, contexts: ContextFor) -> None:
        self.contexts = contexts

    def backup_job(self, target: BackupTarget) -> BackupJob:
        password = self.contexts(target.project.name, target.env).ensure_password(target.service.name)
        return BackupJob(
            command=("sh", "-c", backup_script("redis_backup.sh")),
            env={"REDIS_HOST": target.host, "REDIS_PORT": str(target.port)},
            secret_files={"password": password},
            data_volumes={"data": "/data"},
        )

    def verify_job(self, target: BackupTarget, file: str) -> BackupJob:
        return BackupJob(command=("redis-check-rdb", f"/backups/{file}"), isolated=True)

    def restore(self, target: BackupTarget, file: str, runner: JobRunner, log: Callable[[str], None]) -> float:
        runtime, name = target.runtime, target.host
        info = runtime.get(name)
        if info is None:
            raise BackupError(f"{target.service.name}: its container {name} does not exist: deploy it first")
        job = BackupJob(
            command=("sh", "-c", backup_script("redis_restore.sh")),
            env={"BACKUP_FILE": file},
            data_volumes={"data": "/data"},
            data_read_only=False,
            isolated=True,
        )
        began = time.monotonic()
        with target.routed_off():
            log(f"{target.service.name}: stopping {name} (the restore replaces its files)")
            runtime.stop(name, timeout=60)
            try:
                code, lines = runner.run_once(job, "restore")
                for line in lines:
                    log(f"{target.service.name}: {line}")
            finally:
                # Whatever happened, the database runs again (on the restored data, or on its
                # own files, which the script puts back when the restore failed).
                runtime.start_existing(name)
            _wait_tcp(target, began)
        if code != 0:
            tail = "\n".join(f"    {line}" for line in lines[-15:])
            raise BackupError(f"{target.service.name}: the restore of {file} failed (exit code {code}); the database's previous files were put back.\n{tail}")
        return time.monotonic() - began


def _wait_tcp(target: BackupTarget, began: float, timeout: float = 120.0) -> None:
    """Until the restarted server answers on its published port."""
    info = target.runtime.get(target.host)
    port = next(iter(info.ports.values()), None) if info else None
    if not port:
        return
    try:
        wait_until(lambda: target.server.probe_tcp(port), timeout=max(0.0, timeout - (time.monotonic() - began)), interval=0.2, what=f"{target.service.name} answering")
    except WaitTimeout as exc:
        raise BackupError(f"{target.service.name}: not answering after the restore ({exc.last})") from None
