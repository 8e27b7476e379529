"""``destroy`` (issue 12 item 6) without an engine: the plan of what goes and what stays
(destroy/teardown.py ``plan_teardown``, pure), a whole teardown on a fake engine, the deploy lock
it removes while holding it, and the command line's refusals (unknown environment, no terminal
to ask on). tests/docker/test_destroy.py does the same on the real engine and sandbox servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from projectdeployer.core import paths
from projectdeployer.core.provider import CommandResult, Provider, Server, ServerSpec
from projectdeployer.core.registry import build_registry
from projectdeployer.core.runtime import (
    LABEL_ENV,
    LABEL_PROJECT,
    LABEL_ROLE,
    LABEL_SERVICE,
    LABEL_SLOT,
    ContainerInfo,
    ImageInfo,
    VolumeInfo,
)
from projectdeployer.destroy.teardown import (
    THIS_MACHINE,
    ImageFacts,
    LocalFacts,
    PlaceFacts,
    Teardown,
    TeardownError,
    UnknownEnvironment,
    grown_beyond,
    plan_teardown,
)
from projectdeployer.environment.environment import Environment
from projectdeployer.environment.locks import DeployLocked, deploy_lock
from projectdeployer.environment.releases import Release, ReleaseHistory
from projectdeployer.hookspecs import hookimpl
from projectdeployer.plugins import load_plugins, make_plugin_manager
from projectdeployer.project.file import build_project

pytestmark = pytest.mark.unit

BIN = Path(sys.executable).with_name("projectdeployer")


def container(
    name: str, env: str = "prod", *, project: str = "shop", role: str = "service", service: str | None = None, slot: str | None = None, image: str = "sha256:app", state: str = "running"
) -> ContainerInfo:
    labels = {LABEL_PROJECT: project, LABEL_ENV: env, LABEL_ROLE: role}
    if service:
        labels[LABEL_SERVICE] = service
    if slot:
        labels[LABEL_SLOT] = slot
    return ContainerInfo(id=name, name=name, image_id=image, labels=labels, state=state, health=None, exit_code=None, started_at=None)


def keys(items: Sequence[Any]) -> list[tuple[str, str]]:
    return [(i.kind, i.name) for i in items]


# --- the plan (pure) ---------------------------------------------------------------------------


def test_local_plan_removes_the_environment_and_keeps_its_data_and_shared_images() -> None:
    place = PlaceFacts(
        server="local",
        containers=(
            container("shop_prod_api_a", service="api", slot="a"),
            container("shop_prod_nginx", role="sidecar"),
            container("shop_prod_postgres", role="stateful", service="postgres", image="sha256:pg"),
            container("shop_prod_scheduler", role="scheduler"),
            container("shop_prod_report", role="job", service="report", state="created"),
        ),
        network="shop_prod_network",
        volumes=("shop_prod_postgres_data",),
        images=(
            ImageFacts(id="sha256:" + "a" * 64, tags=("shop-api:1.0",), service="api"),
            ImageFacts(id="sha256:" + "b" * 64, tags=("shop-web:1.0",), used_by=("container shop_staging_web_a (shop/staging)",), service="web"),
            ImageFacts(id="sha256:" + "c" * 64, tags=("shop-old:1.0",), other_tags=("mine:keep",)),
            ImageFacts(id="sha256:" + "d" * 64, service="api"),  # an older build, untagged
        ),
    )
    local = LocalFacts(state=("/h/shop/prod/config/ports.json", "/h/shop/prod/run"), data=("/h/shop/prod/backups",), yours=("/h/shop/prod/secrets",))
    plan = plan_teardown(project="shop", env="prod", provider="local", with_data=False, places=[place], local=local)

    # The scheduler first (it would start jobs), then the router, then the rest by name.
    assert keys(plan.remove) == [
        ("container", "shop_prod_scheduler"),
        ("container", "shop_prod_nginx"),
        ("container", "shop_prod_api_a"),
        ("container", "shop_prod_postgres"),
        ("container", "shop_prod_report"),
        ("network", "shop_prod_network"),
        ("image", "shop-api:1.0"),
        ("image", "shop-old:1.0"),
        ("image", "d" * 12),
        ("file", "/h/shop/prod/config/ports.json"),
        ("directory", "/h/shop/prod/run"),
    ]
    notes = {i.name: i.note for i in plan.remove}
    assert notes["shop_prod_api_a"] == "api, slot a, running" and notes["shop_prod_report"] == "report, job, created"
    # The project's tags go (the image with them, unless the user's own tag keeps it), or the
    # untagged image by its id.
    assert [i.refs for i in plan.remove if i.kind == "image"] == [("shop-api:1.0",), ("shop-old:1.0",), ("sha256:" + "d" * 64,)]
    assert "also tagged mine:keep (that tag keeps it)" in notes["shop-old:1.0"]
    kept = {(i.kind, i.name): i for i in plan.keep}
    assert kept[("volume", "shop_prod_postgres_data")].data and kept[("directory", "/h/shop/prod/backups")].data
    assert "used by container shop_staging_web_a (shop/staging)" in kept[("image", "shop-web:1.0")].note
    assert not kept[("directory", "/h/shop/prod/secrets")].data
    assert [i.name for i in plan.kept_data] == ["shop_prod_postgres_data", "/h/shop/prod/backups"]
    assert not plan.empty and json.loads(json.dumps(plan.to_json()))["keep"][0] == {
        "where": "local",
        "kind": "image",
        "name": "shop-web:1.0",
        "note": kept[("image", "shop-web:1.0")].note,
        "data": False,
    }


def test_with_data_the_volumes_and_backups_go_too_and_the_secrets_stay() -> None:
    place = PlaceFacts(server="local", volumes=("shop_prod_postgres_data", "shop_prod_search_snapshots"))
    local = LocalFacts(data=("/h/shop/prod/backups", "/h/shop/prod/logs"), yours=("/h/shop/prod/secrets", "/h/shop/prod/files"))
    plan = plan_teardown(project="shop", env="prod", provider="local", with_data=True, places=[place], local=local)
    assert keys(plan.remove) == [
        ("volume", "shop_prod_postgres_data"),
        ("volume", "shop_prod_search_snapshots"),
        ("directory", "/h/shop/prod/backups"),
        ("directory", "/h/shop/prod/logs"),
    ]
    assert all(i.data for i in plan.remove)
    assert keys(plan.keep) == [("directory", "/h/shop/prod/secrets"), ("directory", "/h/shop/prod/files")]


def test_servers_are_cleared_and_kept_without_data_and_destroyed_with_it() -> None:
    def places() -> list[PlaceFacts]:
        return [
            PlaceFacts(
                server="shop-prod-lon1-1",
                containers=(container("shop_prod_postgres", role="stateful", service="postgres"),),
                network="shop_prod_network",
                volumes=("shop_prod_postgres_data",),
                directories=(("/local/shop/prod/run", False), ("/local/shop/prod/backups", True)),
            ),
            PlaceFacts(
                server="shop-prod-nyc3-1",
                containers=(container("shop_prod_api_a", service="api", slot="a"),),
                network="shop_prod_network",
                images=(ImageFacts(id="sha256:" + "a" * 64, tags=("shop-api:1.0",)),),
            ),
            PlaceFacts(server=THIS_MACHINE, images=(ImageFacts(id="sha256:" + "a" * 64, tags=("shop-api:1.0",)),), images_only=True),
        ]

    servers = ["shop-prod-lon1-1", "shop-prod-nyc3-1"]
    keep_servers = plan_teardown(project="shop", env="prod", provider="sandbox", with_data=False, places=places(), local=LocalFacts(), servers=servers)
    assert [(i.where, i.kind, i.name) for i in keep_servers.remove] == [
        ("shop-prod-lon1-1", "container", "shop_prod_postgres"),
        ("shop-prod-lon1-1", "network", "shop_prod_network"),
        ("shop-prod-lon1-1", "directory", "/local/shop/prod/run"),
        ("shop-prod-nyc3-1", "container", "shop_prod_api_a"),
        ("shop-prod-nyc3-1", "network", "shop_prod_network"),
        ("shop-prod-nyc3-1", "image", "shop-api:1.0"),
        (THIS_MACHINE, "image", "shop-api:1.0"),
    ]
    assert [(i.where, i.name) for i in keep_servers.keep] == [("shop-prod-lon1-1", "shop_prod_postgres_data"), ("shop-prod-lon1-1", "/local/shop/prod/backups")]

    gone = plan_teardown(project="shop", env="prod", provider="sandbox", with_data=True, places=places(), local=LocalFacts(), servers=servers)
    assert [(i.where, i.kind, i.name, i.with_server) for i in gone.remove] == [
        ("shop-prod-lon1-1", "server", "shop-prod-lon1-1", False),
        ("shop-prod-nyc3-1", "server", "shop-prod-nyc3-1", False),
        ("shop-prod-lon1-1", "volume", "shop_prod_postgres_data", True),
        ("shop-prod-lon1-1", "directory", "/local/shop/prod/backups", True),
        (THIS_MACHINE, "image", "shop-api:1.0", False),  # built here: no other environment uses it
    ]
    assert "destroyed through the provider sandbox: 1 container(s)" in gone.remove[0].note
    assert gone.keep == ()


def test_an_unreachable_server_is_named_and_destroyed_with_data_all_the_same() -> None:
    plan = plan_teardown(project="shop", env="prod", provider="sandbox", with_data=True, places=[], local=LocalFacts(), servers=["shop-prod-lon1-1"], unreachable={"shop-prod-lon1-1": "stopped"})
    assert keys(plan.remove) == [("server", "shop-prod-lon1-1")] and plan.unreachable == {"shop-prod-lon1-1": "stopped"}
    assert "with everything on it" in plan.remove[0].note


def test_a_plan_that_grew_since_the_question_is_found() -> None:
    local = LocalFacts()
    asked = plan_teardown(project="shop", env="prod", provider="local", with_data=False, places=[PlaceFacts(server="local", containers=(container("shop_prod_api_a"),))], local=local)
    now = plan_teardown(
        project="shop", env="prod", provider="local", with_data=False, places=[PlaceFacts(server="local", containers=(container("shop_prod_api_b"),), network="shop_prod_network")], local=local
    )
    assert keys(grown_beyond(now, asked)) == [("container", "shop_prod_api_b"), ("network", "shop_prod_network")]
    assert grown_beyond(asked, asked) == [] and grown_beyond(plan_teardown(project="shop", env="prod", provider="local", with_data=False, places=[], local=local), asked) == []


# --- a whole teardown on a fake engine -----------------------------------------------------------


class FakeRuntime:
    """The engine's containers, networks, volumes and images, in memory, as DockerRuntime acts."""

    def __init__(self) -> None:
        self.containers: dict[str, ContainerInfo] = {}
        self.networks: set[str] = set()
        self.volume_labels: dict[str, dict[str, str]] = {}
        self.images: dict[str, ImageInfo] = {}
        self.events: list[str] = []

    def list(self, labels: Mapping[str, str], *, all: bool = True) -> list[ContainerInfo]:
        return [c for c in self.containers.values() if all_items(c.labels, labels)]

    def stop(self, name: str, timeout: int = 30) -> None:
        self.events.append(f"stop {name}")

    def remove(self, name: str, *, force: bool = True) -> None:
        self.containers.pop(name, None)

    def has_network(self, name: str) -> bool:
        return name in self.networks

    def remove_network(self, name: str) -> None:
        self.networks.discard(name)

    def volumes(self, labels: Mapping[str, str] | None = None, names: Sequence[str] = ()) -> list[VolumeInfo]:
        return [VolumeInfo(name=n, labels=ls) for n, ls in self.volume_labels.items() if (labels and all_items(ls, labels)) or n in names]

    def remove_volume(self, name: str) -> None:
        self.volume_labels.pop(name, None)

    def image(self, ref: str) -> ImageInfo | None:
        return next((i for i in self.images.values() if ref == i.id or ref in i.tags), None)

    def remove_image(self, ref: str) -> None:
        info = self.image(ref)
        if info is None:
            return
        if any(c.image_id == info.id for c in self.containers.values()):
            raise RuntimeError(f"image {ref} is in use")
        tags = tuple(t for t in info.tags if t != ref)
        if tags:
            self.images[info.id] = ImageInfo(id=info.id, tags=tags, labels=info.labels)
        else:
            del self.images[info.id]


