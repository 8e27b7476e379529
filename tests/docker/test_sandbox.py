"""The sandbox provider (projectdeployer.providers.sandbox) on the real engine: servers are
pd-test/server containers (sshd + their own dockerd), one VPC network per zone, one shared
"public" network, reached over real SSH (projectdeployer.providers.ssh).

One server is created alone (timed), then three in parallel (two in zone a, one in zone b, timed):
the fleet the tests share. Covers: listing by labels (live; a second provider instance sees the
same servers), SSH and the inner Docker engine, VPC reachability within a zone only and public
reachability across zones, resize (docker inspect's HostConfig and the cgroup inside), the state
tag, destroy (container, volumes, network, host key; idempotent), a failed start reported with
the container's log lines and cleaned up. Everything labelled with this run's project is removed
at the end whatever happens. Timings are compared as ratios (the machine is shared), never as
absolute durations.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from projectdeployer.core.provider import ServerSpec
from projectdeployer.providers.sandbox import (
    DEFAULT_IMAGE,
    LABEL,
    LABEL_PROJECT,
    LABEL_STATE,
    SandboxError,
    SandboxProvider,
    SandboxServer,
    host_run_flags,
    public_network_name,
    zone_network_name,
)
from projectdeployer.providers.ssh import SshError
from projectdeployer.providers.ssh.keys import ensure_keypair, known_hosts_path
from projectdeployer.providers.ssh.known_hosts import KnownHosts
from tests.docker.conftest import IMAGES_DIR, wait_for

pytestmark = pytest.mark.docker

PROJECT = f"sbx{uuid.uuid4().hex[:8]}"
ENV = "test"
TIMINGS: dict[str, float] = {}
#: The server created with 768 MB (parallel creation gives names in whatever order the
#: threads reach the engine, so a size is not tied to a name).
SMALL: dict[str, SandboxServer] = {}
PROBE = 'exec 3<>"/dev/tcp/$0/22" && head -c 4 <&3'


def _remove_everything(docker_client, project: str) -> None:  # type: ignore[no-untyped-def]
    """Every container, volume and network this run's project left, by label."""
    selector = {"label": f"{LABEL_PROJECT}={project}"}
    for container in docker_client.containers.list(all=True, filters=selector):
        container.remove(force=True, v=True)
    for volume in docker_client.volumes.list(filters=selector):
        volume.remove(force=True)
    for network in docker_client.networks.list(filters=selector):
        network.remove()


@pytest.fixture(scope="module")
def sbx_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox-home")


@pytest.fixture(autouse=True)
def _home(pd_home: Path, sbx_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's servers were made with the module's key pair and known_hosts."""
    monkeypatch.setenv("PROJECTDEPLOYER_HOME", str(sbx_home))


@pytest.fixture(scope="module")
def provider(docker_client, sbx_home: Path) -> Iterator[SandboxProvider]:  # type: ignore[no-untyped-def]
    if not docker_client.images.list(name=DEFAULT_IMAGE):
        subprocess.run(["bash", str(IMAGES_DIR / "build.sh")], env={"PD_BED_ONLY": "server", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, check=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROJECTDEPLOYER_HOME", str(sbx_home))
        mp.delenv("PROJECTDEPLOYER_SANDBOX_IMAGE", raising=False)
        sandbox = SandboxProvider()
        try:
            host_run_flags(sandbox.client, sandbox.image)  # the one-off probe is not part of the timings
            yield sandbox
        finally:
            sandbox.close()
            _remove_everything(docker_client, PROJECT)


@pytest.fixture(scope="module")
def fleet(provider: SandboxProvider, sbx_home: Path) -> dict[str, SandboxServer]:
    """c-1 created alone, then a-1, a-2 and b-1 (b-1 in reserve, tagged) created in parallel."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROJECTDEPLOYER_HOME", str(sbx_home))
        started = time.monotonic()
        single = provider.create_server(PROJECT, ENV, ServerSpec(zone="c"))
        TIMINGS["one"] = time.monotonic() - started
        specs = [ServerSpec(zone="a"), ServerSpec(zone="a", cpu=1, memory=768), ServerSpec(zone="b", tags={"state": "reserve", "role": "db"})]
        started = time.monotonic()
        three = provider.create_servers(PROJECT, ENV, specs)
        TIMINGS["three_parallel"] = time.monotonic() - started
        SMALL["server"] = three[1]
    return {s.name.removeprefix(f"{PROJECT}-{ENV}-"): s for s in [single, *three]}


