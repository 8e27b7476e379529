"""Parameter types shared by the commands."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

from ..core.errors import shown
from ..project.validation import env_name_problem

if TYPE_CHECKING:  # click 8.5 made ParamType generic; the 8.1-8.4 pyproject allows cannot subscript it at run time
    _StrType = click.ParamType[str, Any]
    _FloatType = click.ParamType[float, Any]
else:
    _StrType = _FloatType = click.ParamType


class EnvironmentName(_StrType):
    """An environment name, checked like one in a project file: ``--env ../other`` is a usage
    error naming the flag (exit 2), before anything is read or written."""

    name = "env"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        problem = env_name_problem(value)
        if problem is not None:
            self.fail(f"{shown(value)}: {problem}", param, ctx)
        return str(value)


#: The type of every ``--env`` option and ``ENV`` argument.
ENV = EnvironmentName()


class Seconds(_FloatType):
    """A duration in seconds: a finite number from 0 to ``maximum`` (``nan`` and ``inf``, which
    click's FLOAT takes, would wait forever or never)."""

    name = "seconds"

    def __init__(self, maximum: float = 86400.0) -> None:
        self.maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{shown(value)} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or not 0 <= seconds <= self.maximum:
            self.fail(f"{shown(value)}: expected seconds from 0 to {self.maximum:g}", param, ctx)
        return seconds


#: Seconds a command waits for another (a lock, a drain): at most a day.
SECONDS = Seconds()
