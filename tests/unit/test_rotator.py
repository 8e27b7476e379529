"""SecretsRotator without an engine: backups, listing, cleanup, file modes, the order of a
rotation (database first, then the file) and its errors, against a fake container runtime."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import attrs
import pytest

from projectdeployer import ProjectDeployer, ProjectDeployerError, SecretsRotator
from projectdeployer.core.provider import CommandResult
from projectdeployer.core.runtime import ContainerInfo
from projectdeployer.environment.environment import Environment
from projectdeployer.secrets.resolver import ensure_password, password_path
from projectdeployer.secrets.rotation import RotationError

pytestmark = pytest.mark.unit

ENV = "prod"


def _info(name: str, state: str = "running") -> ContainerInfo:
    return ContainerInfo(id=name, name=name, image_id="sha256:x", labels={}, state=state, health=None, exit_code=None, started_at="2026-01-01T00:00:00Z")


class FakeRuntime:
    """Records exec calls; answers with ``answer(argv, stdin)``."""

    def __init__(self, answer: Callable[[Sequence[str], bytes], CommandResult]) -> None:
        self.answer = answer
        self.calls: list[tuple[str, list[str], bytes, str | None]] = []

    def exec(self, name: str, argv: Sequence[str], *, stdin: bytes | None = None, user: str | None = None, timeout: float = 60.0) -> CommandResult:
        self.calls.append((name, list(argv), stdin or b"", user))
        return self.answer(argv, stdin or b"")


def ok(stdout: str = "") -> Callable[[Sequence[str], bytes], CommandResult]:
    return lambda argv, stdin: CommandResult(exit_code=0, stdout=stdout, stderr="")


#: What curl prints for the OpenSearch account API's "changed" answer: the body, then the status.
ACCOUNT_OK = '{"status": "OK", "message": "\'admin\' updated."}\n200'


def databases(argv: Sequence[str], stdin: bytes) -> CommandResult:
    """psql says nothing, redis-cli OK twice, curl (OpenSearch, in its container) the account API's OK."""
    stdout = {"redis-cli": "OK\nOK\n", "curl": ACCOUNT_OK}.get(argv[0], "")
    return CommandResult(exit_code=0, stdout=stdout, stderr="")


def opensearch_deployed() -> None:
    """The node's CA where the deploy keeps it (a stand-in: the rotation only checks it is there)."""
    from projectdeployer.service_types.opensearch import ca_certificate_path

    path = ca_certificate_path("shop", ENV, "opensearch")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("stand-in CA\n")


def placed(runtime: Any, name: str, **info: Any) -> SimpleNamespace:
    """What ``Environment.find_container`` answers: container ``name`` running on a server, and that server's runtime."""
    return SimpleNamespace(server=SimpleNamespace(name="local"), runtime=runtime, info=attrs.evolve(_info(name), **info))


@pytest.fixture
def project(pd_home: Path) -> ProjectDeployer:
    p = ProjectDeployer.create("shop")
    p.add_postgres().add_redis().add_postgres("analytics").add_opensearch()
    for service in ("postgres", "redis", "analytics", "opensearch"):
        ensure_password("shop", ENV, service)
    return p


def rotator_with(project: ProjectDeployer, runtime: Any, running: dict[str, str] | None = None) -> tuple[SecretsRotator, MagicMock]:
    if running is None:
        running = {s: f"shop_{ENV}_{s}" for s in ("postgres", "redis", "analytics")}
    names = set(running.values())
    manager = MagicMock()
    environment = fake_environment(project, find_container=lambda name: placed(runtime, name) if name in names else None, manager=manager)
    return SecretsRotator(handing_out(environment), ENV, log=lambda line: None, lock_wait=0), manager


def fake_environment(project: ProjectDeployer, **fields: Any) -> SimpleNamespace:
    """A fake environment of ``project`` (its model and registry; ``fields``: ``find_container``,
    ``manager``, ``provider``) with the real ``Environment.lock`` (the local lock, then the
    provider's creation lock and the lock server's; this machine's provider has neither)."""
    environment = SimpleNamespace(project=project.project, env=ENV, registry=project.registry, **fields)
    if not hasattr(environment, "provider"):
        local = SimpleNamespace(max_servers=1, list_servers=lambda project, env: [], creation_lock=lambda project, env, wait=0.0: contextlib.nullcontext())
        environment.provider = lambda: local
    environment.lock = lambda wait=0.0: Environment.lock(environment, wait=wait)  # type: ignore[arg-type]
    return environment


