"""``destroy`` (issue 12 item 6) on the real engine and on a sandbox server.

This machine's engine: a project with PostgreSQL, a web service and a cron job, deployed as
``prod`` and, beside it, as ``staging`` (built from an older source: its web image differs, its
job image is the same). ``destroy --env prod --yes`` leaves nothing of prod on the engine -
containers by label and by name, the network, the web image only prod ran - but the data volume
and the backups, which it names; staging keeps running with its images. A deploy afterwards
starts fresh containers on the data kept (the row written before is there); ``--with-data``
then leaves nothing at all, and a third destroy has nothing to remove.

A sandbox server (one, for both steps): without ``--with-data`` the server stays with its
data volume and backups and nothing else of the environment on its engine; a deploy reuses it
and finds the row; with ``--with-data`` the server is destroyed through the provider.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from projectdeployer import ProjectDeployer
from projectdeployer.backups.manager import BackupManager
from projectdeployer.core.runtime import LABEL_ENV, LABEL_PROJECT
from projectdeployer.secrets.resolver import ResourceResolver
from tests.docker.conftest import remove_project

pytestmark = pytest.mark.docker

BIN = Path(sys.executable).with_name("projectdeployer")

APP = """\
import http.server, os

VERSION = "%s"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.environ.get('PD_ENV')} {VERSION}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pin_free_ports(client, name: str, env: str) -> None:  # type: ignore[no-untyped-def]
    """Record host ports that are free now for the environment's services: the engine is
    shared, and another project's container may hold the port a service's name hashes to."""
    from projectdeployer.core import paths
    from projectdeployer.deploy.ports import HOST_BASE_RANGE, SECONDARY_OFFSET, allocate_ports

    published = {int(b["HostPort"]) for c in client.containers.list() for bindings in (c.attrs["NetworkSettings"]["Ports"] or {}).values() if bindings for b in bindings}

    def free(port: int) -> bool:
        if port in published:
            return False
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    start = 8000 + (os.getpid() * 7 + int(time.time())) % 900
    candidates = (HOST_BASE_RANGE.start + (start - HOST_BASE_RANGE.start + i) % len(HOST_BASE_RANGE) for i in range(len(HOST_BASE_RANGE)))
    chosen = [port for port in candidates if free(port) and free(port + SECONDARY_OFFSET)][:3]
    internal = allocate_ports(name, env, {"postgres": None, "tick": None, "web": 8000}, {})
    record = {service: {"host": port, "internal": internal[service].internal} for service, port in zip(("postgres", "tick", "web"), chosen, strict=True)}
    path = paths.env_dir(name, env, "config") / "ports.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def _project_file(path: Path, name: str, bed: dict[str, str], app: Path, job: Path, environments: str) -> None:
    path.write_text(
        f'[project]\nname = "{name}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in bed.items())
        + environments
        + '\n[services.postgres]\ntype = "postgres"\n'
        + f'\n[services.web]\ntype = "python"\nbuild_context = "{app}"\ncommand = "python app.py"\nport = 8000\n'
        + 'depends_on = ["postgres"]\nenv_vars = { DATABASE_URL = "auto" }\n'
        + f'\n[services.tick]\ntype = "python"\nbuild_context = "{job}"\ncommand = "python -c \'print(1)\'"\nschedule = "0 0 1 1 *"\n'
    )


def _sources(tmp_path: Path, version: str) -> tuple[Path, Path]:
    app, job = tmp_path / "app", tmp_path / "job"
    for directory in (app, job):
        directory.mkdir(exist_ok=True)
        (directory / "requirements.txt").write_text("")
    (app / "app.py").write_text(APP % version)
    (job / "job.py").write_text("print('tick')\n")
    return app, job


def _cli(*args: str, path: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN), "-f", str(path), *args], text=True, capture_output=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"projectdeployer {' '.join(args)}: exit code {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc


