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
from pathlib import Path

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
    from platformdirs import user_data_path

    return user_data_path("projectdeployer")


def project_dir(project: str) -> Path:
    return home() / project


def env_dir(project: str, env: str, kind: str | None = None) -> Path:
    """``{home}/{project}/{env}[/{kind}]`` where kind is one of :data:`ENV_SUBDIRS`."""
    base = project_dir(project) / env
    if kind is None:
        return base
    if kind not in ENV_SUBDIRS:
        raise ValueError(f"unknown directory kind {kind!r}")
    return base / kind


def project_file(project: str) -> Path:
    """The default location of ``project``'s file."""
    configured = os.environ.get(PROJECTS_DIR_ENV)
    if configured:
        return Path(configured).expanduser() / f"{project}.toml"
    return project_dir(project) / PROJECT_FILE_NAME


def git_checkout_dir(project: str, env: str, service: str) -> Path:
    return home() / "git_checkouts" / project / env / service
