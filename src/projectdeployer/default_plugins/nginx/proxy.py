"""One nginx master of the sidecar container (a "proxy") and the staged, checked, atomic switch
of its configuration.

The sidecar container (``nginx_sidecar.NginxSidecar``) runs two masters under one PID 1: the
``http`` proxy (HTTP routes and domains, files under :data:`PD_ROOT`) and the ``tcp`` proxy (TCP
routes, files under :data:`TCP_ROOT`). Each reloads alone: a web deploy retires the http
proxy's workers only, never those that carry database sessions. A switch is three steps, so that
the sidecar can make both proxies' changes live together or neither:

1. :meth:`NginxProxy.stage`: write the version's files next to the live ones and ``nginx -t``
   them with the live main configuration (nothing live changes; a refusal deletes them);
2. :meth:`NginxProxy.switch`: rename its ``active.conf`` live (one ``rename(2)``), SIGHUP its
   master, wait for the new workers (a reload nginx refuses puts the previous file back);
3. :meth:`NginxProxy.prune`, or :meth:`NginxProxy.revert` when the other proxy's switch failed.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import tarfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from ...core.poll import WaitTimeout, wait_until
from ...core.routing import RoutingError
from .render import (
    _VERSION_LINE,
    PATHS,
    RELOAD_TIMEOUT,
    Kind,
    _nginx_message,
    render_active,
)

# Lists nginx processes from /proc (the image may have no `ps`): "<pid> <ppid> <title>" per line.
_PS_SCRIPT = (
    "for d in /proc/[0-9]*; do "
    "t=$(tr '\\000' ' ' 2>/dev/null < \"$d/cmdline\") || continue; "
    'case "$t" in nginx:*) read -r _ _ _ pp _ 2>/dev/null < "$d/stat" || pp=0; echo "${d#/proc/} $pp $t";; esac; '
    "done"
)


# Prints each proxy root's nginx.conf, active.conf and the live version's routes.json, each as
# "== <marker> <path>" + its text + a line with the marker ($1, new per call: no file holds
# it), or "- <marker> <path>" when there is none, then "- <marker> pd-end": one exec reads the proxies' state, where the
# archive API would take one call (and a docker-tar process on the engine) per file. Each file
# is read once, so one that a concurrent switch replaces is whole, old or new.
_STATE_SCRIPT = (
    'mark=$1; shift; emit() { if [ -r "$1" ]; then printf "== %s %s\\n" "$mark" "$1"; cat "$1"; printf "\\n%s\\n" "$mark"; else printf -- "- %s %s\\n" "$mark" "$1"; fi; }; '
    'for root in "$@"; do emit "$root/nginx.conf"; emit "$root/active.conf"; '
    "v=$(sed -n 's/^# pd-version \\([A-Za-z0-9_]*\\)$/\\1/p' \"$root/active.conf\" 2>/dev/null | head -n 1); "
    '[ -z "$v" ] || emit "$root/v/$v/routes.json"; done; printf -- "- %s pd-end\\n" "$mark"'
)

# One switch in one exec: find the proxy's master ($1: its main configuration), note its workers,
# rename the staged active.conf live ($2 -> $3), SIGHUP the master, then watch for up to $4 polls
# of 20 ms until new workers run and none of the noted ones still serves; on success run $5 (the
# prune). Prints "pd-before: <pids>" and "pd-switch: <outcome>" (reloaded, pending, no-master,
# mv-failed, kill-failed). "pending" is no verdict: the caller keeps watching, and reads the
# master's log for a refusal (nginx reports a configuration it cannot load only there).
_SWITCH_SCRIPT = (
    "workers() { for d in /proc/[0-9]*; do "
    "t=$(tr '\\000' ' ' 2>/dev/null < \"$d/cmdline\") || continue; "
    'case "$t" in "nginx: worker process is shutting down"*) ;; "nginx: worker process"*) '
    'read -r _ _ _ pp _ 2>/dev/null < "$d/stat" && [ "$pp" = "$master" ] && printf "%s " "${d#/proc/}";; esac; done; }; '
    "master=; for d in /proc/[0-9]*; do "
    "t=$(tr '\\000' ' ' 2>/dev/null < \"$d/cmdline\") || continue; "
    'case "$t" in "nginx: master process"*"-c $1 "*) master=${d#/proc/};; esac; done; '
    '[ -n "$master" ] || { echo "pd-switch: no-master"; exit 0; }; '
    'before=" $(workers)"; echo "pd-before:$before"; '
    'mv -f "$2" "$3" || { echo "pd-switch: mv-failed"; exit 0; }; '
    'kill -HUP "$master" || { echo "pd-switch: kill-failed"; exit 0; }; '
    "i=0; while [ $i -lt $4 ]; do now=$(workers); old=no; "
    'for w in $now; do case "$before " in *" $w "*) old=yes;; esac; done; '
    'if [ -n "$now" ] && [ $old = no ]; then echo "pd-switch: reloaded"; sh -c "$5"; exit 0; fi; '
    "sleep 0.02; i=$((i + 1)); done; "
    'echo "pd-switch: pending"'
)
#: Polls of 20 ms the switch script waits for new workers before the caller takes over (a
#: reload takes tens of milliseconds; a refused one never ends, and its cause is in the log).
_SWITCH_POLLS = 75


@attrs.frozen(kw_only=True)
class Staged:
    """A version written into a proxy and accepted by ``nginx -t``, not live yet."""

    version: str
    #: ``active.conf`` as it was before (``None``: there was none), put back by a revert.
    previous_active: str | None
    keep_certs: tuple[str, ...]


@attrs.frozen(kw_only=True)
class ProxyState:
    """A proxy's files as read at one moment."""

    #: Its main ``nginx.conf``; ``None``: the container runs no such proxy (no stream module).
    main: str | None
    #: Its ``active.conf`` and the version that names (``None``: unreadable).
    active: str | None
    version: str | None
    #: That version's ``routes.json`` (``None``: no live version, or unreadable).
    routes_json: str | None = None


