"""``ProjectDeployer``: the seed's fluent API over a project file.

Every method that changes the project validates the whole result first and writes nothing if
it is invalid; then it writes the file atomically through tomlkit, so comments and ordering the
user put in the file survive. Secrets given to the API (``git_token``, secret-looking
``env_vars``) go to 0600 files; the project file only ever holds a reference to them.
"""

from __future__ import annotations

import datetime
import difflib
import logging
import os
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import attrs
import pluggy
import tomlkit
from tomlkit.items import InlineTable, Table

from ..build.builder import ProjectBuilder, is_buildable
from ..build.git import cleanup_git_checkouts
from ..core import paths
from ..core.errors import ConfigError, ProjectDeployerError, ProjectExists, ProjectNotFound, SecretError
from ..core.model import Project, ServiceSpec, spec_fields
from ..core.registry import Registry, check_api_methods
from ..core.servicetype import ServiceType
from ..deploy.ports import PortAssignment, PortStore
from ..environment.environment import Environment
from ..plugins import get_registry, load_plugins
from ..project.credentials import warn_plaintext_credentials
from ..project.file import build_project, read_document, read_project_text, write_document
from ..project.order import startup_groups, startup_orders
from ..project.validation import PROJECT_NAME_RULE, env_name_problem, is_secret_ref, valid_name, valid_project_name, warn_project_name
from ..secrets.inventory import forget_service_secrets

