"""Every hook of ProjectDeployer: the one page a plugin author reads.

A plugin is a module or object with functions decorated ``@hookimpl`` and named after a hook
below. An implementation may accept any subset of a hook's parameters (pluggy passes only the
ones it names). Hooks that choose one answer are ``firstresult``: the first non-``None`` result
wins and the core keeps a fallback for ``None``. Hooks that collect return a value (or a list)
per plugin.

Plugins are found through the ``projectdeployer`` entry-point group; the built-ins are declared
there too (see ``pyproject.toml``). ``docs/plugins.md`` documents each hook with an example.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # imported for annotations only: plugins must not pay for them at start-up
    from pathlib import Path

    from .core.backups import BackupMethod
    from .core.build import BuildRequest, GeneratedBuild
    from .core.commandline import CommandGroup
    from .core.containers import ContainerParts
    from .core.model import Project, ServiceSpec
    from .core.monitoring import Alert, HealthCheck, MetricSample
    from .core.plan import DeployResult, Plan
    from .core.provider import Provider, Server
    from .core.routing import Backend, DomainTarget, Route
    from .core.servicetype import ServiceType

hookspec = pluggy.HookspecMarker("projectdeployer")
hookimpl = pluggy.HookimplMarker("projectdeployer")


# --- registration ----------------------------------------------------------------------------


@hookspec
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    """Contribute service types (postgres, python, ...) by calling ``register(ServiceType(...))``.

    A service type names its fields (an attrs class deriving from ``ServiceSpec``), its defaults,
    the fluent-API method that adds it (``add_postgres``) and whether it is stateful or serves
    HTTP. Registering a name twice is an error that names both plugins.

    :param register: the core's callback; it validates and records which plugin supplied what.
    """


@hookspec
def register_providers(register: Callable[..., None]) -> None:
    """Contribute server providers: ``register("local", LocalProvider, zones={"local"})``.

    The factory is called on first use only, so a provider's SDK (docker, pydo, paramiko) is
    imported when a deploy needs it, not when the CLI starts.

    :param register: the core's callback taking a provider name, a zero-argument factory,
        the zones the provider serves (used to validate ``server_zone``) and, optionally,
        ``images={"key": "default"}``: ``[images]`` keys the provider reads (the sandbox's
        ``server``), and ``api_token=True`` when an environment's ``api_token`` reference may
        give the provider its API token (:meth:`Provider.use_api_token`). A factory with a ``for_project(project)`` class method is given the
        project when a deploy asks for the provider.
    """


@hookspec
def register_commands(cli: CommandGroup) -> None:
    """Add click commands or groups to the ``projectdeployer`` command line.

    Called before the command line lists its commands (``--help`` too), with the plugin's module
    imported for that alone: keep its top-level imports light, and import an SDK in the command.

    :param cli: the root ``click.Group`` (annotate it so in your plugin); call ``cli.add_command(...)``
        or decorate with ``@cli.command()``.
    """


# --- provisioning ----------------------------------------------------------------------------


@hookspec(firstresult=True)
def get_provider(project: Project, env: str, zone: str) -> Provider | None:
    """Choose the provider that serves ``zone`` of ``env``; return ``None`` to let others decide.

    The core's fallback picks the provider named by the environment's ``provider`` setting
    (``auto`` means: DigitalOcean when ``DIGITALOCEAN_API_TOKEN`` is set, else local).

    :param project: the loaded project.
    :param env: the environment name (``dev``, ``prod``, ...).
    :param zone: the zone slug (``lon1``, ``nyc3``, ``local``, ...).
    """


# --- building --------------------------------------------------------------------------------


@hookspec(firstresult=True)
def generate_dockerfile(service: ServiceSpec, project: Project, context_dir: Path | None) -> GeneratedBuild | None:
    """Return the generated Dockerfile (and extra context files) for ``service``, or ``None``.

    ``None`` means: not this plugin's type, or the user brought their own ``dockerfile``.

    Service types answer for their own ``type``; a user's ``dockerfile`` or
    ``dockerfile_content`` always takes precedence over generation. A source that lacks what
    the service needs is a ``BuildFailed`` naming the service, one line.

    :param service: the service's resolved spec (type, build fields, versions).
    :param project: the project, for its ``[images]`` table.
    :param context_dir: the build context (a directory or git checkout) to look at, reading
        only: which lock files it has decides how the python type installs dependencies.
        ``None`` when the source is not at hand (answer from the settings alone).
    """


@hookspec(firstresult=True)
def build_image(request: BuildRequest) -> tuple[str, bool] | None:
    """Build one service's image; return ``(image_id, reused)`` or ``None`` to leave it to others.

    ``reused`` is true when nothing that goes into the image changed and the existing image was
    kept without a build. Raise ``BuildFailed`` naming the service and the failing step.

    :param request: the service, its build context directory, the Dockerfile path inside it,
        generated files to add to the context, the tag, build args, labels and a log callback.
    """


@hookspec(firstresult=True)
def image_inputs(request: BuildRequest) -> tuple[str, str | None] | None:
    """Say what ``build_image(request)`` would do, building nothing: return ``(inputs, current)``,
    the hash of everything that would go into the image and the hash the image tagged
    ``request.tag`` was built from (``None``: no such image, or not labelled). Equal hashes mean
    the build would reuse the image. Reads only (``plan`` calls it); ``None`` leaves it to others.

    :param request: as for ``build_image`` (its ``log`` is not used).
    """


@hookspec(firstresult=True)
def push_image(tag: str, log: Callable[[str], None]) -> str | None:
    """Push the image ``tag`` to its registry; return ``repo@sha256:...`` or ``None``.

    :param tag: ``{registry}/{project}-{service}:{version}``.
    :param log: receives progress lines.
    """


# --- routing ---------------------------------------------------------------------------------


@hookspec
def configure_routing(server: Server, project: Project, env: str, routes: Sequence[Route], certificates: Mapping[str, tuple[str, str]]) -> None:
    """Apply the routes of ``env`` on ``server``'s router (the nginx sidecar does this).

    Called once per server that routes to the project's services. Must never leave a broken
    configuration live: validate before reloading, keep the old configuration on failure and
    raise ``RoutingError`` (from ``projectdeployer.core.routing``) saying why.

    :param server: the server whose router to configure (``server.docker()`` reaches its engine).
    :param project: the project.
    :param env: the environment.
    :param routes: every route of ``env`` on this server: internal port, protocol, backends,
        optional domain. Routes missing from the list are removed.
    :param certificates: ``(cert_pem, key_pem)`` for each domain of ``routes``, obtained by the
        caller through ``obtain_certificate`` (``projectdeployer.core.routing.domain_certificates``).
    """


@hookspec
def publish_domains(project: Project, env: str, targets: Sequence[DomainTarget], log: Callable[[str], None]) -> None:
    """Point public DNS (and load balancers) at the servers that serve each domain now.

    Called by every deploy once its services are switched and before the servers it removes
    are destroyed, which ``targets`` already leave out: a record or an origin never points at a
    server that is gone. Converge (create, update, remove what no target names any more): the
    same targets twice change nothing. Raising stops the deploy before those servers go.

    :param project: the project.
    :param env: the environment.
    :param targets: one per domain of the environment's web services: its service, health path
        and, per zone, the public addresses of the servers that serve it.
    :param log: the deploy's progress lines (say what was changed or waited for).
    """


@hookspec(firstresult=True)
def obtain_certificate(project: str, env: str, domain: str, servers: Sequence[Server]) -> tuple[str, str] | None:
    """Obtain a TLS certificate for ``domain``: return ``(cert_pem, key_pem)`` or ``None``.

    ACME and company-CA plugins answer for the domains they handle; the built-in
    ``tls_selfsigned`` answers last, for any domain, with a cached self-signed certificate.

    :param project: the project name (issuers keep their state per project/env).
    :param env: the environment.
    :param domain: the domain name (may be a wildcard for DNS-01 issuers).
    :param servers: the servers that will serve it (for HTTP-01 webroots).
    """


# --- secrets ---------------------------------------------------------------------------------


@hookspec(firstresult=True)
def resolve_secret(project: str, env: str | None, ref: str) -> str | None:
    """Return the value behind a secret reference, or ``None`` if the scheme is not yours.

    References look like ``scheme:rest``: ``secret:api/git_token`` (the file store),
    ``env:GITHUB_TOKEN`` (an environment variable of the operator), ``file:/path``.

    :param project: the project name.
    :param env: the environment, or ``None`` for project-wide secrets (git tokens).
    :param ref: the reference as written in the project file.
    """


@hookspec(firstresult=True)
def store_secret(project: str, env: str | None, name: str, value: str) -> str | None:
    """Keep ``value`` somewhere safe and return the reference to write in the project file.

    :param project: the project name.
    :param env: the environment, or ``None`` for project-wide secrets.
    :param name: a path-like name such as ``api/git_token``.
    :param value: the secret itself; never log it.
    """


@hookspec
def secret_rotated(project: str, env: str, service: str) -> None:
    """Called after a service's secret was rotated, so consumers can be redeployed or reloaded.

    :param project: the project name.
    :param env: the environment.
    :param service: the service whose secret changed.
    """


# --- monitoring ------------------------------------------------------------------------------


@hookspec
def health_checks(service: ServiceSpec) -> list[HealthCheck] | None:
    """Return the health checks for ``service`` (collected from every plugin).

    Service types return their default (HTTP for web services, TCP for databases); other
    plugins may add custom checks.

    :param service: the service spec.
    """


@hookspec
def collect_metrics(server: Server) -> list[MetricSample] | None:
    """Return CPU, memory and request-rate samples measured on ``server``.

    :param server: the server to sample.
    """


@hookspec
def send_alert(alert: Alert) -> None:
    """Deliver ``alert`` (every channel plugin receives it: email, chat, pager).

    :param alert: severity, title, body and the project/env/server it concerns.
    """


# --- lifecycle -------------------------------------------------------------------------------


@hookspec
def before_deploy(plan: Plan) -> None:
    """Called once the plan is made and before anything changes; raise to veto the deploy.

    :param plan: what the deploy is about to do.
    """


@hookspec
def after_deploy(result: DeployResult) -> None:
    """Called after a deploy finished successfully.

    :param result: what was deployed, with timings and release ids.
    """


@hookspec
def deploy_failed(plan: Plan, error: BaseException) -> None:
    """Called when a deploy failed; the old version is still serving.

    :param plan: the plan that was being applied.
    :param error: the error that stopped it.
    """


# --- containers ------------------------------------------------------------------------------


@hookspec(firstresult=True)
def container_parts(service: ServiceSpec, project: Project, env: str) -> ContainerParts | None:
    """What a service type adds to its containers: environment, command, secret files, data volumes.

    Stateful types answer for their own ``type`` (postgres: ``POSTGRES_*`` settings, its password
    as a file, the data volume); ``None`` means nothing beyond the generic settings.

    :param service: the service spec, with the environment's overrides applied.
    :param project: the project.
    :param env: the environment being deployed.
    """


@hookspec(firstresult=True)
def backup_method(service: ServiceSpec) -> BackupMethod | None:
    """How ``service`` is backed up, verified and restored, or ``None`` when this plugin does
    not back up its type. The scheduled backup container, listing and restore are the core's;
    the method gives the commands (see ``projectdeployer.core.backups.BackupMethod``).

    :param service: a stateful service of the project.
    """


@hookspec(firstresult=True)
def live_routes(server: Server, project: Project, env: str) -> Sequence[Route] | None:
    """The routes ``server``'s router serves right now, read from the router itself.

    The deploy engine asks before every deploy which container of each service is the one
    being served, so a deploy killed between the switch and its own bookkeeping never mistakes
    the serving container for a leftover. ``None``: this plugin does not route for ``server``.

    :param server: the server whose router to read.
    :param project: the project.
    :param env: the environment.
    """


@hookspec(firstresult=True)
def wait_drained(server: Server, project: Project, env: str, timeout: float, backends: Sequence[Backend] | None) -> bool | None:
    """Wait until the requests, response streams and sessions in flight to ``backends`` have
    finished: the backends the last routing change stopped routing to (an old container).

    The deploy stops the old container only after this returns. Connections to backends that
    are still routed to (another service's database session, a websocket to an unchanged
    service) are not waited for. Return ``True`` when drained, ``False`` on timeout, ``None``
    if this plugin does not route for ``server``.

    :param server: the server whose router changed.
    :param project: the project.
    :param env: the environment.
    :param timeout: seconds to wait at most.
    :param backends: the retired backends as the router names them (a container name and its
        port on the same server, an address and host port on another); ``None``: everything
        that was in flight through the previous routing, whatever its backend.
    """


@hookspec
def remove_routing(server: Server, project: Project, env: str) -> None:
    """Take the routing of ``project``/``env`` off ``server`` for good: ``destroy`` calls it on
    every server of the environment (this machine for the local provider) before it removes the
    environment's containers, so the router stops taking requests first and whatever it keeps
    outside the environment's labelled containers (files, DNS records, a shared proxy's entries)
    goes too. Return nothing; raise an error naming what could not be removed. Calling it for an
    environment whose routing is gone already must succeed: ``destroy`` can be run again.

    Containers carrying the environment's labels (``io.projectdeployer.project``/``.env``) are
    removed by ``destroy`` itself afterwards, whatever this hook did.

    :param server: the server to take the routing off.
    :param project: the project.
    :param env: the environment being destroyed.
    """


def hook_names() -> list[str]:
    """Names of every hook defined here, sorted."""
    module = sys.modules[__name__]
    return [name for name, fn in inspect.getmembers(module, inspect.isfunction) if getattr(fn, "projectdeployer_spec", None) is not None]


__all__ = ["hook_names", "hookimpl", "hookspec"]
