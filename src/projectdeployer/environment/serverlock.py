"""The deploy lock of an environment, held where the environment runs.

On this machine it is the local ``flock`` of ``$PROJECTDEPLOYER_HOME/{project}/{env}/deploy.lock``.
On servers it is held on the environment's *lock server* — the first of its servers by name —
as ``{data_root}/{project}/{env}/deploy.lock``, by a process of an SSH session
(:meth:`~projectdeployer.providers.ssh.SshServer.hold_lock`), so two operators on two machines
cannot deploy the same project/env at once, and a deploy that dies (even by SIGKILL, or with its
network) releases the lock with its connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..core import paths
from ..core.errors import ProjectDeployerError
from ..core.provider import Server
from .locks import deploy_lock


def _can_lock(server: Server) -> bool:
    try:
        return hasattr(server, "hold_lock")
    except ProjectDeployerError:  # a server that cannot be reached now (e.g. a stopped sandbox server)
        return False


def lock_server(servers: Sequence[Server]) -> Server | None:
    """The server that holds the environment's lock: the first by name that can hold one."""
    able = [s for s in servers if _can_lock(s)]
    return min(able, key=lambda s: s.name) if able else None


def local_lock(project: str, env: str, *, wait: float = 0.0) -> contextlib.AbstractContextManager[None]:
    """This machine's lock of the environment (deploys from here exclude each other)."""
    return deploy_lock(Path(paths.env_dir(project, env)) / "deploy.lock", wait=wait)


@contextlib.contextmanager
def server_lock(project: str, env: str, servers: Sequence[Server], *, wait: float = 0.0) -> Iterator[Server | None]:
    """Hold the lock on the lock server of ``servers`` (none when no server can hold one);
    yields the server holding it."""
    holder = lock_server(servers)
    if holder is None:
        yield None
        return
    with holder.hold_lock(f"{holder.data_root.rstrip('/')}/{project}/{env}/deploy.lock", wait=wait):  # type: ignore[attr-defined]
        yield holder


@contextlib.contextmanager
def environment_lock(project: str, env: str, servers: Sequence[Server], *, wait: float = 0.0) -> Iterator[None]:
    """Hold the environment's deploy lock: the local one always (deploys from this machine
    exclude each other without a round trip), and the lock server's when there is one."""
    with local_lock(project, env, wait=wait), server_lock(project, env, servers, wait=wait):
        yield


__all__ = ["environment_lock", "local_lock", "lock_server", "server_lock"]
