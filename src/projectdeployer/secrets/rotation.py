"""``SecretsRotator``: new passwords for a project's running databases, without locking clients out.

A rotation of service ``S`` in ``{project}/{env}``:

1. copies the current password file to ``secrets/S/backups/S_password.{YYYYmmdd_HHMMSS}`` (0600);
2. generates a new 32-character password and keeps it, before anything else changes, in
   ``secrets/S/.S_password.pending`` (0600), so a crash in the next step never loses it;
3. changes the password in the *running* database first, through the container runtime on
   the server the database runs on, the password only ever on the command's standard input
   (never in argv or environment). How is the service type's (``ServiceType.rotation``):

   - PostgreSQL: ``ALTER ROLE`` by ``psql`` over the container's local socket;
   - Redis: ``ACL SETUSER default >new`` (the old and the new password both work), and after
     step 4 ``CONFIG SET requirepass new`` (only the new one works), by ``redis-cli``;
   - OpenSearch: the security plugin's account API (``PUT /_plugins/_security/api/account``
     with ``current_password`` and ``password``, authenticated as ``admin`` with the old one),
     by ``curl`` inside the node's container to ``https://localhost:9200``, the TLS
     certificate verified against the node's own CA, the whole request on curl's standard
     input. From then on only the new password works (the plugin drops its authentication
     cache on a configuration change), so clients using the old one get HTTP 401 until the
     next ``deploy`` gives them the new one;
4. replaces the password file with the new one (atomic rename, 0600);
5. calls the ``secret_rotated`` hook.

If step 3 fails nothing has changed: the backup and the pending file are removed, the old
password file is intact, and the error says why. The containers that use the password (the
database's own private files, the consumers' connection strings) pick the new file up on the
next ``deploy``: their config hash includes the secret files' digests, so they are restarted.

OpenSearch keeps its users in its security index, initialized from ``internal_users.yml`` only
on a node's first start (``plugins.security.allow_default_init_securityindex``): the change in
the running node (step 3) is what counts. The deploy regenerates ``internal_users.yml``'s
bcrypt hash from the new password file, which matters only for a fresh node (an empty data
volume). The node is asked from inside its own container, so this works on whichever server
it runs, as PostgreSQL and Redis do.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from ..core import paths
from ..core.containers import STATEFUL_SLOT, container_name
from ..core.errors import ProjectDeployerError
from ..core.fsutil import write_private
from ..core.model import ServiceSpec
from ..core.runtime import ContainerInfo, ContainerRuntime
from ..core.servicetype import RotationError, ServiceType
from ..environment.binding import BoundEnvironment, EnvironmentSource
from ..environment.environment import Environment
from .resolver import generate_password, password_path, service_context

Log = Callable[[str], None]

BACKUPS_DIR = "backups"
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"


__all__ = ["RotationError", "SecretsRotator"]


class SecretsRotator:
    """Rotates the generated passwords of one environment (the seed's API).

    ``project`` is an :class:`Environment` (then ``env`` is the environment's) or a project
    that hands one out (a ``ProjectDeployer``; ``env`` defaults to ``dev``). The seed's
    ``SecretsRotator("myapp", "prod")``, keyed by a project's name, is
    ``projectdeployer.SecretsRotator`` (api/by_name.py). Listing and cleaning up the password
    backups read files only; a rotation asks the environment which server runs the database.
    """

    def __init__(self, project: Environment | EnvironmentSource, env: str | None = None, *, log: Log | None = None, lock_wait: float = 60.0) -> None:
        self._bound = BoundEnvironment("SecretsRotator", project, env)
        self.project = self._bound.project
        self.env = self._bound.env
        self.log = log or (lambda line: print(line, flush=True))
        #: Seconds to wait for a deploy of the environment to finish before rotating.
        self.lock_wait = lock_wait

    # --- paths --------------------------------------------------------------------------------

    def secrets_dir(self) -> Path:
        return paths.env_dir(self.project, self.env, "secrets")

    def backups_dir(self, service: str) -> Path:
        return self.secrets_dir() / service / BACKUPS_DIR

    # --- rotation -----------------------------------------------------------------------------

    def rotate_postgres_password(self, service_name: str = "postgres") -> Path:
        """Rotate the password of PostgreSQL service ``service_name``; the backup's path."""
        return self._rotate(service_name, "postgres")

    def rotate_redis_password(self, service_name: str = "redis") -> Path:
        """Rotate the password of Redis service ``service_name``; the backup's path."""
        return self._rotate(service_name, "redis")

    def rotate_opensearch_password(self, service_name: str = "opensearch") -> Path:
        """Rotate the ``admin`` password of OpenSearch service ``service_name`` (the account API
        of the running node, then the file); the backup's path."""
        return self._rotate(service_name, "opensearch")

    def rotate_all_secrets(self) -> dict[str, Path]:
        """Rotate every PostgreSQL, Redis and OpenSearch service of the environment; ``service -> backup``.

        Every service is tried; when some fail, the others stay rotated and one error lists
        the failures.
        """
        done: dict[str, Path] = {}
        failures: list[str] = []
        for name, spec in self._services().items():
            stype = self._type(spec.type)
            if stype is None or stype.rotation is None:
                continue
            try:
                done[name] = self._rotate(name, spec.type)
            except ProjectDeployerError as exc:
                failures.append(str(exc))
        if failures:
            rotated = f" (rotated: {', '.join(done)})" if done else ""
            raise RotationError("\n".join(failures) + rotated)
        return done

    # --- listing and cleanup ------------------------------------------------------------------

    def list_secrets(self) -> dict[str, list[str]]:
        """``service -> file names`` in ``secrets/{service}/`` (files only, sorted; the backups
        directory and temporary files are left out)."""
        root = self.secrets_dir()
        if not root.is_dir():
            return {}
        found: dict[str, list[str]] = {}
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            found[directory.name] = sorted(f.name for f in directory.iterdir() if f.is_file() and not f.name.startswith("."))
        return found

    def list_backups(self, service: str) -> list[Path]:
        """The password backups of ``service``, oldest first."""
        directory = self.backups_dir(service)
        if not directory.is_dir():
            return []
        return sorted((f for f in directory.iterdir() if f.is_file()), key=lambda f: (f.stat().st_mtime, f.name))

    def cleanup_old_backups(self, days_to_keep: int = 30) -> list[Path]:
        """Delete password backups older than ``days_to_keep`` days (by mtime); the paths removed.

        Only files in ``secrets/{service}/backups/`` are ever touched, never a current password.
        """
        if days_to_keep < 0:
            raise ProjectDeployerError(f"days_to_keep must be 0 or more, not {days_to_keep}")
        root = self.secrets_dir()
        if not root.is_dir():
            return []
        cutoff = time.time() - days_to_keep * 86400
        removed: list[Path] = []
        for service_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for backup in self.list_backups(service_dir.name):
                if backup.stat().st_mtime < cutoff:
                    backup.unlink()
                    removed.append(backup)
        if removed:
            self.log(f"removed {len(removed)} secret backup(s) older than {days_to_keep} day(s)")
        return removed

    # --- internals ----------------------------------------------------------------------------

    @property
    def environment(self) -> Environment:
        """The environment rotated (obtained from the project when first needed)."""
        return self._bound.get(self.log)

    def _services(self) -> dict[str, ServiceSpec]:
        return dict(self.environment.project.services_for(self.env))

    def _type(self, name: str) -> ServiceType | None:
        return self.environment.registry.service_type(name)

    def _running_container(self, service: str) -> tuple[ContainerRuntime, ContainerInfo]:
        """The runtime and the running container of ``service``, or a "deploy it first" error."""
        environment = self.environment
        # A database runs on one server, in its one (stateful) container: the server holding
        # it is asked (read live; this machine's environment has one server).
        placed = environment.find_container(container_name(self.project, self.env, service, STATEFUL_SLOT))
        if placed is None:
            if getattr(environment.provider(), "max_servers", None) != 1:
                raise RotationError(f"{service} is not running on any server of {self.project}/{self.env}: deploy it first (the password is changed in the running database)")
            raise RotationError(f"{service} is not running in {self.project}/{self.env}: deploy it first (the password is changed in the running database)")
        if not placed.info.running:
            raise RotationError(f"{service} is not running in {self.project}/{self.env}: deploy it first (the password is changed in the running database)")
        return placed.runtime, placed.info

    def _hook(self, service: str) -> None:
        self.environment.manager.hook.secret_rotated(project=self.project, env=self.env, service=service)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """No deploy of the environment reads the password files while one is rotated."""
        with self.environment.lock(wait=self.lock_wait):
            yield

    def _rotate(self, service: str, kind: str) -> Path:
        spec = self._services().get(service)
        if spec is None:
            raise RotationError(f"no service named '{service}' in {self.project}/{self.env} (services: {', '.join(self._services()) or 'none'})")
        if spec.type != kind:
            raise RotationError(f"{service} is a {spec.type} service, not {kind}")
        stype = self._type(kind)
        rotation = stype.rotation if stype is not None else None
        if rotation is None:
            raise RotationError(f"{service} is a {spec.type} service: it has no generated password to rotate")
        current = password_path(self.project, self.env, service)
        if not current.is_file():
            raise RotationError(f"{service} has no password file at {current}: deploy it first")
        with self._locked():
            runtime, container = self._running_container(service)
            old = current.read_text()
            new = generate_password()
            backup = self._backup(service, current)
            pending = current.with_name(f".{current.name}.pending")
            write_private(pending, new)
            ctx = service_context(self.project, self.env)
            try:
                rotation.begin(runtime, container, spec, ctx, old, new, self.log)
            except BaseException:
                pending.unlink(missing_ok=True)
                backup.unlink(missing_ok=True)
                raise
            os.replace(pending, current)
            rotation.finish(runtime, container, spec, ctx, new, self.log)
        self.log(f"{service}: password rotated in {container.name} and {current} (old one saved as {backup.name}); deploy to restart the containers that use it")
        self._hook(service)
        return backup

    def _backup(self, service: str, current: Path) -> Path:
        directory = self.backups_dir(service)
        stamp = datetime.now().strftime(TIMESTAMP_FORMAT)
        target = directory / f"{service}_password.{stamp}"
        n = 1
        while target.exists():  # two rotations within one second keep both backups
            target = directory / f"{service}_password.{stamp}_{n}"
            n += 1
        write_private(target, current.read_text())
        return target

    def rotate(self, service: str) -> Path:
        """Rotate the password of ``service`` as its type does (``ServiceType.rotation``); the backup's path."""
        spec = self._services().get(service)
        if spec is None:
            raise RotationError(f"no service named '{service}' in {self.project}/{self.env} (services: {', '.join(self._services()) or 'none'})")
        # The seed's per-type methods first (rotate_postgres_password, ...), then any other
        # type that has a rotation.
        rotate = getattr(self, f"rotate_{spec.type}_password", None)
        if callable(rotate):
            backup: Path = rotate(service)
            return backup
        return self._rotate(service, spec.type)
