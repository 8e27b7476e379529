"""Deploys to this machine's engine, proven under load: zero failed requests across a new
version, a rollback and an unchanged redeploy; a broken version never serves; a deploy killed
at any point leaves the old version serving and the next one converges."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from projectdeployer import ProjectDeployer
from projectdeployer.core.errors import DeployFailed
from projectdeployer.core.runtime import LABEL_PROJECT, LABEL_SERVICE
from projectdeployer.environment.locks import deploy_lock
from projectdeployer.rehearse.loadgen import LoadGenerator
from tests.docker.conftest import remove_project, wait_for

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DOMAIN = "api.zd.localhost"
BIN = Path(sys.executable).with_name("projectdeployer")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str = "/", host: str = DOMAIN) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def zd(tmp_path: Path, bed: dict[str, str], docker_client) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    """A project with one web service (examples/python-api copied, so tests can change it)."""
    name = f"zd{os.getpid() % 10000}{int(time.time() * 1000) % 100000}"
    source = tmp_path / "api"
    shutil.copytree(EXAMPLES / "python-api", source)
    http_port, https_port = _free_port(), _free_port()
    path = tmp_path / "zd.toml"
    path.write_text(
        f'[project]\nname = "{name}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in bed.items())
        + f'\n[environments.dev]\nprovider = "local"\nhttp_port = {http_port}\nhttps_port = {https_port}\n'
        + f'\n[services.api]\ntype = "python"\nbuild_context = "{source}"\ncommand = "python app.py"\nport = 8000\n'
        + f'health_path = "/health"\ndomain = "{DOMAIN}"\n'
    )
    try:
        yield {"name": name, "path": path, "source": source, "http": http_port, "https": https_port, "project": ProjectDeployer(str(path), path=path)}
    finally:
        remove_project(docker_client, name)


def _set_version(source: Path, version: str) -> None:
    app = source / "app.py"
    text = app.read_text()
    start = text.index('os.environ.get("APP_VERSION", "') + len('os.environ.get("APP_VERSION", "')
    end = text.index('"', start)
    app.write_text(text[:start] + version + text[end:])


def _api_containers(docker_client, name: str) -> list:  # type: ignore[no-untyped-def]
    return docker_client.containers.list(all=True, filters={"label": [f"{LABEL_PROJECT}={name}", f"{LABEL_SERVICE}=api"]})


def _load(zd: dict) -> LoadGenerator:
    return LoadGenerator(
        f"http://127.0.0.1:{zd['http']}/",
        rate=120,
        concurrency=8,
        host_header=DOMAIN,
        slow_path="/slow?ms=1500",
        slow_every=0.5,
        stream_path="/stream?seconds=3",
        streams=2,
        max_seconds=300,
    )


def test_zero_failed_requests_across_deploy_rollback_and_unchanged_redeploy(zd: dict, docker_client) -> None:  # type: ignore[no-untyped-def]
    project: ProjectDeployer = zd["project"]
    quiet = {"log": lambda line: None}
    _set_version(zd["source"], "v1")
    project.deploy(env="dev", **quiet)
    assert _get(zd["http"])["version"] == "v1"

    with _load(zd) as load:
        load.wait_sent(200, timeout=30)
        _set_version(zd["source"], "v2")
        project.deploy(env="dev", **quiet)
        assert _get(zd["http"])["version"] == "v2"
        load.wait_sent(load.snapshot().sent + 150, timeout=30)

        rolled = project.rollback(env="dev", service="api", **quiet)
        assert rolled.outcomes[0].action == "update"
        assert _get(zd["http"])["version"] == "v1"
        load.wait_sent(load.snapshot().sent + 150, timeout=30)

        project.deploy(env="dev", **quiet)  # back to what the project file says: v2
        assert _get(zd["http"])["version"] == "v2"
        before = {c.id for c in _api_containers(docker_client, zd["name"])}
        started = time.monotonic()
        again = project.deploy(env="dev", **quiet)
        assert [o.action for o in again.outcomes] == ["unchanged"]
        assert {c.id for c in _api_containers(docker_client, zd["name"])} == before  # nothing restarted
        unchanged_seconds = time.monotonic() - started
        load.wait_sent(load.snapshot().sent + 150, timeout=30)
    result = load.result
    print(result.summary())
    assert result.failed == 0, result.failures
    assert result.slow_ok > 0 and result.stream_ok > 0, "no request was in flight across the switches"
    assert result.rps >= 100
    assert unchanged_seconds < 15
    assert len(_api_containers(docker_client, zd["name"])) == 1
    # Back to a named release: the very first one (v1).
    from projectdeployer.environment.releases import ReleaseHistory

    first = ReleaseHistory(zd["name"], "dev").for_service("api")[0]
    project.rollback(env="dev", service="api", version=first.id, **quiet)
    assert _get(zd["http"])["version"] == "v1"
    with pytest.raises(DeployFailed, match="no release 'nope'"):
        project.rollback(env="dev", service="api", version="nope", **quiet)


def test_broken_version_never_serves_and_fails_no_request(zd: dict, docker_client) -> None:  # type: ignore[no-untyped-def]
    project: ProjectDeployer = zd["project"]
    project.deploy(env="dev", log=lambda line: None)
    serving = {c.id for c in _api_containers(docker_client, zd["name"])}
    with _load(zd) as load:
        load.wait_sent(150, timeout=30)
        project.update_service("api", env_vars={"BROKEN": "1"})
        with pytest.raises(DeployFailed) as failure:
            project.deploy(env="dev", build=False, log=lambda line: None)
        load.wait_sent(load.snapshot().sent + 100, timeout=30)
    message = str(failure.value)
    assert "never became healthy" in message and "HTTP 500" in message
    assert "last log lines" in message and "GET /health" in message  # the new container's own log
    assert load.result.failed == 0, load.result.failures
    assert {c.id for c in _api_containers(docker_client, zd["name"])} == serving  # the broken one is gone
    assert _get(zd["http"])["service"] == "python-api"


def test_a_killed_deploy_leaves_the_old_version_serving_and_the_next_converges(zd: dict, docker_client) -> None:  # type: ignore[no-untyped-def]
    project: ProjectDeployer = zd["project"]
    _set_version(zd["source"], "v1")
    project.deploy(env="dev", log=lambda line: None)
    env = {**os.environ}
    with _load(zd) as load:
        load.wait_sent(150, timeout=30)
        for n, delay in enumerate((0.2, 0.6, 1.0, 1.6, 2.4, 3.5)):
            _set_version(zd["source"], f"k{n}")
            proc = subprocess.Popen([str(BIN), "-f", str(zd["path"]), "deploy", "--env", "dev"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)  # the point in the deploy where it dies
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert _get(zd["http"])["service"] == "python-api"  # something serves after every kill
        load.wait_sent(load.snapshot().sent + 100, timeout=30)
        _set_version(zd["source"], "final")
        project.deploy(env="dev", log=lambda line: None)
        assert _get(zd["http"])["version"] == "final"
        load.wait_sent(load.snapshot().sent + 100, timeout=30)
    assert load.result.failed == 0, load.result.failures
    running = [c for c in _api_containers(docker_client, zd["name"]) if c.status == "running"]
    assert len(running) == 1, [c.name for c in running]
    assert [o.action for o in project.deploy(env="dev", log=lambda line: None).outcomes] == ["unchanged"]


def test_https_status_logs_and_the_deploy_lock(zd: dict) -> None:
    project: ProjectDeployer = zd["project"]
    report = project.deploy(env="dev", log=lambda line: None)
    assert report.urls == {"api": f"https://{DOMAIN}:{zd['https']}/"}
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn_sock = socket.create_connection(("127.0.0.1", zd["https"]), timeout=5)
    with context.wrap_socket(conn_sock, server_hostname=DOMAIN) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        cert = tls.getpeercert(binary_form=True)
    assert data.startswith(b"HTTP/1.1 200") and b"python-api" in data
    assert cert  # the sidecar's self-signed certificate for the domain

    rows = {r["service"]: r for r in project.service_status("dev")}
    assert rows["api"]["state"] == "running" and rows["api"]["url"] == f"https://{DOMAIN}:{zd['https']}/"
    assert project.status("dev") == {"local": {"active": 1, "reserve": 0, "destroying": 0, "total": 1}}
    wait_for(lambda: any("GET /" in line for line in project.logs("api", "dev", 50)), what="the request in the logs")

    with deploy_lock(Path(os.environ["PROJECTDEPLOYER_HOME"]) / zd["name"] / "dev" / "deploy.lock"):
        proc = subprocess.run([str(BIN), "-f", str(zd["path"]), "deploy", "--env", "dev", "--no-build"], capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 1
    assert "another deploy is running (pid" in proc.stderr and "Traceback" not in proc.stderr


def test_the_fullstack_example_serves_data_from_postgresql(tmp_path: Path, bed: dict[str, str], docker_client) -> None:  # type: ignore[no-untyped-def]
    """What `make demo` deploys, under another name and ports so it can run beside the demo."""
    source = tmp_path / "fullstack"
    shutil.copytree(EXAMPLES / "fullstack", source)
    name = f"fs{os.getpid() % 10000}"
    http_port, https_port = _free_port(), _free_port()
    text = (source / "projectdeployer.toml").read_text()
    text = text.replace('name = "fullstack"', f'name = "{name}"').replace("http_port = 8080", f"http_port = {http_port}").replace("https_port = 8443", f"https_port = {https_port}")
    for key, image in bed.items():
        assert f'{key} = "{image}"' in text  # the example already points at the image bed
    (source / "projectdeployer.toml").write_text(text)
    project = ProjectDeployer(str(source / "projectdeployer.toml"), path=source / "projectdeployer.toml")
    try:
        project.deploy(env="dev", log=lambda line: None)
        first = _get(http_port, host="api.fullstack.localhost")
        assert first["greeting"] == "Hello from PostgreSQL"
        assert _get(http_port, host="api.fullstack.localhost")["visits"] == first["visits"] + 1
        page = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{http_port}/", headers={"Host": "www.fullstack.localhost"}), timeout=5).read()
        assert b"ProjectDeployer" in page
        # A new API version: data in PostgreSQL and Redis is still there.
        project.update_service("api", env_vars={"APP_VERSION": "2"})
        project.deploy(env="dev", log=lambda line: None)
        after = _get(http_port, host="api.fullstack.localhost")
        assert after == {"greeting": "Hello from PostgreSQL", "visits": first["visits"] + 2, "version": "2"}
        # No password in any container's configuration (env, args, labels): they are files.
        home = Path(os.environ["PROJECTDEPLOYER_HOME"])
        passwords = [(home / name / "dev" / "secrets" / s / f"{s}_password").read_text() for s in ("postgres", "redis")]
        for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={name}"}):
            inspected = json.dumps(container.attrs)
            assert not any(p in inspected for p in passwords), f"a password in docker inspect of {container.name}"
            assert not any(p in container.logs().decode(errors="replace") for p in passwords)
        assert not any(p in (source / "projectdeployer.toml").read_text() for p in passwords)
    finally:
        remove_project(docker_client, name)


def test_the_router_not_local_bookkeeping_says_which_container_serves(zd: dict, docker_client) -> None:  # type: ignore[no-untyped-def]
    """A deploy killed after switching the router but before recording it leaves stale local
    state and two running containers; the next deploy must ask the router, and replace the
    leftover, never the container being served."""
    project: ProjectDeployer = zd["project"]
    _set_version(zd["source"], "v1")
    project.deploy(env="dev", log=lambda line: None)
    _set_version(zd["source"], "v2")
    project.deploy(env="dev", log=lambda line: None)  # now slot b serves v2
    (serving,) = _api_containers(docker_client, zd["name"])
    assert serving.labels["io.projectdeployer.slot"] == "b"
    # The leftover of a crashed deploy in slot a, and local state claiming it is the one routed.
    labels = {**serving.labels, "io.projectdeployer.slot": "a"}
    leftover = docker_client.containers.run(serving.image.id, name=f"{zd['name']}_dev_api_a", labels=labels, detach=True, network=f"{zd['name']}_dev_network", command=["python", "app.py"])
    routes = Path(os.environ["PROJECTDEPLOYER_HOME"]) / zd["name"] / "dev" / "config" / "routes.json"
    routes.write_text(json.dumps({"backends": {"api": leftover.name}}))
    plan = project.plan("dev")
    (api,) = [p for p in plan.services if p.service == "api"]
    assert api.current_slot == "b"  # what the sidecar serves, not what the stale file says
    with _load(zd) as load:
        load.wait_sent(150, timeout=30)
        _set_version(zd["source"], "v3")
        project.deploy(env="dev", log=lambda line: None)
        assert _get(zd["http"])["version"] == "v3"
        load.wait_sent(load.snapshot().sent + 100, timeout=30)
    assert load.result.failed == 0, load.result.failures


def test_plan_says_build_before_the_first_deploy_and_after_a_source_change(zd: dict, docker_client) -> None:  # type: ignore[no-untyped-def]
    """Issue 12, item 5: plan says what deploy will do, builds nothing: build+create before the
    first deploy, unchanged after it, build+update (with the input hash change) after an edit."""
    project: ProjectDeployer = zd["project"]
    tag = f"{zd['name']}-api:latest"
    (first,) = [p for p in project.plan("dev").services if p.service == "api"]
    assert (first.action, first.next_slot) == ("create", "a") and first.build and first.build.startswith("no image yet (inputs ")
    assert not docker_client.images.list(name=f"{zd['name']}-api")  # plan built nothing
    project.deploy(env="dev", log=lambda line: None)
    inputs = docker_client.images.get(tag).labels["io.projectdeployer.inputs"]
    (same,) = [p for p in project.plan("dev").services if p.service == "api"]
    assert (same.action, same.build) == ("unchanged", None)
    _set_version(zd["source"], "v9")
    out = subprocess.run([str(BIN), "-f", str(zd["path"]), "plan", "--env", "dev", "--json"], capture_output=True, text=True, env=os.environ.copy(), check=False)
    assert out.returncode == 0, out.stderr
    (api,) = [s for s in json.loads(out.stdout)["services"] if s["service"] == "api"]
    assert (api["action"], api["current_slot"], api["next_slot"]) == ("update", "a", "b")
    assert api["build"].startswith(f"inputs {inputs[:12]} -> ") and api["build"] != f"inputs {inputs[:12]} -> {inputs[:12]}"
    assert docker_client.images.get(tag).labels["io.projectdeployer.inputs"] == inputs  # still not built


def test_a_failing_release_command_stops_the_deploy_and_the_old_version_serves(zd: dict, docker_client) -> None:  # type: ignore[no-untyped-def]
    """The release command runs in the NEW image (it greps the new version out of app.py), once,
    before any new container starts; its failure switches nothing, under load; a passing one
    lets the new version in. Nothing of the one-off container is left."""
    project: ProjectDeployer = zd["project"]
    _set_version(zd["source"], "v1")
    project.deploy(env="dev", log=lambda line: None)
    serving = {c.id for c in _api_containers(docker_client, zd["name"])}
    with _load(zd) as load:
        load.wait_sent(150, timeout=30)
        _set_version(zd["source"], "v2")
        project.update_service("api", release_command="grep -q v2 app.py && echo migrating to v2 && exit 3")
        with pytest.raises(DeployFailed) as failure:
            project.deploy(env="dev", log=lambda line: None)
        message = str(failure.value)
        assert "the release command failed (exit code 3)" in message and "migrating to v2" in message, message
        assert "old version keeps serving" in message
        assert _get(zd["http"])["version"] == "v1"
        assert {c.id for c in _api_containers(docker_client, zd["name"])} == serving  # no new container was started

        _set_version(zd["source"], "v3")
        project.update_service("api", release_command="grep -q v3 app.py && echo migrated to v3")
        lines: list[str] = []
        project.deploy(env="dev", log=lines.append)
        assert _get(zd["http"])["version"] == "v3"
        load.wait_sent(load.snapshot().sent + 100, timeout=30)
    assert load.result.failed == 0, load.result.failures
    ran = [i for i, line in enumerate(lines) if line == "api release | migrated to v3"]
    starts = [i for i, line in enumerate(lines) if line.startswith("api: starting ")]
    assert len(ran) == 1 and starts and ran[0] < starts[0], lines  # once, before the new container
    leftovers = docker_client.containers.list(all=True, filters={"name": f"{zd['name']}_dev_api_"})
    assert all(not c.name.endswith("_release") for c in leftovers), [c.name for c in leftovers]
