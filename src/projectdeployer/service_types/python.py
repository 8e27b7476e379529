"""The ``python`` service type: a generated Dockerfile installing requirements files."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from attrs import define, field

from ..core.model import BuildSpec, Project, ServiceSpec
from ..core.monitoring import HealthCheck
from ..core.servicetype import ServiceType
from ..hookspecs import hookimpl
from .apps import app_health_checks, uses_generator

if TYPE_CHECKING:  # jinja2 is imported only when a Dockerfile is generated
    from .dockerfiles import GeneratedBuild


@define(kw_only=True)
class PythonSpec(BuildSpec):
    """A Python API, worker or job (Flask, FastAPI, Django, Celery, ...)."""

    python_version: str = "3.11"
    #: Installed in this order with ``pip install --no-cache-dir -r ...``.
    requirements_files: list[str] = field(factory=lambda: ["requirements.txt"])


PYTHON = ServiceType(
    name="python",
    spec_class=PythonSpec,
    description="Python service with a generated Dockerfile (requirements files, non-root user)",
    api_method="add_python_service",
    web=True,
    buildable=True,
    default_images={"python": "python:{version}-slim"},
)


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(PYTHON)


@hookimpl
def generate_dockerfile(service: ServiceSpec, project: Project) -> GeneratedBuild | None:
    if not uses_generator(service, PYTHON):
        return None
    assert isinstance(service, PythonSpec)
    from .dockerfiles import render_python

    return render_python(
        base_image=project.image("python", service.python_version),
        requirements_files=tuple(service.requirements_files),
        command=service.command,
        port=service.port,
    )


@hookimpl
def health_checks(service: ServiceSpec) -> list[HealthCheck] | None:
    return app_health_checks(service, PYTHON)
