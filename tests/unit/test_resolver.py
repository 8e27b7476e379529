"""ResourceResolver: the seed's connection details, from the files a deploy records."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from projectdeployer.core.errors import SecretError
from projectdeployer.secrets.resolver import ResourceResolver as RR
from projectdeployer.secrets.resolver import ensure_password, generate_password

pytestmark = pytest.mark.unit


def _ports(home: Path, project: str, env: str, table: dict) -> None:
    path = home / project / env / "config" / "ports.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(table))


def test_names_and_host_follow_the_seed(pd_home: Path) -> None:
    assert RR.get_service_host("myapp", "prod", "postgres") == "nginx"
    digest = hashlib.sha256(b"myapp_prod_postgres").hexdigest()[:8]
    assert RR.get_db_name("myapp", "prod", "postgres") == f"myapp_{digest}"
    assert RR.get_db_name("myapp", "dev", "postgres") != RR.get_db_name("myapp", "prod", "postgres")
    assert RR.get_db_user("myapp", "prod", "postgres") == "myapp_user"
    assert RR.get_db_user("my-app", "prod", "postgres") == "my_app_user"  # a valid SQL identifier


def test_passwords_are_generated_once_private_and_strong(pd_home: Path) -> None:
    first = ensure_password("myapp", "prod", "postgres")
    assert len(first) == 32 and first.isalnum()
    assert ensure_password("myapp", "prod", "postgres") == first
    path = pd_home / "myapp" / "prod" / "secrets" / "postgres" / "postgres_password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert RR.get_service_password("myapp", "prod", "postgres") == first
    assert len({generate_password() for _ in range(50)}) == 50


def test_connection_strings_use_the_internal_port(pd_home: Path) -> None:
    _ports(pd_home, "myapp", "prod", {"postgres": {"host": 8357, "internal": 5234}, "redis": {"host": 8891, "internal": 6891 - 1000}})
    pg = ensure_password("myapp", "prod", "postgres")
    rd = ensure_password("myapp", "prod", "redis")
    assert RR.get_service_port("myapp", "prod", "postgres") == 5234
    assert RR.get_db_connection_string("myapp", "prod", "postgres") == f"postgresql://myapp_user:{pg}@nginx:5234/{RR.get_db_name('myapp', 'prod', 'postgres')}"
    assert RR.get_redis_connection_string("myapp", "prod", "redis") == f"redis://:{rd}@nginx:5891/0"


def test_the_seed_urls_are_what_the_types_put_in_key_file(pd_home: Path) -> None:
    from projectdeployer.plugins import get_registry
    from projectdeployer.secrets.resolver import service_context

    _ports(pd_home, "myapp", "prod", {s: {"host": 8000 + i, "internal": 5000 + i} for i, s in enumerate(("postgres", "redis", "search"))})
    for service in ("postgres", "redis", "search"):
        ensure_password("myapp", "prod", service)
    types = get_registry().service_types
    ctx = service_context("myapp", "prod")
    seed = {
        "postgres": RR.get_db_connection_string("myapp", "prod", "postgres"),
        "redis": RR.get_redis_connection_string("myapp", "prod", "redis"),
        "opensearch": RR.get_opensearch_url("myapp", "prod", "search"),
    }
    for type_name, service in (("postgres", "postgres"), ("redis", "redis"), ("opensearch", "search")):
        env, files = types[type_name].connection_env("URL", service, ctx)
        assert files["URL"] == seed[type_name] and env["URL_FILE"] == "/run/secrets/pd/URL"
        assert ctx.password(service) not in env["URL"]
    assert RR.get_piece("myapp", "prod", "search", types["opensearch"], "user") == "admin"
    assert RR.get_piece("myapp", "prod", "postgres", types["postgres"], "database") == RR.get_db_name("myapp", "prod", "postgres")


def test_missing_state_is_a_clear_error(pd_home: Path) -> None:
    with pytest.raises(SecretError, match=r"no internal port recorded for myapp/prod/api .* \(deploy first\)"):
        RR.get_service_port("myapp", "prod", "api")
    with pytest.raises(SecretError, match="no password for myapp/prod/postgres"):
        RR.get_service_password("myapp", "prod", "postgres")
