"""ContainerRuntime over a Docker SDK client: the same code for this machine's engine and for
any server whose engine we can reach (over SSH).

This module imports the Docker SDK (about 0.2 s): the providers import it only when they hand
out a runtime, so loading the plugins does not."""

from __future__ import annotations

import builtins
import math
import re
import socket as socket_module
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import docker.errors
from docker.transport import UnixHTTPAdapter
from docker.types import EndpointConfig
from docker.types import Mount as DockerMount
from docker.utils.socket import STDERR, frames_iter

from ..core.errors import ProjectDeployerError
from ..core.poll import WaitTimeout, wait_until
from ..core.provider import CommandResult
from ..core.runtime import LABEL_ENV, LABEL_PROJECT, ContainerInfo, ContainerRuntime, ContainerSpec, ImageInfo, VolumeInfo


class RuntimeError_(ProjectDeployerError):
    """The engine refused an operation (port taken, image missing, ...)."""


#: Connections kept open to a local engine: more than the toggles that run at once.
SHARED_POOL_SIZE = 64


def shared_pool(client: Any, size: int = SHARED_POOL_SIZE) -> Any:
    """``client`` (a ``docker.DockerClient`` on a unix socket) with every request going through
    one connection pool; returned. Other transports are left as they are.

    docker-py's unix adapter keeps one pool per URL, path included, and closes the least
    recently used one beyond 25 (its ``num_pools``, which it ignores for unix sockets), even
    while another thread is reading a response from it. Forty parallel toggles ended in
    ``AttributeError: 'NoneType' object has no attribute 'qsize'`` (a full pool closed under a
    thread returning its connection) or ``Pool is closed`` (docker/compose#3586). One pool for
    every path, open while the client lives, as the SSH provider's adapter does.
    """
    api = client.api
    current = api.adapters.get("http+docker://")
    if not isinstance(current, UnixHTTPAdapter):
        return client
    adapter = OnePoolUnixAdapter(current.socket_path, current.timeout, max_pool_size=max(size, current.max_pool_size))
    api.mount("http+docker://", adapter)
    api._custom_adapter = adapter  # noqa: SLF001 - where docker-py looks for it too
    current.close()
    return client


class OnePoolUnixAdapter(UnixHTTPAdapter):  # type: ignore[misc]
    """Every URL through the pool of one key: never evicted, never closed under a request."""

    def get_connection(self, url: str, proxies: Any = None) -> Any:
        return super().get_connection("http+docker://localhost", proxies)


