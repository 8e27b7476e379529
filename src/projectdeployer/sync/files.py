"""File sync between this machine and the servers of an environment (the seed's
``push_config`` / ``pull_data`` / ``full_sync``).

The local tree is ``$PROJECTDEPLOYER_HOME/{project}/{env}/`` (see :mod:`..core.paths`); on a server the
same tree lives under ``{server.data_root}/{project}/{env}/``.

- **Push** (``config``, ``secrets``, ``files``): one gzipped tar built in memory, sent to every
  server in parallel with :meth:`Server.put_file`, unpacked by :meth:`Server.run`. File modes are
  kept (secrets stay 0600); the archive holds nothing but those three directories. The server
  unpacks into a staging directory first, so a failed upload or a broken archive leaves its
  files as they were. Then each file is renamed into place (atomic per file) and what the
  archive no longer has is removed. Directories are never replaced, only filled: every
  container bind-mounts ``config/``, and a directory swapped by rename would leave running
  containers looking at the old, deleted one.
- **Pull** (``data``, ``logs``, ``backups``, ``monitoring``): each server packs its four
  directories into one archive, which is fetched with :meth:`Server.get_file` and unpacked into
  ``{kind}/{server_dir}/`` here, ``server_dir`` being the server's public address with dots and
  colons as underscores (the seed's ``logs/192_168_1_100/``). Pull merges: files the server has
  overwrite local copies (atomically per file); local files the server no longer has (a backup
  it pruned) are kept. Each container of the environment also gets its recent log lines
  written to ``logs/{server_dir}/{container}.log``.

Only the :class:`~..core.provider.Server` interface reaches servers, so remote servers work unchanged.
When the server is this machine (the ``local`` provider: its ``data_root`` is
``$PROJECTDEPLOYER_HOME``), both trees are one: push has nothing to copy ("already in place") and
pull copies no files (``backups/`` into ``backups/127_0_0_1/`` would recurse), it only exports
the container logs.

Archives are held in memory (``put_file`` and ``get_file`` take and return bytes): fine for
configuration and logs, not for data directories of many gigabytes.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..core import paths
from ..core.errors import ProjectDeployerError
from ..core.fanout import fan_out
from ..core.fsutil import atomic_write
from ..core.provider import Server
from ..core.runtime import LABEL_ENV, LABEL_PROJECT
from ..environment.binding import BoundEnvironment, EnvironmentSource
from ..environment.environment import Environment

Log = Callable[[str], None]

#: Directories sent from this machine to the servers.
PUSH_KINDS = ("config", "secrets", "files")
#: Directories fetched from every server into a folder of their own.
PULL_KINDS = ("data", "logs", "backups", "monitoring")
#: Log lines exported per container by a pull.
DEFAULT_LOG_LINES = 10_000
#: Servers synced at once.
DEFAULT_WORKERS = 8
#: Seconds one command on a server may take (packing or unpacking); a hung server then fails
#: alone instead of holding the whole sync forever.
DEFAULT_COMMAND_TIMEOUT = 600.0
#: Longest error text kept from a server's output (a report line, not a dump).
_MAX_ERROR = 300
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


# --- reports and errors ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SyncReport:
    """What a push or a pull did on one server."""

    server: str
    address: str
    #: ``push`` or ``pull``.
    action: str
    #: Regular files sent (push) or received, container logs included (pull).
    files: int = 0
    #: Bytes that crossed the wire: the archive, plus the exported container logs on a pull.
    bytes: int = 0
    seconds: float = 0.0
    #: Where the files went: the server's directory (push) or the local folders (pull).
    destination: str = ""
    #: Something worth knowing that is not an error ("already in place", files skipped, ...).
    note: str | None = None
    #: ``None`` when the server succeeded, else one line saying why it did not.
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``seconds`` rounded to ms)."""
        data = attrs.asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


