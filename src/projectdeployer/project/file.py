"""The TOML project file: parse, structure and validate it; write it back keeping comments.

A project file looks like::

    [project]
    name = "myapp"
    docker_hub_user = "myusername"

    [images]                      # base images; point these at a mirror or local images
    python = "python:{version}-slim"

    [environments.prod]
    provider = "digitalocean"

    [services.postgres]
    type = "postgres"
    version = "15"

    [services.api]
    type = "python"
    depends_on = ["postgres"]
    git_repo = "https://github.com/user/api.git@main"
    git_token = "secret:api/git_token"      # a reference: the token lives in a 0600 file

Loading is strict and all-at-once: every problem comes back as ``file: key.path: message``.
Edits go through :mod:`tomlkit`, so the user's comments and ordering survive.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import tomlkit
from tomlkit.exceptions import ParseError, TOMLKitError

from ..core.errors import ConfigError, ProjectNotFound, join_path, shown
from ..core.fsutil import atomic_write
from ..core.model import BuildSpec, DatabaseSpec, EnvironmentSpec, Project, ProjectSettings, ServiceSpec
from ..core.registry import Registry
from .convert import describe, structure
from .validation import check_project

T = TypeVar("T")

TOP_LEVEL_KEYS = ("project", "images", "environments", "services")
#: Env-var style tables merged key by key when an environment overrides them.
_MERGED_TABLES = ("env_vars", "volumes")


def parse_toml(text: str, source: str) -> tomlkit.TOMLDocument:
    """Parse TOML text; a syntax error becomes a one-line ConfigError with line and column."""
    try:
        return tomlkit.parse(text)
    except ParseError as exc:
        raise ConfigError([f"line {exc.line}, column {exc.col}: invalid TOML: {_parse_message(exc)}"], source=source) from exc
    except TOMLKitError as exc:  # e.g. KeyAlreadyPresent: a key defined twice in one table
        raise ConfigError([f"invalid TOML: {exc}"], source=source) from exc


def _parse_message(exc: ParseError) -> str:
    message = str(exc)
    # tomlkit appends " at line X col Y" to its message; we print the position ourselves.
    return message.rsplit(" at line ", 1)[0]


def _structure_into(data: Any, cls: type[T], path: list[str | int], problems: list[str]) -> T | None:
    try:
        return structure(data, cls, path=path)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None


def _structure_service(name: str, table: Any, registry: Registry, path: list[str | int], problems: list[str]) -> ServiceSpec | None:
    if not isinstance(table, dict):
        problems.append(f"{join_path(path)}: expected a table, got {describe(table)}")
        return None
    data = dict(table)
    type_name = data.pop("type", None)
    if type_name is None:
        problems.append(f"{join_path([*path, 'type'])}: required key missing (one of: {', '.join(sorted(registry.service_types))})")
        return None
    if not isinstance(type_name, str) or type_name not in registry.service_types:
        known = ", ".join(sorted(registry.service_types)) or "none: no service-type plugin is loaded"
        problems.append(f"{join_path([*path, 'type'])}: unknown service type {type_name!r} (known: {known})")
        return None
    stype = registry.service_types[type_name]
    spec = _structure_into(data, stype.spec_class, path, problems)
    if spec is None:
        return None
    spec = attrs.evolve(spec, name=name, type=type_name)
    if spec.port is None and stype.default_port is not None:
        spec = attrs.evolve(spec, port=stype.default_port)
    if isinstance(spec, DatabaseSpec) and not spec.version and stype.default_version:
        spec = attrs.evolve(spec, version=stype.default_version)
    if spec.port is None and isinstance(spec, BuildSpec) and spec.dockerfile_content:
        # The seed's dockerfile_content example says EXPOSE 8000 and no port: take it from there.
        exposed = _exposed_port(spec.dockerfile_content.values())
        if exposed is not None:
            spec = attrs.evolve(spec, port=exposed)
    return spec


def _exposed_port(lines: Any) -> int | None:
    for line in lines:
        match = re.match(r"^\s*EXPOSE\s+(\d+)(?:/tcp)?\b", str(line), re.IGNORECASE)
        if match:
            return int(match.group(1))
    return None


def _merge_override(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key in _MERGED_TABLES and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


#: The longest key and string value a project file may hold (docs/project-file.md).
MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 64 * 1024


def _oversized(data: Any, path: list[str | int]) -> list[str]:
    """A line for every key or string value of ``data`` past its size bound."""
    out: list[str] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(key, str) and len(key) > MAX_KEY_CHARS:
                out.append(f"{join_path([*path, key])}: a key of {len(key)} characters (at most {MAX_KEY_CHARS})")
                continue
            out += _oversized(value, [*path, key])
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            out += _oversized(value, [*path, i])
    elif isinstance(data, str) and len(data) > MAX_VALUE_CHARS:
        out.append(f"{join_path(path)}: a value of {len(data)} characters (at most {MAX_VALUE_CHARS})")
    return out


def build_project(data: Mapping[str, Any], *, source: str | None = None, registry: Registry) -> Project:
    """Turn a parsed document into a validated :class:`Project` or raise ConfigError (all problems).

    ``registry`` (``projectdeployer.plugins.get_registry()`` for the installed plugins) gives the
    service types, providers and image keys the file is checked against."""
    problems: list[str] = _oversized(data, [])
    if problems:
        raise ConfigError(problems, source=source)

    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f"{key}: unknown top-level table (expected {', '.join(TOP_LEVEL_KEYS)})")
    if "project" not in data:
        problems.append('project: required table missing (with at least name = "...")')
        raise ConfigError(problems, source=source)

    settings = _structure_into(data["project"], ProjectSettings, ["project"], problems)
    images_data = data.get("images", {})
    images = _structure_into(images_data, dict[str, str], ["images"], problems) or {}
    environments = _structure_into(data.get("environments", {}), dict[str, EnvironmentSpec], ["environments"], problems) or {}

    services_data = data.get("services", {})
    services: dict[str, ServiceSpec] = {}
    if not isinstance(services_data, dict):
        problems.append(f"services: expected a table, got {describe(services_data)}")
        services_data = {}
    for name, table in services_data.items():
        spec = _structure_service(name, table, registry, ["services", name], problems)
        if spec is not None:
            services[name] = spec

    if problems or settings is None:
        raise ConfigError(problems, source=source)

    project = Project(
        settings=settings,
        images={**registry.default_images, **images},
        environments=environments,
        services=services,
        source=source,
    )
    # Unknown image keys are reported against what the user wrote, not the merged defaults.
    checked = attrs.evolve(project, images=images)
    problems += [f"{join_path(path)}: {message}" for path, message in check_project(checked, registry)]

    for env_name, env in environments.items():
        overridden: dict[str, ServiceSpec] = {}
        for svc, override in env.services.items():
            path: list[str | int] = ["environments", env_name, "services", svc]
            if svc not in services_data:
                problems.append(f"{join_path(path)}: unknown service '{svc}'")
                continue
            if "type" in override:
                problems.append(f"{join_path([*path, 'type'])}: an environment cannot change a service's type")
                continue
            merged = _merge_override(services_data[svc], override)
            spec = _structure_service(svc, merged, registry, path, problems)
            if spec is not None:
                overridden[svc] = spec
        if overridden:
            env_view = attrs.evolve(checked, services={**services, **overridden})
            base = {join_path(p): m for p, m in check_project(checked, registry)}
            for p, message in check_project(env_view, registry):
                # Report only what the override introduced, at the environment's path; also on a
                # service it did not touch (a collision is reported on the later of two services).
                if len(p) >= 2 and p[0] == "services" and base.get(join_path(p)) != message:
                    problems.append(f"{join_path(['environments', env_name, *p])}: {message}")
            project.env_services[env_name] = overridden

    if problems:
        raise ConfigError(problems, source=source)
    return project


#: A project file larger than this is refused: a real one is a few kilobytes.
MAX_PROJECT_FILE_BYTES = 1024 * 1024


def read_project_text(path: Path) -> str:
    """The text of the project file at ``path``: a regular file of at most
    :data:`MAX_PROJECT_FILE_BYTES`, UTF-8. A FIFO, a device (a link to ``/dev/zero``), a
    directory or a larger file is refused in one line, without blocking or reading it whole."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise ProjectNotFound(f"{shown(str(path), 200)}: no such project file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(["is a directory, not a project file"], source=str(path)) from exc
    except OSError as exc:
        raise ProjectNotFound(f"{shown(str(path), 200)}: cannot read: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(["is a directory, not a project file"], source=str(path))
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([f"is not a regular file ({_file_kind(info.st_mode)}): a project file is a TOML file"], source=str(path))
        data = handle.read(MAX_PROJECT_FILE_BYTES + 1)
    if len(data) > MAX_PROJECT_FILE_BYTES:
        raise ConfigError([f"is larger than {MAX_PROJECT_FILE_BYTES // 1024} KiB: not a project file"], source=str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text ({exc.reason} at byte {exc.start})"], source=str(path)) from exc


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_document(path: Path) -> tomlkit.TOMLDocument:
    """Read and parse the file at ``path`` (ProjectNotFound if it does not exist)."""
    return parse_toml(read_project_text(Path(path)), str(path))


def load_project_file(path: Path, *, registry: Registry) -> tuple[Project, tomlkit.TOMLDocument]:
    """Load and validate the project file at ``path``; returns the project and its document."""
    doc = read_document(path)
    return build_project(doc.unwrap(), source=str(path), registry=registry), doc


def write_document(path: Path, doc: tomlkit.TOMLDocument) -> None:
    """Write ``doc`` atomically (the old file stays whole if anything fails)."""
    atomic_write(Path(path), tomlkit.dumps(doc))
