"""Render safety: every value that reaches a generated file is checked against what that place accepts.

Values of the project file end up in Dockerfiles (base images, versions, requirements files,
Debian package names, ``build_dir``, ``build_command``, ``command``, ``dockerfile_content``), in the nginx sidecar's
configuration (domains), in container specs (environment, command, labels, mounts), in build
arguments, in image tags (``[project] registry``) and in health probes (``health_path``). The
renderers keep their own guards, but a value they would refuse must be refused here first, at
``validate``, naming its key (issue 11, item 2).

Each check yields ``(key path, message)`` like :mod:`..project.validation`, whose ``check_service`` and
``check_project`` call :func:`check_service_rendering` and :func:`check_project_rendering`.
Pure: no disk, no network, no jinja2 (so the CLI starts fast).

The patterns are documented in docs/project-file.md, "Bounds and patterns".
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from pathlib import PurePosixPath

from .errors import shown
from .model import BuildSpec, DatabaseSpec, GenericSpec, Project, ServiceSpec

Problem = tuple[Sequence[str | int], str]

# --- patterns ----------------------------------------------------------------------------------

#: Python versions as image tags know them: ``3``, ``3.12``, ``3.12.4``, ``3.13.0rc1``, optionally
#: a variant suffix (``3.12-bookworm``) for ``[images] python = "python:{version}"``.
_VARIANT = r"(?:-[a-z0-9]+(?:[._-][a-z0-9]+)*)?"
PYTHON_VERSION_RE = re.compile(rf"^[0-9]{{1,2}}(?:\.[0-9]{{1,3}}){{0,2}}(?:(?:a|b|rc)[0-9]{{1,3}})?{_VARIANT}\Z")
#: Node.js versions: ``20``, ``20.11``, ``20.11.1`` or a release name (``lts``, ``iron``), with an
#: optional variant suffix.
NODE_VERSION_RE = re.compile(rf"^(?:[0-9]{{1,3}}(?:\.[0-9]{{1,3}}){{0,2}}|[a-z][a-z0-9]{{1,19}}){_VARIANT}\Z")
#: A database ``version`` is an image tag (``15``, ``7-alpine``, ``2.11.1``).
IMAGE_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")

# The Docker image reference grammar (github.com/distribution/reference, grammar in its
# reference.go): [host[:port]/]path[:tag][@digest]. Path components are lower case.
_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])"
_REGISTRY = rf"{_HOST}(?::[0-9]{{1,5}})?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
IMAGE_REF_RE = re.compile(
    rf"^(?:(?P<registry>{_REGISTRY})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?\Z"
)
#: ``[project] registry``: a registry host with an optional port and namespace path.
REGISTRY_RE = re.compile(rf"^(?P<host>{_REGISTRY})(?:/{_PATH_COMPONENT})*\Z")
#: A host name (one label or several) for ``default_server_ip``.
HOSTNAME_RE = re.compile(r"^(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
#: ``health_path``: an absolute URL path with an optional query, from RFC 3986's characters
#: minus those that could end a word or a string in a configuration or a command line
#: (quotes, ``;``, braces, spaces, backslashes, control characters).
HEALTH_PATH_RE = re.compile(r"^/(?:[A-Za-z0-9\-._~!$&()*+,=:@/?]|%[0-9A-Fa-f]{2})*\Z")
HEALTH_PATH_MAX = 1024
#: Names of build arguments (``ARG NAME``).
BUILD_ARG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
#: Characters that are safe unquoted in a Dockerfile COPY/RUN line and in a shell word; shared
#: with the Dockerfile renderer (service_types/dockerfiles.py), which applies it again.
SAFE_PATH_RE = re.compile(r"[A-Za-z0-9._@+=,-]+(?:/[A-Za-z0-9._@+=,-]+)*")
#: A Debian package name (Debian Policy 5.6.1 and 5.6.7): lower-case letters, digits, ``+ - .``,
#: starting with a letter or digit, at least two characters. Nothing else: no version (``=1.2``),
#: release (``/bookworm``) or architecture (``:amd64``) suffix, so a name is one shell word that
#: apt-get cannot read as an option.
DEBIAN_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+\Z")
#: At most this many names in one ``system_packages`` or ``build_packages`` list.
MAX_DEBIAN_PACKAGES = 200
#: Control characters (C0, DEL, C1); ``allow`` lifts some (a tab in a command line is harmless).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# --- helpers -------------------------------------------------------------------------------------


def control_chars(value: str, allow: str = "") -> list[str]:
    """The control characters in ``value`` (except those in ``allow``), escaped, for a message."""
    found = sorted({c for c in _CONTROL.findall(value) if c not in allow})
    return [repr(c)[1:-1] for c in found]


def _controls_problem(value: str, allow: str = "") -> str | None:
    bad = control_chars(value, allow)
    if bad:
        return f"{shown(value)} contains control characters ({', '.join(bad)})"
    return None


def image_ref_problem(value: str) -> str | None:
    """Why ``value`` is not a Docker image reference, or ``None``."""
    match = IMAGE_REF_RE.match(value)
    if not match or len(match["path"]) + len(match["registry"] or "") >= 256:
        return f"{shown(value)} is not a Docker image reference (expected [host[:port]/]path[:tag][@digest], e.g. python:3.12-slim)"
    registry = match["registry"]
    if registry and ":" in registry and not registry.startswith("["):
        port = int(registry.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            return f"{shown(value)}: registry port {port} is not between 1 and 65535"
    return None


def image_template_problem(value: str) -> str | None:
    """Why an ``[images]`` entry is not an image reference once ``{version}`` is filled in."""
    # Any version the patterns accept is a tag-like word: try one with every kind of character.
    return image_ref_problem(value.replace("{version}", "1.0-x")) and (
        f"{shown(value)} is not a Docker image reference (expected [host[:port]/]path[:tag][@digest], {{version}} allowed, e.g. python:{{version}}-slim)"
    )


def relative_path_problem(value: str) -> str | None:
    """Why ``value`` cannot be a path inside the build context in a Dockerfile line, or ``None``."""
    path = value.strip().rstrip("/")
    if not path or path.startswith(("/", "-")) or ".." in PurePosixPath(path).parts or not SAFE_PATH_RE.fullmatch(path):
        return f"{shown(value)} is not a relative path inside the project (letters, digits, . _ @ + = , - and /; no leading / or -, no ..)"
    if str(PurePosixPath(path)) == ".":
        return f"{shown(value)} names the project root, not a file or directory"
    return None


def debian_package_problem(value: str) -> str | None:
    """Why ``value`` is not a Debian package name, or ``None``."""
    if DEBIAN_PACKAGE_RE.match(value):
        return None
    return f"{shown(value)} is not a Debian package name (lower-case letters, digits, + - and ., starting with a letter or digit, at least 2 characters; no version or release; e.g. libpq5)"


def command_problem(value: str, what: str = "command") -> str | None:
    """Why ``value`` is not a one-line command line (Dockerfile CMD, container command), or ``None``."""
    if not value.strip():
        return f"is empty; remove the key to keep the image's default {what}" if what == "command" else "is empty"
    why = _controls_problem(value, allow="\t")
    if why:
        return f"{why}; a {what} is one line"
    try:
        shlex.split(value)
    except ValueError as exc:  # an unclosed quote or a trailing backslash
        return f"{shown(value)} cannot be split into arguments: {exc}"
    return None


# --- how a command line runs -------------------------------------------------------------------

# Outside quotes, these characters mean shell syntax: operators, redirections, subshells, globs,
# tilde expansion. "$" and "`" (expansions) count outside single quotes too.
_SHELL_CHARS = frozenset("|&;<>()*?[~")
_ENV_PREFIX = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*=")


def needs_shell(command: str) -> bool:
    """Whether ``command`` uses shell syntax that splitting it into an argv would lose."""
    if _ENV_PREFIX.match(command):  # VAR=value cmd
        return True
    quote = ""
    escaped = False
    for char in command:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = ""
            elif quote == '"' and char in "$`":
                return True
        elif char in "'\"":
            quote = char
        elif char in _SHELL_CHARS or char in "$`":
            return True
    return False


def command_argv(command: str) -> list[str]:
    """The argv of a ``command`` line, for a Dockerfile's exec-form CMD and a container alike.

    A plain command line is split like a POSIX shell would (``shlex.split``), so the process
    gets signals directly as PID 1. A command that uses shell syntax outside quotes (``&&``,
    pipes, redirections, ``$VAR``, globs, ``VAR=value cmd``) would lose its meaning when split,
    so it runs as ``["/bin/sh", "-c", command]`` instead.

    Raises ValueError for an empty command, a NUL character or one that cannot be split.
    """
    if not command.strip():
        raise ValueError("command is empty: give a command line, or None for the image default")
    if "\x00" in command:
        raise ValueError(f"command {command!r} contains a NUL character")
    try:
        argv = shlex.split(command)
    except ValueError as exc:  # e.g. an unclosed quote
        raise ValueError(f"command {command!r} cannot be parsed: {exc}") from None
    if needs_shell(command):
        argv = ["/bin/sh", "-c", command.strip()]
    return argv


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
        why = _controls_problem(s.description, allow="\t\n")
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
        why = _controls_problem(target)
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
        why = _controls_problem(value, allow="\t")
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
        why = _controls_problem(line, allow="\t")
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
            why = _controls_problem(nginx_config, allow="\t\n\r")
            if why:
                yield ("nginx_config",), why


def _check_database_rendering(spec: DatabaseSpec, images: Mapping[str, str]) -> Iterator[Problem]:
    if not IMAGE_TAG_RE.match(spec.version):
        yield ("version",), f"{shown(spec.version)} is not an image version (expected a tag such as 15, 7-alpine or 2.11.1)"
    elif _base_image_problem(images, spec.type, spec.version):
        yield ("version",), f"{shown(spec.version)} makes [images] {spec.type} {shown(images[spec.type])} an invalid image reference"


__all__ = [
    "DEBIAN_PACKAGE_RE",
    "IMAGE_REF_RE",
    "MAX_DEBIAN_PACKAGES",
    "NODE_VERSION_RE",
    "PYTHON_VERSION_RE",
    "SAFE_PATH_RE",
    "check_project_rendering",
    "check_service_rendering",
    "command_argv",
    "command_problem",
    "control_chars",
    "debian_package_problem",
    "image_ref_problem",
    "image_template_problem",
    "needs_shell",
    "relative_path_problem",
]
