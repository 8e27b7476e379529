"""Containers as the deploy engine sees them: specs to start, facts observed, one small interface.

The engine never calls a container SDK itself; a server hands it a :class:`ContainerRuntime`
(the Docker implementation lives in ``providers/docker_runtime.py``), so the toggle logic is the
same on this machine, on sandbox servers and on droplets.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Iterator, Mapping, Sequence

import attrs

#: Label keys carried by every container ProjectDeployer starts.
LABEL_PROJECT = "io.projectdeployer.project"
LABEL_ENV = "io.projectdeployer.env"
LABEL_SERVICE = "io.projectdeployer.service"
LABEL_SLOT = "io.projectdeployer.slot"
LABEL_RELEASE = "io.projectdeployer.release"
LABEL_CONFIG = "io.projectdeployer.config"
LABEL_ROLE = "io.projectdeployer.role"


@attrs.frozen(kw_only=True)
class CommandResult:
    """What a command run on a server (or inside a container) returned."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@attrs.frozen(kw_only=True)
class Mount:
    """A bind mount (``source`` is a path on the server) or a named volume (``volume=True``)."""

    source: str
    target: str
    read_only: bool = False
    volume: bool = False


@attrs.frozen(kw_only=True)
class ContainerSpec:
    """Everything needed to start one container; its hash is the service's config hash."""

    name: str
    image: str
    command: tuple[str, ...] | None = None
    #: Replaces the image's ENTRYPOINT (and, as in Docker, its CMD: give ``command`` then).
    entrypoint: tuple[str, ...] | None = None
    env: Mapping[str, str] = attrs.field(factory=dict)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    #: container port -> host port (published on the server's bind address)
    ports: Mapping[int, int] = attrs.field(factory=dict)
    network: str | None = None
    aliases: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    restart: str = "unless-stopped"
    #: Seconds a stop waits for the process before killing it (draining time for the app).
    stop_timeout: int = 30
    user: str | None = None


