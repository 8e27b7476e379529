"""The fake DigitalOcean's state: droplets, actions, SSH keys, VPCs, firewalls, tags, snapshots.

Everything is kept in memory behind one lock; the HTTP layer (``server.py``) turns requests into
calls here and :class:`ApiError` into DigitalOcean's error bodies. What a droplet *is* belongs
to a :class:`Machines` backend: records only (:class:`MemoryMachines`), or real servers (a
sandbox server per droplet, see ``sandbox_machines.py``). Actions run their effect on a thread
of their own and stay ``in-progress`` until it ends, as DigitalOcean's do; a droplet is ``new``,
without addresses, until its create action completes.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import attrs

from .catalog import REGIONS, region_object, size_object

#: Droplet and image names DigitalOcean accepts (its OpenAPI description's pattern).
NAME_RE = re.compile(r"^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_\-\:]+$")
#: Distribution images a droplet can start from (``image`` as a slug).
DISTRIBUTIONS = {"debian-12-x64": "Debian", "debian-13-x64": "Debian", "ubuntu-24-04-x64": "Ubuntu", "ubuntu-22-04-x64": "Ubuntu"}


class ApiError(Exception):
    """An answer in DigitalOcean's error shape: HTTP ``status`` and ``{"id", "message"}``."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message


def not_found() -> ApiError:
    return ApiError(404, "not_found", "The resource you were accessing could not be found.")


def unprocessable(message: str) -> ApiError:
    return ApiError(422, "unprocessable_entity", message)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define
class Addresses:
    """Where a machine answers: its public and its VPC (private) IPv4 address."""

    public: str
    private: str


class Machines(Protocol):
    """What droplets are. Every method may block (it runs on its action's thread) and raises
    to make its action ``errored``."""

    def create(self, droplet: Droplet, public_keys: list[str]) -> Addresses:
        """Bring up a machine for ``droplet`` (from its image: a distribution slug or one of
        our snapshots) that accepts ``public_keys`` for root."""

    def destroy(self, droplet: Droplet) -> None:
        """Remove the machine (its data goes with it)."""

    def snapshot(self, droplet: Droplet, image_id: int) -> None:
        """Keep the machine's disk as image ``image_id``."""

    def delete_image(self, image_id: int) -> None:
        """Forget an image (its snapshot was deleted)."""

    def resize(self, droplet: Droplet, vcpus: int, memory_mb: int) -> None:
        """Give the (powered off) machine another size, keeping its disk."""

    def power(self, droplet: Droplet, on: bool) -> None:
        """Stop (``on=False``: gracefully) or start the machine."""


#: What an action's effect leaves to apply when the action completes (``None``: nothing).
Settle = Callable[[], None] | None


class MemoryMachines:
    """Droplets as records: addresses from TEST-NET-3 (public) and the VPC's range."""

    def __init__(self) -> None:
        self._public = itertools.count(2)
        self._private: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()

    def create(self, droplet: Droplet, public_keys: list[str]) -> Addresses:
        with self._lock:
            n = next(self._public)
            network = ipaddress.ip_network(droplet.vpc_range)
            host = next(self._private.setdefault(droplet.vpc_uuid, itertools.count(2)))
        return Addresses(public=f"203.0.{113 + n // 250}.{n % 250 + 2}", private=str(network.network_address + host))

    def destroy(self, droplet: Droplet) -> None:
        pass

    def snapshot(self, droplet: Droplet, image_id: int) -> None:
        pass

    def delete_image(self, image_id: int) -> None:
        pass

    def resize(self, droplet: Droplet, vcpus: int, memory_mb: int) -> None:
        pass

    def power(self, droplet: Droplet, on: bool) -> None:
        pass


