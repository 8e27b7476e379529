"""ProjectDeployer: deploy a whole project as Docker containers, on one machine or many servers.

Public API::

    from projectdeployer import ProjectDeployer

    project = ProjectDeployer.create("myapp")
    project.add_postgres().add_python_service("api", depends_on=["postgres"], port=8000)
"""

from __future__ import annotations

from .core.deployer import ProjectDeployer
from .core.errors import ConfigError, PluginError, ProjectDeployerError, ProjectExists, ProjectNotFound
from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "PluginError",
    "ProjectDeployer",
    "ProjectDeployerError",
    "ProjectExists",
    "ProjectNotFound",
    "hookimpl",
]