def _psql(client, container: str, project: str, env: str, sql: str) -> str:  # type: ignore[no-untyped-def]
    """psql inside the database container over its local socket (on this engine or a server's)."""
    user, db = ResourceResolver.get_db_user(project, env, "postgres"), ResourceResolver.get_db_name(project, env, "postgres")
    code, out = client.containers.get(container).exec_run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", db, "-tAc", sql], user="postgres")
    assert code == 0, out.decode()
    return out.decode().strip()


def _of_env(client, name: str, env: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Everything of ``name``/``env`` on an engine, read by label and by name."""
    labelled = client.containers.list(all=True, filters={"label": [f"{LABEL_PROJECT}={name}", f"{LABEL_ENV}={env}"]})
    named = [c for c in client.containers.list(all=True, filters={"name": f"{name}_{env}_"}) if c.name.startswith(f"{name}_{env}_")]
    return {
        "containers": sorted({c.name for c in labelled + named}),
        "networks": sorted(n.name for n in client.networks.list(names=[f"{name}_{env}_network"]) if n.name == f"{name}_{env}_network"),
        "volumes": sorted(v.name for v in client.volumes.list() if v.name.startswith(f"{name}_{env}_")),
    }


def _image_ids(client, name: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {i.id for i in client.images.list(filters={"label": f"{LABEL_PROJECT}={name}"})}


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return response.read().decode().strip()


def _host_port(project: ProjectDeployer, env: str, service: str) -> int:
    (row,) = [r for r in project.service_status(env) if r["service"] == service]
    assert row["host_port"], row
    return int(row["host_port"])


# --- this machine's engine ---------------------------------------------------------------------


@pytest.fixture
def two_envs(tmp_path: Path, bed: dict[str, str], docker_client) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    name = f"dst{os.getpid() % 1000}{int(time.time() * 1000) % 100000}"
    environments = "".join(f'\n[environments.{env}]\nprovider = "local"\nhttp_port = {_free_port()}\nhttps_port = {_free_port()}\n' for env in ("prod", "staging"))
    path = tmp_path / "destroy.toml"
    app, job = _sources(tmp_path, "v1")
    _project_file(path, name, bed, app, job, environments)
    try:
        yield {"name": name, "path": path, "app": app, "tmp": tmp_path}
    finally:
        remove_project(docker_client, name, "prod")
        remove_project(docker_client, name, "staging")


def test_destroy_leaves_only_the_data_a_deploy_starts_fresh_on_it_and_with_data_leaves_nothing(two_envs: dict, docker_client, pd_home: Path) -> None:  # type: ignore[no-untyped-def]
    name, path = two_envs["name"], two_envs["path"]
    project = ProjectDeployer(str(path), path=path)
    quiet = lambda line: None  # noqa: E731
    _pin_free_ports(docker_client, name, "staging")
    project.deploy(env="staging", log=quiet)
    staging_images = _image_ids(docker_client, name)
    _sources(two_envs["tmp"], "v2")  # prod's web is built anew: an image only prod runs
    _pin_free_ports(docker_client, name, "prod")
    project.deploy(env="prod", log=quiet)
    prod_web = docker_client.images.get(f"{name}-web:latest").id
    assert prod_web not in staging_images
    job_image = docker_client.images.get(f"{name}-tick:latest").id
    assert job_image in staging_images  # the same source: one image for both environments
    staging_before = {c.name: c.id for c in docker_client.containers.list(all=True, filters={"label": [f"{LABEL_PROJECT}={name}", f"{LABEL_ENV}=staging"]})}
    assert _get(_host_port(project, "prod", "web")) == "prod v2" and _get(_host_port(project, "staging", "web")) == "staging v1"

    pg = f"{name}_prod_postgres"
    _psql(docker_client, pg, name, "prod", "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives destroy')")
    backup = BackupManager(project, "prod", log=quiet).run_backup("postgres")
    backup_file = pd_home / name / "prod" / "backups" / "postgres" / backup.file
    assert backup_file.is_file()
    before = _of_env(docker_client, name, "prod")
    assert {f"{name}_prod_nginx", f"{name}_prod_scheduler", f"{name}_prod_tick", f"{name}_prod_web_a", pg, f"{name}_prod_postgres_backup"} <= set(before["containers"])
    old_ids = {c.name: c.id for c in docker_client.containers.list(all=True, filters={"name": f"{name}_prod_"})}

    # --- destroy: everything but the data --------------------------------------------------------
    dry = json.loads(_cli("destroy", "--env", "prod", "--dry-run", "--json", path=path).stdout)
    assert _of_env(docker_client, name, "prod") == before  # a dry run changes nothing
    result = json.loads(_cli("destroy", "--env", "prod", "--yes", "--json", path=path).stdout)
    assert {(i["kind"], i["name"]) for i in result["removed"]} == {(i["kind"], i["name"]) for i in dry["remove"]}
    assert not result["failed"] and not result["with_data"]
    assert _of_env(docker_client, name, "prod") == {"containers": [], "networks": [], "volumes": [f"{name}_prod_postgres_data"]}
    assert prod_web not in _image_ids(docker_client, name)  # prod alone ran it
    assert _image_ids(docker_client, name) >= staging_images  # staging's images, the shared job image too
    kept = {(i["kind"], i["name"]): i for i in result["keep"]}
    assert kept[("volume", f"{name}_prod_postgres_data")]["data"]
    assert kept[("directory", str(pd_home / name / "prod" / "backups"))]["data"] and backup_file.is_file()
    assert "releases of" in kept[("image", f"{name}-tick:latest")]["note"] or "used by container" in kept[("image", f"{name}-tick:latest")]["note"]
    for gone in ("config/ports.json", "config/releases.json", "config/routes.json", "run", "scheduler", "deploy.lock"):
        assert not (pd_home / name / "prod" / gone).exists(), gone
    # Staging did not notice.
    staging_now = {c.name: c.id for c in docker_client.containers.list(all=True, filters={"label": [f"{LABEL_PROJECT}={name}", f"{LABEL_ENV}=staging"]})}
    assert staging_now == staging_before and _get(_host_port(project, "staging", "web")) == "staging v1"

    # Idempotent: nothing to remove, exit 0, the data still named.
    again = _cli("destroy", "--env", "prod", "--yes", path=path).stdout
    assert f"{name}/prod: nothing to remove" in again and f"kept: volume {name}_prod_postgres_data on local" in again

    # --- a deploy starts fresh, on the data kept --------------------------------------------------
    _pin_free_ports(docker_client, name, "prod")
    project.deploy(env="prod", log=quiet)
    fresh = {c.name: c.id for c in docker_client.containers.list(all=True, filters={"name": f"{name}_prod_"})}
    assert set(fresh) == set(old_ids) and not set(fresh.values()) & set(old_ids.values())
    assert _psql(docker_client, pg, name, "prod", "SELECT v FROM kept") == "survives destroy"
    assert _get(_host_port(project, "prod", "web")) == "prod v2"

    # --- with the data: nothing left at all --------------------------------------------------------
    text = _cli("destroy", "--env", "prod", "--yes", "--with-data", path=path).stdout
    assert f"{name}_prod_postgres_data" in text
    assert _of_env(docker_client, name, "prod") == {"containers": [], "networks": [], "volumes": []}
    assert not (pd_home / name / "prod" / "backups").exists()
    assert prod_web not in _image_ids(docker_client, name) and _image_ids(docker_client, name) >= staging_images
    assert "nothing to remove" in _cli("destroy", "--env", "prod", "--yes", "--with-data", path=path).stdout
    assert staging_now == {c.name: c.id for c in docker_client.containers.list(all=True, filters={"label": [f"{LABEL_PROJECT}={name}", f"{LABEL_ENV}=staging"]})}
    assert _get(_host_port(project, "staging", "web")) == "staging v1"

    # The last environment of the project takes the project's images with it (the API's way).
    report = project.destroy(env="staging", with_data=True, log=quiet)
    assert not report.failed
    assert _of_env(docker_client, name, "staging") == {"containers": [], "networks": [], "volumes": []}
    assert _image_ids(docker_client, name) == set()


# --- a sandbox server ----------------------------------------------------------------------------


@pytest.fixture
def on_a_server(tmp_path: Path, bed: dict[str, str], docker_client) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    from projectdeployer.providers.sandbox import SandboxProvider

    name = f"dsv{os.getpid() % 1000}{int(time.time() * 1000) % 100000}"
    path = tmp_path / "destroy.toml"
    app, job = _sources(tmp_path, "v1")
    _project_file(path, name, bed, app, job, '\n[environments.prod]\nprovider = "sandbox"\n')
    provider = SandboxProvider()
    try:
        yield {"name": name, "path": path, "provider": provider}
    finally:
        for server in provider.list_servers(name, "prod"):
            provider.destroy_server(server)
        provider.close()
        remove_project(docker_client, name, "prod")


def test_destroy_on_a_sandbox_server_keeps_the_server_with_its_data_and_with_data_destroys_it(on_a_server: dict, docker_client, pd_home: Path) -> None:  # type: ignore[no-untyped-def]
    name, path, provider = on_a_server["name"], on_a_server["path"], on_a_server["provider"]
    project = ProjectDeployer(str(path), path=path)
    quiet = lambda line: None  # noqa: E731
    project.deploy(env="prod", log=quiet)
    (server,) = provider.list_servers(name, "prod")
    remote = server.docker()
    pg = f"{name}_prod_postgres"
    _psql(remote, pg, name, "prod", "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives destroy')")
    backup = BackupManager(project, "prod", log=quiet).run_backup("postgres")
    backups_dir = f"{server.data_root.rstrip('/')}/{name}/prod/backups"
    assert server.run(["test", "-f", f"{backups_dir}/postgres/{backup.file}"]).ok
    assert {f"{name}_prod_nginx", f"{name}_prod_scheduler", f"{name}_prod_tick", f"{name}_prod_web_a", pg} <= set(_of_env(remote, name, "prod")["containers"])

    result = json.loads(_cli("destroy", "--env", "prod", "--yes", "--json", path=path).stdout)
    assert not result["failed"] and result["provider"] == "sandbox"
    (kept_server,) = provider.list_servers(name, "prod")
    assert kept_server.name == server.name and kept_server.tags.get("state") == "reserve"
    remote = kept_server.docker()
    assert _of_env(remote, name, "prod") == {"containers": [], "networks": [], "volumes": [f"{name}_prod_postgres_data"]}
    assert not _image_ids(remote, name)  # the server's copies of the project's images
    assert not _image_ids(docker_client, name)  # and this machine's: no other environment uses them
    assert kept_server.run(["test", "-f", f"{backups_dir}/postgres/{backup.file}"]).ok
    assert not kept_server.run(["test", "-e", f"{server.data_root.rstrip('/')}/{name}/prod/run"]).ok
    kept = {(i["where"], i["kind"], i["name"]) for i in result["keep"] if i["data"]}
    assert kept == {(server.name, "volume", f"{name}_prod_postgres_data"), (server.name, "directory", backups_dir)}

    project.deploy(env="prod", log=quiet)
    (again,) = provider.list_servers(name, "prod")
    assert again.name == server.name
    assert _psql(again.docker(), pg, name, "prod", "SELECT v FROM kept") == "survives destroy"

    text = _cli("destroy", "--env", "prod", "--yes", "--with-data", path=path).stdout
    assert server.name in text
    assert provider.list_servers(name, "prod") == []
    sandbox = {"label": f"io.projectdeployer.sandbox.project={name}"}
    assert docker_client.containers.list(all=True, filters=sandbox) == [] and docker_client.volumes.list(filters=sandbox) == []
    assert not _image_ids(docker_client, name)
    assert "nothing to remove" in _cli("destroy", "--env", "prod", "--yes", "--with-data", path=path).stdout