class SyncFailed(ProjectDeployerError):
    """At least one server failed; every other server was still synced.

    :attr:`reports` holds every server's report, the failed ones with their ``error``.
    """

    def __init__(self, action: str, reports: Sequence[SyncReport]) -> None:
        self.action = action
        self.reports: tuple[SyncReport, ...] = tuple(reports)
        self.failed: tuple[SyncReport, ...] = tuple(r for r in self.reports if not r.ok)
        # full_sync reports each server twice (push and pull): count and name servers once.
        failed = list(dict.fromkeys(r.server for r in self.failed))
        total = len(dict.fromkeys(r.server for r in self.reports))
        lines = [f"{action} failed on {len(failed)} of {total} server(s): {', '.join(failed)}"]
        lines += [f"{r.server} ({r.address}){'' if r.action == action else ' ' + r.action}: {r.error}" for r in self.failed]
        super().__init__("\n".join(lines))


def _report(server: Server, action: str, started: float, **fields: Any) -> SyncReport:
    """``server``'s report for ``action``, timed from ``started`` (``time.monotonic()``)."""
    return SyncReport(server=server.name, address=server.public_address, action=action, seconds=time.monotonic() - started, **fields)


class _ServerError(ProjectDeployerError):
    """One server's step failed; the message becomes its report's ``error``."""


# --- helpers -----------------------------------------------------------------------------------


def is_local_tree(server: Server) -> bool:
    """True when ``server``'s tree is this machine's ``$PROJECTDEPLOYER_HOME`` itself.

    Both conditions matter: a remote server's ``/local`` must never be mistaken for an
    operator whose home happens to be ``/local`` too.
    """
    if str(getattr(server, "public_address", "")) not in _LOOPBACK:
        return False
    return Path(server.data_root).expanduser().resolve() == paths.home().resolve()


def _short(text: str) -> str:
    """The last lines of a command's output, bounded: enough to say why, never a dump."""
    text = " | ".join(line.strip() for line in text.strip().splitlines()[-3:] if line.strip())
    return text if len(text) <= _MAX_ERROR else "..." + text[-_MAX_ERROR:]


def _describe(exc: BaseException) -> str:
    """One line for an exception (its type too when it is not one of ours)."""
    if isinstance(exc, ProjectDeployerError):
        return _short(str(exc)) or type(exc).__name__
    return _short(f"{type(exc).__name__}: {exc}")


def _remote_env_dir(server: Server, project: str, env: str) -> str:
    return f"{server.data_root.rstrip('/')}/{project}/{env}"


def _remove_quietly(server: Server, path: str) -> None:
    """Best-effort removal of a temporary file on ``server``: a failure here must not hide
    the error that made us clean up."""
    try:
        server.run(["rm", "-f", "--", path])
    except Exception:  # noqa: BLE001 - cleanup only; the caller reports the real error
        pass


def _temp_name(prefix: str, suffix: str = "") -> str:
    """A hidden, unique name for a temporary file or directory on a server."""
    return f".pd-{prefix}-{uuid.uuid4().hex[:12]}{suffix}"


# --- push: the archive -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PushArchive:
    """The gzipped tar pushed to every server."""

    data: bytes
    #: The top-level directories it holds (those of :data:`PUSH_KINDS` that exist here).
    kinds: tuple[str, ...]
    files: int
    #: Entries left out (symbolic links, sockets, editors' temporaries), relative paths.
    skipped: tuple[str, ...] = ()


def _walk(root: Path, kind: str) -> Iterator[tuple[Path, str]]:
    """``(path, arcname)`` of ``root/kind`` and everything below it, parents first, sorted,
    symbolic links not followed (they are yielded, for the caller to skip)."""
    base = root / kind
    yield base, kind
    for current, dirs, files in os.walk(base, followlinks=False):
        dirs.sort()
        rel = Path(current).relative_to(root)
        for name in sorted([*dirs, *files]):
            yield Path(current) / name, (rel / name).as_posix()