def _reaches(server: SandboxServer, address: str) -> bool:
    """Whether ``server`` gets an SSH banner from ``address``:22 (over SSH, on the server)."""
    result = server.run(["timeout", "1.5", "bash", "-c", PROBE, address], timeout=30)
    return result.stdout == "SSH-"


# --- creating and listing ---------------------------------------------------------------------


def test_parallel_creation_overlaps(fleet: dict[str, SandboxServer], docker_client) -> None:  # type: ignore[no-untyped-def]
    """The three servers of one create_servers call boot at the same time: every container had
    started before the first of them was ready (its /run/pd-server-ready written)."""
    three = [fleet[n] for n in ("a-1", "a-2", "b-1")]
    started = [_epoch(docker_client.containers.get(s.container_id).attrs["State"]["StartedAt"]) for s in three]
    ready = [float(s.run(["date", "-r", "/run/pd-server-ready", "+%s.%N"]).stdout) for s in three]
    assert max(started) < min(ready)
    ratio = TIMINGS["three_parallel"] / TIMINGS["one"]
    print(f"\nsandbox create: 1 server {TIMINGS['one']:.1f}s, 3 in parallel {TIMINGS['three_parallel']:.1f}s, ratio {ratio:.2f}")


def _epoch(stamp: str) -> float:
    """Docker's RFC 3339 time with nanoseconds, as seconds since the epoch."""
    from datetime import datetime

    whole, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float("0." + (frac or "0"))


def test_parallel_creation_gives_the_lowest_free_names(fleet: dict[str, SandboxServer]) -> None:
    assert sorted(fleet) == ["a-1", "a-2", "b-1", "c-1"]
    assert [fleet[n].zone for n in ("a-1", "a-2", "b-1", "c-1")] == ["a", "a", "b", "c"]


def test_list_reads_servers_by_labels(provider: SandboxProvider, fleet: dict[str, SandboxServer], docker_client) -> None:  # type: ignore[no-untyped-def]
    listed = provider.list_servers(PROJECT, ENV)
    assert [s.name for s in listed] == [f"{PROJECT}-{ENV}-{n}" for n in ("a-1", "a-2", "b-1", "c-1")]
    by_name = {s.name: s for s in listed}
    b1 = by_name[fleet["b-1"].name]
    assert b1.tags["state"] == "reserve" and b1.tags["role"] == "db" and b1.tags["zone"] == "b"
    assert by_name[SMALL["server"].name].tags["memory"] == "768" and SMALL["server"].zone == "a"
    assert {by_name[fleet[k].name].tags["memory"] for k in ("a-1", "a-2")} == {"768", "1024"}
    for server in listed:
        assert server.running and server.tags["project"] == PROJECT and server.tags["env"] == ENV
        assert server.private_address and server.public_address and server.private_address != server.public_address
        container = docker_client.containers.get(server.container_id)
        assert container.labels[LABEL] == "1" and container.labels[LABEL_STATE] in ("active", "reserve")
        assert container.attrs["NetworkSettings"]["Ports"]["22/tcp"][0] == {"HostIp": "127.0.0.1", "HostPort": server.tags["ssh_port"]}
        assert set(container.attrs["NetworkSettings"]["Networks"]) == {public_network_name(PROJECT, ENV), zone_network_name(PROJECT, ENV, server.zone)}
    vpc = docker_client.networks.get(zone_network_name(PROJECT, ENV, "a"))
    assert vpc.attrs["Internal"] is True and not docker_client.networks.get(public_network_name(PROJECT, ENV)).attrs["Internal"]
    assert provider.list_servers(PROJECT, "other") == []


