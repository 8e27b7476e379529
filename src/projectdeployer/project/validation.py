"""Checks a structured project for what types alone cannot express.

Each check yields ``(key path, message)``; the loader turns them into ``file: key.path: message``
lines, all problems at once. Nothing here touches the disk or the network.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping, Sequence

from ..agents.scheduler import CronError, parse_cron
from ..core.errors import ConfigError, shown
from ..core.model import MAX_SERVERS, MIN_SERVERS, BuildSpec, DatabaseSpec, GenericSpec, HostSpec, Project, ServiceSpec
from ..core.registry import Registry
from ..core.safety import command_problem, image_template_problem
from ..core.servicetype import ServiceType
from .gitref import GitRepoError, parse_git_repo
from .order import find_cycle, startup_orders
from .ownnames import Shape, collisions
from .pathcheck import build_context_problem, host_volume_problem, inside_problem, secret_ref_problem
from .rendersafety import check_project_rendering, check_service_rendering

Problem = tuple[Sequence[str | int], str]

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}\Z")
#: No ``_`` in a project name: containers are ``{project}_{env}_{service}``, and project
#: ``a_b`` / env ``c`` / service ``d`` would be named like project ``a`` / env ``b`` / ``c_d``.
PROJECT_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}\Z")
ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}\Z")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
HUB_USER_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*\Z")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN_RE = re.compile(rf"^(\*\.)?({_LABEL}\.)+{_LABEL}\Z|^localhost\Z")
#: A secret reference is ``scheme:rest``: secret:, env:, file: from the built-in store, or a
#: scheme a secrets plugin answers (vault:...). A literal token has no such prefix.
SECRET_REF_RE = re.compile(r"^[a-z][a-z0-9+.-]{1,15}:(?!//)\S+\Z")
CPU_SIZES = (1, 2, 4, 8, 16, 32)
#: Upper bounds (docs/project-file.md, "Bounds and patterns"): a number past them is a typo.
MAX_SERVICES = 100
MAX_STARTUP_ORDER = 1000
MAX_RETENTION_DAYS = 3650
MAX_COOLDOWN = 86400
MAX_DRAIN_TIMEOUT = 3600
MAX_SHUTDOWN_TIMEOUT = 86400
MAX_RPS = 1_000_000.0
#: The provider of servers you already have (``[[environments.NAME.servers]]``).
HOSTS_PROVIDER = "ssh"
HOST_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?\Z")
ZONE_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?\Z")
SSH_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
ADDRESS_RE = re.compile(r"^[A-Za-z0-9.:-]{1,253}\Z")


def valid_name(name: str) -> bool:
    """Project and service names: lower-case letters, digits, ``_`` and ``-``, starting with a letter."""
    return bool(NAME_RE.match(name))


ENV_NAME_RULE = "lower-case letters, digits and -, starting with a letter, at most 20"


def env_name_problem(env: object) -> str | None:
    """Why ``env`` is not an environment name, or ``None``. Every ``env`` a command or an API
    call takes is checked so: it becomes a directory name (``../other`` would reach another
    project) and part of every container's name."""
    if not isinstance(env, str):
        return f"expected an environment name, a string, got {type(env).__name__}"
    if not ENV_NAME_RE.match(env):
        return f"not an environment name ({ENV_NAME_RULE})"
    return None


def require_env_name(owner: str, env: object) -> str:
    """``env`` when it is an environment name, else a ConfigError naming ``owner``'s argument
    (``SecretsRotator(env='Prod_1')``): what every class taking an ``env`` checks first."""
    problem = env_name_problem(env)
    if problem is not None:
        raise ConfigError([f"{owner}(env={shown(env)}): {problem}"])
    return str(env)


PROJECT_NAME_RULE = "lower-case letters, digits and -, starting with a letter, at most 40"


class ProjectNameWarning(UserWarning):
    """A project name that loads but that a new project may not have (``_``)."""


def warn_project_name(project: Project) -> None:
    """Warn once per load when the project's name has ``_``: projects created before names lost
    it still load, deploy and can be taken down, but should be renamed."""
    if valid_name(project.name) and not valid_project_name(project.name):
        where = f"{project.source}: " if project.source else ""
        warnings.warn(
            f"{where}project.name: {shown(project.name)} has '_': its containers ({project.name}_ENV_SERVICE) can be named like another project's; new projects may not have it, rename this one",
            ProjectNameWarning,
            stacklevel=3,
        )


