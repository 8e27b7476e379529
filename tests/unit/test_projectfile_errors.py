"""A malformed project file is one readable line per problem, naming the file and the key path,
and nothing is written; the same holds for API calls that would make the project invalid.

Every case here writes a real file, loads it as a user does (``ProjectDeployer(path)``) and
checks the lines of the resulting :class:`ConfigError`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, find, given, settings
from hypothesis import strategies as st

from projectdeployer import ConfigError, ProjectDeployer
from projectdeployer.core.model import Project
from projectdeployer.plugins import get_registry
from projectdeployer.project.file import build_project, parse_toml
from projectdeployer.project.validation import MAX_SERVICES

pytestmark = pytest.mark.unit

P = '[project]\nname = "shop"\n'  # the smallest valid head of a file

#: Fragments that betray a Python exception leaking through instead of a message for a user.
LEAKS = ("Traceback", "object has no attribute", "is not iterable", "typing.", "<class", "NoneType", "KeyError")


class Hang(Exception):
    """The code under test did not return in time (an endless loop is a bug, not a slow test)."""


@contextlib.contextmanager
def _deadline(seconds: float = 5) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under ``root``: bytes, mtime (ns) and mode."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st_ = path.stat()
            out[str(path.relative_to(root))] = (path.read_bytes(), st_.st_mtime_ns, st_.st_mode)
    return out


def _load_error(tmp_path: Path, text: str, name: str = "bad.toml") -> tuple[ConfigError, Path]:
    """Write ``text`` to a file, load it, return the ConfigError (and check nothing was written)."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    before = _snapshot(tmp_path)
    with pytest.raises(ConfigError) as info, _deadline():
        ProjectDeployer(path)
    assert _snapshot(tmp_path) == before, "loading an invalid file must not write anything"
    return info.value, path


def _assert_readable(err: ConfigError, path: Path | str) -> list[str]:
    lines = str(err).splitlines()
    assert lines, "a ConfigError without a message"
    assert lines == err.lines() == err.format_lines()
    assert len(lines) == len(err.problems)
    for line in lines:
        assert line.startswith(f"{path}: "), f"line does not name the file: {line!r}"
        assert not any(leak in line for leak in LEAKS), f"a Python error leaked to the user: {line!r}"
    return lines


def _line_for(lines: list[str], path: Path, key_path: str) -> str:
    """The one line that reports ``key_path`` in the ``<file>: <key.path>: <message>`` format."""
    prefix = f"{path}: {key_path}: "
    matching = [line for line in lines if line.startswith(prefix)]
    assert len(matching) == 1, f"expected exactly one line starting with {prefix!r}, got {lines!r}"
    return matching[0]


