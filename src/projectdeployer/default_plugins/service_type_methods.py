"""The adapter from the hooks to the registered ``ServiceType`` objects' methods.

``generate_dockerfile``, ``container_parts``, ``backup_method`` and ``health_checks`` are asked
about one service; each registered type answers for its own services through its methods
(``dockerfile``, ``container_parts``, ``backup_method``, ``health_checks``), so no type's
plugin filters on the type name. The adapter's implementations are ``trylast``: a plugin that
implements one of these hooks itself is asked first, and for the ``firstresult`` hooks its
answer wins; ``health_checks`` collects, so its checks come on top of the type's own.

One adapter per plugin manager (it finds the types in that manager's registry); it is part of
the essential core (``plugins.ESSENTIAL_PLUGINS``), so a type's behaviour does not depend on
which plugins ``PROJECTDEPLOYER_LOAD_PLUGINS`` selects. The plugin manager hands it the
``ServiceContext`` of each project environment (``contexts``: the secrets store's), so this
plugin, like every plugin, imports the core only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

from ..core.servicetype import ContextFor, ServiceType
from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..core.backups import BackupMethod
    from ..core.build import GeneratedBuild
    from ..core.containers import ContainerParts
    from ..core.model import Project, ServiceSpec
    from ..core.monitoring import HealthCheck


class ServiceTypeMethods:
    """Answers the four per-service hooks from the service's registered type."""

    def __init__(self, manager: pluggy.PluginManager, contexts: ContextFor) -> None:
        self.manager = manager
        self.contexts = contexts
        self._types: dict[str, ServiceType] = {}
        self._registrars: tuple[tuple[str, int], ...] | None = None

    def _type(self, service: ServiceSpec) -> ServiceType | None:
        # The types as the manager's plugins register them, asked again only when the plugins
        # that register types change (the registry checks them; here only the lookup matters).
        impls = self.manager.hook.register_service_types.get_hookimpls()
        registrars = tuple((impl.plugin_name, id(impl.plugin)) for impl in impls)
        if registrars != self._registrars:
            types: dict[str, ServiceType] = {}
            for impl in impls:  # called directly: a lookup, not a hook call to trace
                impl.function(register=lambda stype: types.setdefault(stype.name, stype))
            self._types, self._registrars = types, registrars
        return self._types.get(service.type)

    @hookimpl(trylast=True)
    def generate_dockerfile(self, service: ServiceSpec, project: Project, context_dir: Path | None) -> GeneratedBuild | None:
        stype = self._type(service)
        return stype.dockerfile(service, project, context_dir) if stype is not None else None

    @hookimpl(trylast=True)
    def container_parts(self, service: ServiceSpec, project: Project, env: str) -> ContainerParts | None:
        stype = self._type(service)
        return stype.container_parts(service, self.contexts(project.name, env)) if stype is not None else None

    @hookimpl(trylast=True)
    def backup_method(self, service: ServiceSpec) -> BackupMethod | None:
        stype = self._type(service)
        return stype.backup_method(self.contexts) if stype is not None else None

    @hookimpl(trylast=True)
    def health_checks(self, service: ServiceSpec) -> list[HealthCheck] | None:
        stype = self._type(service)
        return stype.health_checks(service) if stype is not None else None
