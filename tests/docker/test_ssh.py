"""Server access over real SSH (projectdeployer.providers.ssh) against pd-test/server containers:
sshd plus their own dockerd, started with tests/images/server-run-flags.sh.

Covers: first-contact host-key pinning and a changed key refused before anything runs; argument
lists reaching the server literally; atomic put_file with modes and get_file; one reused
connection and reconnection after a server restart (commands and the Docker client); fan-out
with a stopped server, a hanging call and bounded concurrency; the Docker SDK over SSH (an image
streamed from this engine, a container started through runtime()); probes run on the server.

Timings are compared as ratios (the machine is shared), never as absolute durations.
"""

from __future__ import annotations

import hashlib
import io
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from projectdeployer.core.provider import CommandResult
from projectdeployer.core.runtime import ContainerSpec
from projectdeployer.providers.ssh import (
    FanOutFailed,
    FanOutTimeout,
    SshCommandTimeout,
    SshConnectError,
    SshServer,
    failures,
    fan_out,
    raise_for_failures,
)
from projectdeployer.providers.ssh.keys import HostKeyChanged, KeyPair, ensure_keypair, known_hosts_path
from projectdeployer.providers.ssh.known_hosts import KnownHosts
from tests.docker.conftest import IMAGES_DIR, wait_for

pytestmark = pytest.mark.docker

SERVER_IMAGE = "pd-test/server:bookworm"
RUN_ID = uuid.uuid4().hex[:8]
LABEL = "projectdeployer.test.ssh"
NAME_PREFIX = f"pdssh-{RUN_ID}-"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Bed:
    """pd-test/server containers of this test module: start, recreate, stop, always removed."""

    def __init__(self, docker_client, key: KeyPair) -> None:  # type: ignore[no-untyped-def]
        self.docker = docker_client
        self.key = key
        self.flags = subprocess.run(["bash", str(IMAGES_DIR / "server-run-flags.sh")], capture_output=True, text=True, check=True).stdout.split("\n")
        self.flags = [flag for flag in self.flags if flag]
        self.ports: dict[str, int] = {}

    def start(self, name: str, port: int | None = None) -> str:
        """Start server container ``name`` with SSH published on 127.0.0.1:``port``; its VPC address."""
        port = port or self.ports.get(name) or _free_port()
        self.ports[name] = port
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                NAME_PREFIX + name,
                "--label",
                f"{LABEL}={RUN_ID}",
                *self.flags,
                "-e",
                f"SSH_AUTHORIZED_KEYS={self.key.public_openssh}",
                "-p",
                f"127.0.0.1:{port}:22",
                SERVER_IMAGE,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return self.address(name)

    def address(self, name: str) -> str:
        container = self.docker.containers.get(NAME_PREFIX + name)
        return container.attrs["NetworkSettings"]["IPAddress"]

    def remove(self, name: str) -> None:
        self.docker.containers.get(NAME_PREFIX + name).remove(force=True, v=True)

    def exec(self, name: str, *argv: str) -> CommandResult:
        """Run a command in the container through `docker exec` (not through SSH)."""
        proc = subprocess.run(["docker", "exec", NAME_PREFIX + name, *argv], capture_output=True, text=True)
        return CommandResult(exit_code=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)

    def server(self, name: str, known_hosts: Path, **kwargs: object) -> SshServer:
        address = self.address(name)
        return SshServer(name=name, zone="z1", public_address="127.0.0.1", port=self.ports[name], private_address=address, key_pair=self.key, known_hosts=known_hosts, **kwargs)  # type: ignore[arg-type]

    def cleanup(self) -> None:
        for container in self.docker.containers.list(all=True, filters={"label": f"{LABEL}={RUN_ID}"}):
            container.remove(force=True, v=True)


