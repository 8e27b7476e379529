"""Password rotation against real PostgreSQL and Redis containers: the database changes first,
then the file; the old password is refused and the new one accepted right away; clients that
reconnect in a loop (reading the password file each time) see no authentication failure after
the rotation returned; a redeploy restarts the databases with the new password and keeps the data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from projectdeployer import ProjectDeployer, SecretsRotator
from projectdeployer.core.runtime import LABEL_PROJECT
from projectdeployer.secrets.resolver import ResourceResolver
from tests.docker.conftest import remove_project, wait_for

pytestmark = pytest.mark.docker


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _host_port(docker_client, container: str, port: int) -> int:  # type: ignore[no-untyped-def]
    attrs = docker_client.containers.get(container).attrs
    return int(attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])


def _resp(*args: str) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


def redis(port: int, password: str, *command: str) -> str:
    """AUTH then ``command`` over a fresh connection; the command's reply, or ``AUTH:<error>``."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        sock.sendall(_resp("AUTH", password))
        auth = reader.readline().decode().strip()
        if auth != "+OK":
            return f"AUTH:{auth}"
        if not command:
            return "+OK"
        sock.sendall(_resp(*command))
        line = reader.readline().decode().strip()
        if line.startswith("$") and line != "$-1":
            return reader.readline().decode().strip()
        return line


