"""DockerRuntime against the real engine: reading it while other threads change it."""

from __future__ import annotations

import uuid

import pytest

from projectdeployer.providers.docker_runtime import DockerRuntime

pytestmark = pytest.mark.docker


def test_list_skips_a_container_removed_between_listing_and_inspecting(docker_client, bed, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """docker-py lists summaries, then inspects each container: one removed in between (another
    service's toggle, in a parallel deploy) is gone, not an error (a NotFound traceback ended
    first deploys of 20 services)."""
    from docker.models.containers import ContainerCollection

    label = f"io.projectdeployer.test.race-{uuid.uuid4().hex[:8]}"
    kept = docker_client.containers.create(bed["redis"], labels={label: "1"}, name=f"pd-race-kept-{uuid.uuid4().hex[:6]}")
    doomed = docker_client.containers.create(bed["redis"], labels={label: "1"}, name=f"pd-race-doomed-{uuid.uuid4().hex[:6]}")
    inspect = ContainerCollection.get
    removed: list[str] = []

    def get_after_removal(self: ContainerCollection, container_id: str):  # type: ignore[no-untyped-def]
        if not removed:  # the first inspect comes too late for the doomed container
            doomed.remove(force=True)
            removed.append(doomed.id)
        return inspect(self, container_id)

    monkeypatch.setattr(ContainerCollection, "get", get_after_removal)
    try:
        listed = DockerRuntime(docker_client).list({label: "1"})
        assert removed == [doomed.id]
        assert [c.name for c in listed] == [kept.name]
    finally:
        monkeypatch.undo()
        for container in (kept, doomed):
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001 - the doomed one is gone already
                pass