def handing_out(environment: SimpleNamespace) -> SimpleNamespace:
    """A project that hands out ``environment`` (what a rotator takes besides an ``Environment``)."""
    return SimpleNamespace(name=environment.project.name, environment=lambda env, log=None: environment)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_postgres_rotation_alters_the_role_through_stdin_then_writes_the_file(project: ProjectDeployer, pd_home: Path) -> None:
    current = password_path("shop", ENV, "postgres")
    old = current.read_text()
    runtime = FakeRuntime(ok())
    rotator, manager = rotator_with(project, runtime)
    backup = rotator.rotate_postgres_password()
    new = current.read_text()
    assert new != old and len(new) == 32 and new.isalnum()
    assert _mode(current) == 0o600
    # The backup: the old password, 0600, named {service}_password.{YYYYmmdd_HHMMSS}.
    assert backup.parent == current.parent / "backups"
    assert re.fullmatch(r"postgres_password\.\d{8}_\d{6}", backup.name)
    assert backup.read_text() == old and _mode(backup) == 0o600
    ((container, argv, stdin, user),) = runtime.calls
    assert container == f"shop_{ENV}_postgres" and user == "postgres"
    assert argv[0] == "psql" and "-h" not in argv  # the local socket
    assert not any(new in a or old in a for a in argv)  # never in argv
    assert f"ALTER ROLE \"shop_user\" PASSWORD '{new}';" in stdin.decode()
    assert "log_min_error_statement" in stdin.decode()
    manager.hook.secret_rotated.assert_called_once_with(project="shop", env=ENV, service="postgres")
    assert not list(current.parent.glob(".*"))  # no pending file left


def test_redis_rotation_keeps_both_passwords_valid_until_the_file_changed(project: ProjectDeployer) -> None:
    current = password_path("shop", ENV, "redis")
    old = current.read_text()
    seen_file: list[str] = []

    def answer(argv: Sequence[str], stdin: bytes) -> CommandResult:
        seen_file.append(current.read_text())
        return CommandResult(exit_code=0, stdout="OK\nOK\n", stderr="")

    runtime = FakeRuntime(answer)
    rotator, manager = rotator_with(project, runtime)
    rotator.rotate_redis_password()
    new = current.read_text()
    (_, argv1, stdin1, _), (_, argv2, stdin2, _) = runtime.calls
    assert argv1[0] == argv2[0] == "redis-cli" and not any(old in a or new in a for a in argv1 + argv2)
    # First the new password is added while the file still holds the old one ...
    assert stdin1.decode() == f"AUTH {old}\nACL SETUSER default >{new}\n" and seen_file[0] == old
    # ... then, with the file changed, only the new one is kept.
    assert stdin2.decode() == f"AUTH {new}\nCONFIG SET requirepass {new}\n" and seen_file[1] == new
    manager.hook.secret_rotated.assert_called_once_with(project="shop", env=ENV, service="redis")


def _assert_unchanged(current: Path, old: str, manager: MagicMock) -> None:
    assert current.read_text() == old
    assert not (current.parent / "backups").exists() or not list((current.parent / "backups").iterdir())
    assert not list(current.parent.glob(".*"))
    manager.hook.secret_rotated.assert_not_called()


def test_a_refused_change_leaves_everything_as_it_was(project: ProjectDeployer) -> None:
    current = password_path("shop", ENV, "postgres")
    old = current.read_text()

    def refuse(argv: Sequence[str], stdin: bytes) -> CommandResult:
        new = re.search(r"PASSWORD '(\w+)'", stdin.decode()).group(1)  # type: ignore[union-attr]
        return CommandResult(exit_code=3, stdout="", stderr=f"ERROR:  role \"shop_user\" does not exist; PASSWORD '{new}'")

    rotator, manager = rotator_with(project, FakeRuntime(refuse))
    with pytest.raises(RotationError, match="PostgreSQL refused the new password \\(nothing changed\\): ERROR:  role") as caught:
        rotator.rotate_postgres_password()
    assert "'***'" in str(caught.value)  # the new password is never echoed in the error
    _assert_unchanged(current, old, manager)


def test_redis_refusing_the_old_password_changes_nothing(project: ProjectDeployer) -> None:
    current = password_path("shop", ENV, "redis")
    old = current.read_text()
    answer = ok("WRONGPASS invalid username-password pair or user is disabled.\n\nNOAUTH Authentication required.\n")
    rotator, manager = rotator_with(project, FakeRuntime(answer))
    with pytest.raises(RotationError, match=r"Redis refused to add the new password \(nothing changed.*WRONGPASS"):
        rotator.rotate_redis_password()
    _assert_unchanged(current, old, manager)


