"""The Docker SDK over a server's SSH link: each HTTP connection is one ``docker system
dial-stdio`` channel on the link (the way the Docker CLI reaches ``ssh://`` hosts), plugged into
the SDK through a requests adapter mounted where the SDK mounts its own SSH adapter
(``http+docker://ssh``), so its streaming code (logs, attach, exec, image load) runs unchanged.
Keep-alive connections are pooled in ONE pool per server (at most ``docker_pool_size`` channels),
and a pooled connection whose channel or transport has died is replaced, not handed out.

This module imports the Docker SDK (about 0.2 s): :meth:`SshServer.docker
<projectdeployer.providers.ssh.server.SshServer.docker>` imports it on first use.
"""

from __future__ import annotations

import http.client
import queue
from collections.abc import Sequence
from typing import Any, Protocol

import docker
import paramiko
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from docker.transport.basehttpadapter import BaseHTTPAdapter

from ...core.fanout import one_line
from ...core.provider import CommandResult
from .errors import SshError
from .keys import HostKeyChanged
from .link import Link


class DockerHost(Protocol):
    """What the transport needs of its server: settings, how to word errors, a command runner."""

    name: str
    docker_timeout: float
    docker_pool_size: int

    def error(self, kind: type[SshError], what: str, cause: BaseException | None = None) -> SshError:
        """An error of ``kind`` naming the server."""

    def lost(self, during: str, cause: BaseException | None = None) -> SshError:
        """The connection dropped ``during`` something."""

    def run(self, command: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        """Run ``command`` on the server."""


def docker_client(host: DockerHost, link: Link) -> Any:
    """A ``docker.DockerClient`` talking to ``host``'s engine through ``link`` (checked: the
    engine's API version is asked once; an :class:`SshError` with a hint when it cannot be)."""
    # Built for a unix socket (no connection is made with an explicit version), then re-pointed
    # at our adapter, mounted where the SDK mounts its own SSH adapter: "http+docker://ssh".
    client = docker.DockerClient(base_url="unix:///projectdeployer-ssh-unused.sock", version="1.24", timeout=int(host.docker_timeout))
    api = client.api
    for prefix in list(api.adapters):
        api.adapters.pop(prefix).close()
    adapter = DockerSshAdapter(host, link, timeout=host.docker_timeout, pool_size=host.docker_pool_size)
    api.mount("http+docker://ssh", adapter)
    # docker-py's own attributes, set as its own SSH transport sets them: it has no public way.
    api._custom_adapter = adapter  # noqa: SLF001
    api.base_url = "http+docker://ssh"
    try:
        api._version = api.version(api_version=False)["ApiVersion"]  # noqa: SLF001
    except Exception as exc:
        client.close()
        if isinstance(exc, (SshError, HostKeyChanged)):
            raise
        raise host.error(SshError, f"cannot reach its Docker engine through `docker system dial-stdio`: {one_line(exc)}{_docker_hint(host)}", exc) from exc
    return client


def _docker_hint(host: DockerHost) -> str:
    try:
        result = host.run(["docker", "version", "--format", "{{.Server.APIVersion}}"], timeout=30)
    except SshError:
        return ""
    return "" if result.ok else f" (docker version on the server: {one_line(Exception(result.stderr or result.stdout))})"


class DialStdioConnection(urllib3.connection.HTTPConnection):
    """One HTTP connection = one ``docker system dial-stdio`` channel on the docker link."""

    def __init__(self, link: Link, host: DockerHost, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._pd_link = link
        self._pd_host = host
        self._pd_timeout = timeout
        self._pd_channel: paramiko.Channel | None = None

    def connect(self) -> None:
        channel = self._pd_link.open_session()
        channel.settimeout(self._pd_timeout)
        try:
            channel.exec_command("docker system dial-stdio")
        except (paramiko.SSHException, EOFError, OSError) as exc:
            channel.close()
            raise self._pd_host.lost("opening a connection to the Docker engine", exc) from exc
        self._pd_channel = channel
        self.sock = channel

    def request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().request(*args, **kwargs)
        except (OSError, EOFError, paramiko.SSHException, http.client.HTTPException) as exc:
            self._pd_raise_if_ended(exc)
            raise

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().getresponse(*args, **kwargs)
        except (OSError, EOFError, paramiko.SSHException, http.client.HTTPException) as exc:
            self._pd_raise_if_ended(exc)
            raise

    def _pd_raise_if_ended(self, exc: BaseException) -> None:
        """Name the server when the failure is the SSH side ending, not an HTTP matter."""
        channel = self._pd_channel
        if channel is None or self.pd_alive():
            return
        transport = channel.get_transport()
        if transport is None or not transport.is_active():
            raise self._pd_host.lost("talking to the Docker engine (the request may or may not have been carried out)", exc) from exc
        if channel.exit_status_ready():
            detail = channel.recv_stderr(4096).decode(errors="replace").strip() if channel.recv_stderr_ready() else ""
            status = channel.exit_status
            raise self._pd_host.error(
                SshError, f"the connection to its Docker engine ended (`docker system dial-stdio` exit {status}{': ' + one_line(Exception(detail)) if detail else ''})", exc
            ) from exc

    def pd_alive(self) -> bool:
        """Whether the channel (and its transport) can still carry a request."""
        channel = self._pd_channel
        if channel is None:
            return True  # not connected yet: connect() will open a channel
        transport = channel.get_transport()
        return bool(not channel.closed and not channel.eof_received and not channel.exit_status_ready() and transport is not None and transport.is_active())


class DialStdioPool(urllib3.connectionpool.HTTPConnectionPool):
    """At most ``maxsize`` channels; a pooled connection that died is replaced."""

    def __init__(self, link: Link, host: DockerHost, timeout: float, maxsize: int) -> None:
        super().__init__("localhost", timeout=timeout, maxsize=maxsize, block=True)
        self._pd_link = link
        self._pd_host = host
        self._pd_timeout = timeout

    def _new_conn(self) -> DialStdioConnection:
        return DialStdioConnection(self._pd_link, self._pd_host, self._pd_timeout)

    def _get_conn(self, timeout: float | None = None) -> Any:
        # urllib3's own check calls select() on the channel's fileno(), which makes paramiko
        # create a pipe pair per channel (docker-py avoids it the same way).
        if self.pool is None:
            raise urllib3.exceptions.ClosedPoolError(self, "Pool is closed.")
        try:
            conn = self.pool.get(block=True, timeout=timeout)
        except queue.Empty:
            raise urllib3.exceptions.EmptyPoolError(self, "all Docker connections to the server are busy") from None
        if conn is not None and not conn.pd_alive():
            conn.close()
            conn = None
        return conn or self._new_conn()


class DockerSshAdapter(BaseHTTPAdapter):  # type: ignore[misc]
    """requests adapter: every request to ``http+docker://ssh`` goes through one pool."""

    def __init__(self, host: DockerHost, link: Link, *, timeout: float, pool_size: int) -> None:
        super().__init__()
        self.pools: dict[str, Any] = {}
        self._pd_pool = DialStdioPool(link, host, timeout, pool_size)

    def get_connection(self, url: str, proxies: Any = None) -> Any:
        return self._pd_pool

    def request_url(self, request: Any, proxies: Any) -> str:
        path: str = request.path_url  # never through a proxy: the "host" is an SSH channel
        return path

    def close(self) -> None:
        super().close()
        self._pd_pool.close()