# (id, file text, key path, fragments the message must contain, number of lines)
CASES = [
    ("unknown-top-level-table", P + "[servers]\ncount = 1\n", "servers", ["unknown top-level table", "project, images, environments, services"], 1),
    ("unknown-key-did-you-mean", P + '[services.api]\ntype = "python"\nprot = 8000\n', "services.api.prot", ["unknown key", "did you mean 'port'"], 1),
    ("unknown-key-no-hint", P + '[services.api]\ntype = "python"\nzzzzqqq = 1\n', "services.api.zzzzqqq", ["unknown key"], 1),
    ("unknown-project-key", P + 'docker_hub_usr = "me"\n', "project.docker_hub_usr", ["unknown key", "did you mean 'docker_hub_user'"], 1),
    ("port-string-not-coerced", P + '[services.api]\ntype = "python"\nport = "8000"\n', "services.api.port", ["expected an integer", 'the string "8000"'], 1),
    ("bool-where-int", P + '[services.api]\ntype = "python"\nservers_count = true\n', "services.api.servers_count", ["expected an integer", "the boolean true"], 1),
    ("float-where-int", P + '[services.api]\ntype = "python"\nport = 8000.0\n', "services.api.port", ["expected an integer", "8000.0"], 1),
    ("int-where-string", P + '[services.api]\ntype = "python"\ncommand = 3\n', "services.api.command", ["expected a string", "the integer 3"], 1),
    ("string-where-array", P + '[services.api]\ntype = "python"\ndepends_on = "postgres"\n', "services.api.depends_on", ["expected an array", 'the string "postgres"'], 1),
    ("wrong-type-in-array", P + '[services.api]\ntype = "python"\nrequirements_files = ["a.txt", 2]\n', "services.api.requirements_files[1]", ["expected a string", "the integer 2"], 1),
    ("env-var-not-string", P + '[services.api]\ntype = "python"\nenv_vars = {DEBUG = false}\n', "services.api.env_vars.DEBUG", ["expected a string", "the boolean false"], 1),
    ("service-not-a-table", P + "[services]\napi = 3\n", "services.api", ["expected a table", "the integer 3"], 1),
    ("missing-project-table", '[services.api]\ntype = "python"\n', "project", ["required table missing", "name"], 1),
    ("missing-project-name", '[project]\ndocker_hub_user = "me"\n', "project.name", ["required key missing"], 1),
    ("invalid-project-name", '[project]\nname = "My App"\n', "project.name", ["'My App' is not a valid project name"], 1),
    ("unknown-service-type", P + '[services.api]\ntype = "pyton"\n', "services.api.type", ["unknown service type 'pyton'", "python", "postgres"], 1),
    ("missing-service-type", P + "[services.api]\nport = 8000\n", "services.api.type", ["required key missing", "python"], 1),
    (
        "depends-on-unknown",
        P + '[services.postgres]\ntype = "postgres"\n[services.api]\ntype = "python"\ndepends_on = ["postgres", "nope"]\n',
        "services.api.depends_on[1]",
        ["unknown service 'nope'"],
        1,
    ),
    (
        "depends-on-cycle",
        P + '[services.a]\ntype = "python"\ndepends_on = ["b"]\n[services.b]\ntype = "python"\ndepends_on = ["a"]\n',
        "services.a.depends_on",
        ["dependency cycle: a -> b -> a"],
        1,
    ),
    (
        "depends-on-three-cycle",
        P + '[services.a]\ntype = "python"\ndepends_on = ["b"]\n[services.b]\ntype = "python"\ndepends_on = ["c"]\n[services.c]\ntype = "python"\ndepends_on = ["a"]\n',
        "services.a.depends_on",
        ["dependency cycle: a -> b -> c -> a"],
        1,
    ),
    ("self-dependency", P + '[services.a]\ntype = "python"\ndepends_on = ["a"]\n', "services.a.depends_on[0]", ["cannot depend on itself"], 1),
    (
        "self-dependency-with-manual-order",
        P + '[services.a]\ntype = "python"\ndepends_on = ["a"]\nstartup_order = 2\n',
        "services.a.depends_on[0]",
        ["cannot depend on itself"],
        None,
    ),
    ("cron-wrong-field-count", P + '[services.job]\ntype = "python"\nschedule = "0 2 * *"\n', "services.job.schedule", ["'0 2 * *'", "expected 5 fields", "got 4"], 1),
    ("cron-61-minutes", P + '[services.job]\ntype = "python"\nschedule = "61 2 * * *"\n', "services.job.schedule", ["'61 2 * * *' is not a valid cron schedule"], 1),
    ("cron-backup-schedule", P + '[services.postgres]\ntype = "postgres"\nbackup_config = {schedule = "0 25 * * *"}\n', "services.postgres.backup_config.schedule", ["'0 25 * * *'", "cron"], 1),
    ("backup-retention-zero", P + '[services.postgres]\ntype = "postgres"\nbackup_config = {retention_days = 0}\n', "services.postgres.backup_config.retention_days", ["between 1 and 3650"], 1),
    ("unknown-server-zone", P + '[services.api]\ntype = "python"\nserver_zone = "mars1"\n', "services.api.server_zone", ["unknown zone 'mars1'", "lon1", "nyc3"], 1),
    ("unknown-env-zone", P + '[environments.prod]\nzones = ["lon1", "mars1"]\n', "environments.prod.zones[1]", ["unknown zone 'mars1'"], 1),
    ("unknown-provider", P + '[environments.prod]\nprovider = "aws"\n', "environments.prod.provider", ["unknown provider 'aws'", "digitalocean"], 1),
    ("api-token-literal", P + '[environments.prod]\nprovider = "digitalocean"\napi_token = "dop_v1_abc"\n', "environments.prod.api_token", ["must be a reference", "never the token itself"], 1),
    ("api-token-bad-name", P + '[environments.prod]\nprovider = "digitalocean"\napi_token = "secret:../token"\n', "environments.prod.api_token", ["secret:../token"], 1),
    (
        "api-token-for-ssh",
        P + '[environments.prod]\nprovider = "ssh"\napi_token = "secret:do/token"\n' + '[[environments.prod.servers]]\nname = "web-1"\naddress = "10.0.0.1"\nzone = "fsn1"\n',
        "environments.prod.api_token",
        ['provider "ssh" calls no API that takes a token'],
        1,
    ),
    ("ssh-without-servers", P + '[environments.prod]\nprovider = "ssh"\n', "environments.prod.servers", ['provider "ssh" deploys to the servers you list here'], 1),
    (
        "servers-without-ssh",
        P + '[environments.prod]\nprovider = "sandbox"\n' + '[[environments.prod.servers]]\nname = "web-1"\naddress = "10.0.0.1"\nzone = "fsn1"\n',
        "environments.prod.servers",
        ['servers are listed for provider "ssh" only', '"sandbox"'],
        1,
    ),
    (
        "server-listed-twice",
        P
        + '[environments.prod]\nprovider = "ssh"\n'
        + '[[environments.prod.servers]]\nname = "web-1"\naddress = "10.0.0.1"\nzone = "fsn1"\n'
        + '[[environments.prod.servers]]\nname = "web-1"\naddress = "10.0.0.1"\nzone = "fsn1"\n',
        "environments.prod.servers[1].name",
        ["'web-1' is listed twice (also at servers[0])"],
        2,
    ),
    (
        "server-bad-port",
        P + '[environments.prod]\nprovider = "ssh"\n' + '[[environments.prod.servers]]\nname = "web-1"\naddress = "10.0.0.1"\nzone = "fsn1"\n'.replace("zone", "port = 70000\nzone"),
        "environments.prod.servers[0].port",
        ["between 1 and 65535, got 70000"],
        1,
    ),
    (
        "server-bad-address",
        P + '[environments.prod]\nprovider = "ssh"\n' + '[[environments.prod.servers]]\nname = "web-1"\naddress = "10.0.0.1"\nzone = "fsn1"\n'.replace("10.0.0.1", "10.0.0.1; rm -rf /"),
        "environments.prod.servers[0].address",
        ["is not an IP address or host name"],
        1,
    ),
    (
        "server-missing-address",
        P + '[environments.prod]\nprovider = "ssh"\n' + '[[environments.prod.servers]]\nname = "web-1"\nzone = "fsn1"\n',
        "environments.prod.servers[0].address",
        ["required"],
        1,
    ),
    (
        "zone-of-no-server",
        P
        + '[environments.prod]\nprovider = "ssh"\n'
        + '[[environments.prod.servers]]\nname = "web-1"\naddress = "10.0.0.1"\nzone = "fsn1"\n'
        + '[services.api]\ntype = "python"\nserver_zone = "fsn2"\n',
        "services.api.server_zone",
        ["unknown zone 'fsn2'", "fsn1"],
        1,
    ),
    ("server-cpu-not-a-size", P + '[services.api]\ntype = "python"\nserver_cpu = 3\n', "services.api.server_cpu", ["must be one of 1, 2, 4"], 1),
    ("servers-count-zero", P + '[services.api]\ntype = "python"\nservers_count = 0\n', "services.api.servers_count", ["between 1 and 20"], 1),
    ("malformed-domain", P + '[services.api]\ntype = "python"\nport = 8000\ndomain = "api..example.com"\n', "services.api.domain", ["'api..example.com' is not a valid domain name"], 1),
    ("domain-with-scheme", P + '[services.api]\ntype = "python"\nport = 8000\ndomain = "https://api.example.com"\n', "services.api.domain", ["is not a valid domain name"], 1),
    ("ip-as-domain", P + '[services.api]\ntype = "python"\nport = 8000\ndomain = "10.0.0.1"\n', "services.api.domain", ["'10.0.0.1' is an IP address"], 1),
    ("domain-on-database", P + '[services.postgres]\ntype = "postgres"\ndomain = "db.example.com"\n', "services.postgres.domain", ["does not serve HTTP"], 1),
    ("domain-without-port", P + '[services.api]\ntype = "python"\ndomain = "api.example.com"\n', "services.api.domain", ["needs the port"], 1),
    (
        "same-domain-same-zone",
        P + '[services.a]\ntype = "python"\nport = 1\ndomain = "x.example.com"\n[services.b]\ntype = "python"\nport = 1\ndomain = "x.example.com"\n',
        "services.b.domain",
        ["already served by 'a'"],
        1,
    ),
    ("git-url-bad-scheme", P + '[services.api]\ntype = "python"\ngit_repo = "ftp://github.com/user/api.git"\n', "services.api.git_repo", ["unsupported scheme 'ftp'"], 1),
    ("git-url-no-scheme", P + '[services.api]\ntype = "python"\ngit_repo = "github.com/user/api.git"\n', "services.api.git_repo", ["expected https://"], 1),
    (
        "git-url-credentials",
        P + '[services.api]\ntype = "python"\ngit_repo = "https://user:hunter2@github.com/user/api.git@main"\n',
        "services.api.git_repo",
        ["credentials in the URL are not allowed", "git_token"],
        1,
    ),
    ("git-url-bad-ref", P + '[services.api]\ntype = "python"\ngit_repo = "https://github.com/user/api.git@a..b"\n', "services.api.git_repo", ["'a..b' is not a valid branch, tag or commit name"], 1),
    (
        "git-token-literal",
        P + '[services.api]\ntype = "python"\ngit_repo = "https://github.com/user/api.git@main"\ngit_token = "tk8787"\n',
        "services.api.git_token",
        ["must be a reference", "secret:", "env:"],
        1,
    ),
    (
        "auto-scaling-inverted",
        P + '[services.api]\ntype = "python"\nauto_scaling = {vertical = {cpu_scale_up = 20, cpu_scale_down = 75}}\n',
        "services.api.auto_scaling.vertical.cpu_scale_down",
        ["must be below cpu_scale_up (20)", "got 75"],
        1,
    ),
    (
        "auto-scaling-rps-inverted",
        P + '[services.api]\ntype = "python"\nauto_scaling = {horizontal = {rps_scale_up = 50, rps_scale_down = 500}}\n',
        "services.api.auto_scaling.horizontal.rps_scale_down",
        ["must be below rps_scale_up (50)"],
        1,
    ),
    (
        "auto-scaling-not-a-percentage",
        P + '[services.api]\ntype = "python"\nauto_scaling = {vertical = {memory_scale_up = 150}}\n',
        "services.api.auto_scaling.vertical.memory_scale_up",
        ["percentage", "got 150"],
        1,
    ),
    ("auto-scaling-string", P + '[services.api]\ntype = "python"\nauto_scaling = "yes"\n', "services.api.auto_scaling", ["expected true, false or a table", 'the string "yes"'], 1),
    ("auto-scaling-unknown-key", P + '[services.api]\ntype = "python"\nauto_scaling = {vertikal = {}}\n', "services.api.auto_scaling.vertikal", ["unknown key", "did you mean 'vertical'"], 1),
    (
        "horizontal-scaling-on-postgres",
        P + '[services.postgres]\ntype = "postgres"\nauto_scaling = {horizontal = {rps_scale_up = 500}}\n',
        "services.postgres.auto_scaling.horizontal",
        ["postgres service", "cannot scale horizontally"],
        1,
    ),
    ("env-auto-without-postgres", P + '[services.api]\ntype = "python"\nenv_vars = {DATABASE_URL = "auto"}\n', "services.api.env_vars.DATABASE_URL", ['"auto" needs a postgres service'], 1),
    ("env-auto-unknown-name", P + '[services.api]\ntype = "python"\nenv_vars = {WHATEVER = "auto"}\n', "services.api.env_vars.WHATEVER", ['"auto" is not known for WHATEVER'], 1),
    ("env-var-bad-name", P + '[services.api]\ntype = "python"\nenv_vars = {"MY-VAR" = "1"}\n', "services.api.env_vars.MY-VAR", ["not a valid environment variable name"], 1),
    ("volume-bad-mode", P + '[services.api]\ntype = "python"\nvolumes = {"/srv/data" = "/data:rx"}\n', "services.api.volumes./srv/data", ["mode must be 'ro' or 'rw'"], 1),
    ("unknown-images-key", P + '[images]\npyton = "python:{version}-slim"\n', "images.pyton", ["unknown image key", "python"], 1),
    ("env-override-unknown-service", P + '[services.api]\ntype = "python"\n[environments.prod.services.apii]\nport = 1\n', "environments.prod.services.apii", ["unknown service 'apii'"], 1),
    (
        "env-override-wrong-type",
        P + '[services.api]\ntype = "python"\n[environments.prod.services.api]\nport = "80"\n',
        "environments.prod.services.api.port",
        ["expected an integer", 'the string "80"'],
        1,
    ),
    (
        "env-override-changes-type",
        P + '[services.api]\ntype = "python"\n[environments.prod.services.api]\ntype = "nodejs"\n',
        "environments.prod.services.api.type",
        ["cannot change a service's type"],
        1,
    ),
    (
        "env-override-invalid-value",
        P + '[services.api]\ntype = "python"\n[environments.prod.services.api]\nschedule = "61 * * * *"\n',
        "environments.prod.services.api.schedule",
        ["'61 * * * *' is not a valid cron schedule"],
        1,
    ),
    (
        "schedule-with-domain",
        P + '[services.job]\ntype = "python"\nport = 8000\ndomain = "job.example.com"\nschedule = "0 2 * * *"\n',
        "services.job.schedule",
        ["scheduled job", "cannot also serve a domain"],
        1,
    ),
    (
        "manual-order-before-dependency",
        P + '[services.postgres]\ntype = "postgres"\nstartup_order = 2\n[services.api]\ntype = "python"\ndepends_on = ["postgres"]\nstartup_order = 1\n',
        "services.api.startup_order",
        ["1 would start before its dependency 'postgres' (order 2)"],
        1,
    ),
    ("unknown-package-manager", P + '[services.api]\ntype = "nodejs"\npackage_manager = "bun"\n', "services.api.package_manager", ["expected one of 'npm', 'yarn', 'pnpm'", 'the string "bun"'], 1),
    ("image-with-dockerfile", P + '[services.web]\ntype = "generic"\nimage = "nginx:alpine"\ndockerfile = "Dockerfile"\n', "services.web.dockerfile", ["cannot be combined with image"], 1),
]


