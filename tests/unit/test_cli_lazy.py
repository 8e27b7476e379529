"""The command line loads its command modules lazily: ``--help`` lists every core command with the
help it had when every module was imported at start-up, and imports none of them. It imports only
the plugins that can add commands, too: every other distribution's, no built-in one."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pluggy
import pytest
from click.shell_completion import ZshComplete
from click.testing import CliRunner

from projectdeployer.cli import CORE_COMMANDS, make_cli
from projectdeployer.hookspecs import hookimpl
from projectdeployer.plugins import BUILTIN_COMMAND_PLUGINS, ESSENTIAL_PLUGINS, LOAD_ENV, OWN_DISTRIBUTION, TRACE_ENV, load_plugins, make_plugin_manager

pytestmark = pytest.mark.unit

COMMAND_MODULES = sorted({lazy.module for lazy in CORE_COMMANDS.values()})
#: Where the built-in plugins live: --help imports none of these packages.
PLUGIN_PACKAGES = ("projectdeployer.service_types", "projectdeployer.providers", "projectdeployer.default_plugins")
#: What the built-in plugins and the registry import: --help imports none of these either.
PLUGIN_IMPORTS = ("attrs", "attr", "cattrs", "tomlkit", "jinja2", "docker", "paramiko", "pydo", "cryptography", "urllib3", "http.client")


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
    forbidden = {
        "projectdeployer.deploy.server",
        "projectdeployer.deploy.orchestrator",
        "projectdeployer.deploy.deployment",
        "projectdeployer.environment.environment",
        "projectdeployer.api.project",
        "docker",
        "paramiko",
    }
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


def _help_modules(env: dict[str, str] | None = None) -> tuple[str, set[str]]:
    """The output of ``--help`` in a fresh process, and the modules it imported."""
    code = (
        "import sys\nfrom projectdeployer.cli import make_cli\n"
        "try:\n    make_cli().main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    out, _, modules = proc.stdout.rpartition("MODULES ")
    return out, set(modules.split())


def test_help_imports_no_plugin_module_nor_what_plugins_import() -> None:
    out, modules = _help_modules()
    assert all(f"\n  {name} " in out for name in CORE_COMMANDS)
    assert not [m for m in modules if m.startswith(PLUGIN_PACKAGES)]
    assert not modules & set(PLUGIN_IMPORTS)
    assert "projectdeployer.core.registry" not in modules and "projectdeployer.core.servicetype" not in modules


def test_the_builtins_that_add_commands_are_the_ones_named() -> None:
    """``BUILTIN_COMMAND_PLUGINS`` decides which built-ins --help imports: a built-in that adds a
    command and is not named there would be missing from the command line."""
    builtins = load_plugins(make_plugin_manager(), env={LOAD_ENV: OWN_DISTRIBUTION})
    adding = {impl.plugin_name for impl in builtins.hook.register_commands.get_hookimpls()}
    assert adding == BUILTIN_COMMAND_PLUGINS
    assert not adding & set(ESSENTIAL_PLUGINS), "load_command_plugins imports entry points only"


_HELLO = """
import click

from projectdeployer import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command(name="hello-test")
    def hello():
        \"\"\"Say hello, and what the command runs with.\"\"\"
        import json

        from projectdeployer.plugins import get_registry, pm

        click.echo(json.dumps({"plugins": [name for name, _ in pm.list_name_plugin()], "types": sorted(get_registry().service_types)}))
"""


@pytest.fixture
def hello_site(tmp_path: Path) -> Path:
    """An installed (dist-info) distribution whose plugin adds the command ``hello-test``."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello_test_plugin.py").write_text(textwrap.dedent(_HELLO))
    info = site / "hello_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-test-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[projectdeployer]\nhello = hello_test_plugin\n")
    return site


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (LOAD_ENV, TRACE_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    return {**env, **extra}


def test_help_lists_an_installed_plugins_command_importing_that_plugin_only(hello_site: Path) -> None:
    out, modules = _help_modules(_env(hello_site))
    assert "\n  hello-test " in out and "Say hello" in out
    assert "hello_test_plugin" in modules
    assert not [m for m in modules if m.startswith(PLUGIN_PACKAGES)]

    # PROJECTDEPLOYER_LOAD_PLUGINS chooses for --help too.
    out, modules = _help_modules(_env(hello_site, **{LOAD_ENV: "service_postgres"}))
    assert "hello-test" not in out and "hello_test_plugin" not in modules


def test_a_plugins_command_runs_with_every_plugin_loaded_in_the_usual_order(hello_site: Path, tmp_path: Path) -> None:
    bin_ = Path(sys.executable).with_name("projectdeployer")
    env = _env(hello_site, PROJECTDEPLOYER_HOME=str(tmp_path / "home"))
    proc = subprocess.run([str(bin_), "hello-test"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    # The same plugins, registered in the same order, as load_plugins gives a manager of its own.
    code = "import json\nfrom projectdeployer.plugins import load_plugins, make_plugin_manager\nprint(json.dumps([n for n, _ in load_plugins(make_plugin_manager()).list_name_plugin()]))"
    expected = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout)
    assert seen["plugins"] == expected
    assert "hello" in expected and "service_postgres" in expected
    assert {"postgres", "python"} <= set(seen["types"])
