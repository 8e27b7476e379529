"""The pure parts of the sandbox provider (projectdeployer.providers.sandbox): names, labels and
their filters, the docker-run flags computed from a CapBnd mask (server-run-flags.sh's logic),
sizes, the state file, subnets, image choice, registration. No Docker engine is needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy
import pytest

from projectdeployer.core.errors import ConfigError
from projectdeployer.core.provider import CommandResult
from projectdeployer.core.registry import build_registry
from projectdeployer.plugins import make_plugin_manager
from projectdeployer.project.file import build_project
from projectdeployer.providers import sandbox
from projectdeployer.providers.sandbox import (
    CAPABILITY_NAMES,
    DEFAULT_IMAGE,
    IMAGE_ENV,
    LABEL,
    LABEL_ENV,
    LABEL_PROJECT,
    LABEL_STATE,
    LABEL_ZONE,
    RunFlags,
    SandboxError,
    SandboxServer,
    ServerState,
    check_state,
    check_zone,
    compute_run_flags,
    dockerd_capbnd,
    label_filters,
    limits,
    lowest_free_index,
    missing_capabilities,
    pick_subnet,
    public_network_name,
    resolve_image,
    server_index,
    server_labels,
    server_name,
    spec_tags,
    tar_file,
    untar_file,
    zone_network_name,
)

pytestmark = pytest.mark.unit

#: dockerd's bounding set on the machine this was built on: every capability but SYS_RESOURCE (24).
THIS_MACHINE_CAPBND = 0x000001FFFEFFFFFF


# --- names ------------------------------------------------------------------------------------


def test_names_follow_the_droplet_scheme() -> None:
    assert server_name("shop", "prod", "lon1", 3) == "shop-prod-lon1-3"
    assert zone_network_name("shop", "prod", "lon1") == "pd-sbx-shop-prod-lon1"
    assert public_network_name("shop", "prod") == "pd-sbx-shop-prod-public"


def test_server_index_reads_only_names_of_that_zone() -> None:
    assert server_index("shop-prod-lon1-12", "shop", "prod", "lon1") == 12
    assert server_index("shop-prod-lon1-x", "shop", "prod", "lon1") is None
    assert server_index("shop-prod-lon1-01", "shop", "prod", "lon1") is None  # never generated
    assert server_index("shop-prod-nyc3-1", "shop", "prod", "lon1") is None
    assert server_index("shop-prod-lon1-2-1", "shop", "prod", "lon1") is None


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        ([], 1),
        (["shop-prod-lon1-1", "shop-prod-lon1-2"], 3),
        (["shop-prod-lon1-1", "shop-prod-lon1-3"], 2),  # a gap left by a destroyed server is reused
        (["shop-prod-lon1-2"], 1),
        (["shop-prod-nyc3-1", "shop-dev-lon1-1", "other"], 1),  # other zones/envs do not count
    ],
)
def test_lowest_free_index(taken: list[str], expected: int) -> None:
    assert lowest_free_index(taken, "shop", "prod", "lon1") == expected


@pytest.mark.parametrize("zone", ["a", "lon1", "zone-2", "x" * 32])
def test_valid_zones(zone: str) -> None:
    assert check_zone(zone) == zone


@pytest.mark.parametrize("zone", ["", "public", "Lon1", "lon_1", "-a", "a-", "x" * 33, "a b"])
def test_invalid_zones_are_refused(zone: str) -> None:
    with pytest.raises(SandboxError, match="cannot be a sandbox zone"):
        check_zone(zone)


# --- labels and filters -----------------------------------------------------------------------


def test_server_labels_are_the_droplet_tags() -> None:
    labels = server_labels("shop", "prod", "lon1", "shop-prod-lon1-1", state="active", token="abc", tags={"role": "db"})
    assert labels[LABEL] == "1"
    assert labels[LABEL_PROJECT] == "shop" and labels[LABEL_ENV] == "prod" and labels[LABEL_ZONE] == "lon1"
    assert labels[LABEL_STATE] == "active"
    assert spec_tags(labels) == {"role": "db"}
    # Not the deploy engine's container labels: a local deploy of the same project must not
    # mistake sandbox servers for its own containers.
    assert "io.projectdeployer.project" not in labels and "io.projectdeployer.service" not in labels


def test_label_filters() -> None:
    assert label_filters("shop", "prod") == {"label": [f"{LABEL}=1", f"{LABEL_PROJECT}=shop", f"{LABEL_ENV}=prod"]}
    wanted = label_filters("shop", "prod", kind="server", zone="lon1", server="shop-prod-lon1-1", token="t")
    assert set(wanted["label"]) == {
        f"{LABEL}=1",
        f"{LABEL_PROJECT}=shop",
        f"{LABEL_ENV}=prod",
        f"{LABEL}.kind=server",
        f"{LABEL_ZONE}=lon1",
        f"{LABEL}.server=shop-prod-lon1-1",
        f"{LABEL}.token=t",
    }


def test_filters_select_exactly_what_labels_describe() -> None:
    """What Docker would match: every filter of a server's listing is among its labels."""
    labels = server_labels("shop", "prod", "lon1", "shop-prod-lon1-1", state="reserve", token="t")
    as_pairs = {f"{k}={v}" for k, v in labels.items()}
    assert set(label_filters("shop", "prod", kind="server", zone="lon1")["label"]) <= as_pairs
    assert not set(label_filters("shop", "dev", kind="server")["label"]) <= as_pairs
    assert not set(label_filters("shop", "prod", kind="volume")["label"]) <= as_pairs


