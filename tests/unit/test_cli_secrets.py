"""``projectdeployer secrets list|rotate``: listing without contents, the confirmation prompt,
one-line errors, JSON shapes. Rotation against real databases is tests/docker/test_rotation.py;
here the rotator's database step is replaced, so only the command line is under test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from projectdeployer import ProjectDeployer, SecretsRotator
from projectdeployer.cli import make_cli
from projectdeployer.core.resolver import ensure_password, password_path

pytestmark = pytest.mark.unit

BIN = Path(sys.executable).with_name("projectdeployer")
ENV = "prod"


@pytest.fixture
def shop(pd_home: Path) -> ProjectDeployer:
    project = ProjectDeployer.create("shop")
    project.add_postgres().add_redis().add_opensearch().add_python_service("api", port=8000)
    for service in ("postgres", "redis", "opensearch"):
        ensure_password("shop", ENV, service)
    return project


def cli(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(make_cli(), ["-p", "shop", *args], input=input, catch_exceptions=False)


def run(pd_home: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command, as a user runs it (errors go through its one-line handler)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTDEPLOYER_")}
    env["PROJECTDEPLOYER_HOME"] = str(pd_home)
    return subprocess.run([str(BIN), "-p", "shop", *args], env=env, input=input, text=True, capture_output=True, timeout=60)


def _fake_rotation(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the database step: record the call, back the file up, write a new password."""
    calls: list[str] = []

    def fake(self: SecretsRotator, service_name: str) -> Path:
        calls.append(service_name)
        current = password_path(self.project, self.env, service_name)
        backup = self.backups_dir(service_name) / f"{service_name}_password.20260101_000000"
        backup.parent.mkdir(parents=True, exist_ok=True)
        backup.write_text(current.read_text())
        current.write_text("new-" + service_name)
        return backup

    for kind in ("postgres", "redis", "opensearch"):
        monkeypatch.setattr(SecretsRotator, f"rotate_{kind}_password", fake)
    return calls


def test_list_shows_files_modes_and_times_never_the_contents(shop: ProjectDeployer) -> None:
    passwords = [password_path("shop", ENV, s).read_text() for s in ("postgres", "redis", "opensearch")]
    table = cli("secrets", "list", "--env", ENV)
    assert table.exit_code == 0, table.output
    for expected in ("postgres_password", "redis_password", "opensearch_password", "0600"):
        assert expected in table.stdout
    as_json = json.loads(cli("secrets", "list", "--env", ENV, "--json").stdout)
    assert as_json["project"] == "shop" and as_json["env"] == ENV
    rows = {r["service"]: r for r in as_json["secrets"]}
    assert set(rows) == {"postgres", "redis", "opensearch"}
    assert set(rows["postgres"]) == {"service", "file", "path", "mode", "modified", "backups"}
    assert rows["postgres"]["file"] == "postgres_password" and rows["postgres"]["mode"] == "0600"
    assert rows["postgres"]["path"] == str(password_path("shop", ENV, "postgres")) and rows["postgres"]["backups"] == 0
    for output in (table.stdout, json.dumps(as_json)):
        assert not any(p in output for p in passwords)
    # Another environment has nothing yet: said in words, and an empty list in JSON.
    assert "no secrets yet" in cli("secrets", "list").stdout
    assert json.loads(cli("secrets", "list", "--json").stdout)["secrets"] == []


def test_rotate_asks_first_and_a_no_changes_nothing(shop: ProjectDeployer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_rotation(monkeypatch)
    before = password_path("shop", ENV, "postgres").read_text()
    result = cli("secrets", "rotate", "postgres", "--env", ENV, input="n\n")
    assert result.exit_code != 0
    assert "Rotate the password of postgres in shop/prod?" in result.stderr and "Aborted" in result.stderr
    assert calls == []
    assert password_path("shop", ENV, "postgres").read_text() == before
    assert SecretsRotator(shop, ENV).list_backups("postgres") == []
    # No terminal to answer (stdin closed): aborted too.
    assert cli("secrets", "rotate", "--all", "--env", ENV).exit_code != 0
    assert calls == []


def test_rotate_with_yes_reports_the_backup_and_the_deploy_to_run(shop: ProjectDeployer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_rotation(monkeypatch)
    old = password_path("shop", ENV, "redis").read_text()
    result = cli("secrets", "rotate", "redis", "--env", ENV, "--yes")
    assert result.exit_code == 0, result.output
    backup = SecretsRotator(shop, ENV).backups_dir("redis") / "redis_password.20260101_000000"
    assert calls == ["redis"]
    assert f"redis: password rotated; the old one is saved in {backup}" in result.stdout
    assert "projectdeployer deploy --env prod" in result.stdout
    assert old not in result.output and backup.read_text() == old
    # Confirmed interactively, and as JSON; the generic path reaches every type's rotation.
    answered = cli("secrets", "rotate", "opensearch", "--env", ENV, "--json", input="y\n")
    assert answered.exit_code == 0, answered.output
    assert calls == ["redis", "opensearch"]
    assert json.loads(answered.stdout) == {
        "project": "shop", "env": ENV,
        "rotated": [{"service": "opensearch", "backup": str(SecretsRotator(shop, ENV).backups_dir("opensearch") / "opensearch_password.20260101_000000")}],
        "next": "projectdeployer deploy --env prod",
    }


def test_rotate_all_json(shop: ProjectDeployer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_rotation(monkeypatch)
    monkeypatch.setattr(SecretsRotator, "rotate_all_secrets", lambda self: {s: self.rotate(s) for s in ("postgres", "redis")})
    result = cli("secrets", "rotate", "--all", "--env", ENV, "--yes", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["service"] for r in data["rotated"]] == ["postgres", "redis"] == calls
    assert all(Path(r["backup"]).is_file() for r in data["rotated"])


def test_bad_arguments_are_one_line_and_change_nothing(shop: ProjectDeployer, pd_home: Path) -> None:
    before = {s: password_path("shop", ENV, s).read_text() for s in ("postgres", "redis")}
    unknown = run(pd_home, "secrets", "rotate", "nope", "--env", ENV, "--yes")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == ["error: no service named 'nope' in shop/prod (services: postgres, redis, opensearch, api)"]
    assert "Traceback" not in unknown.stderr and unknown.stdout == ""
    # Checked before asking: no prompt for a service that cannot be rotated.
    stateless = run(pd_home, "secrets", "rotate", "api", "--env", ENV)
    assert stateless.returncode == 1
    assert stateless.stderr.strip().splitlines() == ["error: api is a python service: it has no generated password to rotate"]
    both = run(pd_home, "secrets", "rotate", "postgres", "--all", "--env", ENV, "--yes")
    neither = run(pd_home, "secrets", "rotate", "--env", ENV, "--yes")
    for proc in (both, neither):
        assert proc.returncode == 2 and "name one SERVICE to rotate, or pass --all" in proc.stderr and "Traceback" not in proc.stderr
    assert {s: password_path("shop", ENV, s).read_text() for s in ("postgres", "redis")} == before
    assert SecretsRotator(shop, ENV).list_backups("postgres") == []
