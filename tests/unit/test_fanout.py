"""core/fanout.py: one call per named item in parallel, results in order, every error kept."""

from __future__ import annotations

import threading
import time

import pytest

from projectdeployer.core.fanout import FanOutFailed, FanOutTimeout, failures, fan_out, raise_for_failures, successes

pytestmark = pytest.mark.unit


def test_results_in_order_and_errors_under_their_names() -> None:
    def work(item: str) -> int:
        if item == "b":
            raise RuntimeError("b is down")
        return len(item)

    results = fan_out(["ccc", "b", "a"], work)
    assert list(results) == ["ccc", "b", "a"]
    assert successes(results) == {"ccc": 3, "a": 1}
    assert [str(e) for e in failures(results).values()] == ["b is down"]
    with pytest.raises(FanOutFailed, match=r"deploy failed on 1 server\(s\):\n  b: b is down"):
        raise_for_failures(results, "deploy")
    assert fan_out([], work) == {}


def test_concurrency_is_bounded() -> None:
    lock = threading.Lock()
    now = [0]
    most = [0]
    release = threading.Event()

    def work(item: str) -> None:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        release.wait(5)
        with lock:
            now[0] -= 1

    threading.Timer(0.3, release.set).start()
    fan_out([f"s{i}" for i in range(6)], work, max_workers=2)
    assert most[0] == 2


def test_a_hanging_call_is_abandoned_and_named() -> None:
    hang = threading.Event()
    started = time.monotonic()
    results = fan_out(["ok", "stuck"], lambda item: hang.wait(30) if item == "stuck" else "fine", timeout=0.5)
    hang.set()
    assert results["ok"] == "fine" and isinstance(results["stuck"], FanOutTimeout) and "server stuck" in str(results["stuck"])
    assert time.monotonic() - started < 10  # the hang (30 s) was not waited for


def test_names_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct names"):
        fan_out(["a", "a"], lambda item: None)
