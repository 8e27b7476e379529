"""Core commands on a project file: init, add, remove, show, validate, ports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pluggy

from ..api.project import ProjectDeployer
from ..core import paths
from ..core.errors import ConfigError, ProjectNotFound, shown
from ..plugins import get_registry
from ..project.convert import converter
from ..project.validation import PROJECT_NAME_RULE, valid_name
from .options import api_kwargs, spec_options
from .output import print_json, print_table
from .params import ENV


def open_project(ctx: click.Context) -> ProjectDeployer:
    """The project named by --file / --project, or ./projectdeployer.toml."""
    obj = ctx.find_root().obj
    manager = obj["manager"]
    if obj["file"]:
        return ProjectDeployer(obj["file"], path=obj["file"], manager=manager)
    if obj["project"]:
        return ProjectDeployer(_project_flag(obj["project"]), manager=manager)
    local = Path(paths.LOCAL_PROJECT_FILE)
    if local.exists():
        return ProjectDeployer(str(local), path=local, manager=manager)
    raise ProjectNotFound(f"no project given: pass --project NAME or --file PATH, or run where {paths.LOCAL_PROJECT_FILE} is")


def _project_flag(name: str) -> str:
    """``-p NAME`` is a name: a path there (``-p ../other``) would be loaded as a file, which
    is what ``-f`` is for."""
    # An existing project's name may still have "_" (refused for new ones, warned on load).
    if not valid_name(name):
        raise ConfigError([f"-p/--project {shown(name)}: not a project name ({PROJECT_NAME_RULE}); a file is given with -f/--file"])
    return name


def register(cli: click.Group, manager: pluggy.PluginManager) -> None:
    """Attach the core project commands to ``cli``."""

    @cli.command()
    @click.argument("name")
    @click.option("--docker-hub-user", help="Docker Hub user that image tags are pushed under.")
    @click.option("--registry", "registry_host", help="Registry host (instead of Docker Hub), e.g. registry.example.com:5000.")
    @click.option("--version", "version", help="Version tag of the images [default: latest].")
    @click.option("--default-server-ip", help="Address of the default server [default: localhost].")
    @click.option("--overwrite", is_flag=True, help="Replace an existing project file (with or without services).")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @click.pass_context
    def init(ctx: click.Context, name: str, docker_hub_user: str | None, registry_host: str | None, version: str | None, default_server_ip: str | None, overwrite: bool, as_json: bool) -> None:
        """Create a project file for NAME (at --file, or in $PROJECTDEPLOYER_HOME)."""
        obj = ctx.find_root().obj
        project = ProjectDeployer.create(
            name,
            docker_hub_user=docker_hub_user,
            registry=registry_host,
            version=version,
            default_server_ip=default_server_ip,
            path=obj["file"],
            overwrite=overwrite,
            manager=obj["manager"],
            # A file already there is refused even without services: init never replaces
            # a file silently (the Python API keeps the seed's create-again behaviour).
            replace_empty=False,
        )
        if as_json:
            print_json({"name": project.name, "path": str(project.path)})
        else:
            click.echo(f"created {project.path}")

    cli.add_command(_AddGroup(manager, name="add", help="Add a service to the project: projectdeployer add TYPE NAME [OPTIONS]."))

    @cli.command()
    @click.argument("name")
    @click.pass_context
    def remove(ctx: click.Context, name: str) -> None:
        """Remove service NAME from the project file (its containers go at the next deploy),
        and the secret files only NAME used (each one removed or kept is printed, with why)."""
        project = open_project(ctx)
        project.delete_service(name)
        click.echo(f"removed {name} from {project.path}")
        for line in project.last_secrets_cleanup.lines():
            click.echo(line)

    @cli.command()
    @click.option("--env", "env", type=ENV, default=None, help="Show the services as ENV sees them (with its overrides).")
    @click.option("--json", "as_json", is_flag=True, help="Print the project as JSON.")
    @click.pass_context
    def show(ctx: click.Context, env: str | None, as_json: bool) -> None:
        """Show the project's services in startup order."""
        project = open_project(ctx)
        orders = project.startup_orders(env)
        services = project.services(env)
        if as_json:
            print_json(
                {
                    "project": converter.unstructure(project.project.settings),
                    "path": str(project.path),
                    "images": project.project.images,
                    "environments": converter.unstructure(project.project.environments),
                    "startup_groups": project.startup_groups(env),
                    "services": {name: {**converter.unstructure(spec), "startup_order": orders[name]} for name, spec in services.items()},
                }
            )
            return
        rows = []
        for group in project.startup_groups(env):
            for name in group:
                spec = services[name]
                rows.append((orders[name], name, spec.type, spec.port, spec.servers_count, spec.server_zone, spec.domain or "", ", ".join(spec.depends_on), spec.schedule or ""))
        title = f"{project.name} ({project.path})" + (f" - env {env}" if env else "")
        print_table(title, ["order", "service", "type", "port", "servers", "zone", "domain", "depends on", "schedule"], rows)

    @cli.command()
    @click.option("--json", "as_json", is_flag=True, help="Print {valid, problems} as JSON.")
    @click.pass_context
    def validate(ctx: click.Context, as_json: bool) -> None:
        """Check the project file; one line per problem, exit code 2 if any."""
        try:
            project = open_project(ctx)
        except ConfigError as exc:
            if as_json:
                print_json({"valid": False, "file": exc.source, "problems": exc.problems})
                ctx.exit(exc.exit_code)
            raise
        count = len(project.project.services)
        if as_json:
            print_json({"valid": True, "file": str(project.path), "problems": [], "services": count})
        else:
            click.echo(f"{project.path}: ok ({count} service{'s' if count != 1 else ''})")

    @cli.command()
    @click.option("--env", "env", type=ENV, default="dev", show_default=True, help="Environment whose refs and overrides are built.")
    @click.option("--service", "services", multiple=True, help="Build only this service (repeatable).")
    @click.option("--push", is_flag=True, help="Push each image to the project's registry and print its digest.")
    @click.option("--quiet", "-q", is_flag=True, help="Do not stream build output.")
    @click.option("--json", "as_json", is_flag=True, help="Print the built images as JSON.")
    @click.pass_context
    def build(ctx: click.Context, env: str, services: tuple[str, ...], push: bool, quiet: bool, as_json: bool) -> None:
        """Build the images of the project's services (generated or own Dockerfiles, git refs)."""
        project = open_project(ctx)
        log = (lambda line: None) if quiet or as_json else (lambda line: click.echo(line, err=True))
        built = project.build(env=env, push=push, services=list(services) or None, log=log)
        if as_json:
            print_json({name: {"tag": b.tag, "image_id": b.image_id, "digest": b.digest, "commit": b.commit, "seconds": round(b.seconds, 2), "reused": b.cached} for name, b in built.items()})
            return
        print_table(
            f"{project.name} / {env} images",
            ["service", "tag", "image", "digest", "commit", "seconds", "reused"],
            [(n, b.tag, b.image_id[7:19], b.digest or "", (b.commit or "")[:12], f"{b.seconds:.1f}", "yes" if b.cached else "no") for n, b in built.items()],
        )

    @cli.command()
    @click.argument("env", type=ENV)
    @click.option("--json", "as_json", is_flag=True, help="Print the ports as JSON.")
    @click.pass_context
    def ports(ctx: click.Context, env: str, as_json: bool) -> None:
        """Show (and record on first use) the ports of every service in ENV.

        Host ports toggle between BASE and BASE+10000 on each deploy; apps reach a service at
        nginx:INTERNAL, which never changes.
        """
        project = open_project(ctx)
        assigned = project.ports(env)
        if as_json:
            print_json({name: {"host": a.host, "secondary": a.secondary, "internal": a.internal} for name, a in assigned.items()})
            return
        print_table(f"{project.name} / {env} ports", ["service", "host", "secondary", "internal"], [(n, a.host, a.secondary, a.internal) for n, a in assigned.items()])


