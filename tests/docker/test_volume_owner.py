"""A stateful service's data volume at a path its image lacks: Docker creates it root-owned, and
``ContainerParts.volume_owner`` makes the deploy hand it to the image's user before the start
(what the OpenSearch snapshots volume needs). Without the owner the directory stays root's."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from projectdeployer import ProjectDeployer
from projectdeployer.core.containers import SECRETS_MOUNT, ContainerParts
from projectdeployer.hookspecs import hookimpl
from projectdeployer.plugins import load_plugins, pm
from projectdeployer.secrets.resolver import ensure_password
from tests.docker.conftest import remove_project

pytestmark = pytest.mark.docker


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ExtraVolume:
    """Redis with a second volume at ``/pd-extra`` (not in the image), owned as told."""

    def __init__(self, owner: str | None) -> None:
        self.owner = owner

    @hookimpl
    def container_parts(self, service, project, env):  # type: ignore[no-untyped-def]
        if service.type != "redis":
            return None
        password = ensure_password(project.name, env, service.name)
        return ContainerParts(
            command=("redis-server", f"{SECRETS_MOUNT}/redis.conf"),
            secret_files={"redis.conf": f"requirepass {password}\ndir /data\n"},
            data_volumes={"data": "/data", "extra": "/pd-extra"},
            secret_owner="redis",
            volume_owner=self.owner,
        )


@pytest.mark.parametrize("owner", ["redis", None])
def test_volume_owner_gets_the_new_volume(owner: str | None, tmp_path: Path, bed: dict[str, str], docker_client) -> None:  # type: ignore[no-untyped-def]
    name = f"vol{os.getpid() % 10000}{int(time.time() * 1000) % 100000}"
    path = tmp_path / "vol.toml"
    path.write_text(
        f'[project]\nname = "{name}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in bed.items())
        + f'\n[environments.dev]\nprovider = "local"\nhttp_port = {_free_port()}\nhttps_port = {_free_port()}\n'
        + '\n[services.cache]\ntype = "redis"\nbackup_config = { enabled = false }\n'
    )
    plugin = ExtraVolume(owner)
    load_plugins()  # the built-ins first: the plugin registered last is asked first (firstresult)
    pm.register(plugin, name=f"extra-{name}")
    try:
        ProjectDeployer(str(path), path=path).deploy(env="dev", log=lambda line: None)
        container = docker_client.containers.get(f"{name}_dev_cache")
        code, out = container.exec_run(["stat", "-c", "%U", "/pd-extra"])
        assert code == 0, out.decode()
        assert out.decode().strip() == (owner or "root")
        assert not [c for c in docker_client.containers.list(all=True) if c.name.endswith("_init") and c.name.startswith(name)]
    finally:
        pm.unregister(name=f"extra-{name}")
        remove_project(docker_client, name)
