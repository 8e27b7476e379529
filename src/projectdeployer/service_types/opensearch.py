"""The ``opensearch`` service type: OpenSearch, backed up through its snapshot API at 04:00 daily by default.

The container runs the official image (``opensearchproject/opensearch:{version}``) configured
the way production deployments are, not with the image's demo security setup: the demo
installer wants the admin password in ``OPENSEARCH_INITIAL_ADMIN_PASSWORD`` (an environment
variable, which this project never uses for a secret) and installs well-known demo
certificates. Instead:

* ``DISABLE_INSTALL_DEMO_CONFIG=true`` (the image's entrypoint then skips
  ``install_demo_configuration.sh``); the security plugin stays enabled;
* our own ``opensearch.yml``: single node (``discovery.type: single-node``, which also skips the
  production bootstrap checks such as ``vm.max_map_count``), ``network.host: 0.0.0.0``,
  ``path.repo`` = ``/usr/share/opensearch/snapshots`` (the ``snapshots`` data volume: the
  snapshot API's ``fs`` repository), TLS on the transport and HTTP layers with our certificates,
  ``plugins.security.allow_default_init_securityindex: true`` and the admin certificate's DN;
* TLS certificates made here with ``cryptography``: a CA per project/env/service and a node
  certificate (serverAuth + clientAuth, as the transport layer needs) signed by it, plus an
  admin client certificate (``plugins.security.authcz.admin_dn``) for ``securityadmin.sh``;
  RSA 2048, keys in PKCS#8 (what the Security plugin settings documentation asks for). They are kept
  (0600, directory 0700) in ``{home}/{project}/{env}/secrets/{service}/tls/``, made once and
  reused; the node certificate is made again when it expires within 30 days.
  ``tls/root-ca.pem`` is what clients verify the node with;
* the security plugin's configuration files (``config.yml``: HTTP basic against the internal
  users database; ``internal_users.yml``: the one user ``admin``, whose bcrypt hash is made from
  the generated password file each time the parts are computed; ``roles_mapping.yml``:
  ``admin`` -> ``all_access``; empty ``roles.yml``, ``action_groups.yml``, ``tenants.yml``).
  ``admin`` is *not* ``reserved``: the security plugin refuses to change a reserved user
  through its REST API ("Resource 'admin' is read-only."), and password rotation changes it
  through the account API.

Why the files are copied into the config directory: OpenSearch 2.x runs with the Java Security
Manager, and a plugin may only read files the node's policy grants, i.e. inside its config
directory (certificates elsewhere fail with ``AccessControlException ... FilePermission ...
read``, e.g. wazuh/wazuh-kubernetes#1173); the security plugin also reads its configuration
files from ``{config}/opensearch-security/`` only (``ConfigurationRepository``, unless the JVM
property ``security.default_init.dir`` is set). Our files are private files mounted read-only at
``/run/secrets/pd`` (flat names, 0400, owned by ``opensearch``, uid 1000), so the container's
command is a small ``bash`` script that copies them (0600) into
``/usr/share/opensearch/config/`` (``opensearch.yml``, ``pd-tls/*.pem``,
``opensearch-security/*.yml``; the image's home is owned by uid 1000, so it may) and then runs
the image's own ``./opensearch-docker-entrypoint.sh opensearch`` (in a process group of its own,
to which a stop's SIGTERM is passed: that entrypoint runs the JVM as a child, not with exec, so
the JVM would otherwise be killed rather than shut down). opensearch.yml names the
certificates relative to the config directory (``pd-tls/node.pem``), as the Security plugin
settings documentation asks ("must be under the config directory, specified using a relative
path"); ``SslCertificatesLoader`` resolves them against it. The script only names paths: no
secret is in argv, environment or labels.

The security index is initialized from those files once, on the first start of a node with an
empty data volume (``ConfigurationRepository`` creates ``.opendistro_security`` and uploads
each file with ``OpType.CREATE``: documents that exist are left alone, see ``ConfigHelper``).
After that the live index is the truth: a password rotation changes it in the running node
(``SecretsRotator.rotate_opensearch_password``), and the hash in ``internal_users.yml`` only
matters for a fresh node.

Snapshots: the ``snapshots`` volume is mounted at ``/usr/share/opensearch/snapshots``, a path
that does not exist in the image, so Docker creates the new volume owned by root and the node
(uid 1000) cannot write there until the volume is given to uid 1000 (``chown 1000:1000`` of its
root, once). The start script says so in the container log when it finds the directory not
writable; the rest of the node works regardless.

Heap: ``OPENSEARCH_JAVA_OPTS=-Xms512m -Xmx512m`` (not a secret). The performance analyzer's
agent (a second JVM) is not started. The health check stays TCP on 9200.

Sources relied on: opensearch-project/opensearch-build ``docker/release`` (the 2.x entrypoint:
``DISABLE_INSTALL_DEMO_CONFIG``, ``DISABLE_PERFORMANCE_ANALYZER_AGENT_CLI``, env vars with dots
become ``-E`` settings, it refuses to run as root; the Dockerfile: user ``opensearch`` uid
1000, ``WORKDIR /usr/share/opensearch``, ``ENTRYPOINT ["./opensearch-docker-entrypoint.sh"]``,
``CMD ["opensearch"]``); opensearch-project/security (``config/*.yml`` formats,
``config/opensearch.yml.example``, ``ConfigurationRepository``, ``ConfigHelper``,
``SslCertificatesLoader`` resolving PEM paths against the config directory,
``AccountApiAction``); docs.opensearch.org "Docker security configuration", "Security plugin
settings" and the Change Password API. None of this was run against a real node here (no
OpenSearch image or package is reachable on this machine): it is tested against
``tests/support/fake_opensearch.py`` and by inspecting the generated files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import bcrypt
from attrs import define

from ..agents.opensearch_snapshot import ACCOUNT_PATH, OpenSearchError, parse_answer
from ..core import paths
from ..core.backups import BackupError, BackupJob, BackupMethod, BackupTarget, JobRunner
from ..core.containers import SECRETS_MOUNT, ContainerParts, container_name
from ..core.fsutil import write_private
from ..core.model import DatabaseSpec, ServiceSpec
from ..core.runtime import ContainerInfo, ContainerRuntime
from ..core.servicetype import SIDECAR_HOST, ContextFor, Log, PasswordRotation, RotationError, ServiceContext, ServiceType
from ..hookspecs import hookimpl
from .databases import DatabaseType, database_type


@define(kw_only=True)
class OpenSearchSpec(DatabaseSpec):
    """A single-node OpenSearch cluster with the security plugin's admin password generated."""


