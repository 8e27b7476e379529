"""The plugin manager: finds, loads and introspects plugins.

Built-in plugins are declared in the ``projectdeployer`` entry-point group of our own
``pyproject.toml`` and loaded exactly as a third-party package's are. Only the essential core
(:data:`ESSENTIAL_PLUGINS`) is imported directly, because nothing works without it.

Environment switches:

``PROJECTDEPLOYER_LOAD_PLUGINS``
    Comma-separated entry-point names or distribution names to load; unset loads all,
    empty loads none but the essential core (the way out when a broken plugin stops start-up).
``PROJECTDEPLOYER_TRACE_PLUGINS``
    Any non-empty value prints every hook call, its arguments and results to stderr.

Start-up: the command line needs only the plugins that can add commands to build its group
(:func:`load_command_plugins`); it loads the rest when a command runs, so ``projectdeployer --help``
imports no built-in plugin, and none of the capabilities they use.
"""

from __future__ import annotations

import importlib
import os
import sys
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .core.errors import PluginError

if TYPE_CHECKING:  # the registry (attrs, the service-type contract) is built by commands, not by --help
    from .core.registry import Registry

ENTRY_POINT_GROUP = "projectdeployer"
#: The distribution whose entry points are the built-in plugins.
OWN_DISTRIBUTION = "projectdeployer"
LOAD_ENV = "PROJECTDEPLOYER_LOAD_PLUGINS"
TRACE_ENV = "PROJECTDEPLOYER_TRACE_PLUGINS"

#: Imported directly and never disabled (name -> module, or ``module:Class`` for a class-based
#: plugin made once per manager, ``Class(manager, contexts)``, ``contexts`` being the secrets
#: store's ``ServiceContext`` per project environment): the secret references every project file
#: uses, and the adapter that answers the per-service hooks from the service types' methods.
ESSENTIAL_PLUGINS: dict[str, str] = {
    "secrets_store": "projectdeployer.default_plugins.secrets_files",
    "service_type_methods": "projectdeployer.default_plugins.service_type_methods:ServiceTypeMethods",
}

#: The built-in plugins (entry-point names of :data:`OWN_DISTRIBUTION`) that implement
#: ``register_commands``. :func:`load_command_plugins` imports these and every other
#: distribution's plugins (which may add commands: nobody knows before importing them), and no
#: other built-in one. A unit test keeps this set in step with what the built-ins implement.
BUILTIN_COMMAND_PLUGINS: frozenset[str] = frozenset()


def make_plugin_manager() -> pluggy.PluginManager:
    """A fresh manager with our hookspecs and nothing registered (tests use this)."""
    manager = pluggy.PluginManager("projectdeployer")
    manager.add_hookspecs(hookspecs)
    return manager


pm: pluggy.PluginManager = make_plugin_manager()
_loaded = False
# Which distribution supplied each plugin, per manager (pluggy records this only for its own
# setuptools loader, which we do not use because we need per-plugin error handling).
_traced: weakref.WeakSet[pluggy.PluginManager] = weakref.WeakSet()
_distinfo: weakref.WeakKeyDictionary[pluggy.PluginManager, dict[str, tuple[str, str]]] = weakref.WeakKeyDictionary()
# Registries cached per manager together with the set of plugins each was built from, so
# registering or unregistering a plugin (tests, ``pip install`` at run time) rebuilds it.
_registries: weakref.WeakKeyDictionary[pluggy.PluginManager, tuple[frozenset[int], Registry]] = weakref.WeakKeyDictionary()


def _wanted(raw: str | None) -> set[str] | None:
    if raw is None:
        return None
    return {item.strip() for item in raw.split(",") if item.strip()}


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def _describe(ep: metadata.EntryPoint, dist: tuple[str, str] | None) -> str:
    where = f" from {dist[0]} {dist[1]}" if dist is not None else ""
    return f"plugin '{ep.name}' ({ep.value}){where}"


def _distributions() -> Callable[[metadata.EntryPoint], tuple[str, str] | None]:
    """A look-up of the name and version of the distribution declaring an entry point (``None``
    for none), read once per distribution: each read parses its whole METADATA file, README
    included, and the entry points of one distribution share its object."""
    known: dict[int, tuple[str, str]] = {}

    def look_up(ep: metadata.EntryPoint) -> tuple[str, str] | None:
        dist = getattr(ep, "dist", None)
        if dist is None:
            return None
        if id(dist) not in known:
            known[id(dist)] = (dist.name, dist.version)
        return known[id(dist)]

    return look_up


def register_plugin(manager: pluggy.PluginManager, plugin: object, name: str, origin: str) -> None:
    """Register ``plugin``; a hookimpl that matches no hook or has wrong arguments is a PluginError."""
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{origin} is invalid: {exc}") from exc
    except ValueError as exc:  # already registered under this name
        raise PluginError(f"{origin} could not be registered: {exc}") from exc


