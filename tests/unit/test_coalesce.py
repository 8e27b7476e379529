"""Route switches of parallel toggles go live together (deploy/coalesce.py, issue 12 item 8): the
requests queued while one apply runs are applied by the next in one go, each caller returns
once its own request was applied and gets its own error; the engine's table keeps only what
the router accepted."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from projectdeployer.deploy.coalesce import Coalescer

pytestmark = pytest.mark.unit


def submit_all(coalescer: Coalescer[str, int], keys: Sequence[str]) -> dict[str, BaseException | None]:
    """Submit each key from its own thread (value = its index); each thread's outcome."""
    outcomes: dict[str, BaseException | None] = {}

    def one(index: int, key: str) -> None:
        try:
            coalescer.submit(key, index)
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            outcomes[key] = exc
        else:
            outcomes[key] = None

    threads = [threading.Thread(target=one, args=(i, k)) for i, k in enumerate(keys)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads), "a submit never returned"
    return outcomes


def test_requests_queued_during_an_apply_go_live_together_in_the_next() -> None:
    applied: list[list[tuple[str, int]]] = []
    first_running, release = threading.Event(), threading.Event()

    def apply(batch: Sequence[tuple[str, int]]) -> None:
        applied.append(list(batch))
        if len(applied) == 1:
            first_running.set()
            assert release.wait(10)

    coalescer: Coalescer[str, int] = Coalescer(apply)
    first = threading.Thread(target=coalescer.submit, args=("web00", 0))
    first.start()
    assert first_running.wait(10)
    # 19 more arrive while the first reload runs: they wait, and go live in one apply.
    waiting = threading.Thread(target=lambda: submit_all(coalescer, [f"web{i:02d}" for i in range(1, 20)]))
    waiting.start()
    deadline = time.monotonic() + 10
    while len(coalescer._pending) < 19 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    first.join(10)
    waiting.join(10)
    assert coalescer.applies == 2 == len(applied)
    assert applied[0] == [("web00", 0)]
    assert sorted(key for key, _ in applied[1]) == [f"web{i:02d}" for i in range(1, 20)]


def test_a_lone_request_is_applied_at_once_and_its_error_raised() -> None:
    applied: list[list[tuple[str, int]]] = []

    def apply(batch: Sequence[tuple[str, int]]) -> None:
        applied.append(list(batch))
        if batch[0][0] == "bad":
            raise ValueError("nginx rejected the new routes")

    coalescer: Coalescer[str, int] = Coalescer(apply)
    coalescer.submit("good", 1)
    with pytest.raises(ValueError, match="rejected"):
        coalescer.submit("bad", 2)
    coalescer.submit("good", 3)  # the coalescer is not stuck after a failure
    assert applied == [[("good", 1)], [("bad", 2)], [("good", 3)]]


def test_when_a_batch_fails_each_request_is_applied_alone_and_only_the_bad_one_fails() -> None:
    gate = threading.Event()
    calls: list[list[str]] = []

    def apply(batch: Sequence[tuple[str, int]]) -> None:
        keys = [key for key, _ in batch]
        calls.append(keys)
        if keys == ["first"]:
            assert gate.wait(10)
        if "bad" in keys:
            raise ValueError(f"refused: {keys}")

    coalescer: Coalescer[str, int] = Coalescer(apply)
    first = threading.Thread(target=coalescer.submit, args=("first", 0))
    first.start()
    while not calls:
        time.sleep(0.01)
    outcomes: dict[str, BaseException | None] = {}
    rest = threading.Thread(target=lambda: outcomes.update(submit_all(coalescer, ["a", "bad", "b"])))
    rest.start()
    while len(coalescer._pending) < 3:
        time.sleep(0.01)
    gate.set()
    first.join(10)
    rest.join(10)
    assert outcomes["a"] is None and outcomes["b"] is None
    assert isinstance(outcomes["bad"], ValueError) and "['bad']" in str(outcomes["bad"])
    batch = calls[1]
    assert sorted(batch) == ["a", "b", "bad"] and calls[2:] == [[key] for key in batch]


# --- the fleet: only what the routers accepted stays in its table --------------------------------


def placed(host: str) -> Any:
    from projectdeployer.deploy.orchestrator import Placed

    return [Placed(server="local", container=host, port=8000, host_port=18000)]


def test_a_refused_switch_leaves_the_table_as_the_router_serves_it(tmp_path: Path) -> None:
    from projectdeployer.deploy.orchestrator import Orchestrator

    fleet = Orchestrator.__new__(Orchestrator)  # only the routing push of the fleet is under test
    fleet._table_lock = threading.RLock()
    fleet.table = {"api": placed("shop_dev_api_a")}
    applied: list[dict[str, str]] = []

    def route_everywhere() -> None:
        table = {name: where[0].container for name, where in fleet.table.items()}
        if "broken" in table:
            raise RuntimeError("nginx rejected the new routes")
        applied.append(table)

    fleet._route_everywhere = route_everywhere  # type: ignore[method-assign]
    fleet._pushes = Coalescer(fleet._push_table)

    with pytest.raises(RuntimeError):
        fleet._pushes.submit("broken", placed("shop_dev_broken_a"))
    assert fleet.table == {"api": placed("shop_dev_api_a")}  # not kept
    fleet._pushes.submit("api", placed("shop_dev_api_b"))
    assert applied == [{"api": "shop_dev_api_b"}]
    fleet._pushes.submit("api", None)
    assert applied[-1] == {} and fleet.table == {}


def test_many_parallel_switches_take_few_reloads() -> None:
    """20 toggles ready at about the same time, a reload taking 50 ms: far fewer than 20."""
    reloads: list[int] = []

    def apply(batch: Sequence[tuple[str, Any]]) -> None:
        reloads.append(len(batch))
        time.sleep(0.05)

    coalescer: Coalescer[str, int] = Coalescer(apply)
    outcomes = submit_all(coalescer, [f"web{i:02d}" for i in range(20)])
    assert all(v is None for v in outcomes.values()) and sum(reloads) == 20
    assert len(reloads) < 10, reloads
