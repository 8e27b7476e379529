"""A fake OpenSearch node: a real HTTP(S) server speaking the subset of the REST API that
ProjectDeployer uses, for tests on machines where OpenSearch itself cannot run.

It is *not* OpenSearch: there is no search, no mapping, no shard. It keeps documents in memory
and answers with the real API's shapes (status codes, ``{"error": {"root_cause": [...], "type",
"reason"}, "status"}`` bodies, the security plugin's ``{"status", "message"}`` bodies) for:

* ``GET /``, ``GET /_cluster/health``, ``GET /_cat/indices?format=json``;
* documents: ``PUT|POST /{index}/_doc/{id}``, ``GET /{index}/_doc/{id}``, ``PUT /{index}``,
  ``DELETE /{index}``, ``POST /{index}/_close``, ``POST /{index}/_open`` (a closed index refuses
  reads and writes with ``index_closed_exception``);
* the snapshot API on ``fs`` repositories: ``PUT|POST|GET|DELETE /_snapshot/{repo}`` (the
  location must be inside one of the node's ``path_repo`` directories and writable, as the real
  node's repository verification demands), ``PUT|POST /_snapshot/{repo}/{snap}`` (the open
  indices are written as JSON files under the repository's location on disk; names checked by
  OpenSearch's rule), ``GET /_snapshot/{repo}/_all|{snap}[,{snap}]``,
  ``DELETE /_snapshot/{repo}/{snap}``, ``POST /_snapshot/{repo}/{snap}/_restore`` (read back
  from disk; refused over an open index of the same name with ``snapshot_restore_exception``);
* the security plugin's account API, ``GET|PUT /_plugins/_security/api/account`` (and the
  legacy ``/_opendistro/_security/api/account``) to change the password.

Every request needs HTTP basic authentication with the fake's user and password (401
``Unauthorized`` otherwise, as the security plugin answers). :meth:`FakeOpenSearch.fail_next_snapshot`
makes the next snapshot ``FAILED`` or ``PARTIAL``. Use it as a context manager::

    with FakeOpenSearch(password="pw", path_repo=[tmp]) as node:
        client = SnapshotClient(node.url, password="pw", location=str(tmp))

HTTPS: pass ``certfile``/``keyfile`` (PEM) and the server speaks TLS with them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shutil
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

VERSION = "2.11.1"
CLUSTER_NAME = "fake-opensearch"
#: The real node's unknown-route answer.
NO_HANDLER = "no handler found for uri [{uri}] and method [{method}]"

Answer = tuple[int, Any]


def error(status: int, type_: str, reason: str, **extra: Any) -> Answer:
    """OpenSearch's error body."""
    cause = {"type": type_, "reason": reason, **extra}
    return status, {"error": {"root_cause": [cause], **cause}, "status": status}


def security_answer(status: int, label: str, message: str) -> Answer:
    """The security plugin's REST API body."""
    return status, {"status": label, "message": message}


def snapshot_name_problem(name: str) -> str | None:
    """OpenSearch's ``SnapshotsService.validate`` rule, as the fake applies it."""
    if not name:
        return "cannot be empty"
    if any(c.isspace() for c in name):
        return "must not contain whitespace"
    if "," in name:
        return "must not contain ','"
    if "#" in name:
        return "must not contain '#'"
    if name.startswith("_"):
        return "must not start with '_'"
    if name.lower() != name:
        return "must be lowercase"
    if any(c in '\\/*?"<>|' for c in name):
        return 'must not contain the following characters [\\, /, *, ?, ", <, >, |,  , ,]'
    return None


@attrs.define
class Index:
    docs: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    versions: dict[str, int] = attrs.field(factory=dict)
    open: bool = True
    uuid: str = attrs.field(factory=lambda: uuid.uuid4().hex[:22])
    seq_no: int = 0


