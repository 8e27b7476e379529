"""The seed's ``BackupManager``, ``SecretsRotator`` and ``FileSync``, which also take a
project's *name*: ``SecretsRotator("myapp", "prod")``.

The classes themselves (backups/, secrets/, sync/) work on an
:class:`~projectdeployer.environment.environment.Environment`, or on a project that hands one
out. Opening a project by its name loads the plugins and the project file, which is the API's
job (this layer), so the name is turned into a ``ProjectDeployer`` here and the rest is theirs.
``from projectdeployer import SecretsRotator`` gives these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..backups import manager
from ..core.provider import Server
from ..environment.binding import EnvironmentSource
from ..environment.environment import Environment
from ..project.validation import require_env_name
from ..secrets import rotation
from ..sync import files
from .project import ProjectDeployer

Log = Callable[[str], None]
#: What these classes take: a project's name, a project, or one of its environments.
Given = str | EnvironmentSource | Environment


class NamedProject:
    """A project given by its name, loaded (``ProjectDeployer(name)``) when one of its
    environments is first asked for: a sync given its servers never loads it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._project: ProjectDeployer | None = None

    def environment(self, env: str = "dev", *, log: Log | None = None) -> Environment:
        if self._project is None:
            self._project = ProjectDeployer(self.name)
        return self._project.environment(env, log=log)


def _opened(who: str, project: Given, env: str | None) -> EnvironmentSource | Environment:
    """``project``, loaded now when it is a name; ``env`` is checked first, as the classes do."""
    if env is not None:
        require_env_name(who, env)
    return ProjectDeployer(project) if isinstance(project, str) else project


class BackupManager(manager.BackupManager):
    """:class:`projectdeployer.backups.manager.BackupManager`; ``project`` may also be a
    project's name (loaded now, as the seed does)."""

    def __init__(self, project: Given, env: str | None = None, *, log: Log | None = None, lock_wait: float = 60.0) -> None:
        super().__init__(_opened("BackupManager", project, env), env, log=log, lock_wait=lock_wait)


class SecretsRotator(rotation.SecretsRotator):
    """:class:`projectdeployer.secrets.rotation.SecretsRotator`; ``project`` may also be a
    project's name (loaded now, as the seed does)."""

    def __init__(self, project: Given, env: str | None = None, *, log: Log | None = None, lock_wait: float = 60.0) -> None:
        super().__init__(_opened("SecretsRotator", project, env), env, log=log, lock_wait=lock_wait)


class FileSync(files.FileSync):
    """:class:`projectdeployer.sync.files.FileSync`; ``project`` may also be a project's name
    (loaded when the servers are needed)."""

    def __init__(
        self,
        project: Given,
        env: str | None = None,
        *,
        log: Log | None = None,
        servers: Sequence[Server] | None = None,
        max_workers: int = files.DEFAULT_WORKERS,
        log_lines: int = files.DEFAULT_LOG_LINES,
        command_timeout: float | None = files.DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        given = NamedProject(project) if isinstance(project, str) else project
        super().__init__(given, env, log=log, servers=servers, max_workers=max_workers, log_lines=log_lines, command_timeout=command_timeout)


__all__ = ["BackupManager", "FileSync", "NamedProject", "SecretsRotator"]
