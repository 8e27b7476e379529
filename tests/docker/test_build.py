"""Build real images for every service type on the local engine, run them, push and pull them.

Sources come from build contexts and from git repositories at a tag, including a private
repository served over smart HTTP behind a token that must never leak.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from projectdeployer import ProjectDeployer
from projectdeployer.core.build import BuildFailed
from tests.docker.conftest import remove_built_images, wait_for
from tests.support.git_http import GitHTTPServer

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKEN = "glpat-PrivateRepoToken-7f3c9a1e"


def _http_get(port: int, path: str = "/") -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
        return resp.status, resp.read()


_CREATED: list[str] = []


@pytest.fixture(autouse=True)
def _remove_built_images(docker_client) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Each test's images go when it ends (their layers stay cached for the next build)."""
    yield
    while _CREATED:
        remove_built_images(docker_client, _CREATED.pop())


def _project(tmp_path: Path, bed: dict[str, str], name: str, **settings: str) -> ProjectDeployer:
    # A name of its own per run: an image left by an earlier run on this engine under the same
    # tag and inputs would be reused, and the build under test would never run.
    name = f"{name}{uuid.uuid4().hex[:6]}"
    _CREATED.append(name)
    project = ProjectDeployer.create(name, path=tmp_path / f"{name}.toml", **settings)
    text = project.path.read_text()
    for key, image in bed.items():
        text = text.replace(f'{key} = "', f'{key} = "{image}" # was "', 1)
    project.path.write_text(text)
    return project.reload()


def _host_port(container: object, port: str) -> int:
    container.reload()  # type: ignore[attr-defined]
    return int(container.attrs["NetworkSettings"]["Ports"][port][0]["HostPort"])  # type: ignore[attr-defined]


def _serves(container: object, port: str, expect: bytes) -> bytes:
    host_port = _host_port(container, port)
    status, body = wait_for(lambda: _http_get(host_port), what=f"HTTP on {port}")  # type: ignore[misc]
    assert status == 200
    assert expect in body
    return body


def test_every_service_type_builds_and_runs_from_a_build_context(tmp_path: Path, bed: dict[str, str], containers) -> None:  # type: ignore[no-untyped-def]
    project = _project(tmp_path, bed, "ctx")
    project.add_python_service("api", build_context=str(EXAMPLES / "python-api"), command="python app.py", port=8000)
    project.add_nodejs_service("node", build_context=str(EXAMPLES / "node-api"), command="node server.js", port=3000)
    project.add_react_service("web", build_context=str(EXAMPLES / "spa"))
    project.add_python_service("worker", build_context=str(EXAMPLES / "worker"), command="python worker.py", env_vars={"JOBS": "2"})
    project.add_service("custom", build_context=str(EXAMPLES / "worker"), dockerfile_content={"1": f"FROM {bed['python']}", "2": "COPY worker.py /w.py", "3": "CMD ['python', '/w.py']"})
    lines: list[str] = []
    built = project.build(env="dev", log=lines.append)
    assert set(built) == {"api", "node", "web", "worker", "custom"}
    assert any("Step" in line for line in lines), "build output was not streamed"

    api = containers(built["api"].tag, ports={"8000/tcp": ("127.0.0.1", None)})
    body = json.loads(_serves(api, "8000/tcp", b"python-api"))
    assert body["itsdangerous"] == "itsdangerous"  # installed from requirements.txt
    assert api.exec_run("id -u").output.strip() == b"10001"  # non-root

    node = containers(built["node"].tag, ports={"3000/tcp": ("127.0.0.1", None)})
    _serves(node, "3000/tcp", b"node-api")

    web = containers(built["web"].tag, ports={"80/tcp": ("127.0.0.1", None)})
    index = _serves(web, "80/tcp", b"ProjectDeployer example app")
    port = _host_port(web, "80/tcp")
    asset = next(part for part in index.decode().split('"') if part.startswith("/static/main.") and part.endswith(".js"))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{asset}", timeout=3) as resp:
        assert "immutable" in resp.headers["Cache-Control"]
    assert _http_get(port, "/some/client/route")[1] == index  # SPA fallback

    for name, expected in (("worker", b"processed job 2/2"), ("custom", b"worker done")):
        env = {"JOBS": "2"} if name == "worker" else {}
        job = containers(built[name].tag, environment=env)
        assert job.wait(timeout=60)["StatusCode"] == 0
        assert expected in job.logs()


