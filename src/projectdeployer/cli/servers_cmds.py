"""``servers check``: each server of an environment, read over SSH (see
:mod:`..environment.servercheck`)."""

from __future__ import annotations

import click
import pluggy

from ..core.errors import ProjectDeployerError
from ..environment.servercheck import check_servers
from .output import print_json, print_table
from .params import ENV
from .project_cmds import open_project


def register(cli: click.Group, manager: pluggy.PluginManager) -> None:
    """Attach the ``servers`` command group to ``cli``."""

    @cli.group()
    def servers() -> None:
        """Check the servers of an environment over SSH."""

    @servers.command("check")
    @click.option("--env", "env", type=ENV, default="dev", show_default=True, help="Environment.")
    @click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
    @click.pass_context
    def check_cmd(ctx: click.Context, env: str, as_json: bool) -> None:
        """Per server: SSH reachable, host key pinned, Docker version, free disk, what of ours runs there.

        Changes nothing on the servers (a host key seen for the first time is pinned, as any
        connection does). Exits 1 when a server cannot be reached or has no Docker engine.
        """
        project = open_project(ctx)
        checks = check_servers(project.environment(env, log=lambda line: None))
        if as_json:
            print_json({"project": project.name, "env": env, "ok": all(c.ok for c in checks), "servers": [c.to_dict() for c in checks]})
        else:
            print_table(
                f"servers of {project.name}/{env}",
                ["server", "zone", "state", "address", "ssh", "host key", "docker", "disk free", "ours"],
                [
                    (
                        c.server,
                        c.zone,
                        c.state,
                        c.address,
                        "ok" if c.reachable else f"FAILED: {c.error}",
                        c.host_key or "-",
                        c.docker or (f"FAILED: {c.error}" if c.reachable else "-"),
                        f"{c.disk_free_gib} GiB" if c.disk_free_gib is not None else "-",
                        f"{len(c.containers)} container(s)" if c.containers else "nothing",
                    )
                    for c in checks
                ],
            )
        failed = [c.server for c in checks if not c.ok]
        if failed:
            raise ProjectDeployerError(f"{len(failed)} server(s) of {project.name}/{env} failed the check: {', '.join(failed)}")
        if not checks:
            click.echo(f"{project.name}/{env} has no server yet", err=True)
