"""The :class:`~projectdeployer.core.provider.Server` reached over SSH (see the package's
docstring for what it does and why): commands, files over SFTP, the server-side lock, reverse
port forwarding, probes run on the server, and its Docker engine through
:mod:`~projectdeployer.providers.ssh.docker_transport`."""

from __future__ import annotations

import base64
import contextlib
import logging
import posixpath
import secrets
import select
import shlex
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import paramiko

from ...core.fanout import one_line
from ...core.poll import WaitTimeout, retry, wait_until
from ...core.provider import CommandResult, Server
from ...core.runtime import ContainerRuntime
from .errors import ServerLocked, SshAuthError, SshCommandTimeout, SshConnectError, SshConnectionLost, SshError, TryAgain
from .keys import HostKey, HostKeyChanged, KeyPair, ensure_keypair, host_entry_name, known_hosts_path
from .known_hosts import KnownHosts
from .link import Link

# paramiko logs every failed connection attempt (with a traceback) from its transport thread; we
# retry those and report the last one ourselves. A NullHandler keeps them off stderr unless the
# application configures logging.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

#: Exceptions during connection establishment worth another attempt (server booting, sshd
#: restarting, a full accept queue). Host-key and authentication failures are not among them.
_TRANSIENT = (OSError, EOFError, paramiko.SSHException)


