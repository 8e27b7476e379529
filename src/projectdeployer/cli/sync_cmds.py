"""``sync push`` and ``sync pull``: the seed's ``push_config`` and ``pull_data`` from the shell.

Push sends ``config``, ``secrets`` and ``files`` of ``$PROJECTDEPLOYER_HOME/{project}/{env}`` to
every server of the environment (overwriting theirs, so it asks first unless ``--yes``); pull
fetches ``data``, ``logs``, ``backups`` and ``monitoring`` into a folder per server. See
:mod:`..sync.files`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import click
import pluggy

from ..api.by_name import FileSync
from ..sync.files import SyncFailed, SyncReport
from .output import print_json, print_table
from .params import ENV
from .project_cmds import open_project


def _file_sync(ctx: click.Context, env: str, as_json: bool) -> FileSync:
    """The environment's :class:`FileSync`; progress lines go to stderr (none with --json)."""
    log: Callable[[str], None] = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
    return FileSync(open_project(ctx), env, log=log)


def _show(sync: FileSync, action: str, reports: Sequence[SyncReport], as_json: bool) -> None:
    """Print the per-server reports as a table or as JSON."""
    if as_json:
        print_json({"project": sync.project, "env": sync.env, "action": action, "ok": all(r.ok for r in reports), "servers": [r.to_dict() for r in reports]})
        return
    print_table(
        f"{action} {sync.project}/{sync.env}",
        ["server", "address", "files", "bytes", "seconds", "result"],
        [(r.server, r.address, r.files, r.bytes, f"{r.seconds:.1f}", f"FAILED: {r.error}" if r.error else (r.note or "ok")) for r in reports],
    )


def _run(sync: FileSync, action: str, as_json: bool) -> None:
    """Run ``action`` and print every server's report, the failed ones too, before the error
    (which exits non-zero and names them) is raised again."""
    method = sync.push_config if action == "push" else sync.pull_data
    try:
        reports = method()
    except SyncFailed as exc:
        _show(sync, action, exc.reports, as_json)
        raise
    _show(sync, action, reports, as_json)


def register(cli: click.Group, manager: pluggy.PluginManager) -> None:
    """Attach the ``sync`` command group to ``cli``."""
    env_option = click.option("--env", "env", type=ENV, default="dev", show_default=True, help="Environment.")
    json_option = click.option("--json", "as_json", is_flag=True, help="Print the per-server reports as JSON.")

    @cli.group()
    def sync() -> None:
        """Send config/secrets/files to the servers; fetch data/logs/backups/monitoring back."""

    @sync.command("push")
    @env_option
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @json_option
    @click.pass_context
    def push_cmd(ctx: click.Context, env: str, yes: bool, as_json: bool) -> None:
        """Send config/, secrets/ and files/ of ENV to every server of ENV, in parallel.

        The servers' copies are replaced (files the local tree no longer has are removed
        there), so this asks first unless --yes.
        """
        file_sync = _file_sync(ctx, env, as_json)
        if not yes:
            click.confirm(
                f"Replace config/, secrets/ and files/ of {file_sync.project}/{env} on every server with the copies in {file_sync.env_root}?",
                abort=True,
                err=True,
            )
        _run(file_sync, "push", as_json)

    @sync.command("pull")
    @env_option
    @json_option
    @click.pass_context
    def pull_cmd(ctx: click.Context, env: str, as_json: bool) -> None:
        """Fetch data/, logs/, backups/ and monitoring/ of every server of ENV into
        {kind}/{server address}/ here, with each container's recent log lines."""
        _run(_file_sync(ctx, env, as_json), "pull", as_json)