def test_a_second_provider_sees_the_same_servers(fleet: dict[str, SandboxServer]) -> None:
    other = SandboxProvider()
    try:
        listed = {s.name: s for s in other.list_servers(PROJECT, ENV)}
        assert set(listed) == {s.name for s in fleet.values()}
        a1 = listed[fleet["a-1"].name]
        assert (a1.private_address, a1.public_address, a1.ssh_port) == (fleet["a-1"].private_address, fleet["a-1"].public_address, fleet["a-1"].ssh_port)
        assert a1.run(["hostname"]).stdout.strip() == a1.name  # over SSH, through the other instance
    finally:
        other.close()


def test_servers_answer_over_ssh_with_their_own_engine(fleet: dict[str, SandboxServer], docker_client) -> None:  # type: ignore[no-untyped-def]
    server = fleet["a-1"]
    assert server.run(["hostname"]).stdout.strip() == server.name
    assert ensure_keypair(PROJECT, ENV).public_openssh in server.get_file("/root/.ssh/authorized_keys").decode()
    info = server.docker().info()  # the Docker SDK over SSH, the server's own dockerd
    assert info["Name"] == server.name and info["Driver"] == "overlay2"
    server.put_file("/local/hello.txt", b"hi")
    assert server.run(["cat", "/local/hello.txt"]).stdout == "hi"
    # The host key was pinned from the engine before the first SSH connection: no trust on first use.
    pinned = KnownHosts(known_hosts_path(PROJECT, ENV)).lookup("127.0.0.1", server.ssh_port)
    actual = docker_client.containers.get(server.container_id).exec_run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).output.decode().split()
    assert [(k.keytype, k.blob) for k in pinned] == [(actual[0], actual[1])]


def test_vpc_within_a_zone_public_across_zones(fleet: dict[str, SandboxServer]) -> None:
    a1, a2, b1 = fleet["a-1"], fleet["a-2"], fleet["b-1"]
    checks = {
        "a1 -> a2 vpc": (a1, a2.private_address, True),
        "a1 -> a2 public": (a1, a2.public_address, True),
        "a1 -> b1 public": (a1, b1.public_address, True),
        "b1 -> a2 public": (b1, a2.public_address, True),
        "a1 -> b1 vpc": (a1, b1.private_address, False),
        "b1 -> a1 vpc": (b1, a1.private_address, False),
    }
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        results = dict(zip(checks, pool.map(lambda c: _reaches(c[0], c[1]), checks.values()), strict=True))
    assert results == {name: expected for name, (_, _, expected) in checks.items()}


# --- changing ---------------------------------------------------------------------------------


