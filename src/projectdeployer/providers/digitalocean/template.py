"""The seed's template snapshot: a droplet provisioned once per region, snapshotted, destroyed;
servers are then created from the snapshot, ready in the time a droplet boots.

What a template holds (:func:`provision`, also run on a droplet made from the base image):

- what ``servers setup`` makes of a bare server (:mod:`..ssh.bootstrap`): Docker (Debian's
  ``docker.io``) when the image has no engine, ``/local`` (the seed's tree), and the images
  every server of the project runs before any service (the routing sidecar's nginx and the
  Python image of the scheduler agent), copied from this machine's engine, so a new server's
  first deploy sends none of them;
- ``/etc/projectdeployer/template`` (what it was made from).

A template is named ``pd-template-{region}-{digest}`` (the region it was made in: a region
without one gets a copy, an image transfer, of one made elsewhere), the digest of what it holds (those
images' ids and :data:`TEMPLATE_VERSION`): another nginx image makes another template, and
``delete_template`` removes them all (with any template droplet a crash left behind).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from ...core.provider import Server
from ..ssh.bootstrap import bootstrap
from .api import DigitalOceanApi

#: Bump when :func:`provision` changes what a template holds.
TEMPLATE_VERSION = 2
TEMPLATE_TAG = "pd:template"
TEMPLATE_PREFIX = "pd-template-"
#: The base image a template (or a server made from scratch) starts from.
BASE_IMAGE = "debian-12-x64"


def template_name(region: str, digest: str) -> str:
    return f"{TEMPLATE_PREFIX}{region}-{digest[:10]}"


def digest(images: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([TEMPLATE_VERSION, sorted(images.items())]).encode()).hexdigest()


def provision(server: Server, images: dict[str, str], log: Callable[[str], None]) -> None:
    """Make ``server`` what a template holds (see the module): what ``servers setup`` makes of
    a bare server (:func:`~..ssh.bootstrap.bootstrap`), and the record of what it was made
    from. Safe to run twice."""
    bootstrap(server, images, log=log)
    server.put_file("/etc/projectdeployer/template", (json.dumps({"version": TEMPLATE_VERSION, "images": images}, sort_keys=True) + "\n").encode())


def find_template(api: DigitalOceanApi, held: str, region: str | None = None) -> dict[str, Any] | None:
    """A template snapshot holding what ``held`` (its :func:`digest`) says, available in
    ``region`` (any region: ``None``), if any. Its name tells the region it was made in; a copy
    transferred to another region keeps it."""
    suffix = template_name("", held).removeprefix(TEMPLATE_PREFIX)
    for image in api.pages("list snapshots", api.client.images.list, "images", private=True):
        name = str(image.get("name", ""))
        if name.startswith(TEMPLATE_PREFIX) and name.endswith(suffix) and (region is None or region in (image.get("regions") or [])):
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
