"""``[images]`` applied to a user's own Dockerfile (build/fromlines.py): FROM lines of an official
repository go to the project's repository, tag and digest kept, said in the build log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy
import pytest

from projectdeployer.build.builder import GENERATED_DOCKERFILE, ProjectBuilder
from projectdeployer.build.fromlines import FromRedirect, official_redirects, redirect_from_lines
from projectdeployer.core.registry import build_registry
from projectdeployer.plugins import load_plugins, make_plugin_manager
from projectdeployer.project.file import build_project

pytestmark = pytest.mark.unit

DEFAULTS = {"python": "python:{version}-slim", "node": "node:{version}-slim", "nginx": "nginx:alpine", "opensearch": "opensearchproject/opensearch:{version}"}
BED = {**DEFAULTS, "python": "pd-test/python:3.11", "node": "pd-test/node:18"}
MIRROR = {**DEFAULTS, "python": "mirror.example.com:5000/library/python:{version}-slim", "opensearch": "mirror.example.com/os/opensearch:{version}"}


def redirect(text: str, images: dict[str, str] = BED) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    result = redirect_from_lines(text, official_redirects(images, DEFAULTS))
    return result.text, result.changes, result.left


def test_only_keys_the_project_changed_redirect() -> None:
    assert official_redirects(DEFAULTS, DEFAULTS) == []
    assert official_redirects(BED, DEFAULTS) == [
        FromRedirect(key="node", official="library/node", repository="pd-test/node"),
        FromRedirect(key="python", official="library/python", repository="pd-test/python"),
    ]
    # Another tag of the official repository is not a redirect: the repository did not change.
    assert official_redirects({**DEFAULTS, "python": "docker.io/library/python:{version}-alpine"}, DEFAULTS) == []
    # A repository that depends on the version has no one place to send images to.
    assert official_redirects({**DEFAULTS, "python": "mirror.example.com/py{version}/python:x"}, DEFAULTS) == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("FROM python:3.11", "FROM pd-test/python:3.11"),
        ("FROM python", "FROM pd-test/python"),
        ("from python:3.11 as build", "from pd-test/python:3.11 as build"),
        ("FROM library/python:3.11", "FROM pd-test/python:3.11"),
        ("FROM docker.io/library/python:3.11", "FROM pd-test/python:3.11"),
        ("FROM index.docker.io/library/node:18-slim", "FROM pd-test/node:18-slim"),
        ("FROM --platform=linux/amd64 python:3.11 AS base", "FROM --platform=linux/amd64 pd-test/python:3.11 AS base"),
        ("FROM --platform=$BUILDPLATFORM node:18 AS assets", "FROM --platform=$BUILDPLATFORM pd-test/node:18 AS assets"),
        ("FROM python:3.11@sha256:" + "a" * 64, "FROM pd-test/python:3.11@sha256:" + "a" * 64),
        ("  FROM python:3.11", "  FROM pd-test/python:3.11"),
        # Not the official repository, or not redirected: as written.
        ("FROM pythonista:1", "FROM pythonista:1"),
        ("FROM myorg/python:3.11", "FROM myorg/python:3.11"),
        ("FROM ghcr.io/library/python:3.11", "FROM ghcr.io/library/python:3.11"),
        ("FROM nginx:alpine", "FROM nginx:alpine"),
        ("FROM scratch", "FROM scratch"),
        ("# FROM python:3.11", "# FROM python:3.11"),
        ("RUN echo FROM python:3.11", "RUN echo FROM python:3.11"),
    ],
)
def test_from_lines(line: str, expected: str) -> None:
    text, changes, _ = redirect(f"{line}\nRUN true\n")
    assert text == f"{expected}\nRUN true\n"
    assert len(changes) == (line != expected)


def test_tag_and_digest_are_kept_through_a_mirror() -> None:
    text, changes, _ = redirect("FROM python:3.12-bookworm\nFROM opensearchproject/opensearch:2.11.1\n", MIRROR)
    assert text == "FROM mirror.example.com:5000/library/python:3.12-bookworm\nFROM mirror.example.com/os/opensearch:2.11.1\n"
    assert changes == (
        "FROM python:3.12-bookworm -> mirror.example.com:5000/library/python:3.12-bookworm ([images] python)",
        "FROM opensearchproject/opensearch:2.11.1 -> mirror.example.com/os/opensearch:2.11.1 ([images] opensearch)",
    )


def test_stage_names_are_not_images() -> None:
    dockerfile = "FROM python:3.11 AS python\nRUN true\nFROM Python\nCOPY --from=python /a /a\nFROM node:18 AS build\nFROM build\n"
    text, changes, _ = redirect(dockerfile)
    assert text == "FROM pd-test/python:3.11 AS python\nRUN true\nFROM Python\nCOPY --from=python /a /a\nFROM pd-test/node:18 AS build\nFROM build\n"
    assert len(changes) == 2
    # A stage is known only after it is defined: before, "python" is still the image.
    text, _, _ = redirect("FROM python\nFROM alpine AS python\nFROM python\n")
    assert text == "FROM pd-test/python\nFROM alpine AS python\nFROM python\n"


def test_build_argument_froms_are_left_and_said() -> None:
    dockerfile = "ARG BASE=python:3.11\nFROM $BASE\nFROM python:${PY}\n"
    text, changes, left = redirect(dockerfile)
    assert text == dockerfile and changes == ()
    assert left == (
        "FROM $BASE: built from a build argument, left as written (redirect its ARG default yourself)",
        "FROM python:${PY}: built from a build argument, left as written (redirect its ARG default yourself)",
    )


def test_line_endings_and_everything_else_are_kept() -> None:
    dockerfile = '# syntax comment\r\nFROM python:3.11\r\nRUN pip install x  \r\n\nCMD ["python"]'
    text, _, _ = redirect(dockerfile)
    assert text == dockerfile.replace("FROM python:3.11", "FROM pd-test/python:3.11")


def test_no_redirects_change_nothing() -> None:
    assert redirect("FROM python:3.11\n", DEFAULTS) == ("FROM python:3.11\n", (), ())


# --- on the build path (core/build.py) ----------------------------------------------------------


@pytest.fixture
def manager() -> pluggy.PluginManager:
    return load_plugins(make_plugin_manager(), env={})


def _builder(manager: pluggy.PluginManager, tmp_path: Path, service: dict[str, Any], images: dict[str, str]) -> ProjectBuilder:
    project = build_project(
        {"project": {"name": "shop"}, "images": images, "services": {"own": {"build_context": "src", **service}}},
        source=str(tmp_path / "shop.toml"),
        registry=build_registry(manager),
    )
    return ProjectBuilder(project, "dev", manager, registry=build_registry(manager), log=lambda line: None)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    (path / "Dockerfile").write_text('FROM python:3.11 AS base\nFROM base\nCMD ["python"]\n')
    return path


def test_a_user_dockerfile_is_redirected_as_a_generated_file(manager: pluggy.PluginManager, tmp_path: Path, src: Path) -> None:
    before = (src / "Dockerfile").read_text()
    builder = _builder(manager, tmp_path, {"type": "generic"}, {"python": "pd-test/python:3.11"})
    chosen = builder._dockerfile(builder.project.services["own"], src)
    assert chosen.path == GENERATED_DOCKERFILE
    assert chosen.extra == {GENERATED_DOCKERFILE: 'FROM pd-test/python:3.11 AS base\nFROM base\nCMD ["python"]\n'}
    assert chosen.notes == ("FROM python:3.11 -> pd-test/python:3.11 ([images] python)",)
    assert (src / "Dockerfile").read_text() == before and sorted(p.name for p in src.iterdir()) == ["Dockerfile"]


def test_dockerfile_key_and_dockerfile_content_are_redirected_too(manager: pluggy.PluginManager, tmp_path: Path, src: Path) -> None:
    (src / "docker").mkdir()
    (src / "docker" / "api.Dockerfile").write_text("FROM node:18\n")
    images = {"python": "pd-test/python:3.11", "node": "pd-test/node:18"}
    builder = _builder(manager, tmp_path, {"type": "python", "dockerfile": "docker/api.Dockerfile"}, images)
    chosen = builder._dockerfile(builder.project.services["own"], src)
    assert chosen.extra == {GENERATED_DOCKERFILE: "FROM pd-test/node:18\n"}
    builder = _builder(manager, tmp_path, {"type": "generic", "dockerfile_content": {"1": "FROM python:3.11-slim", "2": "CMD ['python']"}}, images)
    chosen = builder._dockerfile(builder.project.services["own"], src)
    assert chosen.extra[GENERATED_DOCKERFILE].startswith("FROM pd-test/python:3.11-slim\n")


def test_default_images_leave_a_user_dockerfile_as_it_is(manager: pluggy.PluginManager, tmp_path: Path, src: Path) -> None:
    builder = _builder(manager, tmp_path, {"type": "generic"}, {})
    chosen = builder._dockerfile(builder.project.services["own"], src)
    assert (chosen.path, chosen.extra, chosen.notes) == ("Dockerfile", {}, ())


def test_plan_says_the_redirect_too(manager: pluggy.PluginManager, tmp_path: Path, src: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from projectdeployer.default_plugins import docker_builder

    class Images:
        def get(self, ref: str) -> Any:
            raise LookupError(ref)

    monkeypatch.setattr(docker_builder, "docker_client", lambda: type("Client", (), {"images": Images()})())
    builder = _builder(manager, tmp_path, {"type": "generic"}, {"python": "pd-test/python:3.11"})
    check = builder.check("own")
    assert check.needed and check.reason.endswith("; FROM python:3.11 -> pd-test/python:3.11 ([images] python)")
