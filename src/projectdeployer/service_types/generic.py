"""The ``generic`` service type (``add_service``): a ready image, a Dockerfile, Dockerfile lines
or a git repository with its own Dockerfile. Also renders ``dockerfile_content`` for every type."""

from __future__ import annotations

from collections.abc import Callable

from ..core.build import GeneratedBuild
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


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(GENERIC)


# tryfirst: lines the user wrote win over any type's generated Dockerfile.
@hookimpl(tryfirst=True)
def generate_dockerfile(service: ServiceSpec, project: Project) -> GeneratedBuild | None:
    content = getattr(service, "dockerfile_content", None)
    if content is None:
        return None
    from .dockerfiles import render_dockerfile_content  # noqa: PLC0415 - deferred: jinja2, imported by dockerfiles (start-up: ~50 ms, only when a Dockerfile is generated)

    return GeneratedBuild(dockerfile=render_dockerfile_content(content), files={})
