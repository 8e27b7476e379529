"""Real apps build as their authors wrote them (issue 12, item 3), on the local engine: a Poetry
app with a lock file and a ``psycopg2`` built from source deploys from the generated Dockerfile
and answers HTTP; a uv app installs exactly its lock; a Dockerfile of the user's own that says
``FROM python:3.11`` builds from the bed's image through ``[images]``, and the log says so.

Poetry and uv come from PyPI and the Debian packages from Debian's mirror during the build (the
lock files under tests/docker/apps/ were made once with Poetry 2.5.1 and uv 0.13.10).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from projectdeployer import ProjectDeployer
from projectdeployer.core.runtime import LABEL_PROJECT, LABEL_SERVICE
from tests.docker.conftest import remove_project, wait_for

pytestmark = pytest.mark.docker

APPS = Path(__file__).resolve().parent / "apps"
DOMAIN = "api.poetry.localhost"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, host: str | None = None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host} if host else {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _project_file(tmp_path: Path, bed: dict[str, str], prefix: str, services: str, *, http_port: int | None = None) -> tuple[str, Path]:
    # A name of its own per run: an image left by another run under the same tag and inputs
    # would be reused, and the build under test would never run.
    name = f"{prefix}{os.getpid() % 10000}{int(time.time() * 1000) % 100000}"
    env = f'\n[environments.dev]\nprovider = "local"\nhttp_port = {http_port}\nhttps_port = {_free_port()}\n' if http_port else ""
    path = tmp_path / f"{prefix}.toml"
    path.write_text(f'[project]\nname = "{name}"\n\n[images]\n' + "".join(f'{k} = "{v}"\n' for k, v in bed.items()) + env + services)
    return name, path


def _lock_version(lock: Path, package: str) -> str:
    text = lock.read_text()
    block = text[text.index(f'name = "{package}"\n') :]
    return block.split('version = "', 1)[1].split('"', 1)[0]


def test_a_poetry_app_with_a_psycopg2_source_build_deploys_and_answers(tmp_path: Path, bed: dict[str, str], docker_client) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "api"
    shutil.copytree(APPS / "poetry-psycopg", source)
    http_port = _free_port()
    # The bed's python is Debian's python3, so the build needs python3-dev for Python.h (the
    # official image ships the headers); gcc and libc6-dev compile, libpq-dev brings pg_config.
    name, path = _project_file(
        tmp_path,
        bed,
        "poetry",
        f'\n[services.api]\ntype = "python"\nbuild_context = "{source}"\ncommand = "python app.py"\nport = 8000\ndomain = "{DOMAIN}"\n'
        'system_packages = ["libpq5"]\nbuild_packages = ["gcc", "libc6-dev", "libpq-dev", "python3-dev"]\n',
        http_port=http_port,
    )
    project = ProjectDeployer(str(path), path=path)
    lines: list[str] = []
    try:
        project.deploy(env="dev", log=lines.append)
        # The build log says which file the dependencies came from, and where the packages went.
        assert "api: python: dependencies from poetry.lock with Poetry 2.5.1 (poetry install --only main --no-root)" in lines
        assert "api: Debian build_packages (build stage only): gcc libc6-dev libpq-dev python3-dev" in lines
        assert "api: Debian system_packages (in the image): libpq5" in lines

        # Through the sidecar: psycopg2 as poetry.lock pins it, built from source, loaded libpq at start-up.
        answer = _get(http_port, DOMAIN)
        assert answer["app"] == "poetry-psycopg"
        assert answer["psycopg2"].split()[0] == _lock_version(source / "poetry.lock", "psycopg2")
        assert answer["libpq"] >= 150000  # Debian bookworm's libpq5 (PostgreSQL 15)
        assert answer["psycopg2_file"].startswith("/venv/lib/")

        (api,) = docker_client.containers.list(filters={"label": [f"{LABEL_PROJECT}={name}", f"{LABEL_SERVICE}=api"]})
        assert api.exec_run("id -u").output.strip() == b"10001"

        def absent(command: str) -> bool:
            return api.exec_run(["sh", "-c", command]).exit_code != 0

        # The run-time library is in the image; the build tooling, Poetry and dev dependencies are not.
        assert not absent("dpkg -s libpq5")
        assert absent("dpkg -s libpq-dev") and absent("command -v gcc") and absent("command -v pg_config")
        assert absent("test -e /opt/poetry") and absent("command -v poetry")
        assert absent("python -c 'import iniconfig'")  # a dev-group dependency (--only main)
        assert not absent("python -c 'import psycopg2'")
    finally:
        remove_project(docker_client, name)


@pytest.fixture
def built_images(docker_client):  # type: ignore[no-untyped-def]
    """Projects whose images the test built: removed when it ends (layers stay cached)."""
    names: list[str] = []
    yield names
    for name in names:
        remove_project(docker_client, name)


def test_a_uv_app_installs_exactly_its_lock(tmp_path: Path, bed: dict[str, str], built_images: list[str], containers) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "uv-app"
    shutil.copytree(APPS / "uv-app", source)
    name, path = _project_file(tmp_path, bed, "uvapp", f'\n[services.api]\ntype = "python"\nbuild_context = "{source}"\ncommand = "python app.py"\nport = 8000\n')
    built_images.append(name)
    lines: list[str] = []
    built = ProjectDeployer(str(path), path=path).build(env="dev", log=lines.append)["api"]
    assert "api: python: dependencies from uv.lock with uv 0.13.10 (uv sync --frozen --no-dev --no-install-project)" in lines

    app = containers(built.tag, ports={"8000/tcp": ("127.0.0.1", None)})
    app.reload()
    port = int(app.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"])
    answer = wait_for(lambda: _get(port), what="the uv app's answer")
    # The locked release (older than PyPI's newest, which a resolve would pick), no dev group.
    assert answer == {"app": "uv-app", "itsdangerous": _lock_version(source / "uv.lock", "itsdangerous"), "iniconfig": False}
    assert _lock_version(source / "uv.lock", "itsdangerous") == "2.1.2"


def test_a_user_dockerfile_from_python_builds_from_the_project_python_image(tmp_path: Path, bed: dict[str, str], built_images: list[str], containers, docker_client) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "own"
    shutil.copytree(APPS / "own-dockerfile", source)
    written = (source / "Dockerfile").read_text()
    assert "FROM python:3.11 AS base\n" in written  # as a user writes it for Docker Hub
    name, path = _project_file(tmp_path, bed, "ownfrom", f'\n[services.own]\ntype = "generic"\nbuild_context = "{source}"\nport = 8000\n')
    built_images.append(name)
    lines: list[str] = []
    built = ProjectDeployer(str(path), path=path).build(env="dev", log=lines.append)["own"]

    # No registry here: python:3.11 could not be pulled. The bed's image was used, and said so.
    assert f"own: FROM python:3.11 -> {bed['python']} ([images] python)" in lines
    assert any(line.endswith(f"FROM {bed['python']} AS base") for line in lines)  # the step Docker ran
    assert any(line.endswith("FROM base") for line in lines)  # a stage, left as written
    bed_layers = docker_client.images.get(bed["python"]).attrs["RootFS"]["Layers"]
    assert docker_client.images.get(built.tag).attrs["RootFS"]["Layers"][: len(bed_layers)] == bed_layers
    assert (source / "Dockerfile").read_text() == written  # the user's file is not touched

    app = containers(built.tag, ports={"8000/tcp": ("127.0.0.1", None)})
    app.reload()
    port = int(app.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"])
    answer = wait_for(lambda: _get(port), what="the app's answer")
    assert answer["app"] == "own-dockerfile" and answer["python"].startswith("3.11.")