if TYPE_CHECKING:
    from ..backups.manager import RestoreReport
    from ..build.builder import BuiltImage
    from ..core.plan import Plan
    from ..deploy.deployment import Deployment, DeployReport
    from ..destroy.teardown import DestroyPlan, TeardownReport

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
        by_path = path is not None or (isinstance(name, (str, os.PathLike)) and _looks_like_path(name))
        if path is None:
            path = name if by_path else paths.project_file(_project_name("ProjectDeployer", name))
        self._path = _path_argument("ProjectDeployer", path)
        self._manager = manager
        if registry is not None:
            check_api_methods(registry, RESERVED_API_METHODS)
        self._registry = registry if registry is not None else (get_registry(manager, reserved_api_methods=RESERVED_API_METHODS) if manager is not None else None)
        if not self._path.exists():
            raise _not_found(self._path, None if by_path else os.fspath(name))
        self._doc = read_document(self._path)
        self._loaded_text = tomlkit.dumps(self._doc)
        self._project = build_project(self._doc.unwrap(), source=str(self._path), registry=self.registry)
        warn_plaintext_credentials(self._project)
        warn_project_name(self._project)

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
        replace_empty: bool = True,
    ) -> ProjectDeployer:
        """Create a project file and return the project.

        An existing project that has services is never overwritten unless ``overwrite=True``;
        one without services (a fresh ``create``) is replaced, unless ``replace_empty=False``
        (the command line's ``init``, which never replaces a file without ``--overwrite``).
        """
        # The name is checked before it becomes a path (paths.project_file); with a path given,
        # validation names it like any project file's name (project.name).
        name = _project_name("create", name, valid=path is None)
        _bool_argument("create", "overwrite", overwrite)
        target = _path_argument("create", path) if path is not None else paths.project_file(name)
        settings: dict[str, Any] = {"name": name}
        for key, value in (("docker_hub_user", docker_hub_user), ("registry", registry), ("version", version), ("default_server_ip", default_server_ip), ("description", description)):
            if value is not None:
                _check_value(f"create({key}=...)", value)
                settings[key] = value
        if target.exists() and not overwrite:
            _refuse_overwrite(target, replace_empty=replace_empty)

        reg = get_registry(manager, reserved_api_methods=RESERVED_API_METHODS)
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
        return self._registry if self._registry is not None else get_registry(reserved_api_methods=RESERVED_API_METHODS)

    def reload(self) -> ProjectDeployer:
        """Read the file again (after someone edited it)."""
        self._doc = read_document(self._path)
        self._loaded_text = tomlkit.dumps(self._doc)
        self._project = build_project(self._doc.unwrap(), source=str(self._path), registry=self.registry)
        warn_plaintext_credentials(self._project)
        warn_project_name(self._project)
        return self

    def __repr__(self) -> str:
        return f"ProjectDeployer({self.name!r}, services={list(self._project.services)})"

    # --- the fluent API ---------------------------------------------------------------------

    def add(self, type_name: str, name: str | None = None, /, **options: Any) -> ProjectDeployer:
        """Add (or replace) a service of ``type_name``; returns ``self`` for chaining."""
        if not isinstance(type_name, str):
            raise _argument_error(f"add(type_name={_shown(type_name)})", f"expected a service type's name, a string (known: {', '.join(sorted(self.registry.service_types))})")
        stype = self.registry.service_type(type_name)
        if stype is None:
            raise ConfigError([f"unknown service type {type_name!r} (known: {', '.join(sorted(self.registry.service_types))})"], source=str(self._path))
        method = stype.api_method or "add"
        name = name or stype.default_name
        if not name:
            raise ConfigError([f"{method}: a service name is required"], source=str(self._path))
        if not isinstance(name, str):
            raise _argument_error(f"{method}(name={_shown(name)})", f"a service name is a string, got {_type_name(name)}")
        if not valid_name(name):
            raise ConfigError([f"services.{name}: not a valid service name (lower-case letters, digits, _ and -, starting with a letter, at most 40)"], source=str(self._path))
        self._check_options(stype, name, options)
        for key, value in options.items():
            _check_value(f"services.{name}.{key}", value, top=True, source=str(self._path))

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
            raise UnknownServiceType([f"{attr}: no service type {attr[4:]!r} ({self._known_add_methods()})"])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    def _known_add_methods(self) -> str:
        """``known types: generic (add_service), postgres (add_postgres), ...``"""
        types = self.registry.service_types
        named = [f"{n} ({t.api_method})" if t.api_method else n for n, t in sorted(types.items())]
        return f"known types: {', '.join(named)}; or add(TYPE, NAME, ...)"

    def update_service(self, name: str, **options: Any) -> ProjectDeployer:
        """Change some settings of ``name``. ``None`` resets a setting to its default; a table
        given for a table setting (``env_vars``, ``volumes``, ``backup_config``,
        ``auto_scaling``) is merged key by key (a ``None`` value removes a key)."""
        self._check_service("update_service", name, "name")
        stype = self.registry.service_types[self._project.services[name].type]
        self._check_options(stype, name, options)
        for key, value in options.items():
            # None resets a setting, and removes a key of a merged table: allowed one level down.
            _check_value(f"services.{name}.{key}", value, top=True, none_in_tables=True, source=str(self._path))

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
                if isinstance(value, Mapping):  # a new table: its None values remove nothing
                    value = {k: v for k, v in value.items() if v is not None}
                table[key] = _to_toml(self._protect(name, key, value, pending))
        self._commit(doc, pending)
        return self

    def delete_service(self, name: str) -> ProjectDeployer:
        """Remove ``name`` from the project file (running containers go at the next deploy).

        Then the secret files only ``name`` used are removed; one another service references,
        or a database password a deployed environment still needs, is kept.
        ``last_secrets_cleanup`` says which (``.lines()``); each line is also logged.
        """
        self._check_service("delete_service", name, "name")
        doc = tomlkit.parse(tomlkit.dumps(self._doc))
        services = _services_table(doc)
        del services[name]
        before = self._project
        self._commit(doc, [])
        # Only after the file is written: a refused removal leaves every secret in place.
        self.last_secrets_cleanup = forget_service_secrets(self.name, name, before, self._project)
        for line in self.last_secrets_cleanup.lines():
            log.info("%s: %s", name, line)
        return self

    # --- derived views ----------------------------------------------------------------------

    def services(self, env: str | None = None) -> Mapping[str, ServiceSpec]:
        """Every service, as ``env`` sees it (with that environment's overrides)."""
        if env is not None:
            _env_argument("services", env)
        return self._project.services_for(env)

    def startup_orders(self, env: str | None = None) -> dict[str, int]:
        """Each service's startup order (``depends_on`` gives max(dependencies) + 1)."""
        if env is not None:
            _env_argument("startup_orders", env)
        specs = self.services(env)
        return startup_orders({n: s.depends_on for n, s in specs.items()}, {n: s.startup_order for n, s in specs.items()})

    def startup_groups(self, env: str | None = None) -> list[list[str]]:
        """Services grouped by startup order; a group is deployed in parallel."""
        return startup_groups(self.startup_orders(env))

    def ports(self, env: str) -> dict[str, PortAssignment]:
        """The host and internal ports of every service in ``env``, assigned once and recorded
        in ``{home}/{project}/{env}/config/ports.json`` so they never move."""
        _env_argument("ports", env)
        store = PortStore(paths.env_dir(self.name, env, "config") / "ports.json")
        return store.assign(self.name, env, {n: s.port for n, s in self.services(env).items()})

    def build(self, env: str = "dev", push: bool = False, *, services: list[str] | None = None, log: Callable[[str], None] | None = None) -> dict[str, BuiltImage]:
        """Build the images of every buildable service (or of ``services``) for ``env``.

        Sources come from ``build_context`` or a git checkout at the service's ref; Dockerfiles
        are the user's or generated. With ``push=True`` each image is pushed to the project's
        registry (or Docker Hub user) and its digest returned. Unchanged services are reused.
        """
        _env_argument("build", env)
        _bool_argument("build", "push", push)
        if services is not None:
            self._check_service_list("build", services)
        manager = self._manager if self._manager is not None else load_plugins()
        builder = ProjectBuilder(self._project, env, manager, registry=self.registry, log=log or (lambda line: print(line, flush=True)))
        ordered = [name for group in self.startup_groups(env) for name in group]
        if services is not None:
            ordered = [name for name in ordered if name in services] + [n for n in services if n not in ordered]
        else:
            specs = self.services(env)
            ordered = [name for name in ordered if is_buildable(specs[name])]
        return builder.build(services=ordered, push=push)

    # --- environments ---------------------------------------------------------------------

    def environment(self, env: str = "dev", *, log: Callable[[str], None] | None = None) -> Environment:
        """The environment ``env`` of this project as it is deployed: its provider, servers and
        locks (:class:`~projectdeployer.environment.environment.Environment`). The deploy path,
        backups, rotation, sync, destroy and the command line work on it; ``log`` receives
        their progress lines (default: printed).
        """
        _env_argument("environment", env)
        manager = self._manager if self._manager is not None else load_plugins()
        return Environment(self._project, env, manager, self.registry, log=log)

    def deployment(self, env: str = "dev", *, log: Callable[[str], None] | None = None) -> Deployment:
        """The deploy path of ``env`` (:class:`~projectdeployer.deploy.deployment.Deployment`):
        plan, deploy, rollback, status, logs and jobs, on its :meth:`environment`."""
        from ..deploy.deployment import Deployment  # noqa: PLC0415 - deferred: the deploy machinery (start-up: 0.08-0.15 s more for the commands that only edit the project file)

        return Deployment(self.environment(env, log=log))

    # What deploy returns follows from dry_run: a report, or (dry_run=True) the plan.
    @overload
    def deploy(
        self,
        env: str = ...,
        service: str | None = ...,
        build: bool = ...,
        *,
        dry_run: Literal[False] = ...,
        lock_wait: float = ...,
        log: Callable[[str], None] | None = ...,
    ) -> DeployReport: ...
    @overload
    def deploy(
        self,
        env: str = ...,
        service: str | None = ...,
        build: bool = ...,
        *,
        dry_run: Literal[True],
        lock_wait: float = ...,
        log: Callable[[str], None] | None = ...,
    ) -> Plan: ...
    @overload
    def deploy(
        self,
        env: str = ...,
        service: str | None = ...,
        build: bool = ...,
        *,
        dry_run: bool,
        lock_wait: float = ...,
        log: Callable[[str], None] | None = ...,
    ) -> DeployReport | Plan: ...
    def deploy(
        self,
        env: str = "dev",
        service: str | None = None,
        build: bool = True,
        *,
        dry_run: bool = False,
        lock_wait: float = 0.0,
        log: Callable[[str], None] | None = None,
    ) -> DeployReport | Plan:
        """Deploy ``env`` (or one ``service``) with zero-downtime switches.

        Builds first unless ``build=False`` (then the images must exist). With ``dry_run=True``
        returns the plan and changes nothing. A deploy that fails leaves the old version serving.
        """
        _env_argument("deploy", env)
        if service is not None:
            self._check_service("deploy", service)
        for flag, value in (("build", build), ("dry_run", dry_run)):
            _bool_argument("deploy", flag, value)
        if isinstance(lock_wait, bool) or not isinstance(lock_wait, (int, float)) or not lock_wait >= 0:
            raise _argument_error(f"deploy(lock_wait={_shown(lock_wait)})", "expected seconds to wait for the deploy lock, a number >= 0")
        deployment = self.deployment(env, log=log)
        if dry_run:
            return deployment.plan(service, build=build)
        if build:
            specs = self.services(env)
            targets = [service] if service else [n for n, s in specs.items() if is_buildable(s)]
            targets = [n for n in targets if is_buildable(specs[n])]
            if targets:
                self.build(env=env, services=targets, log=log)
        return deployment.deploy(service=service, lock_wait=lock_wait)

    def plan(self, env: str = "dev", service: str | None = None) -> Plan:
        """What a deploy of ``env`` would change (nothing is changed)."""
        _env_argument("plan", env)
        if service is not None:
            self._check_service("plan", service)
        return self.deployment(env).plan(service)

    def status(self, env: str = "dev") -> dict[str, dict[str, int]]:
        """Servers per zone, as the seed shows it: ``{zone: {active, reserve, destroying, total}}``."""
        _env_argument("status", env)
        return self.deployment(env).zone_status()

    def service_status(self, env: str = "dev") -> list[dict[str, Any]]:
        """One row per service: container, state, health, slot, release, image, ports, URL."""
        _env_argument("service_status", env)
        return self.deployment(env).service_status()

    def logs(self, service: str, env: str = "dev", lines: int = 100) -> list[str]:
        """The last ``lines`` log lines of the container serving ``service``."""
        return list(self._log_lines("logs", service, env, lines, follow=False))

    def stream_logs(self, service: str, env: str = "dev", lines: int = 100, *, follow: bool = False) -> Iterator[str]:
        """The last ``lines`` log lines of ``service`` as they are read; with ``follow=True``
        new lines keep coming until the caller stops."""
        return self._log_lines("stream_logs", service, env, lines, follow=follow)

    def _log_lines(self, method: str, service: str, env: str, lines: int, *, follow: bool) -> Iterator[str]:
        # The arguments are checked here, before the first line is asked for (``method`` names
        # the public call in errors).
        self._check_service(method, service)
        _env_argument(method, env)
        if isinstance(lines, bool) or not isinstance(lines, int) or lines < 0:
            # 0 is fine: with follow, only the lines still to come.
            raise _argument_error(f"{method}(lines={_shown(lines)})", "expected a number of lines, an integer >= 0", cli=f"--lines {_shown(lines)}: expected an integer >= 0")
        _bool_argument(method, "follow", follow)
        return iter(self.deployment(env).logs(service, lines, follow))

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
        self._check_service("run_job", service)
        _env_argument("run_job", env)
        _bool_argument("run_job", "wait", wait)
        return self.deployment(env, log=log).run_job(service, wait=wait, output=output)

    def rollback(
        self,
        env: str = "dev",
        service: str | None = None,
        version: str | None = None,
        *,
        timestamp: str | None = None,
        log: Callable[[str], None] | None = None,
    ) -> Any:
        """Redeploy ``service`` with its previous release's image (or release/version ``version``).

        With ``timestamp`` (``"latest"`` or ``"YYYYmmdd_HHMMSS"``) a stateful service's *data*
        is restored from that backup instead (see ``BackupManager.restore``; causes downtime),
        and the restore's report is returned.
        """
        if service is None:
            raise ConfigError(["rollback: name the service to roll back (service=...)"], source=str(self._path))
        _env_argument("rollback", env)
        self._check_service("rollback", service)
        for arg, value in (("version", version), ("timestamp", timestamp)):
            if value is not None and not isinstance(value, str):
                raise _argument_error(f"rollback({arg}={_shown(value)})", f"expected a string, got {_type_name(value)}")
        if timestamp is not None:
            if version is not None:
                raise ConfigError(["rollback: give version= (an image release) or timestamp= (a data backup), not both"], source=str(self._path))
            return self._restore(env, service, timestamp, log)
        return self.deployment(env, log=log).rollback(service, version)

    # What destroy returns follows from dry_run: a report, or (dry_run=True) the plan.
    @overload
    def destroy(
        self,
        env: str,
        with_data: bool = ...,
        *,
        dry_run: Literal[False] = ...,
        agreed: DestroyPlan | None = ...,
        lock_wait: float = ...,
        log: Callable[[str], None] | None = ...,
    ) -> TeardownReport: ...
    @overload
    def destroy(
        self,
        env: str,
        with_data: bool = ...,
        *,
        dry_run: Literal[True],
        agreed: DestroyPlan | None = ...,
        lock_wait: float = ...,
        log: Callable[[str], None] | None = ...,
    ) -> DestroyPlan: ...
    @overload
    def destroy(
        self,
        env: str,
        with_data: bool = ...,
        *,
        dry_run: bool,
        agreed: DestroyPlan | None = ...,
        lock_wait: float = ...,
        log: Callable[[str], None] | None = ...,
    ) -> TeardownReport | DestroyPlan: ...
    def destroy(
        self,
        env: str,
        with_data: bool = False,
        *,
        dry_run: bool = False,
        agreed: DestroyPlan | None = None,
        lock_wait: float = 0.0,
        log: Callable[[str], None] | None = None,
    ) -> TeardownReport | DestroyPlan:
        """Take ``env`` down for good: every container of the environment (services, jobs,
        one-off containers, the scheduler, the router), its network, the project's built images
        no other environment uses, its state here (ports, releases, locks). Data volumes and
        backups are kept unless ``with_data=True``; on servers, ``with_data=True`` destroys the
        servers through their provider. A deploy afterwards starts fresh on the data kept.

        Asks nothing (the command line does). ``dry_run=True`` returns the
        :class:`~projectdeployer.destroy.teardown.DestroyPlan` and changes nothing; ``agreed``
        (a plan shown to someone) makes it refuse, changing nothing, when there is now more to
        remove. An environment not in the project file that left no trace is an error; one with
        nothing left is not (the report removes nothing).
        """
        _env_argument("destroy", env)
        for flag, value in (("with_data", with_data), ("dry_run", dry_run)):
            _bool_argument("destroy", flag, value)
        if isinstance(lock_wait, bool) or not isinstance(lock_wait, (int, float)) or not lock_wait >= 0:
            raise _argument_error(f"destroy(lock_wait={_shown(lock_wait)})", "expected seconds to wait for the deploy lock, a number >= 0")
        from ..destroy.teardown import DestroyPlan, Teardown  # noqa: PLC0415 - deferred: destroy and the deploy machinery (start-up: 0.05-0.15 s more for the commands that only edit the project file)

        if agreed is not None and not isinstance(agreed, DestroyPlan):
            raise _argument_error(f"destroy(agreed={_shown(agreed)})", f"expected the TeardownPlan of destroy(dry_run=True), got {_type_name(agreed)}")
        teardown = Teardown(self.environment(env, log=log), log=log)
        if dry_run:
            return teardown.plan(with_data)
        return teardown.run(with_data, agreed=agreed, lock_wait=lock_wait)

    def cleanup_git_checkouts(self, env: str | None = None) -> list[Path]:
        """Delete this project's git checkouts (of one environment, or all); returns what went."""
        if env is not None:
            _env_argument("cleanup_git_checkouts", env)
        return cleanup_git_checkouts(self.name, env)

    # --- internals --------------------------------------------------------------------------

    def _restore(self, env: str, service: str, timestamp: str, log: Callable[[str], None] | None) -> RestoreReport:
        """``rollback(timestamp=...)``: ``service``'s data restored from a backup."""
        from ..backups.manager import BackupManager  # noqa: PLC0415 - deferred: backups and the deploy machinery (start-up: 0.08-0.15 s more for the commands that only edit the project file)

        return BackupManager(self.environment(env, log=log), log=log).restore(service, timestamp)

    def _check_service(self, method: str, name: Any, arg: str = "service") -> None:
        """Refuse a service argument that is not a service of this project.

        ``update_service``/``delete_service`` (``arg="name"``) name it as the file's key
        (``services.nope``); the operations name the call (``deploy(service='nope')``).
        """
        if not isinstance(name, str):
            raise _argument_error(f"{method}({arg}={_shown(name)})", f"expected a service name, a string, got {_type_name(name)}")
        known = list(self._project.services)
        if name in known:
            return
        listed = f"(services: {', '.join(known) or 'none'})"
        if arg == "name":
            raise ConfigError([f"services.{name}: no such service {listed}"], source=str(self._path))
        raise _argument_error(f"{method}({arg}={_shown(name)})", f"no such service {listed}", cli=f"no service {_shown(name)} in project {self.name} {listed}")

    def _check_service_list(self, method: str, names: Any, arg: str = "services") -> None:
        """Refuse anything but a list (or tuple, set) of this project's service names."""
        if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple, set, frozenset)):
            raise _argument_error(f"{method}({arg}={_shown(names)})", f"expected a list of service names, got {_type_name(names)}")
        for name in names:
            self._check_service(method, name, "service")

    def _check_options(self, stype: ServiceType, name: str, options: Mapping[str, Any]) -> None:
        known = [a.name for a in spec_fields(stype.spec_class)]
        problems = []
        for key in options:
            if key not in known:
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
            # The same guarded read as loading (a FIFO, a device or bytes that are not UTF-8 put
            # there meanwhile are "changed", never a hang or a traceback).
            on_disk: str | None = read_project_text(self._path)
        except ProjectDeployerError:
            on_disk = None
        if on_disk != self._loaded_text:
            # Someone edited the file since we read it: writing now would silently undo that.
            raise _both(
                ProjectFileChanged,
                f"{self._path}: the file changed on disk since it was loaded; call reload() (or load the project again) and retry",
                f"{self._path}: the file changed on disk while this command ran; nothing was written, run the command again",
            )
        if pending:
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