# --- docker run flags -------------------------------------------------------------------------


def test_missing_capabilities_of_this_machine() -> None:
    assert missing_capabilities(THIS_MACHINE_CAPBND, 40) == ["SYS_RESOURCE"]
    assert missing_capabilities((1 << 41) - 1, 40) == []
    # Capabilities the kernel does not have (above cap_last_cap) are not "missing".
    assert missing_capabilities((1 << 38) - 1, 37) == []
    assert missing_capabilities(0, 2) == ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH"]
    assert CAPABILITY_NAMES[24] == "SYS_RESOURCE" and CAPABILITY_NAMES[21] == "SYS_ADMIN" and len(CAPABILITY_NAMES) == 41


def test_flags_when_privileged_works() -> None:
    flags = compute_run_flags(privileged_works=True, capbnd=THIS_MACHINE_CAPBND, last_cap=40, fuse=True)
    assert flags.cli() == ["--privileged"]
    assert flags.host_config() == {"privileged": True} and flags.raw_host_config() == {}


def test_flags_of_this_machine_match_the_script() -> None:
    """The lines tests/images/server-run-flags.sh printed here (README, section b)."""
    flags = compute_run_flags(privileged_works=False, capbnd=THIS_MACHINE_CAPBND, last_cap=40, fuse=True)
    assert flags.cli() == [
        "--cap-add=ALL",
        "--cap-drop=SYS_RESOURCE",
        "--security-opt=seccomp=unconfined",
        "--security-opt=apparmor=unconfined",
        "--security-opt=systempaths=unconfined",
        "--device-cgroup-rule=a *:* rwm",
        "--device=/dev/fuse",
    ]
    config = flags.host_config()
    assert config["cap_add"] == ["ALL"] and config["cap_drop"] == ["SYS_RESOURCE"]
    assert config["security_opt"] == ["seccomp=unconfined", "apparmor=unconfined"]  # systempaths is CLI-only:
    assert flags.raw_host_config() == {"MaskedPaths": [], "ReadonlyPaths": []}  # ...it becomes these
    assert config["device_cgroup_rules"] == ["a *:* rwm"] and config["devices"] == ["/dev/fuse:/dev/fuse:rwm"]


def test_flags_without_fuse_and_without_a_visible_dockerd() -> None:
    flags = compute_run_flags(privileged_works=False, capbnd=None, last_cap=40, fuse=False)
    assert flags == RunFlags(privileged=False, cap_drop=("SYS_RESOURCE",), fuse=False)
    assert "--device=/dev/fuse" not in flags.cli() and "devices" not in flags.host_config()
    several = compute_run_flags(privileged_works=False, capbnd=THIS_MACHINE_CAPBND & ~(1 << 16), last_cap=40, fuse=False)
    assert [f for f in several.cli() if f.startswith("--cap-drop")] == ["--cap-drop=SYS_MODULE", "--cap-drop=SYS_RESOURCE"]