def valid_project_name(name: str) -> bool:
    """Project names: like service names, without ``_`` (see :data:`PROJECT_NAME_RE`)."""
    return bool(PROJECT_NAME_RE.match(name))


def domain_problem(domain: str) -> str | None:
    """Why ``domain`` is not a usable host name, or ``None``."""
    if len(domain) > 253 or not DOMAIN_RE.match(domain):
        return f"'{domain}' is not a valid domain name (expected e.g. api.example.com)"
    if domain.rsplit(".", 1)[-1].isdigit():
        return f"'{domain}' is an IP address; a domain needs a name"
    return None


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a valid cron schedule, or ``None``.

    The scheduler agent's own parser decides (what validates is what runs: it refuses the
    croniter extensions it cannot run, e.g. seconds, ``L``/``W``/``#``); croniter is a second
    opinion, so nothing passes that the common cron reading rejects.
    """
    from croniter import croniter  # noqa: PLC0415 - deferred: croniter (start-up: 50 ms), only when a schedule exists

    fields = expr.split()
    if not expr.startswith("@") and len(fields) != 5:
        return f"'{expr}' is not a cron schedule: expected 5 fields (minute hour day month weekday), got {len(fields)}"
    try:
        cron = parse_cron(expr)
    except CronError as exc:
        return f"'{expr}' is not a valid cron schedule: {exc}"
    if not croniter.is_valid(expr):
        return f"'{expr}' is not a valid cron schedule"
    if not cron.possible():
        return f"'{expr}' never runs: no month has that day"
    return None


def is_secret_ref(value: str) -> bool:
    """Whether ``value`` is a reference to a secret rather than the secret itself."""
    # "scheme://..." is a URL, not a reference.
    return bool(SECRET_REF_RE.match(value))


def auto_env_target(key: str, spec: ServiceSpec, project: Project, types: Mapping[str, ServiceType]) -> tuple[str | None, str | None]:
    """The service an ``env_vars[key] = "auto"`` resolves to: ``(service, None)`` or ``(None, why not)``.

    ``DATABASE_URL``-style names resolve to a service of the type that declares them (a dependency
    first, else the only one in the project); ``<SERVICE>_URL`` resolves to that service.
    """
    wanted_types = {name for name, st in types.items() if key in st.auto_env}
    if wanted_types:
        deps = [d for d in spec.depends_on if d in project.services and project.services[d].type in wanted_types]
        candidates = deps or [n for n, s in project.services.items() if s.type in wanted_types and n != spec.name]
        if len(candidates) == 1:
            return candidates[0], None
        kinds = "/".join(sorted(wanted_types))
        if not candidates:
            return None, f'"auto" needs a {kinds} service in the project'
        return None, f'"auto" is ambiguous: several {kinds} services ({", ".join(candidates)}); list the one to use in depends_on'
    if key.endswith("_URL"):
        prefix = key[:-4].lower()
        for name in project.services:
            if name.replace("-", "_") == prefix and name != spec.name:
                return name, None
    known = sorted({k for st in types.values() for k in st.auto_env})
    return None, f'"auto" is not known for {key} (known: {", ".join(known)} or <SERVICE>_URL)'


AUTO_PIECE_PREFIX = "auto:"
AUTO_PIECE_RE = re.compile(r"^auto:([A-Za-z0-9_-]+)\.([A-Za-z0-9_]+)\Z")


def is_auto_piece(value: str) -> bool:
    """Whether an ``env_vars`` value names a piece (``"auto:postgres.host"``); checked before
    :func:`is_secret_ref`, which the same shape would match."""
    return value.startswith(AUTO_PIECE_PREFIX)


def auto_piece_target(value: str, spec: ServiceSpec, project: Project, types: Mapping[str, ServiceType]) -> tuple[str, str] | str:
    """``(service, piece)`` for ``env_vars[key] = "auto:NAME.PIECE"``, or why not.

    ``NAME`` is a service of the project, or a type with pieces (``postgres``, ``redis``,
    ``opensearch``: their ``auto_pieces``) that resolves as ``DATABASE_URL = "auto"`` does: a
    dependency of that type first, else the only one in the project.
    """
    # The pieces each registered type offers (the seed's get_service_host, get_db_user, ...).
    offered = {n: t.auto_pieces for n, t in types.items() if t.auto_pieces}
    example = "e.g. auto:postgres.host"
    match = AUTO_PIECE_RE.match(value)
    if not match:
        return f"{shown(value)} is not a piece: expected auto:SERVICE.PIECE ({example})"
    name, piece = match.groups()
    typed = sorted(offered)
    if name in project.services and name != spec.name:
        target = name
    elif name in offered:
        deps = [d for d in spec.depends_on if d in project.services and project.services[d].type == name]
        candidates = deps or [n for n, s in project.services.items() if s.type == name and n != spec.name]
        if not candidates:
            return f"{shown(value)}: no {name} service in the project"
        if len(candidates) > 1:
            return f"{shown(value)} is ambiguous: several {name} services ({', '.join(candidates)}); name one (auto:{candidates[0]}.{piece}) or list it in depends_on"
        target = candidates[0]
    else:
        others = [n for n, s in project.services.items() if s.type in offered and n != spec.name]
        return f"{shown(value)}: unknown service {shown(name)} (services with pieces: {', '.join(others) or 'none'}; or a type: {', '.join(typed)})"
    target_type = project.services[target].type
    pieces = offered.get(target_type)
    if pieces is None:
        return f"{shown(value)}: '{target}' is a {target_type} service; pieces exist for {', '.join(typed)} services"
    if piece not in pieces:
        return f"{shown(value)}: unknown piece {shown(piece)} of a {target_type} service (pieces: {', '.join(pieces)})"
    return target, piece


def known_zones(project: Project, registry: Registry) -> frozenset[str]:
    """The zones services may name: every provider's, and those of the servers the project's
    ``ssh`` environments list."""
    return registry.zones | {host.zone for env in project.environments.values() for host in env.servers}


def check_hosts(env_name: str, provider: str, hosts: Sequence[HostSpec]) -> Iterator[Problem]:
    """Problems of an environment's ``servers`` list (servers you already have)."""
    path: tuple[str | int, ...] = ("environments", env_name, "servers")
    if provider == HOSTS_PROVIDER and not hosts:
        yield path, f'provider "{HOSTS_PROVIDER}" deploys to the servers you list here: add at least one ([[environments.{env_name}.servers]] with name, address and zone)'
    elif hosts and provider != HOSTS_PROVIDER:
        yield path, f'servers are listed for provider "{HOSTS_PROVIDER}" only (this environment\'s provider is "{provider}")'
    names: dict[str, int] = {}
    places: dict[tuple[str, int], int] = {}
    for i, host in enumerate(hosts):
        if not HOST_NAME_RE.match(host.name):
            yield (*path, i, "name"), f"{shown(host.name)} is not a valid server name (lower-case letters, digits, . and -, at most 63)"
        elif host.name in names:
            yield (*path, i, "name"), f"{shown(host.name)} is listed twice (also at servers[{names[host.name]}])"
        names.setdefault(host.name, i)
        for key in ("address", "private_address"):
            value = getattr(host, key)
            if value is not None and not ADDRESS_RE.match(value):
                yield (*path, i, key), f"{shown(value)} is not an IP address or host name"
        if not ZONE_RE.match(host.zone):
            yield (*path, i, "zone"), f"{shown(host.zone)} is not a valid zone name (lower-case letters, digits and -, at most 32)"
        if not SSH_USER_RE.match(host.user):
            yield (*path, i, "user"), f"{shown(host.user)} is not a valid user name"
        if not 1 <= host.port <= 65535:
            yield (*path, i, "port"), f"must be between 1 and 65535, got {host.port}"
        elif (host.address, host.port) in places:
            yield (*path, i, "address"), f"{host.address}:{host.port} is listed twice (also at servers[{places[(host.address, host.port)]}])"
        places.setdefault((host.address, host.port), i)


