"""File sync (push_config / pull_data / full_sync and ``sync push|pull``) on real files.

The "servers" are this machine with a ``data_root`` of their own (a temporary directory), so
the real archive path runs: tar built here, ``put_file``, ``tar`` and ``find`` run by
``Server.run``, ``get_file`` back. Only their container runtime is a fake (no Docker here).
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pluggy
import pytest
from click.testing import CliRunner

from projectdeployer import hookimpl
from projectdeployer.api.by_name import FileSync
from projectdeployer.api.project import ProjectDeployer
from projectdeployer.core.paths import server_env_dir
from projectdeployer.core.provider import CommandResult, Provider, Server, ServerSpec
from projectdeployer.core.runtime import LABEL_ENV, LABEL_PROJECT, ContainerInfo
from projectdeployer.plugins import load_plugins, make_plugin_manager
from projectdeployer.providers.local import LocalServer
from projectdeployer.sync.files import SyncFailed, build_push_archive, unpack_pull_archive

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-password-value"


# --- fakes: servers that are real directories --------------------------------------------------


class FakeRuntime:
    """The two runtime calls a pull makes: list containers by label, read their logs."""

    def __init__(self, containers: Mapping[str, Mapping[str, str]]) -> None:
        self.containers = containers

    def list(self, labels: Mapping[str, str], *, all: bool = True) -> list[ContainerInfo]:
        return [
            ContainerInfo(id=f"id-{name}", name=name, image_id="sha256:x", labels=dict(have), state="running", health=None, exit_code=None, started_at=None)
            for name, have in self.containers.items()
            if all_items(labels, have)
        ]

    def logs(self, name: str, *, tail: int = 100, **_: Any) -> Iterator[str]:
        return iter([f"{name} line {i}" for i in range(5)][-tail:])


def all_items(wanted: Mapping[str, str], have: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in wanted.items())


def labels(project: str = "myapp", env: str = "prod") -> dict[str, str]:
    return {LABEL_PROJECT: project, LABEL_ENV: env}


class DirServer(LocalServer):
    """This machine, with its server tree in ``root`` instead of ``$PROJECTDEPLOYER_HOME``."""

    def __init__(self, name: str, address: str, root: Path, containers: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.name = name
        self.public_address = self.private_address = address
        self.root = root
        self.calls: list[str] = []
        self._runtime = FakeRuntime(containers or {"myapp_prod_api_blue": labels(), "other_prod_api_blue": labels("other")})

    @property
    def data_root(self) -> str:  # type: ignore[override]
        return str(self.root)

    def run(self, command: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        self.calls.append(command[0])
        return super().run(command, timeout=timeout)

    def put_file(self, remote_path: str, data: bytes, *, mode: int = 0o644) -> None:
        # LocalServer.put_file writes text (data.decode()); the archive is binary.
        self.calls.append("put_file")
        fd = os.open(remote_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    def get_file(self, remote_path: str) -> bytes:
        self.calls.append("get_file")
        return super().get_file(remote_path)

    def runtime(self) -> Any:
        return self._runtime


class BrokenServer(DirServer):
    """A server whose commands fail: ``raises`` = the connection drops, else exit code 2."""

    def __init__(self, *args: Any, raises: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raises = raises

    def run(self, command: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        if command[0] == "rm":
            return super().run(command, timeout=timeout)
        if self.raises:
            raise ConnectionResetError("connection reset by peer")
        return CommandResult(exit_code=2, stdout="", stderr="tar: No space left on device\n")


class TruncatingServer(DirServer):
    """The upload arrives cut short: the archive on the server is broken."""

    def put_file(self, remote_path: str, data: bytes, *, mode: int = 0o644) -> None:
        super().put_file(remote_path, data[: len(data) // 2], mode=mode)


class ThisMachine(LocalServer):
    """The local provider's server (its tree IS $PROJECTDEPLOYER_HOME), with a fake runtime."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def run(self, command: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        self.calls.append(command[0])
        return super().run(command, timeout=timeout)

    def put_file(self, remote_path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.calls.append("put_file")

    def runtime(self) -> Any:
        return FakeRuntime({"myapp_prod_api_blue": labels()})


# --- fixtures ------------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write(path: Path, text: str | bytes, file_mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    path.chmod(file_mode)
    return path


@pytest.fixture
def local_tree(pd_home: Path) -> Path:
    """``myapp/prod`` here: the three pushed dirs, and things that must never be pushed."""
    env = pd_home / "myapp" / "prod"
    write(env / "config" / "api" / "settings.json", '{"debug": false}')
    write(env / "config" / "nginx.conf", "server {}", 0o640)
    write(env / "secrets" / "postgres" / "postgres_password", SECRET, 0o600)
    (env / "secrets").chmod(0o700)
    (env / "secrets" / "postgres").chmod(0o700)
    write(env / "files" / "static" / "logo.png", bytes(range(256)))
    write(env / "files" / "run.sh", "#!/bin/sh\n", 0o755)
    (env / "files" / "empty").mkdir()
    # Not to be pushed: pulled kinds, the project-wide secrets, a lock, a link leading out.
    write(env / "data" / "local-only.db", "local")
    write(pd_home / "myapp" / "secrets" / "api" / "git_token", "tk8787", 0o600)
    write(env / "deploy.lock", "")
    outside = write(pd_home / "outside.txt", "outside")
    (env / "config" / "link").symlink_to(outside)
    return env


def make_server(tmp_path: Path, name: str, address: str, cls: type[DirServer] = DirServer, **kwargs: Any) -> DirServer:
    root = tmp_path / "servers" / name
    root.mkdir(parents=True)
    return cls(name, address, root, **kwargs)


def server_env(server: DirServer) -> Path:
    return server.root / "myapp" / "prod"


def leftovers(root: Path) -> list[str]:
    """Temporary files or directories a sync left behind."""
    return [str(p) for p in root.rglob(".pd-*")] + [str(p) for p in root.rglob(".pull-*")]


# --- push --------------------------------------------------------------------------------------


def test_push_archive_holds_only_the_three_dirs_with_modes_and_no_owner(local_tree: Path) -> None:
    archive = build_push_archive(local_tree)
    with tarfile.open(fileobj=io.BytesIO(archive.data), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {name.split("/")[0] for name in members} == {"config", "secrets", "files"}
    assert "config/link" not in members and archive.skipped == ("config/link",)
    assert members["secrets/postgres/postgres_password"].mode == 0o600
    assert members["secrets"].mode == 0o700
    assert members["files/run.sh"].mode == 0o755
    assert members["files/empty"].isdir()
    assert all(m.uid == 0 and m.gid == 0 and not m.uname for m in members.values())
    assert archive.kinds == ("config", "secrets", "files") and archive.files == 5


def test_push_reaches_every_server_and_names_the_one_that_failed(tmp_path: Path, local_tree: Path) -> None:
    a = make_server(tmp_path, "web-1", "10.0.0.1")
    b = make_server(tmp_path, "web-2", "10.0.0.2")
    broken = make_server(tmp_path, "web-3", "10.0.0.3", BrokenServer)
    lines: list[str] = []

    with pytest.raises(SyncFailed) as caught:
        FileSync("myapp", "prod", servers=[a, broken, b], log=lines.append).push_config()

    error = caught.value
    assert [r.server for r in error.failed] == ["web-3"]
    assert "web-3" in str(error) and "connection reset" in str(error)
    assert "web-1" not in str(error).splitlines()[0].split(":", 1)[1]
    assert [r.server for r in error.reports] == ["web-1", "web-3", "web-2"]
    for server in (a, b):
        report = next(r for r in error.reports if r.server == server.name)
        assert report.ok and report.files == 5 and report.bytes > 0 and report.destination == str(server_env(server))
        env = server_env(server)
        assert (env / "secrets" / "postgres" / "postgres_password").read_text() == SECRET
        assert mode(env / "secrets" / "postgres" / "postgres_password") == 0o600
        assert mode(env / "secrets") == 0o700
        assert mode(env / "config" / "nginx.conf") == 0o640
        assert mode(env / "files" / "run.sh") == 0o755
        assert (env / "files" / "static" / "logo.png").read_bytes() == bytes(range(256))
        assert (env / "files" / "empty").is_dir()
        # Nothing outside the three directories, no link, no temporaries.
        assert sorted(p.name for p in env.iterdir()) == ["config", "files", "secrets"]
        assert not (env / "config" / "link").exists()
        assert not (server.root / "myapp" / "secrets").exists()
        assert leftovers(server.root) == []
    assert not any(SECRET in line for line in lines) and SECRET not in str(error)


def test_push_fills_the_servers_dirs_in_place_and_removes_what_is_gone(tmp_path: Path, local_tree: Path) -> None:
    server = make_server(tmp_path, "web-1", "10.0.0.1")
    env = server_env(server)
    write(env / "config" / "api" / "settings.json", "old")
    write(env / "config" / "api" / "stale.json", "stale")
    write(env / "config" / "nginx.conf" / "was-a-dir", "x")  # now a file locally
    write(env / "files" / "static", "was a file")  # now a directory locally
    write(env / "data" / "db.bin", "server data")  # a pulled kind: never touched by a push
    config_inode = (env / "config").stat().st_ino
    api_inode = (env / "config" / "api").stat().st_ino

    [report] = FileSync("myapp", "prod", servers=[server], log=lambda line: None).push_config()

    assert report.ok
    assert (env / "config" / "api" / "settings.json").read_text() == '{"debug": false}'
    assert not (env / "config" / "api" / "stale.json").exists()
    assert (env / "config" / "nginx.conf").read_text() == "server {}"
    assert (env / "files" / "static" / "logo.png").exists()
    assert (env / "data" / "db.bin").read_text() == "server data"
    # Running containers bind-mount config/: the directories must be the same ones.
    assert (env / "config").stat().st_ino == config_inode
    assert (env / "config" / "api").stat().st_ino == api_inode


def test_a_broken_upload_leaves_the_servers_files_as_they_were(tmp_path: Path, local_tree: Path) -> None:
    server = make_server(tmp_path, "web-1", "10.0.0.1", TruncatingServer)
    env = server_env(server)
    write(env / "config" / "api" / "settings.json", "old")
    write(env / "secrets" / "postgres" / "postgres_password", "old-secret", 0o600)

    with pytest.raises(SyncFailed) as caught:
        FileSync("myapp", "prod", servers=[server], log=lambda line: None).push_config()

    assert "web-1" in str(caught.value) and "unpacking failed" in str(caught.value)
    assert (env / "config" / "api" / "settings.json").read_text() == "old"
    assert (env / "secrets" / "postgres" / "postgres_password").read_text() == "old-secret"
    assert not (env / "files").exists()
    assert leftovers(server.root) == []


def test_a_dir_missing_here_is_left_alone_on_the_servers(tmp_path: Path, local_tree: Path) -> None:
    import shutil

    shutil.rmtree(local_tree / "files")
    server = make_server(tmp_path, "web-1", "10.0.0.1")
    write(server_env(server) / "files" / "uploaded-by-hand.txt", "keep")

    [report] = FileSync("myapp", "prod", servers=[server], log=lambda line: None).push_config()

    assert report.ok and report.files == 3
    assert (server_env(server) / "files" / "uploaded-by-hand.txt").read_text() == "keep"
    assert (server_env(server) / "config" / "nginx.conf").exists()


class HangingServer(DirServer):
    """Its unpacking never ends (a dead connection that does not say so)."""

    def run(self, command: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        if command[0] == "sh":
            return super().run(["sleep", "30"], timeout=timeout)
        return super().run(command, timeout=timeout)


def test_a_hung_server_times_out_alone(tmp_path: Path, local_tree: Path) -> None:
    good = make_server(tmp_path, "web-1", "10.0.0.1")
    hung = make_server(tmp_path, "web-2", "10.0.0.2", HangingServer)

    with pytest.raises(SyncFailed) as caught:
        FileSync("myapp", "prod", servers=[good, hung], log=lambda line: None, command_timeout=0.5).push_config()

    assert [r.server for r in caught.value.failed] == ["web-2"] and "timed out" in str(caught.value)
    assert (server_env(good) / "config" / "nginx.conf").exists()


def test_push_to_this_machine_is_already_in_place(local_tree: Path) -> None:
    server = ThisMachine()
    before = {p: p.stat().st_mtime_ns for p in local_tree.rglob("*") if not p.is_symlink()}

    [report] = FileSync("myapp", "prod", servers=[server], log=lambda line: None).push_config()

    assert report.ok and report.files == 0 and "already in place" in (report.note or "")
    assert server.calls == []  # no upload, no command
    assert {p: p.stat().st_mtime_ns for p in local_tree.rglob("*") if not p.is_symlink()} == before


# --- pull --------------------------------------------------------------------------------------


def fill_server(server: DirServer) -> None:
    env = server_env(server)
    write(env / "logs" / "api" / "app.log", f"{server.name} says hello\n")
    write(env / "backups" / "postgres" / "dump.sql.gz", b"\x1f\x8b" + server.name.encode(), 0o600)
    write(env / "data" / "uploads" / "a.txt", "a")
    write(env / "monitoring" / "metrics.json", "{}")
    write(env / "config" / "not-pulled.json", "{}")
    (env / "data" / "link-out").symlink_to("/etc/hostname")


def test_pull_fills_one_folder_per_server_and_exports_container_logs(tmp_path: Path, pd_home: Path) -> None:
    a = make_server(tmp_path, "web-1", "192.168.1.100")
    b = make_server(tmp_path, "web-2", "192.168.1.101")
    for server in (a, b):
        fill_server(server)
    local = pd_home / "myapp" / "prod"
    write(local / "backups" / "192_168_1_100" / "older.sql.gz", "kept")  # pruned on the server

    reports = FileSync("myapp", "prod", servers=[a, b], log=lambda line: None).pull_data()

    assert [r.server for r in reports] == ["web-1", "web-2"] and all(r.ok for r in reports)
    for server, folder in ((a, "192_168_1_100"), (b, "192_168_1_101")):
        assert (local / "logs" / folder / "api" / "app.log").read_text() == f"{server.name} says hello\n"
        dump = local / "backups" / folder / "postgres" / "dump.sql.gz"
        assert dump.read_bytes() == b"\x1f\x8b" + server.name.encode() and mode(dump) == 0o600
        assert (local / "data" / folder / "uploads" / "a.txt").read_text() == "a"
        assert (local / "monitoring" / folder / "metrics.json").exists()
        container_log = local / "logs" / folder / "myapp_prod_api_blue.log"
        assert container_log.read_text().splitlines() == [f"myapp_prod_api_blue line {i}" for i in range(5)]
        assert not (local / "logs" / folder / "other_prod_api_blue.log").exists()  # another project's
        assert not (local / "data" / folder / "link-out").exists()  # a link leading out is refused
        assert leftovers(server.root) == [] and "get_file" in server.calls
    report = reports[0]
    assert report.files == 5 and report.bytes > 0 and "refused 1" in (report.note or "")
    assert (local / "backups" / "192_168_1_100" / "older.sql.gz").read_text() == "kept"
    assert not (local / "config").exists()
    assert leftovers(local) == []


def test_pull_goes_on_when_a_server_fails_and_names_it(tmp_path: Path, pd_home: Path) -> None:
    good = make_server(tmp_path, "web-1", "10.0.0.1")
    fill_server(good)
    bad = make_server(tmp_path, "db-1", "10.0.0.9", BrokenServer, raises=False)

    with pytest.raises(SyncFailed) as caught:
        FileSync("myapp", "prod", servers=[bad, good], log=lambda line: None).pull_data()

    assert str(caught.value).splitlines()[0] == "pull failed on 1 of 2 server(s): db-1"
    assert "No space left on device" in str(caught.value)
    assert (pd_home / "myapp" / "prod" / "logs" / "10_0_0_1" / "api" / "app.log").exists()
    assert not (pd_home / "myapp" / "prod" / "logs" / "10_0_0_9").exists()


def test_pull_from_this_machine_only_exports_container_logs(local_tree: Path) -> None:
    write(local_tree / "backups" / "postgres" / "dump.sql.gz", "dump")
    server = ThisMachine()

    [report] = FileSync("myapp", "prod", servers=[server], log=lambda line: None).pull_data()

    assert report.ok and report.files == 1 and "already in place" in (report.note or "")
    assert (local_tree / "logs" / "127_0_0_1" / "myapp_prod_api_blue.log").exists()
    assert not (local_tree / "backups" / "127_0_0_1").exists()  # no backups/ inside backups/
    assert server.calls == []


def test_pull_refuses_members_outside_the_pulled_dirs(tmp_path: Path, pd_home: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in ("logs/ok.log", "config/evil.json", "../escape.txt", "/tmp/abs.txt", "logs/../../up.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    env_root = pd_home / "myapp" / "prod"

    files, refused = unpack_pull_archive(buffer.getvalue(), env_root, "10_0_0_1")

    assert files == 1 and (env_root / "logs" / "10_0_0_1" / "ok.log").read_text() == "hi"
    assert len(refused) == 4
    written = sorted(str(p.relative_to(pd_home)) for p in pd_home.rglob("*") if p.is_file())
    assert written == ["myapp/prod/logs/10_0_0_1/ok.log"]


def test_full_sync_pushes_then_pulls(tmp_path: Path, local_tree: Path) -> None:
    server = make_server(tmp_path, "web-1", "10.0.0.1")
    fill_server(server)

    reports = FileSync("myapp", "prod", servers=[server], log=lambda line: None).full_sync()

    assert [(r.action, r.server, r.ok) for r in reports] == [("push", "web-1", True), ("pull", "web-1", True)]
    assert (server_env(server) / "secrets" / "postgres" / "postgres_password").exists()
    assert (local_tree / "logs" / "10_0_0_1" / "api" / "app.log").exists()


def test_full_sync_pulls_even_when_a_push_failed_and_names_the_server_once(tmp_path: Path, local_tree: Path) -> None:
    good = make_server(tmp_path, "web-1", "10.0.0.1")
    fill_server(good)
    broken = make_server(tmp_path, "web-2", "10.0.0.2", BrokenServer)

    with pytest.raises(SyncFailed) as caught:
        FileSync("myapp", "prod", servers=[good, broken], log=lambda line: None).full_sync()

    lines = str(caught.value).splitlines()
    assert lines[0] == "sync failed on 1 of 2 server(s): web-2"
    assert lines[1:] == ["web-2 (10.0.0.2) push: ConnectionResetError: connection reset by peer", "web-2 (10.0.0.2) pull: ConnectionResetError: connection reset by peer"]
    assert [(r.action, r.server, r.ok) for r in caught.value.reports] == [("push", "web-1", True), ("push", "web-2", False), ("pull", "web-1", True), ("pull", "web-2", False)]
    assert (local_tree / "logs" / "10_0_0_1" / "api" / "app.log").exists()


@pytest.mark.parametrize(("address", "folder"), [("192.168.1.100", "192_168_1_100"), ("fe80::1", "fe80__1"), ("web-1.example.com", "web-1_example_com")])
def test_server_env_dir_is_the_address_with_underscores(tmp_path: Path, address: str, folder: str) -> None:
    assert server_env_dir(DirServer("s", address, tmp_path)) == folder


# --- the servers of an environment, and the CLI ------------------------------------------------


class StaticProvider(Provider):
    name = "static"

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers

    def list_servers(self, project: str, env: str) -> list[Server]:
        return list(self.servers)

    def create_server(self, project: str, env: str, spec: ServerSpec) -> Server:
        raise NotImplementedError

    def destroy_server(self, server: Server) -> None:
        raise NotImplementedError


class ProviderPlugin:
    """Answers ``get_provider`` with the test's servers."""

    def __init__(self, servers: list[Server]) -> None:
        self.provider = StaticProvider(servers)

    @hookimpl
    def get_provider(self, project: Any, env: str, zone: str) -> Provider:
        return self.provider


@pytest.fixture
def manager() -> pluggy.PluginManager:
    return load_plugins(make_plugin_manager(), env={})


def with_servers(manager: pluggy.PluginManager, servers: list[Server]) -> pluggy.PluginManager:
    manager.register(ProviderPlugin(servers), "test-sync-servers")
    ProjectDeployer.create("myapp", manager=manager)
    return manager


def test_servers_come_from_the_environments_provider(tmp_path: Path, local_tree: Path, manager: pluggy.PluginManager) -> None:
    servers = [make_server(tmp_path, "web-1", "10.0.0.1"), make_server(tmp_path, "web-2", "10.0.0.2")]
    project = ProjectDeployer("myapp", manager=with_servers(manager, servers))

    reports = FileSync(project, "prod", log=lambda line: None).push_config()

    assert [r.server for r in reports] == ["web-1", "web-2"]
    assert all((server_env(s) / "config" / "nginx.conf").exists() for s in servers)


def invoke(manager: pluggy.PluginManager, *args: str, input: str | None = None) -> Any:
    from projectdeployer.cli import make_cli

    return CliRunner().invoke(make_cli(manager), ["-p", "myapp", "sync", *args], input=input)


def test_cli_push_asks_first_and_changes_nothing_when_refused(tmp_path: Path, local_tree: Path, manager: pluggy.PluginManager) -> None:
    server = make_server(tmp_path, "web-1", "10.0.0.1")
    with_servers(manager, [server])

    refused = invoke(manager, "push", "--env", "prod", input="n\n")

    assert refused.exit_code != 0 and "Replace config/, secrets/ and files/ of myapp/prod" in refused.output
    assert list(server.root.iterdir()) == [] and server.calls == []

    accepted = invoke(manager, "push", "--env", "prod", input="y\n")

    assert accepted.exit_code == 0, accepted.output
    assert (server_env(server) / "config" / "nginx.conf").exists()


def test_cli_push_yes_json(tmp_path: Path, local_tree: Path, manager: pluggy.PluginManager) -> None:
    server = make_server(tmp_path, "web-1", "10.0.0.1")
    with_servers(manager, [server])

    result = invoke(manager, "push", "--env", "prod", "--yes", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["project"] == "myapp" and data["env"] == "prod" and data["action"] == "push" and data["ok"] is True
    [row] = data["servers"]
    assert row["server"] == "web-1" and row["address"] == "10.0.0.1" and row["files"] == 5 and row["error"] is None
    assert SECRET not in result.output


def test_cli_pull_json_reports_the_failed_server_and_exits_non_zero(tmp_path: Path, manager: pluggy.PluginManager) -> None:
    good = make_server(tmp_path, "web-1", "10.0.0.1")
    fill_server(good)
    bad = make_server(tmp_path, "web-2", "10.0.0.2", BrokenServer)
    with_servers(manager, [good, bad])

    result = invoke(manager, "pull", "--env", "prod", "--json")

    assert result.exit_code == 1 and isinstance(result.exception, SyncFailed)
    assert "web-2" in str(result.exception)
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert [(r["server"], r["error"] is None) for r in data["servers"]] == [("web-1", True), ("web-2", False)]


def test_cli_pull_table(tmp_path: Path, manager: pluggy.PluginManager) -> None:
    server = make_server(tmp_path, "web-1", "10.0.0.1")
    fill_server(server)
    with_servers(manager, [server])

    result = invoke(manager, "pull", "--env", "prod")

    assert result.exit_code == 0, result.output
    assert "pull myapp/prod" in result.stdout and "web-1" in result.stdout
