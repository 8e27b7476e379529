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


def test_a_brief_listing_says_what_the_full_one_says_but_start_times(docker_client, bed) -> None:  # type: ignore[no-untyped-def]
    """list_brief (one request) against list (an inspect per container): same names, labels,
    states, exit codes and published ports; no start or finish times."""
    label = f"io.projectdeployer.test.brief-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    running = docker_client.containers.run(bed["python"], ["sleep", "60"], labels={label: "1"}, name=f"pd-brief-up-{tag}", detach=True, ports={"8000/tcp": ("127.0.0.1", None)}, init=True)
    exited = docker_client.containers.run(bed["python"], ["sh", "-c", "exit 3"], labels={label: "1"}, name=f"pd-brief-down-{tag}", detach=True)
    try:
        runtime = DockerRuntime(docker_client)
        exited.wait(timeout=30)
        full = {c.name: c for c in runtime.list({label: "1"})}
        brief = {c.name: c for c in runtime.list_brief({label: "1"})}
        assert set(brief) == set(full) == {running.name, exited.name}
        for name, info in brief.items():
            same = full[name]
            assert (info.id, info.image_id, dict(info.labels), info.state, info.ports) == (same.id, same.image_id, dict(same.labels), same.state, same.ports)
            assert info.started_at is None and info.finished_at is None
        assert brief[exited.name].exit_code == 3 and brief[running.name].running and brief[running.name].ports
    finally:
        for container in (running, exited):
            container.remove(force=True)


def test_networks_are_found_by_their_whole_name(docker_client) -> None:  # type: ignore[no-untyped-def]
    """The engine's name filter matches parts of names: a project's network must be created
    although another project's name contains its name, and removing it removes only it."""
    name = f"pdnet{uuid.uuid4().hex[:6]}_dev_network"
    other = docker_client.networks.create(f"my{name}", driver="bridge")
    runtime = DockerRuntime(docker_client)
    try:
        runtime.ensure_network(name, {"io.projectdeployer.test": "1"})
        runtime.ensure_network(name, {"io.projectdeployer.test": "1"})  # exists: nothing to do
        assert [n.name for n in docker_client.networks.list(names=[name]) if n.name == name] == [name]
        runtime.remove_network(name)
        assert not [n for n in docker_client.networks.list(names=[name]) if n.name == name]
        other.reload()  # still there
    finally:
        runtime.remove_network(name)
        other.remove()


def test_this_machines_engine_client_keeps_one_connection_pool_under_many_threads(docker_client, bed) -> None:  # type: ignore[no-untyped-def]
    """docker-py keeps a pool per URL and closes the least recently used beyond 25, also one
    a thread is using: 40 threads on one URL and 40 on others at once failed now and then
    with AttributeError ('NoneType' ... 'qsize') as parallel toggles did. The local
    provider's client sends everything through one pool."""
    import threading

    import docker.errors

    from projectdeployer.providers.local import LocalServer

    client = LocalServer().docker()
    errors: list[str] = []

    def call(name: str) -> None:
        try:
            client.api.inspect_image(name)
        except docker.errors.ImageNotFound:
            pass
        except Exception as exc:  # noqa: BLE001 - what the test counts
            errors.append(f"{type(exc).__name__}: {exc}")

    for round_ in range(10):
        barrier = threading.Barrier(80)

        def same(barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            call(bed["python"])

        def other(i: int, round_: int = round_, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            for k in range(3):
                call(f"pd-test/none-{uuid.uuid4().hex[:6]}-{round_}-{i}-{k}")

        threads = [threading.Thread(target=same) for _ in range(40)] + [threading.Thread(target=other, args=(i,)) for i in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert len(client.api.adapters["http+docker://"].pools) == 1
