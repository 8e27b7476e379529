"""The ``local`` provider: this machine's Docker engine as the one server of every zone.

It is the default when no cloud token is set. The seed's server tree ``/local/{project}/{env}``
maps to ``$PROJECTDEPLOYER_HOME/{project}/{env}`` here, and host ports are published on the
loopback address only: nothing a local deploy starts is reachable from other machines.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..core import paths
from ..core.errors import ProjectDeployerError
from ..core.fsutil import atomic_write
from ..core.provider import CommandResult, Provider, Server, ServerSpec
from ..core.runtime import ContainerRuntime
from ..hookspecs import hookimpl

#: The pseudo-zone of this machine; ``server_zone`` of a local deploy is otherwise ignored.
LOCAL_ZONE = "local"


class LocalServer(Server):
    """This machine."""

    name = "local"
    zone = LOCAL_ZONE
    private_address = "127.0.0.1"
    public_address = "127.0.0.1"
    tags: Mapping[str, str] = MappingProxyType({})  # read-only: shared by every instance
    bind_address = "127.0.0.1"
    local_engine = True

    @property
    def data_root(self) -> str:  # type: ignore[override]
        return str(paths.home())

    @property
    def docker_socket(self) -> str:  # type: ignore[override]
        """The socket ``docker.from_env`` talks to: ``DOCKER_HOST=unix://...`` or the default."""
        host = os.environ.get("DOCKER_HOST", "")
        return host[len("unix://") :] if host.startswith("unix://") else "/var/run/docker.sock"

    @cached_property
    def _client(self) -> Any:
        import docker  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        from .docker_runtime import shared_pool  # noqa: PLC0415 - deferred: imports the docker SDK (start-up)

        try:
            # One connection pool for every request: parallel toggles share this client.
            client = shared_pool(docker.from_env(timeout=300))
            client.ping()
        except Exception as exc:  # noqa: BLE001 - whatever the cause, there is no usable engine
            raise ProjectDeployerError(f"cannot reach this machine's Docker engine ({exc}); is the daemon running?") from None
        return client

    def docker(self) -> Any:
        return self._client

    def runtime(self) -> ContainerRuntime:
        from .docker_runtime import DockerRuntime  # noqa: PLC0415 - deferred: imports the docker SDK (start-up)

        return DockerRuntime(self._client, bind_address=self.bind_address)

    def run(self, command: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        proc = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=False)
        return CommandResult(exit_code=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)

    def put_file(self, remote_path: str, data: bytes, *, mode: int = 0o644) -> None:
        atomic_write(Path(remote_path), data, mode=mode)

    def get_file(self, remote_path: str) -> bytes:
        return Path(remote_path).read_bytes()

    def probe_http(self, port: int, path: str = "/", *, timeout: float = 2.0) -> tuple[bool, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"User-Agent": "projectdeployer-healthcheck"})
            resp = conn.getresponse()
            resp.read()
            return resp.status < 500, f"HTTP {resp.status} from GET {path}"
        except OSError as exc:
            return False, f"GET {path} on port {port}: {type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def probe_tcp(self, port: int, *, timeout: float = 2.0) -> tuple[bool, str]:
        # Docker's userland proxy accepts connections on a published port even when nothing
        # listens in the container, then closes them. A server that is really there keeps the
        # connection open (databases wait for the client to speak first) or sends a greeting.
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
                sock.settimeout(0.3)
                try:
                    data = sock.recv(1)
                except TimeoutError:
                    return True, f"TCP port {port} accepts connections"
                if data:
                    return True, f"TCP port {port} answers"
                return False, f"TCP port {port}: connection closed at once (nothing listening behind the published port)"
        except OSError as exc:
            return False, f"TCP port {port}: {type(exc).__name__}: {exc}"


class LocalProvider(Provider):
    """One server, always there: this machine. The deploy runs on it as on any provider's
    servers (a fleet of one): every zone is its zone, ``servers_count`` above 1 still means
    this one server, and it is never destroyed."""

    name = "local"
    max_servers = 1

    def __init__(self) -> None:
        self.server = LocalServer()

    def list_servers(self, project: str, env: str) -> list[Server]:
        return [self.server]

    def create_server(self, project: str, env: str, spec: ServerSpec) -> Server:
        return self.server

    def zone_of(self, zone: str) -> str:
        return LOCAL_ZONE

    def destroy_server(self, server: Server) -> None:
        """This machine is never destroyed; its containers are removed by the deploy instead."""


@hookimpl
def register_providers(register: Callable[..., None]) -> None:
    register("local", LocalProvider, zones={LOCAL_ZONE})


__all__ = ["LOCAL_ZONE", "LocalProvider", "LocalServer"]