def _pushable(path: Path) -> bool:
    """Regular files and directories only: a symbolic link could point outside the pushed
    directories (and would be followed by the server, not by us); ``atomic_write``'s
    half-written temporaries are not files yet."""
    if path.is_symlink() or not (path.is_file() or path.is_dir()):
        return False
    return not (path.name.startswith(".") and path.name.endswith(".tmp"))


def build_push_archive(env_root: Path, kinds: Sequence[str] = PUSH_KINDS) -> PushArchive:
    """Pack ``kinds`` of ``env_root`` into a gzipped tar, modes kept, owners cleared.

    Owners are cleared (uid/gid 0, no names) because the operator's uid means nothing on a
    server: the server's unpacking user owns the files.
    """
    present = tuple(k for k in kinds if (env_root / k).is_dir() and not (env_root / k).is_symlink())
    buffer = io.BytesIO()
    files = 0
    skipped: list[str] = []
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for kind in present:
            for path, arcname in _walk(env_root, kind):
                if not _pushable(path):
                    skipped.append(arcname)
                    continue
                info = tar.gettarinfo(str(path), arcname=arcname)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isfile():
                    files += 1
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
    return PushArchive(data=buffer.getvalue(), kinds=present, files=files, skipped=tuple(skipped))


# --- push: the server side -----------------------------------------------------------------

#: Unpacks the pushed archive on a server. Arguments: target dir, archive, staging dir, kinds.
#: Everything is unpacked into the staging directory first (a broken archive changes nothing);
#: then, per kind: entries the archive no longer has (or has with another type) are removed,
#: symbolic links always (``mv`` onto a link to a directory would move the file into it),
#: directories are created (existing ones are KEPT: running containers bind-mount them),
#: files are renamed into place one by one (atomic each), and directory modes are copied last
#: (so a read-only directory is still writable while it is filled).
APPLY_SCRIPT = r"""
set -eu
target=$1; archive=$2; stage=$3; shift 3
trap 'rm -rf -- "$stage" "$archive"' EXIT
mkdir -m 0700 -- "$stage"
tar -xzpf "$archive" --no-same-owner -C "$stage"
cd -- "$stage"
for top in "$@"; do
  [ -d "$top" ] || { echo "the archive has no $top/" >&2; exit 3; }
  mkdir -p -- "$target/$top"
  (cd -- "$target" && find "$top" -mindepth 1 -depth -exec sh -c '
    for p; do
      if [ -d "$p" ] && [ ! -L "$p" ]; then
        if [ ! -d "$0/$p" ]; then rm -rf -- "$p"; fi
      elif [ -L "$p" ] || [ ! -e "$0/$p" ] || [ -d "$0/$p" ]; then
        rm -f -- "$p"
      fi
    done' "$stage" {} +)
  find "$top" -type d -exec sh -c 'for d; do mkdir -p -- "$0/$d"; done' "$target" {} +
  find "$top" ! -type d -exec sh -c 'for f; do mv -f -- "$f" "$0/$f"; done' "$target" {} +
  find "$top" -depth -type d -exec sh -c 'for d; do chmod "$(stat -c %a -- "$d")" "$0/$d"; done' "$target" {} +
done
"""


def _push_to(server: Server, archive: PushArchive, project: str, env: str, timeout: float | None) -> str:
    """Upload ``archive`` to ``server`` and unpack it into its env directory; the directory."""
    target = _remote_env_dir(server, project, env)
    made = server.run(["mkdir", "-p", "--", target], timeout=timeout)
    if not made.ok:
        raise _ServerError(f"cannot create {target}: {_short(made.stderr)}")
    remote_archive = f"{target}/{_temp_name('push', '.tar.gz')}"
    try:
        # 0600: the archive holds the secrets.
        server.put_file(remote_archive, archive.data, mode=0o600)
    except BaseException:
        _remove_quietly(server, remote_archive)
        raise
    stage = f"{target}/{_temp_name('stage')}"
    # The script removes the archive and the staging directory itself, whatever happens.
    applied = server.run(["sh", "-c", APPLY_SCRIPT, "sh", target, remote_archive, stage, *archive.kinds], timeout=timeout)
    if not applied.ok:
        raise _ServerError(f"unpacking failed (exit {applied.exit_code}): {_short(applied.stderr or applied.stdout)}")
    return target


