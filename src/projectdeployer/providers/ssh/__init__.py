"""Server access over SSH: the one :class:`~projectdeployer.core.provider.Server` implementation
every remote provider (sandbox, DigitalOcean, servers you already have) uses.

The package
-----------
* :mod:`.keys`: the project/env key pair, where host keys are pinned, :class:`HostKey`,
  :class:`HostKeyChanged` (vendor-free: the sandbox provider imports it when plugins load);
* :mod:`.known_hosts`: the pinned host keys file, read and written with paramiko's ``HostKeys``;
* :mod:`.errors`: :class:`SshError` and its kinds;
* :mod:`.link`: one authenticated paramiko Transport, re-established when it has dropped;
* :mod:`.server`: :class:`SshServer`, commands, SFTP, locks, forwarding, probes;
* :mod:`.docker_transport`: the Docker SDK over a link (``docker system dial-stdio``).

``from projectdeployer.providers.ssh import SshServer`` imports paramiko on first use only, so
importing :mod:`.keys` (or this package) costs no SDK.

What it does
------------
* **Identity and trust.** Authenticates with the project/env key pair
  (:func:`projectdeployer.providers.ssh.keys.ensure_keypair`), never with the operator's agent or
  ``~/.ssh`` keys, and pins host keys in ``{home}/{project}/{env}/config/known_hosts``: the first
  contact records the key, a different key later is refused with
  :class:`~projectdeployer.providers.ssh.keys.HostKeyChanged` before anything is authenticated or run.
  ``~/.ssh/config`` and ``~/.ssh/known_hosts`` are not read: a deploy behaves the same on every
  operator machine.
* **Commands** ``run(argv)``: the argument list is quoted with :func:`shlex.join`, so the remote
  shell sees each argument literally (spaces, quotes, ``$(...)``); stdout and stderr are read
  concurrently; a timeout closes the channel and raises :class:`SshCommandTimeout`.
* **Files** over SFTP: ``put_file`` writes a temporary file beside the target, sets its mode
  *before* writing a byte, then renames it over the target (``posix-rename@openssh.com``), so
  readers see the old or the new file and a secret is never readable by others.
* **Connections** are reused: one authenticated paramiko Transport per server for commands and
  SFTP (thread-safe; at most ``max_sessions`` channels at once, below OpenSSH's default
  ``MaxSessions 10``), re-established when it has dropped. Connection *establishment* is retried
  with exponential backoff (refused, reset, timeout, no banner yet); commands never are, since
  they may not be idempotent. Every error names the server and keeps its cause (``__cause__``).
* **Fan-out** :func:`fan_out`: a function over many servers in parallel, bounded concurrency, a
  per-server timeout, every error kept under its server's name.

How ``docker()`` reaches the server's engine
--------------------------------------------
The options were:

1. ``docker.DockerClient(base_url="ssh://root@host:port")`` (paramiko inside the SDK). Its
   ``SSHHTTPAdapter`` builds its own ``SSHClient``: it reads ``~/.ssh/config`` and the system
   known_hosts with ``RejectPolicy``, accepts no key file or host-key store from the caller
   (docker/docker-py#2416, #3062), connects in its constructor and keys its connection pools by
   full URL, so almost every distinct API path costs a new SSH channel and a new remote process.
   ``use_ssh_client=True`` shells out to ``ssh`` and has the same configuration problem.
2. Forwarding the remote ``/var/run/docker.sock`` with a ``direct-streamlocal@openssh.com``
   channel. paramiko has no API for that channel type (paramiko/paramiko#544, open since 2015);
   it would mean copying ``Transport.open_channel`` and its private state.
3. **Chosen:** what the Docker CLI and the SDK themselves do for ``ssh://`` hosts — an exec
   channel running ``docker system dial-stdio`` on the server, which relays stdin/stdout to the
   engine socket — but on *our* authenticated, host-key-pinned paramiko Transport, plugged into
   the SDK through a small requests adapter mounted exactly where the SDK mounts its own SSH
   adapter (``http+docker://ssh``), so the SDK's streaming code (logs, attach, exec, image load)
   takes its SSH path unchanged. Keep-alive HTTP connections are pooled in ONE pool per server
   (at most ``docker_pool_size`` channels, each one ``dial-stdio`` process on the server), and a
   pooled connection whose channel or transport has died is replaced, not handed out.

   Docker traffic runs on a second Transport of its own, opened on the first ``docker()`` call:
   pooled dial-stdio channels are long-lived *session* channels and would otherwise use up the
   sshd ``MaxSessions`` limit that ``run``/SFTP need. Requirements on the server: the ``docker``
   CLI (18.09+) and a login user allowed to use the engine socket (root here).

Probes run ON the server
------------------------
A container's host port is published on the server's bind (private/VPC) address, which the
operator's machine may not reach, so :meth:`SshServer.probe_http` runs ``curl`` on the server and
:meth:`SshServer.probe_tcp` a ``bash`` ``/dev/tcp`` check, with LocalServer's semantics (a port
where the engine's proxy accepts and closes at once counts as not listening). A server that
cannot be reached raises (a clear :class:`SshError` naming it) instead of reporting "unhealthy".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...core.fanout import FanOutFailed, FanOutTimeout, failures, fan_out, raise_for_failures
from .errors import ServerLocked, SshAuthError, SshCommandTimeout, SshConnectError, SshConnectionLost, SshError

if TYPE_CHECKING:
    from .server import SshServer

__all__ = [
    "FanOutFailed",
    "FanOutTimeout",
    "ServerLocked",
    "SshAuthError",
    "SshCommandTimeout",
    "SshConnectError",
    "SshConnectionLost",
    "SshError",
    "SshServer",
    "failures",
    "fan_out",
    "raise_for_failures",
]


def __getattr__(name: str) -> Any:
    if name == "SshServer":
        from .server import SshServer  # noqa: PLC0415 - deferred: paramiko (start-up: ~0.1 s), not needed by .keys

        return SshServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
