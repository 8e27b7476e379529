"""The fake Cloudflare, driven through Cloudflare's own SDK (``cloudflare`` 5.x, with strict
response validation) over real HTTP, and its data plane in front of real local origins."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cloudflare
import pytest

from projectdeployer.core.poll import wait_until
from projectdeployer.rehearse.fake_cloudflare import REGION_HEADER, FakeCloudflare

pytestmark = pytest.mark.unit

TOKEN = "rehearsal-token"


@pytest.fixture
def fake() -> Iterator[FakeCloudflare]:
    with FakeCloudflare(["example.com"], tokens={TOKEN}) as served:
        yield served


def sdk(fake: FakeCloudflare, token: str = TOKEN) -> cloudflare.Cloudflare:
    return cloudflare.Cloudflare(api_token=token, base_url=fake.url, max_retries=0, _strict_response_validation=True)


def zone_id(fake: FakeCloudflare) -> str:
    return fake.dns.find_zones("example.com")[0].id


def control(fake: FakeCloudflare, path: str, body: dict[str, Any] | None = None) -> Any:
    base = fake.url.removesuffix("/client/v4")
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(f"{base}/_fake/{path}", data=data, method="POST" if data else "GET"), timeout=5) as answer:
        return json.loads(answer.read())


class Origin:
    """A real local HTTP origin answering its own name (``/health``: 200 ``ok``; POST: the
    body back, streamed in chunks), startable again on the same port."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.served = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Origin:
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = b"ok" if self.path == "/health" else f"{origin.name} {self.headers.get('Host')} {self.headers.get('CF-Connecting-IP')}".encode()
                if self.path != "/health":
                    origin.served += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
                    received = b""
                    while size := int(self.rfile.readline().strip(), 16):
                        received += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                else:
                    received = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(received), 4096):
                    piece = received[start : start + 4096]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.1,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def as_origin(self) -> dict[str, Any]:
        return {"name": self.name, "address": "127.0.0.1", "port": self.port, "enabled": True, "weight": 1}


