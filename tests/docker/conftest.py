"""Fixtures for tests on the real Docker engine: the offline image bed and a local registry."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.bed import BED_IMAGES

ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = ROOT / "tests" / "images"

#: The bed's images, as the project file's [images] table names them.


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    import docker

    client = docker.from_env(timeout=600)
    client.ping()
    return client


@pytest.fixture(scope="session")
def bed(docker_client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The pd-test/* images; `make test` builds them first (tests/images/build.sh), and this
    fixture builds whatever is missing, so a bare `pytest` works too (slowly the first time)."""
    missing = [tag for tag in BED_IMAGES.values() if not docker_client.images.list(name=tag)]
    if missing:
        subprocess.run(["bash", str(IMAGES_DIR / "build.sh")], check=True)
    return dict(BED_IMAGES)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1 (a free port), for real push and pull by digest."""
    port = str(_free_port())
    state = tmp_path_factory.mktemp("registry")
    env = {"PD_REGISTRY_PORT": port, "PD_REGISTRY_STATE": str(state / "state"), "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    address = subprocess.run(["bash", str(IMAGES_DIR / "start-registry.sh")], env=env, check=True, capture_output=True, text=True).stdout.strip()
    try:
        yield address
    finally:
        subprocess.run(["bash", str(IMAGES_DIR / "stop-registry.sh")], env=env, check=False, capture_output=True)


@pytest.fixture
def containers(docker_client) -> Iterator[Callable[..., object]]:  # type: ignore[no-untyped-def]
    """Run containers that are always removed after the test."""
    started: list[object] = []

    def run(image: str, **kwargs: object) -> object:
        container = docker_client.containers.run(image, detach=True, **kwargs)
        started.append(container)
        return container

    yield run
    for container in started:
        try:
            container.remove(force=True)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - already gone
            pass


def wait_for(check: Callable[[], object], *, timeout: float = 60.0, what: str = "condition") -> object:
    """Poll ``check`` until it returns a truthy value (no fixed sleeps); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {last!r}")


def remove_project(docker_client, name: str, env: str = "dev", *, volumes: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Remove everything a test deployed for project ``name``: containers (by label and by name,
    for leftovers of killed deploys), the network, data volumes and the images it built (their
    shared layers stay cached: see :func:`remove_built_images`)."""
    from projectdeployer.core.runtime import LABEL_PROJECT

    for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={name}"}):
        container.remove(force=True, v=True)
    for container in docker_client.containers.list(all=True, filters={"name": f"{name}_{env}_"}):
        container.remove(force=True)
    for network in docker_client.networks.list(names=[f"{name}_{env}_network"]):
        network.remove()
    if volumes:
        for volume in docker_client.volumes.list(filters={"name": f"{name}_{env}_"}):
            volume.remove(force=True)
    remove_built_images(docker_client, name)


def remove_built_images(docker_client, name: str) -> None:  # type: ignore[no-untyped-def]
    """Remove the images project ``name`` built, keeping the build cache the next build reuses.

    The engine's classic builder caches each step as an untagged parent image. Removing a tag
    the default way prunes those parents, so the next test's build of the same Dockerfile ran
    every step again (pip and npm installs, apt-get): most of the time of the build tests and a
    good part of every deploy test. So the tags go with ``noprune``, and then only the images
    labelled with this project (the last label steps, the only layers that name it), never the
    steps before them, which other projects share."""
    from projectdeployer.core.runtime import LABEL_PROJECT

    for image in docker_client.images.list(filters={"label": f"{LABEL_PROJECT}={name}"}):
        for tag in image.tags:
            try:
                docker_client.images.remove(tag, noprune=True)
            except Exception:  # noqa: BLE001 - still used by something else: leave it
                pass
    for image in docker_client.images.list(all=True, filters={"label": f"{LABEL_PROJECT}={name}"}):
        if not image.tags:
            try:
                docker_client.images.remove(image.id, noprune=True)
            except Exception:  # noqa: BLE001 - a parent of an image still tagged, or still used: leave it
                pass
