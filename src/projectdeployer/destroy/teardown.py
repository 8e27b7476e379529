"""Taking an environment down for good: ``projectdeployer destroy --env ENV``.

What an environment leaves behind, and what :class:`Teardown` does with it:

on each server it ran on (this machine's engine for the ``local`` provider)
    every container carrying the environment's labels (``io.projectdeployer.project``/``.env``),
    whatever its name: the services' toggle slots, jobs, the one-off release, backup, restore,
    verify and init containers, the scheduler and the routing sidecar(s); the environment's
    network; the project's built images the environment ran, unless something else uses them
    (a container of another environment, or another environment's release records here); the
    containers' private files (``run/``) and the scheduler's table (``scheduler/``): *removed*.
    The data volumes and the ``backups/`` directory: *kept*, unless ``with_data``.
on this machine
    the environment's state under ``$PROJECTDEPLOYER_HOME/{project}/{env}``: ``ports.json``,
    ``releases.json``, ``routes.json``, ``run/``, ``scheduler/``, its git checkouts and its lock
    file: *removed*. ``backups/``, ``data/``, ``logs/``, ``monitoring/`` (backups and pulled
    copies): *kept* unless ``with_data``. Your own files (the rest of ``config/``, ``files/``,
    ``secrets/``: the passwords of the data kept): *kept*, always.
servers of a provider (``sandbox``, ...)
    without ``with_data`` the servers stay (the data volumes live there): everything above is
    removed on each, and they are marked ``reserve``. With ``with_data`` they are destroyed
    through the provider (``destroy_server``, as a deploy destroys the servers it no longer
    needs), which takes their containers, volumes and backups with them.

:meth:`Teardown.plan` reads all of it live and changes nothing: a :class:`TeardownPlan` made by
the pure :func:`plan_teardown` from what was read (:class:`PlaceFacts`, :class:`LocalFacts`).
:meth:`Teardown.run` takes the environment's deploy lock (a deploy never runs beside it), plans
again, refuses when the plan grew beyond the one the user agreed to, and removes. Every step is
idempotent: running it again removes what is left, and an environment with nothing left says so.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..core import paths
from ..core.containers import network_name
from ..core.errors import ProjectDeployerError, shown
from ..core.fanout import failures, fan_out, one_line, successes
from ..core.runtime import LABEL_ENV, LABEL_PROJECT, LABEL_ROLE, LABEL_SERVICE, LABEL_SLOT, ContainerInfo, ContainerRuntime
from ..deploy import jobs
from ..deploy.allocation import DESTROYING, RESERVE
from ..environment.releases import ReleaseHistory
from ..providers.ssh.keys import KNOWN_HOSTS_FILE

if TYPE_CHECKING:
    from ..core.provider import Server
    from ..environment.environment import Environment

Log = Callable[[str], None]

#: ``Item.where`` of what lives in ``$PROJECTDEPLOYER_HOME`` on this machine.
THIS_MACHINE = "this machine"
#: Volume suffixes of a service's data (``{project}_{env}_{service}_{suffix}``; project/ownnames.py).
DATA_VOLUME_SUFFIXES = ("data", "snapshots")
#: The environment's state on this machine, relative to its directory: removed.
LOCAL_STATE = ("config/ports.json", "config/releases.json", "config/routes.json", "run", "scheduler")
#: Backups and copies pulled from the servers: the environment's data, kept unless with_data.
LOCAL_DATA = ("backups", "data", "logs", "monitoring")
#: The user's own files: kept (``config/`` also holds the files ``sync push`` sends).
LOCAL_YOURS = ("config", "files", "secrets")
#: On a server, under ``{data_root}/{project}/{env}``: removed, and kept unless with_data.
SERVER_STATE = ("run", "scheduler")
SERVER_DATA = ("backups",)
#: Seconds a container gets to stop gracefully, by role (databases flush, apps drain).
STOP_TIMEOUT = {"scheduler": 10, "stateful": 60}
DEFAULT_STOP_TIMEOUT = 30
#: Which containers go first: the scheduler (it would start jobs), then the router.
_FIRST = {jobs.ROLE_SCHEDULER: 0, "sidecar": 1}


class TeardownError(ProjectDeployerError):
    """``destroy`` could not do what it was asked; says what and what changed (nothing, unless said)."""


class UnknownEnvironment(TeardownError):
    """The environment is not in the project file and was never deployed from here: a typo, most likely."""

    exit_code = 2


class TeardownIncomplete(TeardownError):
    """Some things could not be removed (named); the rest was. Running destroy again retries."""

    def __init__(self, message: str, report: TeardownReport) -> None:
        super().__init__(message)
        self.report = report


# --- what is removed and kept (pure) -----------------------------------------------------------


@attrs.frozen(kw_only=True)
class Item:
    """One thing of the environment: removed, or kept and named so the user knows where it is."""

    #: The server it is on, or :data:`THIS_MACHINE` for state under ``$PROJECTDEPLOYER_HOME``.
    where: str
    #: server, container, network, image, volume, directory, file
    kind: str
    name: str
    note: str = ""
    #: The user's data (a volume, backups): kept unless ``with_data``.
    data: bool = False
    #: Goes with its server, which the provider destroys: not removed on its own.
    with_server: bool = False
    #: What to act on (an image's tags, or its id when it has none).
    refs: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.where, self.kind, self.name)

    def to_json(self) -> dict[str, Any]:
        return {"where": self.where, "kind": self.kind, "name": self.name, "note": self.note, "data": self.data}


@attrs.frozen(kw_only=True)
class ImageFacts:
    """An image the environment ran that the project built, and who else uses it."""

    id: str
    #: The tags of the project's built repositories naming it (others keep it: see ``other_tags``).
    tags: tuple[str, ...] = ()
    #: Tags outside the project's repositories (the user's own): the image stays under them.
    other_tags: tuple[str, ...] = ()
    #: Why it stays: ``container shop_staging_api_a (shop/staging)``, ``releases of shop/staging``.
    used_by: tuple[str, ...] = ()
    service: str = ""


@attrs.frozen(kw_only=True)
class PlaceFacts:
    """What one engine holds of the environment, read live."""

    server: str
    containers: tuple[ContainerInfo, ...] = ()
    network: str | None = None
    volumes: tuple[str, ...] = ()
    images: tuple[ImageFacts, ...] = ()
    #: Existing directories under ``{data_root}/{project}/{env}`` on a server: ``(path, data)``.
    directories: tuple[tuple[str, bool], ...] = ()
    #: This machine beside an environment on servers: only the images built here are its.
    images_only: bool = False


@attrs.frozen(kw_only=True)
class LocalFacts:
    """What exists of the environment under ``$PROJECTDEPLOYER_HOME`` (absolute paths)."""

    state: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    yours: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class DestroyPlan:
    """What ``destroy`` removes and what it keeps (and where), read live."""

    project: str
    env: str
    provider: str
    with_data: bool
    remove: tuple[Item, ...] = ()
    keep: tuple[Item, ...] = ()
    #: Servers that could not be read: what is on them is not in the plan.
    unreachable: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def empty(self) -> bool:
        """Nothing to remove (what is kept may still be there)."""
        return not self.remove

    @property
    def kept_data(self) -> tuple[Item, ...]:
        return tuple(i for i in self.keep if i.data)

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "env": self.env,
            "provider": self.provider,
            "with_data": self.with_data,
            "remove": [i.to_json() for i in self.remove],
            "keep": [i.to_json() for i in self.keep],
            "unreachable": dict(self.unreachable),
        }


@attrs.frozen(kw_only=True)
class TeardownReport:
    """What ``destroy`` did."""

    plan: DestroyPlan
    removed: tuple[Item, ...] = ()
    #: What could not be removed, with why.
    failed: tuple[tuple[Item, str], ...] = ()
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **self.plan.to_json(),
            "removed": [i.to_json() for i in self.removed],
            "failed": [{**i.to_json(), "error": why} for i, why in self.failed],
            "seconds": round(self.seconds, 2),
        }


def _container_order(info: ContainerInfo) -> tuple[int, str]:
    return (_FIRST.get(info.labels.get(LABEL_ROLE, ""), 2), info.name)


def describe_container(info: ContainerInfo) -> str:
    """``api, slot a, running`` / ``scheduler, running`` / ``sidecar, running``."""
    parts = []
    service, slot, role = info.labels.get(LABEL_SERVICE), info.labels.get(LABEL_SLOT), info.labels.get(LABEL_ROLE)
    if service:
        parts.append(f"{service}, slot {slot}" if slot in ("a", "b") else service)
    if role and role not in ("service", "stateful"):
        parts.append(role)
    parts.append(info.state)
    return ", ".join(parts)


def _image_item(where: str, image: ImageFacts) -> Item:
    name = image.tags[0] if image.tags else image.id[7:19] if image.id.startswith("sha256:") else image.id
    note = f"image {image.id[7:19]}" + (f", built for {image.service}" if image.service else "")
    if image.used_by:
        return Item(where=where, kind="image", name=name, note=f"{note}; used by {', '.join(image.used_by)}")
    if image.other_tags:
        return Item(where=where, kind="image", name=name, note=f"{note}; also tagged {', '.join(image.other_tags)} (that tag keeps it)", refs=image.tags)
    return Item(where=where, kind="image", name=name, note=note, refs=image.tags or (image.id,))


def plan_teardown(
    *,
    project: str,
    env: str,
    provider: str,
    with_data: bool,
    places: Sequence[PlaceFacts],
    local: LocalFacts,
    servers: Sequence[str] = (),
    unreachable: Mapping[str, str] | None = None,
) -> DestroyPlan:
    """What ``destroy`` removes and keeps, from what was read (no I/O).

    ``servers``: the environment's servers on a provider that creates them (empty for the
    local provider); with ``with_data`` they are destroyed, and what is on them goes with them
    (only their data is listed, as removed with the server).
    """
    remove: list[Item] = []
    keep: list[Item] = []
    destroying = with_data and bool(servers)
    for name in servers if destroying else ():
        place = next((p for p in places if p.server == name), None)
        what = f"{len(place.containers)} container(s), images, volumes and backups go with it" if place else "with everything on it"
        remove.append(Item(where=name, kind="server", name=name, note=f"destroyed through the provider {provider}: {what}"))
    for place in places:
        goes = destroying and place.server in servers
        if not place.images_only and not goes:
            for info in sorted(place.containers, key=_container_order):
                remove.append(Item(where=place.server, kind="container", name=info.name, note=describe_container(info)))
            if place.network:
                remove.append(Item(where=place.server, kind="network", name=place.network))
        if not goes:
            for image in place.images:
                item = _image_item(place.server, image)
                (remove if item.refs else keep).append(item)
        for volume in place.volumes:
            item = Item(where=place.server, kind="volume", name=volume, note="data volume", data=True, with_server=goes)
            (remove if with_data else keep).append(item)
        for path, data in place.directories:
            if data:
                item = Item(where=place.server, kind="directory", name=path, note="backups", data=True, with_server=goes)
                (remove if with_data else keep).append(item)
            elif not goes:
                remove.append(Item(where=place.server, kind="directory", name=path, note="private files of the containers" if path.endswith("/run") else "the scheduler's table"))
    for path in local.state:
        remove.append(Item(where=THIS_MACHINE, kind="directory" if not Path(path).suffix else "file", name=path, note="state of the environment"))
    for path in local.data:
        item = Item(where=THIS_MACHINE, kind="directory", name=path, note=f"{Path(path).name} (pulled or taken here)", data=True)
        (remove if with_data else keep).append(item)
    for path in local.yours:
        keep.append(Item(where=THIS_MACHINE, kind="directory", name=path, note="your files" if Path(path).name != "secrets" else "secrets: generated passwords, keys, tokens"))
    return DestroyPlan(project=project, env=env, provider=provider, with_data=with_data, remove=tuple(remove), keep=tuple(keep), unreachable=dict(unreachable or {}))


def grown_beyond(plan: DestroyPlan, agreed: DestroyPlan) -> list[Item]:
    """What ``plan`` removes that ``agreed`` did not name (the environment changed since)."""
    named = {i.key for i in agreed.remove}
    return [i for i in plan.remove if i.key not in named]


# --- reading and removing ----------------------------------------------------------------------


def _remove_images(runtime: ContainerRuntime, refs: Iterable[str]) -> None:
    """Remove every reference of one image (its tags; the image goes with the last)."""
    for ref in refs:
        runtime.remove_image(ref)


def _built_by(tag: str, project: str) -> bool:
    """Whether ``tag`` is in one of the project's built repositories (``[prefix/]{project}-{service}:V``)."""
    repository = tag.rsplit(":", 1)[0] if ":" in tag.rsplit("/", 1)[-1] else tag
    return repository.rsplit("/", 1)[-1].startswith(f"{project}-")


