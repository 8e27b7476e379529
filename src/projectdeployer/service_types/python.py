"""The ``python`` service type: a generated Dockerfile installing requirements files, a
pyproject.toml project, poetry.lock (Poetry) or uv.lock (uv), with optional Debian packages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import attrs
from attrs import define, field

from ..core.build import BuildFailed, GeneratedBuild
from ..core.model import BuildSpec, Project, ServiceSpec
from ..core.servicetype import ServiceType
from ..hookspecs import hookimpl
from .apps import AppType, package_notes, uses_generator

PythonPackageManager = Literal["pip", "poetry", "uv"]


@define(kw_only=True)
class PythonSpec(BuildSpec):
    """A Python API, worker or job (Flask, FastAPI, Django, Celery, ...)."""

    python_version: str = "3.11"
    #: Installed in this order with ``pip install --no-cache-dir -r ...`` when any of them is
    #: in the build context (and ``package_manager`` does not say otherwise).
    requirements_files: list[str] = field(factory=lambda: ["requirements.txt"])
    #: ``pip``, ``poetry`` or ``uv``; unset: found from the build context's files
    #: (requirements files, uv.lock, poetry.lock, pyproject.toml, in that order).
    package_manager: PythonPackageManager | None = field(default=None, metadata={"help": "pip, poetry or uv [default: found from the source's files]"})
    #: Debian packages the app needs at run time (``libpq5``), in every stage of the image.
    system_packages: list[str] = field(factory=list, metadata={"help": "Debian package the app needs at run time"})
    #: Debian packages only the dependency install needs (``gcc``, ``libpq-dev``): installed in
    #: a build stage, never in the final image.
    build_packages: list[str] = field(factory=list, metadata={"help": "Debian package only the build needs (not in the final image)"})


@attrs.frozen(kw_only=True)
class PythonType(AppType):
    """Python: a generated Dockerfile from the source's requirements or lock files."""

    def dockerfile(self, service: ServiceSpec, project: Project, context_dir: Path | None) -> GeneratedBuild | None:
        if not uses_generator(service):
            return None
        assert isinstance(service, PythonSpec)
        from .dockerfiles import POETRY_VERSION, UV_VERSION, render_python  # noqa: PLC0415 - deferred: jinja2, imported by dockerfiles (start-up: ~50 ms, only when a Dockerfile is generated)
        from .pysource import SourceProblem, detect_install  # noqa: PLC0415 - deferred: pysource imports dockerfiles, so jinja2 (start-up)

        try:
            install = detect_install(
                context_dir,
                requirements_files=service.requirements_files,
                package_manager=service.package_manager,
                # A build arg of the same name overrides the pinned release (the template's ARG).
                poetry_version=service.build_args.get("POETRY_VERSION", POETRY_VERSION),
                uv_version=service.build_args.get("UV_VERSION", UV_VERSION),
            )
        except SourceProblem as exc:
            raise BuildFailed(f"{service.name}: {exc}") from None
        built = render_python(
            base_image=project.image("python", service.python_version),
            install=install,
            command=service.command,
            port=service.port,
            system_packages=service.system_packages,
            build_packages=service.build_packages,
        )
        return attrs.evolve(built, notes=(f"python: {install.reason}", *package_notes(service.system_packages, service.build_packages)))


PYTHON = PythonType(
    name="python",
    spec_class=PythonSpec,
    description="Python service with a generated Dockerfile (requirements, pyproject, Poetry or uv; non-root user)",
    api_method="add_python_service",
    web=True,
    buildable=True,
    default_images={"python": "python:{version}-slim"},
)


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(PYTHON)
