"""Droplets that are real servers: each one a sandbox server of this machine's Docker engine
(sshd and its own dockerd, see :mod:`projectdeployer.providers.sandbox`).

- A droplet's **public address** is its address on the sandbox's shared network (this machine
  reaches it directly, SSH on port 22), its **private address** the one on its region's network
  (one network per region: the droplets of one region share a VPC).
- Root accepts the droplet's SSH keys (those the create named), beside the fake's own key.
- A **snapshot** is the server's filesystem committed as an image plus a copy of its data
  volumes (its Docker engine's images included), taken with the server paused; a droplet
  created from it starts from that image with copies of those volumes.
- **Resize** changes the server's CPU and memory limits; **power** stops and starts it.

Every sandbox object of the fake is labelled with its namespace (``fakedo-...``), which
:meth:`SandboxMachines.purge` removes.
"""

from __future__ import annotations

import threading
from typing import Any

from ...core.provider import ServerSpec
from ...providers.sandbox import SandboxProvider, copy_volume, public_network_name, zone_network_name
from .catalog import size_object
from .cloud import Addresses, Droplet

#: The sandbox "project" the fake's droplets live in; the environment is the namespace.
PROJECT = "fakedo"
SNAPSHOT_REPOSITORY = "pd-fakedo/snapshot"


class SandboxMachines:
    """:class:`~projectdeployer.rehearse.fake_digitalocean.cloud.Machines` as sandbox servers.

    :param namespace: tells this fake's servers apart from another's (lower-case letters,
        digits and -, starting with a letter, at most 20).
    :param provider: the sandbox provider (default: one on this machine's engine).
    """

    def __init__(self, namespace: str, provider: SandboxProvider | None = None) -> None:
        self.namespace = namespace
        self.sandbox = provider or SandboxProvider()
        self._servers: dict[int, Any] = {}
        self._snapshots: dict[int, dict[str, str]] = {}
        self._lock = threading.Lock()

    def _server(self, droplet: Droplet) -> Any:
        with self._lock:
            return self._servers[droplet.id]

    def create(self, droplet: Droplet, public_keys: list[str]) -> Addresses:
        image = seed = None
        if droplet.image.get("type") == "snapshot":
            with self._lock:
                seed = dict(self._snapshots[int(droplet.image["id"])])
            image = seed.pop("image")
        vcpus, memory = _size(droplet.size_slug)
        spec = ServerSpec(zone=droplet.region, cpu=vcpus, memory=memory, tags={"droplet": str(droplet.id)})
        server = self.sandbox.create_server(PROJECT, self.namespace, spec, authorized_keys=public_keys, image=image, seed_volumes=seed)
        with self._lock:
            self._servers[droplet.id] = server
        networks = self._container(server).attrs["NetworkSettings"]["Networks"]
        public = networks[public_network_name(PROJECT, self.namespace)]["IPAddress"]
        private = networks[zone_network_name(PROJECT, self.namespace, droplet.region)]["IPAddress"]
        return Addresses(public=public, private=private)

    def addresses(self, droplet: Droplet) -> Addresses | None:
        """The addresses the server has now (``None`` while it is not running): Docker may give
        a restarted container other ones."""
        with self._lock:
            server = self._servers.get(droplet.id)
        if server is None:
            return None
        try:
            container = self._container(server)
        except Exception:  # noqa: BLE001 - removed meanwhile: keep what the droplet says
            return None
        networks = container.attrs["NetworkSettings"]["Networks"] if container.status == "running" else {}
        public = (networks.get(public_network_name(PROJECT, self.namespace)) or {}).get("IPAddress")
        private = (networks.get(zone_network_name(PROJECT, self.namespace, droplet.region)) or {}).get("IPAddress")
        return Addresses(public=public, private=private) if public and private else None

    def machine(self, droplet_id: int) -> Any:
        """The sandbox server behind droplet ``droplet_id`` (to stop or start it as a crash or a
        reboot would, without the API knowing), or ``None`` when it has none."""
        with self._lock:
            return self._servers.get(droplet_id)

    def container(self, droplet_id: int) -> Any:
        """The Docker container of the sandbox server behind droplet ``droplet_id``."""
        return self._container(self._servers[droplet_id])

    def _container(self, server: Any) -> Any:
        return self.sandbox.client.containers.get(server.container_id)

    def destroy(self, droplet: Droplet) -> None:
        with self._lock:
            server = self._servers.pop(droplet.id, None)
        if server is not None:
            self.sandbox.destroy_server(server)

    def snapshot(self, droplet: Droplet, image_id: int) -> None:
        server = self._server(droplet)
        container = self._container(server)
        volumes = {m["Destination"]: m["Name"] for m in container.attrs.get("Mounts", []) if m.get("Type") == "volume"}
        copies: dict[str, str] = {}
        container.pause()
        try:
            container.commit(repository=SNAPSHOT_REPOSITORY, tag=str(image_id), pause=False)
            for purpose, target in (("docker", "/var/lib/docker"), ("local", "/local")):
                copy = f"pd-fakedo-snap-{image_id}-{purpose}"
                self.sandbox.client.volumes.create(name=copy, labels={"io.projectdeployer.sandbox.project": PROJECT, "io.projectdeployer.sandbox.env": self.namespace})
                copy_volume(self.sandbox.client, self.sandbox.image, volumes[target], copy)
                copies[purpose] = copy
        finally:
            container.unpause()
        with self._lock:
            self._snapshots[image_id] = {"image": f"{SNAPSHOT_REPOSITORY}:{image_id}", **copies}

    def delete_image(self, image_id: int) -> None:
        with self._lock:
            found = self._snapshots.pop(image_id, None)
        if found is None:
            return
        client = self.sandbox.client
        for name in (found.get("docker"), found.get("local")):
            if name:
                try:
                    client.volumes.get(name).remove(force=True)
                except Exception:  # noqa: BLE001 - gone already
                    pass
        try:
            client.images.remove(found["image"], force=True)
        except Exception:  # noqa: BLE001 - gone already
            pass

    def resize(self, droplet: Droplet, vcpus: int, memory_mb: int) -> None:
        server = self._server(droplet)
        resized = self.sandbox.resize_server(server, vcpus, memory_mb)
        with self._lock:
            self._servers[droplet.id] = resized

    def power(self, droplet: Droplet, on: bool) -> None:
        server = self._server(droplet)
        container = self._container(server)
        if on:
            container.start()
        else:
            container.stop(timeout=30)

    def purge(self) -> None:
        """Remove every server, network, volume and snapshot of this fake."""
        for image_id in list(self._snapshots):
            self.delete_image(image_id)
        self.sandbox.purge(PROJECT, self.namespace)


def _size(slug: str) -> tuple[int, int]:
    size = size_object(slug) or {"vcpus": 1, "memory": 1024}
    return int(size["vcpus"]), int(size["memory"])