def test_resize_updates_the_running_container(provider: SandboxProvider, fleet: dict[str, SandboxServer], docker_client) -> None:  # type: ignore[no-untyped-def]
    server = SMALL["server"]
    container = docker_client.containers.get(server.container_id)
    before = container.attrs["HostConfig"]
    started = container.attrs["State"]["StartedAt"]
    assert (before["NanoCpus"], before["Memory"]) == (1_000_000_000, 768 * 2**20)
    resized = provider.resize_server(server, 2, 1536)
    container.reload()
    after = container.attrs["HostConfig"]
    assert (after["NanoCpus"], after["Memory"], after["MemorySwap"]) == (2_000_000_000, 1536 * 2**20, 1536 * 2**20)
    assert container.attrs["State"]["StartedAt"] == started  # updated in place, not restarted
    assert resized.tags["cpu"] == "2" and resized.tags["memory"] == "1536"
    assert resized.run(["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]).stdout.strip() == str(1536 * 2**20)
    cpus = docker_client.info()["NCPU"]
    bigger = provider.resize_server(resized, cpus + 6, 512)  # more vCPUs than the engine has: capped, size kept
    container.reload()
    assert container.attrs["HostConfig"]["NanoCpus"] == cpus * 1_000_000_000
    assert bigger.tags["cpu"] == str(cpus + 6) and bigger.tags["memory"] == "512"


def test_state_tag_is_live_and_shared(provider: SandboxProvider, fleet: dict[str, SandboxServer], docker_client) -> None:  # type: ignore[no-untyped-def]
    server = fleet["a-1"]
    provider.set_server_state(server, "reserve")
    other = SandboxProvider()
    try:
        assert {s.name: s.state for s in other.list_servers(PROJECT, ENV)}[server.name] == "reserve"
    finally:
        other.close()
    assert server.run(["cat", "/etc/pd-state"]).stdout.startswith("{")
    assert docker_client.containers.get(server.container_id).labels[LABEL_STATE] == "active"  # the state at creation
    assert provider.set_server_state(server, "active").state == "active"
    with pytest.raises(SandboxError, match="unknown server state"):
        provider.set_server_state(server, "sleeping")


def test_a_stopped_server_is_listed_off_and_comes_back(provider: SandboxProvider, fleet: dict[str, SandboxServer], docker_client) -> None:  # type: ignore[no-untyped-def]
    held = fleet["a-2"]  # the object a deploy would hold
    assert held.run(["true"]).ok
    container = docker_client.containers.get(held.container_id)
    container.stop(timeout=5)
    stopped = provider.get_server(PROJECT, ENV, held.name)
    assert stopped is not None and stopped.tags["power"] == "off" and not stopped.running
    with pytest.raises(SandboxError, match=f"server {held.name} is not running"):
        stopped.run(["true"])
    with pytest.raises(SshError, match=f"server {held.name} "):  # a clear error naming it
        held.run(["true"], timeout=10)
    container.start()  # the published port may change; the host key does not

    def back() -> bool:
        server = provider.get_server(PROJECT, ENV, held.name)
        return server is not None and server.running and server.run(["test", "-f", "/run/pd-server-ready"], timeout=10).ok

    wait_for(back, timeout=90, what=f"{held.name} to come back")
    fleet["a-2"] = provider.get_server(PROJECT, ENV, held.name)  # type: ignore[assignment]


# --- destroying and failing -------------------------------------------------------------------


def test_destroy_removes_container_volumes_network_and_host_key(provider: SandboxProvider, fleet: dict[str, SandboxServer], docker_client) -> None:  # type: ignore[no-untyped-def]
    server = fleet["c-1"]
    volumes = [m["Name"] for m in docker_client.containers.get(server.container_id).attrs["Mounts"] if m["Type"] == "volume"]
    assert len(volumes) == 2
    known = KnownHosts(known_hosts_path(PROJECT, ENV))
    assert known.lookup("127.0.0.1", server.ssh_port)
    provider.destroy_server(server)
    assert not docker_client.containers.list(all=True, filters={"id": server.container_id})
    assert not [v for v in docker_client.volumes.list() if v.name in volumes]
    assert not docker_client.networks.list(names=[zone_network_name(PROJECT, ENV, "c")])
    assert docker_client.networks.list(names=[public_network_name(PROJECT, ENV)])  # other servers use it
    assert not known.lookup("127.0.0.1", server.ssh_port)
    assert server.name not in {s.name for s in provider.list_servers(PROJECT, ENV)}
    provider.destroy_server(server)  # idempotent


def test_a_server_that_stops_while_starting_is_reported_and_removed(docker_client) -> None:  # type: ignore[no-untyped-def]
    broken = SandboxProvider(image="pd-test/debian:bookworm")  # no sshd/dockerd: its shell exits at once
    if not docker_client.images.list(name="pd-test/debian:bookworm"):
        pytest.skip("pd-test/debian:bookworm is not built")
    try:
        with pytest.raises(SandboxError, match=r"stopped while starting \(exit 0\); its last log lines"):
            broken.create_server(PROJECT, "fail", ServerSpec(zone="a"))
    finally:
        broken.close()
    selector = {"label": [f"{LABEL_PROJECT}={PROJECT}", f"{LABEL}.env=fail"]}
    assert not docker_client.containers.list(all=True, filters=selector)
    assert not docker_client.volumes.list(filters=selector)


def test_a_server_not_ready_in_time_is_reported_with_its_logs(docker_client) -> None:  # type: ignore[no-untyped-def]
    hasty = SandboxProvider(ready_timeout=0.3)
    try:
        with pytest.raises(SandboxError, match=r"was not ready within 0.3s .*its last log lines"):
            hasty.create_server(PROJECT, "slow", ServerSpec(zone="a"))
        hasty.purge(PROJECT, "slow")
    finally:
        hasty.close()
    selector = {"label": [f"{LABEL_PROJECT}={PROJECT}", f"{LABEL}.env=slow"]}
    assert not docker_client.containers.list(all=True, filters=selector)
    assert not docker_client.volumes.list(filters=selector)
    assert not docker_client.networks.list(filters=selector)


def test_a_missing_image_is_a_clear_error() -> None:
    missing = SandboxProvider(image="pd-test/no-such-server:0")
    with pytest.raises(SandboxError, match=r"image pd-test/no-such-server:0 is not on this engine and cannot be pulled .*tests/images/build.sh"):
        missing.create_server(PROJECT, "missing", ServerSpec(zone="a"))


def test_flags_are_the_scripts(provider: SandboxProvider) -> None:
    """The Python reimplementation prints what tests/images/server-run-flags.sh prints here."""
    script = subprocess.run(["bash", str(IMAGES_DIR / "server-run-flags.sh")], capture_output=True, text=True, check=True).stdout.splitlines()
    assert host_run_flags(provider.client, provider.image).cli() == script


# --- the creation lock ------------------------------------------------------------------------


def test_creation_lock_is_exclusive_names_its_holder_and_is_taken_over_from_a_dead_one(provider: SandboxProvider, docker_client) -> None:  # type: ignore[no-untyped-def]
    import os
    import socket
    import threading

    from projectdeployer.providers.sandbox import LABEL_HOLDER_HOST, LABEL_HOLDER_PID, LABEL_HOLDER_SINCE, SandboxLocked, base_labels, lock_name

    name = lock_name(PROJECT, "lock")
    with provider.creation_lock(PROJECT, "lock"):
        assert docker_client.containers.get(name).status == "created"  # never started
        with pytest.raises(SandboxLocked, match=rf"host {socket.gethostname()}, pid {os.getpid()}, since .*remove the container {name}"), provider.creation_lock(PROJECT, "lock", wait=0.3):
            pass
        # a waiter gets it once the holder lets go
        got: list[float] = []

        def wait_for_it() -> None:
            with provider.creation_lock(PROJECT, "lock", wait=30):
                got.append(time.monotonic())

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        time.sleep(0.5)  # the waiter is polling by now; it must not have the lock
        assert got == []
        released = time.monotonic()
    waiter.join(timeout=30)
    assert got and got[0] >= released

    # A holder of this host whose process is gone (a crashed deploy) is taken over at once.
    dead = subprocess.Popen(["true"])
    dead.wait()
    labels = {**base_labels(PROJECT, "lock", "lock"), LABEL_HOLDER_HOST: socket.gethostname(), LABEL_HOLDER_PID: str(dead.pid), LABEL_HOLDER_SINCE: "then"}
    docker_client.containers.create(provider.image, command=["true"], name=name, labels=labels)
    with provider.creation_lock(PROJECT, "lock"):
        assert docker_client.containers.get(name).labels[LABEL_HOLDER_PID] == str(os.getpid())
    with pytest.raises(Exception, match="No such container"):
        docker_client.containers.get(name)
