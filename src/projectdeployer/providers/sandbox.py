"""The ``sandbox`` provider: servers as containers on this machine's Docker engine.

Rehearse a multi-server, multi-zone deploy on a laptop before paying for droplets, and the bed
of the end-to-end tests. Each server is a container of ``pd-test/server:bookworm`` (sshd plus its
own dockerd; ``PROJECTDEPLOYER_SANDBOX_IMAGE``, or the project's ``[images] server`` through
:meth:`SandboxProvider.for_project`, picks another image with the same entrypoint contract)
reached over real SSH, exactly as a droplet would be.

How droplets map onto containers
--------------------------------
==========================  ================================================================
droplet                      sandbox server
==========================  ================================================================
name                         container ``{project}-{env}-{zone}-{n}`` (lowest free ``n``)
tags (inventory)             labels ``io.projectdeployer.sandbox*``; listing filters by them,
                             live, never cached
VPC per region               a user-defined ``--internal`` network per zone,
                             ``pd-sbx-{project}-{env}-{zone}``: the private address
public IPv4                  one shared network ``pd-sbx-{project}-{env}-public`` that every
                             server joins; servers of different zones reach each other only
                             there (Docker's isolation rules drop traffic between two networks)
SSH on the public address    port 22 published on ``127.0.0.1`` (an ephemeral port, recorded
                             in ``tags["ssh_port"]``); the operator's SSH goes there
size (vCPU, memory)          ``nano_cpus`` / ``mem_limit`` of the container (vCPUs above the
                             engine's CPU count are capped: the requested size is kept)
resize                       ``docker container update`` of the running container
SSH key installed at create  ``SSH_AUTHORIZED_KEYS`` (the project/env's public key)
disk                         named volumes for ``/var/lib/docker`` and ``/local``, removed
                             with the server
status tag (active/reserve/  the file ``/etc/pd-state`` inside the server (JSON: state and
destroying)                  requested size), read and written through the Docker archive
                             API, so it is live, shared by every operator, and dies with the
                             server. The label ``...sandbox.state`` keeps the state at creation
                             (labels cannot change without recreating the container, and
                             recreating a server would change its host key and addresses).
==========================  ================================================================

Host keys are not trusted on first use: the provider reads the server's ed25519 host key through
the Docker API (a channel it already trusts) and pins it in the project/env's ``known_hosts``
before the first SSH connection (an entry that differs from what the engine says, left by a
server that had the same published port before, is replaced: the engine is the authority here);
destroying a server forgets it (published ports get reused).

The container runs with the flags of ``tests/images/server-run-flags.sh`` (reimplemented here):
``--privileged`` where the engine can start privileged containers, else every capability the
engine's bounding set has, no seccomp/apparmor confinement, unmasked ``/proc``, every device
allowed and ``/dev/fuse``. The inner engine's storage is a volume, on which it picks overlay2
(the fastest option measured; see tests/images/README.md, section b).
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import re
import secrets
import socket
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ..core.errors import ProjectDeployerError
from ..core.fanout import fan_out
from ..core.poll import WaitTimeout, retry, wait_until
from ..core.provider import Provider, Server, ServerSpec
from ..hookspecs import hookimpl
from .digitalocean import REGIONS
from .ssh.keys import HostKey, ensure_keypair, known_hosts_path
from .ssh.wrapped import SshBackedServer

if TYPE_CHECKING:
    from .ssh.server import SshServer

T = TypeVar("T")

PROVIDER_NAME = "sandbox"
DEFAULT_IMAGE = "pd-test/server:bookworm"
IMAGE_ENV = "PROJECTDEPLOYER_SANDBOX_IMAGE"
TIMEOUT_ENV = "PROJECTDEPLOYER_SANDBOX_TIMEOUT"
SUBNETS_ENV = "PROJECTDEPLOYER_SANDBOX_SUBNETS"
#: Where networks get their /24 when Docker's default address pools are used up.
DEFAULT_SUBNETS = "10.213.0.0/16"
DEFAULT_READY_TIMEOUT = 180.0

#: Exists once the server's own dockerd answers (written by the image's entrypoint).
READY_FILE = "/run/pd-server-ready"
#: The server's state and requested size (JSON), the sandbox's "status tag".
STATE_FILE = "/etc/pd-state"
HOST_KEY_FILE = "/etc/ssh/ssh_host_ed25519_key.pub"
STATES = ("active", "reserve", "destroying")
#: The name of the shared network's "zone": not usable as a zone name.
PUBLIC = "public"
#: Address the operator's SSH connections go to (the published port).
SSH_HOST = "127.0.0.1"

LABEL = "io.projectdeployer.sandbox"
LABEL_PROJECT = f"{LABEL}.project"
LABEL_ENV = f"{LABEL}.env"
#: Zone of a server or a VPC network; ``public`` on the shared network.
LABEL_ZONE = f"{LABEL}.zone"
#: State at creation; the live state is in :data:`STATE_FILE`.
LABEL_STATE = f"{LABEL}.state"
#: Server name, on its container and its volumes.
LABEL_SERVER = f"{LABEL}.server"
#: ``server``, ``vpc``, ``public`` or ``volume``.
LABEL_KIND = f"{LABEL}.kind"
#: One creation of a server: ties its volumes to its container (names get reused).
LABEL_TOKEN = f"{LABEL}.token"
#: ``ServerSpec.tags`` are kept as ``{LABEL_TAG_PREFIX}{key}`` labels.
LABEL_TAG_PREFIX = f"{LABEL}.tag."
#: Who holds a creation lock (:meth:`SandboxProvider.creation_lock`).
LABEL_HOLDER_HOST = f"{LABEL}.holder.host"
LABEL_HOLDER_PID = f"{LABEL}.holder.pid"
LABEL_HOLDER_SINCE = f"{LABEL}.holder.since"

#: The zones a project file may name for this provider: DigitalOcean's regions, so a project
#: written for droplets is rehearsed unchanged. The Python API accepts any zone slug.
SANDBOX_ZONES = REGIONS

ZONE_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")

#: Capability names by number (``capability.h``), as the flag script lists them.
CAPABILITY_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)  # fmt: skip


class SandboxError(ProjectDeployerError):
    """A sandbox server could not be created, found or changed."""


class SandboxLocked(SandboxError):
    """Another deploy holds the creation lock of the project/env; says who and since when."""


class _NetworkGone(Exception):
    """A network a creation needs was removed meanwhile by another process (its ``__cause__``): ensured again."""


class _SubnetTaken(Exception):
    """The /24 picked for a network was taken meanwhile (its ``__cause__``): another is picked."""


class SandboxCreateFailed(SandboxError):
    """Some servers of :meth:`SandboxProvider.create_servers` failed; the others are in ``created``."""

    def __init__(self, errors: Sequence[BaseException], created: Sequence[SandboxServer]) -> None:
        self.errors = list(errors)
        self.created = list(created)
        lines = [f"{len(self.errors)} of {len(self.errors) + len(self.created)} sandbox server(s) could not be created:"]
        lines += [f"  {exc}" for exc in self.errors]
        super().__init__("\n".join(lines))


# --- names and labels (pure) ------------------------------------------------------------------


def check_zone(zone: str) -> str:
    """``zone`` if it can name a sandbox zone (a slug that fits container and network names)."""
    if zone == PUBLIC or not ZONE_RE.match(zone):
        raise SandboxError(f"'{zone}' cannot be a sandbox zone (lower-case letters, digits and -, at most 32; not '{PUBLIC}')")
    return zone


def server_name(project: str, env: str, zone: str, index: int) -> str:
    """``{project}-{env}-{zone}-{n}``, as droplets are named."""
    return f"{project}-{env}-{zone}-{index}"


def server_index(name: str, project: str, env: str, zone: str) -> int | None:
    """The ``n`` of a server name of that project/env/zone, or ``None``."""
    prefix = f"{project}-{env}-{zone}-"
    rest = name.removeprefix(prefix)
    return int(rest) if name.startswith(prefix) and rest.isdigit() and not rest.startswith("0") else None


def lowest_free_index(taken: Iterable[str], project: str, env: str, zone: str) -> int:
    """The lowest ``n >= 1`` whose server name is not in ``taken``."""
    used = {server_index(name, project, env, zone) for name in taken}
    index = 1
    while index in used:
        index += 1
    return index


def zone_network_name(project: str, env: str, zone: str) -> str:
    """The zone's VPC network: ``pd-sbx-{project}-{env}-{zone}``."""
    return f"pd-sbx-{project}-{env}-{zone}"