def check_service(spec: ServiceSpec, stype: ServiceType, project: Project, registry: Registry) -> Iterator[Problem]:
    """Problems of one service; paths are relative to the service's table."""
    if not valid_name(spec.name):
        yield (), f"{shown(spec.name)} is not a valid service name (lower-case letters, digits, _ and -, starting with a letter, at most 40)"
    if not MIN_SERVERS <= spec.servers_count <= MAX_SERVERS:
        yield ("servers_count",), f"must be between {MIN_SERVERS} and {MAX_SERVERS}, got {spec.servers_count}"
    zones = known_zones(project, registry)
    if zones and spec.server_zone not in zones:
        yield ("server_zone",), f"unknown zone '{spec.server_zone}' (known: {', '.join(sorted(zones))})"
    if spec.server_cpu not in CPU_SIZES:
        yield ("server_cpu",), f"must be one of {', '.join(map(str, CPU_SIZES))} vCPUs, got {spec.server_cpu}"
    if not 512 <= spec.server_memory <= 262144:
        yield ("server_memory",), f"must be between 512 and 262144 MB, got {spec.server_memory}"
    if spec.port is not None and not 1 <= spec.port <= 65535:
        yield ("port",), f"must be between 1 and 65535, got {spec.port}"
    if spec.domain is not None:
        why = domain_problem(spec.domain)
        if why:
            yield ("domain",), why
        elif not stype.web:
            yield ("domain",), f"a {stype.name} service does not serve HTTP and cannot have a domain"
        elif spec.port is None:
            yield ("domain",), "a service with a domain needs the port it listens on (port = ...)"
    if not spec.health_path.startswith("/"):
        yield ("health_path",), f"must start with '/', got '{spec.health_path}'"

    for key, value in spec.env_vars.items():
        if not ENV_KEY_RE.match(key):
            yield ("env_vars", key), "is not a valid environment variable name"
        elif value == "auto":
            _, why = auto_env_target(key, spec, project, registry.service_types)
            if why:
                yield ("env_vars", key), why
        elif is_auto_piece(value):
            target = auto_piece_target(value, spec, project, registry.service_types)
            if isinstance(target, str):
                yield ("env_vars", key), target
            elif target[1] == "password" and f"{key}_FILE" in spec.env_vars:
                yield ("env_vars", key), f"the password becomes {key}_FILE, which env_vars also sets"
        elif is_secret_ref(value) and (why := secret_ref_problem(value)):
            yield ("env_vars", key), why
    if spec.release_command is not None:
        if stype.stateful:
            yield ("release_command",), f"a {stype.name} service runs its image as it is; a release command belongs to the app that migrates it"
        elif spec.is_scheduled:
            yield ("release_command",), "a scheduled job runs its own command on schedule; give the migration to the service that serves"
        elif why := command_problem(spec.release_command, "release command"):
            yield ("release_command",), why
    if spec.secrets_in_env and stype.stateful:
        yield ("secrets_in_env",), f"a {stype.name} service's image reads its own password files; secrets_in_env is for the apps that use it"

    for host_path, target in spec.volumes.items():
        why = host_volume_problem(host_path, project.name)
        if why:
            yield ("volumes", host_path), why
        container_path, _, mode = target.partition(":")
        if not container_path.startswith("/"):
            yield ("volumes", host_path), f"container path must be absolute, got '{container_path}'"
        if mode and mode not in ("ro", "rw"):
            yield ("volumes", host_path), f"mode must be 'ro' or 'rw', got '{mode}'"

    for i, dep in enumerate(spec.depends_on):
        if dep == spec.name:
            yield ("depends_on", i), "a service cannot depend on itself"
        elif dep not in project.services:
            yield ("depends_on", i), f"unknown service '{dep}' (services: {', '.join(project.services)})"

    if spec.startup_order is not None and not 1 <= spec.startup_order <= MAX_STARTUP_ORDER:
        yield ("startup_order",), f"must be between 1 and {MAX_STARTUP_ORDER}, got {spec.startup_order}"

    if spec.schedule is not None:
        why = cron_problem(spec.schedule)
        if why:
            yield ("schedule",), why
        if spec.domain:
            yield ("schedule",), "a scheduled job runs and exits; it cannot also serve a domain"
        if stype.stateful:
            yield ("schedule",), f"a {stype.name} service keeps its data and runs all the time; it cannot be a scheduled job"

    # Render safety (rendersafety.py): what reaches a Dockerfile, nginx or a container is checked here.
    yield from check_service_rendering(spec, {**registry.default_images, **project.images})
    yield from _check_scaling(spec, stype)
    if isinstance(spec, BuildSpec):
        yield from _check_build(spec)
        if getattr(spec, "system_packages", None) and "system_packages" in stype.unused_fields:
            # react: the image that runs is nginx serving the build, not the Node.js stage.
            yield ("system_packages",), f"a {stype.name} service does not use it (its image serves the built files); build_packages go to its build stage"
    if isinstance(spec, DatabaseSpec) and spec.backup_config is not None:
        bc = spec.backup_config
        if bc.schedule is not None:
            why = cron_problem(bc.schedule)
            if why:
                yield ("backup_config", "schedule"), why
        if not 1 <= bc.retention_days <= MAX_RETENTION_DAYS:
            yield ("backup_config", "retention_days"), f"must be between 1 and {MAX_RETENTION_DAYS} days, got {bc.retention_days}"


