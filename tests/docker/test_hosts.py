"""Servers you already have (the ``ssh`` provider), end to end: three sandbox servers made
beforehand and listed in the project file by address, reached over real SSH.

* a deploy claims as many listed servers as the service needs (their state and slot written on
  the servers themselves) and serves through each one's sidecar;
* a servers_count above what the list has stops before anything changes, naming how many are
  missing;
* scaling down releases servers: the environment's containers gone, the state file removed, the
  server free for the next claim;
* ``servers check`` reports every listed server (the free one too): SSH, host key, Docker
  version, free disk, what of ours runs there; one that does not answer fails the check;
* ``servers setup`` makes a bare Debian server (sshd only, no Docker) ready: Docker installed
  from Debian's mirror and started, the data root, the sidecar's and scheduler's images copied;
  run twice it changes nothing; a deploy then claims that server and serves from it.
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
from tests.support.bed import SERVER_IMAGE

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


BARE = "pd-test/bare-server:bookworm"


@pytest.fixture(scope="module")
def bare_image(docker_client: Any, bed: dict[str, str]) -> str:  # the bed: its server image
    """A server image without Docker (tests/images/bare-server), from the bed's server image."""
    context = Path(__file__).resolve().parents[1] / "images" / "bare-server"
    docker_client.images.build(path=str(context), tag=BARE, buildargs={"BASE": SERVER_IMAGE}, rm=True)
    return BARE


@pytest.fixture
def hosts(tmp_path: Path, bed: dict[str, str], docker_client: Any, registry: str, bare_image: str) -> Iterator[dict[str, Any]]:
    """Three servers made beforehand (sandbox servers, sshd and dockerd, the environment's key
    in root's authorized_keys; the third bare: sshd only), listed by their addresses as a team
    lists its own."""
    name = f"hst{os.getpid() % 1000}{int(time.time()) % 10000}"
    sandbox = SandboxProvider()
    app = tmp_path / "app"
    shutil.copytree(APP, app)
    try:
        made = sorted(sandbox.create_servers(name, "prod", [ServerSpec(zone="lon1") for _ in range(2)]), key=lambda s: s.name)
        made.append(sandbox.create_server(name, "prod", ServerSpec(zone="lon1"), image=bare_image))
        listed = []
        for i, server in enumerate(made):
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

    # `servers check` reads every listed server, the free one too: the bare one has no engine.
    checked = CliRunner().invoke(make_cli(), ["-f", str(path), "servers", "check", "--env", "prod", "--json"])
    assert checked.exit_code == 1 and str(checked.exception).endswith("failed the check: box-3"), checked.output
    report = {s["server"]: s for s in json.loads(checked.output)["servers"]}
    assert not report["box-3"]["ok"] and report["box-3"]["reachable"] and "no Docker engine answers" in report["box-3"]["error"], report["box-3"]

    # `servers setup`: Docker installed on the bare server (from Debian's mirror) and started,
    # the images copied there; the other two had the engine. Twice: nothing changes.
    set_up = CliRunner().invoke(make_cli(), ["-f", str(path), "servers", "setup", "--env", "prod", "--json"], catch_exceptions=False)
    assert set_up.exit_code == 0, set_up.output
    done = {s["server"]: s for s in json.loads(set_up.output)["servers"]}
    assert {n: r["docker"] for n, r in done.items()} == {"box-1": "present", "box-2": "present", "box-3": "installed"}, done
    assert sorted(done["box-3"]["images_copied"]) == sorted([hosts["bed"]["nginx"], hosts["bed"]["python"]])
    assert done["box-1"]["images_copied"] == [hosts["bed"]["python"]]  # the sidecar's came with the deploy; the scheduler's not yet
    assert done["box-3"]["os"].startswith("debian") and done["box-3"]["docker_version"][0].isdigit()
    again = CliRunner().invoke(make_cli(), ["-f", str(path), "servers", "setup", "--env", "prod"], catch_exceptions=False)
    assert again.exit_code == 0 and "installing Docker" not in again.output and "copying" not in again.output, again.output
    assert again.output.count("present (") == 3, again.output
    assert _ours(listed[2], name) == []  # the third is not the environment's (nothing deployed there)
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

    # Three: the free one (the server set up from bare) is claimed and serves; then one: two are released (nothing of ours left there).
    write(3, "2")
    ProjectDeployer(str(path), path=path).deploy(env="prod", log=lines.append)
    assert sorted(_claimed(provider, name)) == ["box-1", "box-2", "box-3"]
    assert _get(next(s for s in provider.list_servers(name, "prod") if s.name == "box-3"))["version"] == "2"
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