#: Cases that fail because of a known bug in src/ (strict: a fix makes them pass and must drop the entry).
KNOWN_BUGS: dict[str, str] = {}


@pytest.mark.parametrize(
    ("text", "key_path", "fragments", "count"),
    [pytest.param(*c[1:], id=c[0], marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[c[0]])] if c[0] in KNOWN_BUGS else []) for c in CASES],
)
def test_malformed_file_is_one_line_per_problem(tmp_path: Path, text: str, key_path: str, fragments: list[str], count: int | None) -> None:
    err, path = _load_error(tmp_path, text)
    lines = _assert_readable(err, path)
    line = _line_for(lines, path, key_path)
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    if count is not None:
        assert len(lines) == count, lines


def test_cases_cover_distinct_kinds() -> None:
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 14


def test_toml_syntax_error_shows_line_and_column(tmp_path: Path) -> None:
    err, path = _load_error(tmp_path, '[project]\nname = "shop"\nversion = = "1"\n')
    (line,) = _assert_readable(err, path)
    assert re.match(rf"^{re.escape(str(path))}: line 3, column \d+: invalid TOML: .+", line), line
    assert " at line " not in line  # tomlkit's own position suffix is not repeated


def test_unclosed_table_header_is_a_syntax_error(tmp_path: Path) -> None:
    err, path = _load_error(tmp_path, '[project]\nname = "shop"\n[services.api\ntype = "python"\n')
    (line,) = _assert_readable(err, path)
    assert "line 3, column" in line and "invalid TOML" in line