def _check_scaling(spec: ServiceSpec, stype: ServiceType) -> Iterator[Problem]:
    scaling = spec.scaling
    if scaling is None:
        return
    if scaling.horizontal is not None and stype.stateful:
        yield ("auto_scaling", "horizontal"), f"a {stype.name} service holds data on one server and cannot scale horizontally"
    if scaling.vertical is not None:
        v = scaling.vertical
        for kind in ("cpu", "memory"):
            up, down = getattr(v, f"{kind}_scale_up"), getattr(v, f"{kind}_scale_down")
            for which, val in (("up", up), ("down", down)):
                if not 0 < val <= 100:
                    yield ("auto_scaling", "vertical", f"{kind}_scale_{which}"), f"must be a percentage above 0 and at most 100, got {val:g}"
            if down >= up:
                yield ("auto_scaling", "vertical", f"{kind}_scale_down"), f"must be below {kind}_scale_up ({up:g}), got {down:g}"
    if scaling.horizontal is not None:
        h = scaling.horizontal
        for which in ("up", "down"):
            val = getattr(h, f"rps_scale_{which}")
            if not 0 <= val <= MAX_RPS:  # also refuses NaN, which every comparison lets through
                yield ("auto_scaling", "horizontal", f"rps_scale_{which}"), f"must be between 0 and {MAX_RPS:g} requests per second, got {val:g}"
        if h.rps_scale_down >= h.rps_scale_up:
            yield ("auto_scaling", "horizontal", "rps_scale_down"), f"must be below rps_scale_up ({h.rps_scale_up:g}), got {h.rps_scale_down:g}"
    if not 1 <= scaling.min_servers <= scaling.max_servers <= 20:
        yield ("auto_scaling",), f"need 1 <= min_servers <= max_servers <= 20, got {scaling.min_servers} and {scaling.max_servers}"
    elif not scaling.min_servers <= spec.servers_count <= scaling.max_servers:
        yield ("servers_count",), f"{spec.servers_count} is outside auto_scaling's {scaling.min_servers}..{scaling.max_servers}"
    for key in ("scale_up_cooldown", "scale_down_cooldown"):
        if not 0 <= getattr(scaling, key) <= MAX_COOLDOWN:
            yield ("auto_scaling", key), f"must be between 0 and {MAX_COOLDOWN} seconds, got {getattr(scaling, key)}"


