"""The digitalocean provider against the fake DigitalOcean (droplets as records: no SSH here;
tests/docker reaches real servers)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from projectdeployer import ProjectDeployer
from projectdeployer.cli import make_cli
from projectdeployer.core.errors import ProjectDeployerError
from projectdeployer.core.provider import ServerSpec
from projectdeployer.providers.digitalocean import provider as do_provider
from projectdeployer.providers.digitalocean.api import DigitalOceanApi
from projectdeployer.providers.digitalocean.provider import DigitalOceanProvider, DropletServer, env_tag, firewall_body
from projectdeployer.rehearse.fake_digitalocean import Cloud, FakeDigitalOcean

pytestmark = pytest.mark.unit


class RecordsOnly(DigitalOceanProvider):
    """The fake's droplets here are records with addresses, not machines: nothing to SSH to
    (and no template to provision: servers come from the base image)."""

    use_templates = False

    def _wait_reachable(self, server: DropletServer) -> None:
        assert server.running, server

    def _provision(self, server: DropletServer, images: dict[str, str]) -> None:
        self.provisioned.append(server.name)

    provisioned: list[str]


@pytest.fixture
def fake(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDigitalOcean]:
    monkeypatch.setenv("PROJECTDEPLOYER_HOME", str(tmp_path / "home"))
    with FakeDigitalOcean(Cloud(action_seconds=0.02), tokens={"tok"}) as served:
        yield served


def provider(fake: FakeDigitalOcean) -> RecordsOnly:
    made = RecordsOnly(DigitalOceanApi("tok", url=fake.url, action_interval=0.02))
    made.provisioned = []
    return made


def test_servers_are_created_in_parallel_once_each_tagged_and_listed_live(fake: FakeDigitalOcean) -> None:
    do = provider(fake)
    specs = [ServerSpec(zone="nyc3", cpu=1, memory=2048, tags={"state": "reserve", "slot": str(i)}) for i in range(3)]
    made: list[Any] = []
    threads = [threading.Thread(target=lambda s=s: made.append(do.create_server("shop", "prod", s))) for s in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(s.name for s in made) == ["shop-prod-nyc3-1", "shop-prod-nyc3-2", "shop-prod-nyc3-3"]
    assert sorted(do.provisioned) == sorted(s.name for s in made)  # from the base image: each provisioned
    listed = do.list_servers("shop", "prod")
    assert [(s.zone, s.tags["state"], s.tags["slot"]) for s in listed] == [("nyc3", "reserve", "0"), ("nyc3", "reserve", "1"), ("nyc3", "reserve", "2")]
    droplet = fake.cloud.droplet(listed[0].droplet_id)  # type: ignore[attr-defined]
    assert droplet.size_slug == "s-1vcpu-2gb" and env_tag("shop", "prod") in droplet.tags and "zone:nyc3" in droplet.tags
    # Uploaded once, one VPC for the region, one firewall written whole.
    assert len(fake.cloud.keys) == 1 and [v["name"] for v in fake.cloud.vpcs.values()] == ["pd-shop-prod-nyc3"]
    (firewall,) = fake.cloud.firewalls.values()
    assert {k: firewall[k] for k in ("name", "tags", "inbound_rules", "outbound_rules")} == firewall_body("shop", "prod")
    assert {s.vpc_uuid for s in fake.cloud.droplets.values()} == {next(iter(fake.cloud.vpcs))}
    assert all(s.private_address.startswith("10.") and s.public_address.startswith("203.0.") for s in listed)
    assert do.list_servers("shop", "staging") == []


def test_state_resize_and_destroy(fake: FakeDigitalOcean) -> None:
    do = provider(fake)
    server = do.create_server("shop", "prod", ServerSpec(zone="lon1", tags={"state": "reserve", "slot": "0"}))
    active = do.set_server_state(server, "active")
    assert active.tags["state"] == "active"
    assert [t for t in fake.cloud.droplet(active.droplet_id).tags if t.startswith("status:")] == ["status:active"]  # type: ignore[attr-defined]
    bigger = do.resize_server(active, 2, 4096)
    assert bigger.tags["size"] == "s-2vcpu-4gb" and bigger.public_address == active.public_address and bigger.tags["state"] == "active"
    assert [a.type for a in fake.cloud.actions.values()][-3:] == ["power_off", "resize", "power_on"]
    do.destroy_server(bigger)
    assert do.list_servers("shop", "prod") == []
    do.destroy_server(bigger)  # gone already: fine


def test_the_creation_lock_is_exclusive_names_its_holder_and_is_taken_over_after_its_lease(fake: FakeDigitalOcean) -> None:
    first, second = provider(fake), provider(fake)
    refused = r"shop/prod: another deploy holds the creation lock \(held by .* pid \d+ since .*\)"
    with first.creation_lock("shop", "prod"), pytest.raises(ProjectDeployerError, match=refused), second.creation_lock("shop", "prod"):
        pass
    with second.creation_lock("shop", "prod"):
        pass  # released: free again
    assert [v for v in fake.cloud.vpcs.values() if v["name"].startswith("pd-lock-")] == []
    # A holder that crashed (its lease long past) is taken over.
    stale = {"host": "gone", "pid": 1, "since": int(time.time()) - 2 * do_provider.LOCK_LEASE, "lease": do_provider.LOCK_LEASE}
    fake.cloud.create_vpc({"name": "pd-lock-shop-prod", "region": "nyc3", "description": json.dumps(stale)})
    with second.creation_lock("shop", "prod"):
        (lock,) = [v for v in fake.cloud.vpcs.values() if v["name"] == "pd-lock-shop-prod"]
        assert json.loads(lock["description"])["host"] != "gone"


def test_a_second_deploy_waits_for_the_lock(fake: FakeDigitalOcean) -> None:
    first, second = provider(fake), provider(fake)
    order: list[str] = []

    def later() -> None:
        with second.creation_lock("shop", "prod", wait=20):
            order.append("second holds it")

    with first.creation_lock("shop", "prod"):
        waiter = threading.Thread(target=later)
        waiter.start()
        time.sleep(0.5)
        order.append("first lets go")
    waiter.join(timeout=20)
    assert order == ["first lets go", "second holds it"]


def test_the_token_from_a_secret_reference_set_from_stdin(fake: FakeDigitalOcean, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``api_token = "secret:NAME"`` in the environment's table: stored with ``secrets set``
    (from standard input, never an argument), resolved when the provider is handed out, and it
    wins over ``DIGITALOCEAN_API_TOKEN``; a missing one is one line naming the key."""
    path = tmp_path / "shop.toml"
    path.write_text('[project]\nname = "shop"\n\n[environments.prod]\nprovider = "digitalocean"\napi_token = "secret:digitalocean/token"\n')
    monkeypatch.setenv("DIGITALOCEAN_API_URL", fake.url)
    monkeypatch.setenv("DIGITALOCEAN_API_TOKEN", "another-accounts-token")
    with pytest.raises(ProjectDeployerError, match=r"^environment prod: api_token: secret reference 'secret:digitalocean/token': .* does not exist$"):
        ProjectDeployer(str(path), path=path).environment("prod").provider()

    stored = CliRunner().invoke(make_cli(), ["-f", str(path), "secrets", "set", "digitalocean/token", "--env", "prod"], input="tok\n")
    assert stored.exit_code == 0, stored.output
    assert "refer to it as secret:digitalocean/token" in stored.output and "tok\n" not in stored.output
    (secret,) = (tmp_path / "home").glob("shop/prod/secrets/digitalocean/token")
    assert secret.read_text() == "tok" and secret.stat().st_mode & 0o777 == 0o600

    listed = ProjectDeployer(str(path), path=path).environment("prod").provider().list_servers("shop", "prod")
    assert listed == []  # the fake accepts "tok" only: the reference won over the variable
    assert fake.requests[-1][2] == 200
    refused = CliRunner().invoke(make_cli(), ["-f", str(path), "secrets", "set", "../escape", "--env", "prod"], input="x\n")
    assert refused.exit_code != 0 and "not a valid secret name" in refused.output


