"""OpenSearch without OpenSearch: the container parts (no secret outside the private files,
modes, certificates made once and reused), the snapshot client and its CLI against the fake
node (``tests.support.fake_opensearch``) over real HTTPS with the generated
certificates, the fake itself, and the password rotation against the fake.

Nothing here ran against a real OpenSearch node: no image or package of it is reachable on
this machine. The fake answers with the shapes of OpenSearch 2.x's REST API.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import bcrypt
import pytest

from projectdeployer import ProjectDeployer, SecretsRotator
from projectdeployer.agents import opensearch_snapshot as snap
from projectdeployer.agents.opensearch_snapshot import OpenSearchError, SnapshotClient, SnapshotVerificationError
from projectdeployer.core.containers import SECRETS_MOUNT
from projectdeployer.deploy.containers import build_container
from projectdeployer.deploy.ports import PortAssignment
from projectdeployer.plugins import get_registry, load_plugins
from projectdeployer.secrets.resolver import password_path
from projectdeployer.secrets.rotation import RotationError
from projectdeployer.service_types import opensearch as os_type
from projectdeployer.service_types import opensearch_certs
from tests.support.fake_opensearch import FakeOpenSearch
from tests.unit.test_rotator import fake_environment, handing_out, placed

pytestmark = pytest.mark.unit

ENV = "prod"
SERVICE = "search"


#: The real cost of the admin password's bcrypt hash (the tests use a cheaper one).
REAL_ROUNDS = os_type.BCRYPT_ROUNDS
_KEYS: list[Any] = []


@pytest.fixture(autouse=True)
def fast_crypto(monkeypatch: pytest.MonkeyPatch) -> None:
    """RSA keys from a small pool made once (each test draws distinct ones) and 4 bcrypt rounds:
    the same code paths, without seconds of key generation and hashing per test."""
    if not _KEYS:
        _KEYS.extend(opensearch_certs.new_key() for _ in range(8))
    pool = iter(_KEYS)
    monkeypatch.setattr(opensearch_certs, "new_key", lambda: next(pool))
    monkeypatch.setattr(os_type, "BCRYPT_ROUNDS", 4)


def test_the_real_hash_cost_is_the_security_plugins() -> None:
    assert REAL_ROUNDS == 12


@pytest.fixture
def project(pd_home: Path) -> ProjectDeployer:
    p = ProjectDeployer.create("shop")
    p.add_opensearch(SERVICE).add_python_service("api", port=8000, depends_on=[SERVICE], env_vars={"OPENSEARCH_URL": "auto"})
    return p


def parts_of(project: ProjectDeployer) -> Any:
    spec = project.project.services[SERVICE]
    # The hook as a deploy asks it: the adapter answers from the opensearch type's method.
    return load_plugins().hook.container_parts(service=spec, project=project.project, env=ENV)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load_yaml(text: str) -> Any:
    """Parse YAML with PyYAML (the venv's, else the system python's); skip when neither has it."""
    try:
        import yaml  # type: ignore[import-untyped]

        return yaml.safe_load(text)
    except ImportError:
        pass
    python = shutil.which("python3", path="/usr/bin")
    if python:
        code = "import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))"
        done = subprocess.run([python, "-c", code], input=text, capture_output=True, text=True)
        if done.returncode == 0:
            return json.loads(done.stdout)
    pytest.skip("no YAML parser on this machine")


# --- container parts ---------------------------------------------------------------------------


def test_no_secret_in_environment_command_or_labels(project: ProjectDeployer) -> None:
    parts = parts_of(project)
    password = password_path("shop", ENV, SERVICE).read_text()
    assert len(password) == 32 and password.isalnum()
    stype = get_registry().service_types["opensearch"]
    container = build_container(
        project=project.project,
        env=ENV,
        service=project.project.services[SERVICE],
        stype=stype,
        parts=parts,
        image="opensearchproject/opensearch:2",
        image_id="sha256:x",
        ports=PortAssignment(host=8123, internal=5123),
        slot="s",
        data_root="/srv/pd",
        resolve_secret=lambda ref: "unused",
        service_types=get_registry().service_types,
    )
    spec = container.spec
    key_lines = [line for line in os_type.ensure_pki("shop", ENV, SERVICE).node_key.splitlines() if "-----" not in line]
    public = json.dumps([spec.env, list(spec.command or ()), spec.labels])
    for secret in [password, parts.secret_files["security-internal_users.yml"].split('hash: "')[1].split('"')[0], *key_lines[:3]]:
        assert secret not in public
    assert "OPENSEARCH_INITIAL_ADMIN_PASSWORD" not in spec.env
    assert spec.env["DISABLE_INSTALL_DEMO_CONFIG"] == "true" and spec.env["OPENSEARCH_JAVA_OPTS"] == "-Xms512m -Xmx512m"
    # The image's entrypoint stays; our command is a bash script that ends in it.
    assert spec.command[:2] == ("bash", "-c") and "./opensearch-docker-entrypoint.sh opensearch &" in spec.command[2]
    assert {(m.source, m.target) for m in spec.mounts if m.volume} == {
        ("shop_prod_search_data", "/usr/share/opensearch/data"),
        ("shop_prod_search_snapshots", "/usr/share/opensearch/snapshots"),
    }
    assert container.secret_owner == "opensearch"
    # The password reaches the node only as a bcrypt hash in internal_users.yml.
    assert not any(password in text for text in container.secret_files.values())


def test_the_private_files_and_what_they_say(project: ProjectDeployer) -> None:
    files = parts_of(project).secret_files
    assert set(files) == {
        "opensearch.yml",
        "root-ca.pem",
        "node.pem",
        "node-key.pem",
        "admin.pem",
        "admin-key.pem",
        *(f"security-{name}" for name in os_type.SECURITY_FILES),
    }
    assert all("/" not in name for name in files)  # flat names at /run/secrets/pd
    settings = load_yaml(files["opensearch.yml"])
    pki = os_type.ensure_pki("shop", ENV, SERVICE)
    assert settings["discovery.type"] == "single-node" and settings["network.host"] == "0.0.0.0"
    assert settings["path.repo"] == ["/usr/share/opensearch/snapshots"]
    assert settings["plugins.security.allow_default_init_securityindex"] is True
    assert settings["plugins.security.authcz.admin_dn"] == [pki.admin_dn] and settings["plugins.security.nodes_dn"] == [pki.node_dn]
    for layer in ("transport", "http"):
        for key, name in (("pemcert_filepath", "node.pem"), ("pemkey_filepath", "node-key.pem"), ("pemtrustedcas_filepath", "root-ca.pem")):
            # Relative to the config directory, where the start script copies the files.
            assert settings[f"plugins.security.ssl.{layer}.{key}"] == f"pd-tls/{name}"
    assert f"{os_type.CONFIG_DIR}/{os_type.TLS_REL}" == os_type.TLS_DIR
    # Every file opensearch.yml names is one the start script copies into the config directory.
    script = os_type.start_script()
    for name in os_type.TLS_FILES:
        assert name in files and name in script
    users = load_yaml(files["security-internal_users.yml"])
    password = password_path("shop", ENV, SERVICE).read_text()
    assert set(users) == {"_meta", "admin"} and users["_meta"] == {"type": "internalusers", "config_version": 2}
    assert users["admin"]["reserved"] is False and users["admin"]["backend_roles"] == ["admin"]
    assert users["admin"]["hash"].startswith("$2a$04$") and bcrypt.checkpw(password.encode(), users["admin"]["hash"].encode())
    config = load_yaml(files["security-config.yml"])
    domain = config["config"]["dynamic"]["authc"]["basic_internal_auth_domain"]
    assert domain["http_authenticator"] == {"type": "basic", "challenge": True} and domain["authentication_backend"] == {"type": "intern"}
    assert load_yaml(files["security-roles_mapping.yml"])["all_access"]["backend_roles"] == ["admin"]
    for name, kind in (("roles.yml", "roles"), ("action_groups.yml", "actiongroups"), ("tenants.yml", "tenants")):
        assert load_yaml(files[f"security-{name}"]) == {"_meta": {"type": kind, "config_version": 2}}


def test_start_script_copies_then_runs_the_entrypoint(project: ProjectDeployer) -> None:
    script = os_type.start_script()
    assert script.startswith("set -eu\numask 077\n")
    assert f"src={SECRETS_MOUNT}" in script
    for name in os_type.SECURITY_FILES:
        assert name in script
    assert script.index('put "$src/opensearch.yml"') < script.index("./opensearch-docker-entrypoint.sh opensearch &")


#: A stand-in for the image's entrypoint: like the real one it runs "OpenSearch" as a child,
#: not with exec; the child records a graceful shutdown on SIGTERM.
FAKE_ENTRYPOINT = """#!/bin/bash
bash -c 'trap "echo graceful > shutdown; exit 0" TERM; echo up > started; while true; do sleep 0.05; done'
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_start_script_run_for_real_with_a_stand_in_entrypoint(project: ProjectDeployer, tmp_path: Path) -> None:
    import os
    import signal

    files = parts_of(project).secret_files
    secrets, home = tmp_path / "secrets", tmp_path / "opensearch"
    secrets.mkdir()
    for name, text in files.items():
        (secrets / name).write_text(text)
        (secrets / name).chmod(0o400)
    (home / "config").mkdir(parents=True)
    (home / "config" / "opensearch.yml").write_text("cluster.name: docker-cluster\n")  # the image's own
    entry = home / "opensearch-docker-entrypoint.sh"
    entry.write_text(FAKE_ENTRYPOINT)
    entry.chmod(0o755)
    script = os_type.start_script().replace(SECRETS_MOUNT, str(secrets)).replace(os_type.OPENSEARCH_HOME, str(home))
    proc = subprocess.Popen(["bash", "-c", script, "start"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not (home / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (home / "started").exists(), proc.stderr.read() if proc.poll() is not None else "not started"
        config = home / "config"
        assert (config / "opensearch.yml").read_text() == files["opensearch.yml"]
        for name in os_type.TLS_FILES:
            assert (config / "pd-tls" / name).read_text() == files[name] and _mode(config / "pd-tls" / name) == 0o600
        for name in os_type.SECURITY_FILES:
            assert (config / "opensearch-security" / name).read_text() == files[f"security-{name}"]
        proc.send_signal(signal.SIGTERM)  # what docker stop sends (through the init process)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
    # The "JVM" got the signal and shut down before the script ended.
    assert (home / "shutdown").read_text() == "graceful\n"
    # The snapshots directory does not exist here: the log says why snapshots would fail.
    assert "snapshots is not writable by" in err


def test_certificates_are_made_once_private_and_reused(project: ProjectDeployer, pd_home: Path) -> None:
    first = parts_of(project).secret_files
    tls = pd_home / "shop" / ENV / "secrets" / SERVICE / "tls"
    assert _mode(tls) == 0o700 and _mode(tls.parent) == 0o700 and _mode(tls.parent.parent) == 0o700
    assert sorted(p.name for p in tls.iterdir()) == sorted(["root-ca.pem", "root-ca-key.pem", "node.pem", "node-key.pem", "admin.pem", "admin-key.pem"])
    assert all(_mode(p) == 0o600 for p in tls.iterdir())
    assert _mode(tls.parent / os_type.HASH_FILE) == 0o600
    second = parts_of(project).secret_files
    assert second == first  # same certificates, same hash: the config hash does not move
    assert os_type.ca_certificate_path("shop", ENV, SERVICE).read_text() == first["root-ca.pem"]


def test_the_node_certificate(project: ProjectDeployer) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    pki = os_type.ensure_pki("shop", ENV, SERVICE)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.encode())
    node = x509.load_pem_x509_certificate(pki.node_cert.encode())
    node.verify_directly_issued_by(ca)
    sans = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["shop_prod_search", "search", "nginx", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usages = node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    assert pki.node_key.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert node.subject.rfc4514_string() == pki.node_dn == "CN=search.prod.shop.node,OU=shop-prod,O=ProjectDeployer"
    admin = x509.load_pem_x509_certificate(pki.admin_cert.encode())
    admin.verify_directly_issued_by(ca)
    assert pki.admin_dn != pki.node_dn


def test_an_expiring_node_certificate_is_made_again_by_the_same_ca(project: ProjectDeployer) -> None:
    pki = os_type.ensure_pki("shop", ENV, SERVICE)
    later = dt.datetime.now(dt.UTC) + os_type.NODE_VALIDITY - dt.timedelta(days=10)
    renewed = os_type.ensure_pki("shop", ENV, SERVICE, now=later)
    assert renewed.ca_cert == pki.ca_cert and renewed.node_cert != pki.node_cert
    # A broken pair (a crash between the two writes) is made again too.
    os_type.tls_dir("shop", ENV, SERVICE).joinpath("admin-key.pem").write_text(pki.node_key)
    assert os_type.ensure_pki("shop", ENV, SERVICE).admin_key != pki.node_key


def test_the_hash_follows_the_password_file(project: ProjectDeployer) -> None:
    first = parts_of(project).secret_files["security-internal_users.yml"]
    current = password_path("shop", ENV, SERVICE)
    current.write_text("N" * 32)
    changed = parts_of(project).secret_files["security-internal_users.yml"]
    assert changed != first
    new_hash = re.search(r'hash: "([^"]+)"', changed).group(1)  # type: ignore[union-attr]
    assert bcrypt.checkpw(b"N" * 32, new_hash.encode())


def test_other_types_get_no_opensearch_parts(project: ProjectDeployer) -> None:
    api = project.project.services["api"]
    assert load_plugins().hook.container_parts(service=api, project=project.project, env=ENV) is None


def test_to_yaml_quotes_every_string() -> None:
    text = os_type.to_yaml({"a": "x: y # z", "b": [1, True, None], "c": {}, "d": {"e": ["f"]}})
    assert load_yaml(text) == {"a": "x: y # z", "b": [1, True, None], "c": {}, "d": {"e": ["f"]}}


# --- the fake node and the snapshot client -----------------------------------------------------


@pytest.fixture
def node(project: ProjectDeployer, tmp_path: Path) -> Iterator[FakeOpenSearch]:
    """A fake node over HTTPS with the project's own generated node certificate."""
    parts_of(project)
    tls = os_type.tls_dir("shop", ENV, SERVICE)
    repo = tmp_path / "snapshots"
    repo.mkdir()
    password = password_path("shop", ENV, SERVICE).read_text()
    with FakeOpenSearch(password=password, path_repo=[repo], certfile=tls / "node.pem", keyfile=tls / "node-key.pem") as fake:
        yield fake


@pytest.fixture
def client(node: FakeOpenSearch, tmp_path: Path) -> SnapshotClient:
    return SnapshotClient.from_files(
        node.url,
        str(password_path("shop", ENV, SERVICE)),
        ca_file=str(os_type.ca_certificate_path("shop", ENV, SERVICE)),
        location=str(tmp_path / "snapshots"),
    )


def seed(node: FakeOpenSearch) -> None:
    for i in range(3):
        node.put_doc("products", str(i), {"name": f"p{i}"})
    node.put_doc("orders", "1", {"total": 10})


def test_https_round_trip_verified_against_the_node_ca(client: SnapshotClient, node: FakeOpenSearch) -> None:
    status, root = client.request("GET", "/")
    assert status == 200 and root["version"]["distribution"] == "opensearch"
    assert client.request("GET", "/_cluster/health")[1]["status"] == "green"


def test_a_node_certificate_from_another_ca_is_refused(node: FakeOpenSearch, tmp_path: Path, pd_home: Path) -> None:
    other = os_type.ensure_pki("other", ENV, SERVICE)
    (tmp_path / "other-ca.pem").write_text(other.ca_cert)
    stranger = SnapshotClient(node.url, password=node.password, ca_file=str(tmp_path / "other-ca.pem"))
    with pytest.raises(OpenSearchError, match="CERTIFICATE_VERIFY_FAILED"):
        stranger.request("GET", "/")


def test_a_wrong_password_is_a_clear_401() -> None:
    with FakeOpenSearch(password="right") as node:
        wrong = SnapshotClient(node.url, password="nope")
        with pytest.raises(OpenSearchError, match="authentication failed for user 'admin' \\(HTTP 401\\)") as caught:
            wrong.request("GET", "/")
        assert wrong.authenticates("right") and not wrong.authenticates("nope")
    assert caught.value.status == 401 and "nope" not in str(caught.value)


def test_snapshot_verify_list_and_delete(client: SnapshotClient, node: FakeOpenSearch, tmp_path: Path) -> None:
    seed(node)
    assert client.ensure_repository() is True and client.ensure_repository() is False
    assert client.list_indices() == ["orders", "products"]
    info = client.create_snapshot("search_20260101_040000")
    assert info["state"] == "SUCCESS" and sorted(info["indices"]) == ["orders", "products"]
    assert info["include_global_state"] is False
    # The fake writes the indices under the repository's location, as an fs repository does.
    assert (tmp_path / "snapshots" / "fake-snapshots" / "search_20260101_040000" / "indices" / "products.json").is_file()
    verified = client.verify_snapshot("search_20260101_040000", ["orders", "products"])
    assert verified["shards"] == {"total": 2, "failed": 0, "successful": 2}
    with pytest.raises(SnapshotVerificationError, match="lacks indices: missing"):
        client.verify_snapshot("search_20260101_040000", ["orders", "missing"])
    client.create_snapshot("search_20260102_040000")
    assert [s["snapshot"] for s in client.list_snapshots()] == ["search_20260101_040000", "search_20260102_040000"]
    client.delete_snapshot("search_20260101_040000")
    assert [s["snapshot"] for s in client.list_snapshots()] == ["search_20260102_040000"]
    with pytest.raises(OpenSearchError, match="snapshot_missing_exception: \\[pd:search_20260101_040000\\] is missing") as caught:
        client.delete_snapshot("search_20260101_040000")
    assert caught.value.status == 404


def test_the_security_index_is_never_snapshotted(client: SnapshotClient, node: FakeOpenSearch) -> None:
    seed(node)
    node.put_doc(".opendistro_security", "internalusers", {"admin": "hash"})
    client.ensure_repository()
    info = client.create_snapshot("s1")
    assert ".opendistro_security" not in info["indices"] and "products" in info["indices"]


def test_restore_closes_the_open_indices_first(client: SnapshotClient, node: FakeOpenSearch) -> None:
    seed(node)
    client.ensure_repository()
    client.create_snapshot("before")
    client.request("PUT", "/products/_doc/0", {"name": "changed"})
    client.request("DELETE", "/orders")
    # OpenSearch refuses to restore over an open index, with this error.
    with pytest.raises(OpenSearchError, match=r"snapshot_restore_exception: .*cannot restore index \[products\] because an open index with same name already exists") as caught:
        client.request("POST", "/_snapshot/pd/before/_restore", {"indices": "products"})
    assert caught.value.status == 500
    result = client.restore_snapshot("before")
    assert sorted(result["indices"]) == ["orders", "products"] and result["shards"]["failed"] == 0
    assert client.request("GET", "/products/_doc/0")[1]["_source"] == {"name": "p0"}
    assert client.request("GET", "/orders/_doc/1")[1]["_source"] == {"total": 10}
    assert ("POST", "/products/_close") in node.requests


def test_failed_and_partial_snapshots_are_detected(client: SnapshotClient, node: FakeOpenSearch) -> None:
    seed(node)
    client.ensure_repository()
    node.fail_next_snapshot("FAILED", "disk full")
    info = client.create_snapshot("bad")
    assert info["state"] == "FAILED"  # HTTP 500 with the snapshot's info, as the real node answers
    with pytest.raises(SnapshotVerificationError, match="snapshot bad is FAILED, not SUCCESS: disk full"):
        client.verify_snapshot("bad")
    node.fail_next_snapshot("PARTIAL", "shard lost")
    assert client.create_snapshot("partial")["state"] == "PARTIAL"
    with pytest.raises(SnapshotVerificationError, match="snapshot partial is PARTIAL, not SUCCESS: shard lost"):
        client.verify_snapshot("partial")


def test_snapshot_names_follow_the_opensearch_rule(client: SnapshotClient, node: FakeOpenSearch) -> None:
    client.ensure_repository()
    assert snap.snapshot_name("search", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == "search_20260102_030405"
    for bad, why in (("Search", "must be lowercase"), ("_x", "must not start with '_'"), ("a b", "whitespace"), ("a,b", "','"), ("a#b", "'#'")):
        assert why in (snap.snapshot_name_problem(bad) or "")
        with pytest.raises(OpenSearchError, match="invalid snapshot name"):
            client.create_snapshot(bad)
    with pytest.raises(ValueError, match="invalid snapshot prefix 'Search'"):
        snap.snapshot_name("Search")
    # The fake refuses them the way the node does.
    with pytest.raises(OpenSearchError, match="invalid_snapshot_name_exception: \\[pd:Upper\\] Invalid snapshot name \\[Upper\\], must be lowercase"):
        client.request("PUT", "/_snapshot/pd/Upper", {})
    client.create_snapshot("twice")
    with pytest.raises(OpenSearchError, match="snapshot with the same name already exists"):
        client.create_snapshot("twice")


def test_repository_outside_path_repo_or_not_writable_is_refused(node: FakeOpenSearch, tmp_path: Path) -> None:
    outside = SnapshotClient(node.url, password=node.password, ca_file=str(os_type.ca_certificate_path("shop", ENV, SERVICE)), location=str(tmp_path / "elsewhere"))
    with pytest.raises(OpenSearchError, match=r"doesn't match any of the locations specified by path.repo"):
        outside.ensure_repository()


def _cli(node: FakeOpenSearch, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    out = io.StringIO()
    common = [
        "--url",
        node.url,
        "--auth-file",
        str(password_path("shop", ENV, SERVICE)),
        "--ca-file",
        str(os_type.ca_certificate_path("shop", ENV, SERVICE)),
        "--location",
        str(tmp_path / "snapshots"),
    ]
    err = io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        code = snap.main([args[0], *common, *args[1:]], out=out)
    return code, out.getvalue(), err.getvalue()


def test_cli_backup_creates_verifies_and_applies_retention(node: FakeOpenSearch, tmp_path: Path) -> None:
    seed(node)
    node.put_doc(".plugins-ml-config", "1", {"a": 1})  # a system index: not counted, still snapshotted
    now = time.time()
    client = SnapshotClient(node.url, password=node.password, ca_file=str(os_type.ca_certificate_path("shop", ENV, SERVICE)), location=str(tmp_path / "snapshots"))
    client.ensure_repository()
    node.clock = lambda: now - 10 * 86400
    for name in ("search_20250101_040000", "search_logs_20250101_040000", "manual"):
        client.create_snapshot(name)
    node.clock = lambda: now - 2 * 86400
    client.create_snapshot("search_20250108_040000")
    node.clock = time.time
    code, out, err = _cli(node, tmp_path, "backup", "--prefix", SERVICE, "--retention-days", "7")
    assert code == 0, err
    lines = out.splitlines()
    name = re.search(r"snapshot (search_\d{8}_\d{6}): SUCCESS", out).group(1)  # type: ignore[union-attr]
    assert lines[0] == f"repository pd: present (fs, {tmp_path / 'snapshots'})"
    assert lines[1] == "indices: 2 open"
    assert lines[3] == f"verified {name}: 3 indices, 3/3 shards"
    assert lines[4] == "retention 7 days: search_20250101_040000" and lines[-1] == "done"
    # Only this prefix's old snapshots go: never another prefix's, a hand-made one, or a recent one.
    left = {s["snapshot"] for s in client.list_snapshots()}
    assert left == {"search_logs_20250101_040000", "manual", "search_20250108_040000", name}
    assert node.password not in out + err


def test_cli_backup_fails_clearly(node: FakeOpenSearch, tmp_path: Path) -> None:
    seed(node)
    node.fail_next_snapshot("FAILED", "disk full")
    code, out, err = _cli(node, tmp_path, "backup", "--prefix", SERVICE, "--retention-days", "7")
    assert code == 1
    assert re.fullmatch(r"error: backup failed: snapshot search_\d{8}_\d{6} is FAILED, not SUCCESS: disk full\n", err)
    assert "retention" not in out and "done" not in out
    code, _, err = _cli(node, tmp_path, "backup", "--prefix", "Search", "--retention-days", "7")
    assert code == 1 and "invalid snapshot prefix 'Search'" in err


def test_a_failed_restore_opens_the_closed_indices_again(client: SnapshotClient, node: FakeOpenSearch, tmp_path: Path) -> None:
    seed(node)
    client.ensure_repository()
    client.create_snapshot("before")
    client.request("PUT", "/products/_doc/0", {"name": "changed"})
    # The snapshot's data is lost on the repository's disk: OpenSearch fails the restore.
    shutil.rmtree(tmp_path / "snapshots" / "fake-snapshots" / "before" / "indices")
    with pytest.raises(OpenSearchError, match=r"failed to read index .*opened again") as caught:
        client.restore_snapshot("before", ["products"])
    assert "still closed" not in str(caught.value)
    # the index serves its current data, not closed
    assert client.request("GET", "/products/_doc/0")[1]["_source"] == {"name": "changed"}
    assert ("POST", "/products/_open") in node.requests


def test_cli_list_and_restore(node: FakeOpenSearch, tmp_path: Path) -> None:
    seed(node)
    assert _cli(node, tmp_path, "backup", "--prefix", SERVICE, "--retention-days", "7")[0] == 0
    code, out, _ = _cli(node, tmp_path, "list")
    name = out.split()[0]
    assert code == 0 and out.startswith(f"{name} SUCCESS orders,products")
    node.put_doc("products", "0", {"name": "changed"})
    code, out, err = _cli(node, tmp_path, "restore", "--snapshot", name, "--indices", "products")
    assert code == 0, err
    assert out.splitlines()[0] == f"restored {name}: products (1/1 shards)"
    assert node.indices["products"].docs["0"] == {"name": "p0"} and node.indices["products"].open


def test_the_client_runs_as_a_script_on_the_standard_library_alone(node: FakeOpenSearch, tmp_path: Path) -> None:
    import sys

    seed(node)
    script = Path(snap.__file__)
    # -I -S: no site-packages, no environment, no current directory: the standard library only.
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(script),
            "backup",
            "--url",
            node.url,
            "--auth-file",
            str(password_path("shop", ENV, SERVICE)),
            "--ca-file",
            str(os_type.ca_certificate_path("shop", ENV, SERVICE)),
            "--location",
            str(tmp_path / "snapshots"),
            "--repo",
            "pd",
            "--prefix",
            SERVICE,
            "--retention-days",
            "7",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "done" and node.password not in done.stdout + done.stderr
    missing = subprocess.run([sys.executable, "-I", "-S", str(script), "list", "--url", node.url, "--auth-file", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and missing.stderr.startswith("error: list failed: [Errno 2] No such file or directory")


# --- the fake alone ----------------------------------------------------------------------------


def _raw(node: FakeOpenSearch, method: str, path: str, body: Any = None, password: str | None = None) -> tuple[int, Any]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=5)
    token = base64.b64encode(f"admin:{node.password if password is None else password}".encode()).decode()
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    raw = response.read().decode()
    conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def test_fake_documents_and_error_shapes(tmp_path: Path) -> None:
    with FakeOpenSearch(password="pw") as node:
        assert _raw(node, "GET", "/", password="bad") == (401, "Unauthorized")
        status, created = _raw(node, "PUT", "/idx/_doc/1", {"a": 1})
        assert status == 201 and created["result"] == "created" and created["_version"] == 1
        assert _raw(node, "PUT", "/idx/_doc/1", {"a": 2})[1]["result"] == "updated"
        assert _raw(node, "GET", "/idx/_doc/1")[1]["_source"] == {"a": 2}
        assert _raw(node, "GET", "/idx/_doc/2") == (404, {"_index": "idx", "_id": "2", "found": False})
        status, missing = _raw(node, "GET", "/nope/_doc/1")
        assert status == 404 and missing["error"]["type"] == "index_not_found_exception" and missing["error"]["root_cause"][0]["reason"] == "no such index [nope]"
        assert _raw(node, "POST", "/idx/_close")[1]["indices"] == {"idx": {"closed": True}}
        status, closed = _raw(node, "GET", "/idx/_doc/1")
        assert status == 400 and closed["error"]["type"] == "index_closed_exception"
        assert _raw(node, "GET", "/_cat/indices?format=json")[1][0]["status"] == "close"
        assert _raw(node, "GET", "/_nothing") == (400, {"error": "no handler found for uri [/_nothing] and method [GET]", "status": 400})
        status, repo = _raw(node, "GET", "/_snapshot/pd")
        assert status == 404 and repo["error"]["reason"] == "[pd] missing"
        assert _raw(node, "DELETE", "/idx") == (200, {"acknowledged": True})


def test_fake_account_api_changes_the_password() -> None:
    with FakeOpenSearch(password="old-password") as node:
        assert _raw(node, "PUT", "/_plugins/_security/api/account", {"current_password": "wrong", "password": "new-password"}) == (
            400,
            {"status": "BAD_REQUEST", "message": "Could not validate your current password."},
        )
        assert _raw(node, "PUT", "/_plugins/_security/api/account", {"current_password": "old-password", "password": "new-password"}) == (200, {"status": "OK", "message": "'admin' updated."})
        assert _raw(node, "GET", "/", password="old-password")[0] == 401
        assert _raw(node, "GET", "/", password="new-password")[0] == 200
        node.reserved = True
        assert _raw(node, "PUT", "/_opendistro/_security/api/account", {"current_password": "new-password", "password": "x" * 12}) == (
            403,
            {"status": "FORBIDDEN", "message": "Resource 'admin' is read-only."},
        )


# --- rotation ----------------------------------------------------------------------------------


class NodeContainer:
    """The node's container as the rotation reaches it: ``exec`` runs the command here, with
    the container's ``https://localhost:9200`` standing for ``url`` (the fake node) and the CA
    path inside the container for the project's CA file, so the real curl does the request."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.calls: list[tuple[str, list[str], str]] = []
        #: ``before(argv, stdin)``: a CommandResult to answer instead of running (a lost answer).
        self.before: Any = None

    def exec(self, name: str, argv: Any, *, stdin: bytes | None = None, user: str | None = None, timeout: float = 60.0) -> Any:
        from projectdeployer.core.provider import CommandResult

        text = (stdin or b"").decode()
        self.calls.append((name, list(argv), text))
        if self.before is not None and (answer := self.before(list(argv), text)) is not None:
            return answer
        assert self.url is not None
        text = text.replace("https://localhost:9200", self.url).replace(f"{os_type.TLS_DIR}/root-ca.pem", str(os_type.ca_certificate_path("shop", ENV, SERVICE)))
        done = subprocess.run(list(argv), input=text, capture_output=True, text=True, timeout=timeout)
        return CommandResult(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)


def rotator_for(project: ProjectDeployer, url: str | None, running: bool = True) -> tuple[SecretsRotator, MagicMock]:
    """A rotator whose node runs in a container reached by exec; ``url``: the fake node (with
    the address 127.0.0.1, which its certificate names too)."""
    manager = MagicMock()
    container = NodeContainer(url.replace("://localhost:", "://127.0.0.1:") if url else url)
    node = "shop_prod_search"
    environment = fake_environment(project, find_container=lambda name: placed(container, name, ports={9200: 18123}) if running and name == node else None, manager=manager)
    rotator = SecretsRotator(handing_out(environment), ENV, log=lambda line: None, lock_wait=0)
    rotator.container = container  # type: ignore[attr-defined]
    return rotator, manager


def test_rotation_changes_the_running_node_first_then_the_file(project: ProjectDeployer, node: FakeOpenSearch) -> None:
    current = password_path("shop", ENV, SERVICE)
    old = current.read_text()
    seen: list[str] = []
    original = FakeOpenSearch._account

    def spy(self: FakeOpenSearch, method: str, body: Any) -> Any:
        seen.append(current.read_text())  # the file while the node is asked
        return original(self, method, body)

    node._account = spy.__get__(node)  # type: ignore[method-assign]
    rotator, manager = rotator_for(project, node.url)
    backup = rotator.rotate_opensearch_password(SERVICE)
    new = current.read_text()
    assert new != old and len(new) == 32 and new.isalnum() and _mode(current) == 0o600
    assert node.password == new and seen == [old]
    assert backup.read_text() == old and re.fullmatch(r"search_password\.\d{8}_\d{6}", backup.name)
    assert ("PUT", "/_plugins/_security/api/account") in node.requests
    manager.hook.secret_rotated.assert_called_once_with(project="shop", env=ENV, service=SERVICE)
    assert not list(current.parent.glob(".*"))
    # The next deploy's internal_users.yml carries the new password's hash.
    users = parts_of(project).secret_files["security-internal_users.yml"]
    assert bcrypt.checkpw(new.encode(), re.search(r'hash: "([^"]+)"', users).group(1).encode())  # type: ignore[union-attr]


def test_the_rotator_reaches_the_node_inside_its_container(project: ProjectDeployer, node: FakeOpenSearch) -> None:
    # Not over this machine's loopback to a published port: by exec in the node's container
    # (wherever it runs), curl to its own localhost, verified against the node's CA.
    rotator, _ = rotator_for(project, node.url)
    old = password_path("shop", ENV, SERVICE).read_text()
    rotator.rotate_opensearch_password(SERVICE)
    new = password_path("shop", ENV, SERVICE).read_text()
    [(name, argv, config)] = rotator.container.calls  # type: ignore[attr-defined]
    assert name == "shop_prod_search" and argv == ["curl", "--config", "-"]
    assert 'url = "https://localhost:9200/_plugins/_security/api/account"' in config
    assert f'cacert = "{os_type.TLS_DIR}/root-ca.pem"' in config and 'request = "PUT"' in config
    assert old in config and new in config  # both passwords on stdin only
    assert not any(old in part or new in part for part in argv)


def _unchanged(current: Path, old: str, manager: MagicMock) -> None:
    assert current.read_text() == old
    backups = current.parent / "backups"
    assert not backups.exists() or not list(backups.iterdir())
    assert not list(current.parent.glob(".*"))
    manager.hook.secret_rotated.assert_not_called()


def test_a_refusing_node_changes_nothing(project: ProjectDeployer, node: FakeOpenSearch) -> None:
    current = password_path("shop", ENV, SERVICE)
    old = current.read_text()
    node.reserved = True
    rotator, manager = rotator_for(project, node.url)
    with pytest.raises(RotationError, match=r"search: OpenSearch refused the new password \(nothing changed\): .*Resource 'admin' is read-only"):
        rotator.rotate_opensearch_password(SERVICE)
    _unchanged(current, old, manager)
    assert node.password == old


def test_a_node_with_another_password_changes_nothing(project: ProjectDeployer, node: FakeOpenSearch) -> None:
    current = password_path("shop", ENV, SERVICE)
    old = current.read_text()
    node.password = "somebody-else-changed-it"
    rotator, manager = rotator_for(project, node.url)
    with pytest.raises(RotationError, match="authentication failed for user 'admin'") as caught:
        rotator.rotate_opensearch_password(SERVICE)
    assert old not in str(caught.value)
    _unchanged(current, old, manager)


def test_a_lost_answer_after_the_change_still_counts(project: ProjectDeployer, node: FakeOpenSearch) -> None:
    from projectdeployer.core.provider import CommandResult

    current = password_path("shop", ENV, SERVICE)

    def lost(argv: list[str], config: str) -> Any:
        if 'request = "PUT"' not in config:
            return None  # the check afterwards reaches the node
        node.password = re.search(r'\\"password\\": \\"(\w+)\\"', config).group(1)  # type: ignore[union-attr]  # the node made the change ...
        return CommandResult(exit_code=52, stdout="", stderr="curl: (52) Empty reply from server")  # ... its answer never came

    rotator, _ = rotator_for(project, node.url)
    rotator.container.before = lost  # type: ignore[attr-defined]
    rotator.rotate_opensearch_password(SERVICE)
    assert current.read_text() == node.password


def test_an_unreachable_or_undeployed_node_changes_nothing(project: ProjectDeployer, pd_home: Path) -> None:
    current = password_path("shop", ENV, SERVICE)
    parts_of(project)
    old = current.read_text()
    rotator, manager = rotator_for(project, None, running=False)
    with pytest.raises(RotationError, match="search is not running in shop/prod: deploy it first"):
        rotator.rotate_opensearch_password(SERVICE)
    rotator, manager = rotator_for(project, "https://127.0.0.1:1")
    with pytest.raises(RotationError, match=r"OpenSearch refused the new password \(nothing changed\): PUT .*account"):
        rotator.rotate_opensearch_password(SERVICE)
    _unchanged(current, old, manager)
    os_type.ca_certificate_path("shop", ENV, SERVICE).unlink()
    with pytest.raises(RotationError, match=r"no CA certificate at .*root-ca.pem"):
        rotator.rotate_opensearch_password(SERVICE)


def test_an_old_password_with_quotes_and_backslashes_reaches_the_node_intact(project: ProjectDeployer, node: FakeOpenSearch) -> None:
    # The curl config quotes every value: a hand-set old password with " and \\ still authenticates.
    odd = 'pa"ss\\wo rd'
    password_path("shop", ENV, SERVICE).write_text(odd)
    node.password = odd
    rotator, _ = rotator_for(project, node.url)
    rotator.rotate_opensearch_password(SERVICE)
    assert node.password == password_path("shop", ENV, SERVICE).read_text() != odd


def test_rotate_all_includes_opensearch(project: ProjectDeployer, node: FakeOpenSearch) -> None:
    rotator, _ = rotator_for(project, node.url)
    done = rotator.rotate_all_secrets()
    assert set(done) == {SERVICE}
    assert node.password == password_path("shop", ENV, SERVICE).read_text()


def _run_job(job: Any, tmp_path: Path, node: FakeOpenSearch, backups: Path) -> subprocess.CompletedProcess[str]:
    """A backup job's exact command, run here: its private files in a temp dir instead of
    /run/secrets/pd, ``backups`` for /backups, the fake's URL and repository directory."""
    secrets = tmp_path / "pd-secrets"
    secrets.mkdir(exist_ok=True)
    for name, content in job.secret_files.items():
        (secrets / name).write_text(content)
    argv = [*job.command[:4], *(a.replace("/run/secrets/pd", str(secrets)) for a in job.command[4:])]
    argv[argv.index("--url") + 1] = node.url
    argv[argv.index("--location") + 1] = str(tmp_path / "snapshots")
    if "--manifest-dir" in argv:
        argv[argv.index("--manifest-dir") + 1] = str(backups)
    assert argv[0] == "python3"
    return subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, timeout=60)


def test_the_backup_method_snapshots_through_the_api_and_writes_a_verified_manifest(project: ProjectDeployer, node: FakeOpenSearch, tmp_path: Path) -> None:
    from projectdeployer.backups.store import read_backups
    from projectdeployer.core.backups import BackupPolicy, BackupTarget
    from projectdeployer.providers.local import LocalServer

    spec = project.project.services[SERVICE]
    target = BackupTarget(
        project=project.project,
        env=ENV,
        service=spec,
        server=LocalServer(),
        runtime=None,  # type: ignore[arg-type]
        image="opensearchproject/opensearch:2",
        host=f"shop_{ENV}_{SERVICE}",
        port=9200,
        policy=BackupPolicy(enabled=True, schedule="0 4 * * *", retention_days=7),
        python_image="pd-test/python:3.11",
    )
    method = load_plugins().hook.backup_method(service=spec)  # as the backup jobs ask for it
    assert isinstance(method, os_type.OpenSearchBackup)
    job = method.backup_job(target)
    password = password_path("shop", ENV, SERVICE).read_text()
    # It runs on the python image; the password only as a private file.
    assert job.image == "python" and job.command[:3] == ("python3", "-I", "-c")
    assert not any(password in part for part in job.command) and job.secret_files["password"] == password
    assert job.secret_files["root-ca.pem"] == os_type.ca_certificate_path("shop", ENV, SERVICE).read_text()
    seed(node)
    backups = tmp_path / "backups"
    backups.mkdir()
    done = _run_job(job, tmp_path, node, backups)
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr
    found = read_backups(LocalServer(), str(backups), SERVICE, "snapshot")
    assert len(found) == 1 and found[0].verified
    manifest = json.loads((backups / found[0].file).read_text())
    assert manifest["state"] == "SUCCESS" and set(manifest["indices"]) >= {"products", "orders"}
    # verify answers 0 for the snapshot, 1 for one that does not exist
    assert _run_job(method.verify_job(target, found[0].file), tmp_path, node, backups).returncode == 0
    assert _run_job(method.verify_job(target, f"{SERVICE}_20200101_000000.snapshot"), tmp_path, node, backups).returncode == 1
    # a failed snapshot leaves no manifest, so it is never a backup
    node.fail_next_snapshot()
    failed = _run_job(job, tmp_path, node, backups)
    assert failed.returncode == 1 and "failed" in failed.stderr
    assert len(read_backups(LocalServer(), str(backups), SERVICE, "snapshot")) == 1
