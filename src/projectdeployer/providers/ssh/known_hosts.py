"""The pinned host keys of a project/environment: a known_hosts file in OpenSSH's format, each
address's key recorded on first contact and compared on every later one.

Reading and matching (hashed ``|1|...`` names written by ``ssh-keyscan -H`` included) are
paramiko's :class:`~paramiko.hostkeys.HostKeys`; where the file lives, the :class:`HostKey` values
and :class:`HostKeyChanged` are :mod:`projectdeployer.providers.ssh.keys`' (vendor-free).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko
import paramiko.hostkeys

from ...core.fsutil import atomic_write
from .keys import HostKey, HostKeyChanged, file_lock, host_entry_name


def _entry(line: str) -> paramiko.hostkeys.HostKeyEntry | None:
    """A known_hosts line as paramiko reads it; ``None`` for comments, ``@cert-authority`` /
    ``@revoked`` markers (not acted on), lines paramiko cannot read and key types it does not
    know (it could not have negotiated them). Such lines stay in the file as they are."""
    text = line.strip()
    if not text or text.startswith(("#", "@")):
        return None
    try:
        return paramiko.hostkeys.HostKeyEntry.from_line(text)
    except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError):
        return None


def _host_keys(lines: Iterable[str]) -> paramiko.HostKeys:
    """paramiko's table of the readable entries of ``lines`` (it matches hashed ``|1|`` names)."""
    table = paramiko.HostKeys()
    for line in lines:
        entry = _entry(line)
        if entry is not None:
            for name in entry.hostnames:
                table.add(name, entry.key.get_name(), entry.key)
    return table


def _pkey(key: HostKey) -> paramiko.PKey:
    return paramiko.PKey.from_type_string(key.keytype, base64.b64decode(key.blob))


class KnownHosts:
    """A known_hosts file whose entries are pinned on first contact.

    Reading and matching (hashed names included) is paramiko's :class:`~paramiko.hostkeys.HostKeys`;
    writing is ours: paramiko's ``save`` rewrites the file from the entries it could read (losing
    comments, markers and lines it does not understand) and not atomically, so a pin appends one
    line (:meth:`~paramiko.hostkeys.HostKeyEntry.to_line`) to the file as it is and a removal drops
    only the matching lines, each an atomic write under the file lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(f".{self.path.name}.lock")

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def lookup(self, host: str, port: int) -> list[HostKey]:
        """The keys pinned for ``host``:``port`` (empty when it was never contacted)."""
        found = _host_keys(self._lines()).lookup(host_entry_name(host, port))
        if found is None:
            return []
        return [HostKey(keytype, found[keytype].get_base64()) for keytype in dict.fromkeys(found.keys())]

    def check(self, server: str, host: str, port: int, presented: HostKey) -> bool:
        """True when ``presented`` is pinned for the address, False when nothing is pinned yet.

        Raises :class:`HostKeyChanged` when another key is pinned.
        """
        table = _host_keys(self._lines())
        name = host_entry_name(host, port)
        if table.lookup(name) is None:
            return False
        if table.check(name, _pkey(presented)):
            return True
        raise HostKeyChanged(server=server, host=host, port=port, expected=self.lookup(host, port), presented=presented, known_hosts=self.path)

    def pin(self, server: str, host: str, port: int, presented: HostKey) -> bool:
        """Record ``presented`` for the address unless a key is pinned already (first contact).

        Returns True when the key was recorded now. Atomic against other threads and processes:
        of two first contacts racing, the second sees the first one's key (and is refused if it
        differs).
        """
        with self._locked():
            if self.check(server, host, port, presented):
                return False
            line = paramiko.hostkeys.HostKeyEntry([host_entry_name(host, port)], _pkey(presented)).to_line()
            self._write([*self._lines(), line.rstrip("\n")])
            return True

    def remove(self, host: str, port: int) -> int:
        """Forget the keys of ``host``:``port`` (a rebuilt server, a reused port); returns how many."""
        name = host_entry_name(host, port)
        with self._locked():
            lines = self._lines()
            keep = [line for line in lines if _host_keys([line]).lookup(name) is None]
            removed = len(lines) - len(keep)
            if removed:
                self._write(keep)
            return removed

    def _write(self, lines: list[str]) -> None:
        atomic_write(self.path, "".join(line + "\n" for line in lines), mode=0o644)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with file_lock(self._lock_path):  # this process's threads and other processes
            yield


__all__ = ["KnownHosts"]