def test_duplicate_top_level_key_is_a_syntax_error(tmp_path: Path) -> None:
    err, path = _load_error(tmp_path, 'name = "shop"\nname = "other"\n')
    (line,) = _assert_readable(err, path)
    assert "line 2" in line and "already exists" in line


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('[project]\nname = "shop"\nname = "other"\n', id="key-in-table"),
        pytest.param('[project]\nname = "shop"\n[project]\nversion = "1"\n', id="table-twice"),
        pytest.param('[project]\nname = "shop"\n[services.a]\ntype = "redis"\n[services.a]\nport = 1\n', id="service-twice"),
    ],
)
def test_duplicate_key_in_a_table_is_a_config_error(tmp_path: Path, text: str) -> None:
    err, path = _load_error(tmp_path, text)
    (line,) = _assert_readable(err, path)
    assert "already exists" in line and "invalid TOML" in line


def test_duplicate_key_in_a_table_says_where(tmp_path: Path) -> None:
    text = P + '[services.a]\ntype = "redis"\n\n[services.b]\ntype = "python"\nport = 1\ntype = "nodejs"\n'
    err, path = _load_error(tmp_path, text)
    (line,) = _assert_readable(err, path)
    assert "line 9" in line or "services.b" in line, line


def test_several_problems_are_all_reported_at_once(tmp_path: Path) -> None:
    text = (
        '[project]\nname = "shop"\n'
        "[extras]\nx = 1\n"
        '[services.api]\ntype = "python"\nprot = 8000\n'
        '[services.web]\ntype = "reakt"\n'
        "[services.worker]\nservers_count = 2\n"
        '[images]\npyton = "python:3.12-slim"\n'
    )
    err, path = _load_error(tmp_path, text)
    lines = _assert_readable(err, path)
    assert len(lines) == 4, lines
    _line_for(lines, path, "extras")
    _line_for(lines, path, "services.api.prot")
    _line_for(lines, path, "services.web.type")
    _line_for(lines, path, "services.worker.type")