def _refuse_overwrite(target: Path, *, replace_empty: bool = True) -> None:
    """Raise :class:`ProjectExists` unless ``target`` may be replaced: it is a valid project file
    without services and ``replace_empty`` allows it. Phrased for both the API and the CLI."""
    try:
        data = read_document(target).unwrap()
    except ConfigError:
        raise _both(
            ProjectExists,
            f"{target}: a project file is already there (and it is invalid); pass overwrite=True to replace it",
            f"{target}: a project file is already there (and it is invalid); pass --overwrite to replace it",
        ) from None
    services = data.get("services")
    count = len(services) if isinstance(services, Mapping) else 0
    settings = data.get("project")
    project = settings.get("name", "?") if isinstance(settings, Mapping) else "?"
    if count:
        raise _both(
            ProjectExists,
            f"{target}: project {_shown(project)} already exists with {count} service(s); load it with ProjectDeployer(name) or pass overwrite=True",
            f"{target}: project {_shown(project)} already exists with {count} service(s); pass --overwrite to replace it",
        )
    if not replace_empty:
        raise _both(
            ProjectExists,
            f"{target}: project {_shown(project)} already exists (no services yet); pass overwrite=True to replace it",
            f"{target}: project {_shown(project)} already exists (no services yet); pass --overwrite to replace it",
        )