class _AddGroup(click.Group):
    """``add TYPE``: one subcommand per registered service type, built on demand."""

    def __init__(self, manager: pluggy.PluginManager, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.manager = manager

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(get_registry(self.manager).service_types)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        stype = get_registry(self.manager).service_type(cmd_name)
        if stype is None:
            return None
        options, back = spec_options(stype.spec_class)
        # Offer only the settings this type uses: `add postgres --schedule` would be refused later.
        options = [o for o in options if o.name not in stype.unused_fields]
        name_required = stype.default_name is None

        @click.pass_context
        def callback(ctx: click.Context, /, name: str | None, replace: bool, as_json: bool, **values: Any) -> None:
            project = open_project(ctx)
            name = name or stype.default_name
            assert name is not None  # click requires NAME when the type has no default name
            if name in project.project.services and not replace:
                raise click.UsageError(f"service '{name}' already exists; pass --replace to replace it")
            kwargs = api_kwargs(values, back)
            project.add(stype.name, name, **kwargs)
            if as_json:
                print_json(converter.unstructure(project.project.services[name]))
            else:
                click.echo(f"added {stype.name} service '{name}' to {project.path}")

        params: list[click.Parameter] = [
            click.Argument(["name"], required=name_required, default=None if name_required else stype.default_name),
            click.Option(["--replace"], is_flag=True, help="Replace a service of the same name."),
            click.Option(["--json", "as_json"], is_flag=True, help="Print the stored service as JSON."),
            *options,
        ]
        return click.Command(cmd_name, callback=callback, params=params, help=f"{stype.description}.", short_help=stype.description)
