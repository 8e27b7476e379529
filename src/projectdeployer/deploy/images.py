"""Getting an image built on this machine onto a server's Docker engine.

With no registry configured, the image is streamed over the server's own connection
(``docker save`` here, ``docker load`` there, through the Docker SDK: chunks, never the whole
image in memory), and only when the server lacks it: the server is first asked for the image
*id* (the content digest of its config), and an image present under another name is only
tagged. With a registry (``[project] registry``) the image is pushed once and every server that
lacks it pulls it by digest; a registry on this machine's loopback (``127.0.0.1:5000``) reaches
the servers through their SSH connections.

Every server is checked and fed in parallel (bounded), and one server that cannot be reached
does not stop the others: the result says, per server, what happened.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ..core.errors import ProjectDeployerError
from ..core.fanout import failures, fan_out, successes
from ..core.provider import Server

Log = Callable[[str], None]


class ImageTransferError(ProjectDeployerError):
    """An image could not be put on one or more servers; names each and why."""


class ImageNotLocal(ImageTransferError):
    """The image is not on this machine's engine (so there is nothing to send)."""


@attrs.frozen(kw_only=True)
class Transfer:
    """What happened to one image on one server."""

    server: str
    image: str
    image_id: str
    #: present (nothing to do), tagged (same id under another name), pulled (from the
    #: registry by digest), loaded (streamed)
    action: str
    seconds: float
    bytes: int = 0


def _split(ref: str) -> tuple[str, str]:
    """``repo:tag`` (the tag defaults to ``latest``; a registry port is not a tag)."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return repo, tag


def ensure_image(local: Any, server: Server, ref: str, *, log: Log | None = None, registry_ref: str | None = None) -> Transfer:
    """Make ``ref`` (an image of the local engine ``local``, a Docker SDK client) present on
    ``server`` with the same id; when the server has no image of that id, pull it by digest
    (``registry_ref``, ``host:port/repo@sha256:...``, pushed already) or else stream it."""
    import docker.errors  # noqa: PLC0415 - deferred: docker SDK (start-up: 0.47 s; imported at first use, as providers/docker_runtime.py does)

    began = time.monotonic()
    if "@sha256:" in ref:
        return _by_digest(server, ref, began, log)
    remote = server.docker()
    if ref.startswith("sha256:"):
        # An image id (a rollback's): exact, so a server that has it needs nothing, even when
        # this machine no longer does.
        try:
            remote.images.get(ref)
            return Transfer(server=server.name, image=ref, image_id=ref, action="present", seconds=time.monotonic() - began)
        except docker.errors.ImageNotFound:
            pass
    try:
        image_id = local.images.get(ref).id
    except docker.errors.ImageNotFound:
        raise ImageNotLocal(f"image {ref} is not on this machine (build it first)") from None
    try:
        if remote.images.get(ref).id == image_id:
            return Transfer(server=server.name, image=ref, image_id=image_id, action="present", seconds=time.monotonic() - began)
    except docker.errors.ImageNotFound:
        pass
    repo, tag = _split(ref)
    try:
        remote.images.get(image_id).tag(repo, tag)
        return Transfer(server=server.name, image=ref, image_id=image_id, action="tagged", seconds=time.monotonic() - began)
    except docker.errors.ImageNotFound:
        pass
    if registry_ref is not None:
        return _pull(server, ref, image_id, registry_ref, began, log)
    if log:
        log(f"{server.name}: sending image {ref} ({image_id[7:19]})")
    sent = _Counter(local.api.get_image(ref))
    remote.images.load(sent)
    if remote.images.get(ref).id != image_id:  # an engine that loaded something else under the name
        raise ImageTransferError(f"{server.name}: image {ref} arrived with another id than {image_id[7:19]}")
    return Transfer(server=server.name, image=ref, image_id=image_id, action="loaded", seconds=time.monotonic() - began, bytes=sent.count)


def _by_digest(server: Server, ref: str, began: float, log: Log | None) -> Transfer:
    """A digest-pinned reference (``repo@sha256:...``) names content in a registry, and
    ``docker save | load`` keeps no digest: the server pulls it itself (through its SSH
    connection for a registry on this machine's loopback), unless it has it already. The
    digest pins the content, so there is no id to compare (it differs between platforms)."""
    import docker.errors  # noqa: PLC0415 - deferred: docker SDK (start-up, as in ensure_image)

    try:
        found = server.docker().images.get(ref)
        return Transfer(server=server.name, image=ref, image_id=found.id, action="present", seconds=time.monotonic() - began)
    except docker.errors.ImageNotFound:
        pass
    return _pull(server, ref, None, ref, began, log, tag=False)


def _pull(server: Server, ref: str, image_id: str | None, registry_ref: str, began: float, log: Log | None, *, tag: bool = True) -> Transfer:
    """The server pulls ``registry_ref`` and tags it ``ref``. A registry on this machine's
    loopback reaches the server through its SSH connection (``reverse_forward``), where the
    engine trusts plain HTTP on loopback."""
    host = registry_ref.partition("/")[0]
    name, _, port = host.partition(":")
    tunnel: Any = contextlib.nullcontext()
    if name in ("127.0.0.1", "localhost") and port.isdigit() and hasattr(server, "reverse_forward"):
        tunnel = server.reverse_forward(int(port))
    if log:
        log(f"{server.name}: pulling {registry_ref}")
    remote = server.docker()
    with tunnel:
        pulled = remote.images.pull(registry_ref)
    if image_id is not None and pulled.id != image_id:
        raise ImageTransferError(f"{server.name}: {registry_ref} has another id than the image built here ({image_id[7:19]})")
    if tag:
        repo, name_tag = _split(ref)
        pulled.tag(repo, name_tag)
    return Transfer(server=server.name, image=ref, image_id=pulled.id, action="pulled", seconds=time.monotonic() - began)


class _Counter:
    """An iterable of chunks that counts the bytes passing through."""

    def __init__(self, chunks: Any) -> None:
        self.chunks = chunks
        self.count = 0

    def __iter__(self) -> Any:
        for chunk in self.chunks:
            self.count += len(chunk)
            yield chunk


def distribute(local: Any, servers: Sequence[Server], refs: Sequence[str], *, max_workers: int = 4, log: Log | None = None, pushed: Mapping[str, str] | None = None) -> list[Transfer]:
    """Every image of ``refs`` onto every server of ``servers``, servers in parallel (each
    server's images one after the other: its engine loads one at a time anyway). Raises
    :class:`ImageTransferError` naming every server that failed, after all were tried."""

    def feed(server: Server) -> list[Transfer]:
        return [ensure_image(local, server, ref, log=log, registry_ref=(pushed or {}).get(ref)) for ref in refs]

    results = fan_out(servers, feed, max_workers=max_workers)
    errors = {n: str(e) if isinstance(e, ProjectDeployerError) else f"{type(e).__name__}: {e}" for n, e in failures(results).items()}
    if errors:
        raise ImageTransferError("images could not be sent to " + "; ".join(f"{n}: {e}" for n, e in errors.items()))
    return [t for transfers in successes(results).values() for t in transfers]


def summary(transfers: Sequence[Transfer]) -> Mapping[str, int]:
    """How many transfers ended in each action."""
    counts: dict[str, int] = {}
    for t in transfers:
        counts[t.action] = counts.get(t.action, 0) + 1
    return counts


__all__ = ["ImageNotLocal", "ImageTransferError", "Transfer", "distribute", "ensure_image", "summary"]
