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
from projectdeployer.secrets.resolver import ensure_password, password_path

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
    assert set(rows["postgres"]) == {"scope", "name", "service", "file", "path", "mode", "modified", "backups", "used_by", "missing"}
    assert rows["postgres"]["scope"] == ENV and rows["postgres"]["used_by"] == ["postgres"] and not rows["postgres"]["missing"]
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
        "project": "shop",
        "env": ENV,
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


# --- project-level secrets, removal with the service, plain-text credential warnings ---------


@pytest.fixture
def tokens(pd_home: Path) -> ProjectDeployer:
    """api with a git token and an env secret (both stored by the API), worker sharing api's token."""
    project = ProjectDeployer.create("shop")
    project.add_postgres()
    project.add_python_service("api", port=8000, depends_on=["postgres"], env_vars={"API_TOKEN": "tok-api-value"}, git_repo="https://example.com/a.git@main", git_token="tok-git-value")
    project.add_python_service("worker", git_repo="https://example.com/a.git@main", git_token="secret:api/git_token", env_vars={"STRIPE_KEY": "secret:stripe"})
    return project


def test_list_shows_project_secrets_and_where_each_is_used(tokens: ProjectDeployer, pd_home: Path) -> None:
    # An environment's own copy of a secret shadows the project-wide one there.
    (pd_home / "shop" / ENV / "secrets" / "api" / "env").mkdir(parents=True)
    (pd_home / "shop" / ENV / "secrets" / "api" / "env" / "API_TOKEN").write_text("tok-prod-value")
    table = cli("secrets", "list")
    assert table.exit_code == 0, table.output
    assert "no secrets yet" not in table.stdout
    for expected in ("project", "git_token", "api.git_token, worker.git_token", "env/API_TOKEN", "api.env_vars.API_TOKEN", "worker.env_vars.STRIPE_KEY", "missing"):
        assert expected in table.stdout
    rows = {(r["scope"], r["name"]): r for r in json.loads(cli("secrets", "list", "--json").stdout)["secrets"]}
    assert set(rows) == {("project", "api/git_token"), ("project", "api/env/API_TOKEN"), ("project", "stripe")}
    assert rows[("project", "api/git_token")]["used_by"] == ["api.git_token", "worker.git_token"]
    assert rows[("project", "api/git_token")]["mode"] == "0600" and rows[("project", "api/git_token")]["path"] == str(pd_home / "shop" / "secrets" / "api" / "git_token")
    assert rows[("project", "stripe")]["missing"] and rows[("project", "stripe")]["mode"] is None
    prod = {(r["scope"], r["name"]): r for r in json.loads(cli("secrets", "list", "--env", ENV, "--json").stdout)["secrets"]}
    assert prod[(ENV, "api/env/API_TOKEN")]["used_by"] == ["api.env_vars.API_TOKEN"]
    assert prod[("project", "api/env/API_TOKEN")]["used_by"] == []  # shadowed in prod
    for output in (table.stdout, json.dumps(list(rows.values())), json.dumps(list(prod.values()))):
        assert not any(v in output for v in ("tok-api-value", "tok-git-value", "tok-prod-value"))