class OpenSearchRotation(PasswordRotation):
    """The security plugin's account API (``PUT /_plugins/_security/api/account`` with
    ``current_password`` and ``password``, as ``admin`` with the old one), asked from inside the
    node's container: ``curl`` (the image has it; no Python) to ``https://localhost:{port}``,
    the certificate verified against the node's own CA, its whole request (URL, credentials,
    body) read from standard input (``--config -``), so no password is in argv. This works on
    any server the node runs on, not only where this machine can reach its published port.
    From then on only the new password works (the plugin drops its authentication cache on a
    configuration change): clients get HTTP 401 until the next deploy gives them the new one."""

    def begin(self, runtime: ContainerRuntime, container: ContainerInfo, service: ServiceSpec, ctx: ServiceContext, old: str, new: str, log: Log) -> None:
        name = service.name
        ca_file = ca_certificate_path(ctx.project, ctx.env, name)
        if not ca_file.is_file():
            raise RotationError(f"{name}: no CA certificate at {ca_file} to verify the node with (deploy it first; nothing changed)")
        port = service.port or OPENSEARCH.default_port or 9200
        try:
            self.account(runtime, container, port, "PUT", old, {"current_password": old, "password": new})
        except OpenSearchError as exc:
            # No answer at all (connection lost, timeout) leaves it open whether the node made
            # the change: ask it which password it takes before calling it unchanged.
            if exc.status is None and self.accepts(runtime, container, port, new):
                log(f"{name}: the node's answer was lost ({exc}), but it takes the new password: going on")
                return
            detail = str(exc).replace(new, "***").replace(old, "***")
            raise RotationError(f"{name}: OpenSearch refused the new password (nothing changed): {detail}") from None

    def accepts(self, runtime: ContainerRuntime, container: ContainerInfo, port: int, password: str) -> bool:
        """Whether the node takes ``password`` for ``admin`` (the account API's GET)."""
        try:
            return self.account(runtime, container, port, "GET", password, None, ok=(200, 401))[0] == 200
        except OpenSearchError:
            return False

    def account(self, runtime: ContainerRuntime, container: ContainerInfo, port: int, method: str, password: str, body: Any, ok: Sequence[int] = (200,)) -> tuple[int, Any]:
        """``(status, parsed JSON)`` of ``method`` on the account API, by curl in the container;
        an OpenSearchError (``status`` None when no answer came) for a status not in ``ok``."""
        result = self.exec(runtime, container, list(CURL_ARGV), curl_config(method, f"https://localhost:{port}{ACCOUNT_PATH}", password, body))
        raw, _, code = result.stdout.rstrip("\n").rpartition("\n")
        if not result.ok or not code.isdigit():
            detail = result.stderr.strip() or f"curl exit code {result.exit_code}"
            raise OpenSearchError(f"{method} {ACCOUNT_PATH}: {detail}")
        status = int(code)
        parsed = parse_answer(method, ACCOUNT_PATH, status, raw, ok=ok, user=ADMIN_USER)
        if method == "PUT" and not (isinstance(parsed, dict) and parsed.get("status") == "OK"):
            raise OpenSearchError(f"{method} {ACCOUNT_PATH}: unexpected answer {parsed!r}"[:300], status=status)
        return status, parsed


