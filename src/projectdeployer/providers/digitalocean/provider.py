"""The ``digitalocean`` provider: droplets, listed live by their tags, reached over SSH.

What lives where (the seed's contract):

- **Inventory** is the droplets tagged ``pd:{project}:{env}``, read from the API on every
  listing (paginated), never cached. A droplet's other tags say what a deploy needs to know:
  ``zone:{region}``, ``status:active|reserve|destroying`` and ``slot:{n}``.
- **One SSH key** per environment (its key pair's public half), uploaded once; **one VPC per
  region** (``pd-{project}-{env}-{region}``); **one cloud firewall** per environment
  (``pd-{project}-{env}``, applied by tag): SSH, 80 and 443 from anywhere, every other TCP
  port only from the environment's own droplets; written whole on each creation (an update is a
  full PUT).
- **Sizes** are read from ``sizes.list()``: the cheapest available one in the region with the
  vCPUs and memory asked for. **Resize** powers off, resizes (disk too), powers on: data kept.
- **The creation lock**: DigitalOcean has no lock, but VPC names are unique in an account, so
  creating the VPC ``pd-lock-{project}-{env}`` succeeds for one caller only (see
  :meth:`DigitalOceanProvider.creation_lock` for the lease and its guarantees).

The API token comes from ``DIGITALOCEAN_API_TOKEN`` and ``DIGITALOCEAN_API_URL`` points the
provider at another endpoint (the fake in ``projectdeployer.rehearse.fake_digitalocean``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ...core.errors import ProjectDeployerError
from ...core.provider import Provider, Server, ServerSpec
from ..ssh.bootstrap import image_ids, server_image_refs
from ..ssh.wrapped import SshBackedServer
from .api import TOKEN_ENV, DigitalOceanApi, DigitalOceanError, api_url
from .template import BASE_IMAGE, TEMPLATE_TAG, delete_templates, digest, find_template, provision, template_name

STATES = ("active", "reserve", "destroying")
#: The region that holds an environment's creation-lock VPC (any region would do).
LOCK_REGION = "nyc3"
#: A CA bundle to trust for the API's certificate (a fake served over HTTPS).
CA_ENV = "DIGITALOCEAN_API_CA"
#: Seconds a creation lock is good for; a holder that crashed is taken over after it.
LOCK_LEASE = 1800


def env_tag(project: str, env: str) -> str:
    """The tag every droplet of ``project``/``env`` carries (what listing asks for)."""
    return f"pd:{project}:{env}"


def droplet_name(project: str, env: str, zone: str, index: int) -> str:
    return f"{project}-{env}-{zone}-{index}"


def firewall_body(project: str, env: str) -> dict[str, Any]:
    """The environment's whole firewall (a PUT replaces everything it had)."""
    anywhere = {"addresses": ["0.0.0.0/0", "::/0"]}
    ours = {"tags": [env_tag(project, env)]}
    return {
        "name": f"pd-{project}-{env}",
        "tags": [env_tag(project, env)],
        "inbound_rules": [
            {"protocol": "tcp", "ports": "22", "sources": anywhere},
            {"protocol": "tcp", "ports": "80", "sources": anywhere},
            {"protocol": "tcp", "ports": "443", "sources": anywhere},
            {"protocol": "tcp", "ports": "1-65535", "sources": ours},
            {"protocol": "udp", "ports": "1-65535", "sources": ours},
            {"protocol": "icmp", "sources": ours},
        ],
        "outbound_rules": [
            {"protocol": "tcp", "ports": "1-65535", "destinations": anywhere},
            {"protocol": "udp", "ports": "1-65535", "destinations": anywhere},
            {"protocol": "icmp", "destinations": anywhere},
        ],
    }


def tags_of(droplet: Mapping[str, Any]) -> dict[str, str]:
    """``zone:lon1``, ``status:active``, ``slot:0`` ... as a dict (the last of a key wins)."""
    found: dict[str, str] = {}
    for tag in droplet.get("tags") or []:
        key, sep, value = str(tag).partition(":")
        if sep and key in ("zone", "status", "slot"):
            found["state" if key == "status" else key] = value
    return found


def _address(droplet: Mapping[str, Any], kind: str) -> str:
    return next((n["ip_address"] for n in (droplet.get("networks") or {}).get("v4") or [] if n.get("type") == kind), "")