def _check_build(spec: BuildSpec) -> Iterator[Problem]:
    if spec.git_repo is not None:
        try:
            parse_git_repo(spec.git_repo)
        except GitRepoError as exc:
            yield ("git_repo",), str(exc)
        if spec.build_context is not None:
            yield ("build_context",), "set either git_repo or build_context, not both"
    if spec.git_token is not None:
        if not is_secret_ref(spec.git_token):
            yield ("git_token",), "must be a reference (secret:NAME, env:NAME or file:PATH), never the token itself"
        elif why := secret_ref_problem(spec.git_token):
            yield ("git_token",), why
        if spec.git_repo is None:
            yield ("git_token",), "is only used with git_repo"
    if spec.dockerfile is not None and spec.dockerfile_content is not None:
        yield ("dockerfile_content",), "set either dockerfile or dockerfile_content, not both"
    if spec.build_context is not None and (why := build_context_problem(spec.build_context)):
        yield ("build_context",), why
    # requirements_files and build_dir are checked where they are rendered (rendersafety).
    if spec.dockerfile is not None and (why := inside_problem(spec.dockerfile, "the build context")):
        yield ("dockerfile",), why
    if spec.dockerfile_content is not None and not spec.dockerfile_content:
        yield ("dockerfile_content",), "is empty"
    if isinstance(spec, GenericSpec) and spec.image is not None:
        for key in ("git_repo", "build_context", "dockerfile", "dockerfile_content"):
            if getattr(spec, key) is not None:
                yield (key,), "cannot be combined with image (an image is used as it is)"


