"""``destroy --env ENV``: take an environment down for good (see :mod:`..destroy.teardown`).

The command reads what would go (changing nothing), shows it, asks (``--yes`` does not; a
stdin that is not a terminal is refused rather than read as an answer), then removes under the
environment's deploy lock, refusing if the environment grew in between. With ``--with-data`` the
question names the data and the environment's name must be typed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import click
import pluggy

from ..core.errors import ProjectDeployerError
from ..destroy.teardown import DestroyPlan, Item, Teardown, TeardownIncomplete, TeardownReport
from .output import print_json, print_table
from .params import ENV, SECONDS
from .project_cmds import open_project


class NotConfirmed(ProjectDeployerError):
    """The user did not agree (or could not be asked); nothing was changed."""


class NoTerminal(NotConfirmed):
    """No terminal to ask on and no ``--yes``: a usage error."""

    exit_code = 2


def _rows(items: Sequence[Item]) -> list[tuple[str, str, str, str]]:
    return [(i.where, i.kind, i.name, i.note) for i in items]


def show_plan(plan: DestroyPlan, *, err: bool = False) -> None:
    """What goes and what stays, as two tables (on stderr with ``err``, beside --json)."""
    title = f"destroy {plan.project}/{plan.env}" + (" with its data" if plan.with_data else "")
    if plan.remove:
        print_table(f"{title}: to remove", ["where", "what", "name", "note"], _rows(plan.remove), err=err)
    if plan.keep:
        print_table(f"{title}: kept", ["where", "what", "name", "note"], _rows(plan.keep), err=err)
    for name, why in plan.unreachable.items():
        click.echo(f"unreachable: {name}: {why} (what is on it is not listed)", err=True)


def _data_lines(items: Sequence[Item]) -> list[str]:
    return [f"  {i.kind} {i.name} ({'on ' + i.where if i.where != 'this machine' else 'on this machine'})" for i in items]


def _can_ask(env: str) -> None:
    """Refuse, before anything is read, to ask where no one can answer (a script, a pipe):
    an answer read from a pipe is not a decision."""
    if not sys.stdin.isatty():  # click's test runner replaces sys.stdin too
        raise NoTerminal(f"destroy --env {env}: stdin is not a terminal, so there is no one to ask: pass --yes to remove what 'destroy --env {env} --dry-run' lists; nothing was changed")


def _ask(plan: DestroyPlan, as_json: bool) -> None:
    """Ask on the terminal; raise :class:`NotConfirmed` unless the user agrees."""
    who = f"{plan.project}/{plan.env}"
    show_plan(plan, err=as_json)
    try:
        data = [i for i in plan.remove if i.data]
        if data:
            click.echo(f"This deletes the data of {who} for good:", err=True)
            for line in _data_lines(data):
                click.echo(line, err=True)
            typed = click.prompt(f"Type the environment's name ({plan.env}) to delete {who} with its data", default="", show_default=False, err=True)
            if typed.strip() != plan.env:
                raise NotConfirmed(f"destroy: not confirmed (expected {plan.env!r}); nothing was changed")
            return
        kept = " (its data volumes and backups are kept)" if plan.kept_data else ""
        if not click.confirm(f"Remove these {len(plan.remove)} things of {who}{kept}?", default=False, err=True):
            raise NotConfirmed("destroy: not confirmed; nothing was changed")
    except click.Abort:  # Ctrl-D / Ctrl-C at the question
        raise NotConfirmed("destroy: not confirmed; nothing was changed") from None


def _kept_lines(plan: DestroyPlan) -> list[str]:
    """Where the data kept is, and how it goes too."""
    data = plan.kept_data
    if not data:
        return []
    lines = [f"kept: {i.kind} {i.name} on {i.where} ({i.note})" for i in data]
    lines.append(f"a deploy of {plan.env} starts afresh on this data; 'destroy --env {plan.env} --with-data' removes it")
    return lines


def _show_report(report: TeardownReport, as_json: bool) -> None:
    if as_json:
        print_json(report.to_json())
        return
    plan = report.plan
    if report.removed:
        print_table(f"removed from {plan.project}/{plan.env} in {report.seconds:.1f}s", ["where", "what", "name"], [(i.where, i.kind, i.name) for i in report.removed])
    elif not report.failed:
        click.echo(f"{plan.project}/{plan.env}: nothing to remove")
    for line in _kept_lines(plan):
        click.echo(line)


def register(cli: click.Group, manager: pluggy.PluginManager) -> None:
    """Attach ``destroy`` to ``cli``."""

    @cli.command()
    @click.option("--env", "env", type=ENV, required=True, help="The environment to take down.")
    @click.option("--with-data", is_flag=True, help="Also remove its data volumes and backups (on servers: destroy the servers).")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--dry-run", is_flag=True, help="Show what would be removed and kept; change nothing.")
    @click.option("--lock-wait", type=SECONDS, default=0.0, show_default=True, help="Seconds to wait for a deploy to finish.")
    @click.option("--json", "as_json", is_flag=True, help="Print the plan, or what was removed and kept, as JSON.")
    @click.pass_context
    def destroy(ctx: click.Context, env: str, with_data: bool, yes: bool, dry_run: bool, lock_wait: float, as_json: bool) -> None:
        """Take the environment ENV down: its containers, network, unused images and state.

        Data volumes and backups are kept (and named) unless --with-data. Asks first, showing
        what goes, unless --yes; --dry-run only shows it.
        """
        project = open_project(ctx)
        log: Callable[[str], None] = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
        # The user's mistakes first, before any engine or server is read.
        Teardown(project.environment(env, log=log)).check_known()
        if not (yes or dry_run):
            _can_ask(env)
        plan = project.destroy(env, with_data, dry_run=True, log=log)
        if dry_run:
            if as_json:
                print_json(plan.to_json())
            else:
                show_plan(plan)
                if plan.empty:
                    click.echo(f"{plan.project}/{env}: nothing to remove")
            return
        if plan.empty and not plan.unreachable:
            _show_report(TeardownReport(plan=plan), as_json)
            return
        if not yes:
            _ask(plan, as_json)
        try:
            report = project.destroy(env, with_data, agreed=plan, lock_wait=lock_wait, log=log)
        except TeardownIncomplete as exc:
            _show_report(exc.report, as_json)
            raise
        _show_report(report, as_json)
