"""Make a bare Debian or Ubuntu server ready for deploys, over SSH (as ``kamal server bootstrap``).

What :func:`bootstrap` leaves on the server, each step skipped when it is there already (so it is
safe to run twice, and on a server that has some of it):

- the Docker engine: Debian's ``docker.io`` from the server's own apt sources (through
  ``apt_proxy`` when given), started and enabled (systemd, else its init script), answering;
- the data root (``/local``, the seed's tree) and ``/etc/projectdeployer/setup`` saying what
  setup did and when;
- the images every server runs before any service (the routing sidecar's nginx and the Python
  image of the scheduler agent), copied from this machine's engine when the server lacks them.

A login that is not root runs the system steps through ``sudo -n`` and is added to the
``docker`` group. The DigitalOcean template (:mod:`..digitalocean.template`) is made by the same
function.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ...core.errors import ProjectDeployerError
from ...core.poll import wait_until
from ...core.provider import Server

#: Where setup says what it did (JSON).
SETUP_FILE = "/etc/projectdeployer/setup"
#: The ``[images]`` keys every server runs before any service: the sidecar and the scheduler.
SERVER_IMAGES = ("nginx", "python")
#: Seconds apt-get may take to fetch and install the engine.
INSTALL_TIMEOUT = 900.0
#: Seconds the engine may take to answer once started.
ENGINE_TIMEOUT = 90.0

#: Prints ``id=...``, ``like=...``, ``uid=...``, ``docker=<server version or nothing>``.
_FACTS = (
    '. /etc/os-release 2>/dev/null; printf "id=%s\\nlike=%s\\nversion=%s\\n" "${ID:-}" "${ID_LIKE:-}" "${VERSION_ID:-}"; '
    'printf "uid=%s\\nuser=%s\\n" "$(id -u)" "$(id -un)"; '
    "printf 'installed=%s\\n' \"$(command -v dockerd >/dev/null 2>&1 && echo yes)\"; "
    "printf 'docker=%s\\n' \"$(docker version --format '{{.Server.Version}}' 2>/dev/null | head -n 1)\""
)
#: Starts an installed engine: systemd where it runs; else the package's init script, and where
#: that cannot run (a container, WSL: its ``ulimit`` is refused) dockerd itself, detached.
_START = "if [ -d /run/systemd/system ]; then systemctl enable --now docker; else service docker start 2>/dev/null || { setsid nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null & }; fi"


class SetupError(ProjectDeployerError):
    """A server could not be set up; the message names it and the step."""


@attrs.frozen(kw_only=True)
class SetupReport:
    """What setup found and did on one server."""

    server: str
    os: str
    #: ``installed`` (by this run), ``started`` (installed, was not running) or ``present``.
    docker: str
    docker_version: str
    #: Images copied from this machine by this run (refs).
    images_copied: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "images_copied": list(self.images_copied)}


def bootstrap(server: Server, images: Mapping[str, str], *, log: Callable[[str], None] = lambda line: None, apt_proxy: str | None = None) -> SetupReport:
    """Set ``server`` up (see the module); ``images``: ref -> id in this machine's engine."""
    started = time.monotonic()
    facts = _facts(server)
    os_name = f"{facts.get('id') or '?'} {facts.get('version') or ''}".strip()
    sudo = "" if facts.get("uid") == "0" else "sudo -n "
    if sudo and not server.run(["sudo", "-n", "true"]).ok:
        raise SetupError(f"server {server.name}: setup needs root, or passwordless sudo for {facts.get('user') or 'the login user'}")
    docker = "present"
    if not facts.get("installed"):
        if "debian" not in {facts.get("id", ""), *facts.get("like", "").split()}:
            raise SetupError(f"server {server.name}: Docker is not installed and the system is {os_name}, not Debian or Ubuntu: install Docker yourself, then run setup again")
        log(f"{server.name}: installing Docker (apt-get install docker.io{' through ' + apt_proxy if apt_proxy else ''})")
        _sh(server, _install_command(sudo, apt_proxy), "installing Docker", timeout=INSTALL_TIMEOUT)
        docker = "installed"
    if not facts.get("docker") or docker == "installed":
        if docker == "present":
            log(f"{server.name}: starting Docker")
            docker = "started"
        _sh(server, f"sudo -n sh -c {shlex.quote(_START)}" if sudo else _START, "starting Docker", timeout=120)
        if sudo:
            _sh(server, f"sudo -n usermod -aG docker {shlex.quote(facts.get('user', ''))}", "adding the login user to the docker group", timeout=60)
    version = _wait_engine(server, sudo)
    _sh(server, f"{sudo}mkdir -p {shlex.quote(server.data_root)} /etc/projectdeployer", "creating the data root", timeout=60)
    if sudo:
        _sh(server, f"sudo -n chown {shlex.quote(facts.get('user', ''))} {shlex.quote(server.data_root)}", "giving the data root to the login user", timeout=60)
    if sudo:
        # The docker group applies from the login's next connection, not this one: the first
        # deploy sends the images instead.
        log(f"{server.name}: the images are left for the first deploy ({facts.get('user')} joins the docker group at its next connection)")
        copied: list[str] = []
    else:
        copied = copy_images(server, images, log)
    record = {"docker": version, "images": dict(images), "os": os_name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if sudo:
        _sh(server, f"printf '%s\\n' {shlex.quote(json.dumps(record, sort_keys=True))} | sudo -n tee {SETUP_FILE} >/dev/null", "writing the setup record", timeout=60)
    else:
        server.put_file(SETUP_FILE, (json.dumps(record, sort_keys=True) + "\n").encode())
    return SetupReport(server=server.name, os=os_name, docker=docker, docker_version=version, images_copied=tuple(copied), seconds=round(time.monotonic() - started, 1))


def image_ids(refs: Sequence[str]) -> dict[str, str]:
    """ref -> id of each of ``refs`` this machine's engine has (the others are left out)."""
    import docker  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)
    import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

    client = docker.from_env()
    found: dict[str, str] = {}
    for ref in refs:
        try:
            found[ref] = client.images.get(ref).id
        except docker.errors.ImageNotFound:
            continue
    return found


