"""Commands that act on running environments: plan, deploy, status, logs, rollback."""

from __future__ import annotations

from typing import Any

import click
import pluggy

from ..backups.manager import BackupManager
from ..core.errors import ProjectDeployerError
from ..core.plan import Plan, ServicePlan
from .output import print_json, print_table
from .params import ENV, SECONDS
from .project_cmds import open_project


def plan_action(p: ServicePlan) -> str:
    """``build+create`` / ``build+update`` when the deploy builds the service's image first."""
    return f"build+{p.action}" if p.build else p.action


def plan_slot(p: ServicePlan) -> str:
    """``a -> b``: the slot serving now and the one the deploy starts (when the servers agree)."""
    if p.next_slot and p.next_slot != p.current_slot:
        return f"{p.current_slot or '-'} -> {p.next_slot}"
    return p.current_slot or ""


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as JSON, one shape for every provider (this machine's is one server)."""
    scheduler = plan.scheduler
    return {
        "project": plan.project,
        "env": plan.env,
        "servers": [{"zone": r.zone, "server": r.server, "action": r.action, "state": r.state or None, "next_state": r.next_state, "services": list(r.services)} for r in plan.servers],
        "services": [
            {
                "service": p.service,
                "action": p.action,
                "build": p.build,
                "reason": p.reason,
                "group": p.group,
                "servers": list(p.servers),
                "current_slot": p.current_slot,
                "next_slot": p.next_slot,
                "image": p.image,
            }
            for p in plan.services
        ],
        "scheduler": None if scheduler is None else {"action": scheduler.action, "reason": scheduler.reason, "jobs": list(scheduler.jobs), "image": scheduler.image},
        "unreachable": dict(plan.unreachable),
    }


def _when(stamp: str | None) -> str:
    """Docker's ``2024-05-01T02:00:00.123456789Z`` as ``2024-05-01 02:00:00`` (UTC)."""
    return stamp[:19].replace("T", " ") if stamp else ""


def print_plan(title: str, plan: Plan) -> None:
    """The plan as tables, one shape for every provider: the servers, then the services."""
    print_table(
        f"{title}: servers", ["zone", "server", "action", "state now", "state next", "services"], [(r.zone, r.server, r.action, r.state, r.next_state, ", ".join(r.services)) for r in plan.servers]
    )
    print_table(
        f"{title}: services",
        ["group", "service", "action", "why", "servers", "slot", "image"],
        [(p.group, p.service, plan_action(p), p.reason, ", ".join(p.servers), plan_slot(p), p.image) for p in plan.services],
    )
    if plan.scheduler is not None:
        s = plan.scheduler
        click.echo(f"scheduler: {s.action} ({s.reason}){'; jobs: ' + ', '.join(s.jobs) if s.jobs else ''}")
    for name, error in plan.unreachable.items():
        click.echo(f"unreachable: {name}: {error}", err=True)


def register(cli: click.Group, manager: pluggy.PluginManager) -> None:
    """Attach the deploy commands to ``cli``."""
    env_option = click.option("--env", "env", type=ENV, default="dev", show_default=True, help="Environment.")

    @cli.command()
    @env_option
    @click.option("--service", default=None, help="Only this service.")
    @click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
    @click.pass_context
    def plan(ctx: click.Context, env: str, service: str | None, as_json: bool) -> None:
        """Show what a deploy would change, and change nothing."""
        result = open_project(ctx).plan(env, service)
        if as_json:
            print_json(plan_json(result))
        else:
            print_plan(f"plan for {result.project}/{env}", result)

    @cli.command()
    @env_option
    @click.option("--service", default=None, help="Deploy only this service.")
    @click.option("--no-build", is_flag=True, help="Use the images already built.")
    @click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
    @click.option("--lock-wait", type=SECONDS, default=0.0, show_default=True, help="Seconds to wait for another deploy to finish.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @click.pass_context
    def deploy(ctx: click.Context, env: str, service: str | None, no_build: bool, dry_run: bool, lock_wait: float, as_json: bool) -> None:
        """Build and deploy the project (or one service) with zero-downtime switches."""
        project = open_project(ctx)
        log = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
        if dry_run:
            plan = project.deploy(env=env, service=service, build=not no_build, dry_run=True, lock_wait=lock_wait, log=log)
            if as_json:
                print_json(plan_json(plan))
            else:
                print_plan(f"plan for {plan.project}/{env} (dry run)", plan)
            return
        result = project.deploy(env=env, service=service, build=not no_build, lock_wait=lock_wait, log=log)
        rows = [(o.service, o.action, o.slot or "", o.release or "", f"{o.seconds:.1f}", "" if o.gap_seconds is None else f"{o.gap_seconds:.1f}") for o in result.outcomes]
        if as_json:
            print_json(
                {
                    "seconds": round(result.seconds, 2),
                    "urls": result.urls,
                    "services": [
                        {"service": o.service, "action": o.action, "slot": o.slot, "release": o.release, "seconds": round(o.seconds, 2), "gap_seconds": o.gap_seconds} for o in result.outcomes
                    ],
                }
            )
            return
        print_table(f"deployed {project.name}/{env} in {result.seconds:.1f}s", ["service", "action", "slot", "release", "seconds", "gap (stateful)"], rows)
        for name, url in result.urls.items():
            click.echo(f"{name}: {url}")

    @cli.command()
    @env_option
    @click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
    @click.pass_context
    def status(ctx: click.Context, env: str, as_json: bool) -> None:
        """Servers per zone, and each service's container, health, release and URL."""
        project = open_project(ctx)
        zones = project.status(env)
        services = project.service_status(env)
        try:
            # An environment without a server yet has no backups to read (this machine's has one).
            backups = BackupManager(project, env, log=lambda line: None).status() if zones else []
        except ProjectDeployerError as exc:  # the servers and services are still worth showing
            backups = []
            click.echo(f"backups: {exc}", err=True)
        if as_json:
            print_json({"zones": zones, "services": services, "backups": backups})
            return
        print_table(f"{project.name}/{env} servers", ["zone", "active", "reserve", "destroying", "total"], [(z, c["active"], c["reserve"], c["destroying"], c["total"]) for z, c in zones.items()])
        print_table(
            f"{project.name}/{env} services",
            ["service", "type", "state", "health", "slot", "release", "host port", "internal", "url"],
            [(r["service"], r["type"], r["state"], r["health"] or "", r["slot"] or "", r["release"] or "", r["host_port"] or "", r["internal_port"] or "", r["url"] or "") for r in services],
        )
        scheduled = [r for r in services if r["schedule"]]
        if scheduled:
            print_table(
                f"{project.name}/{env} scheduled jobs (UTC)",
                ["service", "schedule", "state", "health", "last run", "finished", "exit code"],
                [
                    (r["service"], r["schedule"], r["state"], r["health"] or "", _when(r["last_run"]) or "never", _when(r["last_finished"]), "" if r["exit_code"] is None else r["exit_code"])
                    for r in scheduled
                ],
            )
        if backups:
            print_table(
                f"{project.name}/{env} backups (UTC)",
                ["service", "schedule", "keep days", "health", "last run", "exit code", "latest verified", "verified"],
                [
                    (
                        r["service"],
                        r["schedule"],
                        r["retention_days"],
                        r["health"] or "",
                        _when(r["last_run"]) or "never",
                        "" if r["exit_code"] is None else r["exit_code"],
                        r["latest"] or "none",
                        r["verified_count"],
                    )
                    for r in backups
                ],
            )

    @cli.command("run")
    @click.argument("service")
    @env_option
    @click.option("--wait", is_flag=True, help="Wait for the run to end, print its output and exit with its exit code.")
    @click.pass_context
    def run_job(ctx: click.Context, service: str, env: str, wait: bool) -> None:
        """Run the scheduled service SERVICE now, outside its schedule."""
        project = open_project(ctx)
        code = project.run_job(service, env=env, wait=wait, output=click.echo, log=lambda line: click.echo(line, err=True))
        if wait:
            click.echo(f"{service}: exit code {code}", err=True)
            ctx.exit(code)

    @cli.command()
    @click.argument("service")
    @env_option
    @click.option("-n", "--lines", type=click.IntRange(0, 100_000), default=100, show_default=True, help="How many lines from the end.")
    @click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
    @click.option("--json", "as_json", is_flag=True, help="Print the lines as a JSON array.")
    @click.pass_context
    def logs(ctx: click.Context, service: str, env: str, lines: int, follow: bool, as_json: bool) -> None:
        """Print the log lines of the container serving SERVICE."""
        project = open_project(ctx)
        stream = project.stream_logs(service, env, lines, follow=follow and not as_json)
        if as_json:
            print_json(list(stream))
            return
        for line in stream:
            click.echo(line)

    @cli.command()
    @click.argument("service")
    @env_option
    @click.option("--version", "version", default=None, help="A release id or version to go back to (default: the previous release).")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @click.pass_context
    def rollback(ctx: click.Context, service: str, env: str, version: str | None, as_json: bool) -> None:
        """Redeploy SERVICE with its previous image, with zero downtime."""
        project = open_project(ctx)
        log = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
        result = project.rollback(env=env, service=service, version=version, log=log)
        outcome = result.outcomes[0] if result.outcomes else None
        if as_json:
            print_json({"service": service, "release": outcome.release if outcome else None, "seconds": round(result.seconds, 2)})
        else:
            click.echo(f"{service}: rolled back in {result.seconds:.1f}s (release {outcome.release if outcome else '-'})")