@attrs.define
class Droplet:
    id: int
    name: str
    region: str
    size_slug: str
    image: dict[str, Any]
    tags: list[str]
    vpc_uuid: str
    vpc_range: str
    ssh_key_ids: list[int]
    user_data: str | None
    created_at: str
    status: str = "new"
    locked: bool = False
    public_ip: str | None = None
    private_ip: str | None = None
    snapshot_ids: list[int] = attrs.Factory(list)

    def as_json(self) -> dict[str, Any]:
        size = size_object(self.size_slug) or {}
        v4: list[dict[str, Any]] = []
        if self.public_ip:
            gateway = ".".join([*self.public_ip.split(".")[:3], "1"])
            v4.append({"ip_address": self.public_ip, "netmask": "255.255.255.0", "gateway": gateway, "type": "public"})
        if self.private_ip:
            net = ipaddress.ip_network(self.vpc_range)
            v4.append({"ip_address": self.private_ip, "netmask": str(net.netmask), "gateway": str(net.network_address + 1), "type": "private"})
        return {
            "id": self.id,
            "name": self.name,
            "memory": size.get("memory", 0),
            "vcpus": size.get("vcpus", 0),
            "disk": size.get("disk", 0),
            "disk_info": size.get("disk_info", []),
            "locked": self.locked,
            "status": self.status,
            "kernel": None,
            "created_at": self.created_at,
            "features": ["private_networking"],
            "backup_ids": [],
            "next_backup_window": None,
            "snapshot_ids": list(self.snapshot_ids),
            "image": self.image,
            "volume_ids": [],
            "size": size,
            "size_slug": self.size_slug,
            "networks": {"v4": v4, "v6": []},
            "region": region_object(self.region),
            "tags": list(self.tags),
            "vpc_uuid": self.vpc_uuid,
        }


@attrs.define
class Action:
    id: int
    type: str
    resource_id: int | None
    resource_type: str
    region: str | None
    started_at: str
    status: str = "in-progress"
    completed_at: str | None = None

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "type": self.type,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "resource_id": self.resource_id,
            "resource_type": self.resource_type,
            "region_slug": self.region,
        }
        if self.region is not None:
            found["region"] = region_object(self.region)
        return found