def server_image_refs(project: Any) -> tuple[str, ...]:
    """The images every server runs before any service, as ``project``'s ``[images]`` names
    them: the sidecar's nginx and the scheduler's Python (a key it lacks is left out)."""
    refs: list[str] = []
    for key in SERVER_IMAGES:
        try:
            refs.append(project.image(key))
        except (KeyError, AttributeError):
            continue
    return tuple(refs)


def copy_images(server: Server, images: Mapping[str, str], log: Callable[[str], None]) -> list[str]:
    """Copy each of ``images`` (ref -> id here) the server's engine lacks; the refs copied."""
    import docker  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)
    import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

    if not images:
        return []
    local, remote = docker.from_env(), server.docker()
    copied: list[str] = []
    for ref, image_id in sorted(images.items()):
        try:
            if remote.images.get(ref).id == image_id:
                continue
        except docker.errors.ImageNotFound:
            pass
        log(f"{server.name}: copying {ref}")
        remote.images.load(local.images.get(image_id).save(named=ref))
        copied.append(ref)
    return copied


def _facts(server: Server) -> dict[str, str]:
    result = server.run(["sh", "-c", _FACTS], timeout=60)
    if not result.ok:
        raise SetupError(f"server {server.name}: cannot read what it runs: {(result.stderr or result.stdout).strip()[-300:]}")
    return {key: value.strip() for key, _, value in (line.partition("=") for line in result.stdout.splitlines()) if key}


def _install_command(sudo: str, apt_proxy: str | None) -> str:
    proxy = f" -o Acquire::http::Proxy={shlex.quote(apt_proxy)}" if apt_proxy else ""
    env = "DEBIAN_FRONTEND=noninteractive"
    return f"{sudo}env {env} apt-get{proxy} update -q && {sudo}env {env} apt-get{proxy} install -y -q --no-install-recommends docker.io"


def _wait_engine(server: Server, sudo: str) -> str:
    """The engine's version once it answers (through sudo for a login not in the group yet)."""
    command = f"{sudo}docker version --format '{{{{.Server.Version}}}}'"

    def answers() -> tuple[bool, str]:
        result = server.run(["sh", "-c", command], timeout=30)
        if result.ok and result.stdout.strip():
            return True, result.stdout.strip().splitlines()[0]
        return False, (result.stderr or result.stdout).strip()[-300:]

    return wait_until(answers, timeout=ENGINE_TIMEOUT, interval=1.0, what=f"server {server.name}: the Docker engine answering", error=SetupError)


def _sh(server: Server, command: str, what: str, *, timeout: float) -> None:
    result = server.run(["sh", "-c", command], timeout=timeout)
    if not result.ok:
        raise SetupError(f"server {server.name}: {what} failed: {(result.stderr or result.stdout).strip()[-300:]}")