def free_port() -> int:
    """A port nothing listens on (its connections are refused)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return port


def through(fake: FakeCloudflare, host: str, region: str | None = None, *, method: str = "GET", body: bytes | None = None, chunked: bool = False) -> tuple[int, bytes]:
    """One request to the data plane for ``host`` from a client in ``region``."""
    address, port = fake.dataplane.address
    connection = http.client.HTTPConnection(address, port, timeout=10)
    headers = {"Host": host, **({REGION_HEADER: region} if region else {})}
    try:
        if chunked and body is not None:
            connection.request(method, "/", body=iter([body[i : i + 1000] for i in range(0, len(body), 1000)]), headers=headers, encode_chunked=True)
        else:
            connection.request(method, "/", body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


@pytest.fixture
def regions(fake: FakeCloudflare) -> Iterator[dict[str, Any]]:
    """Two pools of two real origins each, in WEU and ENAM, behind ``app.example.com``
    (geo steering, fallback ENAM), their monitor checking every second."""
    origins = {name: Origin(name).start() for name in ("eu-1", "eu-2", "us-1", "us-2")}
    cf = sdk(fake)
    monitor = cf.load_balancers.monitors.create(account_id=fake.account_id, type="http", path="/health", expected_codes="2xx", interval=1, retries=1, load_balancer_monitor_timeout=1)
    pools = {
        region: cf.load_balancers.pools.create(account_id=fake.account_id, name=region.lower(), origins=[origins[f"{prefix}-{i}"].as_origin() for i in (1, 2)], monitor=monitor.id)
        for region, prefix in (("WEU", "eu"), ("ENAM", "us"))
    }
    balancer = cf.load_balancers.create(
        zone_id=zone_id(fake),
        name="app.example.com",
        default_pools=[pools["ENAM"].id, pools["WEU"].id],
        fallback_pool=pools["ENAM"].id,
        steering_policy="geo",
        region_pools={region: [pool.id] for region, pool in pools.items()},
        proxied=True,
    )
    yield {"cf": cf, "origins": origins, "pools": pools, "monitor": monitor, "balancer": balancer}
    for origin in origins.values():
        origin.stop()


def test_zones_carry_every_field_the_sdk_requires(fake: FakeCloudflare) -> None:
    cf = sdk(fake)
    fake.add_zone("example.org")
    assert sorted(z.name for z in cf.zones.list()) == ["example.com", "example.org"]
    (zone,) = cf.zones.list(name="example.com")
    assert zone.account.id == fake.account_id and zone.status == "active" and zone.name_servers
    assert cf.zones.get(zone_id=zone.id).name == "example.com"
    assert list(cf.zones.list(name="example.net")) == []


def test_dns_records_are_created_read_replaced_edited_and_deleted(fake: FakeCloudflare) -> None:
    cf, zone = sdk(fake), zone_id(fake)
    first = cf.dns.records.create(zone_id=zone, type="A", name="app.example.com", content="192.0.2.1", ttl=60)
    second = cf.dns.records.create(zone_id=zone, type="A", name="App.Example.com.", content="192.0.2.2", ttl=1, proxied=True)
    assert (second.name, second.ttl, second.proxied, second.proxiable) == ("app.example.com", 1, True, True)
    with pytest.raises(cloudflare.BadRequestError) as duplicate:
        cf.dns.records.create(zone_id=zone, type="A", name="app.example.com", content="192.0.2.1", ttl=60)
    assert duplicate.value.body["errors"][0]["code"] == 81058 and duplicate.value.body["success"] is False
    v6 = cf.dns.records.create(zone_id=zone, type="AAAA", name="app.example.com", content="2001:db8:0::1", ttl=300)
    assert v6.content == "2001:db8::1"
    with pytest.raises(cloudflare.BadRequestError) as conflict:
        cf.dns.records.create(zone_id=zone, type="CNAME", name="app.example.com", content="lb.example.net", ttl=1)
    assert conflict.value.body["errors"][0]["code"] == 81053
    alias = cf.dns.records.create(zone_id=zone, type="CNAME", name="www.example.com", content="app.example.com", ttl=1)
    assert alias.type == "CNAME" and alias.content == "app.example.com"

    got = cf.dns.records.get(first.id, zone_id=zone)
    assert got.content == "192.0.2.1" and got.meta is not None
    replaced = cf.dns.records.update(first.id, zone_id=zone, type="A", name="app.example.com", content="192.0.2.3", ttl=120)
    assert (replaced.content, replaced.ttl) == ("192.0.2.3", 120)
    edited = cf.dns.records.edit(first.id, zone_id=zone, type="A", name="app.example.com", ttl=300)
    assert (edited.content, edited.ttl) == ("192.0.2.3", 300)  # PATCH without content keeps it
    assert sorted(r.content for r in cf.dns.records.list(zone_id=zone, type="A", name={"exact": "app.example.com"})) == ["192.0.2.2", "192.0.2.3"]

    assert cf.dns.records.delete(first.id, zone_id=zone).id == first.id
    with pytest.raises(cloudflare.NotFoundError) as gone:
        cf.dns.records.get(first.id, zone_id=zone)
    assert gone.value.body["errors"][0]["code"] == 81044
    txt = cf.dns.records.create(zone_id=zone, type="TXT", name="note.example.com", content='"hello"', ttl=1)
    assert txt.type == "TXT" and txt.content == '"hello"'


def test_record_names_and_contents_are_checked(fake: FakeCloudflare) -> None:
    cf, zone = sdk(fake), zone_id(fake)
    for name in ("app.example.org", "app", "example.com.evil.test"):
        with pytest.raises(cloudflare.BadRequestError, match="inside the zone"):
            cf.dns.records.create(zone_id=zone, type="A", name=name, content="192.0.2.1", ttl=1)
    with pytest.raises(cloudflare.BadRequestError) as bad_ip:
        cf.dns.records.create(zone_id=zone, type="A", name="app.example.com", content="2001:db8::1", ttl=1)
    assert bad_ip.value.body["errors"][0]["code"] == 9005
    with pytest.raises(cloudflare.BadRequestError) as proxied_txt:
        cf.dns.records.create(zone_id=zone, type="TXT", name="t.example.com", content="x", ttl=1, proxied=True)
    assert proxied_txt.value.body["errors"][0]["code"] == 9004


def test_pages_past_the_end_are_empty_and_auto_pagination_ends(fake: FakeCloudflare) -> None:
    cf, zone = sdk(fake), zone_id(fake)
    for i in range(7):
        cf.dns.records.create(zone_id=zone, type="A", name="many.example.com", content=f"192.0.2.{i + 1}", ttl=1)
    page = cf.dns.records.list(zone_id=zone, per_page=5, page=2)
    assert len(page.result) == 2
    assert page.result_info is not None and (page.result_info.page, page.result_info.per_page, page.result_info.count, page.result_info.total_count) == (2, 5, 2, 7)
    assert cf.dns.records.list(zone_id=zone, per_page=5, page=3).result == []
    seen = []
    for record in cf.dns.records.list(zone_id=zone, per_page=5):
        seen.append(record.content)
        assert len(seen) <= 7, "auto-pagination did not stop"
    assert len(seen) == 7
    asked = [r["query"] for r in control(fake, "requests")["requests"] if r["path"].endswith("/dns_records") and r["method"] == "GET"]
    assert asked[-3:] == ["per_page=5", "per_page=5&page=2", "per_page=5&page=3"]


def test_errors_are_the_sdks_exceptions_with_cloudflares_envelope(fake: FakeCloudflare) -> None:
    zone = zone_id(fake)
    with pytest.raises(cloudflare.AuthenticationError) as unauthenticated:
        list(sdk(fake, token="wrong").zones.list())
    assert unauthenticated.value.body == {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}], "messages": [], "result": None}
    with pytest.raises(cloudflare.NotFoundError):
        sdk(fake).zones.get(zone_id="0" * 32)
    with pytest.raises(cloudflare.UnprocessableEntityError):
        sdk(fake).dns.records.create(zone_id=zone, type="A", name="app.example.com", content="192.0.2.1", ttl=1, extra_body={"proxied": "yes"})
    with pytest.raises(cloudflare.PermissionDeniedError) as other_account:
        list(sdk(fake).load_balancers.pools.list(account_id="f" * 32))
    assert other_account.value.body["errors"][0]["code"] == 9109
    unknown = urllib.request.Request(f"{fake.url}/no/such/route", headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as no_route:
        urllib.request.urlopen(unknown, timeout=5)
    assert no_route.value.code == 404 and json.loads(no_route.value.read())["errors"] == [{"code": 7000, "message": "No route for that URI"}]
    control(fake, "rate_limit", {"requests": 1, "retry_after": 7})
    with pytest.raises(cloudflare.RateLimitError) as limited:
        list(sdk(fake).zones.list())
    assert limited.value.response.headers["Retry-After"] == "7" and limited.value.body["errors"][0]["code"] == 971
    assert len(list(sdk(fake).zones.list())) == 1  # the storm is over


def test_monitors_pools_and_load_balancers_are_kept(fake: FakeCloudflare) -> None:
    cf, zone, account = sdk(fake), zone_id(fake), fake.account_id
    monitor = cf.load_balancers.monitors.create(account_id=account, type="https", path="/health", expected_codes="2xx", interval=60, retries=2, header={"Host": ["app.example.com"]})
    assert (monitor.type, monitor.interval, monitor.header) == ("https", 60, {"Host": ["app.example.com"]})
    assert cf.load_balancers.monitors.edit(monitor.id, account_id=account, path="/ready").path == "/ready"
    assert cf.load_balancers.monitors.update(monitor.id, account_id=account, type="http", expected_codes="200").path == "/"  # PUT resets
    origin = {"name": "web-1", "address": "192.0.2.10", "enabled": True, "weight": 1}
    pool = cf.load_balancers.pools.create(account_id=account, name="lon1", origins=[origin], monitor=monitor.id, latitude=51.5, longitude=-0.1)
    assert pool.healthy is True and pool.origins is not None and pool.origins[0].address == "192.0.2.10"  # type: ignore[attr-defined]
    other = cf.load_balancers.pools.create(account_id=account, name="nyc3", origins=[{**origin, "address": "198.51.100.10"}])
    edited = cf.load_balancers.pools.edit(pool.id, account_id=account, origins=[origin, {**origin, "name": "web-2", "address": "192.0.2.11"}])
    assert [o.name for o in edited.origins or []] == ["web-1", "web-2"] and edited.monitor == monitor.id
    assert cf.load_balancers.pools.update(other.id, account_id=account, name="nyc3", origins=[origin], enabled=False).enabled is False
    assert {p.name for p in cf.load_balancers.pools.list(account_id=account)} == {"lon1", "nyc3"}

    balancer = cf.load_balancers.create(
        zone_id=zone, name="app.example.com", default_pools=[pool.id, other.id], fallback_pool=other.id, steering_policy="geo", region_pools={"WEU": [pool.id]}, proxied=True, ttl=30
    )
    assert (balancer.steering_policy, balancer.region_pools, balancer.proxied) == ("geo", {"WEU": [pool.id]}, True)
    assert cf.load_balancers.edit(balancer.id, zone_id=zone, steering_policy="random").steering_policy == "random"
    replaced = cf.load_balancers.update(balancer.id, zone_id=zone, name="app.example.com", default_pools=[other.id], fallback_pool=other.id, country_pools={"GB": [pool.id]})
    assert (replaced.steering_policy, replaced.region_pools, replaced.country_pools) == ("", {}, {"GB": [pool.id]})
    assert [b.name for b in cf.load_balancers.list(zone_id=zone)] == ["app.example.com"]
    with pytest.raises(cloudflare.ConflictError):
        cf.load_balancers.create(zone_id=zone, name="app.example.com", default_pools=[pool.id], fallback_pool=pool.id)
    with pytest.raises(cloudflare.BadRequestError):
        cf.load_balancers.create(zone_id=zone, name="api.example.com", default_pools=["0" * 32], fallback_pool=pool.id)
    with pytest.raises(cloudflare.BadRequestError):
        cf.load_balancers.create(zone_id=zone, name="api.example.com", default_pools=[pool.id], fallback_pool=pool.id, region_pools={"MARS": [pool.id]})
    with pytest.raises(cloudflare.ConflictError):
        cf.load_balancers.pools.delete(other.id, account_id=account)  # in use by the load balancer
    with pytest.raises(cloudflare.ConflictError):
        cf.load_balancers.monitors.delete(monitor.id, account_id=account)  # in use by lon1

    assert cf.load_balancers.delete(balancer.id, zone_id=zone).id == balancer.id
    assert cf.load_balancers.pools.delete(pool.id, account_id=account).id == pool.id
    assert cf.load_balancers.monitors.delete(monitor.id, account_id=account).id == monitor.id
    with pytest.raises(cloudflare.NotFoundError):
        cf.load_balancers.get(balancer.id, zone_id=zone)


def test_load_balancing_not_enabled_is_a_403(fake: FakeCloudflare) -> None:
    cf = sdk(fake)
    assert control(fake, "load_balancing", {"enabled": False}) == {"enabled": False}
    with pytest.raises(cloudflare.PermissionDeniedError) as refused:
        cf.load_balancers.pools.create(account_id=fake.account_id, name="lon1", origins=[{"address": "192.0.2.10"}])
    assert refused.value.body["errors"][0]["code"] == 1002
    with pytest.raises(cloudflare.PermissionDeniedError):
        list(cf.load_balancers.list(zone_id=zone_id(fake)))
    assert cf.dns.records.create(zone_id=zone_id(fake), type="A", name="app.example.com", content="192.0.2.1", ttl=1).content == "192.0.2.1"


def test_geo_steering_sends_each_region_to_its_pool(fake: FakeCloudflare, regions: dict[str, Any]) -> None:
    for _ in range(6):
        status, body = through(fake, "app.example.com", "WEU")
        assert status == 200 and body.split()[0].startswith(b"eu-"), body
        assert body.split()[1] == b"app.example.com"  # the client's Host reaches the origin
        status, body = through(fake, "app.example.com", "ENAM")
        assert status == 200 and body.split()[0].startswith(b"us-"), body
    assert through(fake, "app.example.com")[1].startswith(b"us-")  # unknown region: default_pools
    assert through(fake, "other.example.com", "WEU")[0] == 404


def test_a_pool_whose_origins_stop_turns_unhealthy_and_its_traffic_moves(fake: FakeCloudflare, regions: dict[str, Any]) -> None:
    cf, eu, monitor = regions["cf"], regions["pools"]["WEU"], regions["monitor"]
    healthy = lambda: cf.load_balancers.pools.get(eu.id, account_id=fake.account_id).healthy  # noqa: E731
    wait_until(lambda: (healthy() is True, "eu unhealthy"), timeout=5, interval=0.05, what="eu healthy")
    answers: list[tuple[int, bytes]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            answers.append(through(fake, "app.example.com", "WEU"))

    loader = threading.Thread(target=load)
    loader.start()
    try:
        wait_until(lambda: (len(answers) >= 10, len(answers)), timeout=10, interval=0.02, what="load before the stop")
        for name in ("eu-1", "eu-2"):
            regions["origins"][name].stop()
        wait_until(lambda: (healthy() is False, "still healthy"), timeout=monitor.interval * monitor.retries + 1.0, interval=0.05, what="eu marked unhealthy")
        report = cf.load_balancers.pools.health.get(eu.id, account_id=fake.account_id)
        assert report.pop_health is not None and report.pop_health.healthy is False
        assert all(o.ip is not None and o.ip.healthy is False for o in report.pop_health.origins or [])
        after = len(answers)
        wait_until(lambda: (len(answers) >= after + 10, len(answers)), timeout=10, interval=0.02, what="load after the stop")
    finally:
        stop.set()
        loader.join()
    failed = [a for a in answers if a[0] != 200]
    assert failed == [], failed[:3]
    assert answers[-1][1].startswith(b"us-")

    for name in ("eu-1", "eu-2"):
        regions["origins"][name].start()  # the same ports again
    wait_until(lambda: (healthy() is True, "still unhealthy"), timeout=monitor.interval * 2 + 1.0, interval=0.05, what="eu healthy again")
    assert through(fake, "app.example.com", "WEU")[1].startswith(b"eu-")


def test_a_refused_connection_is_retried_on_another_origin(fake: FakeCloudflare) -> None:
    cf, live = sdk(fake), Origin("live").start()
    try:
        dead = {"name": "dead", "address": "127.0.0.1", "port": free_port(), "enabled": True, "weight": 1}
        # No monitor: nothing marks the dead origin down, so every request may be sent to it first.
        pool = cf.load_balancers.pools.create(account_id=fake.account_id, name="mixed", origins=[dead, live.as_origin()])
        cf.load_balancers.create(zone_id=zone_id(fake), name="app.example.com", default_pools=[pool.id], fallback_pool=pool.id)
        statuses = [through(fake, "app.example.com", "WEU") for _ in range(20)]
        assert all(status == 200 and body.startswith(b"live") for status, body in statuses), statuses
        assert live.served == 20
        alone = cf.load_balancers.pools.create(account_id=fake.account_id, name="dead", origins=[dead])
        cf.load_balancers.create(zone_id=zone_id(fake), name="down.example.com", default_pools=[alone.id], fallback_pool=alone.id)
        assert through(fake, "down.example.com")[0] == 521
    finally:
        live.stop()


def test_bodies_stream_both_ways(fake: FakeCloudflare, regions: dict[str, Any]) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    assert through(fake, "app.example.com", "WEU", method="POST", body=payload) == (200, payload)
    assert through(fake, "app.example.com", "ENAM", method="POST", body=payload, chunked=True) == (200, payload)


def test_acme_txt_records_are_handed_to_challtestsrv() -> None:
    calls: list[tuple[str, dict[str, str]]] = []

    class Stub(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            calls.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    stub = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        with FakeCloudflare(["example.com"], tokens={TOKEN}, challtestsrv_url=f"http://127.0.0.1:{stub.server_address[1]}") as fake:
            cf, zone = sdk(fake), zone_id(fake)
            host = "_acme-challenge.example.com"
            first = cf.dns.records.create(zone_id=zone, type="TXT", name=host, content="token-1", ttl=60)
            cf.dns.records.create(zone_id=zone, type="TXT", name=host, content='"token-2"', ttl=60)  # a wildcard's, same name
            cf.dns.records.create(zone_id=zone, type="TXT", name="other.example.com", content="not handed", ttl=60)
            assert calls == [("/set-txt", {"host": f"{host}.", "value": "token-1"}), ("/set-txt", {"host": f"{host}.", "value": "token-2"})]
            calls.clear()
            cf.dns.records.delete(first.id, zone_id=zone)
            assert calls == [("/clear-txt", {"host": f"{host}."}), ("/set-txt", {"host": f"{host}.", "value": "token-2"})]
    finally:
        stub.shutdown()
        stub.server_close()
    with FakeCloudflare(["example.com"], tokens={TOKEN}, challtestsrv_url=f"http://127.0.0.1:{free_port()}") as fake:
        with pytest.raises(cloudflare.APIStatusError) as unreachable:
            sdk(fake).dns.records.create(zone_id=zone_id(fake), type="TXT", name="_acme-challenge.example.com", content="t", ttl=60)
        assert unreachable.value.status_code == 502
        assert list(sdk(fake).dns.records.list(zone_id=zone_id(fake))) == []  # nothing kept


def test_the_command_serves_until_interrupted() -> None:
    command = [sys.executable, "-m", "projectdeployer.rehearse.fake_cloudflare", "--port", "0", "--proxy-port", "0", "--zone", "example.com", "--token", "tok"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as served:
        try:
            assert served.stdout is not None
            line = served.stdout.readline().strip()
            assert line.startswith("CLOUDFLARE_BASE_URL=http://127.0.0.1:") and line.endswith("/client/v4")
            assert served.stdout.readline().startswith("data plane: http://127.0.0.1:")
            cf = cloudflare.Cloudflare(api_token="tok", base_url=line.split("=", 1)[1], max_retries=0, _strict_response_validation=True)
            assert [z.name for z in cf.zones.list()] == ["example.com"]
        finally:
            served.send_signal(signal.SIGINT)
        assert served.wait(timeout=10) == 0
