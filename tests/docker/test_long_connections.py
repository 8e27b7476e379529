"""Zero downtime for the whole life of a connection, not only the deploy window (issue 12, 1-2).

An app with a pool of PostgreSQL connections opened at start and never re-checked
(tests/docker/apps/pooled) is deployed, redeployed and rolled back under load with response
streams in flight, and the load goes on well past every timeout the sidecar has (its
``sidecar_shutdown_timeout`` set short here, through the documented setting, so the test does
not wait five minutes). With one nginx for HTTP and TCP routes, the pool the new container
opened before the switch rode the workers the switch retired and was cut at the shutdown
timeout: a failed request some time after the deploy. And every deploy waited out the drain,
kept busy by the pool's idle sessions. Now: 0 failed requests, the pooled sessions are the same
ones at the end, and no deploy waits out the drain timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from projectdeployer import ProjectDeployer
from projectdeployer.rehearse.loadgen import LoadGenerator
from tests.docker.conftest import remove_project

pytestmark = pytest.mark.docker

APP = Path(__file__).resolve().parent / "apps" / "pooled"
DOMAIN = "api.pooled.localhost"
SHUTDOWN_TIMEOUT = 4
DRAIN_TIMEOUT = 12


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": DOMAIN})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def pooled(tmp_path: Path, bed: dict[str, str], docker_client) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    name = f"lc{os.getpid() % 10000}{int(time.time() * 1000) % 100000}"
    source = tmp_path / "api"
    shutil.copytree(APP, source)
    http_port = _free_port()
    path = tmp_path / "pooled.toml"
    path.write_text(
        f'[project]\nname = "{name}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in bed.items())
        + f'\n[environments.dev]\nprovider = "local"\nhttp_port = {http_port}\nhttps_port = {_free_port()}\n'
        + f"sidecar_shutdown_timeout = {SHUTDOWN_TIMEOUT}\ndrain_timeout = {DRAIN_TIMEOUT}\n"
        + '\n[services.postgres]\ntype = "postgres"\n'
        + f'\n[services.api]\ntype = "python"\nbuild_context = "{source}"\ncommand = "python app.py"\nport = 8000\n'
        + f'health_path = "/health"\ndepends_on = ["postgres"]\ndomain = "{DOMAIN}"\n'
        + 'env_vars = {DATABASE_URL = "auto", POOL_SIZE = "4"}\n'
    )
    try:
        yield {"name": name, "http": http_port, "source": source, "project": ProjectDeployer(str(path), path=path)}
    finally:
        remove_project(docker_client, name)


def test_a_pooled_app_survives_deploys_and_rollbacks_long_after_they_end(pooled: dict) -> None:
    project: ProjectDeployer = pooled["project"]
    port = pooled["http"]
    lines: list[str] = []
    project.deploy(env="dev", log=lines.append)
    assert _get(port, "/")["version"] == "v1"

    def deploy(step: str, action) -> float:  # type: ignore[no-untyped-def]
        """Run a deploy; the seconds of the api's switch (start, health, switch, drain, stop)."""
        lines.clear()
        report = action()
        assert not [line for line in lines if "still in flight" in line], (step, lines)
        (api,) = [o for o in report.outcomes if o.service == "api"]
        assert api.action == "update", (step, api)
        return api.seconds

    load = LoadGenerator(
        f"http://127.0.0.1:{port}/",
        rate=80,
        concurrency=6,
        host_header=DOMAIN,
        stream_path="/stream?seconds=2",
        streams=2,
        max_seconds=300,
    )
    with load:
        load.wait_sent(150, timeout=30)
        (pooled["source"] / "version.txt").write_text("v2\n")
        switched = deploy("redeploy", lambda: project.deploy(env="dev", log=lines.append))
        assert _get(port, "/")["version"] == "v2"
        pool_v2 = _get(port, "/info")["pool"]
        load.wait_sent(load.snapshot().sent + 100, timeout=30)
        rolled = deploy("rollback", lambda: project.rollback(env="dev", service="api", log=lines.append))
        assert _get(port, "/")["version"] == "v1"
        load.wait_sent(load.snapshot().sent + 100, timeout=30)
        again = deploy("back to the file", lambda: project.deploy(env="dev", log=lines.append))
        info = _get(port, "/info")
        assert info["version"] == "v2"
        # Past every timeout of the sidecar: the shutdown timeout and the drain, with a margin.
        ended = time.monotonic()
        while time.monotonic() - ended < max(SHUTDOWN_TIMEOUT, DRAIN_TIMEOUT) + 6:
            load.wait_sent(load.snapshot().sent + 40, timeout=30)
    result = load.result
    print(result.summary(), f"switches {switched:.1f}s {rolled:.1f}s {again:.1f}s")
    assert result.failed == 0, result.failures
    assert result.stream_ok > 0
    # The pool of the serving container is the one it opened before its switch, every session
    # alive: each request used one, and none failed.
    assert _get(port, "/info")["pool"] == info["pool"] and len(info["pool"]) == 4
    assert len(pool_v2) == 4
    # No switch waited out the drain (the streams last 2 s; the idle pool is not waited for).
    assert max(switched, rolled, again) < DRAIN_TIMEOUT
