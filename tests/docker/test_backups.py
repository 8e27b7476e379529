"""Backups and restores against real PostgreSQL and Redis containers.

One deployment (postgres, redis, and a second redis backed up every minute by the scheduler):

* the deploy creates a backup container per database and puts it in the scheduler's table;
* backup -> drop the table -> restore "latest": every row back, and the database's plain dump
  is byte-equal (same sha256) to the one taken before the backup; the restore reports downtime;
* a corrupted backup is ``corrupt`` in the listing, never ``latest``, and refused by name; a
  backup whose file *and* checksum were replaced is caught by ``pg_restore --list`` before
  anything changes;
* Redis: keys changed after the backup come back as they were; the append-only file is
  rewritten, so a later restart keeps the restored keys;
* a failed backup raises an alert through ``send_alert`` (once), and the scheduler really
  starts the every-minute backup container.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from projectdeployer import BackupManager, Deployer, ProjectDeployer
from projectdeployer.core.backups import BackupError, backup_container_name
from projectdeployer.hookspecs import hookimpl
from projectdeployer.plugins import pm
from projectdeployer.secrets.resolver import ResourceResolver
from tests.docker.conftest import remove_project, wait_for
from tests.docker.test_rotation import redis

pytestmark = pytest.mark.docker


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AlertCatcher:
    def __init__(self) -> None:
        self.alerts: list = []

    @hookimpl
    def send_alert(self, alert) -> None:  # type: ignore[no-untyped-def]
        self.alerts.append(alert)


@pytest.fixture
def stack(tmp_path: Path, bed: dict[str, str], docker_client) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    name = f"bak{os.getpid() % 10000}{int(time.time() * 1000) % 100000}"
    path = tmp_path / "bak.toml"
    path.write_text(
        f'[project]\nname = "{name}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in bed.items())
        + f'\n[environments.dev]\nprovider = "local"\nhttp_port = {_free_port()}\nhttps_port = {_free_port()}\n'
        + '\n[services.postgres]\ntype = "postgres"\n\n[services.redis]\ntype = "redis"\n'
        + '\n[services.cache]\ntype = "redis"\nbackup_config = { schedule = "* * * * *", retention_days = 1 }\n'
    )
    project = ProjectDeployer(str(path), path=path)
    catcher = AlertCatcher()
    pm.register(catcher, name=f"alerts-{name}")
    try:
        project.deploy(env="dev", log=lambda line: None)
        yield {"name": name, "project": project, "alerts": catcher.alerts}
    finally:
        pm.unregister(name=f"alerts-{name}")
        remove_project(docker_client, name)


def _sql(docker_client, name: str, sql: str) -> str:  # type: ignore[no-untyped-def]
    """psql inside the database container, over its local socket (no password there)."""
    user, db = ResourceResolver.get_db_user(name, "dev", "postgres"), ResourceResolver.get_db_name(name, "dev", "postgres")
    code, out = docker_client.containers.get(f"{name}_dev_postgres").exec_run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", db, "-tAc", sql], user="postgres")
    assert code == 0, out.decode()
    return out.decode().strip()


def _plain_dump(docker_client, name: str) -> bytes:  # type: ignore[no-untyped-def]
    user, db = ResourceResolver.get_db_user(name, "dev", "postgres"), ResourceResolver.get_db_name(name, "dev", "postgres")
    code, out = docker_client.containers.get(f"{name}_dev_postgres").exec_run(["pg_dump", "-U", user, "-d", db], user="postgres")
    assert code == 0, out.decode()
    assert b"CREATE TABLE public.orders" in out
    # pg_dump >= 15.14 brackets its output with \restrict/\unrestrict and a random key per run.
    return b"".join(line for line in out.splitlines(True) if not line.startswith((b"\\restrict ", b"\\unrestrict ")))


def _redis_port(docker_client, name: str, service: str) -> int:  # type: ignore[no-untyped-def]
    attrs = docker_client.containers.get(f"{name}_dev_{service}").attrs
    return int(attrs["NetworkSettings"]["Ports"]["6379/tcp"][0]["HostPort"])


def test_backup_restore_corruption_and_alerts(stack: dict, docker_client, pd_home: Path) -> None:  # type: ignore[no-untyped-def]
    name, project = stack["name"], stack["project"]
    lines: list[str] = []
    manager = BackupManager(project, "dev", log=lines.append)

    # The deploy made one backup container per database, created but not started, and scheduled them.
    for service in ("postgres", "redis", "cache"):
        info = docker_client.containers.get(backup_container_name(name, "dev", service))
        assert info.status == "created"
    table = json.loads((pd_home / name / "dev" / "scheduler" / "jobs.json").read_text())["jobs"]
    schedules = {j["service"]: j["schedule"] for j in table}
    assert schedules == {"postgres:backup": "0 2 * * *", "redis:backup": "0 3 * * *", "cache:backup": "* * * * *"}

    # --- PostgreSQL: backup, drop, restore latest -------------------------------------------
    _sql(docker_client, name, "CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, qty int)")
    _sql(docker_client, name, "INSERT INTO orders (item, qty) SELECT 'item-' || g, g FROM generate_series(1, 500) g")
    before = _plain_dump(docker_client, name)
    first = manager.run_backup("postgres")
    assert first.verified and first.file.endswith(".dump") and first.size_bytes > 0
    on_disk = pd_home / name / "dev" / "backups" / "postgres" / first.file
    assert on_disk.is_file() and oct(on_disk.stat().st_mode & 0o777) == "0o600"
    listed = manager.list_backups("postgres")
    assert [b["timestamp"] for b in listed] == [first.timestamp]
    assert listed[0]["status"] == "verified" and listed[0]["size_mb"] > 0 and 0 <= listed[0]["age_hours"] < 1

    _sql(docker_client, name, "DROP TABLE orders")
    report = project.rollback(env="dev", service="postgres", timestamp="latest", log=lines.append)
    assert report.backup == first.file and report.downtime_seconds > 0
    assert _sql(docker_client, name, "SELECT count(*), sum(qty) FROM orders") == "500|125250"
    after = _plain_dump(docker_client, name)
    diff = "".join(difflib.unified_diff(before.decode().splitlines(True), after.decode().splitlines(True), n=1))
    assert hashlib.sha256(after).hexdigest() == hashlib.sha256(before).hexdigest(), diff  # byte-equal database

    # --- corruption: a changed file is never "latest", and is refused by name --------------
    _sql(docker_client, name, "INSERT INTO orders (item, qty) VALUES ('late', 1)")
    second = manager.run_backup("postgres")
    assert second.timestamp > first.timestamp
    damaged = pd_home / name / "dev" / "backups" / "postgres" / second.file
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    damaged.write_bytes(bytes(data))
    statuses = {b["timestamp"]: b["status"] for b in manager.list_backups("postgres")}
    assert statuses == {first.timestamp: "verified", second.timestamp: "corrupt"}
    assert manager.latest("postgres").file == first.file
    with pytest.raises(BackupError, match="corrupt"):
        manager.restore("postgres", second.timestamp)
    # pull_backups copies verified backups only (the damaged one stays on the server).
    pulled = Deployer(project).pull_backups(env="dev", service="postgres")
    assert [p.name for p in pulled] == [first.file]
    assert pulled[0].parent == pd_home / name / "dev" / "backups" / "127_0_0_1" / "postgres"
    assert pulled[0].read_bytes() == (pd_home / name / "dev" / "backups" / "postgres" / first.file).read_bytes()
    # A file replaced together with its checksum passes the checksum, not pg_restore --list.
    damaged.write_bytes(b"not a dump" * 100)
    (damaged.parent / f"{second.file}.sha256").write_text(f"{hashlib.sha256(b'not a dump' * 100).hexdigest()}  {second.file}\n")
    with pytest.raises(BackupError, match="integrity check"):
        manager.restore("postgres", "latest")
    assert _sql(docker_client, name, "SELECT count(*) FROM orders") == "501"  # nothing was changed

    # --- Redis: keys back as they were, and they survive a restart ---------------------------
    port = _redis_port(docker_client, name, "redis")
    password = ResourceResolver.get_service_password(name, "dev", "redis")
    for i in range(50):
        assert redis(port, password, "SET", f"k{i}", f"v{i}") == "+OK"
    rdb = manager.run_backup("redis")
    assert rdb.verified and rdb.file.endswith(".rdb")
    assert redis(port, password, "FLUSHALL") == "+OK"
    assert redis(port, password, "SET", "after", "1") == "+OK"
    report = manager.restore("redis", "latest")
    assert report.downtime_seconds > 0
    port = _redis_port(docker_client, name, "redis")
    assert [redis(port, password, "GET", f"k{i}") for i in range(50)] == [f"v{i}" for i in range(50)]
    assert redis(port, password, "EXISTS", "after") == ":0"
    docker_client.containers.get(f"{name}_dev_redis").restart(timeout=30)
    wait_for(lambda: redis(port, password, "GET", "k7") == "v7", timeout=60, what="redis back after a restart")
    assert redis(port, password, "DBSIZE") == ":50"

    # --- the CLI: a table, --json, a prompt that changes nothing when refused, one-line errors -
    cli = [str(Path(sys.executable).parent / "projectdeployer"), "-f", str(project.path)]
    env = {**os.environ, "PROJECTDEPLOYER_HOME": str(pd_home)}
    listed = subprocess.run([*cli, "backups", "list", "postgres", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and [r["status"] for r in json.loads(listed.stdout)] == ["verified", "verified"]
    refused = subprocess.run([*cli, "backups", "restore", "postgres"], env=env, input="n\n", capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "Replace ALL data of postgres" in refused.stderr
    assert _sql(docker_client, name, "SELECT count(*) FROM orders") == "501"
    unknown = subprocess.run([*cli, "backups", "restore", "nosuch", "--yes"], env=env, capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 1 and "no service named 'nosuch'" in unknown.stderr and "Traceback" not in unknown.stderr
    table = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "backups (UTC)" in table.stdout and "0 2 * * *" in table.stdout

    # --- a failed backup alerts once -----------------------------------------------------------
    docker_client.containers.get(f"{name}_dev_postgres").stop(timeout=30)
    try:
        with pytest.raises(BackupError, match="backup failed"):
            manager.run_backup("postgres")
    finally:
        docker_client.containers.get(f"{name}_dev_postgres").start()
    assert [a.title for a in stack["alerts"]] == [f"Backup of {name}/dev/postgres failed"]
    assert stack["alerts"][0].severity == "critical"
    assert manager.check_backups() == []  # already alerted by run_backup: not twice

    # --- the scheduler starts the every-minute backup on its own ----------------------------
    wait_for(lambda: manager.list_backups("cache"), timeout=130, what="a scheduled backup of cache")
    assert all(b["status"] == "verified" for b in manager.list_backups("cache"))