#: curl reading its whole request from standard input (``--config -``): nothing secret in argv.
CURL_ARGV = ("curl", "--config", "-")


def _curl_quoted(text: str) -> str:
    """``text`` as a double-quoted curl config value (backslash escapes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


def curl_config(method: str, url: str, password: str, body: Any) -> str:
    """The curl config (``--config -``) of one request to the node as ``admin``: verified
    against the node's CA in its config directory, the body as JSON; it prints the answer's body,
    a newline and the HTTP status."""
    lines = [
        f"url = {_curl_quoted(url)}",
        f"request = {_curl_quoted(method)}",
        f"cacert = {_curl_quoted(f'{TLS_DIR}/root-ca.pem')}",
        f"user = {_curl_quoted(f'{ADMIN_USER}:{password}')}",
        "silent",
        "show-error",
        "max-time = 30",
        'write-out = "\\n%{http_code}"',
    ]
    if body is not None:
        lines += ['header = "Content-Type: application/json"', f"data = {_curl_quoted(json.dumps(body))}"]
    return "\n".join(lines) + "\n"


@attrs.frozen(kw_only=True)
class OpenSearchType(DatabaseType):
    """A single OpenSearch node with our own security configuration, snapshot API backups."""

    def container_parts(self, service: ServiceSpec, ctx: ServiceContext) -> ContainerParts:
        """The official image with our own security configuration, every secret as a private file."""
        return ContainerParts(
            env={
                "DISABLE_INSTALL_DEMO_CONFIG": "true",
                "DISABLE_PERFORMANCE_ANALYZER_AGENT_CLI": "true",
                "OPENSEARCH_JAVA_OPTS": f"-Xms{HEAP} -Xmx{HEAP}",
            },
            command=("bash", "-c", start_script(), "projectdeployer-opensearch-start"),
            secret_files=node_files(ctx, service.name),
            data_volumes={"data": DATA_DIR, "snapshots": SNAPSHOTS_DIR},
            secret_owner=OPENSEARCH_USER,
            # The image has no snapshots directory: Docker would create that volume root-owned.
            volume_owner=OPENSEARCH_USER,
        )

    def backup_method(self, contexts: ContextFor) -> BackupMethod:
        return OpenSearchBackup(contexts)

    def connection_env(self, key: str, target: str, ctx: ServiceContext) -> tuple[dict[str, str], dict[str, str]]:
        """``https://nginx:{port}``; the URL with ``admin`` and the password as a file."""
        host, port = ctx.sidecar_host, ctx.service_port(target)
        env = {key: f"https://{host}:{port}", f"{key}_FILE": f"{SECRETS_MOUNT}/{key}"}
        return env, {key: f"https://{ADMIN_USER}:{ctx.password(target)}@{host}:{port}"}

    def piece(self, name: str, target: str, ctx: ServiceContext) -> str:
        # The one user is the security plugin's admin, not a per-project database user.
        return ADMIN_USER if name == "user" else super().piece(name, target, ctx)