def _millis(t: float) -> int:
    return int(t * 1000)


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class FakeOpenSearch:
    """A fake single-node OpenSearch on 127.0.0.1 (an ephemeral port unless ``port`` is given)."""

    def __init__(
        self,
        *,
        password: str,
        user: str = "admin",
        path_repo: Sequence[str | os.PathLike[str]] = (),
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        port: int = 0,
        reserved: bool = False,
    ) -> None:
        self.user = user
        self.password = password
        self.path_repo = [Path(p).resolve() for p in path_repo]
        #: When True the admin user is ``reserved`` and the account API refuses to change it
        #: (what the real plugin does for reserved users unless called with the admin certificate).
        self.reserved = reserved
        self.indices: dict[str, Index] = {}
        self.repositories: dict[str, dict[str, Any]] = {}
        #: Every request as (method, path), for tests that check what was asked.
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self._fail_next: tuple[str, str] | None = None
        #: The time snapshots start at (tests set it to make snapshots that look old).
        self.clock: Callable[[], float] = time.time
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(self))
        self._server.daemon_threads = True
        self.scheme = "http"
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> FakeOpenSearch:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-opensearch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenSearch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test controls -----------------------------------------------------------------------

    def fail_next_snapshot(self, state: str = "FAILED", reason: str = "simulated failure") -> None:
        """The next snapshot ends ``FAILED`` (nothing written) or ``PARTIAL`` (one shard failed)."""
        if state not in ("FAILED", "PARTIAL"):
            raise ValueError("state is FAILED or PARTIAL")
        self._fail_next = (state, reason)

    def put_doc(self, index: str, doc_id: str, source: dict[str, Any]) -> None:
        """Index a document directly (creating the index)."""
        with self.lock:
            idx = self.indices.setdefault(index, Index())
            idx.docs[doc_id] = dict(source)
            idx.versions[doc_id] = idx.versions.get(doc_id, 0) + 1

    # --- dispatch ----------------------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        with self.lock:
            return user == self.user and password == self.password

    def handle(self, method: str, raw_path: str, body: Any) -> Answer:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segments = [unquote(s) for s in parts.path.split("/") if s]
        self.requests.append((method, parts.path))
        with self.lock:
            return self._route(method, segments, query, body, parts.path)

    def _route(self, method: str, seg: list[str], query: dict[str, str], body: Any, path: str) -> Answer:
        n = len(seg)
        if n == 0 and method in ("GET", "HEAD"):
            return self._root()
        if seg[:1] == ["_cluster"] and seg[1:] == ["health"] and method == "GET":
            return 200, {"cluster_name": CLUSTER_NAME, "status": "green", "timed_out": False, "number_of_nodes": 1, "number_of_data_nodes": 1}
        if seg == ["_cat", "indices"] and method == "GET":
            return self._cat_indices()
        if n == 4 and seg[0] in ("_plugins", "_opendistro") and seg[1:] == ["_security", "api", "account"]:
            return self._account(method, body)
        if seg[:1] == ["_snapshot"] and n >= 2:
            return self._snapshot_route(method, seg[1:], query, body)
        if n >= 1 and not seg[0].startswith("_"):
            answer = self._index_route(method, seg, body)
            if answer is not None:
                return answer
        return 400, {"error": NO_HANDLER.format(uri=path, method=method), "status": 400}

    # --- cluster -----------------------------------------------------------------------------

    def _root(self) -> Answer:
        return 200, {
            "name": "fake-node",
            "cluster_name": CLUSTER_NAME,
            "cluster_uuid": "fake-cluster-uuid",
            "version": {"distribution": "opensearch", "number": VERSION, "build_type": "fake", "lucene_version": "9.7.0"},
            "tagline": "The OpenSearch Project: https://opensearch.org/",
        }

    def _cat_indices(self) -> Answer:
        rows = []
        for name, idx in sorted(self.indices.items()):
            rows.append(
                {
                    "health": "green" if idx.open else None,
                    "status": "open" if idx.open else "close",
                    "index": name,
                    "uuid": idx.uuid,
                    "docs.count": str(len(idx.docs)) if idx.open else None,
                }
            )
        return 200, rows

    # --- documents and indices ---------------------------------------------------------------

    def _missing_index(self, name: str) -> Answer:
        return error(404, "index_not_found_exception", f"no such index [{name}]", index=name, **{"resource.type": "index_or_alias", "resource.id": name, "index_uuid": "_na_"})

    def _closed(self, name: str) -> Answer:
        return error(400, "index_closed_exception", "closed", index=name, index_uuid=self.indices[name].uuid)

    def _index_route(self, method: str, seg: list[str], body: Any) -> Answer | None:
        name = seg[0]
        if len(seg) == 1:
            if method == "PUT":
                if name in self.indices:
                    return error(400, "resource_already_exists_exception", f"index [{name}/{self.indices[name].uuid}] already exists", index=name)
                self.indices[name] = Index()
                return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}
            if method == "DELETE":
                if name not in self.indices:
                    return self._missing_index(name)
                del self.indices[name]
                return 200, {"acknowledged": True}
            return None
        if len(seg) == 2 and seg[1] in ("_close", "_open") and method == "POST":
            if name not in self.indices:
                return self._missing_index(name)
            opening = seg[1] == "_open"
            self.indices[name].open = opening
            if opening:
                return 200, {"acknowledged": True, "shards_acknowledged": True}
            return 200, {"acknowledged": True, "shards_acknowledged": True, "indices": {name: {"closed": True}}}
        if len(seg) == 3 and seg[1] == "_doc":
            return self._doc(method, name, seg[2], body)
        return None

    def _doc(self, method: str, name: str, doc_id: str, body: Any) -> Answer | None:
        idx = self.indices.get(name)
        if method in ("PUT", "POST"):
            if not isinstance(body, dict):
                return error(400, "parse_exception", "request body is required")
            if idx is None:
                idx = self.indices[name] = Index()
            if not idx.open:
                return self._closed(name)
            created = doc_id not in idx.docs
            idx.docs[doc_id] = body
            idx.versions[doc_id] = idx.versions.get(doc_id, 0) + 1
            idx.seq_no += 1
            return (201 if created else 200), {
                "_index": name,
                "_id": doc_id,
                "_version": idx.versions[doc_id],
                "result": "created" if created else "updated",
                "_shards": {"total": 1, "successful": 1, "failed": 0},
                "_seq_no": idx.seq_no - 1,
                "_primary_term": 1,
            }
        if method == "GET":
            if idx is None:
                return self._missing_index(name)
            if not idx.open:
                return self._closed(name)
            if doc_id not in idx.docs:
                return 404, {"_index": name, "_id": doc_id, "found": False}
            return 200, {"_index": name, "_id": doc_id, "_version": idx.versions[doc_id], "_seq_no": 0, "_primary_term": 1, "found": True, "_source": idx.docs[doc_id]}
        return None

    # --- snapshots ---------------------------------------------------------------------------

    def _snapshot_route(self, method: str, seg: list[str], query: dict[str, str], body: Any) -> Answer:
        repo = seg[0]
        if len(seg) == 1:
            return self._repository(method, repo, body)
        if repo not in self.repositories:
            return error(404, "repository_missing_exception", f"[{repo}] missing")
        if len(seg) == 2:
            if method in ("PUT", "POST"):
                return self._create_snapshot(repo, seg[1], query, body)
            if method == "GET":
                return self._get_snapshots(repo, seg[1])
            if method == "DELETE":
                return self._delete_snapshot(repo, seg[1])
        if len(seg) == 3 and seg[2] == "_restore" and method == "POST":
            return self._restore(repo, seg[1], query, body)
        return 400, {"error": NO_HANDLER.format(uri="/_snapshot/" + "/".join(seg), method=method), "status": 400}

    def _repository(self, method: str, repo: str, body: Any) -> Answer:
        if method == "GET":
            if repo not in self.repositories:
                return error(404, "repository_missing_exception", f"[{repo}] missing")
            return 200, {repo: self.repositories[repo]}
        if method == "DELETE":
            if self.repositories.pop(repo, None) is None:
                return error(404, "repository_missing_exception", f"[{repo}] missing")
            return 200, {"acknowledged": True}
        if method not in ("PUT", "POST"):
            return 400, {"error": NO_HANDLER.format(uri=f"/_snapshot/{repo}", method=method), "status": 400}
        if not isinstance(body, dict) or body.get("type") != "fs":
            return error(500, "repository_exception", f"[{repo}] repository type [{(body or {}).get('type')}] does not exist")
        location = (body.get("settings") or {}).get("location")
        if not location:
            return error(500, "repository_exception", f"[{repo}] missing location")
        resolved = Path(location).resolve()
        if not any(resolved == root or root in resolved.parents for root in self.path_repo):
            reason = "because this setting is empty" if not self.path_repo else ""
            return error(500, "repository_exception", f"[{repo}] location [{location}] doesn't match any of the locations specified by path.repo {reason}".rstrip())
        try:
            resolved.mkdir(parents=True, exist_ok=True)
            probe = resolved / f"tests-{uuid.uuid4().hex[:8]}"
            probe.write_text("verify")
            probe.unlink()
        except OSError as exc:
            return error(500, "repository_verification_exception", f"[{repo}] path  is not accessible on cluster-manager node: {exc}")
        self.repositories[repo] = {"type": "fs", "settings": {"location": location}}
        return 200, {"acknowledged": True}

    def _repo_dir(self, repo: str) -> Path:
        return Path(self.repositories[repo]["settings"]["location"]) / "fake-snapshots"

    def _read_info(self, repo: str, name: str) -> dict[str, Any] | None:
        try:
            return json.loads((self._repo_dir(repo) / name / "snapshot.json").read_text())
        except (OSError, ValueError):
            return None

    def _all_infos(self, repo: str) -> list[dict[str, Any]]:
        base = self._repo_dir(repo)
        infos = [self._read_info(repo, d.name) for d in sorted(base.iterdir())] if base.is_dir() else []
        return sorted((i for i in infos if i), key=lambda i: (i["start_time_in_millis"], i["snapshot"]))

    def _resolve(self, expression: str | list[str] | None, names: Iterable[str]) -> list[str]:
        """Index names matched by ``a,b*,-c`` (the snapshot API's multi-target syntax)."""
        names = sorted(names)
        items = expression if isinstance(expression, list) else (expression or "*").split(",")
        chosen: list[str] = []
        for item in (i.strip() for i in items if i.strip()):
            exclude = item.startswith("-")
            pattern = re.compile(re.escape(item.lstrip("-")).replace(r"\*", ".*"))
            matched = [n for n in names if pattern.fullmatch(n)]
            if exclude:
                chosen = [n for n in chosen if n not in matched]
            else:
                chosen += [n for n in matched if n not in chosen]
        return chosen

    def _create_snapshot(self, repo: str, name: str, query: dict[str, str], body: Any) -> Answer:
        problem = snapshot_name_problem(name)
        if problem:
            return error(400, "invalid_snapshot_name_exception", f"[{repo}:{name}] Invalid snapshot name [{name}], {problem}")
        if self._read_info(repo, name) is not None:
            return error(400, "invalid_snapshot_name_exception", f"[{repo}:{name}] Invalid snapshot name [{name}], snapshot with the same name already exists")
        body = body if isinstance(body, dict) else {}
        open_indices = [n for n, i in self.indices.items() if i.open]
        indices = self._resolve(body.get("indices"), open_indices)
        started = self.clock()
        failure, self._fail_next = self._fail_next, None
        state = failure[0] if failure else "SUCCESS"
        written = [] if state == "FAILED" else (indices[1:] if state == "PARTIAL" else indices)
        directory = self._repo_dir(repo) / name
        (directory / "indices").mkdir(parents=True, exist_ok=True)
        for index in written:
            idx = self.indices[index]
            (directory / "indices" / f"{index}.json").write_text(json.dumps({"docs": idx.docs, "versions": idx.versions}))
        ended = started + 0.001 * (1 + len(written))
        failed = len(indices) - len(written)
        info: dict[str, Any] = {
            "snapshot": name,
            "uuid": uuid.uuid4().hex[:22],
            "version_id": 136327827,
            "version": VERSION,
            "remote_store_index_shallow_copy": False,
            "indices": indices,
            "data_streams": [],
            "include_global_state": bool(body.get("include_global_state", True)),
            "state": state,
            "start_time": _iso(started),
            "start_time_in_millis": _millis(started),
            "end_time": _iso(ended),
            "end_time_in_millis": _millis(ended),
            "duration_in_millis": _millis(ended) - _millis(started),
            "failures": [{"index": i, "shard_id": 0, "reason": failure[1], "status": "INTERNAL_SERVER_ERROR"} for i in indices if i not in written] if failure else [],
            "shards": {"total": len(indices), "failed": failed, "successful": len(indices) - failed},
        }
        if state == "FAILED":
            info["reason"] = failure[1] if failure else ""
        (directory / "snapshot.json").write_text(json.dumps(info))
        if query.get("wait_for_completion") != "true":
            return 200, {"accepted": True}
        # SnapshotInfo.status(): a FAILED snapshot is an HTTP 500 that still carries the info.
        return (500 if state == "FAILED" else 200), {"snapshot": info}

    def _get_snapshots(self, repo: str, names: str) -> Answer:
        if names in ("_all", "*"):
            return 200, {"snapshots": self._all_infos(repo)}
        infos = []
        for name in names.split(","):
            info = self._read_info(repo, name)
            if info is None:
                return error(404, "snapshot_missing_exception", f"[{repo}:{name}] is missing")
            infos.append(info)
        return 200, {"snapshots": infos}

    def _delete_snapshot(self, repo: str, name: str) -> Answer:
        if self._read_info(repo, name) is None:
            return error(404, "snapshot_missing_exception", f"[{repo}:{name}] is missing")
        shutil.rmtree(self._repo_dir(repo) / name)
        return 200, {"acknowledged": True}

    def _restore(self, repo: str, name: str, query: dict[str, str], body: Any) -> Answer:
        info = self._read_info(repo, name)
        if info is None:
            return error(404, "snapshot_missing_exception", f"[{repo}:{name}] is missing")
        where = f"[{repo}:{name}/{info['uuid']}]"
        if info["state"] == "FAILED":
            return error(500, "snapshot_restore_exception", f"{where} cannot restore snapshot: snapshot was not successful")
        body = body if isinstance(body, dict) else {}
        requested = self._resolve(body.get("indices"), info["indices"])
        if body.get("indices") and not requested:
            return self._missing_index(str(body.get("indices")))
        for index in requested:
            existing = self.indices.get(index)
            if existing is not None and existing.open:
                return error(
                    500,
                    "snapshot_restore_exception",
                    f"{where} cannot restore index [{index}] because an open index with same name already exists in the cluster. "
                    "Either close or delete the existing index or restore the index under a different name by providing a rename pattern and replacement name",
                )
        restored = []
        for index in requested:
            path = self._repo_dir(repo) / name / "indices" / f"{index}.json"
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                return error(500, "snapshot_restore_exception", f"{where} failed to read index [{index}]: {exc}")
            self.indices[index] = Index(docs=data["docs"], versions={k: int(v) for k, v in data["versions"].items()})
            restored.append(index)
        if query.get("wait_for_completion") != "true":
            return 200, {"accepted": True}
        return 200, {"snapshot": {"snapshot": name, "indices": restored, "shards": {"total": len(restored), "failed": 0, "successful": len(restored)}}}

    # --- the security plugin -----------------------------------------------------------------

    def _account(self, method: str, body: Any) -> Answer:
        if method == "GET":
            return 200, {
                "user_name": self.user,
                "is_reserved": self.reserved,
                "is_hidden": False,
                "is_internal_user": True,
                "user_requested_tenant": None,
                "backend_roles": ["admin"],
                "custom_attribute_names": [],
                "tenants": {},
                "roles": ["all_access", "own_index"],
            }
        if method != "PUT":
            return 400, {"error": NO_HANDLER.format(uri="/_plugins/_security/api/account", method=method), "status": 400}
        if self.reserved:
            return security_answer(403, "FORBIDDEN", f"Resource '{self.user}' is read-only.")
        if not isinstance(body, dict) or "current_password" not in body or not (body.get("password") or body.get("hash")):
            return security_answer(400, "BAD_REQUEST", "Invalid request. Needs a saved_tenant AND/OR (saved_password AND (password OR hash)")
        if body["current_password"] != self.password:
            return security_answer(400, "BAD_REQUEST", "Could not validate your current password.")
        new = body.get("password")
        if not isinstance(new, str) or len(new) < 8:
            return security_answer(400, "BAD_REQUEST", "Password must be at least 8 characters long.")
        self.password = new
        return security_answer(200, "OK", f"'{self.user}' updated.")


def _handler_class(node: FakeOpenSearch) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fake-opensearch"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read node.requests

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8" if not isinstance(body, bytes) else "text/plain; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not node.authorized(self.headers.get("Authorization")):
                self._send(401, b"Unauthorized", {"WWW-Authenticate": 'Basic realm="OpenSearch Security"'})
                return
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                self._send(*error(400, "parse_exception", "Failed to parse content to map"))
                return
            self._send(*node.handle(self.command, self.path, body))

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch

    return Handler


@contextmanager
def running(**kwargs: Any) -> Iterator[FakeOpenSearch]:
    """``with running(password=...) as node:`` — a started fake, stopped afterwards."""
    node = FakeOpenSearch(**kwargs)
    node.start()
    try:
        yield node
    finally:
        node.stop()