def _git_repo(tmp_path: Path, source: Path) -> Path:
    """A bare repo whose tag v1 holds ``source`` with APP_VERSION default 'v1', and main 'v2'."""
    work = tmp_path / "src"
    shutil.copytree(source, work)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)

    app = work / "app.py"
    app.write_text(app.read_text().replace('os.environ.get("APP_VERSION", "1")', 'os.environ.get("APP_VERSION", "v1")'))
    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-qm", "v1")
    git("tag", "v1")
    app.write_text(app.read_text().replace('"APP_VERSION", "v1"', '"APP_VERSION", "v2"'))
    git("commit", "-qam", "v2")
    bare = tmp_path / "repos" / "api.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, capture_output=True)
    return bare


def test_git_repo_at_a_tag_builds_that_tag(tmp_path: Path, bed: dict[str, str], containers) -> None:  # type: ignore[no-untyped-def]
    bare = _git_repo(tmp_path, EXAMPLES / "python-api")
    project = _project(tmp_path, bed, "gitproj")
    project.add_python_service("api", git_repo=f"file://{bare}@v1", command="python app.py", port=8000)
    built = project.build(env="prod", log=lambda line: None)
    assert len(built["api"].commit or "") == 40
    api = containers(built["api"].tag, ports={"8000/tcp": ("127.0.0.1", None)})
    assert json.loads(_serves(api, "8000/tcp", b"python-api"))["version"] == "v1"
    # Another environment follows another ref of the same repository.
    text = project.path.read_text() + '\n[environments.staging.services.api]\ngit_repo = "file://' + str(bare) + '@main"\n'
    project.path.write_text(text)
    staging = project.reload().build(env="staging", log=lambda line: None)
    api2 = containers(staging["api"].tag, ports={"8000/tcp": ("127.0.0.1", None)})
    assert json.loads(_serves(api2, "8000/tcp", b"python-api"))["version"] == "v2"


def _tagged_repo(tmp_path: Path, source: Path, name: str) -> Path:
    """A bare repo of ``source`` with tag v1, then one more commit on main that breaks it, so
    only a build of the tag works."""
    work = tmp_path / "work" / name
    shutil.copytree(source, work)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-qm", "v1")
    git("tag", "v1")
    for path in work.iterdir():
        if path.is_file() and path.suffix in (".py", ".js"):
            path.write_text("raise SystemExit('main is broken')\n" if path.suffix == ".py" else "process.exit(7);\n")
    git("commit", "-qam", "break main")
    bare = tmp_path / "repos" / f"{name}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, capture_output=True)
    return bare


def test_every_service_type_builds_and_runs_from_a_git_tag(tmp_path: Path, bed: dict[str, str], containers) -> None:  # type: ignore[no-untyped-def]
    repos = {name: f"file://{_tagged_repo(tmp_path, EXAMPLES / name, name)}@v1" for name in ("python-api", "node-api", "spa", "worker")}
    project = _project(tmp_path, bed, "fromgit")
    project.add_python_service("api", git_repo=repos["python-api"], command="python app.py", port=8000)
    project.add_nodejs_service("node", git_repo=repos["node-api"], command="node server.js", port=3000)
    project.add_react_service("web", git_repo=repos["spa"])
    project.add_python_service("worker", git_repo=repos["worker"], command="python worker.py")
    built = project.build(env="prod", log=lambda line: None)
    assert all(len(b.commit or "") == 40 for b in built.values())
    _serves(containers(built["api"].tag, ports={"8000/tcp": ("127.0.0.1", None)}), "8000/tcp", b"python-api")
    _serves(containers(built["node"].tag, ports={"3000/tcp": ("127.0.0.1", None)}), "3000/tcp", b"node-api")
    _serves(containers(built["web"].tag, ports={"80/tcp": ("127.0.0.1", None)}), "80/tcp", b"ProjectDeployer example app")
    job = containers(built["worker"].tag)
    assert job.wait(timeout=60)["StatusCode"] == 0
    assert b"worker done" in job.logs()