OPENSEARCH = database_type(
    OpenSearchType,
    "opensearch",
    spec_class=OpenSearchSpec,
    description="OpenSearch search engine (stateful, snapshot API backups)",
    port=9200,
    version="2",
    image="opensearchproject/opensearch:{version}",
    backup_schedule="0 4 * * *",
    auto_env=("OPENSEARCH_URL",),
    auto_pieces=("host", "port", "user", "password"),
    rotation=OpenSearchRotation(),
)

#: The image's layout (opensearch-build's Dockerfile).
OPENSEARCH_HOME = "/usr/share/opensearch"
CONFIG_DIR = f"{OPENSEARCH_HOME}/config"
DATA_DIR = f"{OPENSEARCH_HOME}/data"
#: The snapshot repository's directory: ``path.repo`` and the ``snapshots`` volume.
SNAPSHOTS_DIR = f"{OPENSEARCH_HOME}/snapshots"
TLS_DIR = f"{CONFIG_DIR}/pd-tls"
#: How opensearch.yml names the TLS files: relative to the config directory, as documented.
TLS_REL = "pd-tls"
SECURITY_DIR = f"{CONFIG_DIR}/opensearch-security"
#: The user the image runs as (uid 1000), who must read the private files.
OPENSEARCH_USER = "opensearch"
ADMIN_USER = "admin"
HEAP = "512m"
#: The security plugin's files, each mounted as ``security-{name}``.
SECURITY_FILES = ("config.yml", "internal_users.yml", "roles.yml", "roles_mapping.yml", "action_groups.yml", "tenants.yml")
TLS_FILES = ("root-ca.pem", "node.pem", "node-key.pem", "admin.pem", "admin-key.pem")
#: A node certificate is valid this long, and made again when it expires sooner than RENEW_BEFORE.
NODE_VALIDITY = dt.timedelta(days=825)
CA_VALIDITY = dt.timedelta(days=3650)
RENEW_BEFORE = dt.timedelta(days=30)
BCRYPT_ROUNDS = 12
HASH_FILE = "admin_password.bcrypt"


@hookimpl
def register_service_types(register: Callable[[ServiceType], None]) -> None:
    register(OPENSEARCH)


# --- certificates ------------------------------------------------------------------------------


def tls_dir(project: str, env: str, service: str) -> Path:
    """``{home}/{project}/{env}/secrets/{service}/tls``: the CA, node and admin certificates and keys."""
    return paths.env_dir(project, env, "secrets") / service / "tls"


def ca_certificate_path(project: str, env: str, service: str) -> Path:
    """The CA certificate (PEM) a client verifies the node's HTTPS certificate with."""
    return tls_dir(project, env, service) / "root-ca.pem"


@attrs.frozen(kw_only=True)
class NodePki:
    """PEM texts of a node's certificates and keys, and the DNs opensearch.yml names."""

    ca_cert: str
    node_cert: str
    node_key: str
    admin_cert: str
    admin_key: str
    node_dn: str
    admin_dn: str


def node_hostnames(project: str, env: str, service: str) -> list[str]:
    """The DNS names in the node certificate: its container name (backup containers reach it by
    that name on the project network), the service name, the sidecar alias apps use, localhost."""
    return [container_name(project, env, service, "s"), service, SIDECAR_HOST, "localhost"]


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _private_dirs(directory: Path) -> None:
    """The directory and its parents up to the environment's secrets directory: 0700."""
    secrets_dir = directory.parents[1]
    for d in (secrets_dir, directory.parent, directory):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(d, 0o700)


def _pair(directory: Path, name: str, ca_cert: str, make: Callable[[], tuple[str, str]], usable: Callable[[str | None, str | None], bool]) -> tuple[str, str]:
    """``{name}.pem`` and ``{name}-key.pem``: read, or made (again) when not usable. A crash
    between the two writes leaves a pair that does not match: made again on the next call."""
    cert, key = _read(directory / f"{name}.pem"), _read(directory / f"{name}-key.pem")
    if usable(cert, key):
        return cert, key  # type: ignore[return-value]
    cert, key = make()
    write_private(directory / f"{name}-key.pem", key)
    write_private(directory / f"{name}.pem", cert)
    return cert, key