def psql(port: int, user: str, db: str, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    """The host's psql over TCP; the password only in this test's subprocess environment."""
    env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"}
    return subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", db, "-tAc", sql], env=env, capture_output=True, text=True, timeout=30)


class LoopClient:
    """Reconnects in a loop, reading the password file before every attempt."""

    def __init__(self, attempt: Callable[[str], bool], password_file: Path) -> None:
        self.attempt = attempt
        self.password_file = password_file
        #: (monotonic time the password was read, accepted)
        self.results: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            read_at = time.monotonic()
            password = self.password_file.read_text()
            self.results.append((read_at, self.attempt(password)))

    def __enter__(self) -> LoopClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def after(self, moment: float) -> list[bool]:
        return [ok for read_at, ok in self.results if read_at > moment]

    def wait_attempts_after(self, moment: float, count: int) -> None:
        wait_for(lambda: len(self.after(moment)) >= count, timeout=30, what=f"{count} client attempts")


@pytest.fixture
def dbs(tmp_path: Path, bed: dict[str, str], docker_client) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    name = f"rot{os.getpid() % 10000}{int(time.time() * 1000) % 100000}"
    path = tmp_path / "rot.toml"
    path.write_text(
        f'[project]\nname = "{name}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in bed.items())
        + f'\n[environments.dev]\nprovider = "local"\nhttp_port = {_free_port()}\nhttps_port = {_free_port()}\n'
        + '\n[services.postgres]\ntype = "postgres"\n\n[services.redis]\ntype = "redis"\n'
    )
    project = ProjectDeployer(str(path), path=path)
    try:
        project.deploy(env="dev", log=lambda line: None)
        yield {"name": name, "project": project}
    finally:
        remove_project(docker_client, name)


def test_rotation_changes_the_running_databases_first_and_survives_a_redeploy(dbs: dict, docker_client, pd_home: Path) -> None:  # type: ignore[no-untyped-def]
    name, project = dbs["name"], dbs["project"]
    user = ResourceResolver.get_db_user(name, "dev", "postgres")
    db = ResourceResolver.get_db_name(name, "dev", "postgres")
    secrets = pd_home / name / "dev" / "secrets"
    pg_file, redis_file = secrets / "postgres" / "postgres_password", secrets / "redis" / "redis_password"
    pg_port = _host_port(docker_client, f"{name}_dev_postgres", 5432)
    redis_port = _host_port(docker_client, f"{name}_dev_redis", 6379)
    pg_old, redis_old = pg_file.read_text(), redis_file.read_text()

    # Data written before the rotation.
    wait_for(lambda: psql(pg_port, user, db, pg_old, "select 1").stdout.strip() == "1", timeout=60, what="postgres to accept connections")
    created = psql(pg_port, user, db, pg_old, "create table kept (v text); insert into kept values ('before rotation')")
    assert created.returncode == 0, created.stderr
    assert wait_for(lambda: redis(redis_port, redis_old, "SET", "kept", "before rotation") == "+OK", timeout=30, what="redis")

    rotator = SecretsRotator(project, "dev", log=lambda line: None)
    pg_client = LoopClient(lambda pw: psql(pg_port, user, db, pw, "select v from kept").stdout.strip() == "before rotation", pg_file)
    redis_client = LoopClient(lambda pw: redis(redis_port, pw, "GET", "kept") == "before rotation", redis_file)
    with pg_client, redis_client:
        pg_client.wait_attempts_after(0, 3)
        redis_client.wait_attempts_after(0, 20)
        pg_backup = rotator.rotate_postgres_password()
        pg_done = time.monotonic()
        redis_backup = rotator.rotate_redis_password()
        redis_done = time.monotonic()
        pg_client.wait_attempts_after(pg_done, 5)
        redis_client.wait_attempts_after(redis_done, 50)
    pg_window = sum(1 for _, ok in pg_client.results if not ok)
    print(f"postgres: {len(pg_client.results)} attempts, {pg_window} refused during the switch; redis: {len(redis_client.results)} attempts")
    # Zero authentication failures for every attempt that read the file after the switch.
    assert all(pg_client.after(pg_done)), pg_client.results
    assert all(redis_client.after(redis_done)), redis_client.results
    # Redis keeps both passwords valid while the file changes: no failure at any moment.
    assert all(ok for _, ok in redis_client.results), [r for r in redis_client.results if not r[1]]

    pg_new, redis_new = pg_file.read_text(), redis_file.read_text()
    assert pg_new != pg_old and redis_new != redis_old
    assert pg_backup.read_text() == pg_old and redis_backup.read_text() == redis_old
    for path in (pg_file, redis_file, pg_backup, redis_backup):
        assert path.stat().st_mode & 0o777 == 0o600
    # Right after the rotation: old refused, new accepted.
    refused = psql(pg_port, user, db, pg_old, "select 1")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
    assert psql(pg_port, user, db, pg_new, "select v from kept").stdout.strip() == "before rotation"
    assert redis(redis_port, redis_old).startswith("AUTH:-WRONGPASS")
    assert redis(redis_port, redis_new, "GET", "kept") == "before rotation"
    assert rotator.list_secrets() == {"postgres": ["postgres_password"], "redis": ["redis_password"]}

    # The next deploy restarts both (their secret files changed) with the new password; data kept.
    report = project.deploy(env="dev", log=lambda line: None)
    assert {o.service for o in report.outcomes if o.action == "update"} >= {"postgres", "redis"}
    pg_port = _host_port(docker_client, f"{name}_dev_postgres", 5432)
    redis_port = _host_port(docker_client, f"{name}_dev_redis", 6379)
    wait_for(lambda: psql(pg_port, user, db, pg_new, "select v from kept").stdout.strip() == "before rotation", timeout=60, what="postgres after redeploy")
    assert "password authentication failed" in psql(pg_port, user, db, pg_old, "select 1").stderr
    wait_for(lambda: redis(redis_port, redis_new, "GET", "kept") == "before rotation", timeout=30, what="redis after redeploy")
    assert redis(redis_port, redis_old).startswith("AUTH:-WRONGPASS")

    # rotate_all_secrets: both again; no password (old or new) in docker inspect or logs.
    rotated = rotator.rotate_all_secrets()
    assert set(rotated) == {"postgres", "redis"}
    latest = [pg_file.read_text(), redis_file.read_text()]
    assert psql(pg_port, user, db, latest[0], "select 1").stdout.strip() == "1"
    assert redis(redis_port, latest[1], "PING") == "+PONG"
    passwords = [pg_old, redis_old, pg_new, redis_new, *latest]
    for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={name}"}):
        inspected = json.dumps(container.attrs)
        logs = container.logs().decode(errors="replace")
        assert not any(p in inspected or p in logs for p in passwords), f"a password in docker inspect or logs of {container.name}"
