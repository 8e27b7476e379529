"""ProjectDeployer: deploy a whole project as Docker containers, on one machine or many servers.

Public API::

    from projectdeployer import ProjectDeployer

    project = ProjectDeployer.create("myapp")
    project.add_postgres().add_python_service("api", depends_on=["postgres"], port=8000)

Names are imported on first access, so ``projectdeployer --help`` does not pay for the
project-file machinery (cattrs, tomlkit) it does not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .api.bastion import Deployer
    from .api.by_name import BackupManager, FileSync, SecretsRotator
    from .api.domanager import DOManager
    from .api.project import ProjectDeployer
    from .build.git import GitManager, cleanup_git_checkouts
    from .core.errors import ConfigError, PluginError, ProjectDeployerError, ProjectExists, ProjectNotFound
    from .environment.environment import Environment
    from .secrets.resolver import ResourceResolver

__version__ = "0.1.0"

_LAZY = {
    "ProjectDeployer": "projectdeployer.api.project",
    "ConfigError": "projectdeployer.core.errors",
    "PluginError": "projectdeployer.core.errors",
    "ProjectDeployerError": "projectdeployer.core.errors",
    "ProjectExists": "projectdeployer.core.errors",
    "ProjectNotFound": "projectdeployer.core.errors",
    "GitManager": "projectdeployer.build.git",
    "cleanup_git_checkouts": "projectdeployer.build.git",
    "SecretsRotator": "projectdeployer.api.by_name",
    "BackupManager": "projectdeployer.api.by_name",
    "FileSync": "projectdeployer.api.by_name",
    "Deployer": "projectdeployer.api.bastion",
    "DOManager": "projectdeployer.api.domanager",
    "Environment": "projectdeployer.environment.environment",
    "ResourceResolver": "projectdeployer.secrets.resolver",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'projectdeployer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BackupManager",
    "ConfigError",
    "DOManager",
    "Deployer",
    "Environment",
    "FileSync",
    "GitManager",
    "PluginError",
    "ProjectDeployer",
    "ProjectDeployerError",
    "ProjectExists",
    "ProjectNotFound",
    "ResourceResolver",
    "SecretsRotator",
    "cleanup_git_checkouts",
    "hookimpl",
]