def ensure_pki(project: str, env: str, service: str, *, now: dt.datetime | None = None) -> NodePki:
    """The node's CA, node and admin certificates, made on first use and reused after."""
    from . import opensearch_certs as certs  # noqa: PLC0415 - deferred: cryptography (start-up: ~80 ms)

    now = now or dt.datetime.now(dt.UTC)
    directory = tls_dir(project, env, service)
    _private_dirs(directory)
    ca_cert, ca_key = _read(directory / "root-ca.pem"), _read(directory / "root-ca-key.pem")
    ca_until = certs.valid_until(ca_cert) if ca_cert else None
    if not (ca_cert and ca_key and ca_until and ca_until - now > RENEW_BEFORE and certs.matches(ca_cert, ca_key)):
        # A new CA: every certificate the old one signed fails certs.usable and is made again.
        ca_cert, ca_key = certs.make_ca(project, env, service, now, CA_VALIDITY)
        write_private(directory / "root-ca-key.pem", ca_key)
        write_private(directory / "root-ca.pem", ca_cert)
    node_subject = certs.distinguished_name(f"{service}.{env}.{project}.node", project, env)
    admin_subject = certs.distinguished_name(f"{service}.{env}.{project}.admin", project, env)
    hostnames = node_hostnames(project, env, service)

    def usable(cert: str | None, key: str | None) -> bool:
        return certs.usable(cert, key, ca_cert, now, RENEW_BEFORE)

    node = _pair(directory, "node", ca_cert, lambda: certs.issue(ca_cert, ca_key, node_subject, now, validity=NODE_VALIDITY, server=True, hostnames=hostnames), usable)
    admin = _pair(directory, "admin", ca_cert, lambda: certs.issue(ca_cert, ca_key, admin_subject, now, validity=NODE_VALIDITY, server=False), usable)
    return NodePki(
        ca_cert=ca_cert,
        node_cert=node[0],
        node_key=node[1],
        admin_cert=admin[0],
        admin_key=admin[1],
        node_dn=node_subject.rfc4514_string(),
        admin_dn=admin_subject.rfc4514_string(),
    )


# --- the admin password's hash -----------------------------------------------------------------


def admin_password_hash(project: str, env: str, service: str, password: str) -> str:
    """The bcrypt hash of ``password`` for internal_users.yml, the same on every call while the
    password stays the same (a new salt would change the container's config hash, and so
    restart OpenSearch, on every deploy).

    Cached in ``secrets/{service}/admin_password.bcrypt`` (0600) as two lines: the password's
    SHA-256 (which says whether the cache is for the current password without a slow bcrypt
    check; it reveals nothing the password file beside it does not) and the bcrypt hash. Made
    again when the password changed (after a rotation).
    """

    path = paths.env_dir(project, env, "secrets") / service / HASH_FILE
    fingerprint = "sha256:" + hashlib.sha256(password.encode()).hexdigest()
    cached = (_read(path) or "").splitlines()
    if len(cached) == 2 and cached[0] == fingerprint and cached[1].startswith("$2a$"):
        return cached[1]
    # $2a$, as the security plugin's own demo users are written; 12 rounds, as its hash.sh.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS, prefix=b"2a")).decode()
    write_private(path, f"{fingerprint}\n{hashed}\n")
    return hashed


# --- configuration files -----------------------------------------------------------------------


