"""``ProjectDeployer``: the seed's fluent API over a project file.

Every method that changes the project validates the whole result first and writes nothing if
it is invalid; then it writes the file atomically through tomlkit, so comments and ordering the
user put in the file survive. Secrets given to the API (``git_token``, secret-looking
``env_vars``) go to 0600 files; the project file only ever holds a reference to them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pluggy
import tomlkit
from tomlkit.items import InlineTable, Table

from . import paths
from .credentials import warn_plaintext_credentials
from .errors import ConfigError, ProjectDeployerError, ProjectExists, ProjectNotFound, SecretError
from .model import Project, ServiceSpec, spec_fields
from .order import startup_groups, startup_orders
from .ports import PortAssignment, PortStore
from .projectfile import build_project, read_document, write_document
from .registry import Registry, get_registry
from .servicetype import ServiceType
from .validation import is_secret_ref, valid_name

if TYPE_CHECKING:
    from .build import BuiltImage
    from .engine import DeployPlan
    from .operations import DeployReport, Operations

log = logging.getLogger("projectdeployer")

#: Environment variable names whose literal values are kept as secrets, not in the file.
SECRET_ENV_RE = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIALS)", re.IGNORECASE)


def _looks_like_path(name: str | os.PathLike[str]) -> bool:
    text = os.fspath(name)
    return text.endswith(".toml") or os.sep in text or "/" in text


@attrs.define
class _PendingSecret:
    name: str
    value: str

    @property
    def provisional(self) -> str:
        """The reference used while validating; the secret plugin may return another."""
        return f"secret:{self.name}"


class ProjectDeployer:
    """A project: its services, environments and settings, kept in a TOML project file.

    ``ProjectDeployer("myapp")`` loads the project named ``myapp`` from its default location
    (see :mod:`projectdeployer.core.paths`); ``ProjectDeployer("path/to/file.toml")`` loads a file.
    """

    def __init__(
        self,
        name: str | os.PathLike[str],
        *,
        path: str | os.PathLike[str] | None = None,
        registry: Registry | None = None,
        manager: pluggy.PluginManager | None = None,
    ) -> None:
        if path is None:
            path = name if _looks_like_path(name) else paths.project_file(os.fspath(name))
        self._path = Path(path)
        self._manager = manager
        self._registry = registry if registry is not None else (get_registry(manager) if manager is not None else None)
        if not self._path.exists():
            raise ProjectNotFound(f"{self._path}: no project file (create it with ProjectDeployer.create({os.fspath(name)!r}) or `projectdeployer init`)")
        self._doc = read_document(self._path)
        self._loaded_text = tomlkit.dumps(self._doc)
        self._project = build_project(self._doc.unwrap(), source=str(self._path), registry=self.registry)
        warn_plaintext_credentials(self._project)

    # --- creation and loading -----------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        *,
        docker_hub_user: str | None = None,
        version: str | None = None,
        default_server_ip: str | None = None,
        registry: str | None = None,
        description: str | None = None,
        path: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        manager: pluggy.PluginManager | None = None,
    ) -> ProjectDeployer:
        """Create a project file and return the project.

        An existing project that has services is never overwritten unless ``overwrite=True``;
        one without services (a fresh ``create``) is replaced.
        """
        target = Path(path) if path is not None else paths.project_file(name)
        settings: dict[str, Any] = {"name": name}
        for key, value in (("docker_hub_user", docker_hub_user), ("registry", registry), ("version", version), ("default_server_ip", default_server_ip), ("description", description)):
            if value is not None:
                settings[key] = value
        if target.exists() and not overwrite:
            _refuse_overwrite(target)

        reg = get_registry(manager)
        doc = tomlkit.document()
        doc.add(tomlkit.comment(f"ProjectDeployer project file for {name!r}."))
        doc.add(tomlkit.comment("Edit freely: comments and ordering are kept. Secrets are references (secret:..., env:...), never values."))
        doc.add(tomlkit.nl())
        project_table = tomlkit.table()
        for key, value in settings.items():
            project_table.add(key, _to_toml(value))
        doc.add("project", project_table)
        images = tomlkit.table()
        images.add(tomlkit.comment("Base images; {version} is filled from each service. Point them at a mirror or local images."))
        for key, value in sorted(reg.default_images.items()):
            images.add(key, value)
        doc.add("images", images)
        doc.add("services", tomlkit.table(is_super_table=True))

        build_project(doc.unwrap(), source=str(target), registry=reg)
        write_document(target, doc)
        return cls(name, path=target, manager=manager)

    @property
    def path(self) -> Path:
        """The project file."""
        return self._path

    @property
    def name(self) -> str:
        return self._project.name

    @property
    def project(self) -> Project:
        """The loaded, validated model."""
        return self._project

    @property
    def registry(self) -> Registry:
        """The service types and providers this project is checked against."""
        return self._registry if self._registry is not None else get_registry()

    def reload(self) -> ProjectDeployer:
        """Read the file again (after someone edited it)."""
        self._doc = read_document(self._path)
        self._loaded_text = tomlkit.dumps(self._doc)
        self._project = build_project(self._doc.unwrap(), source=str(self._path), registry=self.registry)
        warn_plaintext_credentials(self._project)
        return self

    def __repr__(self) -> str:
        return f"ProjectDeployer({self.name!r}, services={list(self._project.services)})"

    # --- the fluent API ---------------------------------------------------------------------

    def add(self, type_name: str, name: str | None = None, /, **options: Any) -> ProjectDeployer:
        """Add (or replace) a service of ``type_name``; returns ``self`` for chaining."""
        stype = self.registry.service_type(type_name)
        if stype is None:
            raise ConfigError([f"unknown service type {type_name!r} (known: {', '.join(sorted(self.registry.service_types))})"], source=str(self._path))
        name = name or stype.default_name
        if not name:
            raise ConfigError([f"{stype.api_method or 'add'}: a service name is required"], source=str(self._path))
        if not valid_name(name):
            raise ConfigError([f"services.{name}: not a valid service name (lower-case letters, digits, _ and -, starting with a letter, at most 40)"], source=str(self._path))
        self._check_options(stype, name, options)

        doc = tomlkit.parse(tomlkit.dumps(self._doc))  # edit a copy: nothing changes on failure
        services = _services_table(doc)
        if name in services:
            log.warning("%s: service %r replaced by a new %s service", self._path, name, stype.name)
        table = tomlkit.table()
        table.add("type", stype.name)
        pending: list[_PendingSecret] = []
        for key, value in options.items():
            if value is None:
                continue
            table.add(key, _to_toml(self._protect(name, key, value, pending)))
        services[name] = table
        self._commit(doc, pending)
        return self

    def add_postgres(self, name: str = "postgres", **options: Any) -> ProjectDeployer:
        """Add a PostgreSQL database (``version="15"``, ``backup_config={...}``, ...)."""
        return self.add("postgres", name, **options)

    def add_redis(self, name: str = "redis", **options: Any) -> ProjectDeployer:
        """Add a Redis server (``version="7-alpine"``, ...)."""
        return self.add("redis", name, **options)

    def add_opensearch(self, name: str = "opensearch", **options: Any) -> ProjectDeployer:
        """Add an OpenSearch node (``version="2"``, ...)."""
        return self.add("opensearch", name, **options)

    def add_python_service(self, name: str, **options: Any) -> ProjectDeployer:
        """Add a Python service with a generated Dockerfile (``requirements_files``, ``python_version``, ...)."""
        return self.add("python", name, **options)

    def add_nodejs_service(self, name: str, **options: Any) -> ProjectDeployer:
        """Add a Node.js service (``package_manager``, ``build_command``, ...)."""
        return self.add("nodejs", name, **options)

    def add_react_service(self, name: str, **options: Any) -> ProjectDeployer:
        """Add a single-page app built with Node and served by nginx (``build_dir``, ``nginx_config``, ...)."""
        return self.add("react", name, **options)

    def add_service(self, name: str, **options: Any) -> ProjectDeployer:
        """Add a service from an ``image``, a ``dockerfile``, ``dockerfile_content`` or a ``git_repo``."""
        return self.add("generic", name, **options)

    def __getattr__(self, attr: str) -> Any:
        # Service types from third-party plugins get their fluent method too: add_memcached().
        if attr.startswith("add_"):
            stype = self.registry.by_api_method(attr)
            if stype is not None:
                type_name = stype.name

                def add_method(name: str | None = None, **options: Any) -> ProjectDeployer:
                    return self.add(type_name, name, **options)

                add_method.__doc__ = stype.description
                return add_method
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    def update_service(self, name: str, **options: Any) -> ProjectDeployer:
        """Change some settings of ``name``. ``None`` resets a setting to its default; a table
        given for a table setting (``env_vars``, ``volumes``, ``backup_config``,
        ``auto_scaling``) is merged key by key (a ``None`` value removes a key)."""
        services_data = self._doc.unwrap().get("services", {})
        if name not in services_data:
            raise ConfigError([f"services.{name}: no such service (services: {', '.join(services_data) or 'none'})"], source=str(self._path))
        stype = self.registry.service_types[self._project.services[name].type]
        self._check_options(stype, name, options)

        doc = tomlkit.parse(tomlkit.dumps(self._doc))
        table = _services_table(doc)[name]
        pending: list[_PendingSecret] = []
        for key, value in options.items():
            if isinstance(value, Mapping) and isinstance(table.get(key), Mapping) and not isinstance(table.get(key), bool):
                # Tables are merged key by key (env_vars, volumes, backup_config, auto_scaling):
                # update_service(backup_config={"retention_days": 30}) keeps the schedule.
                current = table[key]
                for sub_key, sub_value in value.items():
                    if sub_value is None:
                        current.pop(sub_key, None)
                    else:
                        protected = self._protect(name, key, {sub_key: sub_value}, pending)[sub_key]
                        current[sub_key] = _to_toml(protected, inline=isinstance(current, InlineTable))
            elif value is None:
                table.pop(key, None)
            else:
                table[key] = _to_toml(self._protect(name, key, value, pending))
        self._commit(doc, pending)
        return self

    def delete_service(self, name: str) -> ProjectDeployer:
        """Remove ``name`` from the project file (running containers go at the next deploy).

        Then the secret files only ``name`` used are removed; one another service references,
        or a database password a deployed environment still needs, is kept.
        ``last_secrets_cleanup`` says which (``.lines()``); each line is also logged.
        """
        doc = tomlkit.parse(tomlkit.dumps(self._doc))
        services = _services_table(doc)
        if name not in services:
            raise ConfigError([f"services.{name}: no such service"], source=str(self._path))
        del services[name]
        before = self._project
        self._commit(doc, [])
        # Only after the file is written: a refused removal leaves every secret in place.
        from ..addons.secrets_store import forget_service_secrets

        self.last_secrets_cleanup = forget_service_secrets(self.name, name, before, self._project)
        for line in self.last_secrets_cleanup.lines():
            log.info("%s: %s", name, line)
        return self

    # --- derived views ----------------------------------------------------------------------

    def services(self, env: str | None = None) -> Mapping[str, ServiceSpec]:
        """Every service, as ``env`` sees it (with that environment's overrides)."""
        return self._project.services_for(env)

    def startup_orders(self, env: str | None = None) -> dict[str, int]:
        """Each service's startup order (``depends_on`` gives max(dependencies) + 1)."""
        specs = self.services(env)
        return startup_orders({n: s.depends_on for n, s in specs.items()}, {n: s.startup_order for n, s in specs.items()})

    def startup_groups(self, env: str | None = None) -> list[list[str]]:
        """Services grouped by startup order; a group is deployed in parallel."""
        return startup_groups(self.startup_orders(env))

    def ports(self, env: str) -> dict[str, PortAssignment]:
        """The host and internal ports of every service in ``env``, assigned once and recorded
        in ``{home}/{project}/{env}/config/ports.json`` so they never move."""
        store = PortStore(paths.env_dir(self.name, env, "config") / "ports.json")
        return store.assign(self.name, env, {n: s.port for n, s in self.services(env).items()})

    def build(self, env: str = "dev", push: bool = False, *, services: list[str] | None = None, log: Callable[[str], None] | None = None) -> dict[str, BuiltImage]:
        """Build the images of every buildable service (or of ``services``) for ``env``.

        Sources come from ``build_context`` or a git checkout at the service's ref; Dockerfiles
        are the user's or generated. With ``push=True`` each image is pushed to the project's
        registry (or Docker Hub user) and its digest returned. Unchanged services are reused.
        """
        from ..plugins import load_plugins
        from .build import ProjectBuilder

        manager = self._manager if self._manager is not None else load_plugins()
        builder = ProjectBuilder(self._project, env, manager, log=log or (lambda line: print(line, flush=True)))
        ordered = [name for group in self.startup_groups(env) for name in group]
        if services is not None:
            ordered = [name for name in ordered if name in services] + [n for n in services if n not in ordered]
        else:
            from .build import is_buildable

            specs = self.services(env)
            ordered = [name for name in ordered if is_buildable(specs[name])]
        return builder.build(services=ordered, push=push)

    # --- operations -----------------------------------------------------------------------

    def _operations(self, log: Callable[[str], None] | None = None) -> Operations:
        from ..plugins import load_plugins
        from .operations import Operations

        manager = self._manager if self._manager is not None else load_plugins()
        return Operations(self._project, manager, self.registry, log=log)

    def deploy(
        self,
        env: str = "dev",
        service: str | None = None,
        build: bool = True,
        *,
        dry_run: bool = False,
        lock_wait: float = 0.0,
        log: Callable[[str], None] | None = None,
    ) -> DeployReport | DeployPlan:
        """Deploy ``env`` (or one ``service``) with zero-downtime switches.

        Builds first unless ``build=False`` (then the images must exist). With ``dry_run=True``
        returns the plan and changes nothing. A deploy that fails leaves the old version serving.
        """
        ops = self._operations(log)
        if dry_run:
            return ops.plan(env, service)
        if build:
            from .build import is_buildable

            specs = self.services(env)
            targets = [service] if service else [n for n, s in specs.items() if is_buildable(s)]
            targets = [n for n in targets if is_buildable(specs[n])]
            if targets:
                self.build(env=env, services=targets, log=log)
        return ops.deploy(env, service=service, lock_wait=lock_wait)

    def plan(self, env: str = "dev", service: str | None = None) -> DeployPlan:
        """What a deploy of ``env`` would change (nothing is changed)."""
        return self._operations().plan(env, service)

    def status(self, env: str = "dev") -> dict[str, dict[str, int]]:
        """Servers per zone, as the seed shows it: ``{zone: {active, reserve, destroying, total}}``."""
        return self._operations().zone_status(env)

    def service_status(self, env: str = "dev") -> list[dict[str, Any]]:
        """One row per service: container, state, health, slot, release, image, ports, URL."""
        return self._operations().service_status(env)

    def logs(self, service: str, env: str = "dev", lines: int = 100) -> list[str]:
        """The last ``lines`` log lines of the container serving ``service``."""
        return list(self._operations().logs(env, service, lines))

    def print_logs(self, service: str, env: str = "dev", lines: int = 100) -> None:
        """Print the last ``lines`` log lines of ``service``."""
        for line in self.logs(service, env, lines):
            print(line)

    def run_job(self, service: str, env: str = "dev", wait: bool = True, *, output: Callable[[str], None] | None = None, log: Callable[[str], None] | None = None) -> int:
        """Run the scheduled service ``service`` now, outside its schedule.

        With ``wait=True`` its output lines go to ``output`` (default: printed) as they come and
        the run's exit code is returned; with ``wait=False`` it returns 0 once the run started.
        A run already in progress is an error (runs never overlap).
        """
        return self._operations(log).run_job(env, service, wait=wait, output=output)

    def rollback(
        self, env: str = "dev", service: str | None = None, version: str | None = None, *,
        timestamp: str | None = None, log: Callable[[str], None] | None = None,
    ) -> Any:
        """Redeploy ``service`` with its previous release's image (or release/version ``version``).

        With ``timestamp`` (``"latest"`` or ``"YYYYmmdd_HHMMSS"``) a stateful service's *data*
        is restored from that backup instead (see ``BackupManager.restore``; causes downtime),
        and the restore's report is returned.
        """
        if service is None:
            raise ConfigError(["rollback: name the service to roll back (service=...)"], source=str(self._path))
        if timestamp is not None:
            if version is not None:
                raise ConfigError(["rollback: give version= (an image release) or timestamp= (a data backup), not both"], source=str(self._path))
            from .backupmanager import BackupManager

            return BackupManager(self, env, log=log).restore(service, timestamp)
        return self._operations(log).rollback(env, service, version)

    def cleanup_git_checkouts(self, env: str | None = None) -> list[Path]:
        """Delete this project's git checkouts (of one environment, or all); returns what went."""
        from .gitmanager import cleanup_git_checkouts

        return cleanup_git_checkouts(self.name, env)

    # --- internals --------------------------------------------------------------------------

    def _check_options(self, stype: ServiceType, name: str, options: Mapping[str, Any]) -> None:
        known = [a.name for a in spec_fields(stype.spec_class)]
        problems = []
        for key in options:
            if key not in known:
                import difflib  # only when there is a typo to explain

                hint = difflib.get_close_matches(key, known, n=1)
                suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
                problems.append(f"services.{name}.{key}: a {stype.name} service has no setting '{key}'{suffix}")
        if problems:
            raise ConfigError(problems, source=str(self._path))

    def _protect(self, service: str, key: str, value: Any, pending: list[_PendingSecret]) -> Any:
        """Swap secrets for references; the values are written to 0600 files on commit."""
        if key == "git_token" and isinstance(value, str) and not is_secret_ref(value):
            ref_name = f"{service}/git_token"
            pending.append(_PendingSecret(ref_name, value))
            return f"secret:{ref_name}"
        if key == "env_vars" and isinstance(value, Mapping):
            out = {}
            for env_key, env_value in value.items():
                if isinstance(env_value, str) and SECRET_ENV_RE.search(env_key) and env_value != "auto" and not is_secret_ref(env_value):
                    ref_name = f"{service}/env/{env_key}"
                    pending.append(_PendingSecret(ref_name, env_value))
                    out[env_key] = f"secret:{ref_name}"
                else:
                    out[env_key] = env_value
            return out
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return value

    def _commit(self, doc: tomlkit.TOMLDocument, pending: list[_PendingSecret]) -> None:
        """Validate ``doc`` (with provisional ``secret:`` references), store the pending secrets,
        put the references the secret plugin returned into ``doc``, and write it."""
        project = build_project(doc.unwrap(), source=str(self._path), registry=self.registry)
        try:
            on_disk = self._path.read_text(encoding="utf-8")
        except OSError:
            on_disk = None
        if on_disk != self._loaded_text:
            # Someone edited the file since we read it: writing now would silently undo that.
            raise ProjectFileChanged(f"{self._path}: the file changed on disk since it was loaded; call reload() (or load the project again) and retry")
        if pending:
            from ..plugins import load_plugins

            manager = self._manager if self._manager is not None else load_plugins()
            for secret in pending:
                ref = manager.hook.store_secret(project=project.name, env=None, name=secret.name, value=secret.value)
                if ref is None:
                    raise SecretError(f"no plugin stored the secret {secret.name} (is the secrets_store plugin loaded?); nothing was written")
                if ref != secret.provisional:
                    _replace_value(doc, secret.provisional, ref)
            if any(s.provisional for s in pending):
                project = build_project(doc.unwrap(), source=str(self._path), registry=self.registry)
        write_document(self._path, doc)
        self._doc = doc
        self._loaded_text = tomlkit.dumps(doc)
        self._project = project
        warn_plaintext_credentials(project)


class ProjectFileChanged(ProjectDeployerError):
    """The project file was edited by someone else since this object read it."""

    exit_code = 2


def _refuse_overwrite(target: Path) -> None:
    try:
        data = read_document(target).unwrap()
    except ConfigError:
        raise ProjectExists(f"{target}: a project file is already there (and it is invalid); pass overwrite=True to replace it") from None
    count = len(data.get("services", {}) or {})
    if count:
        raise ProjectExists(
            f"{target}: project {data.get('project', {}).get('name', '?')!r} already exists with {count} service(s); "
            "load it with ProjectDeployer(name) or pass overwrite=True"
        )


def _replace_value(container: Any, old: str, new: str) -> None:
    """Replace every string value ``old`` in a tomlkit container by ``new`` (in place)."""
    for key, value in list(container.items()):
        if isinstance(value, str) and value == old:
            container[key] = new
        elif isinstance(value, Mapping):
            _replace_value(value, old, new)


def _services_table(doc: tomlkit.TOMLDocument) -> Table:
    if "services" not in doc:
        doc.add("services", tomlkit.table(is_super_table=True))
    return doc["services"]  # type: ignore[return-value]


def _to_toml(value: Any, *, inline: bool = False) -> Any:
    """A TOML item for ``value``. Tables that fit on a line are inline; longer ones become
    sub-tables. The choice is made from the top down: inside an inline table, everything stays
    inline (TOML forbids a table there)."""
    if isinstance(value, str) and "\n" in value:
        return tomlkit.string(value, multiline=True)
    if isinstance(value, Mapping):
        one_line = tomlkit.inline_table()
        for key, item in value.items():
            one_line[str(key)] = _to_toml(item, inline=True)
        if inline or (len(one_line.as_string()) <= 80 and not any(isinstance(v, str) and "\n" in v for v in value.values())):
            return one_line
        # Too long for one line: a sub-table, closed by a blank line like the tables around it.
        table = tomlkit.table()
        for key, item in value.items():
            table[str(key)] = _to_toml(item)
        table.add(tomlkit.nl())
        return table
    if isinstance(value, (list, tuple)):
        array = tomlkit.array()
        array.extend(_to_toml(v, inline=True) for v in value)
        return array
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