class DropletServer(SshBackedServer):
    """A droplet as listed now; commands, files and Docker go through its (reused) SSH access,
    made on first use (listing connects to nothing)."""

    def __init__(self, droplet: Mapping[str, Any], project: str, env: str, ssh: Callable[[], Any]) -> None:
        self.droplet_id = int(droplet["id"])
        self.name = str(droplet["name"])
        self.zone = str((droplet.get("region") or {}).get("slug", ""))
        self.public_address = _address(droplet, "public")
        self.private_address = _address(droplet, "private") or self.public_address
        self.status = str(droplet.get("status", ""))
        self.tags = {"project": project, "env": env, "zone": self.zone, "state": "active", "size": str(droplet.get("size_slug", "")), "droplet_id": str(self.droplet_id), **tags_of(droplet)}
        self._ssh_factory = ssh
        self._ssh: Any = None

    def __repr__(self) -> str:
        return f"<DropletServer {self.name} id={self.droplet_id} {self.public_address} {self.status} {self.tags.get('state')}>"

    @property
    def state(self) -> str:
        return self.tags["state"]

    @property
    def running(self) -> bool:
        return self.status == "active" and bool(self.public_address)

    # Ports are published on every address: servers in other regions reach a database over its
    # public address, and the firewall admits only the environment's droplets there.
    bind_address = "0.0.0.0"

    @property
    def ssh(self) -> Any:
        if self._ssh is None:
            self._ssh = self._ssh_factory()
        return self._ssh