class _PinOnFirstContact(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Called by paramiko only for an address with no pinned key: record the presented key."""

    def __init__(self, server: SshServer) -> None:
        self._server = server

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        server = self._server
        server.known_hosts.pin(server.name, server.public_address, server.port, _host_key(key))


def _no_delay(client: paramiko.SSHClient) -> None:
    """Send each SSH packet at once (``TCP_NODELAY``), as OpenSSH's client does.

    Without it a request written in two packets (an HTTP request's headers, then its body; a
    command, then its stdin) waits for the server to acknowledge the first: up to 40 ms of
    delayed ACK per round trip, measured as 44 ms of each 2 ms ``exec_create`` here.
    """
    transport = client.get_transport()
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _host_key(key: paramiko.PKey) -> HostKey:
    return HostKey(key.get_name(), key.get_base64())


# --- the server -----------------------------------------------------------------------------


class SshServer(Server):
    """A machine reached over SSH, with its own Docker engine."""

    def __init__(
        self,
        *,
        name: str,
        zone: str,
        public_address: str,
        key_pair: KeyPair,
        known_hosts: Path | KnownHosts,
        port: int = 22,
        private_address: str | None = None,
        user: str = "root",
        data_root: str = "/local",
        bind_address: str | None = None,
        docker_socket: str = "/var/run/docker.sock",
        tags: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        connect_attempts: int = 4,
        backoff: float = 0.5,
        keepalive: int = 30,
        max_sessions: int = 8,
        docker_timeout: float = 300.0,
        docker_pool_size: int = 8,
    ) -> None:
        self.name = name
        self.zone = zone
        self.public_address = public_address
        self.port = int(port)
        self.private_address = private_address or public_address
        self.user = user
        self.key_pair = key_pair
        self.known_hosts = known_hosts if isinstance(known_hosts, KnownHosts) else KnownHosts(known_hosts)
        self.data_root = data_root
        self.bind_address = bind_address or self.private_address
        self.docker_socket = docker_socket
        self.tags = dict(tags or {})
        self.connect_timeout = connect_timeout
        self.connect_attempts = max(1, connect_attempts)
        self.backoff = backoff
        self.keepalive = keepalive
        self.docker_timeout = docker_timeout
        self.docker_pool_size = docker_pool_size
        # SFTP keeps one channel open for good: at least one more is needed for commands.
        self._sessions = threading.BoundedSemaphore(max(2, max_sessions))
        self._pkey: paramiko.PKey | None = None
        self._link = Link(self, "commands")
        self._docker_link = Link(self, "docker")
        self._sftp_lock = threading.Lock()
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_transport: paramiko.Transport | None = None
        self._docker_lock = threading.Lock()
        self._docker_client: Any = None

    @classmethod
    def for_project(cls, project: str, env: str, **kwargs: Any) -> SshServer:
        """A server of ``project``/``env``: its key pair and known_hosts file."""
        kwargs.setdefault("key_pair", ensure_keypair(project, env))
        kwargs.setdefault("known_hosts", known_hosts_path(project, env))
        return cls(**kwargs)

    def __repr__(self) -> str:
        return f"<SshServer {self.name} {self.address}>"

    @property
    def address(self) -> str:
        """``user@host:port``, as error messages show it."""
        return f"{self.user}@{self.public_address}:{self.port}"

    def error(self, kind: type[SshError], what: str, cause: BaseException | None = None) -> SshError:
        """An error of ``kind`` naming this server (``server {name} ({address}): {what}``)."""
        return kind(f"server {self.name} ({self.address}): {what}", server=self.name, cause=cause)

    # --- connecting ---------------------------------------------------------------------

    def _private_key(self) -> paramiko.PKey:
        if self._pkey is None:
            try:
                self._pkey = paramiko.Ed25519Key.from_private_key_file(str(self.key_pair.private_path))
            except (OSError, paramiko.SSHException) as exc:
                raise self.error(SshAuthError, f"cannot read the SSH key {self.key_pair.private_path}: {exc}", exc) from exc
        return self._pkey

    def connect(self, purpose: str) -> paramiko.SSHClient:
        """An authenticated client (what its links connect with), retrying transient failures
        with exponential backoff; ``purpose`` names the link in the error."""

        def connect_once() -> paramiko.SSHClient:
            try:
                return self._connect_once()
            except (HostKeyChanged, SshError):
                raise  # never retried (SshCommandTimeout is an OSError too)
            except _TRANSIENT as exc:
                raise TryAgain() from exc

        try:
            return retry(connect_once, attempts=self.connect_attempts, retry_on=TryAgain, backoff=self.backoff, max_backoff=float("inf"))
        except TryAgain as failed:
            last = failed.__cause__
        assert last is not None
        raise self.error(
            SshConnectError,
            f"cannot connect ({purpose}) after {self.connect_attempts} attempt(s): {type(last).__name__}: {one_line(last)}",
            last,
        ) from last

    def _connect_once(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        # Pinned keys go in as the client's own host keys: paramiko then prefers their key type
        # in the negotiation and compares; unknown addresses reach _PinOnFirstContact.
        entry = host_entry_name(self.public_address, self.port)
        for known in self.known_hosts.lookup(self.public_address, self.port):
            try:
                client.get_host_keys().add(entry, known.keytype, paramiko.PKey.from_type_string(known.keytype, base64.b64decode(known.blob)))
            except (paramiko.SSHException, ValueError):
                continue  # not expected: lookup returns only keys paramiko has read
        client.set_missing_host_key_policy(_PinOnFirstContact(self))
        try:
            client.connect(
                self.public_address,
                port=self.port,
                username=self.user,
                pkey=self._private_key(),
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyChanged(
                server=self.name,
                host=self.public_address,
                port=self.port,
                expected=self.known_hosts.lookup(self.public_address, self.port) or [_host_key(exc.expected_key)],
                presented=_host_key(exc.key),
                known_hosts=self.known_hosts.path,
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise self.error(SshAuthError, f"the server refused our key {self.key_pair.fingerprint} ({exc}); is it in {self.user}'s authorized_keys?", exc) from exc
        except BaseException:
            client.close()
            raise
        _no_delay(client)
        return client

    def wait_until_reachable(self, timeout: float = 60.0) -> None:
        """Wait for a new server's sshd to accept our key (authentication failures included:
        the key may not be installed yet). Raises the last error after ``timeout``."""

        def reached() -> tuple[bool, SshError | None]:
            try:
                self._link.transport()
            except HostKeyChanged:
                raise
            except SshError as exc:
                return False, exc
            return True, None

        try:
            wait_until(reached, timeout=timeout, interval=0.5, what=f"server {self.name} reachable")
        except WaitTimeout as exc:
            assert isinstance(exc.last, SshError)
            raise exc.last from exc.last.__cause__

    def connected(self) -> bool:
        """Whether the command connection is up now (does not connect)."""
        return self._link.connected()

    def close(self) -> None:
        """Close the Docker client, SFTP and both connections (they reopen on next use)."""
        with self._docker_lock:
            if self._docker_client is not None:
                self._docker_client.close()
            self._docker_client = None
        with self._sftp_lock:
            self._close_sftp()
        self._link.close()
        self._docker_link.close()

    def __enter__(self) -> SshServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commands -----------------------------------------------------------------------

    def run(self, command: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        """Run ``command`` (an argument list) on the server; each argument reaches it literally."""
        if isinstance(command, str):
            raise TypeError("run() takes an argument list, not a shell string")
        argv = [str(arg) for arg in command]
        if not argv:
            raise ValueError("run() needs a command")
        line = shlex.join(argv)
        with self._sessions:
            channel = self._link.open_session()
            try:
                channel.exec_command(line)
                channel.shutdown_write()  # stdin is empty: a command that reads it sees EOF, never hangs
                return self._collect(channel, line, timeout)
            except SshError:
                raise
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise self.lost(f"running {_short(line)} (it may or may not have run)", exc) from exc
            finally:
                channel.close()

    def lost(self, during: str, cause: BaseException | None = None) -> SshError:
        """The error for a connection that dropped ``during`` something."""
        detail = f": {one_line(cause)}" if cause is not None else ""
        return self.error(SshConnectionLost, f"connection lost while {during}{detail}", cause)

    def _collect(self, channel: paramiko.Channel, line: str, timeout: float | None) -> CommandResult:
        """Read stdout and stderr until the exit status arrives (or the deadline passes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[bytes] = []
        err: list[bytes] = []
        while True:
            drained = _drain(channel, out, err)
            # sshd may send the exit status before it has relayed all output: done at EOF + status
            if (channel.eof_received or channel.closed) and channel.exit_status_ready():
                _drain(channel, out, err)
                break
            if drained:
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise self.error(SshCommandTimeout, f"{_short(line)} did not finish within {timeout:g}s (channel closed)")
            slice_ = 1.0 if remaining is None else min(remaining, 1.0)
            if channel.eof_received:
                channel.status_event.wait(slice_)  # all output is in; the exit status follows
            else:
                select.select([channel], [], [], slice_)
        exit_code = channel.recv_exit_status()
        if exit_code == -1:
            transport = channel.get_transport()
            if transport is None or not transport.is_active():
                raise self.lost(f"running {_short(line)} (it may or may not have run)")
            # Open channel, no exit status: the process was killed by a signal (paramiko does not
            # report exit-signal); -1 stands for it, as a negative code does for subprocess.
        return CommandResult(exit_code=exit_code, stdout=b"".join(out).decode(errors="replace"), stderr=b"".join(err).decode(errors="replace"))

    # --- locks --------------------------------------------------------------------------

    @contextlib.contextmanager
    def hold_lock(self, path: str, *, wait: float = 0.0) -> Iterator[None]:
        """Hold ``flock`` on ``path`` on the server for the block.

        The lock is held by a process of an open SSH session (``flock PATH cat``): it is
        released when the block ends *and* when this process dies or its connection drops (sshd
        ends the session, ``cat`` sees EOF), so a crashed deploy never leaves a stale lock.
        Raises :class:`ServerLocked` when another holder keeps it longer than ``wait`` seconds.
        """
        directory = path.rsplit("/", 1)[0]
        script = f"mkdir -p {shlex.quote(directory)} && exec flock -w {max(0.0, wait):g} {shlex.quote(path)} sh -c 'echo PD-LOCKED; exec cat'"
        channel = self._link.open_session()
        try:
            channel.exec_command(script)
            got = b""

            def locked() -> tuple[bool, str]:
                nonlocal got
                while channel.recv_ready():
                    got += channel.recv(64)
                if b"PD-LOCKED" in got:
                    return True, ""
                if channel.exit_status_ready():
                    raise ServerLocked(f"server {self.name}: {path} is locked by another deploy (waited {wait:g}s)")
                return False, f"read {got[-64:]!r}" if got else ""

            def wake(seconds: float) -> None:
                select.select([channel], [], [], seconds)  # as soon as the server writes, not after a fixed sleep

            wait_until(
                locked,
                timeout=wait + self.connect_timeout + 5,
                interval=0.2,
                what=f"an answer while taking the lock {path}",
                error=lambda message: self.error(SshCommandTimeout, message),
                sleep=wake,
            )
            yield
        finally:
            channel.close()  # EOF for cat: flock exits and releases the lock

    # --- files --------------------------------------------------------------------------

    def _open_sftp(self) -> paramiko.SFTPClient:
        """The SFTP session (caller holds _sftp_lock), reopened after a reconnection."""
        if self._sftp is not None and self._link.is_current(self._sftp_transport):
            return self._sftp
        self._close_sftp()
        self._sessions.acquire()
        try:
            channel = self._link.open_session()
            channel.invoke_subsystem("sftp")
            self._sftp = paramiko.SFTPClient(channel)
        except BaseException as exc:
            self._sessions.release()
            if isinstance(exc, (paramiko.SSHException, EOFError, OSError)) and not isinstance(exc, SshError):
                raise self.error(SshError, f"cannot start SFTP: {exc}", exc) from exc
            raise
        self._sftp_transport = channel.get_transport()
        return self._sftp

    def _close_sftp(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:  # noqa: BLE001 - the connection is gone already
                pass
            self._sftp = None
            self._sftp_transport = None
            self._sessions.release()

    def put_file(self, remote_path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write ``data`` to ``remote_path`` atomically with ``mode`` (parents are created)."""
        directory, base = posixpath.split(remote_path)
        tmp = posixpath.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        with self._sftp_lock:
            sftp = self._open_sftp()
            try:
                _makedirs(sftp, directory)
                try:
                    with sftp.open(tmp, "wb") as fh:
                        fh.chmod(mode)  # before any byte: a secret is never readable by others
                        fh.set_pipelined(True)
                        fh.write(data)
                    sftp.posix_rename(tmp, remote_path)
                except BaseException:
                    _remove_quietly(sftp, tmp)
                    raise
            except (EOFError, paramiko.SSHException) as exc:
                self._close_sftp()
                raise self.lost(f"writing {remote_path}", exc) from exc
            except OSError as exc:
                if not self._link.is_current(self._sftp_transport):
                    self._close_sftp()
                    raise self.lost(f"writing {remote_path}", exc) from exc
                raise _os_error(exc, f"server {self.name}: cannot write {remote_path}: {exc.strerror or exc}") from exc

    def get_file(self, remote_path: str) -> bytes:
        """Read ``remote_path`` (FileNotFoundError when it does not exist, as locally)."""
        with self._sftp_lock:
            sftp = self._open_sftp()
            try:
                with sftp.open(remote_path, "rb") as fh:
                    fh.prefetch()
                    data: bytes = fh.read()
                    return data
            except (EOFError, paramiko.SSHException) as exc:
                self._close_sftp()
                raise self.lost(f"reading {remote_path}", exc) from exc
            except OSError as exc:
                if not self._link.is_current(self._sftp_transport):
                    self._close_sftp()
                    raise self.lost(f"reading {remote_path}", exc) from exc
                raise _os_error(exc, f"server {self.name}: cannot read {remote_path}: {exc.strerror or exc}") from exc

    # --- forwarding -----------------------------------------------------------------------

    @contextlib.contextmanager
    def reverse_forward(self, port: int, *, target: tuple[str, int] | None = None) -> Iterator[None]:
        """For the block, the server's ``127.0.0.1:port`` leads to ``target`` on this machine
        (default ``127.0.0.1:port``), through this server's SSH connection (``ssh -R``).

        What it is for: a registry that only this machine reaches (``127.0.0.1:5000``) serves
        the server's engine, which trusts plain-HTTP registries on loopback.
        """
        target = target or ("127.0.0.1", port)
        transport = self._link.transport()
        stop = threading.Event()

        def pump(a: Any, b: Any) -> None:
            try:
                while not stop.is_set():
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for end in (a, b):
                    with contextlib.suppress(Exception):
                        end.close()

        def handler(channel: Any, origin: Any, server: Any) -> None:
            try:
                sock = socket.create_connection(target, timeout=10)
            except OSError:
                channel.close()
                return
            sock.settimeout(None)
            threading.Thread(target=pump, args=(channel, sock), daemon=True).start()
            threading.Thread(target=pump, args=(sock, channel), daemon=True).start()

        try:
            transport.request_port_forward("127.0.0.1", port, handler=handler)
        except paramiko.SSHException as exc:
            raise self.error(SshError, f"the server refused to forward its port {port} to this machine: {exc}", exc) from exc
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                transport.cancel_port_forward("127.0.0.1", port)

    # --- docker -------------------------------------------------------------------------

    def docker(self) -> Any:
        """A ``docker.DockerClient`` talking to this server's engine over SSH (cached)."""
        with self._docker_lock:
            if self._docker_client is None:
                from .docker_transport import docker_client  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

                self._docker_client = docker_client(self, self._docker_link)
            return self._docker_client

    def runtime(self) -> ContainerRuntime:
        from ..docker_runtime import DockerRuntime  # noqa: PLC0415 - deferred: imports the docker SDK (start-up)

        return DockerRuntime(self.docker(), bind_address=self.bind_address)

    # --- probes (run on the server) -----------------------------------------------------

    def probe_http(self, port: int, path: str = "/", *, timeout: float = 2.0) -> tuple[bool, str]:
        """GET ``path`` on host port ``port`` of this server, from the server itself."""
        url = f"http://{_url_host(self.bind_address)}:{int(port)}{path}"
        result = self.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", f"{timeout:g}", "-H", "User-Agent: projectdeployer-healthcheck", url],
            timeout=timeout + self.connect_timeout,
        )
        code = result.stdout.strip()
        if result.ok and code.isdigit() and code != "000":
            status = int(code)
            return status < 500, f"HTTP {status} from GET {path}"
        reason = one_line(Exception(result.stderr)) if result.stderr.strip() else f"curl exit {result.exit_code}"
        return False, f"GET {path} on port {port}: {reason}"

    def probe_tcp(self, port: int, *, timeout: float = 2.0) -> tuple[bool, str]:
        """Open a TCP connection to host port ``port`` from the server itself."""
        result = self.run(["timeout", f"{timeout:g}", "bash", "-c", _TCP_PROBE, "probe", self.bind_address, str(int(port))], timeout=timeout + self.connect_timeout)
        verdict = result.stdout.strip()
        if verdict == "answers":
            return True, f"TCP port {port} answers"
        if verdict == "accepts":
            return True, f"TCP port {port} accepts connections"
        if verdict == "closed":
            return False, f"TCP port {port}: connection closed at once (nothing listening behind the published port)"
        if result.exit_code == 124:
            return False, f"TCP port {port}: no answer within {timeout:g}s"
        lines = result.stderr.strip().splitlines()
        reason = lines[0].removeprefix("probe: ") if lines else f"exit {result.exit_code}"
        return False, f"TCP port {port}: {reason}"


#: Connect, then wait 0.3 s for a first byte (as LocalServer.probe_tcp): a byte = answers,
#: silence = accepts (databases wait for the client), EOF at once = the proxy closed it.
_TCP_PROBE = r"""
exec 3<>"/dev/tcp/$1/$2" || exit 10
IFS= read -r -t 0.3 -n 1 -u 3 _
rc=$?
if [ "$rc" -eq 0 ]; then echo answers
elif [ "$rc" -gt 128 ]; then echo accepts
else echo closed
fi
"""


def _drain(channel: paramiko.Channel, out: list[bytes], err: list[bytes]) -> bool:
    """Move what has arrived on stdout/stderr into ``out``/``err``; True when anything did."""
    got = False
    while channel.recv_ready():
        out.append(channel.recv(65536))
        got = True
    while channel.recv_stderr_ready():
        err.append(channel.recv_stderr(65536))
        got = True
    return got


def _os_error(exc: OSError, message: str) -> OSError:
    """``exc``'s kind (FileNotFoundError, PermissionError, ...) with a message naming the server."""
    return type(exc)(exc.errno, message) if exc.errno is not None else OSError(message)


def _short(line: str, limit: int = 120) -> str:
    return f"`{line}`" if len(line) <= limit else f"`{line[:limit]}...`"


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def _makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
    """``mkdir -p`` over SFTP."""
    if not directory or directory == "/":
        return
    try:
        sftp.stat(directory)
        return
    except FileNotFoundError:
        pass
    _makedirs(sftp, posixpath.dirname(directory))
    try:
        sftp.mkdir(directory, 0o755)
    except OSError:
        sftp.stat(directory)  # created meanwhile by someone else: fine; otherwise raise


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except Exception:  # noqa: BLE001 - best effort cleanup of a temporary file
        pass
