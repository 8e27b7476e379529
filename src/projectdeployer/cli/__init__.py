"""The ``projectdeployer`` command line.

:func:`make_cli` builds the click group for a plugin manager (the global one by default) and lets
every plugin add commands through ``register_commands``; :func:`main` is the console script and
turns expected errors into one red line per problem with the error's exit code.

The core commands are loaded lazily (click's lazy group pattern): the group knows their names,
the module that registers them and their short help (:data:`CORE_COMMANDS`), and imports a
command module only when one of its commands runs, completes or shows its own help. So
``projectdeployer --help`` imports no command module, and none of the capabilities they use.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Iterator, MutableMapping
from typing import Any, NamedTuple

import click
import pluggy
from click.core import ParameterSource

from ..core.errors import ConfigError, ProjectDeployerError
from ..plugins import load_command_plugins, load_plugins, pm
from .output import error_lines
from .safegroup import SafeGroup


class LazyCommand(NamedTuple):
    """A core command before its module is imported: the module whose ``register(cli, manager)``
    adds it, and the first paragraph of its help (``--help`` shortens it as click would)."""

    module: str
    help: str


#: Every core command, in the modules that register them. A unit test checks this table against
#: the commands the modules register (names and help): a new command or a changed first line of
#: help is added here too.
CORE_COMMANDS: dict[str, LazyCommand] = {
    "init": LazyCommand("projectdeployer.cli.project_cmds", "Create a project file for NAME (at --file, or in $PROJECTDEPLOYER_HOME)."),
    "add": LazyCommand("projectdeployer.cli.project_cmds", "Add a service to the project: projectdeployer add TYPE NAME [OPTIONS]."),
    "remove": LazyCommand(
        "projectdeployer.cli.project_cmds",
        "Remove service NAME from the project file (its containers go at the next deploy), and the secret files only NAME used (each one removed or kept is printed, with why).",
    ),
    "show": LazyCommand("projectdeployer.cli.project_cmds", "Show the project's services in startup order."),
    "validate": LazyCommand("projectdeployer.cli.project_cmds", "Check the project file; one line per problem, exit code 2 if any."),
    "build": LazyCommand("projectdeployer.cli.project_cmds", "Build the images of the project's services (generated or own Dockerfiles, git refs)."),
    "ports": LazyCommand("projectdeployer.cli.project_cmds", "Show (and record on first use) the ports of every service in ENV."),
    "plan": LazyCommand("projectdeployer.cli.deploy_cmds", "Show what a deploy would change, and change nothing."),
    "deploy": LazyCommand("projectdeployer.cli.deploy_cmds", "Build and deploy the project (or one service) with zero-downtime switches."),
    "status": LazyCommand("projectdeployer.cli.deploy_cmds", "Servers per zone, and each service's container, health, release and URL."),
    "run": LazyCommand("projectdeployer.cli.deploy_cmds", "Run the scheduled service SERVICE now, outside its schedule."),
    "logs": LazyCommand("projectdeployer.cli.deploy_cmds", "Print the log lines of the container serving SERVICE."),
    "rollback": LazyCommand("projectdeployer.cli.deploy_cmds", "Redeploy SERVICE with its previous image, with zero downtime."),
    "plugins": LazyCommand("projectdeployer.cli.plugins_cmd", "List the loaded plugins (built-in and installed) with their hooks."),
    "secrets": LazyCommand("projectdeployer.cli.secrets_cmds", "List, set and rotate the secrets of an environment (and of its project)."),
    "backups": LazyCommand("projectdeployer.cli.backups_cmds", "Backups of the stateful services (PostgreSQL, Redis, OpenSearch)."),
    "servers": LazyCommand("projectdeployer.cli.servers_cmds", "Check the servers of an environment, or set them up, over SSH."),
    "sync": LazyCommand("projectdeployer.cli.sync_cmds", "Send config/secrets/files to the servers; fetch data/logs/backups/monitoring back."),
    "destroy": LazyCommand("projectdeployer.cli.destroy_cmd", "Take the environment ENV down: its containers, network, unused images and state."),
}


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's ``commands``: the loaded ones, and the lazy ones, loaded on first look-up.

    Listing names (``list_commands``, ``in``, iteration) imports nothing; reading a command
    imports its module, whose ``register`` adds all its commands at once. A command added to the
    group before its module is loaded (a plugin's ``register_commands`` giving a core name) wins,
    as it did when the core commands were registered first and the plugins' added after.
    """

    def __init__(self, lazy: dict[str, LazyCommand], manager: pluggy.PluginManager) -> None:
        self._lazy = dict(lazy)
        self._loaded: dict[str, click.Command] = {}
        self._manager = manager

    def _load(self, module: str) -> None:
        scratch = click.Group()
        importlib.import_module(module).register(scratch, self._manager)
        for name, command in scratch.commands.items():
            self._loaded.setdefault(name, command)
        for name in [name for name, lazy in self._lazy.items() if lazy.module == module]:
            del self._lazy[name]

    def pending(self, name: str) -> LazyCommand | None:
        """The lazy entry of a command not loaded yet, else ``None``."""
        return None if name in self._loaded else self._lazy.get(name)

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded and name in self._lazy:
            self._load(self._lazy[name].module)
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._lazy.pop(name, None)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._loaded and name not in self._lazy:
            raise KeyError(name)
        self._loaded.pop(name, None)
        self._lazy.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter([*self._loaded, *(name for name in self._lazy if name not in self._loaded)])

    def __len__(self) -> int:
        return len(self._loaded.keys() | self._lazy.keys())


