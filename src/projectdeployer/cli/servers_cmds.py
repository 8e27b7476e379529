"""``servers check`` and ``servers setup``: each server of an environment, read (see
:mod:`..environment.servercheck`) or made ready for deploys (:mod:`..environment.serversetup`)
over SSH."""

from __future__ import annotations

import click
import pluggy

from ..core.errors import ProjectDeployerError
from ..environment.servercheck import check_servers
from ..environment.serversetup import setup_servers
from .output import print_json, print_table
from .params import ENV
from .project_cmds import open_project


def register(cli: click.Group, manager: pluggy.PluginManager) -> None:
    """Attach the ``servers`` command group to ``cli``."""

    @cli.group()
    def servers() -> None:
        """Check the servers of an environment, or set them up, over SSH."""

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

    @servers.command("setup")
    @click.option("--env", "env", type=ENV, default="dev", show_default=True, help="Environment.")
    @click.option("--apt-proxy", default=None, metavar="URL", help="HTTP proxy apt-get uses on the servers (e.g. http://10.0.0.2:3142, an apt-cacher-ng).")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @click.pass_context
    def setup_cmd(ctx: click.Context, env: str, apt_proxy: str | None, as_json: bool) -> None:
        """Make every server ready for deploys: Docker (Debian's docker.io) when missing, the data
        root, the sidecar's and the scheduler's images.

        For Debian and Ubuntu servers, as root or with passwordless sudo; in parallel; safe to
        run twice (what is there already is left alone). Exits 1 when a server could not be set up.
        """
        project = open_project(ctx)
        log = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
        results = setup_servers(project.environment(env, log=log), apt_proxy=apt_proxy)
        failed = sorted(name for name, r in results.items() if isinstance(r, str))
        if as_json:
            print_json(
                {
                    "project": project.name,
                    "env": env,
                    "ok": not failed,
                    "servers": [r.to_dict() if not isinstance(r, str) else {"server": name, "error": r} for name, r in results.items()],
                }
            )
        else:
            print_table(
                f"setup of the servers of {project.name}/{env}",
                ["server", "system", "docker", "images copied", "seconds"],
                [
                    (name, "-", f"FAILED: {r}", "-", "-") if isinstance(r, str) else (name, r.os, f"{r.docker} ({r.docker_version})", ", ".join(r.images_copied) or "none", f"{r.seconds:.1f}")
                    for name, r in results.items()
                ],
            )
        if failed:
            raise ProjectDeployerError(f"{len(failed)} server(s) of {project.name}/{env} could not be set up: {', '.join(failed)}")
        if not results:
            click.echo(f"{project.name}/{env} has no server yet", err=True)