def test_several_semantic_problems_are_all_reported_at_once(tmp_path: Path) -> None:
    text = (
        P + '[services.api]\ntype = "python"\ndepends_on = ["nope"]\nserver_zone = "mars1"\ndomain = "10.0.0.1"\nport = 8000\n'
        '[services.job]\ntype = "python"\nschedule = "61 * * * *"\ngit_repo = "https://github.com/u/j.git"\ngit_token = "tk8787"\n'
    )
    err, path = _load_error(tmp_path, text)
    lines = _assert_readable(err, path)
    assert len(lines) == 5, lines
    for key in ("services.api.depends_on[0]", "services.api.server_zone", "services.api.domain", "services.job.schedule", "services.job.git_token"):
        _line_for(lines, path, key)


def test_message_format_is_file_key_path_message(tmp_path: Path) -> None:
    err, path = _load_error(tmp_path, P + '[services.api]\ntype = "python"\nport = "8000"\n', name="myapp.toml")
    assert str(err) == f'{path}: services.api.port: expected an integer, got the string "8000"'
    assert err.source == str(path)
    assert err.problems == ['services.api.port: expected an integer, got the string "8000"']


def test_config_error_exit_code_is_2(tmp_path: Path) -> None:
    err, _ = _load_error(tmp_path, "[project]\n")
    assert err.exit_code == 2
    assert ConfigError(["x: y"]).exit_code == 2


def test_config_error_without_source_has_no_prefix() -> None:
    err = ConfigError(["services.api.port: bad", "services.web: worse"])
    assert str(err) == "services.api.port: bad\nservices.web: worse"


# --- shapes that once gave a traceback or a Python message ---------------------------------------


@pytest.mark.parametrize("value", ['"shop"', "[1, 2]"])
def test_project_that_is_not_a_table_is_a_config_error(tmp_path: Path, value: str) -> None:
    err, path = _load_error(tmp_path, f"project = {value}\n")
    line = _line_for(_assert_readable(err, path), path, "project")
    assert "expected a table" in line


@pytest.mark.parametrize(("text", "key_path"), [("project = 1\n", "project"), (P + "[environments]\nprod = 1\n", "environments.prod")])
def test_scalar_instead_of_table_message_is_readable(tmp_path: Path, text: str, key_path: str) -> None:
    err, path = _load_error(tmp_path, text)
    line = _line_for(_assert_readable(err, path), path, key_path)
    assert "expected a table, got the integer 1" in line


def _chain(n: int) -> dict:
    services = {f"s{i}": {"type": "python", "depends_on": [f"s{i + 1}"]} for i in range(n)}
    services[f"s{n}"] = {"type": "python"}
    return {"project": {"name": "shop"}, "services": services}


def test_long_dependency_chain_is_no_traceback() -> None:
    crashed = None
    try:
        project = build_project(_chain(MAX_SERVICES - 1), source="f.toml", registry=get_registry())
        with pytest.raises(ConfigError) as info:
            build_project(_chain(1200), source="f.toml", registry=get_registry())
    except RecursionError:
        crashed = "RecursionError"  # reported outside the handler: a 1000-frame traceback is no use
    assert crashed is None, crashed
    assert len(project.services) == MAX_SERVICES
    assert info.value.problems == [f"services: 1201 services: at most {MAX_SERVICES} in one project"]


# --- nothing is written ------------------------------------------------------------------------


