"""``servers setup``'s decisions (providers/ssh/bootstrap.py) against a scripted server: what is
installed, started or left alone, through sudo for a login that is not root, and a refusal on a
system it cannot install Docker on. tests/docker/test_hosts.py sets up a real bare server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from projectdeployer.core.runtime import CommandResult
from projectdeployer.providers.ssh import bootstrap as boot
from projectdeployer.providers.ssh.bootstrap import SETUP_FILE, SetupError, bootstrap

pytestmark = pytest.mark.unit


def _result(code: int, out: str = "", err: str = "") -> CommandResult:
    return CommandResult(exit_code=code, stdout=out, stderr=err)


class Scripted:
    """A server whose shell answers from its state: the OS, the login, Docker installed and running."""

    name = "box-1"
    data_root = "/local"

    def __init__(self, *, os_id: str = "debian", like: str = "", uid: int = 0, installed: bool = False, running: bool = False, sudo: bool = True) -> None:
        self.os_id, self.like, self.uid, self.installed, self.running, self.sudo = os_id, like, uid, installed, running, sudo
        self.commands: list[str] = []
        self.files: dict[str, bytes] = {}

    def run(self, command: list[str], *, timeout: float | None = None) -> CommandResult:
        line = command[-1] if command[:2] == ["sh", "-c"] else " ".join(command)
        self.commands.append(line)
        if line == boot._FACTS:
            docker = "24.0.5" if self.running else ""
            out = f"id={self.os_id}\nlike={self.like}\nversion=12\nuid={self.uid}\nuser={'root' if self.uid == 0 else 'deploy'}\ninstalled={'yes' if self.installed else ''}\ndocker={docker}\n"
            return _result(0, out, "")
        if line == "sudo -n true":
            return _result(0 if self.sudo else 1, "", "" if self.sudo else "sudo: a password is required")
        if "apt-get" in line:
            self.installed = True
            return _result(0, "", "")
        if "service docker start" in line:
            self.running = self.installed
            return _result(0, "", "")
        if "docker version" in line:
            return _result(0, "24.0.5\n", "") if self.running else _result(1, "", "Cannot connect to the Docker daemon")
        return _result(0, "", "")

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.files[path] = data


def test_a_bare_debian_server_gets_docker_installed_started_and_a_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boot, "copy_images", lambda server, images, log: sorted(images))
    server = Scripted()
    lines: list[str] = []
    report = bootstrap(server, {"pd-test/nginx:1.22": "sha256:1"}, log=lines.append, apt_proxy="http://10.0.0.2:3142")
    assert (report.docker, report.docker_version, report.images_copied, report.os) == ("installed", "24.0.5", ("pd-test/nginx:1.22",), "debian 12")
    (install,) = [c for c in server.commands if "apt-get" in c]
    assert "install -y -q --no-install-recommends docker.io" in install and "Acquire::http::Proxy=http://10.0.0.2:3142" in install and "sudo" not in install
    assert any("mkdir -p /local /etc/projectdeployer" in c for c in server.commands)
    assert json.loads(server.files[SETUP_FILE])["docker"] == "24.0.5"
    assert lines == ["box-1: installing Docker (apt-get install docker.io through http://10.0.0.2:3142)"]


def test_twice_is_nothing_new_and_a_stopped_engine_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boot, "copy_images", lambda server, images, log: [])
    ready = Scripted(installed=True, running=True)
    assert bootstrap(ready, {}).docker == "present"
    assert not [c for c in ready.commands if "apt-get" in c or "service docker" in c]
    stopped = Scripted(installed=True, running=False)
    assert bootstrap(stopped, {}).docker == "started"
    assert not [c for c in stopped.commands if "apt-get" in c]


def test_a_login_that_is_not_root_goes_through_sudo_and_joins_the_docker_group(monkeypatch: pytest.MonkeyPatch) -> None:
    copied: list[Any] = []
    monkeypatch.setattr(boot, "copy_images", lambda *args: copied.append(args) or [])
    server = Scripted(uid=1000)
    report = bootstrap(server, {"pd-test/nginx:1.22": "sha256:1"})
    assert report.docker == "installed" and report.images_copied == () and copied == []  # left for the first deploy
    assert all(part.startswith("sudo -n ") for c in server.commands if "apt-get" in c for part in c.split(" && "))
    assert "sudo -n usermod -aG docker deploy" in server.commands and "sudo -n chown deploy /local" in server.commands
    with pytest.raises(SetupError, match=r"^server box-1: setup needs root, or passwordless sudo for deploy$"):
        bootstrap(Scripted(uid=1000, sudo=False), {})


def test_no_install_on_a_system_that_is_not_debian_or_ubuntu() -> None:
    with pytest.raises(SetupError, match=r"^server box-1: Docker is not installed and the system is alpine 12, not Debian or Ubuntu: install Docker yourself"):
        bootstrap(Scripted(os_id="alpine"), {})
    ubuntu = Scripted(os_id="ubuntu", like="debian")
    assert bootstrap(ubuntu, {}).docker == "installed"