def test_a_region_without_a_template_gets_a_copy_of_one_made_elsewhere(fake: FakeDigitalOcean) -> None:
    do = provider(fake)
    do.use_templates = True
    lines: list[str] = []
    do.log = lines.append
    made = do.get_or_create_template("shop", "prod", "lon1")
    assert len(do.provisioned) == 1 and fake.cloud.list_droplets(tag_name="pd:template") == []
    copied = do.get_or_create_template("shop", "prod", "nyc3")
    assert copied == made and len(do.provisioned) == 1  # transferred, not made again
    (snapshot,) = fake.cloud.snapshots.values()
    assert snapshot["name"].startswith("pd-template-lon1-") and sorted(snapshot["regions"]) == ["lon1", "nyc3"]
    assert [line for line in lines if "copying the template" in line] == [f"DigitalOcean: copying the template {snapshot['name']} to nyc3"]
    assert [a.type for a in fake.cloud.actions.values() if a.resource_type == "image"] == ["transfer"]
    assert do.get_or_create_template("shop", "prod", "nyc3") == made  # there now: nothing to do
    server = do.create_server("shop", "prod", ServerSpec(zone="nyc3", tags={"state": "active", "slot": "0"}))
    assert fake.cloud.droplet(server.droplet_id).image["id"] == made  # type: ignore[attr-defined]