def test_loading_invalid_file_keeps_bytes_and_mtime(tmp_path: Path, pd_home: Path) -> None:
    path = tmp_path / "shop.toml"
    text = P + '# keep me\n[services.api]\ntype = "python"\nport = "8000"\ngit_repo = "https://github.com/u/a.git"\ngit_token = "tk8787"\n'
    path.write_text(text)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    with pytest.raises(ConfigError):
        ProjectDeployer(path)
    assert path.read_bytes() == text.encode()
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert list(pd_home.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pd_home", "shop.toml"]


@pytest.fixture
def shop(pd_home: Path) -> ProjectDeployer:
    project = ProjectDeployer.create("shop")
    project.add_postgres().add_python_service("api", port=8000, depends_on=["postgres"])
    return project


@pytest.mark.parametrize(
    ("call", "key_path", "fragment"),
    [
        (lambda p: p.add_python_service("x", depends_on=["nope"], git_repo="https://github.com/u/x.git", git_token="tk8787"), "services.x.depends_on[0]", "unknown service 'nope'"),
        (lambda p: p.add_python_service("x", prot=8000, git_repo="https://github.com/u/x.git", git_token="tk8787"), "services.x.prot", "did you mean 'port'"),
        (lambda p: p.add_python_service("x", port="8000"), "services.x.port", "expected an integer"),
        (lambda p: p.add_python_service("x", env_vars={"API_KEY": "s3cr3t", "DATABASE_URL": "auto"}, schedule="61 * * * *"), "services.x.schedule", "not a valid cron schedule"),
        (lambda p: p.add_redis(auto_scaling=True), "services.redis.auto_scaling.horizontal", "cannot scale horizontally"),
        (lambda p: p.update_service("api", domain="10.0.0.1", git_repo="https://github.com/u/a.git", git_token="tk8787"), "services.api.domain", "is an IP address"),
        (lambda p: p.update_service("api", servers_count=True), "services.api.servers_count", "expected an integer"),
        (lambda p: p.update_service("api", depends_on=["api"]), "services.api.depends_on[0]", "cannot depend on itself"),
        (lambda p: p.update_service("nope", port=1), "services.nope", "no such service"),
        (lambda p: p.update_service("api", prot=1), "services.api.prot", "did you mean 'port'"),
        (lambda p: p.delete_service("postgres"), "services.api.depends_on[0]", "unknown service 'postgres'"),
        (lambda p: p.delete_service("nope"), "services.nope", "no such service"),
        (lambda p: p.add_service("Bad Name", image="nginx:alpine"), "services.Bad Name", "not a valid service name"),
        (lambda p: p.add("nosuchtype", "x"), None, "unknown service type 'nosuchtype'"),
    ],
    ids=[
        "depends-on-unknown",
        "unknown-kwarg",
        "port-string",
        "bad-cron-with-secret-env",
        "redis-horizontal",
        "update-ip-domain",
        "update-bool-count",
        "update-self-dependency",
        "update-unknown-service",
        "update-unknown-kwarg",
        "delete-a-dependency",
        "delete-unknown",
        "bad-name",
        "unknown-type",
    ],
)
def test_invalid_api_call_raises_and_writes_nothing(shop: ProjectDeployer, pd_home: Path, call, key_path: str | None, fragment: str) -> None:
    before = _snapshot(pd_home)
    model_before = shop.project
    with pytest.raises(ConfigError) as info, _deadline():
        call(shop)
    err = info.value
    lines = _assert_readable(err, shop.path)
    line = _line_for(lines, shop.path, key_path) if key_path else lines[0]
    assert fragment in line, line
    assert err.exit_code == 2
    assert _snapshot(pd_home) == before, "a failed API call wrote or changed a file"
    assert not (pd_home / "shop" / "secrets").exists(), "a failed API call stored a secret"
    # The object is unchanged too: the next valid call works from the old state.
    assert shop.project == model_before
    assert ProjectDeployer("shop").project == model_before


def test_unknown_kwarg_message_is_exact(shop: ProjectDeployer) -> None:
    with pytest.raises(ConfigError) as info:
        shop.add_python_service("x", prot=8000)
    assert str(info.value) == f"{shop.path}: services.x.prot: a python service has no setting 'prot' (did you mean 'port'?)"


def test_every_unknown_kwarg_is_reported(shop: ProjectDeployer) -> None:
    with pytest.raises(ConfigError) as info:
        shop.add_python_service("x", prot=8000, domian="a.example.com", zzzzqqq=1)
    lines = _assert_readable(info.value, shop.path)
    assert len(lines) == 3
    assert "did you mean 'domain'" in _line_for(lines, shop.path, "services.x.domian")
    assert "did you mean" not in _line_for(lines, shop.path, "services.x.zzzzqqq")


# --- property: never anything but a Project or a ConfigError -----------------------------------

_KEYS = [
    "project",
    "images",
    "environments",
    "services",
    "name",
    "type",
    "port",
    "depends_on",
    "env_vars",
    "volumes",
    "auto_scaling",
    "vertical",
    "horizontal",
    "cpu_scale_up",
    "cpu_scale_down",
    "rps_scale_up",
    "schedule",
    "domain",
    "git_repo",
    "git_token",
    "backup_config",
    "retention_days",
    "zones",
    "provider",
    "startup_order",
    "servers_count",
    "server_zone",
    "server_cpu",
    "server_memory",
    "dockerfile",
    "dockerfile_content",
    "requirements_files",
    "image",
    "python",
    "version",
    "min_servers",
    "max_servers",
    "package_manager",
    "build_dir",
    "build_context",
    "health_path",
    "docker_hub_user",
    "command",
]
_NAMES = ["api", "web", "postgres", "redis", "worker", "a", "b"]
keys = st.sampled_from(_KEYS) | st.text(min_size=1, max_size=8)
scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.datetimes()
    | st.dates()
    | st.times()
    | st.sampled_from(
        [
            *_NAMES,
            "python",
            "postgres",
            "generic",
            "nodejs",
            "react",
            "auto",
            "0 2 * * *",
            "61 * * * *",
            "lon1",
            "api.example.com",
            "10.0.0.1",
            "https://github.com/u/r.git@main",
            "git@github.com:u/r.git@v1",
            "secret:api/git_token",
            "tk8787",
            "npm",
            "dist",
            "Dockerfile",
            "/app:ro",
        ]
    )
)
_any_value = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=20)


def _named(strategy: st.SearchStrategy, name: str) -> st.SearchStrategy:
    """``strategy`` under a short name: nested one_of/fixed_dictionaries reprs run to megabytes."""

    @st.composite
    def draw_it(draw: st.DrawFn) -> Any:
        return draw(strategy)

    draw_it.__name__ = draw_it.__qualname__ = name  # type: ignore[attr-defined]
    return draw_it()