def read_states(container: Any, proxies: Sequence[NginxProxy]) -> dict[str, ProxyState]:
    """kind -> state of each of ``proxies`` in ``container``, all read by one exec (through
    the archive API, a call per file, when the container is not running: no exec there)."""
    if container.status != "running":
        return {proxy.kind: proxy.read_state(container) for proxy in proxies}
    files = _read_files(container, [p.paths.root for p in proxies])
    if files is None:
        # The answer came back cut short (it ends with a marker): read file by file instead.
        return {proxy.kind: proxy.read_state(container) for proxy in proxies}
    states: dict[str, ProxyState] = {}
    for proxy in proxies:
        paths = proxy.paths
        active = files.get(paths.active_conf)
        match = _VERSION_LINE.search(active or "")
        version = match.group(1) if match else None
        routes = files.get(f"{paths.versions_dir}/{version}/routes.json") if version else None
        if paths.main_conf not in files:
            # No main configuration: a proxy this container does not run (an image without the
            # stream module), said by the archive API too before anyone acts on it. (In the
            # many-servers test an exec on a sidecar just restarted with its server once saw
            # none of the files the archive API then read: the exec's view is not trusted alone.)
            states[proxy.kind] = proxy.read_state(container)
            continue
        states[proxy.kind] = ProxyState(main=files[paths.main_conf], active=active, version=version, routes_json=routes)
    return states


def docker_time(raw: str) -> float:
    """Docker's RFC 3339 time (nanoseconds, ``Z``) as a POSIX timestamp; 0 when unset."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", raw or "")
    if not match or raw.startswith("0001-"):
        return 0.0
    stamp = datetime.fromisoformat(match.group(1) + (match.group(3) if match.group(3) != "Z" else "+00:00"))
    return stamp.timestamp() + float(match.group(2) or 0)


def list_processes(container: Any) -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, title) of every nginx process in ``container`` (read from ``/proc``)."""
    result = container.exec_run(["sh", "-c", _PS_SCRIPT], stdout=True, stderr=True, user="root")
    output = (result.output or b"").decode(errors="replace")
    if result.exit_code != 0:
        raise RoutingError(f"{container.name}: cannot list processes: {output.strip()}")
    found: dict[int, tuple[int, str]] = {}
    for line in output.splitlines():
        pid, _, rest = line.partition(" ")
        ppid, _, title = rest.partition(" ")
        if pid.isdigit() and ppid.isdigit():
            found[int(pid)] = (int(ppid), " ".join(title.split()))
    return found


