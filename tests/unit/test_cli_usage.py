"""A group given no command shows its help, as click does (on stderr, exit code 2), instead of
the one-line error every other usage mistake gets."""

from __future__ import annotations

import pluggy
import pytest
from click.testing import CliRunner

from projectdeployer.cli import make_cli
from projectdeployer.plugins import LOAD_ENV, load_plugins, make_plugin_manager

pytestmark = pytest.mark.unit


@pytest.fixture
def manager() -> pluggy.PluginManager:
    return load_plugins(make_plugin_manager(), env={LOAD_ENV: ""})


@pytest.mark.parametrize("args", [[], ["backups"], ["secrets"]])
def test_a_group_without_a_command_shows_its_help(manager: pluggy.PluginManager, args: list[str]) -> None:
    cli = make_cli(manager)
    shown = CliRunner().invoke(cli, args)
    asked = CliRunner().invoke(cli, [*args, "--help"])
    assert asked.exit_code == 0 and asked.stdout.startswith("Usage: ")
    assert shown.exit_code == 2
    assert shown.stderr == asked.stdout and shown.stdout == ""


def test_a_misspelled_command_is_still_one_line(manager: pluggy.PluginManager) -> None:
    result = CliRunner().invoke(make_cli(manager), ["deplyo"], prog_name="projectdeployer")
    assert result.exit_code == 2
    assert result.stderr == "error: No such command 'deplyo'. Did you mean 'deploy'? (see 'projectdeployer --help')\n"
