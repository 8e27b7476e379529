"""Servers you already have (the ``ssh`` provider), end to end: three sandbox servers made
beforehand and listed in the project file by address, reached over real SSH.

* a deploy claims as many listed servers as the service needs (their state and slot written on
  the servers themselves) and serves through each one's sidecar;
* a servers_count above what the list has stops before anything changes, naming how many are
  missing;
* scaling down releases servers: the environment's containers gone, the state file removed, the
  server free for the next claim;
* ``servers check`` reports every listed server (the free one too): SSH, host key, Docker
  version, free disk, what of ours runs there; one that does not answer fails the check.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from projectdeployer import ProjectDeployer
from projectdeployer.cli import make_cli
from projectdeployer.core.errors import ProjectDeployerError
from projectdeployer.core.provider import ServerSpec
from projectdeployer.providers.hosts import HostsProvider, state_file
from projectdeployer.providers.sandbox import SandboxProvider, public_network_name, zone_network_name
from tests.docker.conftest import remove_project

pytestmark = pytest.mark.docker

APP = Path(__file__).resolve().parents[2] / "examples" / "python-api"
DOMAIN = "api.hosts.test"


def _project_file(path: Path, name: str, bed: dict[str, str], app: Path, registry: str, hosts: list[dict[str, str]], count: int, version: str) -> None:
    listed = "".join(f'\n[[environments.prod.servers]]\nname = "{h["name"]}"\naddress = "{h["address"]}"\nzone = "lon1"\nprivate_address = "{h["private"]}"\n' for h in hosts)
    path.write_text(
        f'[project]\nname = "{name}"\nregistry = "{registry}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in bed.items())
        + '\n[environments.prod]\nprovider = "ssh"\n'
        + listed
        + f'\n[services.api]\ntype = "python"\nbuild_context = "{app}"\ncommand = "python app.py"\nport = 8000\n'
        + f'servers_count = {count}\nserver_zone = "lon1"\ndomain = "{DOMAIN}"\nhealth_path = "/health"\nenv_vars = {{ APP_VERSION = "{version}" }}\n'
    )


@pytest.fixture
def hosts(tmp_path: Path, bed: dict[str, str], docker_client: Any, registry: str) -> Iterator[dict[str, Any]]:
    """Three servers made beforehand (sandbox servers, sshd and dockerd, the environment's key
    in root's authorized_keys), listed by their addresses as a team lists its own."""
    name = f"hst{os.getpid() % 1000}{int(time.time()) % 10000}"
    sandbox = SandboxProvider()
    app = tmp_path / "app"
    shutil.copytree(APP, app)
    try:
        made = sandbox.create_servers(name, "prod", [ServerSpec(zone="lon1") for _ in range(3)])
        listed = []
        for i, server in enumerate(sorted(made, key=lambda s: s.name)):
            networks = docker_client.containers.get(server.container_id).attrs["NetworkSettings"]["Networks"]
            listed.append(
                {
                    "name": f"box-{i + 1}",
                    "address": networks[public_network_name(name, "prod")]["IPAddress"],
                    "private": networks[zone_network_name(name, "prod", "lon1")]["IPAddress"],
                    "sandbox": server,
                }
            )
        yield {"name": name, "path": tmp_path / "hosts.toml", "app": app, "bed": bed, "registry": registry, "hosts": listed, "sandbox": sandbox}
    finally:
        for server in sandbox.list_servers(name, "prod"):
            sandbox.destroy_server(server)
        remove_project(docker_client, name, env="prod")


def _get(server: Any) -> dict[str, Any]:
    """GET / through ``server``'s own sidecar (port 80), from this machine over its address."""
    result = server.run(["curl", "-sS", "--max-time", "10", "-H", f"Host: {DOMAIN}", "http://127.0.0.1:80/"])
    assert result.ok, result.stderr
    return dict(json.loads(result.stdout))


def _claimed(provider: HostsProvider, name: str) -> dict[str, dict[str, Any]]:
    """server name -> its state file, for the listed servers that hold one."""
    found = {}
    for server in provider.list_servers(name, "prod"):
        found[server.name] = json.loads(server.get_file(state_file(server.data_root, name, "prod")))
    return found


def _ours(host: dict[str, Any], name: str) -> list[str]:
    """Containers of the project on a listed server, read through its engine."""
    client = host["sandbox"].docker()
    return sorted(c.name for c in client.containers.list(all=True, filters={"label": f"io.projectdeployer.project={name}"}))


def test_servers_you_list_are_claimed_served_refused_beyond_the_list_and_released(hosts: dict[str, Any], docker_client: Any) -> None:
    name, path, listed = hosts["name"], hosts["path"], hosts["hosts"]
    write = lambda count, version: _project_file(path, name, hosts["bed"], hosts["app"], hosts["registry"], listed, count, version)  # noqa: E731
    write(2, "1")
    lines: list[str] = []
    ProjectDeployer(str(path), path=path).deploy(env="prod", log=lines.append)
    project = ProjectDeployer(str(path), path=path)
    provider = project.environment("prod").provider()
    assert isinstance(provider, HostsProvider)
    claimed = _claimed(provider, name)
    assert sorted(claimed) == ["box-1", "box-2"], lines[-20:]
    assert sorted(s["slot"] for s in claimed.values()) == [0, 1] and {s["state"] for s in claimed.values()} == {"active"}
    servers = {s.name: s for s in provider.list_servers(name, "prod")}
    for server in servers.values():
        assert _get(server)["version"] == "1"
    assert _ours(listed[2], name) == []  # the third is not the environment's

    # `servers check` reads every listed server, the free one too.
    checked = CliRunner().invoke(make_cli(), ["-f", str(path), "servers", "check", "--env", "prod", "--json"], catch_exceptions=False)
    assert checked.exit_code == 0, checked.output
    report = {s["server"]: s for s in json.loads(checked.output)["servers"]}
    assert {n: r["state"] for n, r in report.items()} == {"box-1": "active", "box-2": "active", "box-3": "free"}
    assert all(r["ok"] and r["host_key"] == "pinned" and r["docker"][0].isdigit() and r["disk_free_gib"] > 0 for r in report.values()), report
    assert report["box-3"]["containers"] == [] and f"{name}_prod_nginx" in report["box-1"]["containers"]

    # More than the list has: refused before anything changes, naming what is missing.
    write(4, "2")
    with pytest.raises(ProjectDeployerError, match=r"environment prod needs more servers than it lists: 1 more in zone lon1 \(needs 2 new, 1 free\)"):
        ProjectDeployer(str(path), path=path).deploy(env="prod", log=lines.append)
    assert _claimed(provider, name) == claimed
    assert all(_get(s)["version"] == "1" for s in servers.values())

    # Three: the free one is claimed; then one: two are released (nothing of ours left there).
    write(3, "2")
    ProjectDeployer(str(path), path=path).deploy(env="prod", log=lines.append)
    assert sorted(_claimed(provider, name)) == ["box-1", "box-2", "box-3"]
    write(1, "2")
    ProjectDeployer(str(path), path=path).deploy(env="prod", log=lines.append)
    kept = _claimed(provider, name)
    assert len(kept) == 1, lines[-20:]
    (keeper,) = [s for s in provider.list_servers(name, "prod")]
    assert _get(keeper)["version"] == "2"
    for host in listed:
        if host["name"] not in kept:
            assert _ours(host, name) == [], host["name"]
            with pytest.raises(FileNotFoundError):
                host["sandbox"].get_file(state_file("/local", name, "prod"))

    # A listed server that does not answer: the check names it and fails.
    stopped = next(h for h in listed if h["name"] not in kept)
    docker_client.containers.get(stopped["sandbox"].container_id).stop(timeout=5)
    checked = CliRunner().invoke(make_cli(), ["-f", str(path), "servers", "check", "--env", "prod"])
    assert checked.exit_code == 1 and str(checked.exception).endswith(f"failed the check: {stopped['name']}"), checked.output
    assert "FAILED: server " + stopped["name"] in checked.output and "Unable to" in checked.output
