"""The nginx sidecar's configuration (pure rendering, checked by the real ``nginx -t``) and the
self-signed certificates of the ``tls_selfsigned`` plugin. No Docker here: the sidecar itself
runs in tests/docker/test_sidecar.py."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from projectdeployer.core.routing import Backend, Route
from projectdeployer.default_plugins.nginx.plugin import (
    ACME_ROOT,
    ACTIVE_CONF,
    RoutingError,
    check_domain,
    render_active,
    render_config,
    render_main_config,
)
from projectdeployer.default_plugins.tls_selfsigned import (
    CertificateError,
    certificate_files,
    make_self_signed,
    obtain_certificate,
    self_signed_certificate,
)

pytestmark = pytest.mark.unit

# /usr/sbin is not on every user's PATH, and that is where Debian puts nginx.
NGINX_BIN: str = shutil.which("nginx") or next((p for p in ["/usr/sbin/nginx", "/usr/local/sbin/nginx"] if os.access(p, os.X_OK)), "")
# `make test` installs nginx (make system-deps); under CI a missing nginx is a failure, not a skip.
needs_nginx = pytest.mark.skipif(not NGINX_BIN and not os.environ.get("CI"), reason="nginx is not installed (apt-get install nginx-light)")


def http_route(service: str = "api", port: int = 5123, *hosts: tuple[str, int], domain: str | None = None) -> Route:
    backends = tuple(Backend(host=h, port=p) for h, p in (hosts or (("shop-prod-api-a", 8000),)))
    return Route(service=service, internal_port=port, protocol="http", backends=backends, domain=domain)


def tcp_route(service: str = "redis", port: int = 5234, host: str = "shop-prod-redis", backend_port: int = 6379) -> Route:
    return Route(service=service, internal_port=port, protocol="tcp", backends=(Backend(host=host, port=backend_port),))


def blocks(text: str, head: str) -> list[str]:
    """The bodies of every ``head { ... }`` block (one level of nested braces)."""
    return re.findall(rf"^{re.escape(head)} \{{\n((?:.*\n)*?)\}}$", text, re.M)


# --- rendering ---------------------------------------------------------------------------------


def test_http_route_renders_upstream_and_internal_server() -> None:
    files = render_config([http_route()], {})
    assert sorted(files) == ["http/00-pd-common.conf", "http/api-5123.conf"]
    conf = files["http/api-5123.conf"]
    (upstream,) = blocks(conf, "upstream pd_http_api_5123")
    assert "    server shop-prod-api-a:8000 max_fails=1 fail_timeout=5s;" in upstream
    assert re.search(r"^\s+keepalive \d+;$", upstream, re.M)
    (server,) = blocks(conf, "server")
    assert "    listen 5123;" in server
    assert "proxy_pass http://pd_http_api_5123;" in server
    assert "listen 80" not in conf and "443" not in conf  # no domain: internal only
    assert "server_name" not in conf


def test_http_proxy_settings_for_zero_downtime() -> None:
    common = render_config([http_route()], {})["http/00-pd-common.conf"]
    lines = {line.strip() for line in common.splitlines()}
    for directive in (
        "proxy_http_version 1.1;",
        "proxy_set_header Connection $pd_connection;",  # "" unless the client upgrades
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Host $pd_host;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_next_upstream error timeout http_502 http_503;",
        "proxy_next_upstream_tries 3;",
        "proxy_buffering off;",
        "proxy_read_timeout 1h;",
    ):
        assert directive in lines, directive
    (connection_map,) = blocks(common, "map $http_upgrade $pd_connection")
    assert re.search(r"^\s+''\s+'';$", connection_map, re.M)  # no upgrade -> empty Connection
    assert "reuseport" not in common  # with reuseport a reload drops queued connections


def test_domain_route_gets_port_80_and_443_servers_and_a_default_404() -> None:
    files = render_config([http_route(domain="API.Example.com")], {"api.example.com": ("/c/api.crt", "/c/api.key")})
    conf = files["http/api-5123.conf"]
    servers = blocks(conf, "server")
    assert len(servers) == 3
    internal, plain, tls = servers
    assert "listen 5123;" in internal
    assert "listen 80;" in plain and "server_name api.example.com;" in plain
    assert f"root {ACME_ROOT};" in plain  # HTTP-01 webroot, falling back to the app
    assert "try_files $uri @pd_app;" in plain
    assert "listen 443 ssl;" in tls and "server_name api.example.com;" in tls
    assert "ssl_certificate /c/api.crt;" in tls and "ssl_certificate_key /c/api.key;" in tls
    default = files["http/99-pd-default.conf"]
    plain_default, tls_default = blocks(default, "server")
    assert "listen 80 default_server;" in plain_default and "return 404;" in plain_default
    assert "listen 443 ssl default_server;" in tls_default and "ssl_reject_handshake on;" in tls_default


def test_domain_without_certificate_is_served_on_80_only() -> None:
    files = render_config([http_route(domain="api.example.com")], {})
    assert "443" not in files["http/api-5123.conf"]
    assert "443" not in files["http/99-pd-default.conf"]
    assert "listen 80 default_server;" in files["http/99-pd-default.conf"]


def test_tcp_route_renders_a_stream_upstream() -> None:
    files = render_config([tcp_route()], {})
    assert sorted(files) == ["stream/00-pd-common.conf", "stream/redis-5234.conf"]
    conf = files["stream/redis-5234.conf"]
    (upstream,) = blocks(conf, "upstream pd_tcp_redis_5234")
    assert "server shop-prod-redis:6379" in upstream
    (server,) = blocks(conf, "server")
    assert "listen 5234;" in server and "proxy_pass pd_tcp_redis_5234;" in server
    assert "proxy_timeout" in files["stream/00-pd-common.conf"]


def test_names_are_sanitized_and_unique_per_port() -> None:
    files = render_config([http_route("my api!", 5001), http_route("my-api", 5002)], {})
    assert "http/my_api-5001.conf" in files and "http/my_api-5002.conf" in files
    assert "upstream pd_http_my_api_5001 {" in files["http/my_api-5001.conf"]
    assert "!" not in "".join(files.values())


def test_rendering_is_deterministic_and_ignores_backend_order() -> None:
    a = render_config([tcp_route(), http_route("api", 5123, ("b", 1), ("a", 2))], {})
    b = render_config([http_route("api", 5123, ("a", 2), ("b", 1), ("a", 2)), tcp_route()], {})
    assert a == b
    assert a["http/api-5123.conf"].index("server a:2") < a["http/api-5123.conf"].index("server b:1")


def test_ipv6_backend_is_bracketed() -> None:
    conf = render_config([http_route("api", 5123, ("fd00::1", 8000))], {})["http/api-5123.conf"]
    assert "server [fd00::1]:8000 " in conf


def test_no_routes_renders_nothing() -> None:
    assert render_config([], {}) == {}


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ([http_route(domain="api.example.com;\n}")], "invalid domain"),
        ([http_route(domain="api example.com")], "invalid domain"),
        ([http_route(domain="-bad.example.com")], "invalid domain"),
        ([http_route(domain="a" * 64 + ".com")], "invalid domain"),
        ([http_route(domain="x.*.example.com")], "invalid domain"),
        ([http_route("api", 5123, ("bad host", 80))], "invalid backend host 'bad host'"),
        ([http_route("api", 5123, ("x;y", 80))], "invalid backend host"),
        ([http_route("api", 5123, ("api", 0))], "backend port 0"),
        ([http_route("api", 80)], "reserved"),
        ([http_route("api", 70000)], "internal port 70000"),
        ([http_route("api", 5123), tcp_route("db", 5123)], "routes api and db both use internal port 5123"),
        ([http_route("a", 5001, domain="x.example.com"), http_route("b", 5002, domain="X.example.com")], "routes a and b both serve x.example.com"),
        ([Route(service="db", internal_port=5001, protocol="tcp", backends=(Backend(host="db", port=5432),), domain="db.example.com")], "needs an http route"),
        ([Route(service="api", internal_port=5001, protocol="http", backends=())], "route api: no backends"),
        ([Route(service="api", internal_port=5001, protocol="udp", backends=(Backend(host="a", port=1),))], "neither 'http' nor 'tcp'"),  # type: ignore[arg-type]
    ],
)
def test_invalid_routes_are_one_line_errors(routes: list[Route], message: str) -> None:
    with pytest.raises(RoutingError, match=re.escape(message)) as excinfo:
        render_config(routes, {})
    assert len(str(excinfo.value).splitlines()) == 1


def test_check_domain() -> None:
    assert check_domain("API.example.COM") == "api.example.com"
    assert check_domain("*.example.com") == "*.example.com"
    assert check_domain("localhost") == "localhost"
    for bad in ("", "a..b", "a_b.com", "exa mple.com", "*", "example.com.", "é.com"):
        with pytest.raises(RoutingError):
            check_domain(bad)


def test_main_config_and_active_file() -> None:
    tcp = render_main_config(project="shop", env="prod", has_stream=True, load_module="/usr/lib/nginx/modules/ngx_stream_module.so", kind="tcp")
    assert tcp.index("load_module /usr/lib/nginx/modules/ngx_stream_module.so;") < tcp.index("events {")
    assert "# pd-stream yes" in tcp and "# pd-proxy tcp" in tcp
    assert tcp.rstrip().endswith("include /etc/nginx/pd-tcp/active.conf;") and "pid /run/nginx-pd-tcp.pid;" in tcp
    # Old workers keep their connections unless a timeout is asked for.
    assert "worker_shutdown_timeout" not in tcp.replace("# ", "")
    assert "worker_shutdown_timeout 20s;" in render_main_config(project="shop", env="prod", has_stream=True, shutdown_timeout=20, kind="tcp")
    builtin = render_main_config(project="shop", env="prod", has_stream=True, kind="tcp")
    assert "load_module" not in builtin
    # The http proxy never loads the stream module, whatever it is given.
    http = render_main_config(project="shop", env="prod", has_stream=False, load_module="/x/ngx_stream_module.so")
    assert "load_module" not in http and "# pd-stream no" in http and "# pd-proxy http" in http
    assert http.rstrip().endswith(f"include {ACTIVE_CONF};") and "pid /run/nginx-pd.pid;" in http


def test_run_script_starts_one_master_per_proxy() -> None:
    from projectdeployer.default_plugins.nginx.render import render_run_script

    both = render_run_script(tcp=True)
    assert "nginx -c /etc/nginx/pd/nginx.conf -g 'daemon off;' &" in both
    assert "nginx -c /etc/nginx/pd-tcp/nginx.conf -g 'daemon off;' &" in both
    assert "trap stop QUIT TERM INT" in both
    only_http = render_run_script(tcp=False)
    assert "pd-tcp" not in only_http and "nginx -c /etc/nginx/pd/nginx.conf" in only_http
    # POSIX sh, what every nginx image has (dash, busybox): the shell's own syntax check.
    import subprocess

    for script in (both, only_http):
        assert subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True).returncode == 0

    active = render_active("/etc/nginx/pd/v/abc", version="abc")
    assert active.splitlines()[0] == "# pd-version abc"
    assert "include /etc/nginx/pd/v/abc/http/*.conf;" in active and "stream" not in active
    stream = render_active("/etc/nginx/pd/v/abc", version="abc", kind="tcp")
    assert "stream {" in stream and "include /etc/nginx/pd/v/abc/stream/*.conf;" in stream and "http" not in stream


# --- the real nginx -t on the http part ------------------------------------------------------


def nginx_t(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` of ``files`` (the http part) under a main config like the sidecar's."""
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    temp = "".join(f"    {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = tmp_path / "nginx.conf"
    main.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n{temp}    include {tmp_path}/http/*.conf;\n}}\n")
    return subprocess.run([NGINX_BIN, "-t", "-p", str(tmp_path), "-c", str(main), "-e", "stderr"], capture_output=True, text=True, timeout=30)


@needs_nginx
def test_rendered_http_config_passes_nginx_t(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROJECTDEPLOYER_HOME", str(tmp_path / "home"))
    self_signed_certificate("shop", "prod", "api.example.com")
    crt, key = certificate_files("shop", "prod", "api.example.com")
    routes = [
        http_route("api", 5123, ("127.0.0.1", 8000), ("127.0.0.2", 8001), domain="api.example.com"),
        http_route("web", 5124, ("127.0.0.1", 3000), domain="www.example.com"),  # no certificate
        http_route("internal", 5125, ("::1", 9000)),
    ]
    files = {name: text for name, text in render_config(routes, {"api.example.com": (str(crt), str(key))}).items() if name.startswith("http/")}
    result = nginx_t(tmp_path / "conf", files)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@needs_nginx
def test_nginx_t_names_the_route_that_breaks(tmp_path: Path) -> None:
    files = render_config([http_route("api", 5123, ("no-such-host.invalid", 8000))], {})
    result = nginx_t(tmp_path / "conf", files)
    assert result.returncode != 0
    assert 'host not found in upstream "no-such-host.invalid:8000"' in result.stderr
    assert "api-5123.conf" in result.stderr


# --- self-signed certificates --------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "pd-home"
    monkeypatch.setenv("PROJECTDEPLOYER_HOME", str(path))
    return path


def load(cert_pem: str):  # type: ignore[no-untyped-def]
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert_pem.encode())


def sans(cert_pem: str) -> list[str]:
    from cryptography import x509

    return load(cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_self_signed_certificate_is_made_and_cached_privately(home: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    cert, key = self_signed_certificate("shop", "prod", "api.example.com")
    crt_path, key_path = certificate_files("shop", "prod", "api.example.com")
    assert crt_path == home / "shop" / "prod" / "secrets" / "certs" / "api.example.com.crt"
    assert crt_path.read_text() == cert and key_path.read_text() == key
    for path in (crt_path, key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for directory in (crt_path.parent, crt_path.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700

    parsed = load(cert)
    assert sans(cert) == ["api.example.com"]
    assert isinstance(parsed.public_key(), ec.EllipticCurvePublicKey) and parsed.public_key().curve.name == "secp256r1"
    lifetime = parsed.not_valid_after_utc - parsed.not_valid_before_utc
    assert dt.timedelta(days=364) < lifetime < dt.timedelta(days=366)
    assert parsed.issuer == parsed.subject  # self-signed

    # Cached: the second call returns the same files' content, nothing is made again.
    mtime = crt_path.stat().st_mtime_ns
    assert self_signed_certificate("shop", "prod", "api.example.com") == (cert, key)
    assert crt_path.stat().st_mtime_ns == mtime


def test_self_signed_certificate_is_renewed_30_days_before_expiry(home: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    old, _ = self_signed_certificate("shop", "prod", "api.example.com", now=now - dt.timedelta(days=334))  # 31 days left
    assert self_signed_certificate("shop", "prod", "api.example.com", now=now)[0] == old
    new, _ = self_signed_certificate("shop", "prod", "api.example.com", now=now + dt.timedelta(days=2))  # 29 days left
    assert new != old and load(new).not_valid_after_utc > now + dt.timedelta(days=360)


def test_self_signed_certificate_is_made_again_when_missing_or_for_another_domain(home: Path) -> None:
    cert, _ = self_signed_certificate("shop", "prod", "api.example.com")
    crt_path, key_path = certificate_files("shop", "prod", "api.example.com")
    key_path.unlink()
    again, key = self_signed_certificate("shop", "prod", "api.example.com")
    assert again != cert and key_path.read_text() == key

    other_cert, other_key = make_self_signed("www.example.com")
    crt_path.write_text(other_cert)
    key_path.write_text(other_key)
    fixed, _ = self_signed_certificate("shop", "prod", "api.example.com")
    assert sans(fixed) == ["api.example.com"]

    # A certificate that does not match its key is not used either.
    mismatched = make_self_signed("api.example.com")[0]
    crt_path.write_text(mismatched)
    cert2, key2 = self_signed_certificate("shop", "prod", "api.example.com")
    assert cert2 != mismatched
    assert load(cert2).public_key().public_numbers() == _private(key2).public_key().public_numbers()


def _private(key_pem: str):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(key_pem.encode(), password=None)


def test_wildcard_and_long_domains(home: Path) -> None:
    cert, _ = self_signed_certificate("shop", "prod", "*.example.com")
    assert sans(cert) == ["*.example.com"]
    assert certificate_files("shop", "prod", "*.example.com")[0].name == "_.example.com.crt"
    long_domain = ".".join(["a" * 60] * 3) + ".example.com"  # longer than a common name may be
    assert sans(self_signed_certificate("shop", "prod", long_domain)[0]) == [long_domain]


def test_invalid_domain_is_one_line_error(home: Path) -> None:
    with pytest.raises(CertificateError, match="invalid domain 'bad domain'"):
        self_signed_certificate("shop", "prod", "bad domain")
    assert not home.exists()


def test_obtain_certificate_hook_answers_self_signed(home: Path) -> None:
    pair = obtain_certificate(project="shop", env="dev", domain="app.localhost", servers=[])
    assert pair == self_signed_certificate("shop", "dev", "app.localhost")


def test_plugin_modules_import_no_heavy_packages() -> None:
    code = "import sys, projectdeployer.default_plugins.nginx.plugin, projectdeployer.default_plugins.tls_selfsigned\nprint(sorted({m.split('.')[0] for m in sys.modules} & {'docker', 'cryptography', 'jinja2'}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


# --- the hook's sidecar: image and domain ports from the project ---------------------------------


class _Server:
    """Just what ``sidecar_for`` reads from a server."""

    def __init__(self, bind_address: str) -> None:
        self.bind_address = bind_address

    def docker(self) -> object:
        return object()  # the sidecar talks to the engine only when used


def _project(services: dict[str, dict[str, object]], **environments: dict[str, object]):  # type: ignore[no-untyped-def]
    from projectdeployer.core.registry import build_registry
    from projectdeployer.plugins import load_plugins, make_plugin_manager
    from projectdeployer.project.file import build_project

    data = {"project": {"name": "shop"}, "images": {"nginx": "pd-test/nginx:1.22"}, "services": services, "environments": environments}
    return build_project(data, source="shop.toml", registry=build_registry(load_plugins(make_plugin_manager(), env={})))


def test_sidecar_for_publishes_domain_ports_only_when_there_are_domains() -> None:
    from projectdeployer.default_plugins.nginx.plugin import sidecar_for

    web = {"api": {"type": "python", "port": 8000, "domain": "api.example.com"}}
    local = sidecar_for(_Server("127.0.0.1"), _project(web), "dev")  # type: ignore[arg-type]
    assert (local.image, local.http_port, local.https_port, local.bind_address) == ("pd-test/nginx:1.22", 8080, 8443, "127.0.0.1")
    assert (local.container_name, local.network_name) == ("shop_dev_nginx", "shop_dev_network")
    remote = sidecar_for(_Server("10.10.0.5"), _project(web), "prod")  # type: ignore[arg-type]
    assert (remote.http_port, remote.https_port, remote.bind_address) == (80, 443, "0.0.0.0")
    explicit = sidecar_for(_Server("127.0.0.1"), _project(web, dev={"http_port": 9080, "https_port": 9443}), "dev")  # type: ignore[arg-type]
    assert (explicit.http_port, explicit.https_port) == (9080, 9443)
    internal = sidecar_for(_Server("127.0.0.1"), _project({"db": {"type": "redis"}}), "dev")  # type: ignore[arg-type]
    assert (internal.http_port, internal.https_port) == (None, None)