def _read_files(container: Any, roots: Sequence[str]) -> dict[str, str] | None:
    """path -> text of what :data:`_STATE_SCRIPT` printed for ``roots``; ``None`` when the
    output is incomplete (no end line, or a file without its closing marker)."""
    mark = f"--pd-{secrets.token_hex(8)}--"
    result = container.exec_run(["sh", "-c", _STATE_SCRIPT, "sh", mark, *roots], stdout=True, stderr=True, user="root")
    output: bytes = result.output or b""
    if result.exit_code != 0:
        raise RoutingError(f"{container.name}: cannot read its nginx configuration: {output.decode(errors='replace').strip()}")
    closing = f"\n{mark}\n".encode()
    present, absent = f"== {mark} ".encode(), f"- {mark} ".encode()
    files: dict[str, str] = {}
    at = 0
    while True:
        # Only lines that carry this call's marker count: nothing else in the output (a stray
        # line, bytes of another answer) can be taken for a file.
        found = [i for i in (output.find(present, at), output.find(absent, at)) if i >= 0]
        if not found:
            return None
        start = min(found)
        end = output.find(b"\n", start)
        if end < 0:
            return None
        line = output[start:end].decode(errors="replace")
        path = line.split(" ", 2)[2]
        at = end + 1
        if line.startswith("- "):
            if path == "pd-end":
                return files
            continue
        stop = output.find(closing, at)
        if stop < 0:
            return None
        files[path] = output[at:stop].decode(errors="replace")
        at = stop + len(closing)


