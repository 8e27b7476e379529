"""``BackupManager``: run, list, check, pull and restore the backups of one project environment.

See :mod:`projectdeployer.core.backups` for the files and the verification, and
:mod:`projectdeployer.deploy.backup_jobs` for the scheduled backup containers the deploy creates.
It works on an :class:`~projectdeployer.environment.environment.Environment` (given, or asked of
the project when first needed) and reaches the servers through the deploy path's
:class:`~projectdeployer.deploy.deployment.Deployment`; the seed's ``BackupManager("myapp")``,
keyed by a project's name, is ``projectdeployer.BackupManager`` (api/by_name.py).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from ..core import paths
from ..core.backups import RUN_TIMEOUT, BackupError, backup_container_name
from ..core.fsutil import atomic_write
from ..core.monitoring import Alert
from ..deploy.backup_jobs import BackedUp, backed_up, target_for
from ..deploy.deployment import Deployment
from ..deploy.jobs import job_status, scheduler_name
from ..deploy.oneoff import BackupJobRunner
from ..deploy.server import ServerDeployer
from ..environment.binding import BoundEnvironment, EnvironmentSource
from ..environment.environment import Environment
from .store import Backup, choose_backup, read_backups

Log = Callable[[str], None]


@attrs.frozen(kw_only=True)
class RestoreReport:
    """What a restore did."""

    service: str
    backup: str
    timestamp: str
    #: Seconds the service's data was unavailable (PostgreSQL: the swap; Redis: stop to answering).
    downtime_seconds: float
    seconds: float


class BackupManager:
    """The backups of one environment (the seed's ``BackupManager``).

    ``project`` is an :class:`Environment` (then ``env`` is the environment's) or a project
    that hands one out (a ``ProjectDeployer``; ``env`` defaults to ``dev``).
    """

    def __init__(self, project: Environment | EnvironmentSource, env: str | None = None, *, log: Log | None = None, lock_wait: float = 60.0) -> None:
        self._bound = BoundEnvironment("BackupManager", project, env, error=BackupError)
        self.project = self._bound.project
        self.env = self._bound.env
        self.log = log or (lambda line: print(line, flush=True))
        self.lock_wait = lock_wait
        self._engines: dict[str, ServerDeployer] = {}

    # --- what is backed up --------------------------------------------------------------------

    @property
    def environment(self) -> Environment:
        """The environment whose backups these are (obtained from the project when first needed)."""
        return self._bound.get(self.log)

    @property
    def deployment(self) -> Deployment:
        """The deploy path of the environment: the servers' deployers, a service's route out
        of the sidecars during a restore."""
        return Deployment(self.environment)

    def engine(self, service: str | None = None) -> ServerDeployer:
        """The engine of the server that keeps ``service``'s backups: the server holding its
        backup container (read live; the first server when none has it yet, where ``deploy
        first`` is the answer). This machine's environment has one server."""
        deployment = self.deployment
        if "" not in self._engines:
            self._engines[""] = deployment.any_server_deployer()
        if service is None:
            return self._engines[""]
        if service not in self._engines:
            held = deployment.server_deployer_holding(backup_container_name(self.project, self.env, service))
            self._engines[service] = held if held is not None else self._engines[""]
        return self._engines[service]

    def services(self) -> dict[str, BackedUp]:
        """The services of the environment that are backed up, with their policy and method."""
        return backed_up(self.engine())

    def _item(self, service: str) -> BackedUp:
        items = self.services()
        if service not in items:
            specs = self.environment.project.services_for(self.env)
            if service not in specs:
                raise BackupError(f"no service named '{service}' in {self.project}/{self.env} (backed-up services: {', '.join(items) or 'none'})")
            raise BackupError(f"{service} is not backed up (type {specs[service].type}{', backups disabled in backup_config' if specs[service].type in ('postgres', 'redis', 'opensearch') else ''})")
        return items[service]

    def _named(self, service: str | None) -> list[str]:
        return [service] if service is not None else sorted(self.services())

    # --- listing ------------------------------------------------------------------------------

    def backups(self, service: str) -> list[Backup]:
        """``service``'s backups on its server, oldest first, each checked against its checksum."""
        item = self._item(service)
        target = target_for(self.engine(service), item.spec, item.policy)
        return read_backups(target.server, target.backups_dir, service, item.method.extension)

    def list_backups(self, service: str | None = None) -> list[dict[str, Any]]:
        """The seed's list: ``timestamp``, ``size_mb``, ``age_hours`` (and ``status``, ``file``,
        ``service``, ``server``), oldest first; every backed-up service when ``service`` is None."""
        now = time.time()
        return [b.as_dict(now) for name in self._named(service) for b in self.backups(name)]

    def latest(self, service: str) -> Backup:
        """The newest verified backup of ``service``."""
        try:
            return choose_backup(self.backups(service), "latest")
        except BackupError as exc:
            raise BackupError(f"{service}: {exc}") from None

    def status(self) -> list[dict[str, Any]]:
        """One row per backed-up service: schedule, retention, the backup container's last run
        (UTC, exit code) and the newest verified backup."""
        rows = []
        for service, item in sorted(self.services().items()):
            engine = self.engine(service)
            scheduler = engine.runtime.get(scheduler_name(self.project, self.env))
            info = engine.runtime.get(backup_container_name(self.project, self.env, service))
            run = job_status(info, scheduler)
            try:
                verified = [b for b in self.backups(service) if b.verified]
            except BackupError:
                verified = []
            rows.append(
                {
                    "service": service,
                    "server": engine.server.name,
                    "schedule": item.policy.schedule,
                    "retention_days": item.policy.retention_days,
                    "container": info.name if info else None,
                    "health": run["health"],
                    "last_run": run["last_run"],
                    "exit_code": run["exit_code"],
                    "latest": verified[-1].timestamp if verified else None,
                    "verified_count": len(verified),
                }
            )
        return rows

    # --- running ------------------------------------------------------------------------------

    def run_backup(self, service: str, *, timeout: float = RUN_TIMEOUT) -> Backup:
        """Back ``service`` up now, through its backup container; the new backup.

        A failure raises :class:`BackupError` and an alert (``send_alert``).
        """
        self._item(service)  # a service that is not backed up is an error saying why
        engine = self.engine(service)
        name = backup_container_name(self.project, self.env, service)
        info = engine.runtime.get(name)
        if info is None:
            raise BackupError(f"{service} has no backup container ({name}): deploy first")
        before: set[str] = set()
        if info.running:
            self.log(f"{service}: a backup is running already in {name}; waiting for it")
        else:
            before = {b.file for b in self.backups(service)}
            engine.runtime.start_existing(name)
            self.log(f"{service}: backing up ({name})")
        code = engine.runtime.wait(name, timeout=timeout)
        lines = list(engine.runtime.logs(name, tail=50))
        if code != 0:
            tail = "\n".join(f"    {line}" for line in lines[-15:])
            message = f"{service}: the backup failed (exit code {code}).\n{tail}"
            self._alert(service, message)
            finished = engine.runtime.get(name)
            if finished is not None and finished.finished_at:
                self._remember_alerted(service, finished.finished_at)
            raise BackupError(message)
        for line in lines:
            if line.startswith("backup: removed") or "verified" in line:
                self.log(f"{service}: {line}")
        new = [b for b in self.backups(service) if b.file not in before and b.verified]
        if not new:
            raise BackupError(f"{service}: the backup container exited 0 but left no verified backup")
        return new[-1]

    def check_backups(self) -> list[Alert]:
        """Alert (``send_alert``) about every scheduled backup run that failed since the last
        check; the alerts sent. Meant to be called periodically (the health monitor does)."""
        seen = self._alerted()
        sent = []
        for service in self.services():
            engine = self.engine(service)
            info = engine.runtime.get(backup_container_name(self.project, self.env, service))
            if info is None or info.running or not info.finished_at or info.finished_at.startswith("0001"):
                continue
            if info.exit_code not in (0, None) and seen.get(service) != info.finished_at:
                lines = "\n".join(engine.runtime.logs(info.name, tail=15))
                sent.append(self._alert(service, f"{service}: the scheduled backup that finished at {info.finished_at[:19]} failed (exit code {info.exit_code}).\n{lines}"))
                seen[service] = info.finished_at
        atomic_write(self._alerts_file(), json.dumps(seen, indent=2) + "\n")
        return sent

    def _alerts_file(self) -> Path:
        return paths.env_dir(self.project, self.env, "monitoring") / "backup-alerts.json"

    def _alerted(self) -> dict[str, str]:
        """service -> FinishedAt of its last failed run already alerted about."""
        try:
            return dict(json.loads(self._alerts_file().read_text()))
        except (OSError, ValueError):
            return {}

    def _remember_alerted(self, service: str, finished_at: str) -> None:
        seen = self._alerted()
        seen[service] = finished_at
        atomic_write(self._alerts_file(), json.dumps(seen, indent=2) + "\n")

    def _alert(self, service: str, body: str) -> Alert:
        engine = self.engine(service)
        alert = Alert(severity="critical", title=f"Backup of {self.project}/{self.env}/{service} failed", body=body, project=self.project, env=self.env, server=engine.server.name)
        engine.manager.hook.send_alert(alert=alert)
        return alert

    # --- pulling ------------------------------------------------------------------------------

    def pull_backups(self, service: str | None = None, destination: Path | None = None) -> list[Path]:
        """Copy the verified backups (and their checksums) of ``service`` (all when None) from
        the server to ``{home}/{project}/{env}/backups/{server}/{service}/``; files already
        there with the same size are skipped. The local paths of every pulled backup."""
        pulled = []
        for name in self._named(service):
            item = self._item(name)
            engine = self.engine(name)
            server = engine.server
            root = destination or paths.env_dir(self.project, self.env, "backups") / paths.server_env_dir(server)
            target = target_for(engine, item.spec, item.policy)
            local_dir = root / name
            for backup in self.backups(name):
                if not backup.verified:
                    self.log(f"{name}: not pulling {backup.file} ({backup.status})")
                    continue
                local = local_dir / backup.file
                if not (local.is_file() and local.stat().st_size == backup.size_bytes):
                    local_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                    for file in (backup.file, f"{backup.file}.sha256"):
                        data = server.get_file(f"{target.backups_dir}/{file}")
                        tmp = local_dir / f".{file}.partial"
                        tmp.write_bytes(data)
                        tmp.chmod(0o600)
                        tmp.replace(local_dir / file)
                    self.log(f"{name}: pulled {backup.file} ({backup.size_bytes} bytes)")
                pulled.append(local)
        return pulled

    # --- restoring ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """No deploy (and no second restore) of the environment while data is replaced."""
        with self.environment.lock(wait=self.lock_wait):
            yield

    def restore(self, service: str, timestamp: str = "latest") -> RestoreReport:
        """Replace ``service``'s data with its backup ``timestamp`` (``latest``: the newest
        verified one; else ``YYYYmmdd_HHMMSS``). The backup is checked (checksum, then the
        type's own check) before anything changes. Causes downtime: the report says how much."""
        began = time.monotonic()
        item = self._item(service)
        with self._locked():
            engine = self.engine(service)
            target = target_for(engine, item.spec, item.policy)
            # Every server's sidecar routes the database: its route goes out of all of them.
            target = attrs.evolve(target, offline=lambda: self.deployment.offline(service))
            if engine.runtime.get(target.host) is None:
                raise BackupError(f"{service} is not deployed in {self.project}/{self.env}: deploy it first, then restore")
            try:
                backup = choose_backup(self.backups(service), timestamp)
            except BackupError as exc:
                raise BackupError(f"{service}: {exc}") from None
            runner = BackupJobRunner(target)
            code, lines = runner.run_once(item.method.verify_job(target, backup.file), "verify", timeout=600)
            if code != 0:
                detail = " / ".join(lines[-3:]) or f"exit code {code}"
                raise BackupError(f"{service}: {backup.file} failed its integrity check ({detail}); nothing was changed")
            self.log(f"{service}: restoring {backup.file} (taken {backup.timestamp} UTC); the service is unavailable during the restore")
            downtime = item.method.restore(target, backup.file, runner, self.log)
        self.log(f"{service}: restored {backup.file}; downtime {downtime:.2f}s")
        return RestoreReport(service=service, backup=backup.file, timestamp=backup.timestamp, downtime_seconds=downtime, seconds=time.monotonic() - began)


__all__ = ["BackupManager", "RestoreReport"]