@attrs.frozen(kw_only=True)
class ContainerInfo:
    """A container as observed now."""

    id: str
    name: str
    image_id: str
    labels: Mapping[str, str]
    #: created, running, restarting, exited, dead, ...
    state: str
    #: Docker's health status when the image has a HEALTHCHECK: starting, healthy, unhealthy.
    health: str | None
    exit_code: int | None
    started_at: str | None
    #: When the last run ended (RFC 3339); Docker's zero time when it never ran or runs now.
    finished_at: str | None = None
    #: container port -> host port actually published
    ports: Mapping[int, int] = attrs.field(factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "running"


@attrs.frozen(kw_only=True)
class VolumeInfo:
    """A named volume as observed now."""

    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ImageInfo:
    """An image as observed now: its id, the tags naming it, its labels (a built image carries
    the project and service it was built for)."""

    id: str
    tags: tuple[str, ...] = ()
    labels: Mapping[str, str] = attrs.field(factory=dict)


class ContainerRuntime(abc.ABC):
    """Container operations on one server."""

    # Below this method, ``list`` in the class body is the method: annotations there say
    # ``builtins.list`` (a runtime's method keeps the name ``list``, as docker-py's does).
    @abc.abstractmethod
    def list(self, labels: Mapping[str, str], *, all: bool = True) -> list[ContainerInfo]:
        """Containers carrying every label in ``labels``."""

    def list_brief(self, labels: Mapping[str, str]) -> builtins.list[ContainerInfo]:
        """Every container carrying every label in ``labels``, running or not, read in one
        request whatever their number: names, labels, state, health, exit code and ports,
        but no start or finish time (``None``). What a deploy's plan needs; :meth:`list`
        inspects each container. Not abstract: a runtime without a cheaper way lists."""
        return self.list(labels)

    @abc.abstractmethod
    def get(self, name: str) -> ContainerInfo | None:
        """The container named ``name``, or ``None``."""

    @abc.abstractmethod
    def start(self, spec: ContainerSpec) -> ContainerInfo:
        """Create and start a container from ``spec`` (a container of that name must not exist)."""

    @abc.abstractmethod
    def create(self, spec: ContainerSpec) -> ContainerInfo:
        """Create a container from ``spec`` without starting it (a scheduled job's container)."""

    @abc.abstractmethod
    def start_existing(self, name: str) -> None:
        """Start the existing, stopped container ``name`` (a job run)."""

    @abc.abstractmethod
    def wait(self, name: str, timeout: float | None = None) -> int | None:
        """Wait until ``name`` is not running; its exit code, or ``None`` after ``timeout`` s."""

    @abc.abstractmethod
    def stop(self, name: str, timeout: int = 30) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after ``timeout``); a missing one is fine."""

    @abc.abstractmethod
    def remove(self, name: str, *, force: bool = True) -> None:
        """Remove the container (forcefully); a missing one is fine. With ``force=False`` a
        running container is not removed: that raises an error instead (the engine decides,
        atomically: a scheduled job's run is never cut short by a deploy)."""

    @abc.abstractmethod
    def logs(self, name: str, *, tail: int = 100, follow: bool = False, timestamps: bool = False, since: float | None = None) -> Iterator[str]:
        """The container's output lines (stdout and stderr); only those after ``since``
        (seconds since the epoch) when given."""

    @abc.abstractmethod
    def ensure_network(self, name: str, labels: Mapping[str, str]) -> None:
        """Create the network if it does not exist."""

    @abc.abstractmethod
    def image_id(self, ref: str) -> str | None:
        """The id of image ``ref`` on this server, or ``None`` when absent."""

    def image_command(self, ref: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """``(ENTRYPOINT, CMD)`` of image ``ref`` on this server, or ``None`` when absent.
        Not abstract, so runtimes written before it still load; they cannot wrap an entrypoint."""
        return None

    @abc.abstractmethod
    def remove_network(self, name: str) -> None:
        """Remove the network; a missing one is fine."""

    @abc.abstractmethod
    def user_ids(self, image: str, user: str | None) -> tuple[int, int]:
        """(uid, gid) of ``user`` inside ``image`` (the image's own USER when ``None``)."""

    @abc.abstractmethod
    def tag(self, image: str, repository: str, tag: str) -> None:
        """Tag ``image`` as ``repository:tag`` (keeps a release's image from being pruned)."""

    # --- what ``destroy`` reads and removes (destroy/teardown.py). Not abstract, so runtimes
    # written before them still load; they cannot take an environment down.

    def has_network(self, name: str) -> bool:
        """Whether a network named exactly ``name`` exists."""
        raise NotImplementedError(f"{type(self).__name__} cannot list networks")

    def volumes(self, labels: Mapping[str, str] | None = None, names: Sequence[str] = ()) -> builtins.list[VolumeInfo]:
        """The volumes carrying every label in ``labels`` (none: no volume by label), and those
        of ``names`` that exist."""
        raise NotImplementedError(f"{type(self).__name__} cannot list volumes")

    def remove_volume(self, name: str) -> None:
        """Remove the volume and its data; a missing one is fine, one in use is an error."""
        raise NotImplementedError(f"{type(self).__name__} cannot remove volumes")

    def image(self, ref: str) -> ImageInfo | None:
        """Image ``ref`` (a tag or an id) on this server, or ``None`` when absent."""
        raise NotImplementedError(f"{type(self).__name__} cannot read images")

    def remove_image(self, ref: str) -> None:
        """Remove the tag ``ref`` (the image goes with its last tag), or the untagged image
        ``ref`` (an id); a missing one is fine. An image a container uses is never removed:
        that is an error."""
        raise NotImplementedError(f"{type(self).__name__} cannot remove images")

    def exec(self, name: str, argv: Sequence[str], *, stdin: bytes | None = None, user: str | None = None, timeout: float = 60.0) -> CommandResult:
        """Run ``argv`` inside the running container ``name``; its exit code and output.

        Secrets (a new password, SQL that carries one) go through ``stdin``, never into
        ``argv`` or the environment: both show up in ``ps`` and in the engine's exec records.
        Not abstract, so runtimes written before it still load; they cannot rotate secrets.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot run commands inside containers")
