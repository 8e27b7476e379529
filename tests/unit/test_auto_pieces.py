"""``"auto:SERVICE.PIECE"`` env_vars (the seed's ResourceResolver pieces) and ``secrets_in_env``
(a sh entrypoint that exports NAME from NAME_FILE for the app's process only)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from projectdeployer import ConfigError
from projectdeployer.core.containers import SECRETS_MOUNT
from projectdeployer.core.model import Project
from projectdeployer.deploy.containers import ENV_WRAPPER_NAME, build_container, env_wrapper_script
from projectdeployer.deploy.ports import PortAssignment
from projectdeployer.plugins import get_registry
from projectdeployer.project.file import build_project, parse_toml
from projectdeployer.secrets.resolver import ResourceResolver as RR
from projectdeployer.secrets.resolver import ensure_password

pytestmark = pytest.mark.unit

HEAD = '[project]\nname = "shop"\n[services.postgres]\ntype = "postgres"\n[services.cache]\ntype = "redis"\n'
APP = """
[services.api]
type = "python"
depends_on = ["postgres", "cache"]
port = 8000
command = "python app.py"
"""
PIECES = (
    'env_vars = {POSTGRES_SERVER = "auto:postgres.host", POSTGRES_PORT = "auto:postgres.port", '
    'POSTGRES_USER = "auto:postgres.user", POSTGRES_DB = "auto:postgres.database", '
    'POSTGRES_PASSWORD = "auto:postgres.password", REDIS_HOST = "auto:redis.host", '
    'REDIS_PORT = "auto:cache.port", REDIS_PASSWORD = "auto:cache.password", DEBUG = "0"}\n'
)


def _load(text: str) -> Project:
    return build_project(parse_toml(text, "shop.toml"), source="shop.toml", registry=get_registry())


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(text)
    return [line for line in str(info.value).splitlines() if line.strip()]


@pytest.fixture
def state(pd_home: Path) -> dict[str, str]:
    """The files a deploy records: ports and the generated passwords."""
    path = pd_home / "shop" / "prod" / "config" / "ports.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"postgres": {"host": 8357, "internal": 5234}, "cache": {"host": 8891, "internal": 5891}, "api": {"host": 8100, "internal": 5100}}))
    return {"postgres": ensure_password("shop", "prod", "postgres"), "cache": ensure_password("shop", "prod", "cache")}


def _container(project: Project, image_command: Any = None, slot: str = "a") -> Any:
    spec = project.services["api"]
    return build_container(
        project=project,
        env="prod",
        service=spec,
        stype=get_registry().service_types[spec.type],
        parts=None,
        image="shop-api:latest",
        image_id="sha256:abc",
        ports=PortAssignment(host=8100, internal=5100),
        slot=slot,
        data_root="/srv/pd",
        resolve_secret=lambda ref: "s3cr3t-api-key",
        service_types=get_registry().service_types,
        image_command=image_command,
    )


def test_pieces_resolve_to_the_seed_values_and_the_password_to_a_file(state: dict[str, str]) -> None:
    container = _container(_load(HEAD + APP + PIECES))
    env = container.spec.env
    assert env["POSTGRES_SERVER"] == "nginx" and env["REDIS_HOST"] == "nginx"
    assert env["POSTGRES_PORT"] == "5234" and env["REDIS_PORT"] == "5891"
    assert env["POSTGRES_USER"] == RR.get_db_user("shop", "prod", "postgres") == "shop_user"
    assert env["POSTGRES_DB"] == RR.get_db_name("shop", "prod", "postgres")
    assert env["DEBUG"] == "0"
    # Passwords: KEY_FILE pointing at a private file, never KEY.
    assert "POSTGRES_PASSWORD" not in env and "REDIS_PASSWORD" not in env
    assert env["POSTGRES_PASSWORD_FILE"] == f"{SECRETS_MOUNT}/env_POSTGRES_PASSWORD"
    assert env["REDIS_PASSWORD_FILE"] == f"{SECRETS_MOUNT}/env_REDIS_PASSWORD"
    assert container.secret_files["env_POSTGRES_PASSWORD"] == state["postgres"]
    assert container.secret_files["env_REDIS_PASSWORD"] == state["cache"]
    public = json.dumps([dict(env), list(container.spec.command or ()), dict(container.spec.labels)])
    assert state["postgres"] not in public and state["cache"] not in public
    # Without the opt-in the image's own entrypoint runs.
    assert container.spec.entrypoint is None and container.spec.command == ("python", "app.py")


def test_a_type_name_resolves_like_database_url_and_a_service_name_directly(state: dict[str, str]) -> None:
    text = HEAD + '[services.cache2]\ntype = "redis"\n' + APP + 'env_vars = {H = "auto:redis.port", P = "auto:cache2.port"}\n'
    # "redis" is ambiguous in the project but cache is the dependency of that type.
    project = _load(text)
    path = Path(os.environ["PROJECTDEPLOYER_HOME"]) / "shop" / "prod" / "config" / "ports.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "cache2": {"host": 8892, "internal": 5892}}))
    env = _container(project).spec.env
    assert env["H"] == "5891" and env["P"] == "5892"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("auto:postgres.pasword", "'auto:postgres.pasword': unknown piece 'pasword' of a postgres service (pieces: host, port, user, database, password)"),
        ("auto:cache.database", "'auto:cache.database': unknown piece 'database' of a redis service (pieces: host, port, password)"),
        ("auto:mysql.host", "'auto:mysql.host': unknown service 'mysql' (services with pieces: postgres, cache; or a type: opensearch, postgres, redis)"),
        ("auto:web.port", "'auto:web.port': 'web' is a python service; pieces exist for opensearch, postgres, redis services"),
        ("auto:opensearch.host", "'auto:opensearch.host': no opensearch service in the project"),
        ("auto:postgres", "'auto:postgres' is not a piece: expected auto:SERVICE.PIECE (e.g. auto:postgres.host)"),
        ("auto:postgres.host.x", "is not a piece: expected auto:SERVICE.PIECE"),
        ("auto:", "is not a piece"),
        ("auto:postgres.host\\n", "'auto:postgres.host\\n' is not a piece"),
        ("auto:post gres.host", "'auto:post gres.host' is not a piece"),
    ],
)
def test_unknown_pieces_and_services_are_one_line_naming_the_key(value: str, message: str) -> None:
    text = HEAD + '[services.web]\ntype = "python"\n' + APP + f'env_vars = {{X = "{value}"}}\n'
    lines = _errors(text)
    assert len(lines) == 1, lines
    assert lines[0].startswith("shop.toml: services.api.env_vars.X: ")
    assert message in lines[0]


def test_an_ambiguous_type_asks_for_a_name(pd_home: Path) -> None:
    text = HEAD + '[services.cache2]\ntype = "redis"\n[services.api]\ntype = "python"\nenv_vars = {R = "auto:redis.host"}\n'
    (line,) = _errors(text)
    assert line == "shop.toml: services.api.env_vars.R: 'auto:redis.host' is ambiguous: several redis services (cache, cache2); name one (auto:cache.host) or list it in depends_on"


def test_a_password_piece_and_its_file_variable_cannot_both_be_set() -> None:
    (line,) = _errors(HEAD + APP + 'env_vars = {PW = "auto:postgres.password", PW_FILE = "/x"}\n')
    assert line == "shop.toml: services.api.env_vars.PW: the password becomes PW_FILE, which env_vars also sets"


def test_secrets_in_env_is_refused_on_a_database() -> None:
    (line,) = _errors(HEAD.replace('type = "postgres"\n', 'type = "postgres"\nsecrets_in_env = true\n', 1))
    assert line.startswith("shop.toml: services.postgres.secrets_in_env: a postgres service's image reads its own password files")


def test_secrets_in_env_wraps_the_image_command_and_keeps_values_out_of_the_config(state: dict[str, str]) -> None:
    text = HEAD + APP.replace('command = "python app.py"\n', "secrets_in_env = true\n") + PIECES.replace('DEBUG = "0"', 'DEBUG = "0", API_KEY = "secret:api/key", DATABASE_URL = "auto"')
    project = _load(text)
    container = _container(project, image_command=(("docker-entrypoint.sh",), ("python", "-m", "app")))
    spec = container.spec
    assert spec.entrypoint is not None and spec.entrypoint[:2] == ("/bin/sh", "-c") and spec.entrypoint[3] == ENV_WRAPPER_NAME
    # The image's ENTRYPOINT + CMD, which the wrapper execs (signals reach the app).
    assert spec.command == ("docker-entrypoint.sh", "python", "-m", "app")
    script = spec.entrypoint[2]
    assert script == env_wrapper_script(["POSTGRES_PASSWORD", "REDIS_PASSWORD", "API_KEY", "DATABASE_URL"])
    assert script.splitlines()[0] == "for pd_name in POSTGRES_PASSWORD REDIS_PASSWORD API_KEY DATABASE_URL; do"
    assert script.splitlines()[-1] == 'exec "$@"'
    public = json.dumps([dict(spec.env), list(spec.command), list(spec.entrypoint), dict(spec.labels)])
    for secret in (state["postgres"], state["cache"], "s3cr3t-api-key"):
        assert secret not in public
    assert "POSTGRES_PASSWORD" not in spec.env and spec.env["POSTGRES_PASSWORD_FILE"].startswith(SECRETS_MOUNT)
    # The service's own command replaces the image's CMD, after the image's ENTRYPOINT.
    with_command = _load(text.replace("secrets_in_env = true\n", 'secrets_in_env = true\ncommand = "uvicorn app:app"\n'))
    assert _container(with_command, image_command=(("tini", "--"), ("python",))).spec.command == ("tini", "--", "uvicorn", "app:app")


def test_the_config_hash_does_not_depend_on_reading_the_image(state: dict[str, str]) -> None:
    """A plan may not have the image on the server yet; the deploy then reads its command."""
    text = HEAD + APP + "secrets_in_env = true\n" + PIECES
    project = _load(text)
    planned = _container(project)
    applied = _container(project, image_command=((), ("python", "app.py")))
    assert planned.config_hash == applied.config_hash
    assert _container(project, slot="b").config_hash == planned.config_hash
    # ...but it does depend on the opt-in (turning it on restarts the app).
    plain = _container(_load(HEAD + APP + PIECES))
    assert plain.config_hash != planned.config_hash


def test_without_file_variables_nothing_is_wrapped(state: dict[str, str]) -> None:
    container = _container(_load(HEAD + APP + 'secrets_in_env = true\nenv_vars = {H = "auto:postgres.host"}\n'), image_command=((), ("python",)))
    assert container.spec.entrypoint is None and container.spec.command == ("python", "app.py")


def test_the_wrapper_exports_from_files_and_execs_the_command(tmp_path: Path) -> None:
    """The generated script under a real POSIX sh (dash where installed)."""
    shell = "/bin/dash" if Path("/bin/dash").exists() else "/bin/sh"
    (tmp_path / "pw").write_text("pa ss'$word\"\n")
    (tmp_path / "url").write_text("postgresql://u:p@nginx:5234/db")
    script = env_wrapper_script(["PW", "DATABASE_URL"])
    env = {"PATH": os.environ["PATH"], "PW_FILE": str(tmp_path / "pw"), "DATABASE_URL_FILE": str(tmp_path / "url"), "DATABASE_URL": "postgresql://u@nginx:5234/db"}
    proc = subprocess.Popen([shell, "-c", script, ENV_WRAPPER_NAME, "sh", "-c", 'printf "%s|%s|%s" "$PW" "$DATABASE_URL" "$$"'], env=env, stdout=subprocess.PIPE, text=True)
    stdout, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    pw, url, pid = stdout.split("|")
    assert pw == "pa ss'$word\"" and url == "postgresql://u:p@nginx:5234/db"
    assert int(pid) == proc.pid  # exec: the app is the wrapper's process, signals reach it
    # A missing file stops the container with a reason, before the app runs.
    env["PW_FILE"] = str(tmp_path / "missing")
    failed = subprocess.run([shell, "-c", script, ENV_WRAPPER_NAME, "echo", "ran"], env=env, capture_output=True, text=True)
    assert failed.returncode == 78 and "ran" not in failed.stdout
    assert f"{ENV_WRAPPER_NAME}: cannot read PW_FILE ({tmp_path / 'missing'})" in failed.stderr
    with pytest.raises(ValueError):
        env_wrapper_script(["A;rm -rf /"])
