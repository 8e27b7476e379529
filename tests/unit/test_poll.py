"""core/poll.py: waiting with a deadline and retrying, on a fake clock (no real sleeps)."""

from __future__ import annotations

import pytest

from projectdeployer.core.poll import WaitTimeout, retry, wait_until

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_until_returns_the_probes_value_once_done() -> None:
    clock = Clock()
    answers = iter([(False, "starting"), (False, "starting"), (True, 42)])
    assert wait_until(lambda: next(answers), timeout=10, interval=1, sleep=clock.sleep, clock=clock) == 42
    assert clock.sleeps == [1, 1]


def test_wait_until_times_out_with_what_and_last_detail() -> None:
    clock = Clock()
    calls: list[float] = []

    def probe() -> tuple[bool, str]:
        calls.append(clock.now)
        return False, f"503 at {clock.now:g}"

    with pytest.raises(WaitTimeout, match=r"web healthy: not reached within 2.5s \(last: 503 at 2.5\)") as info:
        wait_until(probe, timeout=2.5, interval=1, what="web healthy", sleep=clock.sleep, clock=clock)
    assert info.value.last == "503 at 2.5"
    # The last sleep is cut to the deadline, and a probe runs at the deadline itself.
    assert calls == [0, 1, 2, 2.5]


def test_wait_until_raises_the_callers_error_type() -> None:
    clock = Clock()

    class Failed(Exception):
        pass

    with pytest.raises(Failed, match="lock: not reached within 1s"):
        wait_until(lambda: (False, None), timeout=1, what="lock", error=Failed, sleep=clock.sleep, clock=clock)


def test_retry_backs_off_and_gives_up_with_the_last_error() -> None:
    clock = Clock()
    seen: list[int] = []
    attempts = iter(range(10))

    def flaky() -> str:
        n = next(attempts)
        if n < 2:
            raise ConnectionError(f"refused {n}")
        return "ok"

    assert retry(flaky, attempts=3, retry_on=ConnectionError, backoff=0.5, sleep=clock.sleep, on_retry=lambda a, e: seen.append(a)) == "ok"
    assert clock.sleeps == [0.5, 1.0] and seen == [1, 2]

    def down() -> str:
        raise ConnectionError("still down")

    with pytest.raises(ConnectionError, match="still down"):
        retry(down, attempts=4, retry_on=ConnectionError, backoff=4, max_backoff=5, sleep=clock.sleep)
    assert clock.sleeps[2:] == [4, 5, 5]


def test_retry_lets_other_errors_through_at_once() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        retry(broken, attempts=5, retry_on=ConnectionError, sleep=lambda s: None)
    assert calls == [1]