values = _named(_any_value, "any_toml_value")


def mostly(good: st.SearchStrategy) -> st.SearchStrategy:
    """``good`` seven times in eight, any TOML value otherwise: deep enough to reach validation.

    (``one_of`` would not do: it draws its branches about evenly, whatever their repetition.)
    """
    return st.sampled_from(range(8)).flatmap(lambda i: values if i == 7 else good)


def mostly_key(good: st.SearchStrategy) -> st.SearchStrategy:
    """A table key: ``good`` seven times in eight, any key otherwise."""
    return st.sampled_from(range(8)).flatmap(lambda i: keys if i == 7 else good)


def with_junk_keys(tables: st.SearchStrategy) -> st.SearchStrategy:
    """Sometimes add a random key or two to each table."""
    junk = st.sampled_from(range(8)).flatmap(lambda i: st.dictionaries(keys, values, min_size=1, max_size=2) if i == 7 else st.just({}))
    return st.tuples(tables, junk).map(lambda pair: {**pair[1], **pair[0]})


ints = st.integers(-3, 70000)
percent = st.integers(-10, 150) | st.floats(-10, 150)
service_tables = _named(
    with_junk_keys(
        st.fixed_dictionaries(
            {"type": mostly(st.sampled_from(["python", "nodejs", "react", "generic", "postgres", "redis", "opensearch", "pyton"]))},
            optional={
                "depends_on": mostly(st.lists(mostly(st.sampled_from(_NAMES)), max_size=3)),
                "port": mostly(ints),
                "servers_count": mostly(st.integers(-1, 25)),
                "server_zone": mostly(st.sampled_from(["lon1", "nyc3", "local", "mars1"])),
                "server_cpu": mostly(st.sampled_from([1, 2, 3, 4])),
                "domain": mostly(st.sampled_from(["api.example.com", "www.example.com", "x", "1.2.3.4", "-a.example.com"])),
                "schedule": mostly(st.sampled_from(["0 2 * * *", "* * *", "61 * * * *", "@daily", "*/5 * * * *"])),
                "env_vars": mostly(st.dictionaries(st.sampled_from(["DATABASE_URL", "REDIS_URL", "API_URL", "API_KEY", "X", "1BAD"]), mostly(st.sampled_from(["auto", "1", "secret:x"])), max_size=3)),
                "volumes": mostly(st.dictionaries(st.sampled_from(["/srv/a", "", "rel"]), mostly(st.sampled_from(["/a", "/a:ro", "a:xx"])), max_size=2)),
                "auto_scaling": mostly(
                    st.booleans()
                    | st.fixed_dictionaries(
                        {},
                        optional={
                            "vertical": mostly(st.dictionaries(st.sampled_from(["cpu_scale_up", "cpu_scale_down", "memory_scale_up", "memory_scale_down"]), mostly(percent), max_size=4)),
                            "horizontal": mostly(st.dictionaries(st.sampled_from(["rps_scale_up", "rps_scale_down"]), mostly(st.integers(-5, 2000)), max_size=2)),
                            "min_servers": mostly(st.integers(-1, 25)),
                            "max_servers": mostly(st.integers(-1, 25)),
                            "scale_up_cooldown": mostly(st.integers(-1, 900)),
                        },
                    )
                ),
                "startup_order": mostly(st.integers(-1, 5)),
                "git_repo": mostly(st.sampled_from(["https://github.com/u/r.git@main", "git@github.com:u/r.git@v1", "file:///srv/r.git", "ftp://x/y", "https://u:p@h/x.git", "https://h/x.git@a..b"])),
                "git_token": mostly(st.sampled_from(["secret:api/git_token", "env:TOKEN", "tk8787", "secret:"])),
                "build_context": mostly(st.sampled_from(["/path/to/code", "."])),
                "dockerfile": mostly(st.sampled_from(["Dockerfile", "/etc/Dockerfile", "../Dockerfile"])),
                "dockerfile_content": mostly(st.dictionaries(st.sampled_from(["1", "2", "x"]), mostly(st.sampled_from(["FROM scratch", ""])), max_size=2)),
                "image": mostly(st.sampled_from(["nginx:alpine", ""])),
                "requirements_files": mostly(st.lists(mostly(st.sampled_from(["requirements.txt", "../x.txt"])), max_size=2)),
                "package_manager": mostly(st.sampled_from(["npm", "yarn", "pnpm", "bun"])),
                "backup_config": mostly(
                    st.fixed_dictionaries(
                        {}, optional={"schedule": mostly(st.sampled_from(["0 2 * * *", "61 * * * *"])), "retention_days": mostly(st.integers(-1, 30)), "enabled": mostly(st.booleans())}
                    )
                ),
                "health_path": mostly(st.sampled_from(["/", "/healthz", "healthz"])),
            },
        )
    ),
    "service_table",
)
services = _named(st.dictionaries(mostly_key(st.sampled_from(_NAMES + ["Bad Name"])), mostly(service_tables), min_size=1, max_size=5), "services_table")
project_tables = _named(
    with_junk_keys(
        st.fixed_dictionaries(
            {"name": mostly(st.sampled_from(["shop", "shop", "My App", ""]))},
            optional={"version": mostly(st.sampled_from(["1.0.0", "bad tag"])), "docker_hub_user": mostly(st.sampled_from(["me", "Not Valid"])), "default_server_ip": values},
        )
    ),
    "project_table",
)
environments = _named(
    st.dictionaries(
        st.sampled_from(["prod", "dev", "Bad Env"]),
        mostly(
            st.fixed_dictionaries(
                {},
                optional={
                    "provider": mostly(st.sampled_from(["auto", "local", "digitalocean", "aws"])),
                    "zones": mostly(st.lists(mostly(st.sampled_from(["lon1", "nyc3", "mars1"])), max_size=2)),
                    "services": mostly(st.dictionaries(mostly_key(st.sampled_from(_NAMES)), mostly(service_tables.map(lambda t: {k: v for k, v in t.items() if k != "type"})), max_size=3)),
                },
            )
        ),
        max_size=2,
    ),
    "environments_table",
)