def test_a_database_that_is_not_running_must_be_deployed_first(project: ProjectDeployer) -> None:
    current = password_path("shop", ENV, "postgres")
    old = current.read_text()
    runtime = FakeRuntime(ok())
    rotator, manager = rotator_with(project, runtime, running={})
    with pytest.raises(RotationError, match="postgres is not running in shop/prod: deploy it first"):
        rotator.rotate_postgres_password()
    assert runtime.calls == []
    _assert_unchanged(current, old, manager)


def test_a_service_without_password_file_must_be_deployed_first(pd_home: Path) -> None:
    project = ProjectDeployer.create("fresh")
    project.add_redis()
    rotator, _ = rotator_with(project, FakeRuntime(ok()), running={"redis": "fresh_prod_redis"})
    with pytest.raises(RotationError, match=r"redis has no password file at .*: deploy it first"):
        rotator.rotate_redis_password()


def test_opensearch_is_changed_in_the_running_node(project: ProjectDeployer) -> None:
    # The account API round trip itself is tested against the fake node in test_opensearch.py.
    rotator, _ = rotator_with(project, FakeRuntime(databases))
    with pytest.raises(RotationError, match="opensearch is not running in shop/prod: deploy it first"):
        rotator.rotate_opensearch_password()
    opensearch_deployed()
    runtime = FakeRuntime(databases)
    rotator, manager = rotator_with(project, runtime, running={"opensearch": f"shop_{ENV}_opensearch"})
    before = password_path("shop", ENV, "opensearch").read_text()
    rotator.rotate_opensearch_password()
    after = password_path("shop", ENV, "opensearch").read_text()
    # Changed in the running node, from inside its container, both passwords only on stdin.
    [(name, argv, stdin, _)] = runtime.calls
    assert name == f"shop_{ENV}_opensearch" and argv == ["curl", "--config", "-"]
    assert f'\\"current_password\\": \\"{before}\\", \\"password\\": \\"{after}\\"' in stdin.decode()
    assert before != after
    manager.hook.secret_rotated.assert_called_once_with(project="shop", env=ENV, service="opensearch")


def test_wrong_or_unknown_services_are_clear_errors(project: ProjectDeployer) -> None:
    rotator, _ = rotator_with(project, FakeRuntime(ok()))
    with pytest.raises(RotationError, match="postgres is a postgres service, not redis"):
        rotator.rotate_redis_password("postgres")
    with pytest.raises(RotationError, match="no service named 'cache'"):
        rotator.rotate_redis_password("cache")


def test_a_runtime_without_exec_cannot_rotate(project: ProjectDeployer) -> None:
    from projectdeployer.core.runtime import ContainerRuntime

    class Old:
        exec = ContainerRuntime.exec

    current = password_path("shop", ENV, "postgres")
    old = current.read_text()
    rotator, manager = rotator_with(project, Old())
    with pytest.raises(RotationError, match="cannot run commands inside containers"):
        rotator.rotate_postgres_password()
    _assert_unchanged(current, old, manager)


def test_rotate_all_rotates_every_postgres_redis_and_opensearch_service(project: ProjectDeployer) -> None:
    services = ("postgres", "redis", "analytics", "opensearch")
    before = {s: password_path("shop", ENV, s).read_text() for s in services}
    opensearch_deployed()
    rotator, manager = rotator_with(project, FakeRuntime(databases), running={s: f"shop_{ENV}_{s}" for s in services})
    done = rotator.rotate_all_secrets()
    assert set(done) == set(services)
    for service in done:
        assert password_path("shop", ENV, service).read_text() != before[service]
    assert manager.hook.secret_rotated.call_count == 4


def test_rotate_all_reports_failures_and_keeps_the_others(project: ProjectDeployer) -> None:
    def answer(argv: Sequence[str], stdin: bytes) -> CommandResult:
        return CommandResult(exit_code=0, stdout="OK\nOK\n" if argv[0] == "redis-cli" else "", stderr="")

    rotator, _ = rotator_with(project, FakeRuntime(answer), running={"postgres": "shop_prod_postgres", "redis": "shop_prod_redis"})
    before = password_path("shop", ENV, "analytics").read_text()
    with pytest.raises(RotationError, match="analytics is not running") as caught:
        rotator.rotate_all_secrets()
    assert "opensearch is not running" in str(caught.value) and str(caught.value).endswith("(rotated: postgres, redis)")
    assert password_path("shop", ENV, "analytics").read_text() == before


def test_two_rotations_in_one_second_keep_both_backups(project: ProjectDeployer) -> None:
    rotator, _ = rotator_with(project, FakeRuntime(ok()))
    first = rotator.rotate_postgres_password()
    middle = password_path("shop", ENV, "postgres").read_text()
    second = rotator.rotate_postgres_password()
    assert first != second and second.read_text() == middle
    assert rotator.list_backups("postgres") == sorted([first, second], key=lambda p: (p.stat().st_mtime, p.name))