def test_list_refuses_an_env_that_is_a_path(shop: ProjectDeployer, pd_home: Path) -> None:
    proc = run(pd_home, "secrets", "list", "--env", "../shop")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: Invalid value for '--env': '../shop': not an environment name (lower-case letters, digits and -, starting with a letter, at most 20) (see 'projectdeployer secrets list --help')"
    ]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_remove_deletes_the_secrets_only_that_service_used(tokens: ProjectDeployer, pd_home: Path) -> None:
    from projectdeployer.environment.releases import Release, ReleaseHistory

    for env in ("dev", ENV):
        ensure_password("shop", env, "postgres")
    ReleaseHistory("shop", ENV).record(Release(id="r1", service="postgres", version="latest", image="postgres:15", image_id="", config_hash="", secrets_version="", deployed_at=0.0))
    backup = pd_home / "shop" / "dev" / "secrets" / "postgres" / "backups" / "postgres_password.1"
    backup.parent.mkdir()
    backup.write_text("old")

    # Refused (api depends on postgres): the file and every secret are untouched.
    before = _tree(pd_home)
    refused = run(pd_home, "remove", "postgres")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert _tree(pd_home) == before

    api = run(pd_home, "remove", "api")
    assert api.returncode == 0, api.stderr
    assert api.stdout.splitlines() == [
        f"removed api from {tokens.path}",
        f"removed secret {pd_home / 'shop' / 'secrets' / 'api' / 'env' / 'API_TOKEN'}",
        f"kept secret {pd_home / 'shop' / 'secrets' / 'api' / 'git_token'}: still used by worker.git_token",
    ]
    assert not (pd_home / "shop" / "secrets" / "api" / "env").exists()

    worker = run(pd_home, "remove", "worker")
    assert worker.stdout.splitlines()[1:] == [f"removed secret {pd_home / 'shop' / 'secrets' / 'api' / 'git_token'}"]
    assert not (pd_home / "shop" / "secrets" / "api").exists()

    # The database: gone where it never ran, kept (and said where) where it was deployed.
    db = run(pd_home, "remove", "postgres")
    prod_password = password_path("shop", ENV, "postgres")
    assert db.stdout.splitlines()[1:] == [
        f"removed secret {password_path('shop', 'dev', 'postgres')}",
        f"removed secret {backup.parent}",
        f"kept secret {prod_password}: postgres was deployed in prod: its container (until the next deploy removes it) and its data volume use this password; delete it by hand once that data is gone",
    ]
    assert prod_password.is_file() and not (pd_home / "shop" / "dev" / "secrets" / "postgres").exists()


def test_the_api_reports_what_removal_did(tokens: ProjectDeployer, pd_home: Path) -> None:
    tokens.delete_service("worker")
    # worker's own references were to api's token (api still uses it) and a missing secret.
    assert tokens.last_secrets_cleanup.removed == ()
    assert tokens.last_secrets_cleanup.kept == ((pd_home / "shop" / "secrets" / "api" / "git_token", "still used by api.git_token"),)


PLAIN = """[project]
name = "shop"

[services.api]
type = "python"
env_vars = { DATABASE_URL = "postgres://u:pw-value@h/db", DB_PASS = "pw-value", DEBUG = "false" }
build_args = { PIP_INDEX_URL = "https://user:pw-value@pypi.example.com/simple" }
"""


def test_plain_text_credentials_warn_one_line_each_on_stderr(pd_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "shop.toml"
    path.write_text(PLAIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTDEPLOYER_")}
    env["PROJECTDEPLOYER_HOME"] = str(pd_home)
    proc = subprocess.run([str(BIN), "-f", str(path), "validate"], env=env, text=True, capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == f"{path}: ok (1 service)\n"
    lines = proc.stderr.splitlines()
    assert [line.split(" holds ")[0] for line in lines] == [
        f"warning: {path}: services.api.env_vars.DATABASE_URL",
        f"warning: {path}: services.api.env_vars.DB_PASS",
        f"warning: {path}: services.api.build_args.PIP_INDEX_URL",
    ]
    assert 'write DB_PASS = "secret:api/env/DB_PASS"' in lines[1]
    assert "pw-value" not in proc.stderr and "Traceback" not in proc.stderr
    # add writes the file: each warning still once; the new plain value is warned about too
    # (a credential-named key such as SESSION_SECRET is moved to a secret by add itself).
    added = CliRunner().invoke(make_cli(), ["-f", str(path), "add", "python", "web", "--env-var", "UPSTREAM=https://u:pw-value@up.example.com"], catch_exceptions=False)
    assert added.exit_code == 0, added.output
    warned = [line for line in added.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warned) == len(set(warned)) == 4 and "services.web.env_vars.UPSTREAM" in warned[-1]
    assert "pw-value" not in added.output