def fingerprint(public_key: str) -> str:
    """The MD5 fingerprint DigitalOcean shows for a public key (``aa:bb:...``)."""
    parts = public_key.split()
    if len(parts) < 2:
        raise unprocessable("Key invalid, key should be of the form: ssh-<type> <base64 data> [comment]")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise unprocessable("Key invalid type, we support 'ssh-rsa', 'ssh-ed25519' and 'ecdsa-sha2-*' keys") from None
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class Cloud:
    """One fake DigitalOcean account.

    :param machines: what a droplet is (default: records only).
    :param action_seconds: the least time an action stays ``in-progress``.
    """

    def __init__(self, machines: Machines | None = None, *, action_seconds: float = 0.0) -> None:
        self.machines: Machines = machines or MemoryMachines()
        self.action_seconds = action_seconds
        self.lock = threading.RLock()
        self._ids = itertools.count(int(time.time()) % 1_000_000 * 100 + 1)
        self.droplets: dict[int, Droplet] = {}
        self.actions: dict[int, Action] = {}
        self.keys: dict[int, dict[str, Any]] = {}
        self.vpcs: dict[str, dict[str, Any]] = {}
        self.firewalls: dict[str, dict[str, Any]] = {}
        self.tags: dict[str, None] = {}
        self.snapshots: dict[int, dict[str, Any]] = {}
        #: Creates that will fail (their action ``errored``), for rehearsing failure.
        self.failing_creates = 0
        #: Creates that succeed but whose answer is lost (the connection closes instead).
        self.lost_create_answers = 0
        self._threads: list[threading.Thread] = []

    def next_id(self) -> int:
        return next(self._ids)

    # --- actions -------------------------------------------------------------------------------

    def start_action(self, kind: str, resource: Droplet | None, effect: Callable[[], Settle], *, on_error: Callable[[], None] | None = None, image: tuple[int, str] | None = None) -> Action:
        """An ``in-progress`` action running ``effect`` on a thread; ``completed`` after it
        (and at least :attr:`action_seconds`), ``errored`` when it raised. What ``effect``
        returns is applied (under the lock) as the action completes: a droplet changes when
        its action says so, not before."""
        action = Action(
            id=self.next_id(),
            type=kind,
            resource_id=resource.id if resource else image[0] if image else None,
            resource_type="droplet" if resource else "image" if image else "backend",
            region=resource.region if resource else image[1] if image else None,
            started_at=now_iso(),
        )
        self.actions[action.id] = action
        began = time.monotonic()

        def run() -> None:
            status, settle = "completed", None
            try:
                settle = effect()
            except Exception:  # noqa: BLE001 - any failure of the machine is the action's
                status = "errored"
            time.sleep(max(0.0, self.action_seconds - (time.monotonic() - began)))
            with self.lock:
                if settle is not None:
                    settle()
                if status == "errored" and on_error is not None:
                    on_error()
                action.status, action.completed_at = status, now_iso()
                if resource is not None:
                    resource.locked = False

        thread = threading.Thread(target=run, name=f"fake-do-action-{action.id}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return action

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until every action has ended (for a clean shutdown)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    # --- droplets ------------------------------------------------------------------------------

    def create_droplet(self, body: Mapping[str, Any]) -> tuple[Droplet, Action]:
        name = body.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise unprocessable("Name is invalid: only letters, digits, '.' and '-' are allowed")
        region = body.get("region")
        if region not in REGIONS:
            raise unprocessable(f"Region is not available: {region!r}")
        size = size_object(str(body.get("size", "")))
        if size is None:
            raise unprocessable(f"Size is not available in this region: {body.get('size')!r}")
        tags = list(body.get("tags") or [])
        for tag in tags:
            if not isinstance(tag, str) or not TAG_RE.match(tag):
                raise unprocessable(f"tag name {tag!r} is invalid: only letters, numbers, colons, dashes and underscores")
        user_data = body.get("user_data")
        if user_data is not None and len(str(user_data).encode()) > 64 * 1024:
            raise unprocessable("user_data is larger than 64 KiB")
        with self.lock:
            image = self._image_for(body.get("image"), region, size["disk"])
            key_ids = [self._key(k)["id"] for k in body.get("ssh_keys") or []]
            vpc = self._vpc_for(body.get("vpc_uuid"), region)
            droplet = Droplet(
                id=self.next_id(),
                name=name,
                region=region,
                size_slug=size["slug"],
                image=image,
                tags=tags,
                vpc_uuid=vpc["id"],
                vpc_range=vpc["ip_range"],
                ssh_key_ids=key_ids,
                user_data=user_data,
                created_at=now_iso(),
                locked=True,
            )
            for tag in tags:
                self.tags.setdefault(tag, None)
            self.droplets[droplet.id] = droplet
            public_keys = [self.keys[k]["public_key"] for k in key_ids]
            fail = self.failing_creates > 0
            self.failing_creates -= 1 if fail else 0

        def create() -> Settle:
            if fail:
                raise RuntimeError("create failed (rehearsed)")
            addresses = self.machines.create(droplet, public_keys)

            def settle() -> None:
                droplet.public_ip, droplet.private_ip, droplet.status = addresses.public, addresses.private, "active"

            return settle

        def failed() -> None:
            # DigitalOcean removes a droplet whose creation failed; its action says errored.
            self.droplets.pop(droplet.id, None)

        return droplet, self.start_action("create", droplet, create, on_error=failed)

    def droplet(self, droplet_id: int) -> Droplet:
        found = self.droplets.get(droplet_id)
        if found is None:
            raise not_found()
        return found

    def list_droplets(self, *, tag_name: str | None = None, name: str | None = None) -> list[Droplet]:
        with self.lock:
            found = sorted(self.droplets.values(), key=lambda d: d.id)
        if tag_name is not None:
            found = [d for d in found if tag_name in d.tags]
        if name is not None:
            found = [d for d in found if d.name == name]
        return [self.current(d) for d in found]

    def current(self, droplet: Droplet) -> Droplet:
        """``droplet`` with the addresses its machine has now, for machines that can change
        them (a sandbox server restarted by hand may get other addresses from Docker, which a
        droplet never does: the fake reports what is true of the machine)."""
        addresses = getattr(self.machines, "addresses", None)
        if droplet.status == "active" and addresses is not None:
            now = addresses(droplet)
            if now is not None:
                with self.lock:
                    droplet.public_ip, droplet.private_ip = now.public, now.private
        return droplet

    def destroy_droplet(self, droplet_id: int) -> None:
        with self.lock:
            droplet = self.droplet(droplet_id)
            if droplet.locked:
                raise unprocessable("Droplet already has a pending event.")
            del self.droplets[droplet_id]
        self.machines.destroy(droplet)

    def destroy_by_tag(self, tag_name: str) -> None:
        for droplet in self.list_droplets(tag_name=tag_name):
            self.destroy_droplet(droplet.id)

    def droplet_action(self, droplet_id: int, body: Mapping[str, Any]) -> Action:
        kind = body.get("type")
        with self.lock:
            droplet = self.droplet(droplet_id)
            if droplet.locked:
                raise unprocessable("Droplet already has a pending event.")
            if kind in ("power_off", "shutdown"):
                effect = self._power(droplet, on=False)
            elif kind in ("power_on", "reboot", "power_cycle"):
                effect = self._power(droplet, on=True)
            elif kind == "resize":
                effect = self._resize(droplet, str(body.get("size", "")), bool(body.get("disk", False)))
            elif kind == "snapshot":
                effect = self._snapshot(droplet, body.get("name"))
            else:
                raise unprocessable(f"Droplet action type {kind!r} is not supported here")
            droplet.locked = True
        return self.start_action(str(kind), droplet, effect)

    def _power(self, droplet: Droplet, *, on: bool) -> Callable[[], Settle]:
        def effect() -> Settle:
            self.machines.power(droplet, on)
            return lambda: setattr(droplet, "status", "active" if on else "off")

        return effect

    def _resize(self, droplet: Droplet, slug: str, disk: bool) -> Callable[[], Settle]:
        size = size_object(slug)
        if size is None:
            raise unprocessable(f"Size is not available in this region: {slug!r}")
        if droplet.status != "off":
            raise unprocessable("Droplet is currently on. Please power it off to run this event.")
        current = size_object(droplet.size_slug) or {"disk": 0}
        if size["disk"] < current["disk"] and (disk or droplet.image.get("type") == "snapshot"):
            raise unprocessable("This size is not available because it has a smaller disk.")

        def effect() -> Settle:
            self.machines.resize(droplet, size["vcpus"], size["memory"])
            return lambda: setattr(droplet, "size_slug", slug)

        return effect

    def _snapshot(self, droplet: Droplet, name: Any) -> Callable[[], Settle]:
        image_id = self.next_id()
        label = name if isinstance(name, str) and name else f"{droplet.name}-{int(time.time() * 1000)}"
        disk = (size_object(droplet.size_slug) or {"disk": 25})["disk"]

        def effect() -> Settle:
            self.machines.snapshot(droplet, image_id)
            return settle

        def settle() -> None:
            self.snapshots[image_id] = {
                "id": image_id,
                "name": label,
                "type": "snapshot",
                "distribution": droplet.image.get("distribution", "Debian"),
                "slug": None,
                "public": False,
                "regions": [droplet.region],
                "created_at": now_iso(),
                "min_disk_size": disk,
                "size_gigabytes": 2.34,
                "description": "",
                "tags": [],
                "status": "available",
                "error_message": "",
                "resource_id": droplet.id,
            }
            droplet.snapshot_ids.append(image_id)

        return effect

    # --- images and snapshots ------------------------------------------------------------------

    def _image_for(self, image: Any, region: str, disk: int) -> dict[str, Any]:
        if isinstance(image, str) and not image.isdigit():
            if image not in DISTRIBUTIONS:
                raise unprocessable("You specified an invalid image for Droplet creation.")
            return {
                "id": 100000 + sorted(DISTRIBUTIONS).index(image),
                "name": image,
                "type": "base",
                "distribution": DISTRIBUTIONS[image],
                "slug": image,
                "public": True,
                "regions": sorted(REGIONS),
                "created_at": "2026-01-01T00:00:00Z",
                "min_disk_size": 15,
                "size_gigabytes": 2.0,
                "description": "",
                "tags": [],
                "status": "available",
                "error_message": "",
            }
        try:
            snapshot = self.snapshots[int(image)]
        except (KeyError, TypeError, ValueError):
            raise unprocessable("You specified an invalid image for Droplet creation.") from None
        if region not in snapshot["regions"]:
            raise unprocessable(f"The image is not available in {region}; transfer it there first.")
        if disk < snapshot["min_disk_size"]:
            raise unprocessable(f"This image needs a disk of at least {snapshot['min_disk_size']} GB.")
        return self.image_json(snapshot)

    def image_action(self, image_id: Any, body: Mapping[str, Any]) -> Action:
        """``transfer`` (to ``body["region"]``): the snapshot becomes available there too once
        the action completes (a sandbox snapshot is one image for every region)."""
        kind, region = body.get("type"), body.get("region")
        with self.lock:
            snapshot = self.snapshot(image_id)
            if kind != "transfer":
                raise unprocessable(f"Image action type {kind!r} is not supported here")
            if region not in REGIONS:
                raise unprocessable(f"Region is not available: {region!r}")
            if region in snapshot["regions"]:
                raise unprocessable(f"The image is already available in {region}.")

        def effect() -> Settle:
            return lambda: snapshot["regions"].append(region) if region not in snapshot["regions"] else None

        return self.start_action("transfer", None, effect, image=(int(snapshot["id"]), str(region)))

    @staticmethod
    def image_json(snapshot: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in snapshot.items() if k != "resource_id"}

    @staticmethod
    def snapshot_json(snapshot: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": str(snapshot["id"]),
            "name": snapshot["name"],
            "created_at": snapshot["created_at"],
            "regions": list(snapshot["regions"]),
            "resource_id": str(snapshot["resource_id"]),
            "resource_type": "droplet",
            "min_disk_size": snapshot["min_disk_size"],
            "size_gigabytes": snapshot["size_gigabytes"],
            "tags": list(snapshot["tags"]),
        }

    def snapshot(self, snapshot_id: Any) -> dict[str, Any]:
        try:
            return self.snapshots[int(snapshot_id)]
        except (KeyError, TypeError, ValueError):
            raise not_found() from None

    def delete_snapshot(self, snapshot_id: Any) -> None:
        with self.lock:
            found = self.snapshot(snapshot_id)
            del self.snapshots[found["id"]]
            for droplet in self.droplets.values():
                if found["id"] in droplet.snapshot_ids:
                    droplet.snapshot_ids.remove(found["id"])
        self.machines.delete_image(found["id"])

    # --- SSH keys ------------------------------------------------------------------------------

    def add_key(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name, public_key = body.get("name"), body.get("public_key")
        if not isinstance(name, str) or not name:
            raise unprocessable("Name can't be blank")
        if not isinstance(public_key, str) or not public_key.strip():
            raise unprocessable("Public Key can't be blank")
        key: dict[str, Any] = {"id": self.next_id(), "fingerprint": fingerprint(public_key), "public_key": public_key.strip(), "name": name}
        with self.lock:
            if any(k["fingerprint"] == key["fingerprint"] for k in self.keys.values()):
                raise unprocessable("SSH Key is already in use on your account")
            self.keys[key["id"]] = key
        return key

    def _key(self, ref: Any) -> dict[str, Any]:
        for key in self.keys.values():
            if str(ref) in (str(key["id"]), key["fingerprint"]):
                return key
        if isinstance(ref, str) and ref.startswith("ssh-"):
            raise unprocessable("ssh_keys must be key ids or fingerprints, not public keys")
        raise unprocessable(f"SSH key {ref!r} not found")

    def key(self, ref: Any) -> dict[str, Any]:
        try:
            return self._key(ref)
        except ApiError:
            raise not_found() from None

    def delete_key(self, ref: Any) -> None:
        with self.lock:
            del self.keys[self.key(ref)["id"]]

    # --- VPCs ----------------------------------------------------------------------------------

    def create_vpc(self, body: Mapping[str, Any], *, default: bool = False) -> dict[str, Any]:
        name, region = body.get("name"), body.get("region")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise unprocessable("name is invalid")
        if region not in REGIONS:
            raise unprocessable(f"region {region!r} is not available")
        with self.lock:
            if any(v["name"] == name for v in self.vpcs.values()):
                raise unprocessable("A VPC with this name already exists")
            ip_range = body.get("ip_range") or self._free_range()
            try:
                network = ipaddress.ip_network(str(ip_range))
            except ValueError:
                raise unprocessable(f"ip_range {ip_range!r} is not a network") from None
            if any(network.overlaps(ipaddress.ip_network(v["ip_range"])) for v in self.vpcs.values()):
                raise unprocessable("This range overlaps another VPC's")
            vpc_id = str(uuid.uuid4())
            vpc = {
                "id": vpc_id,
                "urn": f"do:vpc:{vpc_id}",
                "name": name,
                "description": str(body.get("description") or ""),
                "region": region,
                "ip_range": str(network),
                "default": default,
                "created_at": now_iso(),
            }
            self.vpcs[vpc_id] = vpc
        return vpc

    def _free_range(self) -> str:
        taken = [ipaddress.ip_network(v["ip_range"]) for v in self.vpcs.values()]
        for n in range(100, 250):
            candidate = ipaddress.ip_network(f"10.{n}.0.0/20")
            if not any(candidate.overlaps(t) for t in taken):
                return str(candidate)
        raise unprocessable("no free private range left")

    def _vpc_for(self, vpc_uuid: Any, region: str) -> dict[str, Any]:
        if vpc_uuid:
            vpc = self.vpcs.get(str(vpc_uuid))
            if vpc is None:
                raise unprocessable(f"vpc_uuid {vpc_uuid} not found")
            if vpc["region"] != region:
                raise unprocessable("The VPC is in another region than the Droplet")
            return vpc
        for vpc in self.vpcs.values():
            if vpc["region"] == region and vpc["default"]:
                return vpc
        return self.create_vpc({"name": f"default-{region}", "region": region}, default=True)

    def vpc(self, vpc_id: str) -> dict[str, Any]:
        found = self.vpcs.get(vpc_id)
        if found is None:
            raise not_found()
        return found

    def delete_vpc(self, vpc_id: str) -> None:
        with self.lock:
            vpc = self.vpc(vpc_id)
            if any(d.vpc_uuid == vpc_id for d in self.droplets.values()):
                raise ApiError(403, "forbidden", "Can not delete VPC with members")
            del self.vpcs[vpc["id"]]

    # --- firewalls -----------------------------------------------------------------------------

    def put_firewall(self, body: Mapping[str, Any], firewall_id: str | None = None) -> dict[str, Any]:
        """Create, or replace whole (a PUT: what ``body`` omits is reset)."""
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "bad_request", "name is required")
        rules = {k: list(body.get(k) or []) for k in ("inbound_rules", "outbound_rules")}
        for direction, items in rules.items():
            for rule in items:
                if not isinstance(rule, dict) or rule.get("protocol") not in ("tcp", "udp", "icmp"):
                    raise ApiError(400, "bad_request", f"{direction}: protocol must be tcp, udp or icmp")
                if rule["protocol"] != "icmp" and not re.fullmatch(r"all|\d+(-\d+)?", str(rule.get("ports", ""))):
                    raise ApiError(400, "bad_request", f"{direction}: ports must be a port, a range or 'all'")
                if direction == "inbound_rules" and not isinstance(rule.get("sources"), dict):
                    raise ApiError(400, "bad_request", "inbound rules need sources")
                if direction == "outbound_rules" and not isinstance(rule.get("destinations"), dict):
                    raise ApiError(400, "bad_request", "outbound rules need destinations")
        with self.lock:
            if firewall_id is not None and firewall_id not in self.firewalls:
                raise not_found()
            existing = self.firewalls.get(firewall_id or "")
            found: dict[str, Any] = {
                "id": firewall_id or str(uuid.uuid4()),
                "status": "succeeded",
                "created_at": existing["created_at"] if existing else now_iso(),
                "pending_changes": [],
                "name": name,
                "droplet_ids": [int(i) for i in body.get("droplet_ids") or []],
                "tags": list(body.get("tags") or []),
                **rules,
            }
            self.firewalls[found["id"]] = found
        return found

    def firewall(self, firewall_id: str) -> dict[str, Any]:
        found = self.firewalls.get(firewall_id)
        if found is None:
            raise not_found()
        return found

    def delete_firewall(self, firewall_id: str) -> None:
        with self.lock:
            del self.firewalls[self.firewall(firewall_id)["id"]]

    # --- tags ----------------------------------------------------------------------------------

    def create_tag(self, name: Any) -> dict[str, Any]:
        if not isinstance(name, str) or not TAG_RE.match(name) or len(name) > 255:
            raise unprocessable(f"tag name {name!r} is invalid: only letters, numbers, colons, dashes and underscores")
        with self.lock:
            self.tags.setdefault(name, None)
        return self.tag(name)

    def tag(self, name: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.tags:
                raise not_found()
            tagged = [d for d in self.droplets.values() if name in d.tags]
        last = max(tagged, key=lambda d: d.id).as_json() if tagged else {}
        droplets = {"count": len(tagged), "last_tagged_uri": f"/v2/droplets/{last['id']}" if last else ""}
        return {"name": name, "resources": {"count": len(tagged), "last_tagged_uri": droplets["last_tagged_uri"], "droplets": droplets}}

    def delete_tag(self, name: str) -> None:
        with self.lock:
            self.tag(name)
            del self.tags[name]
            for droplet in self.droplets.values():
                if name in droplet.tags:
                    droplet.tags.remove(name)

    def tag_resources(self, name: str, resources: Any, *, add: bool) -> None:
        with self.lock:
            self.tag(name)
            for resource in resources or []:
                if not isinstance(resource, dict) or resource.get("resource_type") != "droplet":
                    raise unprocessable("only droplets can be tagged here")
                droplet = self.droplets.get(int(resource.get("resource_id", 0)))
                if droplet is None:
                    raise not_found()
                if add and name not in droplet.tags:
                    droplet.tags.append(name)
                elif not add and name in droplet.tags:
                    droplet.tags.remove(name)
