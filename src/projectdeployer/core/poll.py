"""The one way to wait for something and the one way to try something again.

Every deadline loop of the package goes through :func:`wait_until` (a health check, a lock, a
proxy's workers, an engine coming up) and every retry of a flaky call through :func:`retry`,
so a timeout always says what was awaited, for how long, and what the last look showed.

Standard library only: providers and plugins may use it. The in-container agents are scripts
copied into images and keep their own loops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .errors import ProjectDeployerError

T = TypeVar("T")

#: What a probe answers: ``(done, detail)``; ``detail`` is the value returned once done, or the
#: reason it is not done yet (kept for the timeout's message).
Probe = Callable[[], "tuple[bool, T]"]


class WaitTimeout(ProjectDeployerError, TimeoutError):
    """:func:`wait_until` ran out of time; ``last`` holds the probe's last detail."""

    def __init__(self, message: str, last: object = None) -> None:
        super().__init__(message)
        self.last = last


def wait_until(
    probe: Callable[[], tuple[bool, T]],
    *,
    timeout: float,
    interval: float = 0.5,
    what: str = "condition",
    error: Callable[[str], Exception] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``probe`` until it answers ``(True, value)`` and return ``value``.

    The probe runs at least once, then every ``interval`` seconds until ``timeout`` seconds have
    passed since the first call; the last probe never starts after the deadline. On timeout,
    raises ``error(message)`` when given (so callers keep their own error type, e.g. a deploy
    failure), else :class:`WaitTimeout`; the message names ``what``, the time waited and the
    probe's last detail.
    """
    deadline = clock() + timeout
    while True:
        done, detail = probe()
        if done:
            return detail
        left = deadline - clock()
        if left <= 0:
            message = f"{what}: not reached within {timeout:g}s"
            if detail not in (None, ""):
                message += f" (last: {detail})"
            if error is not None:
                raise error(message)
            raise WaitTimeout(message, detail)
        sleep(min(interval, left))


def retry(
    fn: Callable[[], T],
    *,
    attempts: int,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    backoff: float = 0.5,
    factor: float = 2.0,
    max_backoff: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """``fn()``, tried up to ``attempts`` times while it raises ``retry_on``.

    Waits ``backoff`` seconds after the first failure, multiplied by ``factor`` each time (at
    most ``max_backoff``). Any other exception passes through at once; the last ``retry_on``
    error is re-raised when every attempt failed. ``on_retry(attempt, exc)`` is told before
    each wait (to log it). Only for idempotent calls: never retry a create blindly.
    """
    if attempts < 1:
        raise ValueError("retry needs at least one attempt")
    delay = backoff
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except retry_on as exc:
            if attempt == attempts:
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            sleep(min(delay, max_backoff))
            delay *= factor
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["Probe", "WaitTimeout", "retry", "wait_until"]
