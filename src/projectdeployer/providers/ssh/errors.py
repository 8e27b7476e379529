"""The errors of SSH access: each names the server (``server``) and keeps its cause."""

from __future__ import annotations

from ...core.errors import ProjectDeployerError


class SshError(ProjectDeployerError):
    """Something about reaching a server over SSH failed; names the server, keeps the cause."""

    def __init__(self, message: str, *, server: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.server = server
        self.cause = cause


class SshConnectError(SshError):
    """No SSH connection could be established (after retries)."""


class SshAuthError(SshError):
    """The server refused our key."""


class SshConnectionLost(SshError):
    """The connection dropped while an operation was under way (it may or may not have run)."""


class SshCommandTimeout(SshError, TimeoutError):
    """A command did not finish within its timeout (its channel was closed)."""


class ServerLocked(ProjectDeployerError):
    """Another deploy holds the lock on the server."""


class TryAgain(Exception):
    """A failure worth another attempt (what :func:`~projectdeployer.core.poll.retry` retries);
    the failure itself is its ``__cause__``. Internal to this package: never leaves it."""