def _both(cls: type[ProjectDeployerError], api: str, cli: str) -> ProjectDeployerError:
    """An error of ``cls`` phrased for Python callers, with its command-line phrasing."""
    error = cls(api)
    error.cli_message = cli
    return error


def _not_found(path: Path, name: str | None) -> ProjectNotFound:
    """No project file at ``path`` (loaded by project ``name``, or by path when ``None``)."""
    if name is None:
        api = f"ProjectDeployer.create(NAME, path={str(path)!r})"
        cli = f"`projectdeployer --file {shlex.quote(str(path))} init NAME`"
    else:
        api = f"ProjectDeployer.create({name!r})"
        cli = f"`projectdeployer init {shlex.quote(name)}`"
    return _both(ProjectNotFound, f"{path}: no project file (create it with {api})", f"{path}: no project file (create it with {cli})")  # type: ignore[return-value]


class UnknownServiceType(ConfigError, AttributeError):
    """``project.add_mysql(...)``: no service type has that fluent method.

    A :class:`ConfigError` (a caller's mistake, listing the known types) that is also an
    ``AttributeError``, so ``hasattr(project, "add_mysql")`` stays ``False``.
    """


#: Longest shown repr of a caller's value (a 1 MiB argument must not become a 1 MiB line).
_SHOWN = 60
#: Types that have a TOML form; anything else given as a setting is a caller's mistake.
_TOML_SCALARS = (str, bool, int, float, datetime.date, datetime.time)


