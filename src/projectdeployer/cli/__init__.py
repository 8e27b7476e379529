"""The ``projectdeployer`` command line.

:func:`make_cli` builds the click group for a plugin manager (the global one by default) and lets
every plugin add commands through ``register_commands``; :func:`main` is the console script and
turns expected errors into one red line per problem with the error's exit code.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click
import pluggy

from ..core.errors import ConfigError, ProjectDeployerError
from .output import error_lines
from .safegroup import SafeGroup


def make_cli(manager: pluggy.PluginManager | None = None) -> click.Group:
    """The root command group, with the core commands and every plugin's commands."""
    from ..plugins import load_plugins, pm
    from . import backups_cmds, deploy_cmds, plugins_cmd, project_cmds, secrets_cmds
    from . import destroy_cmd, sync_cmds

    target = pm if manager is None else manager
    if manager is None:
        load_plugins()

    @click.group(cls=SafeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
        ctx.obj = {"file": file, "project": project, "manager": target}
        from .notices import warnings_as_lines

        # The API's warnings (plain-text credentials) print as one line each during the command.
        ctx.with_resource(warnings_as_lines())

    project_cmds.register(cli, target)
    deploy_cmds.register(cli, target)
    plugins_cmd.register(cli, target)
    secrets_cmds.register(cli, target)
    backups_cmds.register(cli, target)
    sync_cmds.register(cli, target)
    destroy_cmd.register(cli, target)
    target.hook.register_commands(cli=cli)
    return cli


def _which_project(ctx: click.Context, file: str | None, project: str | None) -> tuple[str | None, str | None]:
    """``(file, project)`` once flags and environment variables are weighed.

    An explicit flag wins over the other one's environment variable (``-p other`` with
    ``$PROJECTDEPLOYER_FILE`` set means the project ``other``); both flags at once are refused.
    Both variables and no flag keep the documented order: the file first.
    """
    from click.core import ParameterSource

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