def _proc(root: Path, pid: int, comm: str, start: int, capbnd: str) -> None:
    d = root / str(pid)
    d.mkdir()
    (d / "comm").write_text(comm + "\n")
    fields = ["S"] + ["0"] * 18 + [str(start)] + ["0"] * 10  # field 22 (starttime) is index 19 after ")"
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")
    (d / "status").write_text(f"Name:\t{comm}\nCapBnd:\t{capbnd}\n")


def test_dockerd_capbnd_reads_the_oldest_dockerd(tmp_path: Path) -> None:
    assert dockerd_capbnd(tmp_path) is None
    _proc(tmp_path, 300, "dockerd", 900, "0000000000000001")  # a newer (nested) dockerd
    _proc(tmp_path, 200, "dockerd", 100, "000001fffeffffff")
    _proc(tmp_path, 100, "containerd", 50, "0000000000000000")
    (tmp_path / "self").mkdir()
    assert dockerd_capbnd(tmp_path) == THIS_MACHINE_CAPBND


# --- sizes, state, files, subnets, image ------------------------------------------------------


def test_limits() -> None:
    assert limits(1, 1024) == {"nano_cpus": 1_000_000_000, "mem_limit": 1024 * 2**20, "memswap_limit": 1024 * 2**20}
    assert limits(8, 512, host_cpus=2)["nano_cpus"] == 2_000_000_000  # capped at the engine's CPUs
    assert limits(0.5, 512, host_cpus=2)["nano_cpus"] == 500_000_000
    for cpu, memory in ((0, 512), (1, 10)):
        with pytest.raises(SandboxError, match="needs cpu > 0 and memory >= 64 MB"):
            limits(cpu, memory)


def test_state_file_round_trip() -> None:
    state = ServerState(state="reserve", cpu=4, memory=8192)
    assert state.dumps() == b'{"cpu": 4, "memory": 8192, "state": "reserve"}\n'
    assert ServerState.loads(state.dumps()) == state
    assert ServerState.loads(ServerState(state="active", cpu=0.5, memory=512).dumps()).cpu == 0.5
    assert [check_state(s) for s in ("active", "reserve", "destroying")]
    with pytest.raises(SandboxError, match="unknown server state 'gone'"):
        check_state("gone")


def test_tar_round_trip() -> None:
    assert untar_file([tar_file("pd-state", b"hello")]) == b"hello"
    data = tar_file("x", b"a" * 70000)
    assert untar_file([data[:1000], data[1000:]]) == b"a" * 70000  # streamed in chunks
    with pytest.raises(SandboxError):
        untar_file([b"\0" * 1024])


def test_pick_subnet() -> None:
    assert pick_subnet([], "10.213.0.0/16") == "10.213.0.0/24"
    assert pick_subnet(["10.213.0.0/24", "10.213.1.0/25", "172.17.0.0/16"], "10.213.0.0/16") == "10.213.2.0/24"
    assert pick_subnet(["10.0.0.0/8"], "10.213.0.0/16") is None
    assert pick_subnet(["fd00::/64"], "10.213.0.0/30", prefix=31) == "10.213.0.0/31"


def test_resolve_image_precedence() -> None:
    assert resolve_image(environ={}) == DEFAULT_IMAGE == "pd-test/server:bookworm"
    assert resolve_image(None, {"server": "reg:5000/srv:1"}, environ={}) == "reg:5000/srv:1"
    assert resolve_image(None, {"server": "reg:5000/srv:1"}, environ={IMAGE_ENV: "mine:2"}) == "mine:2"
    assert resolve_image("given:3", {"server": "x"}, environ={IMAGE_ENV: "mine:2"}) == "given:3"


def test_for_project_takes_the_images_server_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IMAGE_ENV, raising=False)

    class P:
        def __init__(self) -> None:
            self.images = {"server": "reg:5000/srv:1"}

    assert sandbox.SandboxProvider.for_project(P()).image == "reg:5000/srv:1"
    assert sandbox.SandboxProvider().image == DEFAULT_IMAGE
    monkeypatch.setenv(IMAGE_ENV, "mine:2")
    assert sandbox.SandboxProvider().image == "mine:2"