def public_network_name(project: str, env: str) -> str:
    """The network every server of the project/env joins: ``pd-sbx-{project}-{env}-public``."""
    return f"pd-sbx-{project}-{env}-{PUBLIC}"


def base_labels(project: str, env: str, kind: str) -> dict[str, str]:
    """The labels every object of a project/env carries."""
    return {LABEL: "1", LABEL_PROJECT: project, LABEL_ENV: env, LABEL_KIND: kind}


def server_labels(project: str, env: str, zone: str, name: str, *, state: str, token: str, tags: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels of a server container: the droplet's tags."""
    labels = base_labels(project, env, "server")
    labels.update({LABEL_ZONE: zone, LABEL_SERVER: name, LABEL_STATE: state, LABEL_TOKEN: token})
    labels.update({f"{LABEL_TAG_PREFIX}{key}": str(value) for key, value in (tags or {}).items()})
    return labels


def lock_name(project: str, env: str) -> str:
    """The container whose existence is ``project``/``env``'s creation lock (the digest keeps
    ``a-b``/``c`` and ``a``/``b-c`` apart)."""
    digest = hashlib.sha256(f"{project}\0{env}".encode()).hexdigest()[:8]
    return f"pd-sbx-lock-{project}-{env}-{digest}"


def _holder_gone(labels: Mapping[str, str]) -> bool:
    """A lock left by a process of this host that no longer exists."""
    if labels.get(LABEL_HOLDER_HOST) != socket.gethostname():
        return False
    try:
        pid = int(labels.get(LABEL_HOLDER_PID, ""))
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def label_filters(project: str, env: str, *, kind: str | None = None, **more: str) -> dict[str, list[str]]:
    """Docker ``filters`` selecting the objects of a project/env (``zone=``, ``server=``, ``token=``)."""
    wanted = {LABEL: "1", LABEL_PROJECT: project, LABEL_ENV: env}
    if kind is not None:
        wanted[LABEL_KIND] = kind
    keys = {"zone": LABEL_ZONE, "server": LABEL_SERVER, "token": LABEL_TOKEN}
    for key, value in more.items():
        wanted[keys[key]] = value
    return {"label": [f"{key}={value}" for key, value in wanted.items()]}


def spec_tags(labels: Mapping[str, str]) -> dict[str, str]:
    """The ``ServerSpec.tags`` a server was created with, from its labels."""
    return {key[len(LABEL_TAG_PREFIX) :]: value for key, value in labels.items() if key.startswith(LABEL_TAG_PREFIX)}


def resolve_image(explicit: str | None = None, project_images: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The server image: an explicit one, else ``$PROJECTDEPLOYER_SANDBOX_IMAGE``, else the
    project's ``[images] server``, else ``pd-test/server:bookworm``."""
    environ = os.environ if environ is None else environ
    return explicit or environ.get(IMAGE_ENV) or (project_images or {}).get("server") or DEFAULT_IMAGE


# --- docker run flags (pure, plus the host probes that feed them) -----------------------------


def missing_capabilities(capbnd: int, last_cap: int) -> list[str]:
    """Capabilities (numbers ``0..last_cap`` that have a name) missing from a ``CapBnd`` mask."""
    return [CAPABILITY_NAMES[i] for i in range(min(last_cap + 1, len(CAPABILITY_NAMES))) if not (capbnd >> i) & 1]


@attrs.frozen
class RunFlags:
    """How a server container must run so that its own dockerd works on this engine."""

    privileged: bool
    cap_drop: tuple[str, ...] = ()
    fuse: bool = False

    def cli(self) -> list[str]:
        """The ``docker run`` flags, one per item, as ``server-run-flags.sh`` prints them."""
        if self.privileged:
            return ["--privileged"]
        flags = ["--cap-add=ALL", *(f"--cap-drop={cap}" for cap in self.cap_drop)]
        flags += ["--security-opt=seccomp=unconfined", "--security-opt=apparmor=unconfined", "--security-opt=systempaths=unconfined"]
        flags.append("--device-cgroup-rule=a *:* rwm")
        if self.fuse:
            flags.append("--device=/dev/fuse")
        return flags

    def host_config(self) -> dict[str, Any]:
        """The same as keyword arguments of the Docker SDK's ``create_host_config``.

        ``systempaths=unconfined`` is no daemon option: the CLI turns it into empty
        ``MaskedPaths``/``ReadonlyPaths``, which :meth:`raw_host_config` adds.
        """
        if self.privileged:
            return {"privileged": True}
        kwargs: dict[str, Any] = {
            "cap_add": ["ALL"],
            "cap_drop": list(self.cap_drop),
            "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
            "device_cgroup_rules": ["a *:* rwm"],
        }
        if self.fuse:
            kwargs["devices"] = ["/dev/fuse:/dev/fuse:rwm"]
        return kwargs

    def raw_host_config(self) -> dict[str, Any]:
        """``HostConfig`` fields the SDK has no argument for (unmasked ``/proc`` and ``/sys``)."""
        return {} if self.privileged else {"MaskedPaths": [], "ReadonlyPaths": []}


def compute_run_flags(*, privileged_works: bool, capbnd: int | None, last_cap: int, fuse: bool) -> RunFlags:
    """The flags, from what the host says: the script's logic.

    :param privileged_works: a ``--privileged`` probe container started.
    :param capbnd: dockerd's ``CapBnd`` mask, ``None`` when dockerd is not visible from here
        (then ``SYS_RESOURCE`` is assumed missing, as on the machine this was built on).
    :param last_cap: ``/proc/sys/kernel/cap_last_cap``.
    :param fuse: ``/dev/fuse`` exists.
    """
    if privileged_works:
        return RunFlags(privileged=True)
    missing = missing_capabilities(capbnd, last_cap) if capbnd is not None else ["SYS_RESOURCE"]
    return RunFlags(privileged=False, cap_drop=tuple(missing), fuse=fuse)


def dockerd_capbnd(proc: Path = Path("/proc")) -> int | None:
    """``CapBnd`` of the oldest ``dockerd`` process (``pgrep -xo dockerd``), if one is visible."""
    oldest: tuple[int, Path] | None = None
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "dockerd":
                continue
            started = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[19])
        except (OSError, ValueError, IndexError):
            continue
        if oldest is None or started < oldest[0]:
            oldest = (started, entry)
    if oldest is None:
        return None
    try:
        for line in (oldest[1] / "status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def cap_last_cap(path: Path = Path("/proc/sys/kernel/cap_last_cap")) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return len(CAPABILITY_NAMES) - 1


def probe_privileged(client: Any, image: str) -> bool:
    """Whether this engine starts a ``--privileged`` container (a one-second probe)."""
    import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

    container = None
    try:
        container = client.containers.create(image, entrypoint=["true"], privileged=True, labels={LABEL: "probe"})
        container.start()
        return int(container.wait(timeout=60).get("StatusCode", 1)) == 0
    except docker.errors.APIError:
        return False
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass


_flags_lock = threading.Lock()
_flags_cache: dict[tuple[str, str], RunFlags] = {}


def host_run_flags(client: Any, image: str) -> RunFlags:
    """The flags for this engine, probed once per process (per engine and image)."""
    key = (str(client.api.base_url), image)
    with _flags_lock:
        if key not in _flags_cache:
            _flags_cache[key] = compute_run_flags(privileged_works=probe_privileged(client, image), capbnd=dockerd_capbnd(), last_cap=cap_last_cap(), fuse=os.path.exists("/dev/fuse"))
        return _flags_cache[key]


# --- sizes, state and files (pure) ------------------------------------------------------------


def copy_volume(client: Any, image: str, source: str, target: str) -> None:
    """Copy every file of volume ``source`` into volume ``target`` (owners, modes, links and
    device nodes kept), with a throwaway container of ``image``."""
    from docker.types import Mount  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

    mounts = [Mount(target="/from", source=source, type="volume", read_only=True), Mount(target="/to", source=target, type="volume")]
    container = client.containers.create(image, entrypoint=["sh", "-c", "cp -a /from/. /to/"], command=[], mounts=mounts, labels={LABEL_KIND: "copy"})
    try:
        container.start()
        code = container.wait(timeout=600).get("StatusCode")
        if code != 0:
            raise SandboxError(f"copying volume {source} to {target} failed (exit {code}): {_tail(container)}")
    finally:
        _quietly(partial(container.remove, force=True))


def limits(cpu: float, memory: int, host_cpus: int | None = None) -> dict[str, int]:
    """Container limits for a size: ``nano_cpus`` (capped at the engine's CPUs), memory without swap."""
    if cpu <= 0 or memory < 64:
        raise SandboxError(f"a sandbox server needs cpu > 0 and memory >= 64 MB, got cpu={cpu}, memory={memory}")
    cpus = min(float(cpu), float(host_cpus)) if host_cpus else float(cpu)
    mem = int(memory) * 1024 * 1024
    return {"nano_cpus": int(cpus * 1e9), "mem_limit": mem, "memswap_limit": mem}


@attrs.frozen
class ServerState:
    """The contents of :data:`STATE_FILE`: the status tag and the requested size."""

    state: str
    cpu: float
    memory: int

    def dumps(self) -> bytes:
        cpu: float | int = int(self.cpu) if float(self.cpu).is_integer() else self.cpu
        return (json.dumps({"state": self.state, "cpu": cpu, "memory": self.memory}, sort_keys=True) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes) -> ServerState:
        raw = json.loads(data)
        return cls(state=str(raw["state"]), cpu=raw["cpu"], memory=int(raw["memory"]))


def check_state(state: str) -> str:
    if state not in STATES:
        raise SandboxError(f"unknown server state '{state}' (known: {', '.join(STATES)})")
    return state


def tar_file(name: str, data: bytes, mode: int = 0o644) -> bytes:
    """A tar archive holding one file (for ``put_archive``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def untar_file(chunks: Iterable[bytes]) -> bytes:
    """The first regular file of a tar stream (from ``get_archive``)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r") as tar:
            for member in tar:
                if member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    return handle.read()
    except tarfile.TarError as exc:
        raise SandboxError(f"unreadable archive: {exc}") from None
    raise SandboxError("the archive holds no file")


def pick_subnet(used: Iterable[str], pool: str = DEFAULT_SUBNETS, prefix: int = 24) -> str | None:
    """The first /``prefix`` of ``pool`` that overlaps none of ``used``, or ``None``."""
    taken = [ipaddress.ip_network(net, strict=False) for net in used]
    for candidate in ipaddress.ip_network(pool).subnets(new_prefix=prefix):
        if not any(candidate.overlaps(other) for other in taken if other.version == candidate.version):
            return str(candidate)
    return None


# --- the server -------------------------------------------------------------------------------


class SandboxServer(SshBackedServer):
    """A sandbox server: its addresses and tags, and an :class:`SshServer` for everything it does.

    ``public_address`` is its address on the shared network (what servers of other zones use),
    ``private_address`` its VPC address; the operator's SSH connections go to
    ``127.0.0.1:tags["ssh_port"]``. Anything else of :class:`SshServer` (``close``,
    ``wait_until_reachable``, ``key_pair``, ...) is reached through this object too.

    A wrapper rather than a subclass: :class:`SshServer` connects to its ``public_address``,
    while here the address other servers use (the shared network) and the operator's route
    (the published port on loopback) differ. The inner SshServer is created with
    ``public_address="127.0.0.1"`` and the published port, and is shared by every listing of
    the same container in one provider, so connections are reused.
    """

    data_root = "/local"
    docker_socket = "/var/run/docker.sock"

    def __init__(self, *, name: str, zone: str, private_address: str, public_address: str, tags: Mapping[str, str], container_id: str, ssh: SshServer | None) -> None:
        self.name = name
        self.zone = zone
        self.private_address = private_address
        self.public_address = public_address
        self.tags = dict(tags)
        self.container_id = container_id
        self._ssh = ssh

    def __repr__(self) -> str:
        return f"<SandboxServer {self.name} vpc={self.private_address} public={self.public_address} ssh={SSH_HOST}:{self.ssh_port}>"

    @property
    def bind_address(self) -> str:  # type: ignore[override]
        """Host ports are published on every address of the server: the VPC one for its zone,
        the public one for servers of other zones (droplets in other regions reach each other
        over their public addresses; a firewall admitting only the project's droplets stands in
        for the sandbox's separate networks)."""
        return "0.0.0.0"

    @property
    def ssh_port(self) -> int | None:
        port = self.tags.get("ssh_port")
        return int(port) if port else None

    @property
    def state(self) -> str:
        return self.tags["state"]

    @property
    def running(self) -> bool:
        return self.tags.get("power") == "on"

    @property
    def has_ssh(self) -> bool:
        """Whether the server was running when read, so :attr:`ssh` is there."""
        return self._ssh is not None

    @property
    def ssh(self) -> SshServer:
        """The SSH access (raises for a server that is not running)."""
        if self._ssh is None:
            status = self.tags.get("container_status", "gone")
            what = "is still starting" if status == "starting" else f"is not running (its container is {status})"
            raise SandboxError(f"server {self.name} {what}")
        return self._ssh

    def _delegate(self) -> Any:
        # A server that was not running when read has no SSH access: its other attributes are
        # missing (getattr's default applies), not an error.
        return self.__dict__.get("_ssh")


# --- the provider -----------------------------------------------------------------------------


class SandboxProvider(Provider):
    """Servers as containers of this machine's Docker engine, one VPC network per zone."""

    name = PROVIDER_NAME

    def __init__(self, *, client: Any = None, image: str | None = None, ready_timeout: float | None = None, subnets: str | None = None) -> None:
        self._given_client = client
        self._image = image
        self.ready_timeout = ready_timeout or float(os.environ.get(TIMEOUT_ENV) or DEFAULT_READY_TIMEOUT)
        self.subnets = subnets or os.environ.get(SUBNETS_ENV) or DEFAULT_SUBNETS
        self._lock = threading.RLock()
        self._creating: Counter[tuple[str, str]] = Counter()
        self._ssh_lock = threading.Lock()
        self._image_checked: str | None = None
        #: SSH connections, reused across listings: (container id, ssh port) -> SshServer.
        self._ssh: dict[tuple[str, int], SshServer] = {}

    @classmethod
    def for_project(cls, project: Any, **kwargs: Any) -> SandboxProvider:
        """A provider using the project's ``[images] server`` (unless the environment overrides it)."""
        kwargs.setdefault("image", resolve_image(None, getattr(project, "images", None)))
        return cls(**kwargs)

    @property
    def image(self) -> str:
        return resolve_image(self._image)

    @cached_property
    def client(self) -> Any:
        if self._given_client is not None:
            return self._given_client
        import docker  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        try:
            client = docker.from_env(timeout=300, max_pool_size=32)
            client.ping()
        except Exception as exc:  # noqa: BLE001 - whatever the cause, there is no usable engine
            raise SandboxError(f"the sandbox provider needs this machine's Docker engine ({exc}); is the daemon running?") from None
        return client

    @cached_property
    def host_cpus(self) -> int:
        return int(self.client.info().get("NCPU") or 0)

    # --- listing ------------------------------------------------------------------------

    def list_servers(self, project: str, env: str) -> list[Server]:
        """Every server of ``project``/``env`` now, read from the engine by labels."""
        containers = self.client.containers.list(all=True, filters=label_filters(project, env, kind="server"), ignore_removed=True)
        read = fan_out(containers, lambda c: self._server_from(c, project, env), max_workers=8, name=lambda c: str(c.id))
        found = [s for s in _each_or_raise(read.values()) if s is not None]
        return sorted(found, key=lambda s: (s.zone, server_index(s.name, project, env, s.zone) or 0, s.name))

    def get_server(self, project: str, env: str, name: str) -> SandboxServer | None:
        """The server named ``name``, if it exists."""
        container = self._find_container(project, env, name)
        return None if container is None else self._server_from(container, project, env)

    def _find_container(self, project: str, env: str, name: str, token: str | None = None) -> Any:
        more = {"server": name} if token is None else {"server": name, "token": token}
        found = self.client.containers.list(all=True, filters=label_filters(project, env, kind="server", **more), ignore_removed=True)
        return found[0] if found else None

    def _server_from(self, container: Any, project: str, env: str, *, repin: bool = False) -> SandboxServer | None:
        """The server object of a container (its state file read now)."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        labels = container.labels
        zone = labels.get(LABEL_ZONE, "")
        networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        running = container.status == "running"
        port = _published_port(container.attrs) if running else None
        try:
            state = self._read_state(container)
        except (docker.errors.NotFound, docker.errors.APIError, SandboxError, ValueError, KeyError):
            state = None
        if state is None:
            try:
                container.reload()
            except docker.errors.NotFound:
                return None  # removed meanwhile
            state = ServerState(state=labels.get(LABEL_STATE, "active"), cpu=_cpus(container.attrs), memory=_memory_mb(container.attrs))
        name = labels.get(LABEL_SERVER, container.name)
        tags = {
            "project": project,
            "env": env,
            "zone": zone,
            "state": state.state,
            "cpu": _num(state.cpu),
            "memory": str(state.memory),
            "power": "on" if running else "off",
            "container_status": container.status,
            "token": labels.get(LABEL_TOKEN, ""),
            **({"ssh_port": str(port)} if port else {}),
            **spec_tags(labels),
        }
        ssh = None
        if running and port:
            try:
                ssh = self._ssh_for(container, project, env, name, zone, port, networks, repin=repin)
            except (docker.errors.APIError, SandboxError):
                if repin:
                    raise
                tags["container_status"] = "starting"  # no host key yet: being created elsewhere
        return SandboxServer(
            name=name,
            zone=zone,
            private_address=(networks.get(zone_network_name(project, env, zone)) or {}).get("IPAddress", ""),
            public_address=(networks.get(public_network_name(project, env)) or {}).get("IPAddress", ""),
            tags=tags,
            container_id=container.id,
            ssh=ssh,
        )

    def _ssh_for(self, container: Any, project: str, env: str, name: str, zone: str, port: int, networks: Mapping[str, Any], *, repin: bool) -> SshServer:
        """The (reused) SSH access of a running server, its host key pinned from the engine."""
        from .ssh.known_hosts import KnownHosts  # noqa: PLC0415 - deferred: imports paramiko (start-up: ~0.1 s)
        from .ssh.server import SshServer  # noqa: PLC0415 - deferred: imports paramiko (start-up: ~0.1 s)

        known = KnownHosts(known_hosts_path(project, env))
        key = (container.id, port)
        with self._ssh_lock:
            ssh = self._ssh.get(key)
        if repin or ssh is None or not known.lookup(SSH_HOST, port):
            # First sight of this server (or of its port) by this provider: pin what the engine says.
            self._pin_host_key(container, known, name, port)
        with self._ssh_lock:
            for stale in [k for k in self._ssh if k[0] == container.id and k != key]:
                # Restarted with another published port: the old address is someone else's now.
                _quietly(self._ssh.pop(stale).close)
                _quietly(partial(known.remove, SSH_HOST, stale[1]))
            ssh = self._ssh.get(key)
            if ssh is None:
                private = (networks.get(zone_network_name(project, env, zone)) or {}).get("IPAddress") or None
                ssh = SshServer.for_project(project, env, name=name, zone=zone, public_address=SSH_HOST, port=port, private_address=private, data_root="/local")
                self._ssh[key] = ssh
            return ssh

    def _pin_host_key(self, container: Any, known: Any, name: str, port: int) -> None:
        line = self._read_file(container, HOST_KEY_FILE).decode().split()
        if len(line) < 2:
            raise SandboxError(f"server {name}: unreadable host key {HOST_KEY_FILE}")
        key = HostKey(line[0], line[1])
        if key not in known.lookup(SSH_HOST, port):
            known.remove(SSH_HOST, port)
            known.pin(name, SSH_HOST, port, key)

    # --- files inside the server, through the engine ------------------------------------

    def _read_file(self, container: Any, path: str) -> bytes:
        stream, _stat = container.get_archive(path)
        return untar_file(stream)

    def _file_exists(self, container: Any, path: str) -> bool:
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        try:
            stream, _stat = self.client.api.get_archive(container.id, path)
            for _chunk in stream:  # read to the end: the pooled connection is reused
                pass
            return True
        except docker.errors.NotFound:
            return False

    def _read_state(self, container: Any) -> ServerState:
        return ServerState.loads(self._read_file(container, STATE_FILE))

    def _write_state(self, container: Any, state: ServerState) -> None:
        directory, base = STATE_FILE.rsplit("/", 1)
        container.put_archive(directory or "/", tar_file(base, state.dumps()))

    # --- creating -----------------------------------------------------------------------

    def create_server(self, project: str, env: str, spec: ServerSpec, *, authorized_keys: Sequence[str] = (), image: str | None = None, seed_volumes: Mapping[str, str] | None = None) -> SandboxServer:
        """Create a server in ``spec.zone`` and return it once sshd and its dockerd answer.

        ``spec.tags["state"]`` sets the initial state (default ``active``); the other tags are
        kept as labels. A server that stops or is not ready within :attr:`ready_timeout` is
        removed and reported with its container's last log lines. The container restarts with
        the engine (``unless-stopped``) only once it was ready.

        For the fake DigitalOcean (its droplets are sandbox servers): ``authorized_keys`` are
        accepted for root beside the environment's key; ``image`` replaces the server image (a
        snapshot's); ``seed_volumes`` (``docker``/``local`` -> a volume) fills the new server's
        volumes with a copy of those before it starts.
        """
        check_zone(spec.zone)
        state = check_state(spec.tags.get("state", "active"))
        size = limits(spec.cpu, spec.memory, self.host_cpus)
        key = ensure_keypair(project, env)
        self._ensure_image()
        flags = host_run_flags(self.client, self.image)
        started = time.monotonic()
        keys = "\n".join([key.public_openssh, *authorized_keys])
        with self._creating_in(project, env):
            container, token = self._create_container(project, env, spec, state, size, keys, flags, image=image)
            try:
                for purpose, source in (seed_volumes or {}).items():
                    copy_volume(self.client, self.image, source, f"pd-sbx-{container.name}-{token}-{purpose}")
                self._write_state(container, ServerState(state=state, cpu=spec.cpu, memory=spec.memory))
                container.start()
                return self._wait_ready(project, env, container, started + self.ready_timeout)
            except BaseException:
                self._remove_server_objects(project, env, container.labels.get(LABEL_SERVER, container.name), token, container)
                raise

    def create_servers(self, project: str, env: str, specs: Sequence[ServerSpec], *, max_workers: int = 8) -> list[SandboxServer]:
        """Create several servers in parallel; in the order of ``specs``.

        When some fail, :class:`SandboxCreateFailed` names each failure and keeps the servers
        that were created (``.created``), which are left running.
        """
        if not specs:
            return []
        results = fan_out(list(enumerate(specs)), lambda numbered: self.create_server(project, env, numbered[1]), max_workers=max_workers, name=lambda numbered: str(numbered[0]))
        created: list[SandboxServer] = []
        errors: list[BaseException] = []
        for outcome in results.values():
            if isinstance(outcome, BaseException):
                errors.append(outcome)
            else:
                created.append(outcome)
        if errors:
            raise SandboxCreateFailed(errors, created)
        return created

    def _ensure_image(self) -> None:
        """The server image is on the engine (pulled if it is not and can be)."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        with self._lock:
            if self._image_checked == self.image:
                return
            try:
                self.client.images.get(self.image)
            except docker.errors.ImageNotFound:
                try:
                    self.client.images.pull(self.image)
                except docker.errors.APIError as exc:
                    raise SandboxError(
                        f"the sandbox server image {self.image} is not on this engine and cannot be pulled ({_first_line(exc)}); "
                        f"build pd-test/server:bookworm with tests/images/build.sh, or name another image in {IMAGE_ENV} or [images] server"
                    ) from None
            self._image_checked = self.image

    @contextmanager
    def _creating_in(self, project: str, env: str) -> Iterator[None]:
        """While a creation runs, destroying the zone's last server does not remove networks."""
        with self._lock:
            self._creating[(project, env)] += 1
        try:
            yield
        finally:
            with self._lock:
                self._creating[(project, env)] -= 1

    def _create_container(self, project: str, env: str, spec: ServerSpec, state: str, size: Mapping[str, int], public_key: str, flags: RunFlags, *, image: str | None = None) -> tuple[Any, str]:
        """Networks, volumes and the (created, not started) container, under the provider's lock."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        def attempt() -> tuple[Any, str]:
            with self._lock:
                public = self._ensure_network(project, env, PUBLIC)
                vpc = self._ensure_network(project, env, spec.zone)
                taken = {c.name for c in self.client.containers.list(all=True, filters=label_filters(project, env, kind="server", zone=spec.zone), ignore_removed=True)}
                for _ in range(50):
                    name = server_name(project, env, spec.zone, lowest_free_index(taken, project, env, spec.zone))
                    token = secrets.token_hex(6)
                    try:
                        container = self._create_named(project, env, spec, name, token, state, size, public_key, flags, public, image=image)
                    except docker.errors.APIError as exc:
                        if exc.status_code == 409 and "is already in use" in str(exc):
                            taken.add(name)  # another process (or project/env with a similar name) has it
                            continue
                        if exc.status_code == 404 and "network" in str(exc).lower():
                            raise _NetworkGone() from exc  # removed meanwhile by another process: ensure it again
                        raise
                    try:
                        vpc.connect(container)
                    except docker.errors.NotFound as exc:
                        self._remove_server_objects(project, env, name, token, container)
                        raise _NetworkGone() from exc
                    return container, token
                raise SandboxError(f"no free server name in zone {spec.zone} of {project}/{env}")

        try:
            return retry(attempt, attempts=3, retry_on=_NetworkGone, backoff=0.0)
        except _NetworkGone as gone:
            raise SandboxError(f"cannot create a server in zone {spec.zone} of {project}/{env}: {gone.__cause__}") from None

    def _create_named(
        self, project: str, env: str, spec: ServerSpec, name: str, token: str, state: str, size: Mapping[str, int], public_key: str, flags: RunFlags, public: Any, *, image: str | None = None
    ) -> Any:
        from docker.types import Mount  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        volumes = {}
        for purpose, target in (("docker", "/var/lib/docker"), ("local", "/local")):
            labels = {**base_labels(project, env, "volume"), LABEL_ZONE: spec.zone, LABEL_SERVER: name, LABEL_TOKEN: token}
            volume = self.client.volumes.create(name=f"pd-sbx-{name}-{token}-{purpose}", labels=labels)
            volumes[target] = volume.name
        api = self.client.api
        try:
            host_config = api.create_host_config(
                port_bindings={22: (SSH_HOST, None)},
                network_mode=public.name,
                mounts=[Mount(target=target, source=source, type="volume") for target, source in volumes.items()],
                **size,
                **flags.host_config(),
            )
            host_config.update(flags.raw_host_config())
            created = api.create_container(
                image or self.image,
                name=name,
                hostname=name,
                labels=server_labels(project, env, spec.zone, name, state=state, token=token, tags={k: v for k, v in spec.tags.items() if k != "state"}),
                environment={"SSH_AUTHORIZED_KEYS": public_key},
                ports=[22],
                host_config=host_config,
                networking_config=api.create_networking_config({public.name: api.create_endpoint_config()}),
            )
            return self.client.containers.get(created["Id"])
        except BaseException:
            for source in volumes.values():
                _quietly(partial(_remove_volume, self.client, source))
            raise

    def _wait_ready(self, project: str, env: str, container: Any, deadline: float) -> SandboxServer:
        """Poll until the server's dockerd is ready and sshd answers, then connect once over SSH."""
        name = container.name

        def ready() -> tuple[bool, str | None]:
            container.reload()
            if container.status in ("exited", "dead"):
                code = container.attrs.get("State", {}).get("ExitCode")
                raise SandboxError(f"server {name} stopped while starting (exit {code}); its last log lines:\n{_tail(container)}")
            port = _published_port(container.attrs) if container.status == "running" else None
            if not port:
                return False, f"container {container.status}, no published SSH port"
            if not self._file_exists(container, READY_FILE):
                return False, "its dockerd is not ready"
            if not _ssh_banner(SSH_HOST, port):
                return False, "sshd does not answer"
            return True, None

        try:
            wait_until(ready, timeout=max(0.0, deadline - time.monotonic()), interval=0.15, what=f"server {name} ready")
        except WaitTimeout as exc:
            raise SandboxError(
                f"server {name} was not ready within {self.ready_timeout:g}s (sshd and its own dockerd must answer; last: {exc.last}); its last log lines:\n{_tail(container)}"
            ) from None
        server = self._server_from(container, project, env, repin=True)
        if server is None or not server.has_ssh:
            raise SandboxError(f"server {name} disappeared while starting")
        server.ssh.wait_until_reachable(max(5.0, deadline - time.monotonic()))
        # Restarted with the engine from now on, as a server boots again; not before, or a server
        # that cannot start would loop instead of being reported.
        self.client.api.update_container(container.id, restart_policy={"Name": "unless-stopped"})
        return server

    def _ensure_network(self, project: str, env: str, zone: str) -> Any:
        """The zone's VPC network (``--internal``) or, for :data:`PUBLIC`, the shared one."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        kind = "public" if zone == PUBLIC else "vpc"
        found = self.client.networks.list(filters=label_filters(project, env, kind=kind, zone=zone))
        if found:
            return found[0]
        name = public_network_name(project, env) if zone == PUBLIC else zone_network_name(project, env, zone)
        kwargs: dict[str, Any] = {
            "driver": "bridge",
            "internal": kind == "vpc",
            "labels": {**base_labels(project, env, kind), LABEL_ZONE: zone},
            "options": self._network_options,
            "check_duplicate": True,
        }
        try:
            return self.client.networks.create(name, **kwargs)
        except docker.errors.APIError as exc:
            text = str(exc)
            if exc.status_code == 409 or "already exists" in text:
                # Created meanwhile by another process for this project/env, or a name clash with
                # another project/env ("a-b"/"c" and "a"/"b-c"): never join someone else's network.
                found = self.client.networks.list(filters=label_filters(project, env, kind=kind, zone=zone))
                if found:
                    return found[0]
                raise SandboxError(f"network {name} exists but does not belong to {project}/{env} (a project/environment with a similar name?)") from None
            if "address pool" not in text and "non-overlapping" not in text:
                raise
        return self._create_network_in_own_range(name, kwargs)

    def _create_network_in_own_range(self, name: str, kwargs: dict[str, Any]) -> Any:
        """Docker's default pools are used up: take a /24 of :attr:`subnets` nobody uses."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)
        from docker.types import IPAMConfig, IPAMPool  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        def attempt() -> Any:
            used = [cfg.get("Subnet") for net in self.client.api.networks() for cfg in ((net.get("IPAM") or {}).get("Config") or []) if cfg.get("Subnet")]
            subnet = pick_subnet(used, self.subnets)
            if subnet is None:
                raise SandboxError(f"no free /24 left in {self.subnets} for network {name} (set {SUBNETS_ENV})")
            try:
                return self.client.networks.create(name, ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]), **kwargs)
            except docker.errors.APIError as exc:
                if "overlap" not in str(exc):
                    raise
                raise _SubnetTaken() from exc

        try:
            return retry(attempt, attempts=5, retry_on=_SubnetTaken, backoff=0.0)
        except _SubnetTaken as taken:
            raise SandboxError(f"cannot find a free subnet for network {name} ({_first_line(taken.__cause__ or taken)})") from None

    @cached_property
    def _network_options(self) -> dict[str, str]:
        """The engine's MTU (from its default bridge), so nested networks fit the real link."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        try:
            options = self.client.networks.get("bridge").attrs.get("Options") or {}
        except docker.errors.APIError:
            return {}
        mtu = options.get("com.docker.network.driver.mtu")
        return {"com.docker.network.driver.mtu": mtu} if mtu else {}

    # --- changing -----------------------------------------------------------------------

    def _container_of(self, server: Server) -> Any:
        project, env = _project_env(server)
        container = self._find_container(project, env, server.name, server.tags.get("token") or None)
        if container is None:
            raise SandboxError(f"sandbox server {server.name} of {project}/{env} does not exist")
        return container

    def resize_server(self, server: Server, cpu: int, memory: int) -> SandboxServer:
        """Change the CPU/memory limits of the running container (``docker container update``)."""
        project, env = _project_env(server)
        container = self._container_of(server)
        _update_limits(self.client, container.id, limits(cpu, memory, self.host_cpus))
        current = self._server_from(container, project, env)
        state = current.state if current is not None else "active"
        self._write_state(container, ServerState(state=state, cpu=cpu, memory=memory))
        container.reload()
        return self._must(self._server_from(container, project, env), server)

    def set_server_state(self, server: Server, state: str) -> SandboxServer:
        """Set the status tag (active, reserve, destroying) of a server; read back live."""
        project, env = _project_env(server)
        container = self._container_of(server)
        current = self._must(self._server_from(container, project, env), server)
        self._write_state(container, ServerState(state=check_state(state), cpu=float(current.tags["cpu"]), memory=int(current.tags["memory"])))
        return self._must(self._server_from(container, project, env), server)

    @staticmethod
    def _must(found: SandboxServer | None, server: Server) -> SandboxServer:
        if found is None:
            raise SandboxError(f"sandbox server {server.name} disappeared")
        return found

    # --- the creation lock --------------------------------------------------------------

    @contextmanager
    def creation_lock(self, project: str, env: str, *, wait: float = 0.0) -> Iterator[None]:
        """Exclusive while held: a container named :func:`lock_name` (never started) exists;
        container names are unique in an engine, so creating it is the atomic test-and-set.
        Its labels name the holder (host, pid, since). A holder on this host whose process is
        gone left it behind by crashing: it is taken over."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        self._ensure_image()
        name = lock_name(project, env)
        holder = {LABEL_HOLDER_HOST: socket.gethostname(), LABEL_HOLDER_PID: str(os.getpid()), LABEL_HOLDER_SINCE: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}

        def take() -> tuple[bool, Any]:
            """``(True, the lock's container)``, or ``(False, the labels of the live holder)``."""
            while True:
                try:
                    return True, self.client.containers.create(self.image, command=["true"], name=name, labels={**base_labels(project, env, "lock"), **holder})
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:
                        raise SandboxError(f"{project}/{env}: cannot take the sandbox's creation lock: {_first_line(exc)}") from None
                try:
                    found = self.client.containers.get(name)
                except docker.errors.NotFound:
                    continue  # released meanwhile
                except docker.errors.APIError as exc:
                    raise SandboxError(f"{project}/{env}: cannot read the sandbox's creation lock: {_first_line(exc)}") from None
                if not _holder_gone(found.labels):
                    return False, found.labels
                # That very container (by id): a lock another process took meanwhile stays.
                _quietly(partial(self.client.api.remove_container, found.id, force=True))

        try:
            container = wait_until(take, timeout=max(0.0, wait), interval=0.2, what=f"the sandbox's creation lock of {project}/{env}")
        except WaitTimeout as exc:
            other = exc.last if isinstance(exc.last, Mapping) else {}
            raise SandboxLocked(
                f"{project}/{env}: another deploy holds the sandbox's creation lock (host {other.get(LABEL_HOLDER_HOST, '?')}, "
                f"pid {other.get(LABEL_HOLDER_PID, '?')}, since {other.get(LABEL_HOLDER_SINCE, '?')}); if that deploy is gone, "
                f"remove the container {name}"
            ) from None
        try:
            yield
        finally:
            _quietly(lambda: container.remove(force=True))

    # --- destroying ---------------------------------------------------------------------

    def destroy_server(self, server: Server) -> None:
        """Remove the server's container and volumes, forget its host key, and remove its zone's
        network (and the shared one) once no server uses them. Idempotent."""
        project, env = _project_env(server)
        token = server.tags.get("token") or None
        container = self._find_container(project, env, server.name, token)
        if container is not None and container.status == "running":
            _quietly(lambda: self.set_server_state(server, "destroying"))
        self._remove_server_objects(project, env, server.name, token, container)
        self._remove_unused_networks(project, env)

    def _remove_server_objects(self, project: str, env: str, name: str, token: str | None, container: Any) -> None:
        """Close SSH, remove the container (with volumes), its labelled volumes and its host key."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        if container is not None:
            token = token or container.labels.get(LABEL_TOKEN)
            with self._ssh_lock:
                for key in [k for k in self._ssh if k[0] == container.id]:
                    _quietly(self._ssh.pop(key).close)
            try:
                container.reload()
                port = _published_port(container.attrs)
            except docker.errors.NotFound:
                port = None
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if "already in progress" not in str(exc):
                    raise
            if port:
                self._forget_host_key(project, env, port)
        more = {"server": name} if token is None else {"server": name, "token": token}
        for volume in self.client.volumes.list(filters=label_filters(project, env, kind="volume", **more)):
            try:
                volume.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if token is not None or "in use" not in str(exc):
                    raise  # without a token, a volume in use belongs to a newer server of that name

    def _forget_host_key(self, project: str, env: str, port: int) -> None:
        from .ssh.known_hosts import KnownHosts  # noqa: PLC0415 - deferred: imports paramiko (start-up: ~0.1 s)

        KnownHosts(known_hosts_path(project, env)).remove(SSH_HOST, port)

    def _remove_unused_networks(self, project: str, env: str) -> None:
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        with self._lock:
            if self._creating[(project, env)]:
                return
            used = {c.labels.get(LABEL_ZONE) for c in self.client.containers.list(all=True, filters=label_filters(project, env, kind="server"), ignore_removed=True)}
            networks = self.client.networks.list(filters=label_filters(project, env))
            for network in sorted(networks, key=lambda n: n.attrs.get("Labels", {}).get(LABEL_KIND) == "public"):
                zone = (network.attrs.get("Labels") or {}).get(LABEL_ZONE)
                if (zone == PUBLIC and used) or zone in used:
                    continue
                try:
                    network.remove()
                except docker.errors.APIError:
                    pass  # in use by a server another process is creating: it stays

    def purge(self, project: str, env: str) -> None:
        """Remove every container, volume and network of ``project``/``env`` (the whole sandbox)."""
        servers = self.list_servers(project, env)
        _each_or_raise(fan_out(servers, self.destroy_server, max_workers=8).values())
        for container in self.client.containers.list(all=True, filters=label_filters(project, env), ignore_removed=True):
            _quietly(partial(container.remove, force=True, v=True))
        for volume in self.client.volumes.list(filters=label_filters(project, env)):
            _quietly(partial(volume.remove, force=True))
        self._remove_unused_networks(project, env)

    def close(self) -> None:
        """Close every SSH connection this provider opened."""
        with self._ssh_lock:
            servers, self._ssh = list(self._ssh.values()), {}
        for ssh in servers:
            _quietly(ssh.close)


# --- helpers ----------------------------------------------------------------------------------


def _project_env(server: Server) -> tuple[str, str]:
    try:
        return server.tags["project"], server.tags["env"]
    except KeyError:
        raise SandboxError(f"server {server.name} is not a sandbox server (no project/env tags)") from None


def _update_limits(client: Any, container_id: str, size: Mapping[str, int]) -> None:
    """``docker container update --cpus --memory --memory-swap``: the SDK's ``update`` has no
    ``nano_cpus``, and a container created with NanoCpus refuses a CPU quota."""
    api = client.api
    body = {"NanoCpus": size["nano_cpus"], "Memory": size["mem_limit"], "MemorySwap": size["memswap_limit"]}
    # docker-py's own request helpers (versioned URL, its APIError on failure): it has no public call for this.
    api._result(api._post_json(api._url("/containers/{0}/update", container_id), data=body), True)  # noqa: SLF001


def _published_port(attrs: Mapping[str, Any]) -> int | None:
    bindings = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get("22/tcp") or []
    for binding in bindings:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def _cpus(attrs: Mapping[str, Any]) -> float:
    return float((attrs.get("HostConfig") or {}).get("NanoCpus", 0)) / 1e9


def _memory_mb(attrs: Mapping[str, Any]) -> int:
    return int((attrs.get("HostConfig") or {}).get("Memory", 0) // (1024 * 1024))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _ssh_banner(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether an SSH server answers on ``host:port`` (Docker's proxy accepts and closes otherwise)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4) == b"SSH-"
    except OSError:
        return False


def _tail(container: Any, lines: int = 20) -> str:
    try:
        text = container.logs(tail=lines).decode(errors="replace").rstrip()
    except Exception as exc:  # noqa: BLE001 - the logs are a courtesy in an error message
        return f"(no logs: {exc})"
    return text or "(no output)"


def _each_or_raise(outcomes: Iterable[T | BaseException]) -> list[T]:
    """The results of a :func:`~projectdeployer.core.fanout.fan_out`, in order; the first
    failure (in that order) is raised once all have finished, as ``pool.map`` would."""
    values: list[T] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        values.append(outcome)
    return values


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _remove_volume(client: Any, name: str) -> None:
    client.volumes.get(name).remove(force=True)


def _quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - best-effort cleanup
        pass


@hookimpl
def register_providers(register: Callable[..., None]) -> None:
    register(PROVIDER_NAME, SandboxProvider, zones=SANDBOX_ZONES, images={"server": DEFAULT_IMAGE})


__all__ = [
    "DEFAULT_IMAGE",
    "RunFlags",
    "SandboxCreateFailed",
    "SandboxError",
    "SandboxProvider",
    "SandboxServer",
    "ServerState",
    "compute_run_flags",
    "label_filters",
    "server_name",
]
