"""``Environment``: one environment of a project as everything that works on it sees it: the
project, the environment's name, the plugins (manager and registry), its provider and servers,
its locks, and which server holds a container.

It says what an environment *is*, not what is done to it. The deploy path (plan, deploy,
rollback, status, logs, jobs) is :class:`~projectdeployer.deploy.deployment.Deployment`, made
from an environment; backups, rotation, sync and destroy take one too.
``ProjectDeployer.environment(env)`` hands it out (the API opens projects and loads plugins;
this package sits below that in the layers, so it imports core and itself only).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import attrs
import pluggy

from ..core.errors import ProjectDeployerError
from ..core.fanout import failures, fan_out, one_line, successes
from ..core.model import Project
from ..core.provider import Provider, Server
from ..core.registry import Registry
from ..core.runtime import ContainerInfo, ContainerRuntime
from .serverlock import local_lock, server_lock

Log = Callable[[str], None]


@attrs.frozen(kw_only=True)
class Placed:
    """A container found on one server of the environment (:meth:`Environment.find_container`)."""

    server: Server
    runtime: ContainerRuntime
    #: The container as read when it was found.
    info: ContainerInfo


def provider_name(project: Project, env: str) -> str:
    """The provider of ``env``: its setting, or ``auto`` = DigitalOcean with a token (its
    environment variable or the environment's ``api_token``), else local."""
    settings = project.environment(env)
    if settings.provider != "auto":
        return settings.provider
    return "digitalocean" if os.environ.get("DIGITALOCEAN_API_TOKEN") or settings.api_token else "local"


class Environment:
    """One environment of a project: its provider, its servers and its locks.

    ``ProjectDeployer.environment(env)`` hands it out; the deploy path
    (:class:`~projectdeployer.deploy.deployment.Deployment`), backups, rotation, sync, the
    bastion client, destroy and the command line take one instead of reaching into
    ``ProjectDeployer``. ``log`` receives the progress lines of the work done on it.
    """

    def __init__(self, project: Project, env: str, manager: pluggy.PluginManager, registry: Registry, *, log: Log | None = None) -> None:
        self.project = project
        self.env = env
        self.manager = manager
        self.registry = registry
        self.log: Log = log or (lambda line: print(line, flush=True))

    def __repr__(self) -> str:
        return f"Environment({self.project.name!r}, {self.env!r})"

    def provider(self) -> Provider:
        """The provider object of the environment (a plugin's ``get_provider`` first, else by name)."""
        chosen: Provider | None = self.manager.hook.get_provider(project=self.project, env=self.env, zone="local")
        if chosen is not None:
            return chosen
        name = provider_name(self.project, self.env)
        entry = self.registry.providers.get(name)
        if entry is None:
            raise ProjectDeployerError(f"environment {self.env}: no provider named '{name}' is loaded")
        provider = entry.get(self.project)
        provider.log = self.log  # its waits and creations show in this environment's progress
        ref = self.project.environment(self.env).api_token
        if ref is not None:
            try:
                token: str | None = self.manager.hook.resolve_secret(project=self.project.name, env=self.env, ref=ref)
            except ProjectDeployerError as exc:
                raise ProjectDeployerError(f"environment {self.env}: api_token: {exc}") from None
            if not token:
                raise ProjectDeployerError(f"environment {self.env}: api_token {ref!r} resolves to nothing (no plugin knows the reference, or it is empty)")
            provider.use_api_token(self.project.name, self.env, token)
        return provider

    def servers(self) -> tuple[list[Server], list[Server]]:
        """Every server of the environment as the provider lists it now (this machine's one for a
        local environment), and the running ones."""
        listed = self.provider().list_servers(self.project.name, self.env)
        return listed, [s for s in listed if getattr(s, "running", True)]

    def find_container(self, name: str) -> Placed | None:
        """The server holding container ``name`` (a job, backup or database container lives on
        one server), its runtime and the container as read now; ``None`` when no server has
        it. Every running server is asked at once (this machine's environment has one). A
        server that cannot be reached is an error naming it (it might be the one)."""
        listed, servers = self.servers()

        def look(server: Server) -> Placed | None:
            runtime = server.runtime()
            info = runtime.get(name)
            return Placed(server=server, runtime=runtime, info=info) if info is not None else None

        results = fan_out(servers, look)
        found = sorted((placed for placed in successes(results).values() if placed is not None), key=lambda p: p.server.name)
        if found:
            return found[0]
        errors = failures(results)
        if errors:
            raise ProjectDeployerError(f"cannot look for {name} on " + "; ".join(f"{n}: {one_line(e)}" for n, e in sorted(errors.items())))
        stopped = sorted(s.name for s in listed if s not in servers)
        if stopped:
            raise ProjectDeployerError(f"{name} is on none of the running servers of {self.project.name}/{self.env}; stopped: {', '.join(stopped)} (start them and try again)")
        return None

    @contextlib.contextmanager
    def lock(self, *, wait: float = 0.0) -> Iterator[None]:
        """The deploy lock of the environment for work that changes it without deploying it
        (restores, rotations, destroy): this machine's lock, then the provider's creation lock
        while the lock server's is taken, as a deploy takes them. A provider without a creation
        lock or servers that hold none (this machine's) leave this machine's lock alone."""
        with local_lock(self.project.name, self.env, wait=wait):
            provider = self.provider()
            with contextlib.ExitStack() as held:
                with provider.creation_lock(self.project.name, self.env, wait=wait):
                    held.enter_context(server_lock(self.project.name, self.env, provider.list_servers(self.project.name, self.env), wait=wait))
                yield

    def urls(self) -> dict[str, str]:
        """``service -> URL`` for services with a domain, through the sidecar's published ports."""
        settings = self.project.environment(self.env)
        out = {}
        for name, spec in self.project.services_for(self.env).items():
            if spec.domain:
                http_port = getattr(settings, "http_port", None)
                https_port = getattr(settings, "https_port", None)
                if https_port:
                    out[name] = f"https://{spec.domain}:{https_port}/" if https_port != 443 else f"https://{spec.domain}/"
                elif http_port:
                    out[name] = f"http://{spec.domain}:{http_port}/" if http_port != 80 else f"http://{spec.domain}/"
        return out


__all__ = ["Environment", "Placed", "provider_name"]
