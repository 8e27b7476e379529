"""One call per server (or per named item), in parallel, every error kept under its name.

Every place that works on many servers at once goes through :func:`fan_out`: the deploy's
steps (deploy/orchestrator.py), images (deploy/images.py), status, logs, and finding the server
that holds a container. At most ``max_workers`` calls run at once; an optional per-call
``timeout`` abandons a call that hangs (its thread finishes in the background) so one dead
server never holds the others up; nothing is retried here (SSH connections retry themselves).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from .errors import ProjectDeployerError

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - the item type


class FanOutTimeout(ProjectDeployerError, TimeoutError):
    """A fanned-out call did not finish within the per-server timeout (it was abandoned)."""


class FanOutFailed(ProjectDeployerError):
    """Some servers of a fan-out failed: one line per server."""

    def __init__(self, what: str, errors: Mapping[str, BaseException]) -> None:
        self.errors = dict(errors)
        lines = [f"{what} failed on {len(self.errors)} server(s):"]
        lines += [f"  {name}: {one_line(exc)}" for name, exc in self.errors.items()]
        super().__init__("\n".join(lines))


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class _Call:
    """One item's call in a fan-out."""

    def __init__(self, item: Any, name: str) -> None:
        self.item = item
        self.name = name
        self.started = 0.0
        self.done = False
        self.value: Any = None


def _name_of(item: Any) -> str:
    return str(getattr(item, "name", item))


def fan_out(
    items: Iterable[I],
    fn: Callable[[I], T],
    *,
    max_workers: int = 8,
    timeout: float | None = None,
    name: Callable[[I], str] = _name_of,
) -> dict[str, T | BaseException]:
    """``fn(item)`` for every item (servers, by default named by ``.name``) in parallel:
    ``{name: result or the exception}``, in the order of ``items``.

    At most ``max_workers`` calls run at once. A call running longer than ``timeout`` seconds
    (counted from its own start) is abandoned and recorded as :class:`FanOutTimeout`; its thread
    cannot be killed and finishes in the background (so give ``fn``'s commands timeouts too),
    but it no longer holds a slot, so the whole fan-out takes at most about
    ``ceil(len(items) / max_workers) * timeout``. Nothing is retried here (connection
    establishment is retried inside each server); every error is kept under its item's name.
    """
    calls = [_Call(item, name(item)) for item in items]
    names = [call.name for call in calls]
    if len(set(names)) != len(names):
        raise ValueError(f"fan_out needs distinct names, got {names}")
    cond = threading.Condition()
    queue = list(calls)
    running: list[_Call] = []
    results: dict[str, Any] = {}

    def work(call: _Call) -> None:
        try:
            call.value = fn(call.item)
        except BaseException as exc:  # noqa: BLE001 - kept and returned under the item's name
            call.value = exc
        with cond:
            call.done = True
            cond.notify_all()

    with cond:
        while queue or running:
            while queue and len(running) < max(1, max_workers):
                call = queue.pop(0)
                call.started = time.monotonic()
                running.append(call)
                threading.Thread(target=work, args=(call,), name=f"pd-fanout-{call.name}", daemon=True).start()
            now = time.monotonic()
            for call in list(running):
                if call.done:
                    results[call.name] = call.value
                    running.remove(call)
                elif timeout is not None and now - call.started >= timeout:
                    results[call.name] = FanOutTimeout(f"server {call.name}: no result within {timeout:g}s (abandoned)")
                    running.remove(call)
            if running and not any(call.done for call in running):
                waits = [call.started + timeout - now for call in running] if timeout is not None else []
                cond.wait(max(0.0, min(waits)) if waits else None)
    return {n: results[n] for n in names}


def failures(results: Mapping[str, object]) -> dict[str, BaseException]:
    """The failed entries of a :func:`fan_out` result."""
    return {name: value for name, value in results.items() if isinstance(value, BaseException)}


def successes(results: Mapping[str, T | BaseException]) -> dict[str, T]:
    """The entries of a :func:`fan_out` result that did not fail."""
    return {name: value for name, value in results.items() if not isinstance(value, BaseException)}


def raise_for_failures(results: Mapping[str, T | BaseException], what: str = "operation") -> dict[str, T]:
    """The results when every server succeeded; otherwise :class:`FanOutFailed` naming each failure."""
    errors = failures(results)
    if errors:
        raise FanOutFailed(what, errors)
    return successes(results)


__all__ = ["FanOutFailed", "FanOutTimeout", "failures", "fan_out", "one_line", "raise_for_failures", "successes"]
