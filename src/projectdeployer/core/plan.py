"""The plan of a deploy and what a finished deploy did: ONE plan type, for every provider.

:class:`Plan` is what ``plan`` and ``deploy --dry-run`` print (as tables or ``--json``) and what
the lifecycle hooks receive (``before_deploy``, ``deploy_failed``, and ``after_deploy`` inside
:class:`DeployResult`). ``deploy/planner.py`` makes it, read live and changing nothing: the
servers to keep, create and destroy (:class:`ServerPlan`), per service what changes on which
servers (:class:`ServicePlan`), the scheduler container (:class:`SchedulerPlan`), the servers that
could not be read, and, derived from those, the ordered :attr:`Plan.steps` and :attr:`Plan.errors`.
This machine is a fleet of one server: its plan has the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.frozen(kw_only=True)
class Step:
    """One idempotent action of a plan."""

    action: str
    service: str | None = None
    server: str | None = None
    detail: str = ""


@attrs.frozen(kw_only=True)
class ServerPlan:
    """What the deploy does to one server of the environment."""

    zone: str
    #: Its name, or ``zone#n (new)`` for one to create.
    server: str
    #: keep, create, destroy
    action: str
    #: Its state now (``""`` for one to create) and after the deploy.
    state: str
    next_state: str
    #: The services it runs after the deploy.
    services: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ServicePlan:
    """What the deploy does to one service across its servers (a scheduled job's container too)."""

    service: str
    #: create, update, unchanged, remove, error
    action: str
    reason: str
    #: Its startup group (services of a group are deployed together, groups in order).
    group: int
    #: It runs on one server and is stopped, then started (a database; a job container too).
    stateful: bool
    #: The servers it will run on (as named in :class:`ServerPlan`).
    servers: tuple[str, ...] = ()
    image: str = ""
    #: Why this machine builds a new image first (its input hash changed, or there is none yet);
    #: ``None``: no build (``plan`` shows the action as ``build+create`` / ``build+update``).
    build: str | None = None
    #: The slot serving now and the one the deploy starts, when every server agrees (always with
    #: one server); ``None`` otherwise (and ``next_slot`` for what stays unchanged).
    current_slot: str | None = None
    next_slot: str | None = None


@attrs.frozen(kw_only=True)
class SchedulerPlan:
    """What the deploy does to the environment's scheduler container."""

    #: create, update, unchanged, remove, error, skip (only backups, and no image for it)
    action: str
    reason: str
    #: The scheduled services in its job table.
    jobs: tuple[str, ...] = ()
    image: str = ""


def _steps(plan: Plan) -> tuple[Step, ...]:
    """One step per server to create or destroy, then one per service in startup order, then
    the scheduler's."""
    steps = [Step(action=f"{r.action} server", server=r.server, detail=", ".join(r.services)) for r in plan.servers if r.action != "keep"]
    steps += [Step(action=p.action, service=p.service, server=",".join(p.servers) or None, detail=p.reason) for p in plan.services]
    if plan.scheduler is not None:
        steps.append(Step(action=plan.scheduler.action, service="scheduler", detail=plan.scheduler.reason))
    return tuple(steps)


@attrs.frozen(kw_only=True)
class Plan:
    """What a deploy of ``project``/``env`` is about to do.

    Made by the planner with its :attr:`servers`, :attr:`services` and :attr:`scheduler`;
    :attr:`steps` is derived from them (a plan built with ``steps`` alone, as a plugin's test
    may build one, keeps them).
    """

    project: str
    env: str
    servers: tuple[ServerPlan, ...] = ()
    #: In startup order, then the services no longer in the project file (``remove``).
    services: tuple[ServicePlan, ...] = ()
    #: The environment's scheduler container (on the server of its jobs); ``None``: none
    #: needed and none running.
    scheduler: SchedulerPlan | None = None
    #: Servers that could not be read (named with the error).
    unreachable: Mapping[str, str] = attrs.field(factory=dict)
    #: The plan as ordered actions: servers to create or destroy, services, the scheduler.
    steps: tuple[Step, ...] = attrs.field(default=attrs.Factory(_steps, takes_self=True))

    @property
    def changes(self) -> list[ServicePlan]:
        """The services the deploy changes."""
        return [s for s in self.services if s.action != "unchanged"]

    @property
    def errors(self) -> list[str]:
        """Why the deploy cannot be carried out (a service or the scheduler that cannot be
        deployed); empty when it can."""
        found = [p.reason for p in self.services if p.action == "error"]
        if self.scheduler is not None and self.scheduler.action == "error":
            found.append(self.scheduler.reason)
        return found


@attrs.frozen(kw_only=True)
class ServiceOutcome:
    """What a deploy did to one service."""

    service: str
    action: str
    slot: str | None
    release: str | None
    seconds: float
    #: Stateful restarts: how long the service accepted no connections.
    gap_seconds: float | None = None


@attrs.frozen(kw_only=True)
class DeployResult:
    """What a finished deploy did."""

    plan: Plan
    releases: dict[str, str] = attrs.field(factory=dict)
    seconds: float = 0.0


__all__ = ["DeployResult", "Plan", "SchedulerPlan", "ServerPlan", "ServiceOutcome", "ServicePlan", "Step"]
