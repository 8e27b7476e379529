"""Render safety: every value that reaches a generated file is checked against what that place accepts.

Values of the project file end up in Dockerfiles (base images, versions, requirements files,
Debian package names, ``build_dir``, ``build_command``, ``command``, ``dockerfile_content``), in the nginx sidecar's
configuration (domains), in container specs (environment, command, labels, mounts), in build
arguments, in image tags (``[project] registry``) and in health probes (``health_path``). The
renderers keep their own guards, but a value they would refuse must be refused here first, at
``validate``, naming its key (issue 11, item 2).

Each check yields ``(key path, message)`` like :mod:`.validation`, whose ``check_service`` and
``check_project`` call :func:`check_service_rendering` and :func:`check_project_rendering`.
Pure: no disk, no network, no jinja2 (so the CLI starts fast). The patterns and the value
checks the plugins share are :mod:`projectdeployer.core.safety` (documented in
docs/project-file.md, "Bounds and patterns").
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence

from ..core.errors import shown
from ..core.model import BuildSpec, DatabaseSpec, GenericSpec, Project, ServiceSpec
from ..core.safety import (
    BUILD_ARG_RE,
    HEALTH_PATH_MAX,
    HEALTH_PATH_RE,
    HOSTNAME_RE,
    IMAGE_TAG_RE,
    MAX_DEBIAN_PACKAGES,
    NODE_VERSION_RE,
    PYTHON_VERSION_RE,
    REGISTRY_RE,
    command_problem,
    controls_problem,
    debian_package_problem,
    image_ref_problem,
    image_template_problem,
    relative_path_problem,
)

Problem = tuple[Sequence[str | int], str]

# --- the checks --------------------------------------------------------------------------------


def check_project_rendering(project: Project) -> Iterator[Problem]:
    """``[project]`` values that reach image tags and commands (``[images]`` entries are checked
    by validation's own loop, with :func:`image_template_problem`)."""
    s = project.settings
    if s.registry is not None:
        why = _registry_problem(s.registry)
        if why:
            yield ("project", "registry"), why
    why = _server_address_problem(s.default_server_ip)
    if why:
        yield ("project", "default_server_ip"), why
    if s.description is not None:
        # Not rendered into any generated file; printed by commands, so no control characters
        # (a terminal escape would reach the user's terminal).
        why = controls_problem(s.description, allow="\t\n")
        if why:
            yield ("project", "description"), why


def _registry_problem(value: str) -> str | None:
    match = REGISTRY_RE.match(value)
    host = match["host"] if match else ""
    if not match or not ("." in host or ":" in host or host == "localhost"):
        # Without a dot, a port or "localhost", Docker reads the first component as a Docker
        # Hub user, and the image would go to Docker Hub.
        return f"{shown(value)} is not a registry host (expected host[:port], e.g. registry.example.com:5000 or localhost:5000)"
    if ":" in host and not host.startswith("["):
        port = int(host.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            return f"{shown(value)}: port {port} is not between 1 and 65535"
    return None


def _server_address_problem(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if HOSTNAME_RE.match(value):
        return None
    return f"{shown(value)} is neither an IP address nor a host name (expected e.g. 203.0.113.10 or server.example.com)"


def check_service_rendering(spec: ServiceSpec, images: Mapping[str, str]) -> Iterator[Problem]:
    """Values of one service that reach a generated file; paths relative to the service's table.

    ``images`` are the project's base images with the defaults filled in: a version is checked
    in the image reference it makes.
    """
    if spec.command is not None:
        why = command_problem(spec.command)
        if why:
            yield ("command",), why
    # (a relative path is reported by check_service)
    if spec.health_path.startswith("/") and (len(spec.health_path) > HEALTH_PATH_MAX or not HEALTH_PATH_RE.match(spec.health_path)):
        yield (
            ("health_path",),
            (f"{shown(spec.health_path)} is not a URL path (expected e.g. /healthz or /health?full=1: letters, digits, - . _ ~ ! $ & ( ) * + , = : @ / ? and %XX, at most {HEALTH_PATH_MAX})"),
        )
    for key, value in spec.env_vars.items():
        if "\x00" in value:
            yield ("env_vars", key), f"{shown(value)} contains a NUL character, which no environment variable can hold"
    for host_path, target in spec.volumes.items():
        # The host side is checked with its root by pathcheck.host_volume_problem.
        why = controls_problem(target)
        if why:
            yield ("volumes", host_path), why
    if isinstance(spec, BuildSpec):
        yield from _check_build_rendering(spec, images)
    if isinstance(spec, DatabaseSpec):
        yield from _check_database_rendering(spec, images)


def _check_build_rendering(spec: BuildSpec, images: Mapping[str, str]) -> Iterator[Problem]:
    for key, value in spec.build_args.items():
        if not BUILD_ARG_RE.match(key):
            yield ("build_args", key), "is not a valid build argument name (letters, digits and _, not starting with a digit)"
        why = controls_problem(value, allow="\t")
        if why:
            yield ("build_args", key), why
    if spec.dockerfile_content is not None:
        yield from _check_dockerfile_content(spec.dockerfile_content)
    if isinstance(spec, GenericSpec) and spec.image is not None:
        why = image_ref_problem(spec.image)
        if why:
            yield ("image",), why
    # Type-specific keys, found by name so that plugin types with the same keys are covered.
    yield from _check_python_keys(spec, images)
    yield from _check_node_keys(spec, images)
    for key in ("system_packages", "build_packages"):
        yield from _check_debian_packages(spec, key)


def _check_debian_packages(spec: BuildSpec, key: str) -> Iterator[Problem]:
    """``system_packages`` / ``build_packages``: names that go into an ``apt-get install`` line."""
    names = getattr(spec, key, None)
    if not isinstance(names, list):
        return
    if len(names) > MAX_DEBIAN_PACKAGES:
        yield (key,), f"{len(names)} packages: at most {MAX_DEBIAN_PACKAGES}"
        return
    for i, name in enumerate(names):
        why = debian_package_problem(name) if isinstance(name, str) else None
        if why:
            yield (key, i), why


def _check_dockerfile_content(content: Mapping[str, str]) -> Iterator[Problem]:
    for key, line in content.items():
        why = controls_problem(line, allow="\t")
        if why:
            yield ("dockerfile_content", key), f"{why}; each key holds one Dockerfile line"
    if content and not any(line.strip() for line in content.values()):
        yield ("dockerfile_content",), "has only empty lines (give at least a FROM line)"


def _base_image_problem(images: Mapping[str, str], key: str, version: str) -> str | None:
    """Why ``[images] key`` with ``version`` filled in is not an image reference, or ``None``."""
    template = images.get(key)
    if template is None or image_template_problem(template):
        return None  # the [images] check reports missing, unknown and invalid entries
    return image_ref_problem(template.replace("{version}", version))


def _check_version_key(spec: BuildSpec, images: Mapping[str, str], key: str, pattern: re.Pattern[str], image_key: str, expected: str) -> Iterator[Problem]:
    """A language version (``python_version``, ``node_version``): its pattern, then the image
    reference it makes in its ``[images]`` entry."""
    version = getattr(spec, key, None)
    if not isinstance(version, str):
        return
    if not pattern.match(version):
        yield (key,), f"{shown(version)} is not a {expected}"
    elif _base_image_problem(images, image_key, version):
        yield (key,), f"{shown(version)} makes [images] {image_key} {shown(images[image_key])} an invalid image reference"


def _check_python_keys(spec: BuildSpec, images: Mapping[str, str]) -> Iterator[Problem]:
    yield from _check_version_key(spec, images, "python_version", PYTHON_VERSION_RE, "python", "Python version (expected e.g. 3.12 or 3.12.4)")
    files = getattr(spec, "requirements_files", None)
    if isinstance(files, list):
        for i, name in enumerate(files):
            why = relative_path_problem(name) if isinstance(name, str) else None
            if why:
                yield ("requirements_files", i), why


def _check_node_keys(spec: BuildSpec, images: Mapping[str, str]) -> Iterator[Problem]:
    yield from _check_version_key(spec, images, "node_version", NODE_VERSION_RE, "node", "Node.js version (expected e.g. 20 or 20.11.1)")
    build_command = getattr(spec, "build_command", None)
    if isinstance(build_command, str):
        why = command_problem(build_command, "build command")
        if why:
            yield ("build_command",), why
    build_dir = getattr(spec, "build_dir", None)
    if isinstance(build_dir, str):
        why = relative_path_problem(build_dir)
        if why:
            yield ("build_dir",), why
    nginx_config = getattr(spec, "nginx_config", None)
    if isinstance(nginx_config, str):
        if not nginx_config.strip():
            yield ("nginx_config",), "is empty (give a complete server { ... } block, or remove the key)"
        else:
            why = controls_problem(nginx_config, allow="\t\n\r")
            if why:
                yield ("nginx_config",), why


def _check_database_rendering(spec: DatabaseSpec, images: Mapping[str, str]) -> Iterator[Problem]:
    if not IMAGE_TAG_RE.match(spec.version):
        yield ("version",), f"{shown(spec.version)} is not an image version (expected a tag such as 15, 7-alpine or 2.11.1)"
    elif _base_image_problem(images, spec.type, spec.version):
        yield ("version",), f"{shown(spec.version)} makes [images] {spec.type} {shown(images[spec.type])} an invalid image reference"


__all__ = ["check_project_rendering", "check_service_rendering"]
