"""The release history keeps every release when the toggles of a deploy record theirs at once
(issue 12 item 8: a first deploy of 20 services recorded 6)."""

from __future__ import annotations

import threading

import pytest

from projectdeployer.environment.releases import Release, ReleaseHistory, new_release_id

pytestmark = pytest.mark.unit


def test_parallel_records_lose_nothing() -> None:
    history = ReleaseHistory("shop", "dev")
    start = threading.Barrier(40)

    def record(index: int) -> None:
        start.wait()
        history.record(
            Release(
                id=new_release_id(),
                service=f"web{index:02d}",
                version="1",
                image="shared:1",
                image_id="sha256:x",
                config_hash="c",
                secrets_version="s",
                deployed_at=0.0,
            )
        )

    threads = [threading.Thread(target=record, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(r.service for r in history.load()) == [f"web{i:02d}" for i in range(40)]
