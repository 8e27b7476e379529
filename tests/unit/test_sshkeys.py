"""The SSH identity of a project/env and host-key pinning (projectdeployer.providers.ssh.keys), no server.

Cross-checked against OpenSSH's own tools (ssh-keygen reads our files) and paramiko (which the
SSH provider uses to connect).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import paramiko
import pytest

from projectdeployer.core.errors import ProjectDeployerError
from projectdeployer.providers.ssh import keys as sshkeys
from projectdeployer.providers.ssh.keys import HostKey, HostKeyChanged, SshKeyError, ensure_keypair, host_entry_name
from projectdeployer.providers.ssh.known_hosts import KnownHosts

pytestmark = pytest.mark.unit

needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _host_key() -> HostKey:
    key = paramiko.Ed25519Key.from_private_key_file(str(_fresh_private_key()))
    return HostKey(key.get_name(), key.get_base64())


_counter = iter(range(10**6))


def _fresh_private_key() -> Path:
    """A new ed25519 key, made by ensure_keypair for a throwaway env."""
    return ensure_keypair("hostkeys", f"k{next(_counter)}").private_path


# --- key pair -------------------------------------------------------------------------------


def test_keypair_is_generated_private_and_in_the_seed_layout(pd_home: Path) -> None:
    pair = ensure_keypair("shop", "prod")
    ssh_dir = pd_home / "shop" / "prod" / "secrets" / "ssh"
    assert pair.private_path == ssh_dir / "id_ed25519"
    assert _mode(pair.private_path) == 0o600
    assert _mode(ssh_dir) == 0o700
    assert _mode(ssh_dir.parent) == 0o700
    assert pair.public_openssh.startswith("ssh-ed25519 AAAA")
    assert pair.public_openssh.endswith(" projectdeployer:shop/prod")
    assert pair.public_path.read_text() == pair.public_openssh + "\n"
    assert "OPENSSH PRIVATE KEY" in pair.private_path.read_text()
    # paramiko (our SSH client) reads it, and its public half is the one we hand out
    key = paramiko.Ed25519Key.from_private_key_file(str(pair.private_path))
    assert pair.public_openssh.split()[1] == key.get_base64()
    assert pair.fingerprint == key.fingerprint


def test_keypair_is_reused_and_per_project_env() -> None:
    first = ensure_keypair("shop", "prod")
    key_text = first.private_path.read_text()
    again = ensure_keypair("shop", "prod")
    assert again == first
    assert again.private_path.read_text() == key_text
    assert ensure_keypair("shop", "dev").public_openssh != first.public_openssh
    assert ensure_keypair("blog", "prod").public_openssh != first.public_openssh


def test_keypair_repairs_public_file_and_modes() -> None:
    pair = ensure_keypair("shop", "prod")
    pair.public_path.unlink()
    os.chmod(pair.private_path, 0o644)
    os.chmod(pair.private_path.parent, 0o755)
    again = ensure_keypair("shop", "prod")
    assert again.public_openssh == pair.public_openssh
    assert pair.public_path.read_text().strip() == pair.public_openssh
    assert _mode(pair.private_path) == 0o600
    assert _mode(pair.private_path.parent) == 0o700
    pair.public_path.write_text("ssh-ed25519 AAAAstale other\n")
    assert ensure_keypair("shop", "prod").public_openssh == pair.public_openssh
    assert pair.public_path.read_text().strip() == pair.public_openssh


def test_unreadable_key_is_a_clear_error() -> None:
    pair = ensure_keypair("shop", "prod")
    pair.private_path.write_text("not a key\n")
    with pytest.raises(SshKeyError, match="cannot read the SSH key of shop/prod") as info:
        ensure_keypair("shop", "prod")
    assert isinstance(info.value, ProjectDeployerError)


def test_concurrent_first_calls_agree_on_one_key() -> None:
    results: list[str] = []

    def worker() -> None:
        results.append(ensure_keypair("race", "prod").public_openssh)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert ensure_keypair("race", "prod").public_openssh == results[0]


@needs_ssh_keygen
def test_openssh_accepts_the_key_and_agrees_on_the_fingerprint() -> None:
    pair = ensure_keypair("shop", "prod")
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(pair.private_path)], capture_output=True, text=True, check=True).stdout.split()
    assert derived[:2] == pair.public_openssh.split()[:2]
    listed = subprocess.run(["ssh-keygen", "-lf", str(pair.public_path)], capture_output=True, text=True, check=True).stdout
    assert pair.fingerprint in listed


# --- known_hosts ----------------------------------------------------------------------------


def test_entry_names_follow_openssh() -> None:
    assert host_entry_name("10.0.0.5", 22) == "10.0.0.5"
    assert host_entry_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def test_first_contact_pins_then_the_same_key_is_known(pd_home: Path) -> None:
    path = sshkeys.known_hosts_path("shop", "prod")
    assert path == pd_home / "shop" / "prod" / "config" / "known_hosts"
    known = KnownHosts(path)
    key = _host_key()
    assert known.lookup("127.0.0.1", 2222) == []
    assert known.check("web-1", "127.0.0.1", 2222, key) is False
    assert known.pin("web-1", "127.0.0.1", 2222, key) is True
    assert known.pin("web-1", "127.0.0.1", 2222, key) is False  # already there: no second line
    assert path.read_text() == f"[127.0.0.1]:2222 {key.keytype} {key.blob}\n"
    assert known.check("web-1", "127.0.0.1", 2222, key) is True
    # the same host on another port, or port 22, is another address
    assert known.lookup("127.0.0.1", 22) == []
    assert known.lookup("127.0.0.1", 2223) == []


def test_a_changed_key_is_refused_with_one_clear_line(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "known_hosts")
    old, new = _host_key(), _host_key()
    known.pin("web-1", "10.0.0.5", 22, old)
    with pytest.raises(HostKeyChanged) as info:
        known.check("web-1", "10.0.0.5", 22, new)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert "server web-1 at 10.0.0.5:22" in message
    assert f"expected {old.fingerprint}" in message and f"presented {new.fingerprint}" in message
    assert "rebuilt" in message and f"ssh-keygen -R '10.0.0.5' -f {tmp_path / 'known_hosts'}" in message
    assert isinstance(info.value, ProjectDeployerError)
    assert info.value.presented == new and info.value.expected == [old]
    # pin refuses too (a racing first contact that saw another key), and records nothing
    with pytest.raises(HostKeyChanged):
        known.pin("web-1", "10.0.0.5", 22, new)
    assert known.lookup("10.0.0.5", 22) == [old]


def test_remove_forgets_one_address_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("# servers of shop/prod\n")
    known = KnownHosts(path)
    a, b = _host_key(), _host_key()
    known.pin("a", "10.0.0.5", 22, a)
    known.pin("b", "10.0.0.6", 2222, b)
    assert known.remove("10.0.0.5", 22) == 1
    assert known.remove("10.0.0.5", 22) == 0
    assert known.lookup("10.0.0.5", 22) == []
    assert known.lookup("10.0.0.6", 2222) == [b]
    assert path.read_text().startswith("# servers of shop/prod\n")
    known.pin("a", "10.0.0.5", 22, b)  # a rebuilt server is pinned afresh
    assert known.lookup("10.0.0.5", 22) == [b]


def test_hashed_and_multi_name_entries_match(tmp_path: Path) -> None:
    key, other = _host_key(), _host_key()
    hashed = paramiko.HostKeys.hash_host("[10.0.0.7]:2222")
    path = tmp_path / "known_hosts"
    path.write_text(f"{hashed} {key.keytype} {key.blob}\nweb-2,10.0.0.8 {other.keytype} {other.blob}\n@cert-authority * ssh-ed25519 AAAAignored\ngarbage line\n")
    known = KnownHosts(path)
    assert known.lookup("10.0.0.7", 2222) == [key]
    assert known.lookup("10.0.0.8", 22) == [other]
    assert known.lookup("web-2", 22) == [other]
    with pytest.raises(HostKeyChanged):
        known.check("web-3", "10.0.0.7", 2222, other)
    assert known.remove("10.0.0.7", 2222) == 1
    assert "garbage line" in path.read_text()


def test_the_file_is_openssh_and_paramiko_format(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    known = KnownHosts(path)
    key = _host_key()
    known.pin("a", "127.0.0.1", 2222, key)
    known.pin("b", "10.0.0.5", 22, key)
    parsed = paramiko.HostKeys(str(path))
    assert parsed.lookup("[127.0.0.1]:2222")["ssh-ed25519"].get_base64() == key.blob
    assert parsed.lookup("10.0.0.5")["ssh-ed25519"].get_base64() == key.blob
    if shutil.which("ssh-keygen"):
        found = subprocess.run(["ssh-keygen", "-F", "[127.0.0.1]:2222", "-f", str(path)], capture_output=True, text=True)
        assert found.returncode == 0 and key.blob in found.stdout
    assert _mode(path) == 0o644


def test_fingerprint_matches_paramiko_and_openssh(tmp_path: Path) -> None:
    private = _fresh_private_key()
    key = paramiko.Ed25519Key.from_private_key_file(str(private))
    assert sshkeys.fingerprint(key.get_base64()) == key.fingerprint
    if shutil.which("ssh-keygen"):
        listed = subprocess.run(["ssh-keygen", "-lf", str(private)], capture_output=True, text=True, check=True).stdout
        assert sshkeys.fingerprint(key.get_base64()) in listed


def test_concurrent_first_contacts_write_one_line(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "known_hosts")
    keys = {f"10.0.0.{i}": _host_key() for i in range(10, 16)}
    threads = [threading.Thread(target=known.pin, args=(f"s{i}", host, 22, key)) for i, (host, key) in enumerate(keys.items()) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = (tmp_path / "known_hosts").read_text().splitlines()
    assert len(lines) == len(keys)
    for host, key in keys.items():
        assert known.lookup(host, 22) == [key]


def test_lines_paramiko_cannot_read_are_ignored_and_kept(tmp_path: Path) -> None:
    key = _host_key()
    path = tmp_path / "known_hosts"
    # bad base64 (paramiko's HostKeys.load would raise on it), and a key type paramiko does not know
    path.write_text("10.0.0.9 ssh-ed25519 !!!not-base64!!!\n10.0.0.9 ssh-unknown AAAAB3NzaC1yc2E=\n")
    known = KnownHosts(path)
    assert known.lookup("10.0.0.9", 22) == []
    assert known.pin("s", "10.0.0.9", 22, key) is True
    assert known.lookup("10.0.0.9", 22) == [key]
    assert known.remove("10.0.0.9", 22) == 1
    assert path.read_text() == "10.0.0.9 ssh-ed25519 !!!not-base64!!!\n10.0.0.9 ssh-unknown AAAAB3NzaC1yc2E=\n"
