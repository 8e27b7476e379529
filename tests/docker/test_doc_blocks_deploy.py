"""The doc blocks marked ``<!-- doc-test: docker ... -->``: run verbatim on the real engine.

The rules are tests/unit/test_doc_blocks.py's (a fresh directory per block, ``projectdeployer``
and ``python`` from this venv first on PATH, exit code 0 and no traceback); only what the block
needs first differs, named by ``setup=``:

``myapp-prod``
    the README's blocks name the project ``myapp`` and the environment ``prod``, so that is what
    is deployed, under a temporary ``$PROJECTDEPLOYER_HOME`` shared by the blocks of this module:
    one PostgreSQL service (the bed's image, the local provider, free HTTP ports) and one backup
    of it, taken through the CLI, so that listing, pulling and restoring "latest" have something
    to work on. It is deliberately small: one database costs seconds, and what a full stack adds
    (toggles under load, many servers, Redis backups) is proven by test_deploy.py, test_fleet.py
    and test_backups.py. ``myapp`` is a fixed name on a shared engine, so the module holds a
    lock file while it owns those containers.
``myapp-staging``
    ``myapp``/``staging`` deployed the same way (one PostgreSQL service and one backup), in a home
    of its own and for one block only: the README's ``destroy`` block takes it down for real.
    Its own lock file guards the fixed name; it never touches ``myapp``/``prod``.
"""

from __future__ import annotations

import fcntl
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.doc_blocks import DOCKER_SETUPS, Block, all_blocks, block_env, kind, prepare, run_block

pytestmark = pytest.mark.docker

BLOCKS = [b for b in all_blocks() if b.docker]
PROJECT, ENV = "myapp", "prod"
LOCK = Path(tempfile.gettempdir()) / "projectdeployer-doc-blocks-myapp.lock"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(env: dict[str, str], cwd: Path, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run([str(Path(sys.executable).with_name("projectdeployer")), "-p", PROJECT, *args], cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"projectdeployer {' '.join(args)}: exit code {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def myapp_prod(tmp_path_factory: pytest.TempPathFactory, bed: dict[str, str], docker_client) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """``myapp``/``prod`` deployed with one backup of its PostgreSQL; yields the root whose
    ``pd_home`` and ``home`` the blocks use."""
    root = tmp_path_factory.mktemp("myapp-prod")
    env = block_env(root)
    home = Path(env["PROJECTDEPLOYER_HOME"])
    (home / PROJECT).mkdir(parents=True)
    Path(env["HOME"]).mkdir()
    (home / PROJECT / "project.toml").write_text(
        f'[project]\nname = "{PROJECT}"\n\n[images]\n'
        + "".join(f'{key} = "{tag}"\n' for key, tag in bed.items())
        + f'\n[environments.{ENV}]\nprovider = "local"\nhttp_port = {_free_port()}\nhttps_port = {_free_port()}\n'
        + '\n[services.postgres]\ntype = "postgres"\n'
    )
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run of this module owns myapp_prod_* until it is done
        _remove_env(docker_client, ENV)  # leftovers of a run that was killed
        try:
            _cli(env, root, "deploy", "--env", ENV)
            _cli(env, root, "backups", "run", "postgres", "--env", ENV)
            yield root
        finally:
            _remove_env(docker_client, ENV)


STAGING_LOCK = Path(tempfile.gettempdir()) / "projectdeployer-doc-blocks-myapp-staging.lock"


def _remove_env(docker_client, env: str) -> None:  # type: ignore[no-untyped-def]
    """What ``myapp``/``env`` left on the engine, by its labels and names only (remove_project
    takes every environment of the project, and myapp/prod may be serving other blocks)."""
    from projectdeployer.core.runtime import LABEL_ENV, LABEL_PROJECT

    labels = {"label": [f"{LABEL_PROJECT}={PROJECT}", f"{LABEL_ENV}={env}"]}
    named = [c for c in docker_client.containers.list(all=True, filters={"name": f"{PROJECT}_{env}_"}) if c.name.startswith(f"{PROJECT}_{env}_")]
    for container in {c.id: c for c in docker_client.containers.list(all=True, filters=labels) + named}.values():
        container.remove(force=True)
    for network in docker_client.networks.list(names=[f"{PROJECT}_{env}_network"]):
        if network.name == f"{PROJECT}_{env}_network":
            network.remove()
    for volume in docker_client.volumes.list(filters={"name": f"{PROJECT}_{env}_"}):
        if volume.name.startswith(f"{PROJECT}_{env}_"):
            volume.remove(force=True)


@pytest.fixture
def myapp_staging(tmp_path_factory: pytest.TempPathFactory, bed: dict[str, str], docker_client) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """``myapp``/``staging`` deployed with one backup, for a block that destroys it."""
    root = tmp_path_factory.mktemp("myapp-staging")
    env = block_env(root)
    home = Path(env["PROJECTDEPLOYER_HOME"])
    (home / PROJECT).mkdir(parents=True)
    Path(env["HOME"]).mkdir()
    (home / PROJECT / "project.toml").write_text(
        f'[project]\nname = "{PROJECT}"\n\n[images]\n'
        + "".join(f'{key} = "{tag}"\n' for key, tag in bed.items())
        + f'\n[environments.staging]\nprovider = "local"\nhttp_port = {_free_port()}\nhttps_port = {_free_port()}\n'
        + '\n[services.postgres]\ntype = "postgres"\n'
    )
    with STAGING_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _remove_env(docker_client, "staging")
        try:
            _cli(env, root, "deploy", "--env", "staging")
            _cli(env, root, "backups", "run", "postgres", "--env", "staging")
            yield root
        finally:
            _remove_env(docker_client, "staging")


#: ``setup=`` name -> the fixture that provides it.
SETUPS = {"myapp-prod": "myapp_prod", "myapp-staging": "myapp_staging"}


def test_every_named_setup_is_here() -> None:
    assert set(SETUPS) == DOCKER_SETUPS


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_docker_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    assert kind(block) in ("shell", "python"), f"{block.id}: only shell and python blocks run"
    if block.skip_reason:
        pytest.skip(f"doc-test skip {block.id}: {block.skip_reason}")
    env = prepare(block, tmp_path)
    setup = block.marker.get("setup")
    if setup:
        # The setup's home, not the block's own: the block works on what the setup deployed.
        env = block_env(request.getfixturevalue(SETUPS[setup]))
    outcome = run_block(block, tmp_path, env, timeout=300)
    assert outcome.problem() is None, outcome.problem()