@pytest.fixture(scope="module")
def ssh_bed(docker_client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:  # type: ignore[no-untyped-def]
    """Three servers (a, b, c) started in parallel; the key pair is the module's."""
    if not docker_client.images.list(name=SERVER_IMAGE):
        subprocess.run(["bash", str(IMAGES_DIR / "build.sh")], env={"PD_BED_ONLY": "server", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, check=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROJECTDEPLOYER_HOME", str(tmp_path_factory.mktemp("ssh-home")))
        key = ensure_keypair("ssh", "test")
    bed = Bed(docker_client, key)
    try:
        threads = [threading.Thread(target=bed.start, args=(name,)) for name in "abc"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        yield bed
    finally:
        bed.cleanup()


@pytest.fixture
def known(pd_home: Path) -> Path:
    """This test's known_hosts (fresh: the first connection of each test is a first contact)."""
    return known_hosts_path("ssh", "test")


@pytest.fixture
def servers(ssh_bed: Bed, known: Path) -> Iterator[Callable[..., SshServer]]:
    """SshServer objects for the bed's containers, closed after the test."""
    made: list[SshServer] = []

    def make(name: str, **kwargs: object) -> SshServer:
        server = ssh_bed.server(name, known, **kwargs)
        made.append(server)
        server.wait_until_reachable(60)
        return server

    yield make
    for server in made:
        server.close()


def _inner_docker_ready(server: SshServer) -> None:
    wait_for(lambda: server.run(["test", "-e", "/run/pd-server-ready"]).ok, timeout=60, what=f"dockerd in {server.name}")


# --- trust ----------------------------------------------------------------------------------


def test_first_contact_pins_the_host_key_and_a_changed_key_is_refused(ssh_bed: Bed, known: Path) -> None:
    ssh_bed.start("rebuilt")
    try:
        server = ssh_bed.server("rebuilt", known)
        server.wait_until_reachable(60)
        pinned = KnownHosts(known).lookup("127.0.0.1", ssh_bed.ports["rebuilt"])
        on_server = ssh_bed.exec("rebuilt", "ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub").stdout
        assert len(pinned) == 1 and pinned[0].fingerprint in on_server
        assert known.read_text().startswith(f"[127.0.0.1]:{ssh_bed.ports['rebuilt']} ssh-ed25519 ")
        server.close()

        # The server is rebuilt on the same address: new host keys.
        ssh_bed.remove("rebuilt")
        ssh_bed.start("rebuilt")
        wait_for(lambda: ssh_bed.exec("rebuilt", "test", "-s", "/etc/ssh/ssh_host_ed25519_key.pub").ok, what="new host keys")
        fresh = ssh_bed.server("rebuilt", known)
        with pytest.raises(HostKeyChanged) as info:
            fresh.run(["touch", "/tmp/ran"])
        message = str(info.value)
        new_fp = ssh_bed.exec("rebuilt", "ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]
        assert len(message.splitlines()) == 1
        assert "server rebuilt at 127.0.0.1:" in message
        assert f"expected {pinned[0].fingerprint}" in message and f"presented {new_fp}" in message
        assert f"ssh-keygen -R '[127.0.0.1]:{ssh_bed.ports['rebuilt']}' -f {known}" in message
        assert not ssh_bed.exec("rebuilt", "test", "-e", "/tmp/ran").ok, "nothing may run on a server whose key changed"
        assert KnownHosts(known).lookup("127.0.0.1", ssh_bed.ports["rebuilt"]) == pinned  # not overwritten

        # The documented fix: forget the address; the next contact pins the new key.
        assert KnownHosts(known).remove("127.0.0.1", ssh_bed.ports["rebuilt"]) == 1
        assert fresh.run(["touch", "/tmp/ran"]).ok
        assert KnownHosts(known).lookup("127.0.0.1", ssh_bed.ports["rebuilt"])[0].fingerprint == new_fp
        fresh.close()
    finally:
        ssh_bed.remove("rebuilt")


# --- commands -------------------------------------------------------------------------------


def test_arguments_reach_the_server_literally(servers: Callable[..., SshServer]) -> None:
    server = servers("a")
    tricky = ["two words", "it's", 'say "hi"', "$(touch /tmp/injected)", "`id`", "a;b && c | d", "*", "", "new\nline", "$HOME", "ü"]
    result = server.run(["printf", "%s\\0", *tricky])
    assert result.ok, result
    assert result.stdout.split("\0")[:-1] == tricky
    assert not server.run(["test", "-e", "/tmp/injected"]).ok
    failed = server.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (failed.exit_code, failed.stdout, failed.stderr) == (3, "out\n", "err\n")
    assert server.run(["cat"], timeout=10).stdout == ""  # stdin is closed: nothing waits for input
    with pytest.raises(TypeError):
        server.run("echo not a list")  # type: ignore[arg-type]


def test_large_output_on_both_streams_and_timeouts(servers: Callable[..., SshServer]) -> None:
    server = servers("a")
    # 4 MB on stdout and 4 MB on stderr at once: both are read while the command runs
    result = server.run(["sh", "-c", "head -c 4194304 /dev/zero | tr '\\0' o & head -c 4194304 /dev/zero | tr '\\0' e >&2; wait"], timeout=60)
    assert result.ok and len(result.stdout) == 4194304 and len(result.stderr) == 4194304
    started = time.monotonic()
    with pytest.raises(SshCommandTimeout, match=r"server a .*did not finish within 1s"):
        server.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 15
    assert server.run(["echo", "still usable"]).stdout == "still usable\n"


# --- files ----------------------------------------------------------------------------------


def test_put_file_is_atomic_with_its_mode_and_get_file_reads_it(servers: Callable[..., SshServer]) -> None:
    server = servers("a")
    server.put_file("/local/shop/prod/secrets/db/password", b"s3cret\n", mode=0o600)
    assert server.run(["stat", "-c", "%a %U", "/local/shop/prod/secrets/db/password"]).stdout.strip() == "600 root"
    assert server.get_file("/local/shop/prod/secrets/db/password") == b"s3cret\n"
    server.put_file("/local/shop/prod/files/run.sh", b"#!/bin/sh\necho ran\n", mode=0o755)
    assert server.run(["/local/shop/prod/files/run.sh"]).stdout == "ran\n"

    # Readers on the server see a whole old or a whole new file while it is replaced.
    one, two = b"1" * 2_000_000, b"2" * 1_500_000
    digests = {hashlib.sha256(one).hexdigest(), hashlib.sha256(two).hexdigest()}
    server.put_file("/local/big", one)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            server.put_file("/local/big", two)
            server.put_file("/local/big", one)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = server.run(["bash", "-c", "for i in $(seq 60); do sha256sum /local/big; done"], timeout=120).stdout.split()[::2]
    finally:
        stop.set()
        thread.join()
    assert len(seen) == 60 and set(seen) <= digests, "a reader saw a partly written file"
    assert server.run(["sh", "-c", "ls -a /local | grep -c '\\.tmp$' || true"]).stdout.strip() == "0"

    server.put_file("/local/empty", b"")
    assert server.get_file("/local/empty") == b""
    with pytest.raises(FileNotFoundError, match="server a: cannot read /local/nope"):
        server.get_file("/local/nope")


# --- connections ----------------------------------------------------------------------------


def test_one_connection_is_reused_and_reestablished_after_a_restart(ssh_bed: Bed, servers: Callable[..., SshServer], known: Path) -> None:
    server = servers("b", connect_attempts=3, backoff=0.2)
    transport = server._link.transport()
    started = time.monotonic()
    for _ in range(10):
        server.run(["true"])
    server.put_file("/tmp/x", b"x")
    assert server.get_file("/tmp/x") == b"x"
    reused = (time.monotonic() - started) / 12
    # more concurrent commands than sshd's MaxSessions (10) allows channels on one connection
    with ThreadPoolExecutor(max_workers=24) as pool:
        outputs = list(pool.map(lambda i: server.run(["sh", "-c", f"sleep 0.3; echo {i}"]).stdout, range(24)))
    assert outputs == [f"{i}\n" for i in range(24)]
    assert server._link.transport() is transport and server._link.generation == 1
    sessions = int(ssh_bed.exec("b", "pgrep", "-c", "-f", "^sshd: root@").stdout.strip() or 0)
    assert sessions == 1, "all calls share one SSH connection"

    started = time.monotonic()
    for _ in range(3):
        fresh = ssh_bed.server("b", known)
        fresh.run(["true"])
        fresh.close()
    fresh_cost = (time.monotonic() - started) / 3
    print(f"\nrun() on the reused connection {reused * 1000:.0f} ms, with a new connection {fresh_cost * 1000:.0f} ms")
    assert reused < fresh_cost, (reused, fresh_cost)

    _inner_docker_ready(server)
    client = server.docker()
    with ThreadPoolExecutor(max_workers=12) as pool:  # more than the Docker pool's 8 channels
        assert all(v["ApiVersion"] for v in pool.map(lambda _: client.version(), range(12)))
    assert client.containers.list(all=True) == []

    # The server goes away: Docker calls and commands fail naming it (after the connection retries)
    subprocess.run(["docker", "stop", "-t", "1", NAME_PREFIX + "b"], check=True, capture_output=True)
    try:
        with pytest.raises(SshConnectError, match=rf"server b \(root@127.0.0.1:{ssh_bed.ports['b']}\): cannot connect \(docker\) after 3 attempt"):
            client.containers.list()
        with pytest.raises(SshConnectError, match=r"server b .*cannot connect \(commands\)"):
            server.run(["true"])
    finally:
        subprocess.run(["docker", "start", NAME_PREFIX + "b"], check=True, capture_output=True)
    server.wait_until_reachable(60)
    assert server.run(["echo", "back"]).stdout == "back\n"  # reconnected by itself
    assert server._link.transport() is not transport
    _inner_docker_ready(server)
    assert server.docker() is client
    assert client.version()["ApiVersion"]  # the pooled channels died with the old connection: replaced


# --- fan-out --------------------------------------------------------------------------------


def test_fan_out_names_a_stopped_server_and_finishes_in_parallel(ssh_bed: Bed, servers: Callable[..., SshServer]) -> None:
    a, b, c = servers("a"), servers("b"), servers("c", connect_attempts=2, backoff=0.2)
    subprocess.run(["docker", "stop", "-t", "1", NAME_PREFIX + "c"], check=True, capture_output=True)
    try:
        c.close()  # the stopped server's connection is gone: the next call must connect
        with pytest.raises(SshConnectError, match="server c "):
            c.docker()

        def work(server):  # type: ignore[no-untyped-def]
            return server.run(["sh", "-c", "sleep 2; hostname"], timeout=30)

        sequential = 0.0
        for server in (a, b, c):
            started = time.monotonic()
            try:
                work(server)
            except SshConnectError:
                pass
            sequential += time.monotonic() - started

        started = time.monotonic()
        results = fan_out([a, b, c], work, max_workers=8, timeout=30)
        parallel = time.monotonic() - started

        assert list(results) == ["a", "b", "c"]
        assert isinstance(results["a"], CommandResult) and results["a"].ok
        assert isinstance(results["b"], CommandResult) and results["b"].ok
        error = results["c"]
        assert isinstance(error, SshConnectError)
        assert f"server c (root@127.0.0.1:{ssh_bed.ports['c']})" in str(error) and "after 2 attempt(s)" in str(error)
        assert isinstance(error.__cause__, OSError)
        assert failures(results) == {"c": error}
        with pytest.raises(FanOutFailed) as info:
            raise_for_failures(results, "deploy")
        assert info.value.lines()[1].startswith("  c: server c (root@127.0.0.1:")
        print(f"\nfan-out over 3 servers (one stopped): {parallel:.1f}s; one after the other: {sequential:.1f}s")
        assert parallel < 0.75 * sequential, (parallel, sequential)
    finally:
        subprocess.run(["docker", "start", NAME_PREFIX + "c"], check=True, capture_output=True)


def test_fan_out_abandons_a_hanging_call_and_bounds_concurrency(servers: Callable[..., SshServer]) -> None:
    a, b = servers("a"), servers("b")

    def work(server):  # type: ignore[no-untyped-def]
        return server.run(["sleep", "20" if server.name == "b" else "1"], timeout=60)

    started = time.monotonic()
    results = fan_out([a, b], work, timeout=3)
    elapsed = time.monotonic() - started
    assert isinstance(results["a"], CommandResult) and results["a"].ok
    assert isinstance(results["b"], FanOutTimeout) and "server b" in str(results["b"])
    assert elapsed < 20 / 2, elapsed

    def one_second(server):  # type: ignore[no-untyped-def]
        return server.run(["sleep", "1"]).ok

    started = time.monotonic()
    fan_out([a, b], one_second, max_workers=2)
    wide = time.monotonic() - started
    started = time.monotonic()
    assert fan_out([a, b], one_second, max_workers=1) == {"a": True, "b": True}
    narrow = time.monotonic() - started
    print(f"\nhanging call abandoned after {elapsed:.1f}s; 2 x sleep 1: {wide:.1f}s with 2 workers, {narrow:.1f}s with 1")
    assert narrow > 1.5 * wide, (narrow, wide)


# --- docker and probes ----------------------------------------------------------------------

#: One perl process (perl-base is in pd-test/debian): HTTP on 8080 (500 on /fail), and on 8081 a
#: server that accepts and closes at once, as the engine's proxy does when nothing listens.
_PERL_SERVERS = r"""
use IO::Socket::INET;
if (fork) {
  my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die;
  while (my $c = $s->accept) { my $l = <$c>; my $code = $l =~ m{/fail} ? "500 Boom" : "200 OK";
    print $c "HTTP/1.0 $code\r\nContent-Length: 2\r\n\r\nok"; close $c }
} else {
  my $s = IO::Socket::INET->new(LocalPort => 8081, Listen => 5, ReuseAddr => 1) or die;
  while (my $c = $s->accept) { close $c }
}
"""


def test_docker_over_ssh_runs_containers_and_probes_run_on_the_server(docker_client, servers: Callable[..., SshServer]) -> None:  # type: ignore[no-untyped-def]
    server = servers("c")
    _inner_docker_ready(server)
    client = server.docker()
    assert client.version()["Version"]
    assert client.info()["Name"]  # the inner engine, not this machine's
    assert client.info()["ID"] != docker_client.info()["ID"]

    started = time.monotonic()
    client.images.load(docker_client.api.get_image("pd-test/debian:bookworm"))
    streamed = time.monotonic() - started
    assert client.images.get("pd-test/debian:bookworm").id == docker_client.images.get("pd-test/debian:bookworm").id
    print(f"\nimage pd-test/debian:bookworm streamed into the server over SSH in {streamed:.1f}s")

    runtime = server.runtime()
    info = runtime.start(ContainerSpec(name="probe-target", image="pd-test/debian:bookworm", command=("perl", "-e", _PERL_SERVERS), ports={8080: 18080, 8081: 18081}, restart="no"))
    assert info.running and info.ports == {8080: 18080, 8081: 18081}
    published = client.containers.get("probe-target").attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
    assert published["HostIp"] == server.bind_address == server.private_address

    def healthy() -> tuple[bool, str] | None:
        result = server.probe_http(18080)
        return result if result[0] else None

    assert wait_for(healthy, what="HTTP on the inner container") == (True, "HTTP 200 from GET /")
    assert server.probe_http(18080, "/fail") == (False, "HTTP 500 from GET /fail")
    ok, what = server.probe_http(18099)
    assert not ok and what.startswith("GET / on port 18099: curl: (7)")
    assert server.probe_tcp(18080) == (True, "TCP port 18080 accepts connections")
    assert server.probe_tcp(22) == (True, "TCP port 22 answers")  # sshd greets first
    assert server.probe_tcp(18081) == (False, "TCP port 18081: connection closed at once (nothing listening behind the published port)")
    assert server.probe_tcp(18099) == (False, "TCP port 18099: connect: Connection refused")
    # the SDK's socket paths (exec attach, followed logs) work over the SSH channels too
    assert client.containers.get("probe-target").exec_run(["echo", "hi"]).output == b"hi\n"
    runtime.start(ContainerSpec(name="talker", image="pd-test/debian:bookworm", command=("sh", "-c", "for i in 1 2 3; do echo line$i; done"), restart="no"))
    assert list(runtime.logs("talker", follow=True)) == ["line1", "line2", "line3"]
    assert sorted(c.name for c in client.containers.list(all=True)) == ["probe-target", "talker"]
    runtime.remove("talker")
    runtime.remove("probe-target")
    assert runtime.get("probe-target") is None


def test_images_reach_servers_only_when_missing(servers: Callable[..., SshServer], ssh_bed: Bed, known: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    """distribute(): streamed to the servers that lack the image id, nothing sent when present,
    only a tag when the id is there under another name; an unreachable server is named while
    the others still get the image."""
    from projectdeployer.deploy.images import ImageTransferError, distribute

    tag = f"pdssh-transfer-{RUN_ID}:v1"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(f"FROM pd-test/debian:bookworm\nLABEL run={RUN_ID}\n".encode()), tag=tag, rm=True)
    a, b = servers("a"), servers("b")
    try:
        first = distribute(docker_client, [a, b], [tag])
        assert sorted((t.server, t.action) for t in first) == [("a", "loaded"), ("b", "loaded")]
        assert all(t.bytes > 1_000_000 and t.image_id == image.id for t in first)
        assert a.docker().images.get(tag).id == image.id
        again = distribute(docker_client, [a, b], [tag])
        assert [t.action for t in again] == ["present", "present"]
        # Asking costs a fraction of sending.
        assert max(t.seconds for t in again) < min(t.seconds for t in first)
        image.tag(f"pdssh-transfer-{RUN_ID}", "v2")
        renamed = distribute(docker_client, [a], [f"pdssh-transfer-{RUN_ID}:v2"])
        assert [(t.action, t.bytes) for t in renamed] == [("tagged", 0)]
        gone = SshServer(name="gone", zone="z1", public_address="127.0.0.1", port=_free_port(), private_address="10.255.255.1", key_pair=ssh_bed.key, known_hosts=known)
        with pytest.raises(ImageTransferError, match="gone: ") as caught:
            distribute(docker_client, [a, gone], [tag])
        assert "a:" not in str(caught.value).replace("gone:", "")
    finally:
        for server in (a, b):
            for ref in (tag, f"pdssh-transfer-{RUN_ID}:v2"):
                try:
                    server.docker().images.remove(ref, force=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        docker_client.images.remove(image.id, force=True)


def test_the_server_lock_excludes_a_second_holder_and_dies_with_its_connection(servers: Callable[..., SshServer], ssh_bed: Bed, known: Path) -> None:  # type: ignore[no-untyped-def]
    """Two operators (two connections) cannot hold the environment's lock at once; the lock
    of a holder whose connection dies is free again at once (no stale lock)."""
    from projectdeployer.providers.ssh import ServerLocked

    first = servers("a")
    second = ssh_bed.server("a", known)  # another operator: its own connection
    path = "/local/shop/prod/deploy.lock"
    try:
        with first.hold_lock(path):
            started = time.monotonic()
            with pytest.raises(ServerLocked, match="locked by another deploy"), second.hold_lock(path, wait=1.0):
                pass
            assert time.monotonic() - started >= 1.0  # it waited as told
        with second.hold_lock(path):  # released at the end of the block
            pass
        holder = first.hold_lock(path)
        holder.__enter__()
        first.close()  # the holder's connection dies without releasing
        with second.hold_lock(path, wait=10.0):
            pass
    finally:
        second.close()


def test_images_come_from_a_registry_on_this_machine_through_the_ssh_connection(servers: Callable[..., SshServer], registry: str, docker_client) -> None:  # type: ignore[no-untyped-def]
    """Pushed once, pulled by digest by a server whose engine cannot reach this machine's
    loopback registry except through its SSH connection (reverse forward)."""
    from projectdeployer.default_plugins.docker_builder import push_image
    from projectdeployer.deploy.images import distribute

    tag = f"{registry}/pdssh-reg-{RUN_ID}:v1"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(f"FROM pd-test/debian:bookworm\nLABEL reg={RUN_ID}\n".encode()), tag=tag, rm=True)
    c = servers("c")
    try:
        digest_ref = push_image(tag, lambda line: None)
        assert digest_ref.startswith(f"{registry}/pdssh-reg-{RUN_ID}@sha256:")
        done = distribute(docker_client, [c], [tag], pushed={tag: digest_ref})
        assert [(t.action, t.bytes) for t in done] == [("pulled", 0)]
        assert c.docker().images.get(tag).id == image.id
        assert [t.action for t in distribute(docker_client, [c], [tag], pushed={tag: digest_ref})] == ["present"]
        # without the tunnel the server's engine cannot reach this machine's loopback
        assert not c.run(["curl", "-sS", "--max-time", "3", f"http://{registry}/v2/"]).ok
        # A digest-pinned reference is pulled by the server itself (save/load keeps no digest).
        c.docker().images.remove(digest_ref, force=True)
        c.docker().images.remove(tag, force=True)
        pinned = distribute(docker_client, [c], [digest_ref])
        assert [t.action for t in pinned] == ["pulled"] and pinned[0].image_id == image.id
        assert c.docker().images.get(digest_ref).id == image.id
        assert [t.action for t in distribute(docker_client, [c], [digest_ref])] == ["present"]
    finally:
        for ref in (tag, digest_ref if "digest_ref" in locals() else tag):
            try:
                c.docker().images.remove(ref, force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        docker_client.images.remove(image.id, force=True)
