"""The digitalocean provider's API layer against the fake DigitalOcean, over real HTTP."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from projectdeployer.providers.digitalocean.api import DigitalOceanApi, DigitalOceanError, DigitalOceanNotFound, api_url, fingerprint
from projectdeployer.rehearse.fake_digitalocean import Cloud, FakeDigitalOcean

pytestmark = pytest.mark.unit

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq0kHvhL5Lrs3bpbmrxn0OBn2QL4/x9xVYZkgQUbM1e deployer"
TAG = "pd:shop:prod"


@pytest.fixture
def fake() -> Iterator[FakeDigitalOcean]:
    with FakeDigitalOcean(Cloud(action_seconds=0.05), tokens={"tok"}) as served:
        yield served


def api(fake: FakeDigitalOcean, lines: list[str] | None = None, **kwargs: Any) -> DigitalOceanApi:
    log = lines.append if lines is not None else (lambda line: None)
    return DigitalOceanApi("tok", url=fake.url, log=log, action_interval=0.02, **kwargs)


def control(fake: FakeDigitalOcean, path: str, body: dict[str, Any]) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{fake.url}/_fake/{path}", data=json.dumps(body).encode(), method="POST"), timeout=5).read()


def body(name: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "region": "lon1", "size": "s-1vcpu-1gb", "image": "debian-12-x64", "tags": [TAG], **more}


def test_the_url_refuses_plain_http_beyond_this_machine() -> None:
    assert api_url({}) == "https://api.digitalocean.com"
    assert api_url({"DIGITALOCEAN_API_URL": "http://127.0.0.1:8790/"}) == "http://127.0.0.1:8790"
    with pytest.raises(DigitalOceanError, match=re.escape("DIGITALOCEAN_API_URL='http://do.example.com': plain http only to this machine")):
        api_url({"DIGITALOCEAN_API_URL": "http://do.example.com"})
    with pytest.raises(DigitalOceanError, match="no DigitalOcean API token: set DIGITALOCEAN_API_TOKEN"):
        DigitalOceanApi("")


def test_lists_are_read_to_the_last_page(fake: FakeDigitalOcean) -> None:
    with fake.cloud.lock:
        for i in range(205):
            fake.cloud.create_droplet(body(f"web-{i}"))
    fake.cloud.wait_idle()
    found = api(fake).droplets(TAG)
    assert len(found) == 205 and len({d["id"] for d in found}) == 205
    pages = [p for m, p, s in fake.requests if p == "/v2/droplets" and m == "GET"]
    assert len(pages) == 2  # 200 a page


def test_a_droplet_is_created_once_and_returned_active_with_addresses(fake: FakeDigitalOcean) -> None:
    do = api(fake)
    droplet = do.create_droplet(body("web-1"), tag=TAG)
    assert droplet["status"] == "active" and {n["type"] for n in droplet["networks"]["v4"]} == {"public", "private"}
    # A deploy that runs again finds it instead of making a second one.
    assert do.create_droplet(body("web-1"), tag=TAG)["id"] == droplet["id"]
    assert [d["name"] for d in do.droplets(TAG)] == ["web-1"]


def test_a_lost_answer_does_not_make_a_second_droplet(fake: FakeDigitalOcean) -> None:
    lines: list[str] = []
    control(fake, "failures", {"droplet_create_answer_lost": 1})
    droplet = api(fake, lines).create_droplet(body("web-1"), tag=TAG)
    assert droplet["status"] == "active"
    assert len(fake.cloud.list_droplets(tag_name=TAG)) == 1
    assert [(m, s) for m, p, s in fake.requests if p == "/v2/droplets" and m == "POST"] == [("POST", 0)]
    assert any("the answer was lost but the droplet exists" in line for line in lines)


def test_a_failed_create_is_one_line_and_leaves_nothing(fake: FakeDigitalOcean) -> None:
    control(fake, "failures", {"droplet_create": 1})
    with pytest.raises(DigitalOceanError) as failed:
        api(fake).create_droplet(body("web-1"), tag=TAG)
    assert str(failed.value) == f"DigitalOcean: create droplet web-1: the create action {fake.cloud.actions and max(fake.cloud.actions)} errored"
    assert fake.cloud.list_droplets(tag_name=TAG) == []
    assert api(fake).create_droplet(body("web-1"), tag=TAG)["status"] == "active"  # the next try works


def test_a_429_storm_is_waited_out_until_the_reset(fake: FakeDigitalOcean) -> None:
    lines: list[str] = []
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(min(seconds, 0.01))

    control(fake, "rate_limit", {"requests": 3, "reset_in": 2})
    sizes = api(fake, lines, sleep=sleep).pages("list sizes", api(fake).client.sizes.list, "sizes")
    assert {s["slug"] for s in sizes} >= {"s-1vcpu-1gb"}
    assert len(waits) == 3 and all(1.0 <= w <= 3.0 for w in waits)
    assert sum("DigitalOcean: rate limit reached (list sizes): waiting" in line for line in lines) == 3


def test_a_429_storm_beyond_the_budget_is_one_clear_error(fake: FakeDigitalOcean) -> None:
    control(fake, "rate_limit", {"requests": 50, "reset_in": 5})
    do = api(fake, sleep=lambda seconds: None, rate_limit_wait=12)
    with pytest.raises(DigitalOceanError, match=r"DigitalOcean: list droplets tagged .*: the API rate limit is still reached after waiting \d+s in all \(HTTP 429 too_many_requests\)"):
        do.droplets(TAG)


def test_errors_name_the_call_and_digitaloceans_message(fake: FakeDigitalOcean) -> None:
    do = api(fake)
    with pytest.raises(DigitalOceanNotFound, match=r"DigitalOcean: read droplet 999: .*not_found"):
        do.droplet(999)
    with pytest.raises(DigitalOceanError, match=r"DigitalOcean: create droplet bad name!: Name is invalid.* \(HTTP 422 unprocessable_entity\)"):
        do.create_droplet(body("bad name!"), tag=TAG)
    do.destroy_droplet(999)  # gone already: fine
    with pytest.raises(DigitalOceanError, match=r"HTTP 401 Unauthorized"):
        DigitalOceanApi("wrong", url=fake.url).droplets(TAG)


def test_key_vpc_and_firewall_are_made_once_and_the_firewall_replaced_whole(fake: FakeDigitalOcean) -> None:
    do = api(fake)
    key = do.ensure_ssh_key("shop-prod", PUBLIC_KEY)
    assert key["fingerprint"] == fingerprint(PUBLIC_KEY) and do.ensure_ssh_key("again", PUBLIC_KEY)["id"] == key["id"]
    vpc = do.ensure_vpc("shop-prod-lon1", "lon1")
    assert do.ensure_vpc("shop-prod-lon1", "lon1")["id"] == vpc["id"]
    with pytest.raises(DigitalOceanError, match="the VPC shop-prod-lon1 is in lon1, not nyc3"):
        do.ensure_vpc("shop-prod-lon1", "nyc3")
    rules = [{"protocol": "tcp", "ports": "22", "sources": {"addresses": ["0.0.0.0/0", "::/0"]}}]
    first = do.put_firewall({"name": "shop-prod", "tags": [TAG], "inbound_rules": rules + [{"protocol": "tcp", "ports": "5432", "sources": {"tags": [TAG]}}]})
    second = do.put_firewall({"name": "shop-prod", "tags": [TAG], "inbound_rules": rules})
    assert second["id"] == first["id"] and second["inbound_rules"] == rules and len(fake.cloud.firewalls) == 1


def test_a_key_or_vpc_made_meanwhile_by_another_deploy_is_found_not_duplicated(fake: FakeDigitalOcean, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between this deploy's look and its create, another made the VPC (or uploaded the key):
    the create is refused (the name is taken) and the other's is returned."""
    other, do = api(fake), api(fake)
    made_vpc, made_key = other.ensure_vpc("shop-prod-lon1", "lon1"), other.ensure_ssh_key("shop-prod", PUBLIC_KEY)
    real_pages, hidden = do.pages, {"list VPCs": 1, "list SSH keys": 1}

    def late_pages(what: str, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        if hidden.get(what):  # the first look misses what the other deploy made
            hidden[what] -= 1
            return []
        return real_pages(what, *args, **kwargs)

    monkeypatch.setattr(do, "pages", late_pages)
    assert do.ensure_vpc("shop-prod-lon1", "lon1")["id"] == made_vpc["id"]
    assert do.ensure_ssh_key("shop-prod", PUBLIC_KEY)["id"] == made_key["id"]
    assert len(fake.cloud.vpcs) == 1 and len(fake.cloud.keys) == 1 and hidden == {"list VPCs": 0, "list SSH keys": 0}


def test_the_cheapest_size_that_fits(fake: FakeDigitalOcean) -> None:
    do = api(fake)
    assert do.cheapest_size(vcpus=1, memory_mb=1024, region="lon1")["slug"] == "s-1vcpu-1gb"
    assert do.cheapest_size(vcpus=2, memory_mb=3000, region="lon1")["slug"] == "s-2vcpu-4gb"
    with pytest.raises(DigitalOceanError, match="no size with 64 vCPU"):
        do.cheapest_size(vcpus=64, memory_mb=1024, region="lon1")