def to_yaml(value: Any, indent: int = 0) -> str:
    """A small YAML writer for dicts, lists and scalars; strings are JSON-quoted (valid YAML)."""
    pad = "  " * indent
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        lines = []
        for key, item in value.items():
            if isinstance(item, (Mapping, list)) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {to_yaml(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]"
        return "\n".join(f"{pad}-\n{to_yaml(item, indent + 1)}" if isinstance(item, (Mapping, list)) and item else f"{pad}- {to_yaml(item)}" for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(str(value))


def _meta(kind: str) -> dict[str, Any]:
    return {"_meta": {"type": kind, "config_version": 2}}


def security_files(admin_hash: str) -> dict[str, str]:
    """The security plugin's configuration (``opensearch-security/*.yml``) by file name."""
    config = {
        **_meta("config"),
        "config": {
            "dynamic": {
                "http": {"anonymous_auth_enabled": False},
                "authc": {
                    "basic_internal_auth_domain": {
                        "description": "HTTP basic authentication against the internal users database",
                        "http_enabled": True,
                        "transport_enabled": True,
                        "order": 0,
                        "http_authenticator": {"type": "basic", "challenge": True},
                        "authentication_backend": {"type": "intern"},
                    }
                },
                "authz": {},
            }
        },
    }
    users = {
        **_meta("internalusers"),
        ADMIN_USER: {
            "hash": admin_hash,
            # Not reserved: the account API must be able to change it (password rotation).
            "reserved": False,
            "backend_roles": ["admin"],
            "description": "ProjectDeployer's admin user (password: the service's generated password file)",
        },
    }
    mapping = {**_meta("rolesmapping"), "all_access": {"reserved": False, "backend_roles": ["admin"], "description": "admin has all access"}}
    files = {
        "config.yml": config,
        "internal_users.yml": users,
        "roles.yml": _meta("roles"),
        "roles_mapping.yml": mapping,
        "action_groups.yml": _meta("actiongroups"),
        "tenants.yml": _meta("tenants"),
    }
    return {name: "---\n" + to_yaml(content) + "\n" for name, content in files.items()}


def opensearch_yml(project: str, env: str, service: str, pki: NodePki) -> str:
    """The node's opensearch.yml (no secret in it: paths and names only)."""
    settings: dict[str, Any] = {
        "cluster.name": f"{project}-{env}-{service}",
        "node.name": service,
        "network.host": "0.0.0.0",
        "discovery.type": "single-node",
        "bootstrap.memory_lock": False,
        "path.data": DATA_DIR,
        "path.repo": [SNAPSHOTS_DIR],
        "plugins.security.ssl.transport.pemcert_filepath": f"{TLS_REL}/node.pem",
        "plugins.security.ssl.transport.pemkey_filepath": f"{TLS_REL}/node-key.pem",
        "plugins.security.ssl.transport.pemtrustedcas_filepath": f"{TLS_REL}/root-ca.pem",
        # One node: its transport peers are itself; the certificate names no transport host.
        "plugins.security.ssl.transport.enforce_hostname_verification": False,
        "plugins.security.ssl.http.enabled": True,
        "plugins.security.ssl.http.pemcert_filepath": f"{TLS_REL}/node.pem",
        "plugins.security.ssl.http.pemkey_filepath": f"{TLS_REL}/node-key.pem",
        "plugins.security.ssl.http.pemtrustedcas_filepath": f"{TLS_REL}/root-ca.pem",
        "plugins.security.allow_unsafe_democertificates": False,
        "plugins.security.allow_default_init_securityindex": True,
        "plugins.security.authcz.admin_dn": [pki.admin_dn],
        "plugins.security.nodes_dn": [pki.node_dn],
        "plugins.security.restapi.roles_enabled": ["all_access"],
    }
    header = f"# Written by ProjectDeployer for {project}/{env}/{service}; copied here from {SECRETS_MOUNT} at each start.\n"
    return header + to_yaml(settings) + "\n"


def start_script() -> str:
    """The container's command: copy the private files into the config directory, then run the
    image's entrypoint. Paths only: nothing secret is in it."""
    tls = " ".join(TLS_FILES)
    security = " ".join(SECURITY_FILES)
    return (
        "\n".join(
            [
                "set -eu",
                "umask 077",
                f"src={SECRETS_MOUNT}",
                f"conf={CONFIG_DIR}",
                'put() { rm -f "$2"; cp "$1" "$2"; chmod 0600 "$2"; }',
                f'mkdir -p "{TLS_DIR}" "{SECURITY_DIR}"',
                'put "$src/opensearch.yml" "$conf/opensearch.yml"',
                f'for f in {tls}; do put "$src/$f" "{TLS_DIR}/$f"; done',
                f'for f in {security}; do put "$src/security-$f" "{SECURITY_DIR}/$f"; done',
                f'if [ ! -w "{SNAPSHOTS_DIR}" ]; then',
                f'  echo "projectdeployer: {SNAPSHOTS_DIR} is not writable by $(id -u): snapshots will fail until the snapshots volume belongs to uid $(id -u)" >&2',
                "fi",
                f"cd {OPENSEARCH_HOME}",
                # The image's entrypoint runs OpenSearch as its child (not with exec), so a stop's
                # SIGTERM would end the entrypoint and leave the JVM to be killed: start it in a process
                # group of its own, pass the signal to the whole group, and wait until it is empty.
                "set -m",
                "./opensearch-docker-entrypoint.sh opensearch &",
                "node=$!",
                "trap 'kill -TERM -- \"-$node\" 2>/dev/null || true' TERM INT",
                "status=0",
                'wait "$node" || status=$?',
                'while kill -0 -- "-$node" 2>/dev/null; do sleep 0.5; done',
                'exit "$status"',
            ]
        )
        + "\n"
    )


def node_files(ctx: ServiceContext, service: str) -> dict[str, str]:
    """Every private file the node's container gets at ``/run/secrets/pd``."""
    project, env = ctx.project, ctx.env
    password = ctx.ensure_password(service)
    pki = ensure_pki(project, env, service)
    files = {
        "opensearch.yml": opensearch_yml(project, env, service, pki),
        "root-ca.pem": pki.ca_cert,
        "node.pem": pki.node_cert,
        "node-key.pem": pki.node_key,
        "admin.pem": pki.admin_cert,
        "admin-key.pem": pki.admin_key,
    }
    for name, text in security_files(admin_password_hash(project, env, service, password)).items():
        files[f"security-{name}"] = text
    return files


# --- backups through the snapshot API --------------------------------------------------------


def _snapshot_tool() -> str:
    return resources.files("projectdeployer.agents").joinpath("opensearch_snapshot.py").read_text(encoding="utf-8")


class OpenSearchBackup(BackupMethod):
    """Snapshots through the snapshot API (``agents/opensearch_snapshot.py``, run on the project's
    python image: the OpenSearch image has no Python). The snapshot itself lives in the node's
    ``fs`` repository (the ``snapshots`` volume); each verified snapshot also gets a manifest
    ``/backups/{service}_{YYYYmmdd_HHMMSS}.snapshot`` (its JSON) and ``.sha256``, so listing,
    ``latest`` and retention work as for the other types. A restore closes the indices and
    restores them from the snapshot: they are unavailable meanwhile."""

    extension = "snapshot"

    def __init__(self, contexts: ContextFor) -> None:
        self.contexts = contexts

    def _client_args(self, target: BackupTarget) -> tuple[tuple[str, ...], dict[str, str]]:
        project, env, service = target.project.name, target.env, target.service.name
        files = {"password": self.contexts(project, env).ensure_password(service), "root-ca.pem": ensure_pki(project, env, service).ca_cert}
        args = (
            "--url",
            f"https://{target.host}:{target.port}",
            "--auth-file",
            f"{SECRETS_MOUNT}/password",
            "--ca-file",
            f"{SECRETS_MOUNT}/root-ca.pem",
            "--repo",
            "pd",
            "--location",
            SNAPSHOTS_DIR,
        )
        return args, files

    def _job(self, target: BackupTarget, *argv: str) -> BackupJob:
        args, files = self._client_args(target)
        return BackupJob(command=("python3", "-I", "-c", _snapshot_tool(), argv[0], *args, *argv[1:]), secret_files=files, image="python")

    def backup_job(self, target: BackupTarget) -> BackupJob:
        return self._job(target, "backup", "--prefix", target.service.name, "--retention-days", str(target.policy.retention_days), "--manifest-dir", "/backups")

    def verify_job(self, target: BackupTarget, file: str) -> BackupJob:
        return self._job(target, "verify", "--snapshot", file.removesuffix(".snapshot"))

    def restore(self, target: BackupTarget, file: str, runner: JobRunner, log: Callable[[str], None]) -> float:
        began = time.monotonic()
        code, lines = runner.run_once(self._job(target, "restore", "--snapshot", file.removesuffix(".snapshot")), "restore")
        for line in lines:
            log(f"{target.service.name}: {line}")
        if code != 0:
            raise BackupError(f"{target.service.name}: the restore of {file} failed (exit code {code}): {' / '.join(lines[-3:])}")
        return time.monotonic() - began
