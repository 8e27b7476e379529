"""The fake DigitalOcean, driven through DigitalOcean's own client (pydo) over real HTTP(S)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydo
import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import HeadersPolicy

from projectdeployer.rehearse.fake_digitalocean import Cloud, FakeDigitalOcean, self_signed

pytestmark = pytest.mark.unit

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq0kHvhL5Lrs3bpbmrxn0OBn2QL4/x9xVYZkgQUbM1e rehearsal"
#: The fields DigitalOcean's OpenAPI description marks required on a droplet.
DROPLET_REQUIRED = {
    "id", "name", "memory", "vcpus", "disk", "locked", "status", "created_at", "features", "backup_ids",
    "next_backup_window", "snapshot_ids", "image", "volume_ids", "size", "size_slug", "networks", "region", "tags",
}  # fmt: skip


@pytest.fixture
def fake() -> Iterator[FakeDigitalOcean]:
    with FakeDigitalOcean(Cloud(action_seconds=0.05), tokens={"tok"}) as served:
        yield served


def client(fake: FakeDigitalOcean, token: str = "tok", **kwargs: Any) -> pydo.Client:
    # Over plain HTTP azure-core refuses to send a bearer token; the header policy sends it.
    return pydo.Client(token=token, endpoint=fake.url, authentication_policy=HeadersPolicy({"Authorization": f"Bearer {token}"}), **kwargs)


def wait_action(do: pydo.Client, action_id: int, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        action = do.actions.get(action_id)["action"]
        if action["status"] != "in-progress" or time.monotonic() > deadline:
            return action
        time.sleep(0.02)


def make_droplet(do: pydo.Client, name: str, tags: list[str] | None = None, **more: Any) -> dict[str, Any]:
    body = {"name": name, "region": "lon1", "size": "s-1vcpu-1gb", "image": "debian-12-x64", "tags": tags or [], **more}
    answer = do.droplets.create(body)
    assert wait_action(do, answer["links"]["actions"][0]["id"])["status"] == "completed"
    return do.droplets.get(answer["droplet"]["id"])["droplet"]


def test_a_droplet_is_new_without_addresses_until_its_create_action_completes(fake: FakeDigitalOcean) -> None:
    do = client(fake)
    key = do.ssh_keys.create({"name": "deployer", "public_key": PUBLIC_KEY})["ssh_key"]
    assert key["fingerprint"].count(":") == 15
    answer = do.droplets.create({"name": "web-1", "region": "lon1", "size": "s-1vcpu-1gb", "image": "debian-12-x64", "ssh_keys": [key["fingerprint"]], "tags": ["pd:app", "status:active"]})
    created = answer["droplet"]
    assert created["status"] == "new" and created["networks"]["v4"] == []
    assert set(created) >= DROPLET_REQUIRED
    assert created["size"]["slug"] == "s-1vcpu-1gb" and created["region"]["slug"] == "lon1" and created["memory"] % 8 == 0
    action = wait_action(do, answer["links"]["actions"][0]["id"])
    assert action["status"] == "completed" and action["type"] == "create" and action["resource_id"] == created["id"]
    droplet = do.droplets.get(created["id"])["droplet"]
    kinds = {n["type"]: n for n in droplet["networks"]["v4"]}
    assert droplet["status"] == "active" and set(kinds) == {"public", "private"}
    vpc = do.vpcs.get(droplet["vpc_uuid"])["vpc"]
    assert vpc["region"] == "lon1" and vpc["default"] and vpc["urn"] == f"do:vpc:{vpc['id']}"
    assert kinds["private"]["ip_address"].startswith(vpc["ip_range"].split(".0.0/")[0] + ".")


def test_lists_are_paginated_with_links_that_keep_the_query(fake: FakeDigitalOcean) -> None:
    do = client(fake)
    for i in range(5):
        make_droplet(do, f"web-{i}", tags=["pd:app"])
    make_droplet(do, "other", tags=["elsewhere"])
    first = do.droplets.list(tag_name="pd:app", per_page=2)
    assert first["meta"]["total"] == 5 and len(first["droplets"]) == 2
    names, page = [d["name"] for d in first["droplets"]], first
    while "next" in page["links"]["pages"]:
        link = page["links"]["pages"]["next"]
        assert "tag_name=pd%3Aapp" in link and "per_page=2" in link
        page = do.droplets.list(tag_name="pd:app", per_page=2, page=int(link.rsplit("page=", 1)[1]))
        names += [d["name"] for d in page["droplets"]]
    assert names == [f"web-{i}" for i in range(5)]
    assert set(page["links"]["pages"]) == {"first", "prev"}


def test_errors_come_in_digitaloceans_shape(fake: FakeDigitalOcean) -> None:
    do = client(fake)
    # pydo returns some 404s as the error body instead of raising.
    assert do.droplets.get(999)["id"] == "not_found"
    with pytest.raises(HttpResponseError) as bad_name:
        do.droplets.create({"name": "bad name!", "region": "lon1", "size": "s-1vcpu-1gb", "image": "debian-12-x64"})
    assert bad_name.value.status_code == 422 and bad_name.value.response.json()["id"] == "unprocessable_entity"
    with pytest.raises(HttpResponseError) as unauthorized:
        client(fake, token="wrong").droplets.list()
    assert unauthorized.value.status_code == 401


def test_a_429_storm_carries_the_reset_time_and_passes(fake: FakeDigitalOcean) -> None:
    do = client(fake, retry_total=0)
    request = urllib.request.Request(f"{fake.url}/_fake/rate_limit", data=json.dumps({"requests": 2, "reset_in": 3}).encode(), method="POST")
    urllib.request.urlopen(request, timeout=5).read()
    for _ in range(2):
        with pytest.raises(HttpResponseError) as limited:
            do.sizes.list()
        headers = limited.value.response.headers
        assert limited.value.status_code == 429 and limited.value.response.json()["id"] == "too_many_requests"
        assert headers["ratelimit-remaining"] == "0" and int(headers["ratelimit-reset"]) >= int(time.time()) + 2
    seen: dict[str, str] = {}
    sizes = do.sizes.list(cls=lambda response, body, headers: (seen.update(headers), body)[1])
    assert int(seen["ratelimit-limit"]) == 5000 and int(seen["ratelimit-remaining"]) < 5000
    assert {s["slug"] for s in sizes["sizes"]} >= {"s-1vcpu-1gb", "s-2vcpu-4gb"}


def test_resize_needs_a_powered_off_droplet_and_keeps_it(fake: FakeDigitalOcean) -> None:
    do = client(fake)
    droplet = make_droplet(do, "db-1")
    with pytest.raises(HttpResponseError) as on:
        do.droplet_actions.post(droplet["id"], {"type": "resize", "size": "s-2vcpu-4gb", "disk": True})
    assert on.value.status_code == 422 and "power it off" in on.value.response.json()["message"]
    for body in ({"type": "power_off"}, {"type": "resize", "size": "s-2vcpu-4gb", "disk": True}, {"type": "power_on"}):
        action = do.droplet_actions.post(droplet["id"], body)["action"]
        assert wait_action(do, action["id"])["status"] == "completed"
    resized = do.droplets.get(droplet["id"])["droplet"]
    assert resized["size_slug"] == "s-2vcpu-4gb" and resized["vcpus"] == 2 and resized["status"] == "active"
    assert resized["networks"] == droplet["networks"]


def test_a_snapshot_is_an_image_droplets_are_created_from(fake: FakeDigitalOcean) -> None:
    do = client(fake)
    template = make_droplet(do, "template-lon1")
    action = do.droplet_actions.post(template["id"], {"type": "snapshot", "name": "pd-template-lon1"})["action"]
    assert wait_action(do, action["id"])["status"] == "completed"
    snapshot = do.snapshots.list(resource_type="droplet")["snapshots"][0]
    image = do.images.list(private=True)["images"][0]
    assert isinstance(snapshot["id"], str) and isinstance(image["id"], int) and snapshot["id"] == str(image["id"])
    assert image["type"] == "snapshot" and image["regions"] == ["lon1"] and snapshot["resource_id"] == str(template["id"])
    assert do.droplets.destroy(template["id"]) is None
    made = make_droplet(do, "web-from-template", image=image["id"])
    assert made["image"]["id"] == image["id"] and made["status"] == "active"
    with pytest.raises(HttpResponseError) as elsewhere:
        do.droplets.create({"name": "far", "region": "nyc3", "size": "s-1vcpu-1gb", "image": image["id"]})
    assert elsewhere.value.status_code == 422
    do.snapshots.delete(snapshot["id"])
    assert do.images.list(private=True)["images"] == []


def test_a_firewall_update_is_a_full_put(fake: FakeDigitalOcean) -> None:
    do = client(fake)
    body = {
        "name": "pd-app-prod",
        "tags": ["pd:app"],
        "inbound_rules": [{"protocol": "tcp", "ports": "22", "sources": {"addresses": ["0.0.0.0/0"]}}, {"protocol": "tcp", "ports": "5432", "sources": {"tags": ["pd:app"]}}],
        "outbound_rules": [{"protocol": "tcp", "ports": "all", "destinations": {"addresses": ["0.0.0.0/0"]}}],
    }
    made = do.firewalls.create(body)["firewall"]
    assert made["status"] == "succeeded" and made["pending_changes"] == [] and len(made["inbound_rules"]) == 2
    updated = do.firewalls.update(made["id"], {"name": "pd-app-prod", "inbound_rules": body["inbound_rules"][:1]})["firewall"]
    assert updated["tags"] == [] and updated["outbound_rules"] == [] and updated["created_at"] == made["created_at"]


def test_a_failed_create_errors_its_action_and_leaves_no_droplet(fake: FakeDigitalOcean) -> None:
    do = client(fake)
    urllib.request.urlopen(urllib.request.Request(f"{fake.url}/_fake/failures", data=b'{"droplet_create": 1}', method="POST"), timeout=5).read()
    answer = do.droplets.create({"name": "doomed", "region": "lon1", "size": "s-1vcpu-1gb", "image": "debian-12-x64", "tags": ["pd:app"]})
    assert wait_action(do, answer["links"]["actions"][0]["id"])["status"] == "errored"
    assert do.droplets.list(tag_name="pd:app")["droplets"] == []
    assert make_droplet(do, "next", tags=["pd:app"])["status"] == "active"  # only one failed


def test_https_with_its_own_certificate(tmp_path: Path) -> None:
    certificate = self_signed(tmp_path)
    assert (tmp_path / "fake-digitalocean.key").stat().st_mode & 0o777 == 0o600
    with FakeDigitalOcean(certificate=certificate) as served:
        assert served.url.startswith("https://")
        do = pydo.Client(token="anything", endpoint=served.url, connection_verify=certificate[0])
        assert {r["slug"] for r in do.regions.list()["regions"]} >= {"lon1", "nyc3", "fra1"}


def test_the_command_serves_until_interrupted(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "projectdeployer.rehearse.fake_digitalocean", "--port", "0", "--token", "tok"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as served:
        try:
            assert served.stdout is not None
            line = served.stdout.readline().strip()
            assert line.startswith("DIGITALOCEAN_API_URL=http://127.0.0.1:")
            url = line.split("=", 1)[1]
            request = urllib.request.Request(f"{url}/v2/sizes?per_page=2", headers={"Authorization": "Bearer tok"})
            answer = json.loads(urllib.request.urlopen(request, timeout=5).read())
            assert len(answer["sizes"]) == 2 and answer["meta"]["total"] > 2 and "next" in answer["links"]["pages"]
        finally:
            served.send_signal(signal.SIGINT)
        assert served.wait(timeout=10) == 0
