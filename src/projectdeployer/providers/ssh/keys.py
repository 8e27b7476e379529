"""SSH identity and host-key pinning of a project/environment, on the operator's machine.

Two things live here, both vendor-free (the plain ``(key type, base64 blob)`` pairs of
:class:`HostKey`; the SSH provider bridges paramiko's key objects to them):

* **The key pair** ``ensure_keypair(project, env)``: one ed25519 key per project/env, generated
  once with ``cryptography`` and reused afterwards. It is installed on every server of that
  environment (``authorized_keys``)::

      {home}/{project}/{env}/secrets/ssh/id_ed25519       OpenSSH private key, 0600 (dir 0700)
      {home}/{project}/{env}/secrets/ssh/id_ed25519.pub   ``ssh-ed25519 AAAA... projectdeployer:{project}/{env}``

* **Pinned host keys**: where they live (:func:`known_hosts_path`,
  ``{home}/{project}/{env}/config/known_hosts``, OpenSSH's format: ``host`` for port 22,
  ``[host]:port`` otherwise), :class:`HostKey` and :class:`HostKeyChanged`, which names both SHA256
  fingerprints and how to fix it. The file itself is read and written by
  :class:`projectdeployer.providers.ssh.known_hosts.KnownHosts` (paramiko's ``HostKeys``, hashed
  ``|1|...`` entries included): the first connection to an address records the key it presented;
  a later connection presenting a different key is refused.

Both files are written atomically and under an advisory file lock, so several processes (or
threads fanning out to many new servers) can create and pin at the same time.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from ...core import paths
from ...core.errors import ProjectDeployerError
from ...core.fsutil import atomic_write, write_private

KEY_FILE = "id_ed25519"
KNOWN_HOSTS_FILE = "known_hosts"

_thread_lock = threading.RLock()


# --- key pair -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class KeyPair:
    """The SSH identity of a project/environment."""

    #: The OpenSSH-format private key file (mode 0600).
    private_path: Path
    #: The public key line as ``authorized_keys`` wants it: ``ssh-ed25519 AAAA... comment``.
    public_openssh: str

    @property
    def public_path(self) -> Path:
        return self.private_path.with_name(self.private_path.name + ".pub")

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -lf`` prints it."""
        return fingerprint(self.public_openssh.split()[1])


def ssh_dir(project: str, env: str) -> Path:
    """``{home}/{project}/{env}/secrets/ssh``."""
    return paths.env_dir(project, env, "secrets") / "ssh"


def known_hosts_path(project: str, env: str) -> Path:
    """``{home}/{project}/{env}/config/known_hosts``."""
    return paths.env_dir(project, env, "config") / KNOWN_HOSTS_FILE


def ensure_keypair(project: str, env: str) -> KeyPair:
    """The key pair of ``project``/``env``: generated on the first call, reused afterwards.

    The public half is always derived from the private key (a missing or stale ``.pub`` file is
    rewritten), and a private key file readable by others is made private again.
    """
    directory = ssh_dir(project, env)
    _make_private_dir(directory)
    private_path = directory / KEY_FILE
    with file_lock(directory / ".lock"):
        if private_path.exists():
            if private_path.stat().st_mode & 0o077:
                os.chmod(private_path, 0o600)
            public = _public_line(private_path.read_bytes(), project, env)
        else:
            private_pem, public = _generate(project, env)
            write_private(private_path, private_pem)
        pub_path = private_path.with_name(KEY_FILE + ".pub")
        if not pub_path.exists() or pub_path.read_text().strip() != public:
            atomic_write(pub_path, public + "\n", mode=0o644)
    return KeyPair(private_path=private_path, public_openssh=public)


def _make_private_dir(directory: Path) -> None:
    """Create ``directory`` and make it and its ``secrets`` parent 0700."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in (directory, directory.parent):
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o700)


def _comment(project: str, env: str) -> str:
    return f"projectdeployer:{project}/{env}"


def _generate(project: str, env: str) -> tuple[str, str]:
    """A new ed25519 key: (OpenSSH private key text, public key line)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - deferred: cryptography (start-up: ~30 ms; only when a key is made or read)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415 - deferred: cryptography (start-up: ~30 ms; only when a key is made or read)

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private.decode(), f"{public.decode()} {_comment(project, env)}"


def _public_line(private_pem: bytes, project: str, env: str) -> str:
    """The public key line of an OpenSSH private key."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - deferred: cryptography (start-up: ~30 ms; only when a key is made or read)

    try:
        key = serialization.load_ssh_private_key(private_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SshKeyError(f"cannot read the SSH key of {project}/{env} ({exc}); remove it to have a new one generated, then install the new public key on the servers") from exc
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{public.decode()} {_comment(project, env)}"


class SshKeyError(ProjectDeployerError):
    """The project's SSH key exists but cannot be used."""


# --- host keys ------------------------------------------------------------------------------


def fingerprint(blob_b64: str) -> str:
    """The SHA256 fingerprint of a public key blob (base64), as OpenSSH prints it."""
    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def host_entry_name(host: str, port: int) -> str:
    """How known_hosts names an address: ``host`` on port 22, ``[host]:port`` otherwise."""
    return host if int(port) == 22 else f"[{host}]:{int(port)}"


@attrs.frozen
class HostKey:
    """A public host key: ``ssh-ed25519`` and its base64 blob."""

    keytype: str
    blob: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)

    def describe(self) -> str:
        return f"{self.fingerprint} ({self.keytype})"


class HostKeyChanged(ProjectDeployerError):
    """A server presented a host key other than the one pinned on first contact."""

    def __init__(self, *, server: str, host: str, port: int, expected: list[HostKey], presented: HostKey, known_hosts: Path) -> None:
        self.server = server
        self.address = host_entry_name(host, port)
        self.expected = expected
        self.presented = presented
        self.known_hosts = known_hosts
        wanted = ", ".join(key.describe() for key in expected)
        super().__init__(
            f"host key of server {server} at {host}:{port} has changed: expected {wanted}, "
            f"presented {presented.describe()}; refusing to connect. If the server was rebuilt, "
            f"remove its line with: ssh-keygen -R '{self.address}' -f {known_hosts}"
        )


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed), released on exit or death."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _thread_lock:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


__all__ = [
    "HostKey",
    "HostKeyChanged",
    "KeyPair",
    "SshKeyError",
    "ensure_keypair",
    "file_lock",
    "fingerprint",
    "host_entry_name",
    "known_hosts_path",
    "ssh_dir",
]