def check_project(project: Project, registry: Registry) -> Iterator[Problem]:
    """Every problem of ``project``, paths from the document root."""
    s = project.settings
    if not valid_name(s.name):
        yield ("project", "name"), f"{shown(s.name)} is not a valid project name ({PROJECT_NAME_RULE})"
    if s.docker_hub_user is not None and not HUB_USER_RE.match(s.docker_hub_user):
        yield ("project", "docker_hub_user"), f"'{s.docker_hub_user}' is not a valid Docker Hub user name"
    if not TAG_RE.match(s.version):
        yield ("project", "version"), f"'{s.version}' cannot be an image tag (letters, digits, _ . -)"

    known_images = registry.image_keys
    for key, value in project.images.items():
        if key not in known_images:
            yield ("images", key), f"unknown image key (known: {', '.join(sorted(known_images))})"
        elif (why := image_template_problem(value)) is not None:
            yield ("images", key), why

    for env_name, env in project.environments.items():
        if not ENV_NAME_RE.match(env_name):
            yield ("environments", env_name), f"is not a valid environment name ({ENV_NAME_RULE})"
        if env.provider != "auto" and env.provider not in registry.providers:
            yield ("environments", env_name, "provider"), f"unknown provider '{env.provider}' (known: auto, {', '.join(sorted(registry.providers))})"
        for key in ("http_port", "https_port"):
            value = getattr(env, key)
            if value is not None and not 1 <= value <= 65535:
                yield ("environments", env_name, key), f"must be between 1 and 65535, got {value}"
        if env.http_port is not None and env.http_port == env.https_port:
            yield ("environments", env_name, "https_port"), "must differ from http_port"
        if not 1 <= env.drain_timeout <= MAX_DRAIN_TIMEOUT:
            yield ("environments", env_name, "drain_timeout"), f"must be between 1 and {MAX_DRAIN_TIMEOUT} seconds, got {env.drain_timeout}"
        if env.sidecar_shutdown_timeout is not None and not 1 <= env.sidecar_shutdown_timeout <= MAX_SHUTDOWN_TIMEOUT:
            yield ("environments", env_name, "sidecar_shutdown_timeout"), f"must be between 1 and {MAX_SHUTDOWN_TIMEOUT} seconds, got {env.sidecar_shutdown_timeout}"
        for i, zone in enumerate(env.zones):
            if zone not in known_zones(project, registry):
                yield ("environments", env_name, "zones", i), f"unknown zone '{zone}'"
        yield from check_hosts(env_name, env.provider, env.servers)
        if env.api_token is not None:
            if not is_secret_ref(env.api_token):
                yield ("environments", env_name, "api_token"), "must be a reference (secret:NAME, env:NAME or file:PATH), never the token itself"
            elif why := secret_ref_problem(env.api_token):
                yield ("environments", env_name, "api_token"), why
            elif (entry := registry.providers.get(env.provider if env.provider != "auto" else "digitalocean")) is not None and not entry.takes_api_token:
                yield ("environments", env_name, "api_token"), f'provider "{env.provider}" calls no API that takes a token'

    yield from check_project_rendering(project)

    if len(project.services) > MAX_SERVICES:
        yield ("services",), f"{len(project.services)} services: at most {MAX_SERVICES} in one project"
    for name, spec in project.services.items():
        stype = registry.service_types[spec.type]
        for path, message in check_service(spec, stype, project, registry):
            yield ("services", name, *path), message
    shapes = {name: _shape(spec, registry.service_types[spec.type]) for name, spec in project.services.items()}
    for name, why in collisions(shapes):
        yield ("services", name), why

    deps = {name: spec.depends_on for name, spec in project.services.items()}
    cycle = find_cycle(deps)
    if cycle:
        yield ("services", cycle[0], "depends_on"), f"dependency cycle: {' -> '.join(cycle)}"
    else:
        yield from _check_manual_orders(project)

    seen: dict[tuple[str, str], str] = {}
    for name, spec in project.services.items():
        if spec.domain:
            served = (spec.domain, spec.server_zone)
            if served in seen:
                yield ("services", name, "domain"), f"'{spec.domain}' is already served by '{seen[served]}' in zone {spec.server_zone}"
            seen[served] = name


def _shape(spec: ServiceSpec, stype: ServiceType) -> Shape:
    if stype.stateful:
        return Shape.STATEFUL
    return Shape.SINGLE if spec.is_scheduled else Shape.SLOTTED


def _check_manual_orders(project: Project) -> Iterator[Problem]:
    orders = startup_orders({n: s.depends_on for n, s in project.services.items()}, {n: s.startup_order for n, s in project.services.items()})
    for name, spec in project.services.items():
        if spec.startup_order is None:
            continue
        for dep in spec.depends_on:
            if dep in orders and orders[dep] >= spec.startup_order:
                yield ("services", name, "startup_order"), f"{spec.startup_order} would start before its dependency '{dep}' (order {orders[dep]})"