def _shown(value: Any) -> str:
    """``value`` for an error message: its repr (escapes control characters), shortened."""
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 20]}...{text[-12:]}"


def _type_name(value: Any) -> str:
    """``None``, ``int``, ``list``, ...: how a message names the type a caller gave."""
    return "None" if value is None else type(value).__name__


def _argument_error(call: str, problem: str, *, cli: str | None = None) -> ConfigError:
    """A caller's mistake in ``call`` (``deploy(env='../x')``): one line, both phrasings."""
    error = ConfigError([f"{call}: {problem}"])
    if cli is not None:
        error.cli_message = cli
    return error


def _env_argument(method: str, env: Any) -> str:
    """Refuse an environment name a project file would refuse (it becomes a directory name)."""
    problem = env_name_problem(env)
    if problem is None:
        return str(env)
    if not isinstance(env, str):
        problem = f"expected an environment name, a string, got {_type_name(env)}"
    raise _argument_error(f"{method}(env={_shown(env)})", problem, cli=f"environment {_shown(env)}: {problem}")


def _bool_argument(method: str, arg: str, value: Any) -> None:
    """Refuse a flag that is not ``True``/``False`` (``overwrite="no"`` would be true)."""
    if not isinstance(value, bool):
        raise _argument_error(f"{method}({arg}={_shown(value)})", f"expected True or False, got {_type_name(value)}")