class NginxProxy:
    """One nginx master of a sidecar container, and the files it owns.

    :param name: the sidecar container's name (for messages).
    :param kind: ``http`` or ``tcp``: which master, which files.
    :param docker_client: a Docker SDK client for the server's engine (its clock).
    """

    def __init__(self, docker_client: Any, *, name: str, kind: Kind) -> None:
        self.client = docker_client
        self.name = name
        self.kind: Kind = kind
        self.paths = PATHS[kind]

    def __repr__(self) -> str:
        return f"NginxProxy({self.name!r}, {self.kind})"

    @property
    def label(self) -> str:
        """How errors name this proxy."""
        return self.name if self.kind == "http" else f"{self.name} (tcp proxy)"

    def runs_in(self, container: Any) -> bool:
        """Whether ``container`` was made with this proxy (the tcp one needs the stream module)."""
        return self.read(container, self.paths.main_conf) is not None

    # --- switching --------------------------------------------------------------------------

    def read_state(self, container: Any) -> ProxyState:
        """:meth:`state` through the archive API (works on a stopped container too)."""
        active = self.read(container, self.paths.active_conf)
        match = _VERSION_LINE.search(active or "")
        version = match.group(1) if match else None
        routes = self.read(container, f"{self.paths.versions_dir}/{version}/routes.json") if version else None
        return ProxyState(main=self.read(container, self.paths.main_conf), active=active, version=version, routes_json=routes)

    def state(self, container: Any) -> ProxyState:
        """What this proxy runs now: its main configuration, its live version and that
        version's routes (one exec; :func:`read_states` reads both proxies at once)."""
        return read_states(container, [self])[self.kind]

    def stage(
        self,
        container: Any,
        state: ProxyState,
        files: Mapping[str, str],
        routes_json: str,
        cert_files: Mapping[str, tuple[str, int]],
        keep_certs: Sequence[str],
    ) -> Staged | None:
        """Write a version (``files``: relative name -> text) and ``nginx -t`` it; ``None`` when
        exactly this version is live already (``state``, as :meth:`state` read it). A refused
        version is deleted (RoutingError)."""
        # Certificates are in the hash through their content-addressed paths in ``files``.
        version = hashlib.sha256(json.dumps([sorted(files.items()), routes_json]).encode()).hexdigest()[:16]
        if state.version == version:
            return None
        main = state.main
        if main is None or f"include {self.paths.active_conf};" not in main:
            raise RoutingError(f"{self.label}: {self.paths.main_conf} is missing or not ours; run ensure() (or remove the container)")
        vdir = f"{self.paths.versions_dir}/{version}"
        active = render_active(vdir, version=version, kind=self.kind)
        staged: dict[str, tuple[str, int]] = {f"v/{version}/{name}": (text, 0o644) for name, text in files.items()}
        staged[f"v/{version}/active.conf"] = (active, 0o644)
        staged[f"v/{version}/routes.json"] = (routes_json, 0o644)
        # The test configuration is the live main one with this version instead of active.conf.
        staged[f"v/{version}/test.conf"] = (main.replace(f"include {self.paths.active_conf};", f"include {vdir}/active.conf;"), 0o644)
        staged[f".active-{version}.tmp"] = (active, 0o644)
        staged.update(cert_files)
        self.put(container, self.paths.root, staged, private_dirs={"certs"}, dirs=(f"v/{version}/http", f"v/{version}/stream"))
        code, output = self.exec(container, ["nginx", "-t", "-q", "-c", f"{vdir}/test.conf"])
        if code != 0:
            self.exec(container, ["rm", "-rf", vdir, f"{self.paths.root}/.active-{version}.tmp"])
            raise RoutingError(f"{self.label}: nginx rejected the new routes: {_nginx_message(output)}")
        return Staged(version=version, previous_active=state.active, keep_certs=tuple(keep_certs))

    def switch(self, container: Any, staged: Staged, *, prune: bool = False) -> None:
        """Make ``staged`` live: rename, SIGHUP, wait for the new workers; then, with ``prune``,
        :meth:`prune`. On failure the previous configuration is live again and RoutingError
        says why.

        The rename, the signal and the usual wait are one exec (a round trip to a remote
        engine costs more than the reload); a reload still not seen after a while is watched
        from here, with the master's log, as long as :data:`RELOAD_TIMEOUT` allows.
        """
        since = self._engine_time()
        tmp = f"{self.paths.root}/.active-{staged.version}.tmp"
        code, output = self.exec(container, ["sh", "-c", _SWITCH_SCRIPT, "sh", self.paths.main_conf, tmp, self.paths.active_conf, str(_SWITCH_POLLS), self._prune_script(staged) if prune else ":"])
        lines = output.splitlines()
        outcome = next((line.removeprefix("pd-switch: ").strip() for line in lines if line.startswith("pd-switch: ")), None)
        before = {int(pid) for line in lines if line.startswith("pd-before:") for pid in line.removeprefix("pd-before:").split() if pid.isdigit()}
        if code != 0 or outcome is None:
            raise RoutingError(f"{self.label}: could not switch to the new routes: {output.strip() or f'exit {code}'}")
        if outcome == "no-master":
            raise RoutingError(f"{self.label}: its nginx master is not running")
        if outcome == "mv-failed":
            raise RoutingError(f"{self.label}: could not switch to the new routes: {output.strip()}")
        if outcome == "kill-failed":
            self._put_back(container, staged.previous_active, reload_again=False)
            raise RoutingError(f"{self.label}: cannot signal its nginx master: {output.strip()}")
        if outcome == "reloaded":
            return
        error = self._wait_reloaded(container, before, since)
        if error is not None:
            self._put_back(container, staged.previous_active, reload_again=error.startswith("no new workers"))
            self.exec(container, ["rm", "-rf", f"{self.paths.versions_dir}/{staged.version}"])
            raise RoutingError(f"{self.label}: reload failed, the previous routes stay live: {error}")
        if prune:
            self.prune(container, staged)

    def revert(self, container: Any, staged: Staged) -> None:
        """Undo a successful :meth:`switch` (the other proxy's failed): the previous version live
        again, reloaded, ``staged`` deleted."""
        before = self.workers(container)
        since = self._engine_time()
        self._put_back(container, staged.previous_active, reload_again=True)
        self._wait_reloaded(container, before, since)
        self.exec(container, ["rm", "-rf", f"{self.paths.versions_dir}/{staged.version}"])

    def discard(self, container: Any, staged: Staged) -> None:
        """Delete a staged version that never went live."""
        self.exec(container, ["rm", "-rf", f"{self.paths.versions_dir}/{staged.version}", f"{self.paths.root}/.active-{staged.version}.tmp"])

    def prune(self, container: Any, staged: Staged) -> None:
        """Delete versions and certificates the live configuration no longer names.

        Safe while old workers drain: nginx read every file (certificates included) at reload.
        """
        self.exec(container, ["sh", "-c", self._prune_script(staged)])

    def _prune_script(self, staged: Staged) -> str:
        # Names only of our own making: hex versions, content-addressed certificate files.
        keep = " ".join(staged.keep_certs)
        return (
            f'for d in {self.paths.versions_dir}/*; do [ "${{d##*/}}" = {staged.version} ] || rm -rf "$d"; done; '
            f'for f in {self.paths.certs_dir}/*; do case " {keep} " in *" ${{f##*/}} "*) ;; *) rm -f "$f";; esac; done; '
            f"rm -f {self.paths.root}/.active-*.tmp"
        )

    # --- processes --------------------------------------------------------------------------

    def processes(self, container: Any, everything: Mapping[int, tuple[int, str]] | None = None) -> dict[int, str]:
        """pid -> title of this proxy's master and its workers (current and shutting down);
        from ``everything`` (a :func:`list_processes` just taken) when given."""
        everything = list_processes(container) if everything is None else everything
        master = self.master_pid(container, everything)
        return {pid: title for pid, (ppid, title) in everything.items() if master is not None and master in (pid, ppid)}

    def master_pid(self, container: Any, everything: Mapping[int, tuple[int, str]] | None = None) -> int | None:
        """The pid of this proxy's master (its title names its main configuration), or ``None``."""
        everything = list_processes(container) if everything is None else everything
        for pid, (_, title) in everything.items():
            if title.startswith("nginx: master process") and f"-c {self.paths.main_conf}" in title:
                return pid
        return None

    def workers(self, container: Any, everything: Mapping[int, tuple[int, str]] | None = None) -> set[int]:
        """The pids of the current (not shutting down) workers."""
        return {pid for pid, title in self.processes(container, everything).items() if title == "nginx: worker process"}

    def signal(self, container: Any, name: str, everything: Mapping[int, tuple[int, str]] | None = None) -> None:
        """Send SIG``name`` to this proxy's master (and to no other process)."""
        master = self.master_pid(container, everything)
        if master is None:
            raise RoutingError(f"{self.label}: its nginx master is not running")
        code, output = self.exec(container, ["sh", "-c", f"kill -{name} {master}"])  # kill: a shell builtin in small images
        if code != 0:
            raise RoutingError(f"{self.label}: cannot signal its nginx master: {output.strip()}")

    # --- files and commands -----------------------------------------------------------------

    def exec(self, container: Any, command: list[str]) -> tuple[int, str]:
        """Run ``command`` in the container as root: (exit code, output)."""
        result = container.exec_run(command, stdout=True, stderr=True, user="root")
        return result.exit_code, (result.output or b"").decode(errors="replace")

    def read(self, container: Any, path: str) -> str | None:
        """A file's text through the engine's archive API (no process in the container)."""
        import docker.errors  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

        try:
            stream, _ = container.get_archive(path)
        except docker.errors.NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member is not None else None
            return handle.read().decode() if handle is not None else None

    def put(self, container: Any, where: str, files: Mapping[str, tuple[str, int]], *, private_dirs: Iterable[str] = (), dirs: Iterable[str] = ()) -> None:
        """Write ``files`` (relative path -> (text, mode)) under ``where`` in one archive, owned by root."""
        private = set(private_dirs)
        buffer = io.BytesIO()
        now = int(time.time())
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            wanted_dirs = set(dirs)
            for name in list(files) + list(dirs):
                parts = name.split("/")[:-1]
                wanted_dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
            root = Path(where).name
            info = tarfile.TarInfo(root)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
            for directory in sorted(wanted_dirs):
                info = tarfile.TarInfo(f"{root}/{directory}")
                info.type = tarfile.DIRTYPE
                info.mode = 0o700 if directory.split("/")[0] in private else 0o755
                info.mtime = now
                tar.addfile(info)
            for name, (text, mode) in sorted(files.items()):
                data = text.encode()
                info = tarfile.TarInfo(f"{root}/{name}")
                info.size, info.mode, info.mtime = len(data), mode, now
                tar.addfile(info, io.BytesIO(data))
        parent = str(Path(where).parent)
        if not container.put_archive(parent, buffer.getvalue()):
            raise RoutingError(f"{self.label}: could not write {where}")

    # --- internals ---------------------------------------------------------------------------

    def _engine_time(self) -> float:
        """The engine's clock now (logs are filtered by it; the server's clock may differ from ours)."""
        stamp = docker_time(self.client.info().get("SystemTime", ""))
        return stamp - 0.001 if stamp else time.time() - 1

    def _wait_reloaded(self, container: Any, before: set[int], since: float) -> str | None:
        """``None`` once new workers run (none of ``before`` still serving); else what went wrong."""

        def reloaded() -> tuple[bool, str | None]:
            workers = self.workers(container)
            if workers and not workers & before:
                return True, None
            logs = container.logs(since=since, stdout=True, stderr=True).decode(errors="replace")
            failures = [line for line in logs.splitlines() if "[emerg]" in line]
            if failures:
                return True, _nginx_message("\n".join(failures))
            return False, f"{len(workers & before)} old worker(s) still serving" if workers else "no workers"

        try:
            return wait_until(reloaded, timeout=RELOAD_TIMEOUT, interval=0.05, what=f"{self.label} reloaded")
        except WaitTimeout as exc:
            return f"no new workers within {RELOAD_TIMEOUT:.0f}s ({exc.last})"

    def _put_back(self, container: Any, previous_active: str | None, *, reload_again: bool) -> None:
        """Put the previous ``active.conf`` back (the master kept running the old configuration)."""
        previous = previous_active or render_active(f"{self.paths.versions_dir}/empty", version="empty", kind=self.kind)
        self.put(container, self.paths.root, {".active-restore.tmp": (previous, 0o644)})
        self.exec(container, ["mv", "-f", f"{self.paths.root}/.active-restore.tmp", self.paths.active_conf])
        if reload_again:  # we could not tell whether the reload happened: converge on the old one
            self.signal(container, "HUP")


__all__ = ["NginxProxy", "ProxyState", "Staged", "docker_time", "list_processes", "read_states"]
