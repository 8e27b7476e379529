"""The interface every provider implements: where servers come from and how to reach them.

Providers (local engine, sandbox, DigitalOcean, plain SSH) sit behind this one small interface,
as pyinfra's connectors do, so the deploy engine never knows which one it talks to.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import attrs

# CommandResult lives with the runtime interface (which returns it too), so the two interfaces
# do not import each other; re-exported here for the providers that import it from this module.
from .runtime import CommandResult as CommandResult
from .runtime import ContainerRuntime


@attrs.frozen(kw_only=True)
class ServerSpec:
    """What to create: size and placement of a server."""

    zone: str
    cpu: int = 1
    memory: int = 1024
    tags: Mapping[str, str] = attrs.field(factory=dict)


class Server(abc.ABC):
    """One machine that runs containers."""

    name: str
    zone: str
    #: Address other servers of the zone reach it on (the VPC address).
    private_address: str
    #: Address the operator reaches it on.
    public_address: str
    tags: Mapping[str, str]

    @abc.abstractmethod
    def run(self, command: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        """Run ``command`` (an argument list, never a shell string) on the server."""

    @abc.abstractmethod
    def docker(self) -> Any:
        """A Docker SDK client talking to this server's engine."""

    @abc.abstractmethod
    def put_file(self, remote_path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write ``data`` to ``remote_path`` atomically with ``mode``."""

    @abc.abstractmethod
    def get_file(self, remote_path: str) -> bytes:
        """Read ``remote_path``."""

    # --- what the deploy engine needs; providers whose servers run containers implement these

    #: Where the seed's ``/local`` tree lives on this server (``/local`` on real servers; the
    #: operator's ``$PROJECTDEPLOYER_HOME`` when the server is this machine).
    data_root: str = "/local"
    #: Address host ports are published on (loopback on this machine, the VPC address elsewhere).
    bind_address: str = "127.0.0.1"
    #: The Docker engine's unix socket on this server (mounted into the scheduler container).
    docker_socket: str = "/var/run/docker.sock"
    #: The server IS this machine's Docker engine: images built here are already there (sending
    #: them is a no-op) and the deploy's local files are its files.
    local_engine: bool = False

    def runtime(self) -> ContainerRuntime:
        """Container operations on this server."""
        raise NotImplementedError(f"server {self.name} cannot run containers")

    def probe_http(self, port: int, path: str = "/", *, timeout: float = 2.0) -> tuple[bool, str]:
        """GET ``path`` on host port ``port`` of this server: ``(healthy, what happened)``."""
        raise NotImplementedError(f"server {self.name} cannot probe HTTP")

    def probe_tcp(self, port: int, *, timeout: float = 2.0) -> tuple[bool, str]:
        """Open a TCP connection to host port ``port`` of this server."""
        raise NotImplementedError(f"server {self.name} cannot probe TCP")


class Provider(abc.ABC):
    """Creates, lists, resizes and destroys servers. Inventory is read live, never cached."""

    name: str
    #: Where the provider tells what it waits for or makes on the way (a rate limit, a template):
    #: the environment that hands it out points it at its own progress log.
    log: Callable[[str], None] = staticmethod(lambda line: None)
    #: At most this many servers per zone (``None``: no limit); allocation respects it, so a
    #: ``servers_count`` above it runs on that many (this machine's provider: 1).
    max_servers: int | None = None
    #: Whether the provider calls an API that an environment's ``api_token`` reference can
    #: give a token for (:meth:`use_api_token`).
    takes_api_token: bool = False

    def use_api_token(self, project: str, env: str, token: str) -> None:
        """Call the API with ``token`` for ``project``/``env`` (the environment's ``api_token``
        reference, resolved): it wins over the provider's own environment variable."""
        raise NotImplementedError(f"provider '{self.name}' calls no API that takes a token")

    def address_for(self, target: Server, viewer: Server) -> str:
        """The address at which ``viewer`` reaches ``target``'s published ports: its private
        (VPC) address within a zone, its public one across zones (a cloud's VPCs are per
        region), as the default."""
        return target.private_address if target.zone == viewer.zone else target.public_address

    def zone_of(self, zone: str) -> str:
        """The provider's zone for a zone the project names (a service's ``server_zone``, an
        environment's ``zones``): the same by default; this machine's provider has one."""
        return zone

    @abc.abstractmethod
    def list_servers(self, project: str, env: str) -> list[Server]:
        """The servers of ``project``/``env`` as the provider sees them now (by tags/labels)."""

    @abc.abstractmethod
    def create_server(self, project: str, env: str, spec: ServerSpec) -> Server:
        """Create a server and return it once it accepts commands."""

    @abc.abstractmethod
    def destroy_server(self, server: Server) -> None:
        """Destroy ``server``; destroying one that is already gone is not an error."""

    def missing_servers(self, project: str, env: str, wanted: Mapping[str, int]) -> str | None:
        """Why the provider cannot create ``wanted`` (zone -> how many new servers) now, or
        ``None`` when it can. A deploy or plan asks before anything changes and stops with this
        line. The default is ``None``: a cloud creates what it is asked for."""
        return None

    def resize_server(self, server: Server, cpu: int, memory: int) -> Server:
        """Change a server's size (vertical scaling). Providers that cannot, say so."""
        raise NotImplementedError(f"provider '{self.name}' cannot resize servers")

    def creation_lock(self, project: str, env: str, *, wait: float = 0.0) -> AbstractContextManager[None]:
        """Exclusive across operators while held, even when ``project``/``env`` has no server
        yet: the deploy holds it while it lists the servers (and, on a first deploy, creates
        them) until it holds the lock on the servers themselves, so two first deploys never
        both create servers. Raises a :class:`~projectdeployer.core.errors.ProjectDeployerError`
        naming the holder when another keeps it longer than ``wait`` seconds.

        The default is no lock: a provider without an exclusive primitive guards first deploys
        with this machine's lock only (and says so in its documentation)."""
        return contextlib.nullcontext()

    def set_server_state(self, server: Server, state: str) -> Server:
        """Set the server's status tag (``active``, ``reserve``, ``destroying``; the seed's
        ``status:<state>`` droplet tag), read back live by :meth:`list_servers`. Providers
        without server states (this machine's engine) say so."""
        raise NotImplementedError(f"provider '{self.name}' has no server states")