class DigitalOceanProvider(Provider):
    """Droplets in DigitalOcean's regions (see the module).

    :param api: the API client (default: one made from ``DIGITALOCEAN_API_TOKEN`` and
        ``DIGITALOCEAN_API_URL`` on first use).
    :param ready_timeout: seconds a new droplet may take to become active and accept SSH.
    """

    name = "digitalocean"
    #: Servers come from the region's template snapshot (made on first need); ``False``: from
    #: the base image, provisioned one by one (the seed's ``create_droplet``).
    use_templates = True
    #: The images a template holds (the project's nginx and Python images; see template.py).
    template_images: tuple[str, ...] = ()

    def __init__(self, api: DigitalOceanApi | None = None, *, ready_timeout: float = 600.0, log: Callable[[str], None] | None = None) -> None:
        self._given = api
        #: API clients by (token, endpoint, CA): one per account in use.
        self._apis: dict[tuple[str, str, bool | str], DigitalOceanApi] = {}
        #: Tokens the environments' ``api_token`` references gave, by (project, env).
        self._tokens: dict[tuple[str, str], str] = {}
        self.ready_timeout = ready_timeout
        self.log = log or (lambda line: None)
        self._lock = threading.Lock()
        self._naming: set[str] = set()
        self._setup = threading.Lock()
        self._template_locks: dict[str, threading.Lock] = {}
        #: Environments whose firewall this provider wrote (once per process: it never changes).
        self._firewalled: set[tuple[str, str]] = set()
        self._ssh: dict[int, Any] = {}

    @classmethod
    def for_project(cls, project: Any) -> DigitalOceanProvider:
        """A provider whose templates hold the project's nginx and Python images."""
        provider = cls()
        provider.template_images = server_image_refs(project)
        return provider

    takes_api_token = True

    def use_api_token(self, project: str, env: str, token: str) -> None:
        with self._lock:
            self._tokens[(project, env)] = token

    def api(self, project: str | None = None, env: str | None = None) -> DigitalOceanApi:
        """The API client given, or one for ``project``/``env``'s token (its ``api_token``
        reference, else ``DIGITALOCEAN_API_TOKEN``) and the endpoint the environment variables
        name (a new one when they change: another account)."""
        if self._given is not None:
            return self._given
        with self._lock:
            token = self._tokens.get((project or "", env or "")) or os.environ.get(TOKEN_ENV, "")
            key = (token, api_url(os.environ), os.environ.get(CA_ENV) or True)
            if key not in self._apis:
                self._apis[key] = DigitalOceanApi(key[0], url=key[1], verify=key[2], log=lambda line: self.log(line))
            return self._apis[key]

    def _api_of(self, server: Server) -> DigitalOceanApi:
        return self.api(server.tags.get("project"), server.tags.get("env"))

    # --- listing -------------------------------------------------------------------------------

    def list_servers(self, project: str, env: str) -> list[Server]:
        droplets = self.api(project, env).droplets(env_tag(project, env))
        servers = [self._server(project, env, d) for d in droplets]
        return sorted(servers, key=lambda s: (s.zone, int(s.tags.get("slot", "0") or 0) if str(s.tags.get("slot", "")).isdigit() else 0, s.name))

    def _server(self, project: str, env: str, droplet: Mapping[str, Any]) -> DropletServer:
        droplet_id = int(droplet["id"])
        public, private = _address(droplet, "public"), _address(droplet, "private")
        zone = str((droplet.get("region") or {}).get("slug", ""))

        def ssh() -> Any:
            with self._lock:
                found = self._ssh.get(droplet_id)
                if found is None or found.public_address != public:
                    from ..ssh.server import SshServer  # noqa: PLC0415 - deferred: imports paramiko (start-up: ~0.1 s)

                    found = SshServer.for_project(project, env, name=str(droplet["name"]), zone=zone, public_address=public, private_address=private or public, bind_address="0.0.0.0")
                    self._ssh[droplet_id] = found
                return found

        return DropletServer(droplet, project, env, ssh)

    # --- creating ------------------------------------------------------------------------------

    def create_server(self, project: str, env: str, spec: ServerSpec, *, name: str | None = None) -> Server:
        """A droplet in ``spec.zone`` of the cheapest fitting size, tagged, in the environment's
        VPC and firewall, returned once it is active and accepts SSH. ``name``: that name
        instead of the next free ``{project}-{env}-{zone}-{n}``."""
        from ..ssh.keys import ensure_keypair  # noqa: PLC0415 - deferred: next to paramiko's imports

        api = self.api(project, env)
        zone = spec.zone
        state = spec.tags.get("state", "active")
        if state not in STATES:
            raise DigitalOceanError(f"unknown server state {state!r} (one of {', '.join(STATES)})")
        # One at a time in this process (a deploy creates several servers at once): the firewall
        # is found by name, and DigitalOcean lets two firewalls share one. Other processes are
        # kept out by the creation lock the deploy holds.
        with self._setup:
            key = api.ensure_ssh_key(f"projectdeployer-{project}-{env}", ensure_keypair(project, env).public_openssh)
            vpc = api.ensure_vpc(f"pd-{project}-{env}-{zone}", zone)
            if (project, env) not in self._firewalled:
                api.put_firewall(firewall_body(project, env))
                self._firewalled.add((project, env))
        size = api.cheapest_size(vcpus=spec.cpu, memory_mb=spec.memory, region=zone)
        tag = env_tag(project, env)
        tags = [tag, f"zone:{zone}", f"status:{state}", *([f"slot:{spec.tags['slot']}"] if spec.tags.get("slot") else [])]
        image: int | str = self.get_or_create_template(project, env, zone) if self.use_templates else BASE_IMAGE
        if name is None:
            name = self._claim_name(api, project, env, zone)
        else:
            with self._lock:
                self._naming.add(name)
        try:
            body = {"name": name, "region": zone, "size": size["slug"], "image": image, "ssh_keys": [key["id"]], "vpc_uuid": vpc["id"], "tags": tags, "monitoring": True}
            droplet = api.create_droplet(body, tag=tag, timeout=self.ready_timeout)
        finally:
            with self._lock:
                self._naming.discard(name)
        server = self._server(project, env, droplet)
        self._wait_reachable(server)
        if image == BASE_IMAGE:
            self._provision(server, image_ids(self.template_images))
        return server

    def _provision(self, server: DropletServer, images: dict[str, str]) -> None:
        """Make a droplet from the base image what a template holds (template.py)."""
        provision(server, images, self.log)

    # --- templates -----------------------------------------------------------------------------

    def get_or_create_template(self, project: str, env: str, region: str) -> int:
        """The id of ``region``'s template snapshot: one available there; else one holding the
        same (made in another region) transferred there; else one made first (a droplet from
        the base image, provisioned, snapshotted, destroyed; see template.py)."""
        from ..ssh.keys import ensure_keypair  # noqa: PLC0415 - deferred: next to paramiko's imports

        api = self.api(project, env)
        images = image_ids(self.template_images)
        held = digest(images)
        name = template_name(region, held)
        with self._lock:
            content_lock = self._template_locks.setdefault(held, threading.Lock())
        # The servers of one deploy wait for one template, in every region: the first region
        # makes it and the others copy it.
        with content_lock:
            found = find_template(api, held, region)
            if found is not None:
                return int(found["id"])
            elsewhere = find_template(api, held)
            if elsewhere is not None:
                try:
                    return self._transfer(api, elsewhere, region)
                except DigitalOceanError as exc:
                    self.log(f"DigitalOcean: cannot copy the template {elsewhere['name']} to {region} ({exc}); making one there")
            self.log(f"DigitalOcean: making the template {name} (the first server of {region} from it)")
            key = api.ensure_ssh_key(f"projectdeployer-{project}-{env}", ensure_keypair(project, env).public_openssh)
            size = api.cheapest_size(vcpus=1, memory_mb=1024, region=region)
            body = {"name": f"{name}-build", "region": region, "size": size["slug"], "image": BASE_IMAGE, "ssh_keys": [key["id"]], "tags": [TEMPLATE_TAG]}
            droplet = api.create_droplet(body, tag=TEMPLATE_TAG, timeout=self.ready_timeout)
            server = self._server(project, env, droplet)
            try:
                self._wait_reachable(server)
                self._provision(server, images)
                action = api.call(f"snapshot {name}", api.client.droplet_actions.post, server.droplet_id, body={"type": "snapshot", "name": name}, idempotent=False)["action"]
                api.wait_action(action["id"], what=f"snapshot {name}", timeout=max(self.ready_timeout, 1800.0))
            finally:
                self.destroy_server(server)
            found = find_template(api, held, region)
            if found is None:
                raise DigitalOceanError(f"DigitalOcean: the snapshot {name} was taken but is not listed in {region}")
            return int(found["id"])

    def _transfer(self, api: DigitalOceanApi, image: Mapping[str, Any], region: str) -> int:
        """Make snapshot ``image`` available in ``region`` too (an image ``transfer`` action)."""
        self.log(f"DigitalOcean: copying the template {image['name']} to {region}")
        answer = api.call(f"transfer {image['name']} to {region}", api.client.image_actions.post, int(image["id"]), body={"type": "transfer", "region": region}, idempotent=False)
        action = answer.get("action", answer)  # DigitalOcean's description answers it unwrapped
        api.wait_action(int(action["id"]), what=f"transfer {image['name']} to {region}", timeout=max(self.ready_timeout, 3600.0))
        return int(image["id"])

    def delete_template(self) -> list[str]:
        """Remove every template snapshot and any template droplet left behind (the next server
        made needs a new template); the names removed."""
        return delete_templates(self.api(), self.log)

    def _wait_reachable(self, server: DropletServer) -> None:
        """Until the new droplet's sshd accepts the environment's key."""
        server.ssh.wait_until_reachable(timeout=self.ready_timeout)

    def _claim_name(self, api: DigitalOceanApi, project: str, env: str, zone: str) -> str:
        """The lowest free ``{project}-{env}-{zone}-{n}``, kept from other creations of this
        provider until the droplet exists (a deploy creates several at once)."""
        taken = {d["name"] for d in api.droplets(env_tag(project, env))}
        with self._lock:
            index = 1
            while droplet_name(project, env, zone, index) in taken | self._naming:
                index += 1
            name = droplet_name(project, env, zone, index)
            self._naming.add(name)
            return name

    # --- changing ------------------------------------------------------------------------------

    def set_server_state(self, server: Server, state: str) -> Server:
        if state not in STATES:
            raise DigitalOceanError(f"unknown server state {state!r} (one of {', '.join(STATES)})")
        api = self._api_of(server)
        droplet_id = int(server.tags["droplet_id"])
        resource = {"resources": [{"resource_id": str(droplet_id), "resource_type": "droplet"}]}
        wanted = f"status:{state}"
        api.call(f"create tag {wanted}", api.client.tags.create, body={"name": wanted})
        api.call(f"tag droplet {server.name} {wanted}", api.client.tags.assign_resources, wanted, body=resource)
        current = api.droplet(droplet_id)
        for tag in current.get("tags") or []:
            if str(tag).startswith("status:") and tag != wanted:
                api.call(f"untag droplet {server.name} {tag}", api.client.tags.unassign_resources, tag, body=resource)
        return self._server(server.tags["project"], server.tags["env"], api.droplet(droplet_id))

    def resize_server(self, server: Server, cpu: int, memory: int) -> Server:
        """Power off, resize (CPU, memory and disk), power on: the droplet keeps its data and
        addresses. Returns it as listed after."""
        api = self._api_of(server)
        droplet_id = int(server.tags["droplet_id"])
        size = api.cheapest_size(vcpus=cpu, memory_mb=memory, region=server.zone)
        for body in ({"type": "power_off"}, {"type": "resize", "size": size["slug"], "disk": True}, {"type": "power_on"}):
            action = api.call(f"{body['type']} droplet {server.name}", api.client.droplet_actions.post, droplet_id, body=body, idempotent=False)["action"]
            api.wait_action(action["id"], what=f"{body['type']} droplet {server.name}", timeout=self.ready_timeout)
        return self._server(server.tags["project"], server.tags["env"], api.droplet(droplet_id))

    def destroy_server(self, server: Server) -> None:
        """Mark it ``destroying``, then destroy it; a droplet that is gone already is fine."""
        with contextlib.suppress(DigitalOceanError, KeyError):
            self.set_server_state(server, "destroying")
        droplet_id = int(server.tags["droplet_id"])
        self._api_of(server).destroy_droplet(droplet_id)
        with self._lock:
            ssh = self._ssh.pop(droplet_id, None)
        if ssh is not None:
            with contextlib.suppress(Exception):
                ssh.close()
            # DigitalOcean hands the address to another droplet later, with another host key.
            with contextlib.suppress(Exception):
                ssh.known_hosts.remove(ssh.public_address, ssh.port)

    # --- the first deploy's lock ---------------------------------------------------------------

    @contextlib.contextmanager
    def creation_lock(self, project: str, env: str, *, wait: float = 0.0) -> Iterator[None]:
        """Held while the VPC ``pd-lock-{project}-{env}`` exists and is ours.

        Guarantees: VPC names are unique in a DigitalOcean account, so of two creates of the
        lock one fails (422) and its caller waits or gives up naming the holder (host, process,
        since when, from the VPC's description). A holder that crashed leaves the VPC behind: it
        is taken over once its lease (:data:`LOCK_LEASE` seconds from its creation) has passed,
        by deleting that very VPC (by id: a lock taken meanwhile by someone else is a new VPC
        and stays). A deploy that holds the lock longer than the lease is not protected past it.
        """
        api = self.api(project, env)
        name = f"pd-lock-{project}-{env}"
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": int(time.time()), "lease": LOCK_LEASE}
        deadline = time.monotonic() + wait
        held: dict[str, Any] | None = None
        told = False
        while held is None:
            try:
                held = dict(api.call(f"take the creation lock {name}", api.client.vpcs.create, body={"name": name, "region": LOCK_REGION, "description": json.dumps(holder)}, idempotent=False)["vpc"])
            except DigitalOceanError as exc:
                if exc.status not in (409, 422):
                    raise
                current = next((v for v in api.pages("list VPCs", api.client.vpcs.list, "vpcs") if v["name"] == name), None)
                if current is None:
                    continue  # released meanwhile
                owner = _lease(current)
                if owner.get("since", 0) + owner.get("lease", LOCK_LEASE) < time.time():
                    self.log(f"DigitalOcean: taking over the creation lock {name} (its lease has passed: {_holder(owner)})")
                    with contextlib.suppress(DigitalOceanError):
                        api.call(f"remove the stale lock {name}", api.client.vpcs.delete, current["id"])
                    continue
                if time.monotonic() >= deadline:
                    raise ProjectDeployerError(f"{project}/{env}: another deploy holds the creation lock ({_holder(owner)}); try again when it has finished") from None
                if not told:
                    self.log(f"DigitalOcean: waiting for the creation lock {name} ({_holder(owner)})")
                    told = True
                time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
        try:
            yield
        finally:
            with contextlib.suppress(DigitalOceanError):
                api.call(f"release the creation lock {name}", api.client.vpcs.delete, held["id"])


def _lease(vpc: Mapping[str, Any]) -> dict[str, Any]:
    try:
        found = json.loads(vpc.get("description") or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _holder(owner: Mapping[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(owner.get("since", 0))))
    return f"held by {owner.get('host', '?')} pid {owner.get('pid', '?')} since {since}"
