"""What runs on one server, read once per deploy: the engine's snapshot of containers and routes.

A deploy needs, for every service, its containers and which of them the router serves. Read
per service, that is one container listing (plus an inspect of every container of the project)
and one read of the router's live routes per service: an unchanged redeploy of 20 services
cost 20x one of a single service (issue 12 item 8). An :class:`Observation` is the same facts
read once: one listing by the project's labels, one read of the routes.

Staleness is the danger of any snapshot, so the engine keeps each part (:class:`Kept`) only
while nothing has changed since it was read: its runtime is seen through
:class:`WatchedRuntime`, which counts every call that starts, creates, stops or removes a
container (the containers' generation), and the engine counts its own route changes (the
routes' generation). A value read while such a change happened is never kept (the counter
moved during the read), and one kept is stale as soon as its counter moves.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from ..core.runtime import ContainerInfo

T = TypeVar("T")


def pick_active(containers: Iterable[ContainerInfo], routed: Iterable[str]) -> ContainerInfo | None:
    """The container serving now: the running one the router sends traffic to (a name in
    ``routed``), else the newest running one; ``None`` when none runs."""
    running = [c for c in containers if c.running]
    if not running:
        return None
    names = set(routed)
    for c in running:
        if c.name in names:
            return c
    return sorted(running, key=lambda c: c.started_at or "")[-1]


@attrs.frozen(kw_only=True)
class Observation:
    """The project's containers on one server by service, and the container names its router
    serves, as read at one moment."""

    containers: Mapping[str, tuple[ContainerInfo, ...]]
    routed: frozenset[str]

    def of(self, service: str) -> list[ContainerInfo]:
        """``service``'s containers (every slot, running or not)."""
        return list(self.containers.get(service, ()))

    def active(self, service: str) -> ContainerInfo | None:
        """The container serving ``service`` (:func:`pick_active`)."""
        return pick_active(self.containers.get(service, ()), self.routed)

    def by_service(self) -> dict[str, list[ContainerInfo]]:
        """The containers as :meth:`ServerDeployer.observed` returns them (service -> list)."""
        return {service: list(found) for service, found in self.containers.items()}


class WatchedRuntime:
    """A container runtime seen through a change counter.

    Every call that starts, creates, stops or removes a container moves :attr:`changes` (before
    and after the call, so a read that overlaps it in any way sees the counter move); every
    other attribute is the runtime's own. Whoever changes containers through the engine's
    runtime (the toggle, jobs, backups, a restore) thereby tells the engine's snapshot it is
    stale, without having to know there is one.
    """

    #: The ContainerRuntime methods that change which containers exist or run.
    CHANGING = frozenset({"start", "create", "start_existing", "stop", "remove"})

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime
        self._lock = threading.Lock()
        self._changes = 0

    @property
    def changes(self) -> int:
        """How many changing calls started or ended so far."""
        with self._lock:
            return self._changes

    @property
    def wrapped(self) -> Any:
        """The runtime itself."""
        return self._runtime

    def _count(self) -> None:
        with self._lock:
            self._changes += 1

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._runtime, name)
        if name not in self.CHANGING or not callable(attr):
            return attr

        @functools.wraps(attr)
        def changing(*args: Any, **kwargs: Any) -> Any:
            self._count()
            try:
                return attr(*args, **kwargs)
            finally:
                self._count()

        return changing

    def __repr__(self) -> str:
        return f"WatchedRuntime({self._runtime!r})"


class Kept(Generic[T]):
    """One value read from a server, kept while ``generation()`` stays where it was read.

    ``generation`` is any value that moves with every change that could make the value stale
    (for containers: the runtime's change count; for routes: the engine's route changes).
    Thread-safe: parallel toggles may ask at once.
    """

    def __init__(self, generation: Callable[[], object]) -> None:
        self._generation = generation
        self._lock = threading.Lock()
        self._kept: tuple[object, T] | None = None

    def get(self, read: Callable[[], T], *, fresh: bool = False) -> T:
        """The kept value when nothing changed since it was read (and not ``fresh``), else
        ``read()``'s, kept only if nothing changed while it was being read."""
        with self._lock:
            kept = self._kept
        if not fresh and kept is not None and kept[0] == self._generation():
            return kept[1]
        before = self._generation()
        value = read()
        with self._lock:
            self._kept = (before, value) if self._generation() == before else None
        return value

    def put(self, value: T) -> None:
        """Keep ``value`` as the truth as of now (the caller just made it so)."""
        with self._lock:
            self._kept = (self._generation(), value)

    def drop(self) -> None:
        """Forget the kept value (the next :meth:`get` reads)."""
        with self._lock:
            self._kept = None


__all__ = ["Kept", "Observation", "WatchedRuntime", "pick_active"]
