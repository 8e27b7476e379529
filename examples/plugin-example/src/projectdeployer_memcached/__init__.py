"""projectdeployer-memcached: a ``memcached`` service type and a ``memcached-info`` command.

Installed next to ProjectDeployer, it gives:

- ``[services.cache] type = "memcached"`` in project files, with a ``memory_mb`` setting;
- ``ProjectDeployer(...).add_memcached(memory_mb=128)`` in Python;
- ``projectdeployer add memcached [NAME] --memory-mb 128`` on the command line;
- ``projectdeployer memcached-info``, which shows the type's defaults.

Everything here uses ProjectDeployer's public plugin API: :data:`projectdeployer.hookimpl`,
:class:`~projectdeployer.core.servicetype.ServiceType`, the spec base classes of
:mod:`projectdeployer.core.model` and :class:`~projectdeployer.core.monitoring.HealthCheck`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import attrs
import click
from attrs import define, field

from projectdeployer import hookimpl
from projectdeployer.core.model import ServiceSpec
from projectdeployer.core.monitoring import HealthCheck
from projectdeployer.core.servicetype import ServiceType

__version__ = "0.1.0"

TYPE_NAME = "memcached"
DEFAULT_PORT = 11211


@define(kw_only=True)
class MemcachedSpec(ServiceSpec):
    """A memcached server: an in-memory cache, nothing kept on disk, nothing to back up."""

    #: Memory for items, in megabytes (``memcached -m``).
    memory_mb: int = field(
        default=64,
        validator=attrs.validators.ge(1),
        metadata={"help": "Memory for items in MB (memcached -m) [default: 64]"},
    )


MEMCACHED = ServiceType(
    name=TYPE_NAME,
    spec_class=MemcachedSpec,
    description="Memcached in-memory cache (stateless, not backed up)",
    api_method="add_memcached",
    default_name="memcached",
    default_port=DEFAULT_PORT,
    stateful=False,
    default_images={"memcached": "memcached:1.6-alpine"},
)


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(MEMCACHED)


@hookimpl
def health_checks(service: ServiceSpec) -> list[HealthCheck] | None:
    # Every plugin is asked about every service: answer only for our own type.
    if service.type != TYPE_NAME:
        return None
    return [HealthCheck(kind="tcp", port=service.port or DEFAULT_PORT, start_period=30.0)]


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command(name="memcached-info")
    @click.option("--json", "as_json", is_flag=True, help="Print the defaults as JSON.")
    def memcached_info(as_json: bool) -> None:
        """Show the memcached service type's defaults (image, port, memory)."""
        # Imported when the command runs, so the plugin costs nothing at start-up.
        from projectdeployer.core.model import spec_fields
        from projectdeployer.plugins import get_registry

        stype = get_registry().service_type(TYPE_NAME)
        if stype is None:  # loading was restricted with PROJECTDEPLOYER_LOAD_PLUGINS
            raise click.ClickException("the memcached service type is not loaded")
        memory = next(f.default for f in spec_fields(stype.spec_class) if f.name == "memory_mb")
        info = {
            "type": stype.name,
            "plugin": stype.plugin,
            "image": stype.default_images["memcached"],
            "port": stype.default_port,
            "memory_mb": memory,
            "api_method": stype.api_method,
        }
        if as_json:
            click.echo(json.dumps(info, indent=2))
            return
        click.echo(f"memcached service type (plugin '{stype.plugin}')")
        click.echo(f"  image:     {info['image']}  (override with [images] memcached = \"...\")")
        click.echo(f"  port:      {info['port']}")
        click.echo(f"  memory_mb: {info['memory_mb']}")
        click.echo("  add it:    projectdeployer add memcached [NAME] --memory-mb 128")
