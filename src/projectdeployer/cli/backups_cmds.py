"""``projectdeployer backups list|run|pull|restore``: the backups of stateful services."""

from __future__ import annotations

import click
import pluggy

from ..api.by_name import BackupManager
from .output import print_json, print_table
from .params import ENV
from .project_cmds import open_project


def register(cli: click.Group, manager: pluggy.PluginManager) -> None:
    """Attach the ``backups`` group to ``cli``."""
    env_option = click.option("--env", "env", type=ENV, default="dev", show_default=True, help="Environment.")

    @cli.group()
    def backups() -> None:
        """Backups of the stateful services (PostgreSQL, Redis, OpenSearch)."""

    def manager_for(ctx: click.Context, env: str, quiet: bool) -> BackupManager:
        log = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
        return BackupManager(open_project(ctx), env, log=log)

    @backups.command("list")
    @click.argument("service", required=False)
    @env_option
    @click.option("--json", "as_json", is_flag=True, help="Print the backups as JSON.")
    @click.pass_context
    def list_(ctx: click.Context, service: str | None, env: str, as_json: bool) -> None:
        """The backups of SERVICE (default: every backed-up service), oldest first, each checked
        against its checksum: only "verified" ones can be restored."""
        rows = manager_for(ctx, env, as_json).list_backups(service)
        if as_json:
            print_json(rows)
            return
        print_table(
            f"backups ({env}, times in UTC)",
            ["service", "timestamp", "size MB", "age h", "status", "file"],
            [(r["service"], r["timestamp"], f"{r['size_mb']:.3f}", f"{r['age_hours']:.1f}", r["status"], r["file"]) for r in rows],
        )

    @backups.command("run")
    @click.argument("service")
    @env_option
    @click.option("--json", "as_json", is_flag=True, help="Print the new backup as JSON.")
    @click.pass_context
    def run(ctx: click.Context, service: str, env: str, as_json: bool) -> None:
        """Back SERVICE up now (outside its schedule)."""
        backup = manager_for(ctx, env, as_json).run_backup(service)
        if as_json:
            print_json(backup.as_dict())
        else:
            click.echo(f"{service}: {backup.file} ({backup.size_bytes} bytes, {backup.status})")

    @backups.command("pull")
    @click.argument("service", required=False)
    @env_option
    @click.option("--json", "as_json", is_flag=True, help="Print the local paths as JSON.")
    @click.pass_context
    def pull(ctx: click.Context, service: str | None, env: str, as_json: bool) -> None:
        """Copy the verified backups to this machine ({home}/{project}/{env}/backups/{server}/)."""
        paths = manager_for(ctx, env, as_json).pull_backups(service)
        if as_json:
            print_json([str(p) for p in paths])
        else:
            for path in paths:
                click.echo(str(path))

    @backups.command("restore")
    @click.argument("service")
    @click.argument("timestamp", default="latest")
    @env_option
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @click.pass_context
    def restore(ctx: click.Context, service: str, timestamp: str, env: str, yes: bool, as_json: bool) -> None:
        """Replace SERVICE's data with its backup TIMESTAMP ("latest" or YYYYmmdd_HHMMSS).

        Destructive, and the service is unavailable while it runs: asks first unless --yes."""
        manager = manager_for(ctx, env, as_json)
        backup = manager.latest(service) if timestamp == "latest" else None
        what = backup.file if backup else f"the backup taken at {timestamp}"
        if not yes:
            click.confirm(f"Replace ALL data of {service} in {manager.project}/{env} with {what}? The service is unavailable meanwhile", abort=True, err=True)
        report = manager.restore(service, timestamp)
        if as_json:
            print_json({"service": report.service, "backup": report.backup, "timestamp": report.timestamp, "downtime_seconds": round(report.downtime_seconds, 3), "seconds": round(report.seconds, 2)})
        else:
            click.echo(f"{service}: restored {report.backup}; downtime {report.downtime_seconds:.2f}s (took {report.seconds:.1f}s)")