# --- pull: the server side ---------------------------------------------------------------------

#: Packs the pull directories a server has. Arguments: env dir, archive, kinds. Prints the
#: kinds packed (none: no archive). umask 077: the archive holds data and backups.
PACK_SCRIPT = r"""
set -eu
base=$1; archive=$2; shift 2
umask 077
[ -d "$base" ] || exit 0
cd -- "$base"
for kind do
  shift
  if [ -d "$kind" ] && [ ! -L "$kind" ]; then set -- "$@" "$kind"; fi
done
[ "$#" -gt 0 ] || exit 0
echo "$@"
tar -czf "$archive" "$@"
"""


def _tar_changed_only(exit_code: int, stderr: str) -> bool:
    """GNU tar's exit 1 with "file changed as we read it": a log grew while being packed.
    The archive is complete; the file is as it was at some instant."""
    return exit_code == 1 and "changed as we read it" in stderr


def _fetch_from(server: Server, project: str, env: str, timeout: float | None) -> tuple[bytes | None, str | None]:
    """The pull archive of ``server`` (``None`` when it has none of the directories) and a
    warning worth reporting, if any. The server's temporary archive is always removed."""
    base = _remote_env_dir(server, project, env)
    remote_archive = f"{server.data_root.rstrip('/')}/{_temp_name(f'pull-{project}-{env}', '.tar.gz')}"
    try:
        packed = server.run(["sh", "-c", PACK_SCRIPT, "sh", base, remote_archive, *PULL_KINDS], timeout=timeout)
        warning = None
        if _tar_changed_only(packed.exit_code, packed.stderr):
            warning = "some files changed while they were packed"
        elif not packed.ok:
            raise _ServerError(f"packing failed (exit {packed.exit_code}): {_short(packed.stderr or packed.stdout)}")
        if not packed.stdout.strip():
            return None, None
        return server.get_file(remote_archive), warning
    finally:
        _remove_quietly(server, remote_archive)


# --- pull: this machine's side -------------------------------------------------------------