def test_list_secrets_lists_each_services_files(project: ProjectDeployer) -> None:
    rotator, _ = rotator_with(project, FakeRuntime(ok()))
    rotator.rotate_postgres_password()
    assert rotator.list_secrets() == {
        "analytics": ["analytics_password"],
        "opensearch": ["opensearch_password"],
        "postgres": ["postgres_password"],
        "redis": ["redis_password"],
    }


def test_list_secrets_of_an_environment_never_deployed_is_empty(pd_home: Path) -> None:
    project = ProjectDeployer.create("empty")
    assert SecretsRotator(project, "dev", log=lambda line: None).list_secrets() == {}
    assert SecretsRotator(project, "dev", log=lambda line: None).cleanup_old_backups() == []


def test_cleanup_old_backups_removes_only_old_backups(project: ProjectDeployer) -> None:
    rotator, _ = rotator_with(project, FakeRuntime(ok()))
    now = time.time()
    backups = password_path("shop", ENV, "postgres").parent / "backups"
    backups.mkdir()
    ages = {"postgres_password.20250101_000000": 40, "postgres_password.20260101_000000": 29, "postgres_password.20260201_000000": 1}
    for name, days in ages.items():
        (backups / name).write_text("x")
        os.utime(backups / name, (now - days * 86400, now - days * 86400))
    # A current password file that is very old is never a backup.
    current = password_path("shop", ENV, "redis")
    os.utime(current, (now - 400 * 86400, now - 400 * 86400))
    removed = rotator.cleanup_old_backups(days_to_keep=30)
    assert removed == [backups / "postgres_password.20250101_000000"]
    assert sorted(p.name for p in backups.iterdir()) == ["postgres_password.20260101_000000", "postgres_password.20260201_000000"]
    assert current.exists()
    assert rotator.cleanup_old_backups(days_to_keep=7) == [backups / "postgres_password.20260101_000000"]
    with pytest.raises(ProjectDeployerError, match="days_to_keep must be 0 or more"):
        rotator.cleanup_old_backups(days_to_keep=-1)


def test_a_rotator_loads_the_project_by_name(project: ProjectDeployer) -> None:
    rotator = SecretsRotator("shop", "prod", log=lambda line: None)
    assert rotator.project == "shop" and rotator.env == "prod"
    assert rotator.list_secrets()["postgres"] == ["postgres_password"]


def test_on_servers_the_database_is_found_on_its_server_and_opensearch_too(project: ProjectDeployer) -> None:
    runtime = FakeRuntime(databases)
    asked: list[str] = []

    def holding(container: str) -> SimpleNamespace | None:
        asked.append(container)
        service = container.removeprefix(f"shop_{ENV}_")
        return placed(runtime, container) if service in ("postgres", "opensearch") else None

    listed: list[str] = []
    provider = SimpleNamespace(list_servers=lambda project, env: listed.append(env) or [], creation_lock=lambda project, env, wait=0.0: contextlib.nullcontext(listed.append("creation lock")))
    rotator = SecretsRotator(handing_out(fake_environment(project, find_container=holding, provider=lambda: provider, manager=MagicMock())), ENV, log=lambda line: None, lock_wait=0)
    rotator.rotate_postgres_password()
    assert asked == [f"shop_{ENV}_postgres"] and listed == ["creation lock", ENV]  # the servers' lock was taken
    assert runtime.calls[0][0] == f"shop_{ENV}_postgres"
    current = password_path("shop", ENV, "redis")
    old = current.read_text()
    with pytest.raises(RotationError, match="redis is not running on any server of shop/prod: deploy it first"):
        rotator.rotate_redis_password()
    assert current.read_text() == old
    # OpenSearch on a server: its account API is asked by curl inside the node's container on
    # that server (never over this machine's loopback), the passwords only on curl's stdin.
    opensearch_deployed()
    current = password_path("shop", ENV, "opensearch")
    old = current.read_text()
    rotator.rotate_opensearch_password()
    assert asked[-1] == f"shop_{ENV}_opensearch"
    name, argv, stdin, _ = runtime.calls[-1]
    assert name == f"shop_{ENV}_opensearch" and argv == ["curl", "--config", "-"]
    assert 'url = "https://localhost:9200/_plugins/_security/api/account"' in stdin.decode()
    assert current.read_text() != old and old in stdin.decode() and current.read_text() in stdin.decode()
    assert not any(old in part or current.read_text() in part for part in argv)