def _project_name(method: str, name: Any, *, valid: bool = True) -> str:
    """Refuse a project name that is not a string, or (``valid``) not a valid name: it becomes a
    directory name under ``$PROJECTDEPLOYER_HOME``. A new project (``create``) gets no ``_``;
    an existing one that has it still loads (validation warns)."""
    if not isinstance(name, str):
        raise _argument_error(f"{method}(name={_shown(name)})", f"expected a project name, a string, got {_type_name(name)}")
    if method == "create" and valid_name(name) and not valid_project_name(name):
        problem = f"not a valid name for a new project ({PROJECT_NAME_RULE}): with '_', its containers could be named like another project's"
        raise _argument_error(f"{method}(name={_shown(name)})", problem, cli=f"project {_shown(name)}: {problem}")
    if valid and not (valid_project_name(name) if method == "create" else valid_name(name)):
        problem = f"not a valid project name ({PROJECT_NAME_RULE})"
        if method == "ProjectDeployer":
            problem += ", nor a path to a .toml file"
        raise _argument_error(f"{method}(name={_shown(name)})", problem, cli=f"project {_shown(name)}: {problem}")
    return name


def _path_argument(method: str, path: Any) -> Path:
    """``path`` as a :class:`Path`, or a :class:`ConfigError` naming the argument."""
    if isinstance(path, (str, os.PathLike)) and os.fspath(path):
        if "\x00" in str(os.fspath(path)):
            raise _argument_error(f"{method}(path={_shown(path)})", "a file path cannot hold a NUL character")
        return Path(path)
    raise _argument_error(f"{method}(path={_shown(path)})", f"expected a file path (str or os.PathLike), got {_type_name(path)}")


