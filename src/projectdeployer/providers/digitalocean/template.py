"""The seed's template snapshot: a droplet provisioned once per region, snapshotted, destroyed;
servers are then created from the snapshot, ready in the time a droplet boots.

What a template holds (:func:`provision`, also run on a droplet made from the base image):

- Docker: Debian's ``docker.io`` installed when the image has no engine;
- ``/local`` (the seed's tree) and ``/etc/projectdeployer/template`` (what it was made from);
- the images every server of the project runs before any service: the routing sidecar's nginx
  and the Python image of the scheduler agent, copied from this machine's engine, so a new
  server's first deploy sends none of them.

A template is named ``pd-template-{region}-{digest}``, the digest of what it holds (those
images' ids and :data:`TEMPLATE_VERSION`): another nginx image makes another template, and
``delete_template`` removes them all (with any template droplet a crash left behind).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from ...core.provider import Server
from .api import DigitalOceanApi, DigitalOceanError

#: Bump when :func:`provision` changes what a template holds.
TEMPLATE_VERSION = 1
TEMPLATE_TAG = "pd:template"
TEMPLATE_PREFIX = "pd-template-"
#: The base image a template (or a server made from scratch) starts from.
BASE_IMAGE = "debian-12-x64"
_DOCKER_INSTALL = "command -v docker >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q docker.io && systemctl enable --now docker; }"


def template_name(region: str, digest: str) -> str:
    return f"{TEMPLATE_PREFIX}{region}-{digest[:10]}"


def image_ids(refs: Sequence[str]) -> dict[str, str]:
    """ref -> id of each of ``refs`` this machine's engine has (the others are left out)."""
    import docker  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)
    import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

    client = docker.from_env()
    found: dict[str, str] = {}
    for ref in refs:
        try:
            found[ref] = client.images.get(ref).id
        except docker.errors.ImageNotFound:
            continue
    return found


def digest(images: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([TEMPLATE_VERSION, sorted(images.items())]).encode()).hexdigest()


def provision(server: Server, images: dict[str, str], log: Callable[[str], None]) -> None:
    """Make ``server`` what a template holds (see the module); safe to run twice."""
    import docker  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

    result = server.run(["sh", "-c", _DOCKER_INSTALL], timeout=900)
    if not result.ok:
        raise DigitalOceanError(f"server {server.name}: installing Docker failed: {(result.stderr or result.stdout).strip()[-300:]}")
    result = server.run(["mkdir", "-p", "/local", "/etc/projectdeployer"])
    if not result.ok:
        raise DigitalOceanError(f"server {server.name}: cannot create /local: {result.stderr.strip()}")
    local, remote = docker.from_env(), server.docker()
    for ref, image_id in sorted(images.items()):
        try:
            if remote.images.get(ref).id == image_id:
                continue
        except docker.errors.ImageNotFound:
            pass
        log(f"{server.name}: copying {ref} into the template")
        remote.images.load(local.images.get(image_id).save(named=ref))
    server.put_file("/etc/projectdeployer/template", (json.dumps({"version": TEMPLATE_VERSION, "images": images}, sort_keys=True) + "\n").encode())


def find_template(api: DigitalOceanApi, name: str, region: str) -> dict[str, Any] | None:
    """The snapshot image named ``name`` available in ``region``, if any."""
    for image in api.pages("list snapshots", api.client.images.list, "images", private=True):
        if image.get("name") == name and region in (image.get("regions") or []):
            return dict(image)
    return None


def delete_templates(api: DigitalOceanApi, log: Callable[[str], None]) -> list[str]:
    """Remove every template snapshot and any template droplet left behind; what was removed."""
    removed: list[str] = []
    for image in api.pages("list snapshots", api.client.images.list, "images", private=True):
        if str(image.get("name", "")).startswith(TEMPLATE_PREFIX):
            api.call(f"delete snapshot {image['name']}", api.client.snapshots.delete, str(image["id"]))
            removed.append(str(image["name"]))
    for droplet in api.droplets(TEMPLATE_TAG):
        api.destroy_droplet(int(droplet["id"]))
        removed.append(str(droplet["name"]))
    for name in removed:
        log(f"DigitalOcean: removed {name}")
    return removed