# --- the server object ------------------------------------------------------------------------


class FakeSsh:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.port = 32999

    def run(self, command: Any, *, timeout: Any = None) -> CommandResult:
        self.calls.append(("run", list(command)))
        return CommandResult(exit_code=0, stdout="ok", stderr="")

    def put_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.calls.append(("put", (path, data, mode)))

    def get_file(self, path: str) -> bytes:
        return b"data"


def _server(ssh: Any, power: str = "on") -> SandboxServer:
    tags = {"project": "shop", "env": "prod", "zone": "a", "state": "active", "power": power, "container_status": "running", "ssh_port": "32999"}
    return SandboxServer(name="shop-prod-a-1", zone="a", private_address="10.0.0.2", public_address="10.1.0.2", tags=tags, container_id="c1", ssh=ssh)


def test_server_delegates_to_ssh() -> None:
    ssh = FakeSsh()
    server = _server(ssh)
    assert server.run(["echo", "hi"]).stdout == "ok"
    server.put_file("/local/x", b"1", mode=0o600)
    assert server.get_file("/local/x") == b"data"
    assert ssh.calls == [("run", ["echo", "hi"]), ("put", ("/local/x", b"1", 0o600))]
    assert server.bind_address == "0.0.0.0" and server.data_root == "/local"
    assert server.ssh_port == 32999 and server.state == "active" and server.running
    assert server.port == 32999  # anything else of SshServer is reached through the server


def test_stopped_server_says_so() -> None:
    server = _server(None, power="off")
    with pytest.raises(SandboxError, match="server shop-prod-a-1 is not running"):
        server.run(["true"])
    assert not hasattr(server, "port")


# --- registration -----------------------------------------------------------------------------


@pytest.fixture
def sandbox_manager() -> pluggy.PluginManager:
    manager = make_plugin_manager()
    manager.register(sandbox, name="provider_sandbox")
    return manager


def test_registered_with_the_regions(sandbox_manager: pluggy.PluginManager) -> None:
    registry = build_registry(sandbox_manager)
    entry = registry.providers["sandbox"]
    assert entry.plugin == "provider_sandbox" and {"lon1", "nyc3", "fra1"} <= entry.zones
    assert isinstance(entry.get(), sandbox.SandboxProvider)  # no engine is touched until used


def test_project_file_may_name_the_sandbox(sandbox_manager: pluggy.PluginManager) -> None:
    registry = build_registry(sandbox_manager)
    doc = {"project": {"name": "shop"}, "environments": {"rehearsal": {"provider": "sandbox", "zones": ["lon1", "nyc3"]}}}
    project = build_project(doc, source="shop.toml", registry=registry)
    assert project.environment("rehearsal").provider == "sandbox"
    with pytest.raises(ConfigError, match="unknown zone 'mars1'"):
        build_project({**doc, "environments": {"rehearsal": {"provider": "sandbox", "zones": ["mars1"]}}}, source="shop.toml", registry=registry)


def test_entry_point_is_declared() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'provider_sandbox = "projectdeployer.providers.sandbox"' in pyproject


def test_images_server_is_a_known_key_and_configures_the_provider_of_a_deploy(sandbox_manager: pluggy.PluginManager, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    registry = build_registry(sandbox_manager)
    assert registry.image_keys["server"] == DEFAULT_IMAGE and "server" not in registry.default_images  # `init` does not write it
    doc = {"project": {"name": "shop"}, "images": {"server": "reg:5000/srv:1"}, "environments": {"rehearsal": {"provider": "sandbox"}}}
    project = build_project(doc, source="shop.toml", registry=registry)
    entry = registry.providers["sandbox"]
    assert entry.get(project).image == "reg:5000/srv:1" and entry.get(project) is entry.get(project)
    assert entry.get().image == DEFAULT_IMAGE
    with pytest.raises(ConfigError, match=r"images\.servr: unknown image key \(known: .*server"):
        build_project({**doc, "images": {"servr": "x"}}, source="shop.toml", registry=registry)