class LazyGroup(SafeGroup):
    """The root group: its ``commands`` are :class:`LazyCommands`, and its help lists the lazy
    ones from their table entry instead of importing them."""

    commands: LazyCommands

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own layout (same widths, same shortening), a lazy command standing in as a
        # bare command with its table help.
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            lazy = self.commands.pending(name)
            command = click.Command(name, help=lazy.help) if lazy is not None else self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in rows])


def make_cli(manager: pluggy.PluginManager | None = None) -> click.Group:
    """The root command group, with the core commands (loaded lazily) and every plugin's commands.

    Without a ``manager``, the commands run with the global one. In a fresh process (the console
    script: nothing registered in it yet) the plugins' commands are taken from
    :func:`~projectdeployer.plugins.load_command_plugins`, and the global manager is loaded in full
    when a command runs: ``--help`` and ``--version`` import only the plugins that can add commands.
    """
    target = pm if manager is None else manager
    commands_from = target
    if manager is None:
        # A plugin registered by hand (nothing else is in a fresh process) may add commands too.
        commands_from = load_command_plugins() if not pm.get_plugins() else load_plugins()

    @click.group(cls=LazyGroup, commands=LazyCommands(CORE_COMMANDS, target), context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
    @click.version_option(package_name="projectdeployer", prog_name="projectdeployer")
    @click.option("-f", "--file", "file", type=click.Path(dir_okay=False), envvar="PROJECTDEPLOYER_FILE", help="Project file to use (default: ./projectdeployer.toml, else --project).")
    @click.option("-p", "--project", "project", metavar="NAME", envvar="PROJECTDEPLOYER_PROJECT", help="Project name, loaded from $PROJECTDEPLOYER_HOME/NAME/project.toml.")
    @click.pass_context
    def cli(ctx: click.Context, file: str | None, project: str | None) -> None:
        """Deploy a whole project - databases, APIs, sites, workers, cron jobs - as Docker
        containers, on this machine or on many servers, with zero-downtime switches.

        Shell completion: eval "$(_PROJECTDEPLOYER_COMPLETE=bash_source projectdeployer)"
        (zsh_source / fish_source for zsh and fish); see docs/cli.md.
        """
        file, project = _which_project(ctx, file, project)
        if manager is None:
            load_plugins()  # every command may use any plugin (idempotent once loaded)
        ctx.obj = {"file": file, "project": project, "manager": target}
        from .notices import warnings_as_lines  # noqa: PLC0415 - deferred: the project-file checks it names (start-up)

        # The API's warnings (plain-text credentials) print as one line each during the command.
        ctx.with_resource(warnings_as_lines())

    commands_from.hook.register_commands(cli=cli)
    return cli


def _which_project(ctx: click.Context, file: str | None, project: str | None) -> tuple[str | None, str | None]:
    """``(file, project)`` once flags and environment variables are weighed.

    An explicit flag wins over the other one's environment variable (``-p other`` with
    ``$PROJECTDEPLOYER_FILE`` set means the project ``other``); both flags at once are refused.
    Both variables and no flag keep the documented order: the file first.
    """
    file_flag = ctx.get_parameter_source("file") is ParameterSource.COMMANDLINE
    project_flag = ctx.get_parameter_source("project") is ParameterSource.COMMANDLINE
    if file and project and file_flag and project_flag:
        raise ConfigError(["-f/--file and -p/--project name two projects: give one of them"])
    if project_flag and not file_flag:
        return None, project
    return file, (None if file_flag else project)


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: expected errors are one line each, never a traceback."""
    try:
        cli = make_cli()
        return cli.main(args=argv, prog_name="projectdeployer", standalone_mode=True)
    except ProjectDeployerError as exc:
        for line in error_lines(_CliPhrased.of(exc)):
            click.secho(line, fg="red", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.secho("interrupted", fg="red", err=True)
        sys.exit(130)
    except Exception:  # noqa: BLE001 - a bug: keep the traceback, and say it is ours
        traceback.print_exc()
        click.secho("This is a bug in ProjectDeployer or one of its plugins; please report it with the traceback above.", fg="red", err=True)
        sys.exit(70)


class _CliPhrased(ProjectDeployerError):
    """An error as the command line says it: its ``cli_message`` instead of its Python message.

    Handed to :func:`error_lines` as is, so that the CLI's escaping applies to both phrasings.
    """

    def __init__(self, original: ProjectDeployerError) -> None:
        super().__init__(original.cli_message)
        self.exit_code = original.exit_code

    @staticmethod
    def of(exc: ProjectDeployerError) -> ProjectDeployerError:
        """``exc`` itself when it has one phrasing, else its command-line phrasing."""
        return _CliPhrased(exc) if exc.cli_message else exc
