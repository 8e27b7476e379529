"""How a class that works on one environment (``BackupManager``, ``SecretsRotator``,
``FileSync``, as the seed calls them) is given it: an :class:`~.environment.Environment`, or a
project that hands its environments out (``ProjectDeployer``, through its ``environment(env)``)
with the environment's name.

The environment is asked of the project only when first needed, so what reads only files here
(a rotator listing its password backups, a sync given its servers) never loads the plugins.
A project given by its *name* is opened by the API (``projectdeployer.api.by_name``): opening a
project loads the plugins, and those sit above these classes in the layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..core.errors import ProjectDeployerError
from ..project.validation import require_env_name
from .environment import Environment

Log = Callable[[str], None]

#: The environment a class works on when it is given a project and no environment name (the seed's).
DEFAULT_ENV = "dev"


@runtime_checkable
class EnvironmentSource(Protocol):
    """What hands out the environments of one project: ``ProjectDeployer`` (api/project.py)."""

    @property
    def name(self) -> str: ...

    def environment(self, env: str = ..., *, log: Log | None = ...) -> Environment: ...


class BoundEnvironment:
    """One environment as a class was given it: the project's and the environment's names at
    once, the :class:`Environment` itself when first asked for (:meth:`get`).

    ``given`` is an :class:`Environment` (then ``env``, when given, must be its name) or an
    :class:`EnvironmentSource` (then ``env`` defaults to ``dev``, as in the seed). ``env`` is
    checked as a name first; a mistake raises ``error`` naming ``who`` (the class).
    """

    def __init__(self, who: str, given: Environment | EnvironmentSource, env: str | None = None, *, error: type[ProjectDeployerError] = ProjectDeployerError) -> None:
        if env is not None:
            env = require_env_name(who, env)
        self._environment: Environment | None = None
        self._source: EnvironmentSource | None = None
        if isinstance(given, Environment):
            if env is not None and env != given.env:
                raise error(f"{who}: env={env!r} given with the environment {given.env!r}; give one of them")
            self._environment = given
            self.project: str = given.project.name
            self.env: str = given.env
        elif isinstance(given, EnvironmentSource):
            self._source = given
            self.project = given.name
            self.env = DEFAULT_ENV if env is None else env
        else:
            raise error(f"{who}: expected an Environment or a project (ProjectDeployer), got {type(given).__name__} {given!r}; a project's name is taken by projectdeployer.{who}")

    def get(self, log: Log | None = None) -> Environment:
        """The environment, asked of the project the first time (``log`` then receives its
        progress lines)."""
        if self._environment is None:
            assert self._source is not None  # one of the two is set by the constructor
            self._environment = self._source.environment(self.env, log=log)
        return self._environment


__all__ = ["DEFAULT_ENV", "BoundEnvironment", "EnvironmentSource"]
