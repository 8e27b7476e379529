"""The OpenSearch snapshot client: backups through the snapshot API, and the admin password change.

Standard library only, no package imports: besides being imported by ProjectDeployer (the
password rotation uses :meth:`SnapshotClient.change_password`), this file is copied into a
container on the project's ``[images] python`` image and run as a script, like
``scheduler_agent.py``::

    python3 opensearch_snapshot.py backup --url https://shop_prod_search:9200 \\
        --auth-file /run/secrets/pd/password --ca-file /run/secrets/pd/root-ca.pem \\
        --repo pd --prefix search --retention-days 7

What ``backup`` does, one printed line per step, exit code 0 only when every step succeeded:

1. registers the ``fs`` repository ``--repo`` at ``--location`` (default
   ``/usr/share/opensearch/snapshots``, the node's ``path.repo``) unless it is already there;
2. lists the node's open data indices (``GET /_cat/indices``; names not starting with ``.``:
   system indices come and go with the node's plugins);
3. creates ``{prefix}_{YYYYmmdd_HHMMSS}`` (UTC) with ``wait_for_completion=true``, every index
   but the security plugin's own (``.opendistro_security``: restoring it would roll the admin
   password back, and only the admin *certificate* may restore it anyway), no global state;
4. verifies it: state ``SUCCESS``, no shard failed, every index listed in step 2 in it;
5. deletes the snapshots of that prefix (names ``{prefix}_{YYYYmmdd_HHMMSS}`` exactly, so the
   prefix ``search`` never touches ``search_logs_...``) that started more than
   ``--retention-days`` days ago, never the one just made.

Secrets: the password is read from ``--auth-file`` (its whole content, one trailing newline
dropped; the user is ``--user``, default ``admin``), never from argv or the environment, and
never printed. TLS is verified against ``--ca-file`` (the node's own CA), or the system's
trust store when none is given; ``http://`` URLs (the test fake) use no TLS.

Snapshot names follow OpenSearch's rule (``SnapshotsService.validate``): not empty, lower
case, no whitespace, no ``, # \\ / * ? " < > |``, not starting with ``_``. A prefix that breaks
it is refused before anything is sent.

API shapes relied on (OpenSearch 2.x REST API): ``PUT/GET /_snapshot/{repo}``,
``PUT /_snapshot/{repo}/{snap}?wait_for_completion=true`` (a ``snapshot`` object whose
``state`` is ``SUCCESS``, ``PARTIAL`` or ``FAILED``; a ``FAILED`` one comes with HTTP 500),
``GET /_snapshot/{repo}/_all``, ``DELETE /_snapshot/{repo}/{snap}``,
``POST /_snapshot/{repo}/{snap}/_restore`` (refused over an *open* index of the same name, so
:meth:`SnapshotClient.restore_snapshot` closes them first), ``POST /{index}/_close``, and the
security plugin's ``PUT /_plugins/_security/api/account`` with ``current_password`` and
``password`` (answer ``{"status": "OK", "message": "'admin' updated."}``; a wrong current
password is HTTP 400 ``Could not validate your current password.``).
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import hashlib
import http.client
import json
import os
import re
import ssl
import sys
import time
import urllib.parse
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: Where the node keeps snapshots (its ``path.repo``, the ``snapshots`` volume).
DEFAULT_LOCATION = "/usr/share/opensearch/snapshots"
DEFAULT_REPO = "pd"
DEFAULT_USER = "admin"
#: The security plugin's configuration index: never snapshotted, never restored.
SECURITY_INDEX = ".opendistro_security"
ACCOUNT_PATH = "/_plugins/_security/api/account"
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
#: Seconds for ordinary requests, and for requests that wait for a snapshot or restore.
TIMEOUT = 30.0
LONG_TIMEOUT = 3600.0
#: OpenSearch's Strings.INVALID_FILENAME_CHARS plus ',' and '#' (SnapshotsService.validate).
_INVALID_NAME_CHARS = set('\\/*?"<>|,# ')


class OpenSearchError(Exception):
    """A request failed: the node's own error type and reason when it gave them."""

    def __init__(self, message: str, *, status: Optional[int] = None, type: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type


class SnapshotVerificationError(OpenSearchError):
    """A snapshot exists but is not a complete backup."""


def snapshot_name_problem(name: str) -> Optional[str]:
    """Why OpenSearch would refuse ``name`` as a snapshot name, or ``None`` when it is valid."""
    if not name:
        return "cannot be empty"
    if any(c.isspace() for c in name):
        return "must not contain whitespace"
    if name.startswith("_"):
        return "must not start with '_'"
    if name.lower() != name:
        return "must be lowercase"
    bad = sorted(_INVALID_NAME_CHARS & set(name))
    if bad:
        return "must not contain " + " ".join(repr(c) for c in bad)
    return None


def snapshot_name(prefix: str, when: Optional[_dt.datetime] = None) -> str:
    """``{prefix}_{YYYYmmdd_HHMMSS}`` in UTC; a ValueError when the result breaks the naming rule."""
    when = when or _dt.datetime.now(_dt.timezone.utc)
    name = f"{prefix}_{when.astimezone(_dt.timezone.utc).strftime(TIMESTAMP_FORMAT)}"
    problem = snapshot_name_problem(name)
    if problem:
        raise ValueError(f"invalid snapshot prefix {prefix!r}: a snapshot name {problem}")
    return name


def read_secret_file(path: str) -> str:
    """A password file's content without one trailing newline."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return text[:-1] if text.endswith("\n") else text


def parse_answer(method: str, path: str, status: int, raw: str, *, ok: Sequence[int], user: str) -> Any:
    """An OpenSearch answer's parsed JSON (None when empty or not JSON); an OpenSearchError naming
    ``method path`` for a status not in ``ok``. Shared by this client and the service type, which
    reaches the node by curl inside its container."""
    try:
        parsed: Any = json.loads(raw) if raw.strip() else None
    except ValueError:
        parsed = None
    if status not in ok:
        message, kind = _error_message(status, parsed, raw)
        if status == 401:
            message = f"authentication failed for user {user!r} (HTTP 401)"
        raise OpenSearchError(f"{method} {path}: {message}", status=status, type=kind)
    return parsed


def _error_message(status: int, body: Any, raw: str) -> Tuple[str, Optional[str]]:
    """``(message, error type)`` from an OpenSearch error answer of any of its shapes."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('type', 'error')}: {error.get('reason', '')}".strip(), error.get("type")
        if isinstance(error, str):
            return error, None
        if "message" in body:  # the security plugin's {"status": ..., "message": ...}
            return f"{body.get('status', status)}: {body['message']}", str(body.get("status"))
    return (raw.strip()[:300] or f"HTTP {status}"), None


class SnapshotClient:
    """One OpenSearch node, reached as ``user`` with ``password``, its snapshots in ``repo``."""

    def __init__(
        self,
        url: str,
        *,
        password: str,
        user: str = DEFAULT_USER,
        ca_file: Optional[str] = None,
        repo: str = DEFAULT_REPO,
        location: str = DEFAULT_LOCATION,
        timeout: float = TIMEOUT,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if parsed.username or parsed.password:
            raise ValueError("the URL must not carry credentials: give them as a file")
        self.url = url.rstrip("/")
        self.scheme = parsed.scheme
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.user = user
        self.password = password
        self.ca_file = ca_file
        self.repo = repo
        self.location = location
        self.timeout = timeout

    @classmethod
    def from_files(cls, url: str, auth_file: str, *, ca_file: Optional[str] = None, **kwargs: Any) -> "SnapshotClient":
        """A client whose password is the content of ``auth_file``."""
        return cls(url, password=read_secret_file(auth_file), ca_file=ca_file, **kwargs)

    # --- HTTP ---------------------------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "http":
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        context = ssl.create_default_context(cafile=self.ca_file)
        return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=context)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Optional[Dict[str, str]] = None,
        password: Optional[str] = None,
        timeout: Optional[float] = None,
        ok: Sequence[int] = (200, 201),
    ) -> Tuple[int, Any]:
        """``(status, parsed JSON)``; an OpenSearchError for a status not in ``ok``."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        token = base64.b64encode(f"{self.user}:{self.password if password is None else password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection(self.timeout if timeout is None else timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read().decode("utf-8", "replace")
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            raise OpenSearchError(f"{method} {self.url}{path}: {exc}") from None
        finally:
            conn.close()
        return status, parse_answer(method, path, status, raw, ok=ok, user=self.user)

    # --- repository and snapshots -------------------------------------------------------------

    def ensure_repository(self) -> bool:
        """Register the ``fs`` repository at ``location`` unless it already is; True when registered now."""
        status, body = self.request("GET", f"/_snapshot/{self.repo}", ok=(200, 404))
        wanted = {"type": "fs", "settings": {"location": self.location}}
        if status == 200 and isinstance(body, dict):
            current = body.get(self.repo) or {}
            if current.get("type") == "fs" and (current.get("settings") or {}).get("location") == self.location:
                return False
        self.request("PUT", f"/_snapshot/{self.repo}", wanted)
        return True

    def list_indices(self, *, open_only: bool = True) -> List[str]:
        """The node's index names (open ones only by default), sorted."""
        _, rows = self.request("GET", "/_cat/indices", query={"format": "json", "h": "index,status", "expand_wildcards": "all"})
        return sorted(r["index"] for r in rows or [] if not open_only or r.get("status") == "open")

    def create_snapshot(self, name: str, wait: bool = True, indices: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """Snapshot ``indices`` (default: all but the security index) as ``name``; the snapshot's info.

        With ``wait`` the info of the finished snapshot (whatever its state: check it with
        :meth:`verify_snapshot`); without, ``{"accepted": true}``.
        """
        problem = snapshot_name_problem(name)
        if problem:
            raise OpenSearchError(f"invalid snapshot name [{name}]: {problem}")
        body = {
            "indices": ",".join(indices) if indices is not None else f"*,-{SECURITY_INDEX}",
            "include_global_state": False,
        }
        query = {"wait_for_completion": "true"} if wait else None
        status, answer = self.request("PUT", f"/_snapshot/{self.repo}/{name}", body, query=query, timeout=LONG_TIMEOUT if wait else None, ok=(200, 201, 500))
        if isinstance(answer, dict) and isinstance(answer.get("snapshot"), dict):
            snapshot: Dict[str, Any] = answer["snapshot"]  # a FAILED snapshot comes with HTTP 500 and its info
            return snapshot
        if status == 500 or not isinstance(answer, dict):
            message, kind = _error_message(status, answer, "")
            raise OpenSearchError(f"PUT /_snapshot/{self.repo}/{name}: {message}", status=status, type=kind)
        return answer

    def get_snapshot(self, name: str) -> Dict[str, Any]:
        _, body = self.request("GET", f"/_snapshot/{self.repo}/{name}")
        snapshots = (body or {}).get("snapshots") or []
        if not snapshots:
            raise OpenSearchError(f"snapshot [{self.repo}:{name}] is missing", status=404, type="snapshot_missing_exception")
        first: Dict[str, Any] = snapshots[0]
        return first

    def verify_snapshot(self, name: str, expected_indices: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """The snapshot's info when it is complete: state ``SUCCESS``, no failed shard, and every
        index of ``expected_indices`` in it; else a SnapshotVerificationError saying what is wrong."""
        info = self.get_snapshot(name)
        state = info.get("state")
        if state != "SUCCESS":
            reason = info.get("reason") or "; ".join(str(f.get("reason", f)) for f in info.get("failures") or []) or "no reason given"
            raise SnapshotVerificationError(f"snapshot {name} is {state}, not SUCCESS: {reason}")
        shards = info.get("shards") or {}
        if shards.get("failed", 0) or shards.get("successful") != shards.get("total"):
            raise SnapshotVerificationError(f"snapshot {name}: {shards.get('failed', 0)} of {shards.get('total')} shards failed")
        present = set(info.get("indices") or [])
        missing = sorted(set(expected_indices or []) - {SECURITY_INDEX} - present)
        if missing:
            raise SnapshotVerificationError(f"snapshot {name} lacks indices: {', '.join(missing)}")
        return info

    def list_snapshots(self) -> List[Dict[str, Any]]:
        """Every snapshot of the repository, oldest first."""
        _, body = self.request("GET", f"/_snapshot/{self.repo}/_all")
        snapshots = (body or {}).get("snapshots") or []
        return sorted(snapshots, key=lambda s: (s.get("start_time_in_millis") or 0, s.get("snapshot", "")))

    def delete_snapshot(self, name: str) -> None:
        self.request("DELETE", f"/_snapshot/{self.repo}/{name}", timeout=LONG_TIMEOUT)

    def close_index(self, index: str) -> bool:
        """Close ``index``; False when it does not exist."""
        status, _ = self.request("POST", f"/{index}/_close", ok=(200, 404))
        return status == 200

    def restore_snapshot(self, name: str, indices: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """Restore ``indices`` (default: every index of the snapshot but system ones, whose names
        start with ``.``) from snapshot ``name``, closing the existing ones first as OpenSearch
        requires; the restore's answer."""
        if indices is None:
            indices = [i for i in self.get_snapshot(name).get("indices") or [] if not i.startswith(".")]
        indices = [i for i in indices if i != SECURITY_INDEX]
        if not indices:
            raise OpenSearchError(f"snapshot {name}: no index to restore")
        closed = [index for index in indices if self.close_index(index)]
        body = {"indices": ",".join(indices), "include_global_state": False}
        try:
            _, answer = self.request("POST", f"/_snapshot/{self.repo}/{name}/_restore", body, query={"wait_for_completion": "true"}, timeout=LONG_TIMEOUT)
        except OpenSearchError as exc:
            # Nothing was restored: the indices closed above serve their old data again.
            raise OpenSearchError(f"{exc}; {self._reopen(closed)}", status=exc.status, type=exc.type) from exc
        result = (answer or {}).get("snapshot") or {}
        shards = result.get("shards") or {}
        if shards.get("failed"):
            raise OpenSearchError(f"restore of {name}: {shards['failed']} of {shards.get('total')} shards failed")
        return result

    def _reopen(self, indices: Sequence[str]) -> str:
        """Open ``indices`` again; what happened, for the error message."""
        failed = []
        for index in indices:
            try:
                self.request("POST", f"/{index}/_open")
            except OpenSearchError:
                failed.append(index)
        if failed:
            return f"these indices are still closed: {', '.join(failed)}"
        return f"the indices closed for it were opened again ({', '.join(indices) or 'none'})"

    def delete_older_than(self, prefix: str, days: float, *, keep: Sequence[str] = (), now: Optional[float] = None) -> List[str]:
        """Delete the snapshots named ``{prefix}_{YYYYmmdd_HHMMSS}`` that started more than
        ``days`` days ago (never one named in ``keep``); the names deleted."""
        pattern = re.compile(re.escape(prefix) + r"_\d{8}_\d{6}")
        cutoff_ms = ((time.time() if now is None else now) - days * 86400) * 1000
        deleted = []
        for snap in self.list_snapshots():
            name = snap.get("snapshot", "")
            if not pattern.fullmatch(name) or name in keep:
                continue
            started = snap.get("start_time_in_millis")
            if started is None:
                started = _dt.datetime.strptime(name[len(prefix) + 1 :], TIMESTAMP_FORMAT).replace(tzinfo=_dt.timezone.utc).timestamp() * 1000
            if started < cutoff_ms:
                self.delete_snapshot(name)
                deleted.append(name)
        return deleted

    # --- security ----------------------------------------------------------------------------

    def authenticates(self, password: str) -> bool:
        """Whether the node accepts ``password`` for this client's user (the account API's GET)."""
        status, _ = self.request("GET", ACCOUNT_PATH, password=password, ok=(200, 401))
        return status == 200

    def change_password(self, current: str, new: str) -> Dict[str, Any]:
        """Change this client's user's password in the running node (the security plugin's
        account API, authenticated with ``current``); the client uses ``new`` from then on."""
        body = {"current_password": current, "password": new}
        _, answer = self.request("PUT", ACCOUNT_PATH, body, password=current)
        if not isinstance(answer, dict) or answer.get("status") != "OK":
            raise OpenSearchError(f"PUT {ACCOUNT_PATH}: unexpected answer {answer!r}"[:300])
        self.password = new
        return answer


# --- the command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opensearch_snapshot.py", description="OpenSearch snapshots for ProjectDeployer.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", required=True, help="the node, e.g. https://shop_prod_search:9200")
        p.add_argument("--auth-file", required=True, help="file holding the user's password")
        p.add_argument("--user", default=DEFAULT_USER)
        p.add_argument("--ca-file", help="CA certificate (PEM) to verify the node's TLS certificate")
        p.add_argument("--repo", default=DEFAULT_REPO)
        p.add_argument("--location", default=DEFAULT_LOCATION, help="the repository's directory on the node")

    backup = sub.add_parser("backup", help="snapshot, verify, apply retention")
    common(backup)
    backup.add_argument("--prefix", required=True, help="snapshot names are PREFIX_YYYYmmdd_HHMMSS (UTC)")
    backup.add_argument("--retention-days", type=float, required=True)
    backup.add_argument("--manifest-dir", help="also write NAME.snapshot (the verified snapshot's JSON) and its .sha256 here")
    verify = sub.add_parser("verify", help="exit 0 only when the snapshot is complete (SUCCESS, no failed shard)")
    common(verify)
    verify.add_argument("--snapshot", required=True)
    listing = sub.add_parser("list", help="one line per snapshot")
    common(listing)
    restore = sub.add_parser("restore", help="close the indices, restore them from a snapshot")
    common(restore)
    restore.add_argument("--snapshot", required=True)
    restore.add_argument("--indices", help="comma-separated (default: every non-system index of the snapshot)")
    return parser


def write_manifest(directory: str, name: str, info: Dict[str, Any]) -> str:
    """``{directory}/{name}.snapshot``: the verified snapshot's JSON, then its ``.sha256`` (written
    before the manifest is renamed into place, the way ProjectDeployer's backup files are)."""
    data = (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
    final = f"{directory}/{name}.snapshot"
    tmp = f"{directory}/.{name}.snapshot.partial"
    old_umask = os.umask(0o077)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        with open(f"{final}.sha256", "w") as fh:
            fh.write(f"{hashlib.sha256(data).hexdigest()}  {name}.snapshot\n")
        os.replace(tmp, final)
    finally:
        os.umask(old_umask)
    return final


def _remove_manifests(directory: str, names: Sequence[str]) -> None:
    for name in names:
        for path in (f"{directory}/{name}.snapshot", f"{directory}/{name}.snapshot.sha256"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _backup(client: SnapshotClient, prefix: str, retention_days: float, out: Any, manifest_dir: Optional[str] = None) -> None:
    name = snapshot_name(prefix)
    registered = client.ensure_repository()
    print(f"repository {client.repo}: {'registered' if registered else 'present'} (fs, {client.location})", file=out, flush=True)
    # The data indices; system ones (names starting with '.') depend on the node's plugins.
    expected = [i for i in client.list_indices() if not i.startswith(".")]
    print(f"indices: {len(expected)} open", file=out, flush=True)
    began = time.monotonic()
    info = client.create_snapshot(name, wait=True)
    print(f"snapshot {name}: {info.get('state')} in {time.monotonic() - began:.1f}s", file=out, flush=True)
    info = client.verify_snapshot(name, expected)
    shards = info.get("shards") or {}
    print(f"verified {name}: {len(info.get('indices') or [])} indices, {shards.get('successful')}/{shards.get('total')} shards", file=out, flush=True)
    if manifest_dir:
        print(f"manifest {write_manifest(manifest_dir, name, info)}", file=out, flush=True)
    deleted = client.delete_older_than(prefix, retention_days, keep=[name])
    if manifest_dir:
        _remove_manifests(manifest_dir, deleted)
    detail = ", ".join(deleted) if deleted else "nothing to delete"
    print(f"retention {retention_days:g} days: {detail}", file=out, flush=True)


def main(argv: Optional[Sequence[str]] = None, out: Any = None) -> int:
    """The command line; 0 when every step succeeded, 1 on a failure (said on stderr), 2 on usage."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        client = SnapshotClient.from_files(args.url, args.auth_file, ca_file=args.ca_file, user=args.user, repo=args.repo, location=args.location)
        if args.command == "backup":
            _backup(client, args.prefix, args.retention_days, out, args.manifest_dir)
        elif args.command == "verify":
            info = client.verify_snapshot(args.snapshot)
            print(f"verified {args.snapshot}: {info.get('state')}", file=out)
        elif args.command == "list":
            for snap in client.list_snapshots():
                print(f"{snap.get('snapshot')} {snap.get('state')} {','.join(snap.get('indices') or [])}", file=out)
        else:
            indices = [i for i in args.indices.split(",") if i] if args.indices else None
            result = client.restore_snapshot(args.snapshot, indices)
            shards = result.get("shards") or {}
            print(f"restored {args.snapshot}: {', '.join(result.get('indices') or [])} ({shards.get('successful')}/{shards.get('total')} shards)", file=out)
    except (OpenSearchError, ValueError, OSError) as exc:
        print(f"error: {args.command} failed: {exc}", file=sys.stderr, flush=True)
        return 1
    print("done", file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
