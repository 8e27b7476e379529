"""The ``ssh`` provider: servers you already have, listed in the project file.

```toml
[environments.prod]
provider = "ssh"

[[environments.prod.servers]]
name = "web-1"
address = "203.0.113.10"      # where this machine reaches its sshd
zone = "fsn1"                 # any name; services pick servers by it (server_zone)
private_address = "10.0.0.10" # optional: what the zone's other servers use (default: address)
user = "root"                 # optional (default root), port = 22 likewise
```

The provider cannot create or tag machines, so what a cloud keeps in tags lives on the servers
themselves: a server belongs to an environment while it holds the environment's state file
(``{data_root}/{project}/{env}/server.json``: state ``active``/``reserve``/``destroying``, slot,
zone). A deploy that needs a server "creates" it by claiming a listed server that holds no such
file; one that needs more than the list has stops before anything changes, naming how many are
missing (:meth:`HostsProvider.missing_servers`). Destroying a server releases it: the
environment's containers and networks are removed and its state file deleted; its volumes
(data) stay, for you to remove.

Every server is reached with the environment's key pair and its host key pinned on first
contact, as for every remote provider (:mod:`projectdeployer.providers.ssh`); put the public key
(``{home}/{project}/{env}/secrets/ssh/id_ed25519.pub``, made on first use) in the user's
``authorized_keys``. First deploys are exclusive through a lock held on the first listed
server (``flock`` in a session, released when the deploy ends or its connection drops).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..core.errors import ProjectDeployerError
from ..core.fanout import fan_out
from ..core.model import HostSpec, Project
from ..core.provider import Provider, Server, ServerSpec
from ..core.runtime import LABEL_ENV, LABEL_PROJECT
from ..hookspecs import hookimpl
from .ssh.wrapped import SshBackedServer

PROVIDER_NAME = "ssh"
STATES = ("active", "reserve", "destroying")


class HostsError(ProjectDeployerError):
    """A server of an ``ssh`` environment cannot be used as asked."""


def state_file(data_root: str, project: str, env: str) -> str:
    """Where a server keeps what a cloud would keep in its tags."""
    return f"{data_root.rstrip('/')}/{project}/{env}/server.json"


class HostServer(SshBackedServer):
    """A listed server as read now: its tags (state, slot) from its state file, everything else
    through its (reused) :class:`~projectdeployer.providers.ssh.server.SshServer`."""

    def __init__(self, ssh: Any, tags: Mapping[str, str]) -> None:
        self._ssh = ssh
        self.name = ssh.name
        self.zone = ssh.zone
        self.public_address = ssh.public_address
        self.private_address = ssh.private_address
        self.data_root = ssh.data_root
        self.bind_address = ssh.bind_address
        self.docker_socket = ssh.docker_socket
        self.tags = dict(tags)

    def __repr__(self) -> str:
        return f"<HostServer {self.name} {self._ssh.address} zone={self.zone} state={self.tags.get('state')}>"

    @property
    def ssh(self) -> Any:
        return self._ssh

    @property
    def state(self) -> str:
        return self.tags.get("state", "active")

    @property
    def running(self) -> bool:
        """Whether it answered when listed (one that did not is named by the deploy)."""
        return self.tags.get("power") != "unreachable"


class HostsProvider(Provider):
    """The servers an environment lists (see the module). One per project file version."""

    name = PROVIDER_NAME

    def __init__(self, project: Project | None = None, *, connect: Callable[..., Any] | None = None) -> None:
        self.project = project
        self._connect = connect
        self._lock = threading.Lock()
        self._claiming = threading.Lock()
        #: SSH access reused across listings: (env, name, address, port, user) -> SshServer.
        self._ssh: dict[tuple[str, ...], Any] = {}

    @classmethod
    def for_project(cls, project: Project) -> HostsProvider:
        return cls(project)

    @classmethod
    def cache_key(cls, project: Project) -> tuple[Any, ...]:
        """A provider per list of servers: an edited list is read afresh."""
        return tuple((env, tuple((h.name, h.address, h.port, h.user, h.zone, h.private_address) for h in spec.servers)) for env, spec in sorted(project.environments.items()))

    # --- the list ------------------------------------------------------------------------------

    def hosts(self, project: str, env: str) -> list[HostSpec]:
        """The servers the project file lists for ``env``."""
        if self.project is None or self.project.name != project:
            raise HostsError(f'provider "{PROVIDER_NAME}" reads its servers from the project file of {project}: open the project first')
        spec = self.project.environments.get(env)
        if spec is None or not spec.servers:
            raise HostsError(f"environment {env} lists no servers ([[environments.{env}.servers]] in the project file)")
        return list(spec.servers)

    def _ssh_for(self, project: str, env: str, host: HostSpec) -> Any:
        key = (env, host.name, host.address, str(host.port), host.user, host.zone, host.private_address or "")
        with self._lock:
            found = self._ssh.get(key)
            if found is None:
                if self._connect is not None:
                    found = self._connect(project, env, host)
                else:
                    from .ssh.server import SshServer  # noqa: PLC0415 - deferred: imports paramiko (start-up: ~0.1 s)

                    found = SshServer.for_project(project, env, name=host.name, zone=host.zone, public_address=host.address, port=host.port, user=host.user, private_address=host.private_address)
                self._ssh[key] = found
            return found

    def _read(self, project: str, env: str, host: HostSpec) -> tuple[HostServer, bool]:
        """The server as read now, and whether it belongs to the environment (holds its file)."""
        from .ssh.errors import SshError  # noqa: PLC0415 - deferred: next to paramiko's imports

        ssh = self._ssh_for(project, env, host)
        base = {"project": project, "env": env, "zone": host.zone}
        try:
            raw = ssh.get_file(state_file(ssh.data_root, project, env))
        except FileNotFoundError:
            return HostServer(ssh, {**base, "power": "on"}), False
        except (SshError, OSError) as exc:
            # Unknown whether it is ours: listed as unreachable, so a deploy names it.
            return HostServer(ssh, {**base, "state": "active", "power": "unreachable", "error": str(exc)}), True
        try:
            data = json.loads(raw)
            state, slot = str(data["state"]), data.get("slot")
        except (ValueError, KeyError, TypeError):
            raise HostsError(f"server {host.name}: {state_file(ssh.data_root, project, env)} is not ProjectDeployer's state file (remove it to free the server)") from None
        return HostServer(ssh, {**base, "state": state, "power": "on", **({"slot": str(slot)} if slot is not None else {})}), True

    def _read_all(self, project: str, env: str) -> list[tuple[HostServer, bool]]:
        hosts = self.hosts(project, env)
        read = fan_out(hosts, lambda h: self._read(project, env, h), max_workers=8, name=lambda h: h.name)
        found: list[tuple[HostServer, bool]] = []
        for host in hosts:
            outcome = read[host.name]
            if isinstance(outcome, BaseException):
                raise outcome
            found.append(outcome)
        return found

    def list_servers(self, project: str, env: str) -> list[Server]:
        """The listed servers that belong to the environment now (hold its state file), and any
        that could not be asked (as not running)."""
        return [server for server, ours in self._read_all(project, env) if ours]

    def listed_servers(self, project: str, env: str) -> list[Server]:
        """Every listed server, the free ones too (state ``free``): what ``servers check`` reads."""
        found: list[Server] = []
        for server, ours in self._read_all(project, env):
            found.append(server if ours else HostServer(server.ssh, {**server.tags, "state": "free"}))
        return found

    # --- claiming and releasing ----------------------------------------------------------------

    def address_for(self, target: Server, viewer: Server) -> str:
        """Always the listed ``private_address`` (the address when none is given): ports are
        published there only, and servers of other zones reach it on the team's own private
        network (WireGuard, Tailscale, a provider's vSwitch); without one, leave
        ``private_address`` unset and firewall the public address."""
        return target.private_address

    def missing_servers(self, project: str, env: str, wanted: Mapping[str, int]) -> str | None:
        free = Counter(server.zone for server, ours in self._read_all(project, env) if not ours)
        short = {zone: count - free.get(zone, 0) for zone, count in wanted.items() if count > free.get(zone, 0)}
        if not short:
            return None
        parts = [f"{n} more in zone {zone} (needs {wanted[zone]} new, {free.get(zone, 0)} free)" for zone, n in sorted(short.items())]
        return f"environment {env} needs more servers than it lists: {'; '.join(parts)}; add them to [[environments.{env}.servers]] in the project file"

    def create_server(self, project: str, env: str, spec: ServerSpec) -> Server:
        """Claim a listed server of ``spec.zone`` that belongs to no environment yet."""
        with self._claiming:  # two claims of one deploy never take the same server
            for server, ours in self._read_all(project, env):
                if not ours and server.zone == spec.zone and server.tags.get("power") == "on":
                    self._write_state(server, project, env, state=spec.tags.get("state", "active"), slot=spec.tags.get("slot"))
                    return self._reread(project, env, server)
        raise HostsError(f"environment {env}: no free listed server in zone {spec.zone} (add one to [[environments.{env}.servers]])")

    def destroy_server(self, server: Server) -> None:
        """Release ``server``: the environment's containers and networks removed, its state file
        deleted. Its volumes (data) stay. Releasing a free server does nothing."""
        project, env = server.tags.get("project", ""), server.tags.get("env", "")
        ssh = getattr(server, "ssh", server)
        path = state_file(ssh.data_root, project, env)
        try:
            ssh.get_file(path)
        except FileNotFoundError:
            return
        self._write_state(server, project, env, state="destroying", slot=server.tags.get("slot"))
        runtime = ssh.runtime()
        client = ssh.docker()
        filters = {"label": [f"{LABEL_PROJECT}={project}", f"{LABEL_ENV}={env}"]}
        for container in client.containers.list(all=True, filters=filters):
            runtime.stop(container.name, timeout=30)
            runtime.remove(container.name)
        for network in client.networks.list(filters={"name": f"{project}_{env}_"}):
            with contextlib.suppress(Exception):
                network.remove()
        result = ssh.run(["rm", "-f", path])
        if not result.ok:
            raise HostsError(f"server {server.name}: cannot remove {path}: {result.stderr.strip()}")

    def set_server_state(self, server: Server, state: str) -> Server:
        if state not in STATES:
            raise HostsError(f"unknown server state {state!r} (one of {', '.join(STATES)})")
        project, env = server.tags.get("project", ""), server.tags.get("env", "")
        self._write_state(server, project, env, state=state, slot=server.tags.get("slot"))
        return self._reread(project, env, server)

    def _write_state(self, server: Server, project: str, env: str, *, state: str, slot: str | None) -> None:
        ssh = getattr(server, "ssh", server)
        body = {"state": state, "zone": server.zone, **({"slot": int(slot)} if slot is not None and str(slot).isdigit() else {})}
        ssh.put_file(state_file(ssh.data_root, project, env), (json.dumps(body, sort_keys=True) + "\n").encode(), mode=0o644)

    def _reread(self, project: str, env: str, server: Server) -> HostServer:
        host = next(h for h in self.hosts(project, env) if h.name == server.name)
        return self._read(project, env, host)[0]

    # --- the first deploy's lock ---------------------------------------------------------------

    @contextlib.contextmanager
    def creation_lock(self, project: str, env: str, *, wait: float = 0.0) -> Iterator[None]:
        """``flock`` on the first listed server, held by this process's SSH session (released when
        the block ends, the process dies or the connection drops)."""
        first = self.hosts(project, env)[0]
        ssh = self._ssh_for(project, env, first)
        with ssh.hold_lock(f"{ssh.data_root.rstrip('/')}/{project}/{env}/create.lock", wait=wait):
            yield


@hookimpl
def register_providers(register: Callable[..., None]) -> None:
    # Zones are the ones the servers name (the project file's validation knows them).
    register(PROVIDER_NAME, HostsProvider)


__all__ = ["PROVIDER_NAME", "HostServer", "HostsError", "HostsProvider", "state_file"]
