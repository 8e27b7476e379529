"""Options that take a TOML value (``--auto-scaling``, ``--backup-config``, ...): every kind of
value is accepted, whether tomlkit hands it back as a plain Python value (bare booleans) or as an
item to unwrap, and anything that is not exactly one value is one usage error naming the flag."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from projectdeployer.cli.options import _toml_value

pytestmark = pytest.mark.unit

BIN = Path(sys.executable).with_name("projectdeployer")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("8000", 8000),
        ("1.5", 1.5),
        ('"text"', "text"),
        ("'literal'", "literal"),
        ('["a", "b"]', ["a", "b"]),
        ("{min_servers = 1, max_servers = 3}", {"min_servers": 1, "max_servers": 3}),
        ("{vertical = {cpu_scale_up = 90}}", {"vertical": {"cpu_scale_up": 90}}),
        ("true  # a comment", True),
        ("1979-05-27", datetime.date(1979, 5, 27)),
    ],
    ids=repr,
)
def test_every_kind_of_value_is_plain_python(text: str, expected: object) -> None:
    value = _toml_value(text, "--auto-scaling")
    assert value == expected
    assert type(value) is type(expected)  # no tomlkit item leaks into the project model


@pytest.mark.parametrize(
    "text",
    ["tru", "", "1 2", '"open', "{a = 1, a = 2}", "true\nextra = 1", "[" * 500, '"\\q"', "0x"],
    ids=repr,
)
def test_anything_but_one_value_is_one_line_naming_the_flag(text: str) -> None:
    with pytest.raises(click.BadParameter) as caught:
        _toml_value(text, "--backup-config")
    message = caught.value.format_message()
    assert "'--backup-config'" in message
    assert "\n" not in message and "\x1b" not in message
    assert len(message) < 200  # the value is shortened


def test_a_terminal_escape_is_echoed_escaped() -> None:
    with pytest.raises(click.BadParameter) as caught:
        _toml_value("\x1b]0;owned\x07", "--auto-scaling")
    assert "\\x1b]0;owned\\x07" in caught.value.format_message()


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTDEPLOYER_")}
    env["PROJECTDEPLOYER_HOME"] = str(tmp_path / "home")
    return subprocess.run([str(BIN), *args], env=env, cwd=tmp_path, text=True, capture_output=True)


def test_the_readme_command_and_a_malformed_value(tmp_path: Path) -> None:
    assert _run(tmp_path, "init", "myapp").returncode == 0
    assert _run(tmp_path, "-p", "myapp", "add", "postgres").returncode == 0
    ok = _run(
        tmp_path,
        "-p",
        "myapp",
        "add",
        "python",
        "api",
        "--port",
        "8000",
        "--depends-on",
        "postgres",
        "--env-var",
        "DATABASE_URL=auto",
        "--domain",
        "api.example.com",
        "--auto-scaling",
        "true",
    )
    assert ok.returncode == 0, ok.stderr
    assert _run(tmp_path, "-p", "myapp", "add", "python", "worker", "--auto-scaling", "false").returncode == 0
    project_file = tmp_path / "home" / "myapp" / "project.toml"
    before = project_file.read_bytes()
    bad = _run(tmp_path, "-p", "myapp", "add", "python", "web", "--auto-scaling", "tru")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [f"error: Invalid value for '--auto-scaling': not one TOML value: 'tru' ({_examples()}) (see 'projectdeployer add python --help')"]
    assert "Traceback" not in bad.stderr
    assert project_file.read_bytes() == before


def _examples() -> str:
    from projectdeployer.cli.options import _TOML_EXAMPLES

    return _TOML_EXAMPLES
