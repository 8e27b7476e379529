"""The seed's ``Deployer``: the operator's (bastion's) view of an environment's files and
backups — pull and list backups, restore one, push configuration, pull data.

It is a thin front over :class:`~projectdeployer.backups.manager.BackupManager` and
:class:`~projectdeployer.sync.files.FileSync`, keyed by project name like the seed::

    deployer = Deployer("myapp")
    deployer.pull_backups(env="prod", service="postgres")
    deployer.rollback(env="prod", service="postgres", timestamp="latest")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backups.manager import BackupManager, RestoreReport
from ..backups.store import Backup
from ..environment.environment import Environment
from ..project.validation import require_env_name
from ..sync.files import FileSync, SyncReport
from .project import ProjectDeployer

Log = Callable[[str], None]


class Deployer:
    """Backups and file sync of one project, environment by environment."""

    def __init__(self, project: str | ProjectDeployer, *, log: Log | None = None) -> None:
        if isinstance(project, str):
            project = ProjectDeployer(project)
        self.project = project
        self.log = log

    def environment(self, env: str) -> Environment:
        """The project's environment ``env`` (what backups and sync work on)."""
        return self.project.environment(require_env_name("Deployer", env), log=self.log)

    def backups(self, env: str) -> BackupManager:
        """The backups of ``env``."""
        return BackupManager(self.environment(env), log=self.log)

    # --- backups --------------------------------------------------------------------------

    def list_backups(self, env: str = "dev", service: str | None = None) -> list[dict[str, Any]]:
        """``[{"timestamp", "size_mb", "age_hours", "status", ...}]``, oldest first."""
        return self.backups(env).list_backups(service)

    def pull_backups(self, env: str = "dev", service: str | None = None) -> list[Path]:
        """Copy the verified backups to ``{home}/{project}/{env}/backups/{server}/{service}/``."""
        return self.backups(env).pull_backups(service)

    def run_backup(self, env: str = "dev", service: str = "postgres") -> Backup:
        """Back ``service`` up now."""
        return self.backups(env).run_backup(service)

    def rollback(self, env: str = "dev", service: str = "postgres", timestamp: str = "latest") -> RestoreReport:
        """Restore ``service`` from its backup ``timestamp`` (``latest`` or ``YYYYmmdd_HHMMSS``).
        Stops the service's data access while the data is replaced: the report says for how long."""
        return self.backups(env).restore(service, timestamp)

    # --- file sync ------------------------------------------------------------------------

    def push_config(self, env: str = "dev") -> list[SyncReport]:
        """Push ``config/``, ``secrets/`` and ``files/`` to every server of ``env``."""
        return FileSync(self.environment(env), log=self.log).push_config()

    def pull_data(self, env: str = "dev") -> list[SyncReport]:
        """Pull ``data/``, ``logs/``, ``backups/`` and ``monitoring/`` from every server, per server."""
        return FileSync(self.environment(env), log=self.log).pull_data()

    def full_sync(self, env: str = "dev") -> list[SyncReport]:
        """Push, then pull."""
        return FileSync(self.environment(env), log=self.log).full_sync()


__all__ = ["Deployer"]
