"""The ``generic`` service type (``add_service``): a ready image, a Dockerfile, Dockerfile lines
or a git repository with its own Dockerfile. Also renders ``dockerfile_content`` for every type."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core.model import GenericSpec, Project, ServiceSpec
from ..core.servicetype import ServiceType
from ..hookspecs import hookimpl
from .apps import AppType

GENERIC = AppType(
    name="generic",
    spec_class=GenericSpec,
    description="Any image, Dockerfile, Dockerfile lines or git repository with a Dockerfile",
    api_method="add_service",
    web=True,
    buildable=True,
)

if TYPE_CHECKING:  # jinja2 is imported only when a Dockerfile is generated
    from .dockerfiles import GeneratedBuild


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(GENERIC)


# tryfirst: lines the user wrote win over any type's generated Dockerfile.
@hookimpl(tryfirst=True)
def generate_dockerfile(service: ServiceSpec, project: Project) -> GeneratedBuild | None:
    content = getattr(service, "dockerfile_content", None)
    if content is None:
        return None
    from .dockerfiles import GeneratedBuild, render_dockerfile_content

    return GeneratedBuild(dockerfile=render_dockerfile_content(content), files={})