def _documents(project: st.SearchStrategy, name: str) -> st.SearchStrategy:
    """Documents (mostly well-formed, with junk mixed in); ``project`` is drawn from ``project``."""
    return _named(
        with_junk_keys(
            st.fixed_dictionaries(
                {"project": project, "services": mostly(services)},
                optional={
                    "environments": mostly(environments),
                    "images": mostly(st.dictionaries(st.sampled_from(["python", "node", "nginx", "pyton"]), mostly(st.sampled_from(["python:{version}-slim", "bad image"])), max_size=2)),
                },
            )
        ),
        name,
    )


def _has_self_dependency(data: dict) -> bool:
    services = data.get("services")
    if not isinstance(services, dict):
        return False
    return any(isinstance(t, dict) and isinstance(t.get("depends_on"), list) and name in t["depends_on"] for name, t in services.items())


def _project_or_config_error(data: dict) -> None:
    try:
        with _deadline(5):
            result = build_project(data, source="f.toml", registry=get_registry())
    except ConfigError as err:
        assert err.problems, "a ConfigError without problems"
        assert all(line.startswith("f.toml: ") for line in err.format_lines())
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc} (a traceback for the user) on {data!r}") from exc
    else:
        assert isinstance(result, Project)


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@_FUZZ
@given(_documents(project_tables, "document") | _documents(project_tables, "document").map(lambda d: {k: v for k, v in d.items() if k != "project"}))
def test_random_documents_give_a_project_or_a_config_error(data: dict) -> None:
    _project_or_config_error(data)


@_FUZZ
@given(_documents(values, "document_with_any_project"))
def test_random_documents_with_any_project_value_give_a_project_or_a_config_error(data: dict) -> None:
    _project_or_config_error(data)


_TOML_PIECES = [
    "[project]\n",
    'name = "shop"\n',
    "[services.api]\n",
    'type = "python"\n',
    "port = 8000\n",
    'port = "8000"\n',
    "[environments.prod.services.api]\n",
    "[[services]]\n",
    "[images]\n",
    'depends_on = ["api"]\n',
    "auto_scaling = true\n",
    "auto_scaling = {vertical = {cpu_scale_up = 80}}\n",
    'env_vars = {DATABASE_URL = "auto"}\n',
    "a.b.c = 1\n",
    "x = 1979-05-27T07:32:00Z\n",
    "= 1\n",
    "[",
    "]",
    '"',
    "'''",
    '"""',
    "{",
    "}",
    "\\u",
    "#",
    "\n",
    " ",
    "=",
    ",",
    ".",
    "\x00",
    "\ufeff",
    "nan",
    "inf",
    "0x1F",
    "1e",
    "true",
]


random_text = st.lists(st.sampled_from(_TOML_PIECES) | st.text(alphabet=string.printable + "é\x7f", max_size=6), max_size=25).map("".join)


def _parses_or_config_error(text: str) -> None:
    try:
        doc = parse_toml(text, "f.toml")
    except ConfigError as err:
        (line,) = err.format_lines()
        assert re.match(r"^f\.toml: (line \d+, column \d+: )?invalid TOML: ", line), line
        return
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc} on {text!r}") from exc
    data = doc.unwrap()
    assume(isinstance(data, dict))
    _project_or_config_error(data)


@_FUZZ
@given(random_text)
def test_random_text_parses_or_gives_a_config_error(text: str) -> None:
    _parses_or_config_error(text)


def test_the_document_generator_reaches_valid_projects() -> None:
    """The property above is only worth something if its documents get past the first checks."""

    def valid(data: dict) -> bool:
        if _has_self_dependency(data):
            return False
        try:
            build_project(data, source="f.toml", registry=get_registry())
        except ConfigError:
            return False
        return bool(data.get("services"))

    found = find(_documents(project_tables, "document"), valid, settings=settings(max_examples=2000, database=None, suppress_health_check=list(HealthCheck)))
    assert isinstance(build_project(found, source="f.toml", registry=get_registry()), Project)


def test_project_name_with_underscore_loads_with_a_warning(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Projects created before names lost "_" still load (to deploy, or to take down), warned;
    a new one is refused."""
    from projectdeployer.project.validation import ProjectNameWarning

    path = tmp_path / "old.toml"
    path.write_text('[project]\nname = "my_app"\n')
    with pytest.warns(ProjectNameWarning, match="project.name: 'my_app' has '_'"):
        assert ProjectDeployer(str(path), path=path).name == "my_app"
    with pytest.raises(ConfigError, match="not a valid name for a new project"):
        ProjectDeployer.create("my_app", path=tmp_path / "new.toml")
    assert not (tmp_path / "new.toml").exists()