class Teardown:
    """Takes one environment of a project down (see the module's docstring)."""

    def __init__(self, environment: Environment, *, log: Log | None = None) -> None:
        self.environment = environment
        self.project = environment.project
        self.env = environment.env
        self.log = log or environment.log
        #: Read by :meth:`plan`, used by :meth:`apply`: the servers and what each holds.
        self._servers: dict[str, Server] = {}
        self._facts: dict[str, PlaceFacts] = {}

    @property
    def env_dir(self) -> Path:
        return paths.env_dir(self.project.name, self.env)

    # --- the environment ------------------------------------------------------------------------

    def declared_or_used(self) -> bool:
        """In the project file, or deployed from here before (its directory exists)."""
        return self.env in self.project.environments or self.env_dir.is_dir()

    def check_known(self) -> None:
        """Raise :class:`UnknownEnvironment` for an environment that is neither in the project
        file nor was ever deployed from this machine (a typo, most likely). Decided from the
        file and ``$PROJECTDEPLOYER_HOME`` alone: nothing is read from an engine, nothing made."""
        if self.declared_or_used():
            return
        declared = ", ".join(sorted(self.project.environments)) or "none"
        raise UnknownEnvironment(
            f"environment {shown(self.env)} of project {self.project.name} is unknown: it is not in the project file "
            f"(environments: {declared}) and was never deployed from this machine (no {self.env_dir}); nothing was changed"
        )

    # --- plan ------------------------------------------------------------------------------------

    def plan(self, with_data: bool = False) -> DestroyPlan:
        """Read everything of the environment live, change nothing; an unknown environment is
        an :class:`UnknownEnvironment` error (:meth:`check_known`)."""
        self.check_known()
        provider = self.environment.provider()
        listed = provider.list_servers(self.project.name, self.env)
        # This machine's engine: the environment's one server when it runs here; else where the
        # images the servers ran were built (only those are read there).
        here = self._this_machine()
        here_name = here.name if here is not None else None
        running = [s for s in listed if getattr(s, "running", True)]
        unreachable = {s.name: "stopped" for s in listed if s not in running}
        self._servers, self._facts = {}, {}
        results = fan_out(running, lambda s: self._observe(s, here=s.name == here_name))
        errors = failures(results)
        if here_name in errors:
            raise errors[here_name]  # this machine's engine: nothing can be planned without it
        unreachable.update({name: one_line(exc) for name, exc in errors.items()})
        self._facts.update(successes(results))
        self._servers.update({s.name: s for s in running if s.name in self._facts})
        if here is not None and here_name not in {s.name for s in listed}:
            try:
                self._facts[THIS_MACHINE] = self._observe(here, images_only=True, here=True, label=THIS_MACHINE)
                self._servers[THIS_MACHINE] = here
            except ProjectDeployerError as exc:  # no engine here: the images built here stay
                self.log(f"{THIS_MACHINE}: images not read ({one_line(exc)})")
        plan = plan_teardown(
            project=self.project.name,
            env=self.env,
            provider=provider.name,
            with_data=with_data,
            places=[self._facts[n] for n in self._facts],
            local=self._local_facts(),
            servers=sorted(s.name for s in listed if s.name != here_name),
            unreachable=unreachable,
        )
        return plan

    def _this_machine(self) -> Server | None:
        """This machine's engine (the images an environment on servers ran were built here)."""
        entry = self.environment.registry.providers.get("local")
        if entry is None:
            return None
        servers = entry.get(self.project).list_servers(self.project.name, self.env)
        return servers[0] if servers else None

    def _services_ever(self, containers: Iterable[ContainerInfo]) -> set[str]:
        """Every service the environment has or had: the file's, the recorded ones, the running ones."""
        names = set(self.project.services_for(self.env))
        names |= {r.service for r in ReleaseHistory(self.project.name, self.env).load()}
        names |= {c.labels[LABEL_SERVICE] for c in containers if c.labels.get(LABEL_SERVICE)}
        return names

    def _observe(self, server: Server, *, here: bool, images_only: bool = False, label: str | None = None) -> PlaceFacts:
        """What ``server``'s engine holds of the environment. ``here``: the server is this
        machine (whose images other environments' records may name; its directories are the
        environment's state here, planned apart)."""
        project, env = self.project.name, self.env
        runtime = server.runtime()
        everything = runtime.list({})
        mine = [] if images_only else [c for c in everything if c.labels.get(LABEL_PROJECT) == project and c.labels.get(LABEL_ENV) == env]
        mine_names = {c.name for c in mine}
        releases = ReleaseHistory(project, env).load()
        candidates = dict.fromkeys([c.image_id for c in mine] + [r.image_id for r in releases if r.image_id])
        elsewhere = self._recorded_elsewhere() if here else {}
        images = []
        for image_id in candidates:
            info = runtime.image(image_id)
            if info is None or info.labels.get(LABEL_PROJECT) != project:
                continue  # gone, or not built for the project (base images, the user's own)
            users = [
                f"container {c.name}" + (f" ({c.labels[LABEL_PROJECT]}/{c.labels[LABEL_ENV]})" if c.labels.get(LABEL_PROJECT) and c.labels.get(LABEL_ENV) else "")
                for c in everything
                if c.image_id == info.id and c.name not in mine_names
            ]
            users += [f"releases of {project}/{other}" for other in sorted(elsewhere.get(info.id, ()))]
            ours = tuple(t for t in info.tags if _built_by(t, project))
            others = tuple(t for t in info.tags if not _built_by(t, project))
            images.append(ImageFacts(id=info.id, tags=ours, other_tags=others, used_by=tuple(users), service=info.labels.get(LABEL_SERVICE, "")))
        volumes: list[str] = []
        network = None
        directories: list[tuple[str, bool]] = []
        if not images_only:
            names = [f"{project}_{env}_{s}_{suffix}" for s in sorted(self._services_ever(mine)) for suffix in DATA_VOLUME_SUFFIXES]
            volumes = sorted(v.name for v in runtime.volumes({LABEL_PROJECT: project, LABEL_ENV: env}, names))
            network = network_name(project, env) if runtime.has_network(network_name(project, env)) else None
            if not here:
                directories = self._server_directories(server)
        return PlaceFacts(
            server=label or server.name,
            containers=tuple(mine),
            network=network,
            volumes=tuple(volumes),
            images=tuple(images),
            directories=tuple(directories),
            images_only=images_only,
        )

    def _recorded_elsewhere(self) -> dict[str, set[str]]:
        """image id -> the other environments of the project whose release records name it."""
        found: dict[str, set[str]] = {}
        root = paths.project_dir(self.project.name)
        if not root.is_dir():
            return found
        for other in sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != self.env):
            if not (root / other / "config" / "releases.json").is_file():
                continue
            try:
                records = ReleaseHistory(self.project.name, other).load()
            except (OSError, ValueError, TypeError):
                continue  # not an environment's records (or unreadable): names no image
            for record in records:
                found.setdefault(record.image_id, set()).add(other)
        return found

    def _server_directories(self, server: Server) -> list[tuple[str, bool]]:
        base = f"{server.data_root.rstrip('/')}/{self.project.name}/{self.env}"
        wanted = {f"{base}/{d}": False for d in SERVER_STATE} | {f"{base}/{d}": True for d in SERVER_DATA}
        # ls -d names the ones that exist (and fails for the others, which is the answer).
        result = server.run(["ls", "-d", *wanted])
        present = set(result.stdout.split())
        return [(path, data) for path, data in wanted.items() if path in present]

    def _local_facts(self) -> LocalFacts:
        base = self.env_dir
        state = [str(base / rel) for rel in LOCAL_STATE if (base / rel).exists()]
        checkouts = paths.home() / "git_checkouts" / self.project.name / self.env
        if checkouts.is_dir():
            state.append(str(checkouts))
        data: list[str] = []
        yours: list[str] = []
        for rel in LOCAL_DATA:
            path = base / rel
            if path.is_dir():
                # One without a file (empty directories made ahead) is no data: it goes as state.
                (data if any(p.is_file() for p in path.rglob("*")) else state).append(str(path))
        # The tool's own files do not make a directory yours (the servers' host keys stay
        # with the servers: destroy_server forgets a destroyed one's).
        ours = {base / rel for rel in LOCAL_STATE} | {base / "config" / KNOWN_HOSTS_FILE}
        for rel in LOCAL_YOURS:
            path = base / rel
            if path.is_dir() and any(p for p in path.rglob("*") if p.is_file() and p not in ours):
                yours.append(str(path))
        return LocalFacts(state=tuple(state), data=tuple(data), yours=tuple(yours))

    # --- run -------------------------------------------------------------------------------------

    def run(self, with_data: bool = False, *, agreed: DestroyPlan | None = None, lock_wait: float = 0.0) -> TeardownReport:
        """Take the environment down under its deploy lock.

        ``agreed``: the plan the user was shown and agreed to; when the environment now holds
        more to remove (a deploy ran since), nothing is changed and an error says so.
        """
        self.check_known()  # before the lock: taking it makes the environment's directory
        started = time.monotonic()
        with self.environment.lock(wait=lock_wait):
            try:
                plan = self.plan(with_data)
                if agreed is not None:
                    grown = grown_beyond(plan, agreed) if agreed.with_data == with_data else list(plan.remove)
                    if grown:
                        shown_items = ", ".join(f"{i.kind} {i.name}" for i in grown[:5]) + (f" and {len(grown) - 5} more" if len(grown) > 5 else "")
                        raise TeardownError(f"{self.project.name}/{self.env} changed since you were asked (now also: {shown_items}); nothing was changed: run destroy again")
                if plan.empty:
                    self.log(f"{self.project.name}/{self.env}: nothing to remove")
                    report = TeardownReport(plan=plan, seconds=time.monotonic() - started)
                else:
                    report = self.apply(plan, started)
            finally:
                # Under the lock, last: a deploy waiting for it locks the file made anew (environment/locks.py).
                (self.env_dir / "deploy.lock").unlink(missing_ok=True)
        problems = [f"{i.kind} {i.name} on {i.where}: {why}" for i, why in report.failed]
        problems += [
            f"server {name} could not be read ({why}): nothing on it was removed"
            for name, why in plan.unreachable.items()
            if not (with_data and any(i.kind == "server" and i.name == name for i in report.removed))
        ]
        if problems:
            raise TeardownIncomplete(f"{self.project.name}/{self.env} is not entirely gone: " + "; ".join(problems) + " (run destroy again to retry)", report)
        return report

    def apply(self, plan: DestroyPlan, started: float | None = None) -> TeardownReport:
        """Remove what ``plan`` (from :meth:`plan` of this object) says, logging each step."""
        started = time.monotonic() if started is None else started
        removed: list[Item] = []
        failed: list[tuple[Item, str]] = []
        by_place: dict[str, list[Item]] = {}
        for item in plan.remove:
            if item.where != THIS_MACHINE or item.kind == "image":
                by_place.setdefault(item.where, []).append(item)
        servers = [i for i in plan.remove if i.kind == "server"]
        if servers:
            done, errors = self._destroy_servers([i.name for i in servers])
            removed += [i for i in plan.remove if i.with_server and i.where in done] + [i for i in servers if i.name in done]
            failed += [(i, errors[i.name]) for i in servers if i.name in errors]
        places = [name for name in by_place if not any(i.kind == "server" for i in by_place[name])]
        results = fan_out(places, lambda name: self._clear(name, by_place[name]), name=str)
        for name, outcome in results.items():
            if isinstance(outcome, BaseException):
                failed += [(i, one_line(outcome)) for i in by_place[name]]
            else:
                removed += outcome[0]
                failed += outcome[1]
        local = [i for i in plan.remove if i.where == THIS_MACHINE and i.kind != "image"]
        for item in local:
            try:
                path = Path(item.name)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
                removed.append(item)
                self.log(f"{THIS_MACHINE}: removed {item.name}")
            except OSError as exc:
                failed.append((item, str(exc)))
        if plan.provider != "local" and not plan.with_data:
            self._mark_reserve()
        return TeardownReport(plan=plan, removed=tuple(removed), failed=tuple(failed), seconds=time.monotonic() - started)

    def _destroy_servers(self, names: Sequence[str]) -> tuple[set[str], dict[str, str]]:
        """Destroy the servers through the provider, in parallel, as a deploy destroys the
        servers it no longer needs (marked ``destroying`` first); then check they are gone."""
        provider = self.environment.provider()
        listed = {s.name: s for s in provider.list_servers(self.project.name, self.env)}
        targets = [listed[n] for n in names if n in listed]

        def destroy(server: Server) -> None:
            try:
                provider.set_server_state(server, DESTROYING)
            except Exception:  # noqa: BLE001 - a tag is bookkeeping; destroying is what counts
                pass
            self.log(f"{server.name}: destroying the server (its containers, volumes and backups go with it)")
            provider.destroy_server(server)
            self.log(f"{server.name}: destroyed")

        results = fan_out(targets, destroy)
        errors = {n: one_line(e) for n, e in failures(results).items()}
        still = {s.name for s in provider.list_servers(self.project.name, self.env)}
        for name in names:
            if name in still and name not in errors:
                errors[name] = f"provider {provider.name} still lists it after destroying it"
        return {n for n in names if n not in errors}, errors

    def _clear(self, where: str, items: Sequence[Item]) -> tuple[list[Item], list[tuple[Item, str]]]:
        """Everything of the environment on one server: routing, containers (whatever the plan
        saw, and any that came since), network, images, volumes, directories."""
        server = self._servers[where]
        runtime = server.runtime()
        removed: list[Item] = []
        failed: list[tuple[Item, str]] = []
        kinds = {k: [i for i in items if i.kind == k] for k in ("container", "network", "image", "volume", "directory")}

        def attempt(item: Item, action: Callable[[], object]) -> None:
            try:
                action()
                removed.append(item)
                self.log(f"{where}: removed {item.kind} {item.name}")
            except Exception as exc:  # noqa: BLE001 - reported under the item; the others go on
                failed.append((item, one_line(exc)))

        if not self._facts[where].images_only:
            scheduler = [i for i in kinds["container"] if i.name == jobs.scheduler_name(self.project.name, self.env)]
            for item in scheduler:  # first: it would start jobs while the others go
                attempt(item, functools.partial(self._stop_remove, runtime, item.name, STOP_TIMEOUT["scheduler"]))
            self.log(f"{where}: taking the routing down")
            try:
                self.environment.manager.hook.remove_routing(server=server, project=self.project, env=self.env)
            except Exception as exc:  # noqa: BLE001 - its containers are removed below all the same
                self.log(f"{where}: the router could not be taken down gracefully ({one_line(exc)}); removing its containers")
            planned = {i.name: i for i in kinds["container"] if i not in scheduler}
            now = {c.name: c for c in runtime.list({LABEL_PROJECT: self.project.name, LABEL_ENV: self.env})}
            for name in sorted(set(now) - set(planned) - {i.name for i in scheduler}):
                planned[name] = Item(where=where, kind="container", name=name, note=describe_container(now[name]))
                self.log(f"{where}: {name} appeared since the plan; removing it too")

            def stop(item: Item) -> None:
                role = now[item.name].labels.get(LABEL_ROLE, "") if item.name in now else ""
                attempt(item, lambda: self._stop_remove(runtime, item.name, STOP_TIMEOUT.get(role, DEFAULT_STOP_TIMEOUT)))

            fan_out(list(planned.values()), stop, name=lambda i: i.name)
            for item in kinds["network"]:
                attempt(item, functools.partial(runtime.remove_network, item.name))
        for item in kinds["image"]:
            attempt(item, functools.partial(_remove_images, runtime, item.refs))
        for item in kinds["volume"]:
            attempt(item, functools.partial(runtime.remove_volume, item.name))
        for item in kinds["directory"]:
            attempt(item, functools.partial(self._remove_directory, server, item.name))
        return removed, failed

    @staticmethod
    def _stop_remove(runtime: Any, name: str, timeout: int) -> None:
        runtime.stop(name, timeout=timeout)
        runtime.remove(name)

    @staticmethod
    def _remove_directory(server: Server, path: str) -> None:
        result = server.run(["rm", "-rf", "--", path])
        if not result.ok:
            raise TeardownError(f"cannot remove {path}: {result.stderr.strip() or f'exit code {result.exit_code}'}")

    def _mark_reserve(self) -> None:
        """Servers kept (their data is there) run nothing of the environment now: ``reserve``."""
        provider = self.environment.provider()
        for server in provider.list_servers(self.project.name, self.env):
            try:
                provider.set_server_state(server, RESERVE)
            except NotImplementedError:
                return
            except Exception as exc:  # noqa: BLE001 - a tag is bookkeeping
                self.log(f"{server.name}: could not mark it {RESERVE}: {one_line(exc)}")


__all__ = [
    "ImageFacts",
    "Item",
    "LocalFacts",
    "PlaceFacts",
    "Teardown",
    "TeardownError",
    "TeardownIncomplete",
    "TeardownPlan",
    "TeardownReport",
    "UnknownEnvironment",
    "describe_container",
    "grown_beyond",
    "plan_teardown",
]


#: Deprecated alias (issue 13 renamed the class); use :class:`DestroyPlan`.
TeardownPlan = DestroyPlan
