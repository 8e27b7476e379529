"""``ResourceResolver``: how apps find and log in to the services of their project.

Works on the operator's machine (``$PROJECTDEPLOYER_HOME``) and inside containers, where the
deploy mounts the environment's ``config`` (ports) and ``secrets`` read-only under the same
layout and sets ``PROJECTDEPLOYER_HOME``. Apps always connect to ``nginx:<internal port>``:
the sidecar on their own server, stable across deploys.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from pathlib import Path

import attrs

from ..core import paths
from ..core.errors import SecretError
from ..core.fsutil import write_private
from ..core.servicetype import SIDECAR_HOST, ServiceType

__all__ = ["SIDECAR_HOST", "ResourceResolver", "ServiceFiles", "ensure_password", "generate_password", "password_path", "service_context"]

PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32


def password_path(project: str, env: str, service: str) -> Path:
    """``{home}/{project}/{env}/secrets/{service}/{service}_password``."""
    return paths.env_dir(project, env, "secrets") / service / f"{service}_password"


def generate_password() -> str:
    """32 letters and digits from the ``secrets`` module."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def ensure_password(project: str, env: str, service: str) -> str:
    """The service's password, generated (0600) on first use."""
    path = password_path(project, env, service)
    if not path.exists():
        write_private(path, generate_password())
        # The directories above the file are private too.
        for directory in (path.parent, path.parent.parent):
            directory.chmod(0o700)
    return path.read_text()


class ResourceResolver:
    """Connection details of a project's services (the seed's API, all static methods).

    Apps call it inside their containers, so the URL builders stay plain string formatting on
    the mounted files, loading no plugin; they give what the types' ``connection_env`` puts in
    ``KEY_FILE`` (tests/unit/test_resolver.py holds both to the same strings).
    """

    @staticmethod
    def get_service_host(project: str, env: str, service: str) -> str:
        """Always ``"nginx"``: the sidecar on the app's own server routes to wherever ``service`` runs."""
        return SIDECAR_HOST

    @staticmethod
    def get_service_port(project: str, env: str, service: str) -> int:
        """The service's internal port (5000-5999), stable across deploys."""
        ports_file = paths.env_dir(project, env, "config") / "ports.json"
        try:
            data = json.loads(ports_file.read_text())
            return int(data[service]["internal"])
        except (OSError, KeyError, ValueError) as exc:
            raise SecretError(f"no internal port recorded for {project}/{env}/{service} in {ports_file} (deploy first)") from exc

    @staticmethod
    def get_db_name(project: str, env: str, service: str) -> str:
        """``{project}_{hash8}``: unique per project/env/service, the same on every deploy."""
        digest = hashlib.sha256(f"{project}_{env}_{service}".encode()).hexdigest()[:8]
        return f"{project.replace('-', '_')}_{digest}"

    @staticmethod
    def get_db_user(project: str, env: str, service: str) -> str:
        """``{project}_user``."""
        return f"{project.replace('-', '_')}_user"

    @staticmethod
    def get_service_password(project: str, env: str, service: str) -> str:
        """The generated password of a stateful service."""
        path = password_path(project, env, service)
        try:
            return path.read_text()
        except OSError as exc:
            raise SecretError(f"no password for {project}/{env}/{service} at {path} (deploy first)") from exc

    @classmethod
    def get_piece(cls, project: str, env: str, service: str, service_type: ServiceType, piece: str) -> str:
        """One of ``service_type``'s ``auto_pieces`` for ``service``, as text. The caller hands in
        the registered type (``registry.service_type(name)``): the resolver looks up no plugin."""
        return service_type.piece(piece, service, service_context(project, env))

    @classmethod
    def get_db_connection_string(cls, project: str, env: str, service: str) -> str:
        """``postgresql://{user}:{password}@nginx:{port}/{db}``."""
        return (
            f"postgresql://{cls.get_db_user(project, env, service)}:{cls.get_service_password(project, env, service)}"
            f"@{SIDECAR_HOST}:{cls.get_service_port(project, env, service)}/{cls.get_db_name(project, env, service)}"
        )

    @classmethod
    def get_redis_connection_string(cls, project: str, env: str, service: str) -> str:
        """``redis://:{password}@nginx:{port}/0``."""
        return f"redis://:{cls.get_service_password(project, env, service)}@{SIDECAR_HOST}:{cls.get_service_port(project, env, service)}/0"

    @classmethod
    def get_opensearch_url(cls, project: str, env: str, service: str) -> str:
        """``https://admin:{password}@nginx:{port}``."""
        return f"https://admin:{cls.get_service_password(project, env, service)}@{SIDECAR_HOST}:{cls.get_service_port(project, env, service)}"

    @classmethod
    def get_service_url(cls, project: str, env: str, service: str) -> str:
        """``http://nginx:{port}`` for a web service."""
        return f"http://{SIDECAR_HOST}:{cls.get_service_port(project, env, service)}"


@attrs.frozen
class ServiceFiles:
    """The :class:`~projectdeployer.core.servicetype.ServiceContext` of one project environment,
    read from (and, for a new password, written to) ``$PROJECTDEPLOYER_HOME``."""

    project: str
    env: str
    sidecar_host: str = SIDECAR_HOST

    def ensure_password(self, service: str) -> str:
        return ensure_password(self.project, self.env, service)

    def password(self, service: str) -> str:
        return ResourceResolver.get_service_password(self.project, self.env, service)

    def db_user(self, service: str) -> str:
        return ResourceResolver.get_db_user(self.project, self.env, service)

    def db_name(self, service: str) -> str:
        return ResourceResolver.get_db_name(self.project, self.env, service)

    def service_port(self, service: str) -> int:
        return ResourceResolver.get_service_port(self.project, self.env, service)


def service_context(project: str, env: str) -> ServiceFiles:
    """The context service types get for ``project``/``env`` (a ``ContextFor``)."""
    return ServiceFiles(project, env)
