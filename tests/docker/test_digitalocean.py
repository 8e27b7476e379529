"""``provider = "digitalocean"`` end to end against the fake DigitalOcean, whose droplets are
real servers (sandbox servers reached over SSH at their public address), through pydo:

* the first deploy uploads the environment's key, makes the region's VPC and the firewall,
  makes the region's template (a droplet provisioned with the sidecar's and the scheduler's
  images, snapshotted, destroyed) and creates a droplet per server from it (tagged with the
  environment, zone, status and slot), which needs none of those images sent; the service
  serves through each droplet's sidecar;
* scaling down destroys a droplet; the inventory is what the API lists, nothing cached;
* a 429 storm during a deploy is waited out (each wait a line); a failed droplet create is one
  clear error, leaves no droplet, and the next deploy creates it once;
* the API token appears in no log line, container environment or file on the servers;
* the seed's ``DOManager`` snippets (template, create_server from it, create_droplet from the
  base image, status, delete_template) run as written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from projectdeployer import DOManager, ProjectDeployer
from projectdeployer.core.errors import ProjectDeployerError
from projectdeployer.providers.digitalocean.provider import env_tag
from projectdeployer.providers.ssh.keys import ensure_keypair
from projectdeployer.rehearse.fake_digitalocean import Cloud, FakeDigitalOcean
from projectdeployer.rehearse.fake_digitalocean.sandbox_machines import SandboxMachines
from tests.docker.conftest import remove_project

pytestmark = pytest.mark.docker

APP = Path(__file__).resolve().parents[2] / "examples" / "python-api"
DOMAIN = "api.do.test"
TOKEN = "dop_v1_rehearsal_" + "7" * 40


def _project_file(path: Path, name: str, bed: dict[str, str], app: Path, registry: str, count: int, version: str) -> None:
    path.write_text(
        f'[project]\nname = "{name}"\nregistry = "{registry}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in bed.items())
        + '\n[environments.prod]\nprovider = "digitalocean"\n'
        + f'\n[services.api]\ntype = "python"\nbuild_context = "{app}"\ncommand = "python app.py"\nport = 8000\n'
        + f'servers_count = {count}\nserver_zone = "lon1"\ndomain = "{DOMAIN}"\nhealth_path = "/health"\nenv_vars = {{ APP_VERSION = "{version}" }}\n'
    )


@pytest.fixture
def cloud(tmp_path: Path, bed: dict[str, str], docker_client: Any, registry: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    name = f"dop{os.getpid() % 1000}{int(time.time()) % 10000}"
    machines = SandboxMachines(f"t{name}")
    fake = FakeDigitalOcean(Cloud(machines, action_seconds=0.2), tokens={TOKEN}).start()
    monkeypatch.setenv("DIGITALOCEAN_API_TOKEN", TOKEN)
    monkeypatch.setenv("DIGITALOCEAN_API_URL", fake.url)
    app = tmp_path / "app"
    shutil.copytree(APP, app)
    try:
        yield {"name": name, "path": tmp_path / "do.toml", "app": app, "bed": bed, "registry": registry, "fake": fake}
    finally:
        fake.stop()
        machines.purge()
        remove_project(docker_client, name, env="prod")


def _control(fake: FakeDigitalOcean, path: str, body: dict[str, Any]) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{fake.url}/_fake/{path}", data=json.dumps(body).encode(), method="POST"), timeout=5).read()


def _get(server: Any) -> dict[str, Any]:
    result = server.run(["curl", "-sS", "--max-time", "10", "-H", f"Host: {DOMAIN}", "http://127.0.0.1:80/"])
    assert result.ok, result.stderr
    return dict(json.loads(result.stdout))


def test_droplets_are_created_tagged_served_and_destroyed_through_the_api(cloud: dict[str, Any], pd_home: Path) -> None:
    name, path, fake = cloud["name"], cloud["path"], cloud["fake"]
    write = lambda count, version: _project_file(path, name, cloud["bed"], cloud["app"], cloud["registry"], count, version)  # noqa: E731
    lines: list[str] = []
    write(2, "1")
    # Two first deploys at once from two machines (two homes sharing the environment's key, as
    # a team shares it): one takes the creation lock, the other waits for it, finds the servers
    # made and deploys onto them. Each droplet is created once.
    other_home = pd_home.parent / "teammate_home"
    keys = ensure_keypair(name, "prod").private_path.parent
    shutil.copytree(keys, other_home / keys.relative_to(pd_home))
    teammate = subprocess.Popen(
        [str(Path(sys.executable).parent / "projectdeployer"), "-f", str(path), "deploy", "--env", "prod", "--lock-wait", "600"],
        env={**os.environ, "PROJECTDEPLOYER_HOME": str(other_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ProjectDeployer(str(path), path=path).deploy(env="prod", lock_wait=600, log=lines.append)
        teammate_out, _ = teammate.communicate(timeout=900)
    finally:
        teammate.kill()
    assert teammate.returncode == 0, teammate_out[-3000:]
    waited = [text for text in ("\n".join(lines), teammate_out) if "DigitalOcean: waiting for the creation lock" in text]
    assert len(waited) == 1, (lines[-20:], teammate_out[-3000:])  # one of the two waited
    creates = [r for r in fake.requests if r == ("POST", "/v2/droplets", 202)]
    assert len(creates) == 3, creates  # the template and two servers, once each
    droplets = fake.cloud.list_droplets(tag_name=env_tag(name, "prod"))
    assert sorted(d.name for d in droplets) == [f"{name}-prod-lon1-1", f"{name}-prod-lon1-2"], lines[-20:]
    assert all({"zone:lon1", "status:active"} <= set(d.tags) for d in droplets)
    assert sorted(t for d in droplets for t in d.tags if t.startswith("slot:")) == ["slot:0", "slot:1"]
    assert len(fake.cloud.keys) == 1 and len(fake.cloud.firewalls) == 1
    # The first server of the region made its template: a droplet provisioned, snapshotted and
    # destroyed; the servers come from the snapshot, which holds the sidecar's nginx image.
    (template,) = fake.cloud.snapshots.values()
    assert template["name"].startswith("pd-template-lon1-") and template["regions"] == ["lon1"]
    assert all(d.image["id"] == template["id"] for d in droplets)
    assert fake.cloud.list_droplets(tag_name="pd:template") == []
    assert not [line for line in lines if ": sending image " in line], lines  # nginx and python came with the template
    provider = ProjectDeployer(str(path), path=path).environment("prod").provider()
    servers = provider.list_servers(name, "prod")
    assert [_get(s)["version"] for s in servers] == ["1", "1"]

    # A 429 storm in the middle: waited out until the reset, each wait told.
    write(1, "2")
    _control(fake, "rate_limit", {"requests": 4, "reset_in": 2})
    ProjectDeployer(str(path), path=path).deploy(env="prod", log=lines.append)
    assert sum("DigitalOcean: rate limit reached" in line for line in lines) == 4, lines[-20:]
    (left,) = fake.cloud.list_droplets(tag_name=env_tag(name, "prod"))
    (server,) = provider.list_servers(name, "prod")
    assert server.name == left.name and _get(server)["version"] == "2"

    # A droplet create that fails: one clear line, nothing left behind; the next deploy makes it.
    write(2, "2")
    _control(fake, "failures", {"droplet_create": 1})
    with pytest.raises(ProjectDeployerError, match=r"cannot create servers: .*DigitalOcean: create droplet .*: the create action \d+ errored"):
        ProjectDeployer(str(path), path=path).deploy(env="prod", log=lines.append)
    assert len(fake.cloud.list_droplets(tag_name=env_tag(name, "prod"))) == 1
    ProjectDeployer(str(path), path=path).deploy(env="prod", log=lines.append)
    assert len(fake.cloud.list_droplets(tag_name=env_tag(name, "prod"))) == 2

    # The token is in no log line, no container's environment and no file on the servers.
    assert not any(TOKEN in line for line in lines)
    for each in provider.list_servers(name, "prod"):
        for container in each.docker().containers.list(all=True):
            assert not any(TOKEN in value for value in container.attrs["Config"].get("Env") or []), container.name
        found = each.run(["grep", "-rl", TOKEN, "/local", "/etc", "/root"])
        assert found.exit_code == 1 and not found.stdout.strip(), found.stdout


@pytest.fixture
def bare_cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDigitalOcean]:
    machines = SandboxMachines(f"m{os.getpid() % 1000}{int(time.time()) % 10000}")
    fake = FakeDigitalOcean(Cloud(machines, action_seconds=0.2), tokens={TOKEN}).start()
    monkeypatch.setenv("DIGITALOCEAN_API_TOKEN", TOKEN)
    monkeypatch.setenv("DIGITALOCEAN_API_URL", fake.url)
    try:
        yield fake
    finally:
        fake.stop()
        machines.purge()


def test_the_seeds_domanager_snippets(bare_cloud: FakeDigitalOcean) -> None:
    """The seed's template snippets, as written there, against the fake."""
    snapshot_id = DOManager.get_or_create_template(region="lon1")
    assert DOManager.get_or_create_template(region="lon1") == snapshot_id  # made once
    server = DOManager.create_server("myserver", "lon1", cpu=2, memory=4096)
    legacy = DOManager.create_droplet("oldstyle", "lon1")
    assert server.run(["cat", "/etc/projectdeployer/template"]).ok and legacy.run(["docker", "info", "--format", "{{.ServerVersion}}"]).ok
    made = {d.name: d for d in bare_cloud.cloud.list_droplets()}
    assert made["myserver"].image["id"] == snapshot_id and made["myserver"].size_slug == "s-2vcpu-4gb"
    assert made["oldstyle"].image["slug"] == "debian-12-x64"
    assert DOManager.status() == {"lon1": {"active": 2, "reserve": 0, "destroying": 0, "total": 2}}
    removed = DOManager.delete_template()
    assert len(removed) == 1 and removed[0].startswith("pd-template-lon1-")
    assert bare_cloud.cloud.snapshots == {}
    for each in DOManager.servers():
        DOManager.destroy_server(each)
    assert bare_cloud.cloud.list_droplets() == []
