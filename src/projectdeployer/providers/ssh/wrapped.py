"""A provider's server object whose work all goes through an :class:`SshServer`.

A provider reads what it knows about a server (name, zone, addresses, tags: a container's
labels, a droplet's tags, a state file) into its own object, and reaches the machine through one
SSH access it keeps and reuses across listings. :class:`SshBackedServer` is that object's shape:
commands, files, Docker, probes and any other attribute of :class:`SshServer` (``close``,
``known_hosts``, ``wait_until_reachable``, ...) go to :meth:`SshBackedServer.ssh`.

Importing this module costs no SDK: paramiko is imported by whoever makes the SshServer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...core.provider import CommandResult, Server
from ...core.runtime import ContainerRuntime

if TYPE_CHECKING:
    from .server import SshServer


class SshBackedServer(Server):
    """A :class:`~projectdeployer.core.provider.Server` that delegates to an :class:`SshServer`.

    Subclasses set the server's own attributes and provide :attr:`ssh`; :meth:`_delegate` says
    which SshServer other attribute look-ups go to (``None``: none now, so they are missing).
    """

    @property
    def ssh(self) -> SshServer:
        """The SSH access everything goes through."""
        raise NotImplementedError

    def _delegate(self) -> Any:
        return self.ssh

    def run(self, command: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        return self.ssh.run(command, timeout=timeout)

    def docker(self) -> Any:
        return self.ssh.docker()

    def put_file(self, remote_path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.ssh.put_file(remote_path, data, mode=mode)

    def get_file(self, remote_path: str) -> bytes:
        return self.ssh.get_file(remote_path)

    def runtime(self) -> ContainerRuntime:
        from ..docker_runtime import DockerRuntime  # noqa: PLC0415 - deferred: imports the docker SDK (start-up)

        return DockerRuntime(self.docker(), bind_address=self.bind_address)

    def probe_http(self, port: int, path: str = "/", *, timeout: float = 2.0) -> tuple[bool, str]:
        return self.ssh.probe_http(port, path, timeout=timeout)

    def probe_tcp(self, port: int, *, timeout: float = 2.0) -> tuple[bool, str]:
        return self.ssh.probe_tcp(port, timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "ssh":
            raise AttributeError(name)
        delegate = self._delegate()
        if delegate is None:
            raise AttributeError(name)
        return getattr(delegate, name)