def test_private_repo_token_reaches_no_config_image_or_log(tmp_path: Path, bed: dict[str, str], docker_client, capfd) -> None:  # type: ignore[no-untyped-def]
    bare = _git_repo(tmp_path, EXAMPLES / "python-api")
    project = _project(tmp_path, bed, "private")
    lines: list[str] = []
    with GitHTTPServer(bare.parent, TOKEN) as server:
        project.add_python_service("api", git_repo=server.url("api.git") + "@v1", git_token=TOKEN, command="python app.py", port=8000)
        built = project.build(env="prod", log=lines.append)
        assert any(auth for _, auth in server.requests), "the server never saw credentials"
    assert TOKEN not in project.path.read_text()
    checkout = Path(os.environ["PROJECTDEPLOYER_HOME"]) / "git_checkouts" / project.name / "prod" / "api"
    for path in (checkout / ".git").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), f"token in {path}"
    image = docker_client.images.get(built["api"].tag)
    history = json.dumps(image.history()) + json.dumps(image.attrs)
    assert TOKEN not in history
    saved = io.BytesIO(b"".join(image.save()))
    with tarfile.open(fileobj=saved) as outer:
        for member in outer.getmembers():
            if member.isfile():
                data = outer.extractfile(member).read()  # type: ignore[union-attr]
                assert TOKEN.encode() not in data, f"token in image member {member.name}"
                if member.name.endswith(".tar"):
                    with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                        for inner in layer.getmembers():
                            if inner.isfile():
                                assert TOKEN.encode() not in layer.extractfile(inner).read(), f"token in layer file {inner.name}"  # type: ignore[union-attr]
    captured = capfd.readouterr()
    assert TOKEN not in "\n".join(lines) + captured.out + captured.err


def test_push_then_pull_by_digest(tmp_path: Path, bed: dict[str, str], registry: str, docker_client) -> None:  # type: ignore[no-untyped-def]
    project = _project(tmp_path, bed, "pushed", registry=registry)
    project.add_python_service("worker", build_context=str(EXAMPLES / "worker"), command="python worker.py")
    built = project.build(env="dev", push=True, log=lambda line: None)["worker"]
    assert built.tag == f"{registry}/{project.name}-worker:latest"
    assert built.digest and built.digest.startswith(f"{registry}/{project.name}-worker@sha256:")
    image_id = built.image_id
    docker_client.images.remove(built.tag)
    pulled = docker_client.images.pull(built.digest)
    assert pulled.id == image_id
    docker_client.images.remove(built.digest)


def test_failed_build_names_the_service_and_the_step(tmp_path: Path, bed: dict[str, str]) -> None:
    project = _project(tmp_path, bed, "broken")
    project.add_service("bad", build_context=str(EXAMPLES / "worker"), dockerfile_content={"1": f"FROM {bed['python']}", "2": "RUN echo about to fail && exit 3"})
    with pytest.raises(BuildFailed) as failure:
        project.build(env="dev", log=lambda line: None)
    message = str(failure.value)
    assert message.startswith("bad: build failed at Step 2/")
    assert "RUN echo about to fail && exit 3" in message
    assert "about to fail" in message.split("\n", 1)[1]  # the step's own output
    assert "returned a non-zero code: 3" in message


def test_no_change_rebuild_reuses_the_image_and_a_change_rebuilds(tmp_path: Path, bed: dict[str, str]) -> None:
    source = tmp_path / "worker"
    shutil.copytree(EXAMPLES / "worker", source)
    project = _project(tmp_path, bed, "cache")
    project.add_python_service("worker", build_context=str(source), command="python worker.py")
    first = project.build(env="dev", log=lambda line: None)["worker"]
    again = project.build(env="dev", log=lambda line: None)["worker"]
    assert again.cached and again.image_id == first.image_id
    os.utime(source / "worker.py")  # a touch is not a change
    assert project.build(env="dev", log=lambda line: None)["worker"].cached
    (source / "worker.py").write_text((source / "worker.py").read_text() + "\n# changed\n")
    changed = project.build(env="dev", log=lambda line: None)["worker"]
    assert not changed.cached and changed.image_id != first.image_id
