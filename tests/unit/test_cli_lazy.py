"""The command line loads its command modules lazily: ``--help`` lists every core command with the
help it had when every module was imported at start-up, and imports none of them."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pluggy
import pytest
from click.shell_completion import ZshComplete
from click.testing import CliRunner

from projectdeployer.cli import CORE_COMMANDS, make_cli
from projectdeployer.hookspecs import hookimpl
from projectdeployer.plugins import LOAD_ENV, load_plugins, make_plugin_manager

pytestmark = pytest.mark.unit

COMMAND_MODULES = sorted({lazy.module for lazy in CORE_COMMANDS.values()})


@pytest.fixture
def manager() -> pluggy.PluginManager:
    return load_plugins(make_plugin_manager(), env={LOAD_ENV: ""})


def _registered(manager: pluggy.PluginManager) -> dict[str, tuple[str, click.Command]]:
    """Every command module's commands, each module registered as at start-up before lazy
    loading: name -> (module, command)."""
    found: dict[str, tuple[str, click.Command]] = {}
    for module in COMMAND_MODULES:
        group = click.Group()
        importlib.import_module(module).register(group, manager)
        for name, command in group.commands.items():
            assert name not in found, f"{name} registered by {found[name][0]} and {module}"
            found[name] = (module, command)
    return found


def test_the_table_names_every_command_its_module_registers_with_its_help(manager: pluggy.PluginManager) -> None:
    registered = _registered(manager)
    assert sorted(registered) == sorted(CORE_COMMANDS)
    for name, (module, command) in registered.items():
        assert CORE_COMMANDS[name].module == module, name
        stand_in = click.Command(name, help=CORE_COMMANDS[name].help)
        for limit in (30, 45, 60, 80, 94, 300):
            assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), (name, limit)
        assert not command.hidden and not command.deprecated and command.short_help is None, name


@pytest.mark.parametrize("width", [80, 100])
def test_help_is_the_same_as_with_every_module_loaded(manager: pluggy.PluginManager, width: int) -> None:
    lazy = make_cli(manager)
    before = CliRunner().invoke(lazy, ["--help"], terminal_width=width)
    loaded = make_cli(manager)
    for name in list(loaded.commands):
        loaded.commands[name]  # a look-up loads the command's module
    after = CliRunner().invoke(loaded, ["--help"], terminal_width=width)
    assert before.exit_code == after.exit_code == 0
    assert before.output == after.output
    for name in CORE_COMMANDS:
        assert f"\n  {name} " in before.output


def test_help_imports_no_command_module_nor_capability() -> None:
    code = "import sys\nfrom projectdeployer.cli import make_cli\ntry:\n    make_cli().main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\nprint(' '.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = set(proc.stdout.split())
    assert "projectdeployer.cli" in modules and "projectdeployer.plugins" in modules
    assert not modules & set(COMMAND_MODULES)
    forbidden = {"projectdeployer.core.engine", "projectdeployer.core.fleet", "projectdeployer.core.environment", "projectdeployer.core.deployer", "docker", "paramiko"}
    assert not modules & forbidden


def test_a_command_loads_its_own_module_only() -> None:
    code = (
        "import sys\n"
        "from projectdeployer.cli import make_cli\n"
        "try:\n    make_cli().main(['plugins', '--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(' '.join(m for m in sorted(sys.modules) if m.startswith('projectdeployer.cli.')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(proc.stdout.split()) & set(COMMAND_MODULES)
    assert loaded == {"projectdeployer.cli.plugins_cmd"}


def test_commands_lists_every_command_and_a_plugin_command_wins_over_a_core_one(manager: pluggy.PluginManager) -> None:
    class StatusPlugin:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            @cli.command("status")
            def status() -> None:
                """A plugin's own status."""
                click.echo("plugin status")

    manager.register(StatusPlugin(), name="status-plugin")
    cli = make_cli(manager)
    assert set(CORE_COMMANDS) <= set(cli.commands) and "status" in cli.commands
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    assert result.output == "plugin status\n"
    # Loading the core module of "status" (deploy_cmds, through "deploy") keeps the plugin's.
    assert cli.commands["deploy"].name == "deploy"
    assert CliRunner().invoke(cli, ["status"]).output == "plugin status\n"


@pytest.mark.parametrize(("args", "incomplete"), [([], ""), ([], "de"), (["backups"], ""), (["deploy"], "--dry"), (["secrets"], "r")])
def test_shell_completion_is_the_same_as_with_every_module_loaded(manager: pluggy.PluginManager, args: list[str], incomplete: str) -> None:
    def completions(cli: click.Group) -> list[tuple[str, str | None]]:
        complete = ZshComplete(cli, {}, "projectdeployer", "_PROJECTDEPLOYER_COMPLETE")
        return [(item.value, item.help) for item in complete.get_completions(args, incomplete)]

    loaded = make_cli(manager)
    for name in list(loaded.commands):
        loaded.commands[name]  # a look-up loads the command's module
    expected = completions(loaded)
    assert expected
    assert completions(make_cli(manager)) == expected
