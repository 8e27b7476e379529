"""What the plugins registered: service types, providers, known zones and base images.

Built by :func:`build_registry` calling the registration hooks of a plugin manager; the core owns
the ``register`` callbacks so it can reject duplicates and remember which plugin supplied what.
The registry of the global manager, built once, is ``projectdeployer.plugins.get_registry``:
core modules are handed a registry, they never fetch one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from .errors import PluginError
from .model import ServiceSpec
from .servicetype import ServiceType

if TYPE_CHECKING:
    from .provider import Provider

#: Base images of the core itself (the nginx sidecar); service types add their own.
CORE_IMAGES: Mapping[str, str] = {"nginx": "nginx:alpine"}


@attrs.define
class ProviderEntry:
    """A registered provider: its name, the zones it serves, the ``[images]`` keys it reads and
    a lazy factory."""

    name: str
    factory: Callable[[], Provider]
    zones: frozenset[str]
    plugin: str
    images: Mapping[str, str] = attrs.field(factory=dict)
    #: The provider calls an API that an environment's ``api_token`` reference can feed.
    takes_api_token: bool = False
    _instance: Provider | None = None
    _for_projects: dict[tuple[Any, ...], Provider] = attrs.field(factory=dict)

    def get(self, project: Any = None) -> Provider:
        """The provider object, created on first use (its SDK is imported only then). With a
        ``project``, a factory that has ``for_project(project)`` (a class method) makes one
        configured by the project file (e.g. its ``[images]``), kept per project (and per
        ``cache_key(project)`` when the factory has one: what else of the file it reads)."""
        if project is not None and hasattr(self.factory, "for_project"):
            more = self.factory.cache_key(project) if hasattr(self.factory, "cache_key") else ()
            key = (project.name, tuple(sorted(project.images.items())), more)
            if key not in self._for_projects:
                self._for_projects[key] = self.factory.for_project(project)
            return self._for_projects[key]
        if self._instance is None:
            self._instance = self.factory()
        return self._instance


@attrs.define
class Registry:
    """Everything the plugins contributed."""

    service_types: dict[str, ServiceType] = attrs.field(factory=dict)
    providers: dict[str, ProviderEntry] = attrs.field(factory=dict)

    @property
    def zones(self) -> frozenset[str]:
        """Every zone some provider serves."""
        out: set[str] = set()
        for entry in self.providers.values():
            out |= entry.zones
        return frozenset(out)

    @property
    def default_images(self) -> dict[str, str]:
        """The ``[images]`` defaults: the core's plus every service type's."""
        images = dict(CORE_IMAGES)
        for stype in self.service_types.values():
            images.update(stype.default_images)
        return images

    @property
    def image_keys(self) -> dict[str, str]:
        """Every key ``[images]`` accepts, with its default: the core's, every service type's
        and every provider's (e.g. the sandbox's ``server``)."""
        images = self.default_images
        for entry in self.providers.values():
            images.update({k: v for k, v in entry.images.items() if k not in images})
        return images

    def service_type(self, name: str) -> ServiceType | None:
        return self.service_types.get(name)

    def by_api_method(self, method: str) -> ServiceType | None:
        for stype in self.service_types.values():
            if stype.api_method == method:
                return stype
        return None


def _caller_name(manager: pluggy.PluginManager, hook_name: str, index: int) -> str:
    impls = getattr(manager.hook, hook_name).get_hookimpls()
    return impls[index].plugin_name if index < len(impls) else "?"


def build_registry(manager: pluggy.PluginManager, *, reserved_api_methods: Mapping[str, str | None] | None = None) -> Registry:
    """Call the registration hooks of ``manager`` and collect the results; with
    ``reserved_api_methods``, also :func:`check_api_methods`."""
    registry = Registry()

    # To name the plugin behind each registration, each plugin's implementation is called on
    # its own; through a subset hook caller, so hook tracing and monitoring still see it.
    for origin in _implementers(manager, "register_service_types"):

        def register_type(stype: ServiceType, origin: str = origin) -> None:
            _check_service_type(stype, origin, registry)
            registry.service_types[stype.name] = attrs.evolve(stype, plugin=origin)

        _call_one(manager, "register_service_types", origin, register=register_type)

    for origin in _implementers(manager, "register_providers"):

        def register_provider(
            name: str,
            factory: Callable[[], Provider],
            zones: frozenset[str] | set[str] | None = None,
            images: Mapping[str, str] | None = None,
            api_token: bool = False,
            origin: str = origin,
        ) -> None:
            if name in registry.providers:
                first = registry.providers[name].plugin
                raise PluginError(f"provider '{name}' is registered by both '{first}' and '{origin}'")
            registry.providers[name] = ProviderEntry(name, factory, frozenset(zones or ()), origin, dict(images or {}), api_token)

        _call_one(manager, "register_providers", origin, register=register_provider)
    if reserved_api_methods is not None:
        check_api_methods(registry, reserved_api_methods)
    return registry


def _implementers(manager: pluggy.PluginManager, hook_name: str) -> list[str]:
    """Plugin names implementing ``hook_name``, first registered first."""
    return [impl.plugin_name for impl in reversed(getattr(manager.hook, hook_name).get_hookimpls())]


def _call_one(manager: pluggy.PluginManager, hook_name: str, plugin_name: str, **kwargs: object) -> None:
    others = [p for p in manager.get_plugins() if manager.get_name(p) != plugin_name]
    manager.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)


def _check_service_type(stype: object, origin: str, registry: Registry) -> None:
    if not isinstance(stype, ServiceType):
        raise PluginError(f"plugin '{origin}' registered {stype!r}, which is not a ServiceType")
    if not (isinstance(stype.spec_class, type) and issubclass(stype.spec_class, ServiceSpec) and attrs.has(stype.spec_class)):
        raise PluginError(f"plugin '{origin}': service type '{stype.name}' has spec_class {stype.spec_class!r}, which is not an attrs class deriving from ServiceSpec")
    if stype.name in registry.service_types:
        first = registry.service_types[stype.name].plugin
        raise PluginError(f"service type '{stype.name}' is registered by both '{first}' and '{origin}'")
    if stype.api_method is not None:
        if not stype.api_method.startswith("add_"):
            raise _bad_api_method(stype, origin)
        for other in registry.service_types.values():
            if other.api_method == stype.api_method:
                raise PluginError(f"api_method '{stype.api_method}' is registered by both '{other.plugin}' ({other.name}) and '{origin}' ({stype.name})")


def _bad_api_method(stype: ServiceType, origin: str) -> PluginError:
    return PluginError(f"plugin '{origin}': service type '{stype.name}' cannot use api_method '{stype.api_method}' (must start with add_ and not be an existing method)")


def check_api_methods(registry: Registry, reserved: Mapping[str, str | None]) -> None:
    """Refuse a service type whose ``api_method`` is one of ``reserved``: the fluent methods the
    API defines itself, each mapped to the one service type allowed to claim it (the built-in
    type it adds) or ``None``. The API hands this in (``projectdeployer.api.project.RESERVED_API_METHODS``),
    so the registry need not import it."""
    for stype in registry.service_types.values():
        if stype.api_method is not None and stype.api_method in reserved and reserved[stype.api_method] != stype.name:
            raise _bad_api_method(stype, stype.plugin)
