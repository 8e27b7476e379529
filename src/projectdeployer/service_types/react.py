"""The ``react`` service type: any single-page app (React, Vue, Angular, Svelte) built with Node
and served by nginx with gzip, long caching of fingerprinted assets and SPA routing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs
from attrs import define

from ..core.build import GeneratedBuild
from ..core.model import Project, ServiceSpec
from ..core.servicetype import ServiceType
from ..hookspecs import hookimpl
from .apps import AppType, package_notes, uses_generator
from .nodejs import NodeSpec


@define(kw_only=True)
class ReactSpec(NodeSpec):
    """A static single-page app. ``build_command`` defaults to the package manager's ``build``."""

    #: Where the build writes its output: ``build`` (React), ``dist`` (Vue), ``dist/<app>`` (Angular).
    build_dir: str = "build"
    #: A complete nginx ``server { ... }`` block replacing the generated one.
    nginx_config: str | None = None


@attrs.frozen(kw_only=True)
class ReactType(AppType):
    """A single-page app: built with Node, served by nginx."""

    def dockerfile(self, service: ServiceSpec, project: Project, context_dir: Path | None) -> GeneratedBuild | None:
        if not uses_generator(service):
            return None
        assert isinstance(service, ReactSpec)
        from .dockerfiles import render_react  # noqa: PLC0415 - deferred: jinja2, imported by dockerfiles (start-up: ~50 ms, only when a Dockerfile is generated)

        built = render_react(
            build_image=project.image("node", service.node_version),
            serve_image=project.image("nginx"),
            package_manager=service.package_manager,
            build_command=service.build_command,
            build_dir=service.build_dir,
            nginx_config=service.nginx_config,
            build_packages=service.build_packages,
        )
        return attrs.evolve(built, notes=package_notes([], service.build_packages))


REACT = ReactType(
    name="react",
    spec_class=ReactSpec,
    description="Single-page app (React/Vue/Angular/Svelte): Node build, served by nginx",
    api_method="add_react_service",
    default_port=80,
    web=True,
    buildable=True,
    default_images={"node": "node:{version}-slim"},
    # Served by nginx: only build_packages (its Node.js build stage) mean something.
    unused_fields=frozenset({"system_packages"}),
)


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(REACT)
