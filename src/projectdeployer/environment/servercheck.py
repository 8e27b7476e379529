"""``servers check``: what each server of an environment is, read over SSH, changing nothing.

Per server: whether SSH answers (and whether its host key was pinned before this check or just
now), the Docker engine's version, the free disk under its data root, and the containers of the
project there. The servers are those the provider lists; for servers you list yourself (the
``ssh`` provider) also the free ones, so a server can be checked before a deploy claims it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

import attrs

from ..core.fanout import fan_out, one_line
from ..core.provider import Server
from ..core.runtime import LABEL_ENV, LABEL_PROJECT
from .environment import Environment

#: One shell line run on each server: engine version, free KiB under the data root, our containers.
_PROBE = (
    "printf 'docker=%s\\n' \"$(docker version --format '{{{{.Server.Version}}}}' 2>&1 | head -n 1)\"; "
    "printf 'disk=%s\\n' \"$(df -Pk {root} 2>/dev/null | awk 'NR==2 {{print $4}}')\"; "
    "printf 'ours=%s\\n' \"$(docker ps -a --filter label={project_label} --filter label={env_label} --format '{{{{.Names}}}}' 2>/dev/null | tr '\\n' ' ')\""
)


@attrs.frozen(kw_only=True)
class ServerCheck:
    """What one server answered."""

    server: str
    address: str
    zone: str
    #: ``active``/``reserve``/``destroying``, or ``free`` (listed, not claimed yet).
    state: str
    reachable: bool
    #: ``pinned`` (known before), ``new`` (pinned by this check), or ``""`` (not reached).
    host_key: str = ""
    docker: str = ""
    disk_free_gib: float | None = None
    containers: tuple[str, ...] = ()
    error: str = ""

    @property
    def ok(self) -> bool:
        """Reachable, with a Docker engine that answers."""
        return self.reachable and bool(self.docker) and not self.error

    def to_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "containers": list(self.containers), "ok": self.ok}


def check_servers(environment: Environment) -> list[ServerCheck]:
    """Every server of ``environment``, checked in parallel (see the module)."""
    provider = environment.provider()
    project, env = environment.project.name, environment.env
    listed = getattr(provider, "listed_servers", None)
    servers: Sequence[Server] = listed(project, env) if listed is not None else provider.list_servers(project, env)
    checked = fan_out(list(servers), lambda s: _check(s, project, env), max_workers=8, name=lambda s: s.name)
    return [c if isinstance(c, ServerCheck) else _failed(s, c) for s, c in ((s, checked[s.name]) for s in servers)]


def _check(server: Server, project: str, env: str) -> ServerCheck:
    who = ServerCheck(server=server.name, address=str(getattr(server, "address", "") or server.public_address), zone=server.zone, state=str(server.tags.get("state", "active")), reachable=False)
    known = _known_before(server)
    try:
        result = server.run(
            ["sh", "-c", _PROBE.format(root=shlex.quote(server.data_root), project_label=shlex.quote(f"{LABEL_PROJECT}={project}"), env_label=shlex.quote(f"{LABEL_ENV}={env}"))], timeout=60
        )
    except Exception as exc:  # noqa: BLE001 - whatever stops SSH, the server is reported, not raised
        return attrs.evolve(who, error=one_line(exc))
    answers = dict(line.partition("=")[::2] for line in result.stdout.splitlines() if "=" in line)
    docker = answers.get("docker", "").strip()
    disk = answers.get("disk", "").strip()
    problem = ""
    if not docker or not docker[0].isdigit():
        problem, docker = f"no Docker engine answers ({docker or 'docker not found'})", ""
    return attrs.evolve(
        who,
        reachable=True,
        host_key="pinned" if known else "new",
        docker=docker,
        disk_free_gib=round(int(disk) / 1024 / 1024, 1) if disk.isdigit() else None,
        containers=tuple(sorted(answers.get("ours", "").split())),
        error=problem,
    )


def _known_before(server: Server) -> bool:
    """Whether the server's host key is pinned already (before this check connects)."""
    try:
        ssh = getattr(server, "ssh", server)  # where SSH really goes (a sandbox server: loopback)
        known_hosts = getattr(ssh, "known_hosts", None)
        return known_hosts is not None and bool(known_hosts.lookup(ssh.public_address, getattr(ssh, "port", 22)))
    except Exception:  # noqa: BLE001 - not running, or an unreadable file: not pinned as far as we can tell
        return False


def _failed(server: Server, exc: BaseException) -> ServerCheck:
    return ServerCheck(server=server.name, address=server.public_address, zone=server.zone, state=str(server.tags.get("state", "")), reachable=False, error=one_line(exc))
