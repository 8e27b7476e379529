"""Where things live on the operator's machine.

``$PROJECTDEPLOYER_HOME`` (default: the platform's user data directory, e.g.
``~/.local/share/projectdeployer``) keeps the seed's layout::

    {home}/{project}/project.toml                       the project file (unless given a path)
    {home}/{project}/secrets/{service}/...              project-wide secrets (git tokens), 0600
    {home}/{project}/{env}/{config,secrets,files,data,logs,backups,monitoring}/
    {home}/git_checkouts/{project}/{env}/{service}/

``$PROJECTDEPLOYER_PROJECTS_DIR``, when set, holds project files as ``{dir}/{name}.toml``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, shown

if TYPE_CHECKING:
    from .provider import Server

HOME_ENV = "PROJECTDEPLOYER_HOME"
PROJECTS_DIR_ENV = "PROJECTDEPLOYER_PROJECTS_DIR"
PROJECT_FILE_NAME = "project.toml"
#: Looked for in the current directory by the CLI when no project is named.
LOCAL_PROJECT_FILE = "projectdeployer.toml"
ENV_SUBDIRS = ("config", "secrets", "files", "data", "logs", "backups", "monitoring")


def home() -> Path:
    """The ProjectDeployer home directory."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_data_path  # noqa: PLC0415 - deferred: platformdirs (start-up: 40 ms), only when PROJECTDEPLOYER_HOME is unset

    return user_data_path("projectdeployer")


#: What a project or environment name may be as one directory name: the project file's own
#: patterns are stricter (validation.py); this is the last line that keeps every path under home.
_COMPONENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")


def _component(what: str, value: str) -> str:
    """``value`` when it is one plain directory name, else a ConfigError naming ``what``:
    ``../other``, ``a/b``, ``.`` or a control character never become a path under home."""
    if not isinstance(value, str) or not _COMPONENT_RE.match(value) or value in (".", ".."):
        raise ConfigError([f"{what}: {shown(value)} is not a valid {what} name (letters, digits, - and _; no '/' or '..')"])
    return value


def project_dir(project: str) -> Path:
    """``{home}/{project}``."""
    return home() / _component("project", project)


def env_dir(project: str, env: str, kind: str | None = None) -> Path:
    """``{home}/{project}/{env}[/{kind}]`` where kind is one of :data:`ENV_SUBDIRS`."""
    base = project_dir(project) / _component("environment", env)
    if kind is None:
        return base
    if kind not in ENV_SUBDIRS:
        raise ValueError(f"unknown directory kind {kind!r}")
    return base / kind


def server_env_dir(server: Server) -> str:
    """The folder, inside each directory an environment pulls from its servers (``data``,
    ``logs``, ``backups``, ``monitoring``), that holds ``server``'s files: its public address with
    dots and colons (and anything else unsafe in a file name) as underscores, e.g.
    ``192_168_1_100`` (the seed's ``logs/192_168_1_100/``)."""
    address = str(getattr(server, "public_address", "") or server.name)
    return re.sub(r"[^A-Za-z0-9_-]", "_", address)


def project_file(project: str) -> Path:
    """The default location of ``project``'s file."""
    configured = os.environ.get(PROJECTS_DIR_ENV)
    if configured:
        return Path(configured).expanduser() / f"{_component('project', project)}.toml"
    return project_dir(project) / PROJECT_FILE_NAME


def git_checkout_dir(project: str, env: str, service: str) -> Path:
    return home() / "git_checkouts" / _component("project", project) / _component("environment", env) / _component("service", service)
