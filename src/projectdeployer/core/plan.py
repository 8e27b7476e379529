"""Plans and results of deploys, as passed to the lifecycle hooks.

The planner that fills these in arrives with the deploy engine; the shapes are fixed now so
plugins can be written against them.
"""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class Step:
    """One idempotent action of a plan."""

    action: str
    service: str | None = None
    server: str | None = None
    detail: str = ""


@attrs.frozen(kw_only=True)
class Plan:
    """What a deploy of ``project``/``env`` is about to do, in order."""

    project: str
    env: str
    steps: tuple[Step, ...] = ()


@attrs.frozen(kw_only=True)
class ServicePlan:
    """What the deploy will do to one service."""

    service: str
    #: create, update, unchanged, remove
    action: str
    reason: str
    group: int
    stateful: bool
    current_slot: str | None = None
    next_slot: str | None = None
    image: str = ""
    #: Why the deploy builds a new image first (its input hash changed, or there is none yet);
    #: ``None``: no build (``plan`` shows the action as ``build+create`` / ``build+update``).
    build: str | None = None


@attrs.frozen(kw_only=True)
class ServiceOutcome:
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


__all__ = ["DeployResult", "Plan", "ServiceOutcome", "ServicePlan", "Step"]