def load_plugins(manager: pluggy.PluginManager | None = None, *, env: Mapping[str, str] | None = None) -> pluggy.PluginManager:
    """Load the essential core and the entry-point plugins into ``manager`` (the global by default).

    Idempotent for the global manager. Raises :class:`PluginError` naming the plugin that failed
    to import, registered a misspelled hook (``check_pending``) or has invalid hook arguments.
    """
    global _loaded
    target = pm if manager is None else manager
    if target is pm and _loaded:
        return pm
    environ = os.environ if env is None else env

    from .secrets.resolver import service_context  # noqa: PLC0415 - deferred: attrs and the secrets store, for commands only (start-up)

    for name, where in ESSENTIAL_PLUGINS.items():
        if target.get_plugin(name) is None:
            module_name, _, class_name = where.partition(":")
            module = importlib.import_module(module_name)
            plugin = getattr(module, class_name)(target, service_context) if class_name else module
            register_plugin(target, plugin, name, f"essential plugin {name} ({where})")

    _load_entry_points(target, environ, lambda ep, dist_name: True)
    if target is pm:
        _loaded = True
    return target


def load_command_plugins(*, env: Mapping[str, str] | None = None) -> pluggy.PluginManager:
    """A new manager holding only the entry-point plugins that may implement ``register_commands``:
    every other distribution's and the built-ins named in :data:`BUILTIN_COMMAND_PLUGINS`,
    registered in the order and with the checks of :func:`load_plugins`, as
    ``PROJECTDEPLOYER_LOAD_PLUGINS`` chooses.

    The command line asks it for the plugins' commands, so that listing them (``--help``) imports
    no other plugin; the commands themselves run with the global manager, loaded in full.
    """
    manager = make_plugin_manager()
    _load_entry_points(manager, os.environ if env is None else env, _may_add_commands)
    return manager


def _may_add_commands(ep: metadata.EntryPoint, dist_name: str) -> bool:
    return dist_name != OWN_DISTRIBUTION or ep.name in BUILTIN_COMMAND_PLUGINS


def _load_entry_points(target: pluggy.PluginManager, environ: Mapping[str, str], keep: Callable[[metadata.EntryPoint, str], bool]) -> None:
    """Import and register the wanted entry points that ``keep(ep, distribution name)`` accepts,
    then check the manager."""
    wanted = _wanted(environ.get(LOAD_ENV))
    distribution = _distributions()
    for ep in list(_entry_points()):
        dist = distribution(ep)
        dist_name = dist[0] if dist is not None else ""
        if wanted is not None and ep.name not in wanted and dist_name not in wanted:
            continue
        if target.get_plugin(ep.name) is not None or not keep(ep, dist_name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # any import-time failure is the plugin's: name it
            raise PluginError(f"{_describe(ep, dist)} failed to load: {type(exc).__name__}: {exc} (set {LOAD_ENV} to a list without it to start anyway)") from exc
        register_plugin(target, plugin, ep.name, _describe(ep, dist))
        if dist is not None:
            _distinfo.setdefault(target, {})[ep.name] = dist

    try:
        target.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements a hook that does not exist: {exc}") from exc

    if environ.get(TRACE_ENV) and target not in _traced:
        _enable_tracing(target)
        _traced.add(target)


def _enable_tracing(manager: pluggy.PluginManager) -> None:
    def before(hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        names = ", ".join(impl.plugin_name for impl in hook_impls)
        print(f"[plugins] {hook_name}({', '.join(kwargs)}) -> {names}", file=sys.stderr)

    def after(outcome: pluggy.Result[Any], hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        try:
            result = outcome.get_result()
        except BaseException as exc:  # noqa: BLE001 - tracing reports, it does not handle
            print(f"[plugins] {hook_name} raised {type(exc).__name__}: {exc}", file=sys.stderr)
            return
        print(f"[plugins] {hook_name} returned {result!r:.200}", file=sys.stderr)

    manager.add_hookcall_monitoring(before, after)


def get_registry(manager: pluggy.PluginManager | None = None, *, reserved_api_methods: Mapping[str, str | None] | None = None) -> Registry:
    """The registry of ``manager`` (the global, loaded, manager by default), built once per set
    of plugins. ``reserved_api_methods``: the fluent methods a service type's ``api_method`` may
    not take (``projectdeployer.api.project.RESERVED_API_METHODS``, which the API passes);
    checked on every call, since the registry is shared by callers that pass none."""
    from .core.registry import build_registry, check_api_methods  # noqa: PLC0415 - deferred: attrs and the service-type contract (start-up)

    target = pm if manager is None else manager
    if target is pm:
        load_plugins()
    key = frozenset(id(plugin) for plugin in target.get_plugins())
    cached = _registries.get(target)
    if cached is not None and cached[0] == key:
        registry = cached[1]
    else:
        registry = build_registry(target)
        _registries[target] = (key, registry)
    if reserved_api_methods is not None:
        check_api_methods(registry, reserved_api_methods)
    return registry


def get_plugins(manager: pluggy.PluginManager | None = None, *, include_builtin: bool = True) -> list[dict[str, Any]]:
    """Describe every registered plugin: name, module, version, hooks, built-in or not."""
    target = pm if manager is None else manager
    dists = _distinfo.get(target, {})
    plugins = []
    for plugin in target.get_plugins():
        name = target.get_name(plugin) or repr(plugin)
        dist_name, version = dists.get(name, (None, None))
        module = getattr(plugin, "__name__", type(plugin).__module__)
        builtin = module.startswith("projectdeployer.")
        if builtin and not include_builtin:
            continue
        callers = target.get_hookcallers(plugin) or []
        plugins.append(
            {
                "name": name,
                "module": module,
                "distribution": dist_name or ("projectdeployer" if builtin else None),
                "version": version,
                "builtin": builtin,
                "hooks": sorted(caller.name for caller in callers),
            }
        )
    plugins.sort(key=lambda p: (not p["builtin"], p["name"]))
    return plugins
