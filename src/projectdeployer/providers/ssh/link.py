"""One authenticated SSH connection (a paramiko ``Transport``) to a server, re-established when
it has dropped. :class:`~projectdeployer.providers.ssh.server.SshServer` keeps two: one for
commands and SFTP, one for its Docker traffic."""

from __future__ import annotations

import threading
from typing import Any, Protocol

import paramiko

from ...core.poll import retry
from .errors import SshConnectionLost, SshError, TryAgain

#: sshd's answers to a channel request while it still counts sessions just closed against its
#: ``MaxSessions`` (their teardown lags under load).
SESSIONS_BUSY = (paramiko.common.OPEN_FAILED_CONNECT_FAILED, paramiko.common.OPEN_FAILED_RESOURCE_SHORTAGE)
#: What paramiko raises for a refused channel whose reason another thread took: it keeps one
#: saved exception per Transport, so of two refusals at once one thread may get the other's
#: ChannelException and the other a bare SSHException with this text.
REFUSED_REASON_TAKEN = "Unable to open channel."


class Endpoint(Protocol):
    """What a link needs of its server: how to connect, and how to word an error."""

    connect_timeout: float
    keepalive: int

    def connect(self, purpose: str) -> Any:
        """An authenticated ``paramiko.SSHClient`` (retried; raises an :class:`SshError`)."""

    def error(self, kind: type[SshError], what: str, cause: BaseException | None = None) -> SshError:
        """An error of ``kind`` naming the server."""


class Link:
    """One authenticated SSH Transport to a server, re-established when it has dropped."""

    def __init__(self, server: Endpoint, purpose: str) -> None:
        self._server = server
        self._purpose = purpose
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._transport: paramiko.Transport | None = None
        #: Incremented on every (re)connection; lets users of the transport notice a new one.
        self.generation = 0
        self._attempts = 0
        self._last_error: BaseException | None = None

    def transport(self) -> paramiko.Transport:
        """The live transport, connecting (with retries) when there is none or it has dropped.

        Callers that waited while another thread's connection attempt failed get that failure
        instead of starting their own round of retries (N threads on a dead server cost one
        round, not N in a row).
        """
        seen = self._attempts
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self._transport
            if self._attempts != seen and self._last_error is not None:
                raise self._last_error
            self._drop()
            try:
                self._client = self._server.connect(self._purpose)
            except BaseException as exc:
                self._last_error = exc
                raise
            finally:
                self._attempts += 1
            self._last_error = None
            self._transport = self._client.get_transport()
            assert self._transport is not None
            self._transport.set_keepalive(self._server.keepalive)
            self.generation += 1
            return self._transport

    def open_session(self) -> paramiko.Channel:
        """A new session channel. A transport found dead while opening it (before anything was
        sent) is re-established once; any other refusal is raised."""
        transport = self.transport()

        def open_once() -> paramiko.Channel:
            try:
                return transport.open_session(timeout=self._server.connect_timeout)
            except paramiko.ChannelException as exc:
                if transport.is_active() and exc.code in SESSIONS_BUSY:
                    raise TryAgain() from exc
                raise
            except paramiko.SSHException as exc:
                if transport.is_active() and str(exc) == REFUSED_REASON_TAKEN:
                    raise TryAgain() from exc  # refused (the channel is gone), most likely for lack of sessions too
                raise

        # sshd refuses a channel while it still counts sessions that were just closed against
        # MaxSessions: nothing ran yet, so wait and ask again (0.05 s doubling to 1.6 s, 7 asks).
        try:
            return retry(open_once, attempts=7, retry_on=TryAgain, backoff=0.05, max_backoff=1.6)
        except (TryAgain, paramiko.SSHException, EOFError, OSError) as failed:
            exc = failed.__cause__ if isinstance(failed, TryAgain) else failed
            if transport.is_active():
                raise self._server.error(SshError, f"cannot open an SSH channel: {exc}", exc) from exc
        transport = self.transport()
        try:
            return transport.open_session(timeout=self._server.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._server.error(SshConnectionLost, f"cannot open an SSH channel: {exc}", exc) from exc

    def is_current(self, transport: paramiko.Transport | None) -> bool:
        """Whether ``transport`` is this link's transport and still up (what was opened on it,
        an SFTP session say, is still good)."""
        if transport is not self._transport:
            return False
        return transport is not None and bool(transport.is_active())

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._transport = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def connected(self) -> bool:
        """Whether the transport is up now (does not connect)."""
        transport = self._transport
        return transport is not None and bool(transport.is_active())