def _member_filter(skipped: list[str]) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """tarfile's ``data`` filter (no absolute paths, no ``..``, no links out, no devices, no
    owners) that also refuses anything outside :data:`PULL_KINDS`. A refused member is
    skipped and named, rather than failing the whole server."""

    def keep(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        if member.name.split("/", 1)[0] not in PULL_KINDS:
            skipped.append(member.name)
            return None
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError:
            skipped.append(member.name)
            return None

    return keep


def _merge_into(source: Path, dest: Path) -> int:
    """Move every file of ``source`` into ``dest`` (same relative paths), each with one
    atomic rename; files ``dest`` has and ``source`` lacks are kept. Regular files moved."""
    moved = 0
    dest.mkdir(parents=True, exist_ok=True)
    for current, dirs, files in os.walk(source):
        rel = Path(current).relative_to(source)
        for name in dirs:
            target = dest / rel / name
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                target.unlink()
            target.mkdir(exist_ok=True)
        for name in files:
            target = dest / rel / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            source_file = Path(current) / name
            if source_file.is_file() and not source_file.is_symlink():
                moved += 1
            os.replace(source_file, target)
    return moved


def unpack_pull_archive(data: bytes, env_root: Path, folder: str) -> tuple[int, tuple[str, ...]]:
    """Unpack a server's pull archive into ``env_root/{kind}/{folder}/``: the number of
    regular files received and the members refused.

    It is unpacked into a staging directory inside ``env_root`` first (same file system, so
    the moves are renames): a broken archive changes nothing here.
    """
    env_root.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    stage = Path(tempfile.mkdtemp(prefix=f".pull-{folder}-", dir=env_root))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(stage, filter=_member_filter(skipped))
        files = 0
        for kind in PULL_KINDS:
            if (stage / kind).is_dir():
                files += _merge_into(stage / kind, env_root / kind / folder)
        return files, tuple(skipped)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --- the seed's API ----------------------------------------------------------------------------


def _servers_of(environment: Environment) -> list[Server]:
    """Every server of the environment, from its provider (the same choice as the deploy's)."""
    provider = environment.provider()
    servers = provider.list_servers(environment.project.name, environment.env)
    if not servers:
        raise ProjectDeployerError(f"environment {environment.env}: provider {provider.name} has no server")
    return list(servers)


class FileSync:
    """Push ``config``/``secrets``/``files`` to, and pull ``data``/``logs``/``backups``/
    ``monitoring`` from, every server of one environment.

    ``project`` is an :class:`~projectdeployer.environment.environment.Environment` (then
    ``env`` is its) or a project that hands one out (a ``ProjectDeployer``, asked when the
    servers are needed); ``projectdeployer.FileSync`` (api/by_name.py) also takes a project's
    name. ``servers`` replaces the provider's list (tests, or syncing a subset);
    ``command_timeout`` bounds each packing/unpacking command on a server.
    Each method returns one :class:`SyncReport` per server and raises :class:`SyncFailed`,
    naming every failed server, once all servers are done.
    """

    def __init__(
        self,
        project: Environment | EnvironmentSource,
        env: str | None = None,
        *,
        log: Log | None = None,
        servers: Sequence[Server] | None = None,
        max_workers: int = DEFAULT_WORKERS,
        log_lines: int = DEFAULT_LOG_LINES,
        command_timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        self._bound = BoundEnvironment("FileSync", project, env)
        self.project = self._bound.project
        self.env = self._bound.env
        self.log: Log = log or (lambda line: print(line, flush=True))
        self._servers = list(servers) if servers is not None else None
        self.max_workers = max(1, max_workers)
        self.log_lines = log_lines
        self.command_timeout = command_timeout

    @property
    def env_root(self) -> Path:
        """This machine's ``{home}/{project}/{env}``."""
        return paths.env_dir(self.project, self.env)

    @property
    def environment(self) -> Environment:
        """The environment synced (obtained from the project when first needed)."""
        return self._bound.get(self.log)

    def servers(self) -> list[Server]:
        """The servers synced: the given ones, else the environment provider's."""
        if self._servers is None:
            self._servers = _servers_of(self.environment)
        return list(self._servers)

    # --- public API

    def push_config(self) -> list[SyncReport]:
        """Send ``config``, ``secrets`` and ``files`` to every server, in parallel."""
        servers = self.servers()
        archive = build_push_archive(self.env_root)
        for name in archive.skipped:
            self.log(f"push: skipped {name} (not a regular file or directory)")
        if not archive.kinds:
            self.log(f"push: nothing to send, {self.env_root} has none of {', '.join(PUSH_KINDS)}")
        else:
            self.log(f"push {self.project}/{self.env}: {archive.files} file(s) of {', '.join(archive.kinds)}, {len(archive.data)} bytes, to {len(servers)} server(s)")
        return self._each("push", servers, lambda server: self._push_one(server, archive))

    def pull_data(self) -> list[SyncReport]:
        """Fetch ``data``, ``logs``, ``backups`` and ``monitoring`` of every server into a
        folder per server, with each container's recent log lines, in parallel."""
        servers = self.servers()
        self.log(f"pull {self.project}/{self.env}: from {len(servers)} server(s) into {self.env_root}")
        return self._each("pull", servers, self._pull_one)

    def full_sync(self) -> list[SyncReport]:
        """Push, then pull; the reports of both. The pull runs even when a push failed (it
        changes nothing on the servers); the error names the failures of both."""
        try:
            pushed = self.push_config()
        except SyncFailed as exc:
            pushed = list(exc.reports)
        try:
            pulled = self.pull_data()
        except SyncFailed as exc:
            pulled = list(exc.reports)
        reports = pushed + pulled
        if any(not r.ok for r in reports):
            raise SyncFailed("sync", reports)
        return reports

    # --- per server

    def _each(self, action: str, servers: Sequence[Server], work: Callable[[Server], SyncReport]) -> list[SyncReport]:
        """Run ``work`` on every server in parallel; a failing server does not stop the
        others. Reports come back in server order; :class:`SyncFailed` after all are done."""

        def guarded(server: Server) -> SyncReport:
            started = time.monotonic()
            try:
                report = work(server)
            except Exception as exc:  # noqa: BLE001 - any failure is this server's, not the others'
                report = _report(server, action, started, error=_describe(exc))
                self.log(f"{action} {server.name}: FAILED: {report.error}")
                return report
            self.log(f"{action} {server.name}: {report.files} file(s), {report.bytes} bytes in {report.seconds:.1f}s{f' ({report.note})' if report.note else ''}")
            return report

        if not servers:
            return []
        reports: list[SyncReport] = []
        for outcome in fan_out(servers, guarded, max_workers=self.max_workers).values():
            if isinstance(outcome, BaseException):
                raise outcome  # not a server's failure (guarded reports those): an interrupt
            reports.append(outcome)
        if any(not r.ok for r in reports):
            raise SyncFailed(action, reports)
        return reports

    def _push_one(self, server: Server, archive: PushArchive) -> SyncReport:
        started = time.monotonic()
        if is_local_tree(server):
            return _report(server, "push", started, destination=str(self.env_root), note="already in place: the server's tree is this machine's")
        if not archive.kinds:
            return _report(server, "push", started, note="nothing to push")
        target = _push_to(server, archive, self.project, self.env, self.command_timeout)
        note = f"skipped {len(archive.skipped)} link(s) or special file(s)" if archive.skipped else None
        return _report(server, "push", started, files=archive.files, bytes=len(archive.data), destination=target, note=note)

    def _pull_one(self, server: Server) -> SyncReport:
        started = time.monotonic()
        folder = paths.server_env_dir(server)
        notes: list[str] = []
        files = size = 0
        if is_local_tree(server):
            notes.append("files already in place: the server's tree is this machine's")
        else:
            data, warning = _fetch_from(server, self.project, self.env, self.command_timeout)
            if warning:
                notes.append(warning)
            if data is not None:
                size += len(data)
                received, skipped = unpack_pull_archive(data, self.env_root, folder)
                files += received
                if skipped:
                    notes.append(f"refused {len(skipped)} unsafe member(s): {', '.join(skipped[:5])}")
        logs, log_bytes = self._export_logs(server, self.env_root / "logs" / folder)
        files, size = files + logs, size + log_bytes
        destination = f"{self.env_root}/{{{','.join(PULL_KINDS)}}}/{folder}"
        return _report(server, "pull", started, files=files, bytes=size, destination=destination, note="; ".join(notes) or None)

    def _export_logs(self, server: Server, dest: Path) -> tuple[int, int]:
        """Write the recent log lines of each of the environment's containers on ``server``
        to ``dest/{container}.log`` (0600: logs can hold anything); ``(files, bytes)``."""
        try:
            runtime = server.runtime()
        except NotImplementedError:
            return 0, 0  # a server that runs no containers has no container logs
        count = size = 0
        for container in runtime.list({LABEL_PROJECT: self.project, LABEL_ENV: self.env}):
            lines = list(runtime.logs(container.name, tail=self.log_lines))
            text = "\n".join(lines) + ("\n" if lines else "")
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", container.name.lstrip("/")) or container.id
            atomic_write(dest / f"{safe}.log", text, mode=0o600)
            count += 1
            size += len(text.encode())
        return count, size


__all__ = [
    "DEFAULT_LOG_LINES",
    "PULL_KINDS",
    "PUSH_KINDS",
    "FileSync",
    "PushArchive",
    "SyncFailed",
    "SyncReport",
    "build_push_archive",
    "is_local_tree",
    "unpack_pull_archive",
]
