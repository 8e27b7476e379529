"""The ``nodejs`` service type: npm, yarn or pnpm, an optional build step, production dependencies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import attrs
from attrs import define, field

from ..core.build import GeneratedBuild
from ..core.model import BuildSpec, Project, ServiceSpec
from ..core.servicetype import ServiceType
from ..hookspecs import hookimpl
from .apps import AppType, package_notes, uses_generator

PackageManager = Literal["npm", "yarn", "pnpm"]


@define(kw_only=True)
class NodeSpec(BuildSpec):
    """A Node.js API or server-rendered site (Express, Next.js, NestJS, ...)."""

    node_version: str = "20"
    package_manager: PackageManager = "npm"
    #: e.g. ``npm run build`` for TypeScript or Next.js; dev dependencies are pruned after it.
    build_command: str | None = None
    #: Debian packages the app needs at run time (``ffmpeg``, ``libvips42``), in every stage.
    system_packages: list[str] = field(factory=list, metadata={"help": "Debian package the app needs at run time"})
    #: Debian packages only the install or build needs (``python3 make g++`` for native
    #: modules): installed in a build stage, never in the final image.
    build_packages: list[str] = field(factory=list, metadata={"help": "Debian package only the build needs (not in the final image)"})


@attrs.frozen(kw_only=True)
class NodeType(AppType):
    """Node.js: a generated Dockerfile for npm, yarn or pnpm."""

    def dockerfile(self, service: ServiceSpec, project: Project, context_dir: Path | None) -> GeneratedBuild | None:
        if not uses_generator(service):
            return None
        assert isinstance(service, NodeSpec)
        from .dockerfiles import render_nodejs  # noqa: PLC0415 - deferred: jinja2, imported by dockerfiles (start-up: ~50 ms, only when a Dockerfile is generated)

        built = render_nodejs(
            base_image=project.image("node", service.node_version),
            package_manager=service.package_manager,
            build_command=service.build_command,
            command=service.command,
            port=service.port,
            system_packages=service.system_packages,
            build_packages=service.build_packages,
        )
        return attrs.evolve(built, notes=package_notes(service.system_packages, service.build_packages))


NODEJS = NodeType(
    name="nodejs",
    spec_class=NodeSpec,
    description="Node.js service with a generated Dockerfile (npm/yarn/pnpm, optional build step)",
    api_method="add_nodejs_service",
    web=True,
    buildable=True,
    default_images={"node": "node:{version}-slim"},
)


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(NODEJS)