def _info(container: Any) -> ContainerInfo:
    attrs = container.attrs
    state = attrs.get("State", {})
    ports: dict[int, int] = {}
    for key, bindings in (attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
        if bindings:
            ports[int(key.split("/")[0])] = int(bindings[0]["HostPort"])
    health = (state.get("Health") or {}).get("Status")
    return ContainerInfo(
        id=container.id,
        name=container.name,
        image_id=attrs.get("Image", ""),
        labels=dict(container.labels or {}),
        state=state.get("Status", "unknown"),
        health=health,
        exit_code=state.get("ExitCode"),
        started_at=state.get("StartedAt"),
        finished_at=state.get("FinishedAt"),
        ports=ports,
    )


#: The engine's status line: ``Exited (137) 5 seconds ago``, ``Up 3 minutes (healthy)``, ...
_EXIT_STATUS = re.compile(r"^(?:Exited|Restarting) \((-?\d+)\)")
_HEALTH_STATUS = re.compile(r"\((healthy|unhealthy|health: starting)\)")


def _brief_info(summary: Mapping[str, Any]) -> ContainerInfo:
    """A container as the engine's listing summarises it (``docker ps``): no inspect, so no
    start or finish time; health and exit code as its status line says them."""
    status = summary.get("Status") or ""
    exited = _EXIT_STATUS.match(status)
    health = _HEALTH_STATUS.search(status)
    names = [n.lstrip("/") for n in summary.get("Names") or []]
    # A container reached through a legacy link is also listed as "other/alias".
    name = next((n for n in names if "/" not in n), names[0] if names else summary["Id"][:12])
    ports = {int(p["PrivatePort"]): int(p["PublicPort"]) for p in summary.get("Ports") or [] if p.get("PublicPort")}
    return ContainerInfo(
        id=summary["Id"],
        name=name,
        image_id=summary.get("ImageID", ""),
        labels=dict(summary.get("Labels") or {}),
        state=summary.get("State", "unknown"),
        health=None if health is None else health.group(1).replace("health: ", ""),
        exit_code=int(exited.group(1)) if exited else None,
        started_at=None,
        finished_at=None,
        ports=ports,
    )


class DockerRuntime(ContainerRuntime):
    """Container operations through ``client`` (a ``docker.DockerClient``)."""

    def __init__(self, client: Any, *, bind_address: str = "127.0.0.1") -> None:
        self.client = client
        self.bind_address = bind_address
        self._ids: dict[tuple[str, str | None], tuple[int, int]] = {}

    def user_ids(self, image: str, user: str | None) -> tuple[int, int]:
        key = (image, user)
        if key not in self._ids:
            config = self.client.images.get(image).attrs.get("Config") or {}
            name = user or config.get("User") or "root"
            uid, _, gid = name.partition(":")
            if uid.isdigit() and (not gid or gid.isdigit()):
                self._ids[key] = (int(uid), int(gid or uid))
            else:
                out = self.client.containers.run(image, entrypoint=["sh", "-c", f"id -u {uid} && id -g {uid}"], user="root", remove=True, network_disabled=True)
                numbers = out.decode().split()
                self._ids[key] = (int(numbers[0]), int(numbers[1]))
        return self._ids[key]

    def tag(self, image: str, repository: str, tag: str) -> None:
        self.client.images.get(image).tag(repository, tag)

    def list(self, labels: Mapping[str, str], *, all: bool = True) -> list[ContainerInfo]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        # A container removed between docker-py's listing and its inspect of it (another
        # service's toggle in a parallel deploy) is gone, not an error.
        return [_info(c) for c in self.client.containers.list(all=all, filters=filters, ignore_removed=True)]

    def list_brief(self, labels: Mapping[str, str]) -> builtins.list[ContainerInfo]:
        # One request (docker ps), however many containers: nothing inspected, nothing that
        # can vanish between two requests.
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        return [_brief_info(summary) for summary in self.client.api.containers(all=True, filters=filters)]

    def get(self, name: str) -> ContainerInfo | None:
        try:
            return _info(self.client.containers.get(name))
        except docker.errors.NotFound:
            return None

    def start(self, spec: ContainerSpec) -> ContainerInfo:
        return self._create(spec, start=True)

    def create(self, spec: ContainerSpec) -> ContainerInfo:
        return self._create(spec, start=False)

    def start_existing(self, name: str) -> None:
        try:
            self.client.containers.get(name).start()
        except docker.errors.NotFound:
            raise RuntimeError_(f"no container {name}") from None
        except docker.errors.APIError as exc:
            raise RuntimeError_(f"cannot start {name}: {exc.explanation or exc}") from None

    def wait(self, name: str, timeout: float | None = None) -> int | None:
        def exited() -> tuple[bool, int | None]:
            info = self.get(name)
            if info is None:
                return True, None
            if not info.running and info.state != "restarting":
                return True, info.exit_code
            return False, None

        try:
            return wait_until(exited, timeout=math.inf if timeout is None else timeout, interval=0.2, what=f"container {name} exited")
        except WaitTimeout:
            return None  # still running after timeout: None, as ContainerRuntime.wait promises

    def _create(self, spec: ContainerSpec, *, start: bool) -> ContainerInfo:
        # A data volume Docker creates for this container carries the environment's labels, so
        # ``destroy`` finds it by them (volumes made before were named only: it finds those by name).
        owner = {k: spec.labels[k] for k in (LABEL_PROJECT, LABEL_ENV) if k in spec.labels}
        mounts = [
            DockerMount(target=m.target, source=m.source, type="volume", read_only=m.read_only, labels=owner or None)
            if m.volume
            else DockerMount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
            for m in spec.mounts
        ]
        kwargs: dict[str, Any] = {
            "name": spec.name,
            "command": list(spec.command) if spec.command else None,
            "entrypoint": list(spec.entrypoint) if spec.entrypoint else None,
            "environment": dict(spec.env),
            "labels": dict(spec.labels),
            "ports": {f"{cport}/tcp": (self.bind_address, hport) for cport, hport in spec.ports.items()},
            "mounts": mounts,
            "restart_policy": {"Name": spec.restart} if spec.restart != "no" else None,
            "stop_signal": None,
            "detach": True,
            # An init process as PID 1 forwards SIGTERM to the app: a process that is PID 1
            # itself ignores signals it has no handler for, and every stop would wait out the
            # whole timeout before the kill.
            "init": True,
        }
        if spec.user:
            kwargs["user"] = spec.user
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if spec.network:
            kwargs["network"] = spec.network
            if spec.aliases:
                kwargs["networking_config"] = {spec.network: EndpointConfig(self.client.api.api_version, aliases=list(spec.aliases))}
        try:
            container = self.client.containers.create(spec.image, **kwargs)
            if start:
                container.start()
            container.reload()
        except docker.errors.APIError as exc:
            self.remove(spec.name)
            raise RuntimeError_(f"cannot start {spec.name}: {exc.explanation or exc}") from None
        return _info(container)

    def stop(self, name: str, timeout: int = 30) -> None:
        try:
            self.client.containers.get(name).stop(timeout=timeout)
        except docker.errors.NotFound:
            pass

    def remove(self, name: str, *, force: bool = True) -> None:
        try:
            self.client.containers.get(name).remove(force=force, v=False)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if force:
                raise
            raise RuntimeError_(f"cannot remove {name}: {exc.explanation or exc}") from None

    def logs(self, name: str, *, tail: int = 100, follow: bool = False, timestamps: bool = False, since: float | None = None) -> Iterator[str]:
        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return iter(())
        extra: dict[str, Any] = {"since": since} if since else {}
        if not follow:
            return iter(container.logs(tail=tail, timestamps=timestamps, **extra).decode(errors="replace").splitlines())

        def stream() -> Iterator[str]:
            buffer = b""
            for chunk in container.logs(tail=tail, timestamps=timestamps, stream=True, follow=True, **extra):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
            if buffer:
                yield buffer.decode(errors="replace")

        return stream()

    def _networks_named(self, name: str) -> builtins.list[Any]:
        # The engine's name filter matches parts of names: "shop_dev_network" also lists
        # "myshop_dev_network", another project's.
        return [n for n in self.client.networks.list(names=[name]) if n.name == name]

    def ensure_network(self, name: str, labels: Mapping[str, str]) -> None:
        if self._networks_named(name):
            return
        try:
            # check_duplicate: two creations at once make one network, not two of one name.
            self.client.networks.create(name, driver="bridge", labels=dict(labels), check_duplicate=True)
        except docker.errors.APIError:
            if not self._networks_named(name):  # not created by someone else meanwhile
                raise

    def remove_network(self, name: str) -> None:
        # The engine's name filter matches parts of names: only the exact name is removed
        # (``shop_prod_network`` must not take ``myshop_prod_network`` with it).
        for network in self.client.networks.list(names=[name]):
            if network.name == name:
                network.remove()

    def has_network(self, name: str) -> bool:
        # The engine's name filter matches parts of names: only the exact name counts.
        return any(network.name == name for network in self.client.networks.list(names=[name]))

    def volumes(self, labels: Mapping[str, str] | None = None, names: Sequence[str] = ()) -> builtins.list[VolumeInfo]:
        found: dict[str, VolumeInfo] = {}
        if labels:
            for volume in self.client.volumes.list(filters={"label": [f"{k}={v}" for k, v in labels.items()]}):
                found[volume.name] = VolumeInfo(name=volume.name, labels=dict(volume.attrs.get("Labels") or {}))
        for name in names:
            if name in found:
                continue
            try:
                volume = self.client.volumes.get(name)
            except docker.errors.NotFound:
                continue
            found[name] = VolumeInfo(name=volume.name, labels=dict(volume.attrs.get("Labels") or {}))
        return list(found.values())

    def remove_volume(self, name: str) -> None:
        try:
            self.client.volumes.get(name).remove(force=False)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise RuntimeError_(f"cannot remove volume {name}: {exc.explanation or exc}") from None

    def image(self, ref: str) -> ImageInfo | None:
        try:
            image = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        return ImageInfo(id=image.id, tags=tuple(image.tags), labels=dict(image.labels or {}))

    def remove_image(self, ref: str) -> None:
        try:
            self.client.images.remove(ref, force=False)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise RuntimeError_(f"cannot remove image {ref}: {exc.explanation or exc}") from None

    def image_id(self, ref: str) -> str | None:
        try:
            image_id: str = self.client.images.get(ref).id
            return image_id
        except docker.errors.ImageNotFound:
            return None

    def image_command(self, ref: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        try:
            config = self.client.images.get(ref).attrs.get("Config") or {}
        except docker.errors.ImageNotFound:
            return None
        return tuple(config.get("Entrypoint") or ()), tuple(config.get("Cmd") or ())

    def exec(self, name: str, argv: Sequence[str], *, stdin: bytes | None = None, user: str | None = None, timeout: float = 60.0) -> CommandResult:
        """``docker exec`` through the API: ``stdin`` is written to the process and closed
        (half-close, so it sees end of input), stdout and stderr are read apart."""

        try:
            created = self.client.api.exec_create(name, list(argv), stdin=stdin is not None, stdout=True, stderr=True, tty=False, user=user or "")
        except docker.errors.NotFound:
            raise RuntimeError_(f"no container {name}") from None
        except docker.errors.APIError as exc:
            raise RuntimeError_(f"cannot run a command in {name}: {exc.explanation or exc}") from None
        exec_id = created["Id"]
        stream = self.client.api.exec_start(exec_id, socket=True, tty=False)
        raw = getattr(stream, "_sock", stream)
        try:
            raw.settimeout(timeout)
            if stdin is not None:
                raw.sendall(stdin)
                raw.shutdown(socket_module.SHUT_WR)
            out, err = bytearray(), bytearray()
            for stream_id, payload in frames_iter(stream, tty=False):
                (err if stream_id == STDERR else out).extend(payload)
        except OSError as exc:
            raise RuntimeError_(f"command in {name} did not finish: {exc}") from None
        finally:
            stream.close()
        code = self.client.api.exec_inspect(exec_id).get("ExitCode")
        return CommandResult(exit_code=-1 if code is None else int(code), stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace"))
