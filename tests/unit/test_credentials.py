"""project/credentials.py: which values are plain-text credentials, what the warning says, and
that it never shows the value."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from projectdeployer import ProjectDeployer
from projectdeployer.plugins import get_registry
from projectdeployer.project.credentials import (
    Finding,
    PlaintextCredentialWarning,
    advice,
    credential_kind,
    find_plaintext_credentials,
    is_credential_key,
    url_has_password,
    warn_plaintext_credentials,
)
from projectdeployer.project.file import build_project

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("DATABASE_URL", "postgres://u:pw@h/db", "url"),
        ("REDIS_URL", "redis://:pw@cache:6379/0", "url"),
        ("UPSTREAM", "https://a.example.com, https://user:pw@b.example.com/x", "url"),
        ("DB_PASS", "hunter2", "key"),
        ("POSTGRES_PASSWORD", "hunter2", "key"),
        ("GITHUB_TOKEN", "ghp_abc", "key"),
        ("JWT_SECRET", "s3cr3t", "key"),
        ("API_KEY", "k", "key"),
        ("AWS_SECRET_ACCESS_KEY", "k", "key"),
        ("dbPassword", "hunter2", "key"),
        ("DB_PASSWORD", "postgres://u:pw@h/db", "url"),
    ],
)
def test_credentials_are_found(key: str, value: str, kind: str) -> None:
    assert credential_kind(key, value) == kind


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DATABASE_URL", "auto"),
        ("DB_PASSWORD", "secret:api/env/DB_PASSWORD"),
        ("API_TOKEN", "env:API_TOKEN"),
        ("API_KEY", "file:~/keys/api"),
        ("DB_PASSWORD", "vault:kv/db"),
        ("DATABASE_URL", "postgres://u@h/db"),
        ("UPSTREAM", "https://example.com:8443/path?q=1"),
        ("PIP_INDEX_URL", "https://pypi.example.com/simple"),
        ("REPO", "https://ghp_token_as_user@github.com/x/y.git"),  # no password part
        ("DATABASE_URL", "postgres://u:${DB_PASS}@h/db"),  # a placeholder
        ("DISABLE_TOKEN", "false"),
        ("DB_PASSWORD", ""),
        ("TOKEN_TTL", "3600"),
        ("PASSWORD_MIN_LENGTH", "12"),
        ("BYPASS", "1x"),
        ("MAX_TOKENS", "4096"),
        ("DEBUG", "true"),
        ("BROKEN", "http://[::1"),  # malformed URL: not judged, no crash
    ],
)
def test_no_false_positives(key: str, value: str) -> None:
    assert credential_kind(key, value) is None


def test_key_and_url_helpers() -> None:
    assert is_credential_key("DB_PASS") and is_credential_key("stripe_api_key")
    assert not is_credential_key("PASSENGER_COUNT") and not is_credential_key("_")
    assert url_has_password("mysql://root:x@db:3306") and not url_has_password("no url here")


def _project(text: str) -> object:
    import tomlkit

    return build_project(tomlkit.parse(text).unwrap(), source="/p/myapp.toml", registry=get_registry())


FILE = """
[project]
name = "myapp"

[services.redis]
type = "redis"

[services.api]
type = "python"
depends_on = ["redis"]
env_vars = { DATABASE_URL = "postgres://u:hunter2@h/db", DB_PASS = "hunter2", DEBUG = "false", REDIS_URL = "auto" }
build_args = { PIP_INDEX_URL = "https://user:hunter2@pypi.example.com/simple" }

[environments.prod.services.api]
env_vars = { API_TOKEN = "hunter2" }
"""


def test_findings_name_service_table_key_and_environment() -> None:
    found = find_plaintext_credentials(_project(FILE))
    assert [f.where for f in found] == [
        "services.api.env_vars.DATABASE_URL",
        "services.api.env_vars.DB_PASS",
        "services.api.build_args.PIP_INDEX_URL",
        "environments.prod.services.api.env_vars.API_TOKEN",
    ]
    assert [f.kind for f in found] == ["url", "key", "url", "key"]


def test_warnings_name_file_key_and_fix_never_the_value(pd_home: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lines = warn_plaintext_credentials(_project(FILE))
    assert [str(w.message) for w in caught] == lines and len(lines) == 4
    assert all(w.category is PlaintextCredentialWarning for w in caught)
    for line in lines:
        assert "hunter2" not in line and "\n" not in line
        assert line.startswith("/p/myapp.toml: ")
    assert lines[0] == (
        "/p/myapp.toml: services.api.env_vars.DATABASE_URL holds a URL with a password in plain text; move it to a secret: "
        f"put the value in {pd_home / 'myapp' / 'secrets' / 'api' / 'env' / 'DATABASE_URL'} (mode 0600) and write "
        'DATABASE_URL = "secret:api/env/DATABASE_URL" (the container then gets DATABASE_URL_FILE, the path of a file holding it), '
        'or "auto" if it is a database of this project'
    )
    assert "cannot be secret references" in lines[2] and "git_token" in lines[2]
    # An environment's override goes to that environment's secrets.
    assert str(pd_home / "myapp" / "prod" / "secrets" / "api" / "env" / "API_TOKEN") in lines[3]


def test_a_key_with_control_characters_is_escaped() -> None:
    line = advice(Finding(service="api", table="env_vars", key="A\x1b]0;x\x07_TOKEN", kind="key"), "myapp", None)
    assert "\x1b" not in line and "\x07" not in line and "\\x1b" in line


def test_the_api_warns_when_it_loads_a_project(pd_home: Path) -> None:
    with pytest.warns(PlaintextCredentialWarning, match="services.api.env_vars.DATABASE_URL"):  # add warns too
        ProjectDeployer.create("myapp").add_python_service("api", env_vars={"DATABASE_URL": "postgres://u:hunter2@h/db"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ProjectDeployer("myapp")
    messages = [str(w.message) for w in caught if w.category is PlaintextCredentialWarning]
    assert len(messages) == 1 and "services.api.env_vars.DATABASE_URL" in messages[0] and "hunter2" not in messages[0]
