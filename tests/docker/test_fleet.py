"""Many servers, end to end: PostgreSQL on one server in lon1, the API on three servers in nyc3,
on each kind of server the product deploys to, all real machines reached over real SSH:

* ``sandbox``: sandbox servers (containers running sshd and their own dockerd);
* ``digitalocean``: droplets of the fake DigitalOcean (sandbox servers behind its API, through
  pydo): the first deploy makes each region's template snapshot and the servers come from it;
* ``ssh``: servers made beforehand and listed in the project file (six: one more than the
  scenario ever needs at once), their zones the listing's, one private network between them.

In each:

* the API's image is pushed once to a registry on this machine and pulled by digest by each server
  through its SSH connection; the bed's images are streamed over SSH (or come with the template);
* the API reads and writes PostgreSQL across servers (and zones) through ``nginx:<internal port>``;
* a redeploy of the API across its servers under continuous load through one server's sidecar
  fails no request;
* scaling ``servers_count`` 3 -> 5 -> 2 creates (claims) and destroys (releases) servers with no
  failed request;
* a server stopped in the middle of a deploy gives an error naming it, the others keep serving,
  and the next deploy converges;
* ``plan`` reads every server and says which servers are created, kept or destroyed and what
  changes per service (nothing when nothing changed); new servers are ``reserve`` until their
  services run, servers being removed are ``destroying`` before the switch;
* ``logs`` gathers a service's lines from every server, prefixed with the server's name;
* one service deploys on its own (a new image) and rolls back, both under load with no failure;
* PostgreSQL's backups live on its server: run, listed with that server, restored (a row
  written after the backup is gone) and pulled into ``backups/{server}/postgres/``;
* PostgreSQL's password is rotated on its server, and after a deploy every API server reads
  with the new one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from projectdeployer import BackupManager, ProjectDeployer, SecretsRotator
from projectdeployer.core.errors import ProjectDeployerError
from projectdeployer.core.paths import server_env_dir
from projectdeployer.core.provider import Provider, ServerSpec
from projectdeployer.providers.digitalocean.provider import DigitalOceanProvider, env_tag
from projectdeployer.providers.hosts import HostsProvider
from projectdeployer.providers.sandbox import SandboxProvider, public_network_name, zone_network_name
from projectdeployer.rehearse.fake_digitalocean import Cloud, FakeDigitalOcean
from projectdeployer.rehearse.fake_digitalocean.sandbox_machines import SandboxMachines
from projectdeployer.rehearse.loadgen import LoadGenerator
from tests.docker.conftest import remove_project, wait_for

pytestmark = pytest.mark.docker

APP = Path(__file__).parent / "apps" / "survival"
DOMAIN = "api.fleet.test"
TOKEN = "dop_v1_fleet_" + "5" * 44


def _project_file(path: Path, name: str, bed: dict[str, str], app: Path, count: int, mark: str, registry: str, environment: str) -> None:
    path.write_text(
        f'[project]\nname = "{name}"\nregistry = "{registry}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in bed.items())
        + environment
        + '\n[services.postgres]\ntype = "postgres"\nserver_zone = "lon1"\n'
        + f'\n[services.api]\ntype = "python"\nbuild_context = "{app}"\ncommand = "python app.py"\nport = 8000\n'
        + f'servers_count = {count}\nserver_zone = "nyc3"\ndomain = "{DOMAIN}"\nhealth_path = "/health"\ndepends_on = ["postgres"]\n'
        + f'env_vars = {{ DATABASE_URL = "auto", MARK = "{mark}" }}\nrelease_command = "echo released {mark}"\n'
    )


@dataclass
class Servers:
    """The servers of one kind, as the test reaches them."""

    kind: str
    #: The ``[environments.prod]`` table (and its servers list, for ``ssh``).
    environment: str
    #: The product's provider of that kind: lists the environment's servers as a deploy does.
    provider: Provider
    #: The Docker container under a server: stopping it is the machine going away unannounced.
    container: Callable[[Any], Any]
    #: The fake DigitalOcean (``digitalocean`` only).
    fake: FakeDigitalOcean | None = None


def _sandbox(name: str) -> Iterator[Servers]:
    provider = SandboxProvider()
    try:
        yield Servers("sandbox", '\n[environments.prod]\nprovider = "sandbox"\n', provider, lambda s: provider.client.containers.get(s.container_id))
    finally:
        for server in provider.list_servers(name, "prod"):
            provider.destroy_server(server)


def _digitalocean(name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Servers]:
    machines = SandboxMachines(f"d{name}")
    fake = FakeDigitalOcean(Cloud(machines, action_seconds=0.2), tokens={TOKEN}).start()
    monkeypatch.setenv("DIGITALOCEAN_API_TOKEN", TOKEN)
    monkeypatch.setenv("DIGITALOCEAN_API_URL", fake.url)
    try:
        yield Servers("digitalocean", '\n[environments.prod]\nprovider = "digitalocean"\n', DigitalOceanProvider(), lambda s: machines.container(int(s.tags["droplet_id"])), fake)
    finally:
        fake.stop()
        machines.purge()


def _ssh(name: str, docker_client: Any) -> Iterator[Servers]:
    """Six servers made beforehand (the environment's key in root's authorized_keys), listed by
    address as a team lists its own: one in lon1, five in nyc3, all on one private network (as
    a team's servers in two datacenters share a WireGuard or Tailscale network)."""
    sandbox = SandboxProvider()
    try:
        made = sorted(sandbox.create_servers(name, "prod", [ServerSpec(zone="lon1") for _ in range(6)]), key=lambda s: s.name)
        listing = '\n[environments.prod]\nprovider = "ssh"\n'
        boxes = {}
        for i, server in enumerate(made):
            networks = docker_client.containers.get(server.container_id).attrs["NetworkSettings"]["Networks"]
            public = networks[public_network_name(name, "prod")]["IPAddress"]
            private = networks[zone_network_name(name, "prod", "lon1")]["IPAddress"]
            zone = "lon1" if i == 0 else "nyc3"
            listing += f'\n[[environments.prod.servers]]\nname = "box-{i + 1}"\naddress = "{public}"\nzone = "{zone}"\nprivate_address = "{private}"\n'
            boxes[f"box-{i + 1}"] = server
        yield Servers("ssh", listing, HostsProvider(), lambda s: sandbox.client.containers.get(boxes[s.name].container_id))
    finally:
        for server in sandbox.list_servers(name, "prod"):
            sandbox.destroy_server(server)


@pytest.fixture(params=["sandbox", "digitalocean", "ssh"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path, bed: dict[str, str], docker_client: Any, registry: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    name = f"flt{os.getpid() % 1000}{int(time.time()) % 10000}"
    app = tmp_path / "app"
    shutil.copytree(APP, app)
    path = tmp_path / "fleet.toml"
    made = {"sandbox": lambda: _sandbox(name), "digitalocean": lambda: _digitalocean(name, monkeypatch), "ssh": lambda: _ssh(name, docker_client)}[request.param]()
    try:
        servers = next(made)
        _project_file(path, name, bed, app, 3, "one", registry, servers.environment)
        if servers.kind == "ssh":
            servers.provider = ProjectDeployer(str(path), path=path).environment("prod").provider()  # reads the listing
        yield {"name": name, "path": path, "app": app, "bed": bed, "servers": servers, "provider": servers.provider, "registry": registry}
    finally:
        made.close()
        remove_project(docker_client, name, env="prod")


def _sidecar(server) -> str:  # type: ignore[no-untyped-def]
    """The URL of ``server``'s sidecar as this machine reaches it (its public address, port 80)."""
    return f"http://{server.public_address}:80"


def _get(server, path: str) -> dict:  # type: ignore[no-untyped-def]
    """GET through ``server``'s own sidecar, from the server itself."""
    result = server.run(["curl", "-sS", "--max-time", "10", "-H", f"Host: {DOMAIN}", f"http://127.0.0.1:80{path}"])
    assert result.ok, result.stderr
    return json.loads(result.stdout)


def _post(server, path: str) -> dict:  # type: ignore[no-untyped-def]
    result = server.run(["curl", "-sS", "--max-time", "10", "-X", "POST", "-H", f"Host: {DOMAIN}", f"http://127.0.0.1:80{path}"])
    assert result.ok, result.stderr
    return json.loads(result.stdout)


def _write(fleet: dict[str, Any], count: int, mark: str) -> ProjectDeployer:
    _project_file(fleet["path"], fleet["name"], fleet["bed"], fleet["app"], count, mark, fleet["registry"], fleet["servers"].environment)
    return ProjectDeployer(str(fleet["path"]), path=fleet["path"])


def _answers(provider: Provider, name: str, server: str) -> bool:
    """Whether ``server`` is listed running and its Docker engine answers over SSH (what stops
    it, SSH refused or the engine starting, is what ``wait_for`` reports on timeout)."""
    return any(s.name == server and s.running and s.run(["docker", "version"]).ok for s in provider.list_servers(name, "prod"))


def _from_templates(fleet: dict[str, Any], lines: list[str]) -> None:
    """On DigitalOcean: one template snapshot, made by the first deploy in one region and
    copied (transferred) to the other; every droplet of the environment created from it; no
    template droplet left; the sidecar's and Python's images never sent (they came with it)."""
    fake = fleet["servers"].fake
    if fake is None:
        return
    (template,) = fake.cloud.snapshots.values()
    assert template["name"].startswith("pd-template-") and sorted(template["regions"]) == ["lon1", "nyc3"], template
    assert sum("DigitalOcean: making the template" in line for line in lines) == 1 and sum("DigitalOcean: copying the template" in line for line in lines) == 1, lines
    droplets = fake.cloud.list_droplets(tag_name=env_tag(fleet["name"], "prod"))
    assert all(d.image["id"] == template["id"] for d in droplets), [(d.name, d.image) for d in droplets]
    assert fake.cloud.list_droplets(tag_name="pd:template") == []
    sent = [line for line in lines if any(f": sending image {fleet['bed'][key]} " in line for key in ("nginx", "python"))]
    assert not sent, sent


def _zones(provider: Provider, name: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for server in provider.list_servers(name, "prod"):
        counts[server.zone] = counts.get(server.zone, 0) + 1
    return counts


def test_many_servers_two_zones_zero_downtime_scaling_and_a_lost_server(fleet: dict) -> None:
    name, path, provider = fleet["name"], fleet["path"], fleet["provider"]
    lines: list[str] = []
    project = ProjectDeployer(str(path), path=path)
    # The plan reads the (empty) inventory and changes nothing.
    first = project.plan(env="prod")
    assert sorted((r.zone, r.action, r.next_state) for r in first.servers) == [("lon1", "create", "active")] + [("nyc3", "create", "active")] * 3
    assert {p.service: p.action for p in first.services} == {"postgres": "create", "api": "create"}
    assert provider.list_servers(name, "prod") == []
    project.deploy(env="prod", log=lines.append)
    assert _zones(provider, name) == {"lon1": 1, "nyc3": 3}
    _from_templates(fleet, lines)
    # Read back from every server: what runs is what the project file says.
    again = project.plan(env="prod")
    assert {p.service: (p.action, p.reason) for p in again.services} == {"postgres": ("unchanged", "running and up to date"), "api": ("unchanged", "running and up to date")}
    assert {(r.action, r.state, r.next_state) for r in again.servers} == {("keep", "active", "active")}
    assert sum(f"pulling {fleet['registry']}/{name}-api@sha256:" in line for line in lines) == 3, lines  # once per API server
    # The release command ran once for the three API servers, before any new container started.
    released = [i for i, line in enumerate(lines) if line.startswith("api release | released")]
    assert len(released) == 1 and released[0] < min(i for i, line in enumerate(lines) if line.startswith("api: starting ")), lines
    # In the zone's order: the slot each server got at creation (parallel creation hands out
    # names in any order; the slot is what keeps placement stable).
    api_servers = sorted((s for s in provider.list_servers(name, "prod") if s.zone == "nyc3"), key=lambda s: int(s.tags["slot"]))
    assert [s.tags["slot"] for s in api_servers] == ["0", "1", "2"]
    rows = {r["service"]: r for r in project.service_status(env="prod")}
    assert rows["api"]["state"] == "running on 3/3" and rows["api"]["servers"] == sorted(s.name for s in api_servers)
    assert rows["postgres"]["state"] == "running on 1/1"

    # Through each server's sidecar to PostgreSQL on the lon1 server (another zone).
    written = _post(api_servers[0], "/rows?v=first")
    assert written.get("id", 0) >= 1, (written, lines[-30:])
    for server in api_servers:
        assert _get(server, "/rows")["rows"] == ["first"]

    # Backups on servers: the backup container sits beside PostgreSQL on its server (lon1).
    db_server = next(s for s in provider.list_servers(name, "prod") if s.zone == "lon1")
    taken = BackupManager(project, "prod", log=lines.append).run_backup("postgres")
    assert taken.verified
    assert [(r["service"], r["server"], r["latest"]) for r in BackupManager(project, "prod").status()] == [("postgres", db_server.name, taken.timestamp)]

    # Redeploy the API (a changed variable) under load through one server's sidecar.
    project = _write(fleet, 3, "two")
    target = api_servers[1]
    with LoadGenerator(f"{_sidecar(target)}/health", host_header=DOMAIN, rate=60) as load:
        load.wait_sent(50, timeout=30)
        started = time.monotonic()
        project.deploy(env="prod", log=lines.append)
        three = time.monotonic() - started
    assert load.result.failed == 0, load.result.summary()
    assert _get(api_servers[2], "/rows")["rows"] == ["first"]

    # Scale 3 -> 5 -> 2 under load: servers created, then drained and destroyed. New servers are
    # "reserve" until their services run; servers to remove are "destroying" before the switch.
    for count, expected in ((5, 5), (2, 2)):
        project = _write(fleet, count, "two")
        planned = project.plan(env="prod")
        actions = sorted(r.action for r in planned.servers if r.zone == "nyc3")
        assert actions == (["create"] * 2 + ["keep"] * 3 if count == 5 else ["destroy"] * 3 + ["keep"] * 2), planned
        assert {p.service: p.action for p in planned.services} == {"postgres": "unchanged", "api": "update"}
        seen_states: list[dict[str, str]] = []

        def watch(line: str, seen_states: list[dict[str, str]] = seen_states) -> None:
            lines.append(line)
            if line.startswith("api: switching the sidecars") and not seen_states:
                seen_states.append({s.name: s.state for s in provider.list_servers(name, "prod") if s.zone == "nyc3"})

        with LoadGenerator(f"{_sidecar(target if count == 5 else api_servers[0])}/health", host_header=DOMAIN, rate=60) as load:
            load.wait_sent(50, timeout=30)
            project.deploy(env="prod", log=watch)
        assert load.result.failed == 0, load.result.summary()
        assert _zones(provider, name) == {"lon1": 1, "nyc3": expected}
        _from_templates(fleet, lines)
        during = sorted(seen_states[0].values())
        assert during == (["active"] * 3 + ["reserve"] * 2 if count == 5 else ["active"] * 2 + ["destroying"] * 3), seen_states
    survivors = sorted((s for s in provider.list_servers(name, "prod") if s.zone == "nyc3"), key=lambda s: int(s.tags["slot"]))
    assert [s.name for s in survivors] == [s.name for s in api_servers[:2]]  # the first servers (by slot) stay
    assert _get(survivors[1], "/rows")["rows"] == ["first"]

    assert project.status(env="prod") == {"lon1": {"active": 1, "reserve": 0, "destroying": 0, "total": 1}, "nyc3": {"active": 2, "reserve": 0, "destroying": 0, "total": 2}}

    # A server lost in the middle of a deploy (once the new containers are starting): the deploy
    # names it, the other server keeps serving throughout, and once it is back a deploy converges.
    project = _write(fleet, 2, "three")
    lost = fleet["servers"].container(survivors[1])

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("api: starting") and lost.status != "exited":
            lost.stop(timeout=5)
            lost.reload()

    with LoadGenerator(f"{_sidecar(survivors[0])}/health", host_header=DOMAIN, rate=60) as load:
        load.wait_sent(50, timeout=30)
        with pytest.raises(ProjectDeployerError) as caught:
            project.deploy(env="prod", log=log)
    assert survivors[1].name in str(caught.value)
    assert load.result.failed == 0, load.result.summary()
    assert _get(survivors[0], "/rows")["rows"] == ["first"]
    lost.start()
    wait_for(lambda: _answers(provider, name, survivors[1].name), timeout=120, what="the server back")
    project.deploy(env="prod", log=lines.append)
    for server in sorted((s for s in provider.list_servers(name, "prod") if s.zone == "nyc3"), key=lambda s: s.name):
        assert _get(server, "/rows")["rows"] == ["first"]
    survivors = sorted((s for s in provider.list_servers(name, "prod") if s.zone == "nyc3"), key=lambda s: s.name)

    # Logs of a service on many servers: every server's lines, each prefixed with its name.
    logged = project.logs("api", env="prod", lines=20)
    assert {line.split(" | ", 1)[0] for line in logged} == {s.name for s in survivors}, logged[-5:]

    # One service on its own (a code change: a new image), then rolled back, both under load.
    (fleet["app"] / "app.py").write_text((fleet["app"] / "app.py").read_text() + "\n# second image\n")
    before = {c.image.id for s in survivors for c in s.docker().containers.list(filters={"label": "io.projectdeployer.service=api"})}
    with LoadGenerator(f"{_sidecar(survivors[0])}/health", host_header=DOMAIN, rate=60) as load:
        load.wait_sent(50, timeout=30)
        report = project.deploy(env="prod", service="api", log=lines.append)
    assert load.result.failed == 0, load.result.summary()
    assert [o.service for o in report.outcomes] == ["api"]
    after = {c.image.id for s in survivors for c in s.docker().containers.list(filters={"label": "io.projectdeployer.service=api"})}
    assert len(before) == 1 and len(after) == 1 and after != before
    with LoadGenerator(f"{_sidecar(survivors[1])}/health", host_header=DOMAIN, rate=60) as load:
        load.wait_sent(50, timeout=30)
        project.rollback(env="prod", service="api", log=lines.append)
    assert load.result.failed == 0, load.result.summary()
    back = {c.image.id for s in survivors for c in s.docker().containers.list(filters={"label": "io.projectdeployer.service=api"})}
    assert back == before
    assert _get(survivors[1], "/rows")["rows"] == ["first"]

    # A row written after the backup is gone once the backup is restored on its server.
    _post(survivors[0], "/rows?v=after-backup")
    assert _get(survivors[1], "/rows")["rows"] == ["first", "after-backup"]
    restored = BackupManager(project, "prod", log=lines.append).restore("postgres", "latest")
    assert restored.backup == taken.file
    assert _get(survivors[1], "/rows")["rows"] == ["first"]
    pulled = BackupManager(project, "prod", log=lines.append).pull_backups("postgres")
    assert [p.name for p in pulled] == [taken.file] and pulled[0].parent.parent.name == server_env_dir(db_server)

    # Password rotation on servers: changed in the running database on its server; the next
    # deploy hands the new password to every API container, and they read PostgreSQL with it.
    SecretsRotator(project, "prod", log=lines.append).rotate_postgres_password("postgres")
    project.deploy(env="prod", log=lines.append)
    for server in survivors:
        assert _get(server, "/rows")["rows"] == ["first"]
    print(f"\nredeploy of the API across 3 servers: {three:.1f}s")
