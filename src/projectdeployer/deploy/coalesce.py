"""Group commit: requests that arrive while one apply runs are applied together by the next.

The deploy switches the router once per service, and a switch is a validated reload of the
whole configuration (about a second on a busy machine). The toggles of a startup group run in
parallel, so a first deploy of 40 services queued 40 reloads one after the other behind one
lock, although a single reload can carry every route that is ready. A :class:`Coalescer`
lets the first caller apply its request while the others queue; when it is done, one of the
waiting callers applies everything that queued meanwhile, in one go.

Each caller still gets its own answer: :meth:`Coalescer.submit` returns only once an apply
that included its request finished, and raises what went wrong with it. When an apply of
several requests fails, each is applied again alone, in the order they came, so one bad
request does not fail the others (they would have passed alone).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class _Request(Generic[K, V]):
    def __init__(self, key: K, value: V) -> None:
        self.key, self.value = key, value
        self.done = False
        self.error: BaseException | None = None

    def finish(self, error: BaseException | None = None) -> None:
        self.done, self.error = True, error


class Coalescer(Generic[K, V]):
    """Applies ``(key, value)`` requests through ``apply``, many at once when they queue up.

    ``apply`` receives the requests in the order they came (a later request for the same key
    comes after an earlier one) and raises when they could not be applied; it is never called
    by two threads at once.
    """

    def __init__(self, apply: Callable[[Sequence[tuple[K, V]]], None]) -> None:
        self._apply = apply
        self._cond = threading.Condition()
        self._pending: list[_Request[K, V]] = []
        self._busy = False
        #: How many times ``apply`` was called (the tests' and benches' measure of coalescing).
        self.applies = 0

    def submit(self, key: K, value: V) -> None:
        """Block until ``(key, value)`` was applied; raise what its apply raised."""
        request = _Request(key, value)
        batch: list[_Request[K, V]] = []
        with self._cond:
            self._pending.append(request)
            while self._busy and not request.done:
                self._cond.wait()
            if not request.done:
                # Nobody is applying: this caller applies everything queued, its own included.
                batch, self._pending = self._pending, []
                self._busy = True
        if batch:
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error

    def _call(self, batch: Sequence[_Request[K, V]]) -> None:
        self.applies += 1
        self._apply([(r.key, r.value) for r in batch])

    def _run(self, batch: list[_Request[K, V]]) -> None:
        try:
            self._call(batch)
        except Exception as exc:  # noqa: BLE001 - told to the callers it concerns
            if len(batch) == 1:
                batch[0].finish(exc)
                return
            # Whose request broke it? Each alone, in order: its own answer to each caller.
            for request in batch:
                try:
                    self._call([request])
                except Exception as alone:  # noqa: BLE001 - this caller's error
                    request.finish(alone)
                else:
                    request.finish()
            return
        except BaseException as exc:  # interrupted: nothing is known to have been applied
            for request in batch:
                request.finish(exc)
            raise
        for request in batch:
            request.finish()


__all__ = ["Coalescer"]
