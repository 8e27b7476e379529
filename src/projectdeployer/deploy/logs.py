"""The log lines of a service that runs on many servers, each line prefixed with its server.

Every server that runs the service is read in parallel. Without ``follow`` the last ``lines`` of
each server come one server after the other (servers by name); with ``follow`` lines are printed
as they arrive from any server, and the stream ends when every container's log ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence

import attrs

from ..core.errors import ProjectDeployerError
from ..core.fanout import failures, fan_out, one_line, successes
from ..core.model import Project
from ..core.provider import Server
from . import jobs
from .server import ServerDeployer


@attrs.frozen(kw_only=True)
class LogSource:
    """One container whose lines are read, and the server it runs on."""

    server: str
    container: str
    engine: ServerDeployer


def find_sources(project: Project, env: str, service: str, servers: Sequence[Server], engine_for: Callable[[Server], ServerDeployer]) -> list[LogSource]:
    """The containers serving ``service`` (its job container for a scheduled one) on ``servers``.
    A server that cannot be reached is an error naming it: a silent gap would read as "no logs"."""
    scheduled = project.service(service, env).is_scheduled

    def look(server: Server) -> LogSource | None:
        engine = engine_for(server)
        if scheduled:
            name = jobs.job_name(project.name, env, service)
            return LogSource(server=server.name, container=name, engine=engine) if engine.runtime.get(name) is not None else None
        active = engine.active_container(engine.observed().get(service, []))
        return LogSource(server=server.name, container=active.name, engine=engine) if active is not None else None

    results = fan_out(servers, look)
    errors = failures(results)
    if errors:
        raise ProjectDeployerError("logs: cannot read " + "; ".join(f"{n}: {one_line(e)}" for n, e in sorted(errors.items())))
    return sorted((s for s in successes(results).values() if s is not None), key=lambda s: s.server)


def merged_lines(sources: Sequence[LogSource], *, lines: int, follow: bool) -> Iterator[str]:
    """``server | line`` for every source: one after the other, or interleaved as they come."""
    if not follow:
        for source in sources:
            for line in source.engine.runtime.logs(source.container, tail=lines):
                yield f"{source.server} | {line}"
        return
    arrived: queue.Queue[str | None] = queue.Queue()

    def pump(source: LogSource) -> None:
        try:
            for line in source.engine.runtime.logs(source.container, tail=lines, follow=True):
                arrived.put(f"{source.server} | {line}")
        except Exception as exc:  # noqa: BLE001 - the stream of one server ended badly: say so, keep the others
            arrived.put(f"{source.server} | (log stream ended: {exc})")
        finally:
            arrived.put(None)

    for source in sources:
        threading.Thread(target=pump, args=(source,), name=f"logs-{source.server}", daemon=True).start()
    open_streams = len(sources)
    while open_streams:
        item = arrived.get()
        if item is None:
            open_streams -= 1
        else:
            yield item


__all__ = ["LogSource", "find_sources", "merged_lines"]