def _check_value(where: str, value: Any, *, top: bool = False, none_in_tables: bool = False, source: str | None = None) -> None:
    """Refuse a value with no TOML form: what cannot be written would fail half-way.

    ``None`` is allowed at the top (an unset option) and, with ``none_in_tables``, as a value
    of a table (``update_service`` removes that key). Table keys must be strings.
    """
    if value is None:
        if top:
            return
        raise ConfigError([f"{where}: None has no TOML form (leave the key out)"], source=source)
    if isinstance(value, (*_TOML_SCALARS, os.PathLike)):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError([f"{where}: keys must be strings, got {_type_name(key)} {_shown(key)}"], source=source)
            _check_value(f"{where}.{key}", item, top=none_in_tables, source=source)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(f"{where}[{i}]", item, source=source)
        return
    hint = "; give a list" if isinstance(value, (set, frozenset)) else ""
    raise ConfigError([f"{where}: expected a string, number, boolean, list or table, got {_type_name(value)} {_shown(value)}{hint}"], source=source)


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
    table: Table = doc["services"]
    return table


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


#: The built-in types whose fluent methods ProjectDeployer defines explicitly (the seed's API).
_BUILTIN_METHODS = {
    "add_postgres": "postgres",
    "add_redis": "redis",
    "add_opensearch": "opensearch",
    "add_python_service": "python",
    "add_nodejs_service": "nodejs",
    "add_react_service": "react",
    "add_service": "generic",
}
#: Every ``add_`` method ProjectDeployer defines, with the built-in type it adds (``None``: none):
#: a plugin's service type may not take one as its ``api_method``, or the method would hide it.
#: Handed to the registry (``get_registry(..., reserved_api_methods=...)``), which does not
#: import this module.
RESERVED_API_METHODS: Mapping[str, str | None] = {name: _BUILTIN_METHODS.get(name) for name in dir(ProjectDeployer) if name.startswith("add_")}