def all_items(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


class FakeServer(Server):
    name = "local"
    zone = "local"
    private_address = public_address = "127.0.0.1"
    tags: ClassVar[dict[str, str]] = {}

    def __init__(self, runtime: FakeRuntime) -> None:
        self._runtime = runtime

    @property
    def data_root(self) -> str:  # type: ignore[override]
        return str(paths.home())

    def runtime(self) -> Any:
        return self._runtime

    def run(self, command: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        raise AssertionError(f"the local teardown runs no command: {command}")

    def docker(self) -> Any:
        raise AssertionError("the teardown reaches the engine through its runtime")

    def put_file(self, remote_path: str, data: bytes, *, mode: int = 0o644) -> None:
        raise AssertionError("nothing is written")

    def get_file(self, remote_path: str) -> bytes:
        raise AssertionError("nothing is read")


class FakeProvider(Provider):
    name = "local"

    def __init__(self, server: FakeServer) -> None:
        self.server = server

    def list_servers(self, project: str, env: str) -> list[Server]:
        return [self.server]

    def create_server(self, project: str, env: str, spec: ServerSpec) -> Server:
        return self.server

    def destroy_server(self, server: Server) -> None:
        raise AssertionError("this machine is never destroyed")


class Router:
    """A routing plugin that records when remove_routing is called, and what ran before it."""

    def __init__(self, provider: FakeProvider, runtime: FakeRuntime) -> None:
        self.provider = provider
        self.runtime = runtime
        self.calls: list[tuple[str, str, list[str]]] = []

    @hookimpl
    def get_provider(self, project: Any, env: str, zone: str) -> Provider:
        return self.provider

    @hookimpl
    def remove_routing(self, server: Server, project: Any, env: str) -> None:
        self.calls.append((server.name, env, sorted(self.runtime.containers)))


@pytest.fixture
def engine(pd_home: Path) -> Iterator[tuple[FakeRuntime, Router, Callable[..., Teardown]]]:
    """shop/prod and shop/staging on one fake engine: prod runs api (image A, also run by
    staging's web) and postgres; an older api image (B) is recorded by prod alone, image C by
    prod's and staging's records; postgres has its data volume; prod's state is under home."""
    runtime = FakeRuntime()
    for info in (
        container("shop_prod_scheduler", role="scheduler", image="sha256:python"),
        container("shop_prod_nginx", role="sidecar", image="sha256:nginx"),
        container("shop_prod_api_b", service="api", slot="b", image="sha256:A"),
        container("shop_prod_postgres", role="stateful", service="postgres", image="sha256:pg"),
        container("shop_prod_api_release", role="release", image="sha256:A", state="exited"),
        container("shop_staging_web_a", env="staging", service="web", slot="a", image="sha256:A"),
        container("other_prod_api_a", project="other", image="sha256:O"),
    ):
        runtime.containers[info.name] = info
    runtime.networks |= {"shop_prod_network", "shop_staging_network"}
    runtime.volume_labels = {"shop_prod_postgres_data": {}, "shop_staging_postgres_data": {LABEL_PROJECT: "shop", LABEL_ENV: "staging"}}
    built = {LABEL_PROJECT: "shop", LABEL_SERVICE: "api"}
    runtime.images = {
        "sha256:A": ImageInfo(id="sha256:A", tags=("shop-api:1.0",), labels=built),
        "sha256:B": ImageInfo(id="sha256:B", tags=(), labels=built),
        "sha256:C": ImageInfo(id="sha256:C", tags=("shop-worker:1.0",), labels=built),
        "sha256:pg": ImageInfo(id="sha256:pg", tags=("pd-test/postgres:15",)),
        "sha256:O": ImageInfo(id="sha256:O", tags=("other-api:1.0",), labels={LABEL_PROJECT: "other"}),
    }
    for env, ids in (("prod", ("sha256:B", "sha256:A", "sha256:C")), ("staging", ("sha256:C",))):
        history = ReleaseHistory("shop", env)
        for n, image_id in enumerate(ids):
            history.record(Release(id=f"r{n}", service="api", version="1.0", image="shop-api:1.0", image_id=image_id, config_hash="h", secrets_version="s", deployed_at=0.0))
    prod = paths.env_dir("shop", "prod")
    (prod / "config" / "ports.json").write_text("{}")
    (prod / "config" / "app.ini").write_text("mine")
    for rel, text in (("run/shop_prod_api_b/pgpass", "x"), ("scheduler/jobs.json", "{}"), ("backups/postgres/postgres_1.dump", "dump"), ("secrets/postgres/postgres_password", "pw")):
        (prod / rel).parent.mkdir(parents=True, exist_ok=True)
        (prod / rel).write_text(text)
    (pd_home / "git_checkouts" / "shop" / "prod" / "api").mkdir(parents=True)

    server = FakeServer(runtime)
    router = Router(FakeProvider(server), runtime)
    manager = load_plugins(make_plugin_manager(), env={})
    manager.register(router, name="test-router")
    project = build_project(
        {
            "project": {"name": "shop"},
            "environments": {"prod": {"provider": "local"}, "staging": {"provider": "local"}},
            "services": {"postgres": {"type": "postgres"}, "api": {"type": "python", "port": 8000}},
        },
        source="shop.toml",
        registry=build_registry(manager),
    )
    lines: list[str] = []

    def make(env: str = "prod") -> Teardown:
        return Teardown(Environment(project, env, manager, build_registry(manager), log=lines.append), log=lines.append)

    yield runtime, router, make


def test_a_teardown_removes_the_environment_and_nothing_of_anyone_else(engine: tuple[FakeRuntime, Router, Callable[..., Teardown]], pd_home: Path) -> None:
    runtime, router, make = engine
    prod = paths.env_dir("shop", "prod")
    report = make().run()

    # Every container with prod's labels went, whatever its name; the scheduler before the router.
    assert sorted(runtime.containers) == ["other_prod_api_a", "shop_staging_web_a"]
    assert runtime.events[0] == "stop shop_prod_scheduler"
    assert router.calls == [("local", "prod", ["other_prod_api_a", "shop_prod_api_b", "shop_prod_api_release", "shop_prod_nginx", "shop_prod_postgres", "shop_staging_web_a"])]
    assert runtime.networks == {"shop_staging_network"}
    # Image A runs in staging and C is in staging's records: kept. B was prod's alone: gone.
    # Base images and other projects' images are never touched.
    assert sorted(runtime.images) == ["sha256:A", "sha256:C", "sha256:O", "sha256:pg"]
    kept = {i.name: i.note for i in report.plan.keep}
    assert "used by container shop_staging_web_a (shop/staging)" in kept["shop-api:1.0"]
    assert "releases of shop/staging" in kept["shop-worker:1.0"]
    # The data stays (found by name: a volume made before volumes were labelled), and says where.
    assert set(runtime.volume_labels) == {"shop_prod_postgres_data", "shop_staging_postgres_data"}
    assert [(i.kind, i.name) for i in report.plan.kept_data] == [("volume", "shop_prod_postgres_data"), ("directory", str(prod / "backups"))]
    # State gone; data, your files and secrets kept; the lock file too is gone.
    assert not (prod / "config" / "ports.json").exists() and not (prod / "config" / "releases.json").exists()
    assert not (prod / "run").exists() and not (prod / "scheduler").exists() and not (pd_home / "git_checkouts" / "shop" / "prod").exists()
    assert (prod / "backups" / "postgres" / "postgres_1.dump").read_text() == "dump"
    assert (prod / "config" / "app.ini").read_text() == "mine" and (prod / "secrets" / "postgres" / "postgres_password").read_text() == "pw"
    assert not (prod / "deploy.lock").exists()
    assert ReleaseHistory("shop", "staging").load()  # another environment's records are its own
    assert not report.failed and {i.name for i in report.removed} >= {"shop_prod_api_release", "shop_prod_network", "shop_prod_nginx", "B"}

    # Idempotent: nothing left to remove, the data still named; no lock file left behind.
    again = make().run()
    assert again.plan.empty and again.removed == () and [i.name for i in again.plan.kept_data] == ["shop_prod_postgres_data", str(prod / "backups")]
    assert not (prod / "deploy.lock").exists()


def test_with_data_the_volume_and_backups_go_and_staging_keeps_its_own(engine: tuple[FakeRuntime, Router, Callable[..., Teardown]]) -> None:
    runtime, _, make = engine
    prod = paths.env_dir("shop", "prod")
    make().run(with_data=True)
    assert set(runtime.volume_labels) == {"shop_staging_postgres_data"}
    assert not (prod / "backups").exists()
    assert (prod / "secrets" / "postgres" / "postgres_password").exists()
    assert make().run(with_data=True).plan.empty


def test_a_dry_run_changes_nothing(engine: tuple[FakeRuntime, Router, Callable[..., Teardown]]) -> None:
    runtime, router, make = engine
    before = (dict(runtime.containers), set(runtime.networks), dict(runtime.images), dict(runtime.volume_labels))
    plan = make().plan(with_data=True)
    assert ("container", "shop_prod_api_release") in keys(plan.remove) and ("volume", "shop_prod_postgres_data") in keys(plan.remove)
    assert (dict(runtime.containers), set(runtime.networks), dict(runtime.images), dict(runtime.volume_labels)) == before
    assert router.calls == [] and not (paths.env_dir("shop", "prod") / "deploy.lock").exists()


def test_more_to_remove_than_agreed_changes_nothing(engine: tuple[FakeRuntime, Router, Callable[..., Teardown]]) -> None:
    runtime, router, make = engine
    agreed = make().plan()
    runtime.containers["shop_prod_api_a"] = container("shop_prod_api_a", service="api", slot="a", image="sha256:A")  # a deploy ran
    with pytest.raises(TeardownError, match=r"changed since you were asked \(now also: container shop_prod_api_a\); nothing was changed"):
        make().run(agreed=agreed)
    assert "shop_prod_scheduler" in runtime.containers and router.calls == []
    # Agreeing to keep the data is not agreeing to delete it.
    with pytest.raises(TeardownError, match="changed since you were asked"):
        make().run(with_data=True, agreed=make().plan())


def test_an_unknown_environment_is_refused_and_nothing_is_made(engine: tuple[FakeRuntime, Router, Callable[..., Teardown]], pd_home: Path) -> None:
    _, router, make = engine
    with pytest.raises(UnknownEnvironment, match=r"environment 'prdo' of project shop is unknown: .*\(environments: prod, staging\)") as caught:
        make("prdo").run()
    assert caught.value.exit_code == 2 and len(str(caught.value).splitlines()) == 1
    assert not (pd_home / "shop" / "prdo").exists() and router.calls == []


def test_the_deploy_lock_is_held_and_a_running_deploy_stops_the_teardown(engine: tuple[FakeRuntime, Router, Callable[..., Teardown]]) -> None:
    runtime, router, make = engine
    with deploy_lock(paths.env_dir("shop", "prod") / "deploy.lock"), pytest.raises(DeployLocked, match="another deploy is running"):
        make().run()
    assert "shop_prod_scheduler" in runtime.containers and router.calls == []


# --- the lock file it removes while holding it ---------------------------------------------------


def _open_fds(path: Path) -> int:
    """How many descriptors of this process are open on ``path`` (deleted or not)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target in (str(path), f"{path} (deleted)")
    return count


def test_a_waiter_never_holds_a_deleted_lock_file_beside_a_new_holder(tmp_path: Path) -> None:
    path = tmp_path / "deploy.lock"
    acquired = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            with deploy_lock(path, wait=30):
                acquired.set()
                release.wait(30)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            acquired.set()

    with deploy_lock(path):
        thread = threading.Thread(target=waiter)
        thread.start()
        deadline = threading.Event()
        for _ in range(3000):  # the waiter has opened the file (polling a condition, not a guess)
            if _open_fds(path) == 2:
                break
            deadline.wait(0.01)
        assert _open_fds(path) == 2
        path.unlink()  # what destroy does, holding the lock
    assert acquired.wait(30) and not errors
    # The waiter holds the file now at the path, so a newcomer is refused.
    with pytest.raises(DeployLocked), deploy_lock(path):
        pass
    release.set()
    thread.join(30)


# --- the command line ------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTDEPLOYER_")}
    env["PROJECTDEPLOYER_HOME"] = str(tmp_path / "home")
    (tmp_path / "shop.toml").write_text('[project]\nname = "shop"\n\n[environments.prod]\nprovider = "local"\n\n[services.postgres]\ntype = "postgres"\n')

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN), "-f", str(tmp_path / "shop.toml"), *args], env=env, cwd=tmp_path, text=True, capture_output=True, stdin=subprocess.DEVNULL)

    return run


def test_cli_refuses_an_unknown_environment_in_one_line(cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    proc = cli("destroy", "--env", "prdo", "--yes")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: environment 'prdo' of project shop is unknown: it is not in the project file (environments: prod)")
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "home" / "shop" / "prdo").exists()


def test_cli_refuses_to_ask_without_a_terminal_and_changes_nothing(cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    proc = cli("destroy", "--env", "prod")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "error: destroy --env prod: stdin is not a terminal, so there is no one to ask: pass --yes to remove what 'destroy --env prod --dry-run' lists; nothing was changed\n"
    assert not (tmp_path / "home" / "shop" / "prod").exists()


def test_cli_needs_the_environment_named(cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    proc = cli("destroy", "--yes")
    assert proc.returncode == 2 and proc.stderr.startswith("error: Missing option '--env'") and len(proc.stderr.splitlines()) == 1
