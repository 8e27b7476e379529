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
class DeployResult:
    """What a finished deploy did."""

    plan: Plan
    releases: dict[str, str] = attrs.field(factory=dict)
    seconds: float = 0.0
