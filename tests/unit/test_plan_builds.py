"""``plan`` says what ``deploy`` will do about images (issue 12, item 5): a buildable service whose
input hash changed, or that has no image yet, is ``build+create`` / ``build+update`` with the
hash change, found without building (core/build.py ``ProjectBuilder.check``, the builder's
``image_inputs`` hook), on this machine's one server and on servers (deploy/planner.py).
Fakes only: a fake Docker client for the builder, a fake runtime for the engine."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pluggy
import pytest

from projectdeployer.build.builder import BuildCheck, ProjectBuilder, image_tag
from projectdeployer.cli.deploy_cmds import plan_json, print_plan
from projectdeployer.core.build import INPUTS_LABEL, BuildRequest
from projectdeployer.core.model import Project
from projectdeployer.core.plan import Plan, ServicePlan
from projectdeployer.core.registry import build_registry
from projectdeployer.core.runtime import LABEL_CONFIG, LABEL_SLOT, ContainerInfo
from projectdeployer.default_plugins import docker_builder
from projectdeployer.deploy.deployment import Deployment
from projectdeployer.deploy.planner import _service_plan
from projectdeployer.deploy.server import ServerDeployer
from projectdeployer.environment.environment import Environment
from projectdeployer.plugins import load_plugins, make_plugin_manager
from projectdeployer.project.file import build_project
from tests.support.fakes import RuntimeOnlyServer

pytestmark = pytest.mark.unit

ENV = "dev"
#: The python type's note on a source with a requirements.txt (service_types/pysource.py).
PIP_NOTE = "python: dependencies from requirements.txt with pip (pip install -r)"


class FakeImages:
    """``client.images``: ``get(ref)`` answers images by tag, else raises as docker-py does."""

    def __init__(self) -> None:
        self.by_tag: dict[str, SimpleNamespace] = {}

    def get(self, ref: str) -> SimpleNamespace:
        if ref not in self.by_tag:
            raise LookupError(f"no such image: {ref}")
        return self.by_tag[ref]


class FakeClient:
    def __init__(self) -> None:
        self.images = FakeImages()
        self.api = SimpleNamespace(build=self._no_build)

    @staticmethod
    def _no_build(**kwargs: Any) -> Any:
        raise AssertionError("plan must not build")


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake = FakeClient()
    monkeypatch.setattr(docker_builder, "docker_client", lambda: fake)
    return fake


@pytest.fixture
def manager() -> pluggy.PluginManager:
    return load_plugins(make_plugin_manager(), env={})


def make_project(manager: pluggy.PluginManager, tmp_path: Path, services: dict[str, dict[str, Any]]) -> Project:
    source = tmp_path / "shop.toml"
    return build_project({"project": {"name": "shop"}, "services": services}, source=str(source), registry=build_registry(manager))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "api"
    path.mkdir()
    (path / "app.py").write_text("print('v1')\n")
    (path / "requirements.txt").write_text("")
    return path


def files_under(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


# --- ProjectBuilder.check: the hash a build would label the image with, without building -------


def test_check_says_build_before_the_first_build_and_after_a_source_change(manager: pluggy.PluginManager, client: FakeClient, app: Path, tmp_path: Path, pd_home: Path) -> None:
    project = make_project(manager, tmp_path, {"api": {"type": "python", "build_context": "api"}})
    builder = ProjectBuilder(project, ENV, manager, registry=build_registry(manager), log=lambda line: None)
    first = builder.check("api")
    assert first.needed and first.error is None and first.previous is None
    # The reason also says which file the dependencies come from, as the build log will.
    assert first.inputs and first.reason == f"no image yet (inputs {first.inputs[:12]}); {PIP_NOTE}"

    # The image deploy builds carries that hash: nothing to build, and build_image agrees (reused).
    tag = image_tag(project, "api")
    client.images.by_tag[tag] = SimpleNamespace(id="sha256:img1", labels={INPUTS_LABEL: first.inputs})
    same = builder.check("api")
    assert (same.needed, same.reason, same.inputs, same.previous) == (False, "", first.inputs, first.inputs)
    spec = project.services_for(ENV)["api"]
    chosen = builder._dockerfile(spec, app)
    request = BuildRequest(project="shop", service=spec, context_dir=app, dockerfile=chosen.path, extra_files=chosen.extra, tag=tag, build_args={})
    assert docker_builder.build_image(request) == ("sha256:img1", True)

    (app / "app.py").write_text("print('v2')\n")
    changed = builder.check("api")
    assert changed.needed and changed.previous == first.inputs and changed.inputs != first.inputs
    assert changed.reason == f"inputs {first.inputs[:12]} -> {changed.inputs[:12]}; {PIP_NOTE}"
    # Pure: nothing written to the source or the home directory.
    assert files_under(pd_home) == []
    assert sorted(p.name for p in app.iterdir()) == ["app.py", "requirements.txt"]


def test_check_names_a_missing_build_context_as_the_error_the_build_would_be(manager: pluggy.PluginManager, client: FakeClient, tmp_path: Path) -> None:
    project = make_project(manager, tmp_path, {"api": {"type": "python", "build_context": "nowhere"}})
    check = ProjectBuilder(project, ENV, manager, registry=build_registry(manager), log=lambda line: None).check("api")
    assert check.needed and check.error is not None and "build_context" in check.error and "is not a directory" in check.error


def test_git_services_are_hashed_only_from_a_checkout_at_the_ref(manager: pluggy.PluginManager, client: FakeClient, tmp_path: Path, pd_home: Path) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    project = make_project(
        manager,
        tmp_path,
        {
            "web": {"type": "python", "git_repo": "https://git.example.com/shop/web.git@main"},
            "pinned": {"type": "python", "git_repo": f"https://git.example.com/shop/web.git@{sha}"},
        },
    )
    builder = ProjectBuilder(project, ENV, manager, registry=build_registry(manager), log=lambda line: None)
    assert builder.check("web") == BuildCheck(service="web", needed=True, reason="git ref main not checked out yet")
    assert files_under(pd_home) == []  # no clone, no fetch

    from projectdeployer.core import paths

    for service, head in (("web", "f" * 40), ("pinned", "e" * 40)):
        checkout = paths.git_checkout_dir("shop", ENV, service)
        (checkout / ".git").mkdir(parents=True)
        (checkout / ".git" / "HEAD").write_text(head + "\n")
        (checkout / "app.py").write_text("print('hi')\n")
        (checkout / "requirements.txt").write_text("")
    # A pinned commit the checkout is not at: the deploy checks it out first, inputs unknown.
    assert builder.check("pinned").reason == f"git ref {sha} not checked out yet"
    # A branch is hashed as it was last fetched (plan does not fetch).
    web = builder.check("web")
    assert web.needed and web.inputs and web.reason == f"no image yet (inputs {web.inputs[:12]}); {PIP_NOTE}"
    (paths.git_checkout_dir("shop", ENV, "pinned") / ".git" / "HEAD").write_text(sha + "\n")
    assert builder.check("pinned").inputs


def test_build_checks_cover_the_buildable_services_only(manager: pluggy.PluginManager, client: FakeClient, app: Path, tmp_path: Path) -> None:
    project = make_project(manager, tmp_path, {"api": {"type": "python", "build_context": "api"}, "postgres": {"type": "postgres"}})
    deployment = Deployment(Environment(project, ENV, manager, build_registry(manager), log=lambda line: None))
    assert list(deployment.build_checks()) == ["api"]
    assert list(deployment.build_checks("postgres")) == []


# --- the plan on this machine (one server, this machine's engine) -------------------------------


class FakeRuntime:
    def __init__(self, containers: list[ContainerInfo], images: dict[str, str]) -> None:
        self.containers = containers
        self.images = images

    def list(self, labels: Any, *, all: bool = True) -> list[ContainerInfo]:
        return list(self.containers)

    def list_brief(self, labels: Any) -> list[ContainerInfo]:
        return list(self.containers)

    def image_id(self, ref: str) -> str | None:
        return self.images.get(ref)

    def get(self, name: str) -> ContainerInfo | None:
        return next((c for c in self.containers if c.name == name), None)


def running(name: str, slot: str, config: str) -> ContainerInfo:
    labels = {"io.projectdeployer.service": "api", LABEL_SLOT: slot, LABEL_CONFIG: config}
    return ContainerInfo(id=name, name=name, image_id="sha256:old", labels=labels, state="running", health=None, exit_code=None, started_at="2026-01-01T00:00:00Z")


def engine_for(manager: pluggy.PluginManager, project: Project, containers: list[ContainerInfo], images: dict[str, str]) -> ServerDeployer:
    server = RuntimeOnlyServer(FakeRuntime(containers, images))
    server.local_engine = True  # this machine's engine: no image is sent to it
    engine = ServerDeployer(project, ENV, server, manager, build_registry(manager), log=lambda line: None)
    engine.routed_backends = lambda: set()  # type: ignore[method-assign]  # no sidecar here
    return engine


def plan_here(engine: ServerDeployer, builds: Any = None) -> Plan:
    """The deploy's plan (deploy/planner.py) on the engine's one server, as for this machine."""
    from projectdeployer.deploy.allocation import ServerState, allocate
    from projectdeployer.deploy.planner import plan_fleet

    allocation = allocate(engine.project.services_for(ENV), [ServerState(name=engine.server.name, zone=engine.server.zone)], max_servers=1, zone_of=lambda zone: engine.server.zone)
    return plan_fleet(engine.project, ENV, [engine.server], allocation, lambda server: engine, stateful=(), builds=builds)


def test_engine_plan_before_the_first_deploy_says_build_and_create(manager: pluggy.PluginManager, app: Path, tmp_path: Path) -> None:
    project = make_project(manager, tmp_path, {"api": {"type": "python", "build_context": "api"}})
    engine = engine_for(manager, project, [], {})
    # Without the build step (deploy --no-build --dry-run) a missing image is an error, as before.
    (old,) = plan_here(engine).services
    assert old.action == "error" and "is not on server local" in old.reason and old.build is None
    check = BuildCheck(service="api", needed=True, reason="no image yet (inputs 0123456789ab)", inputs="0123456789ab" * 5)
    (item,) = plan_here(engine, builds={"api": check}).services
    assert (item.action, item.build, item.next_slot, item.image) == ("create", "no image yet (inputs 0123456789ab)", "a", image_tag(project, "api"))
    assert item.reason == "build: no image yet (inputs 0123456789ab); not running"


def test_engine_plan_after_a_source_change_says_build_and_update(manager: pluggy.PluginManager, app: Path, tmp_path: Path) -> None:
    project = make_project(manager, tmp_path, {"api": {"type": "python", "build_context": "api"}})
    tag = image_tag(project, "api")
    probe = engine_for(manager, project, [], {tag: "sha256:old"})
    config = probe.desired(project.services_for(ENV)["api"], "a", probe.ports()).config_hash
    engine = engine_for(manager, project, [running("shop_dev_api_a", "a", config)], {tag: "sha256:old"})
    (unchanged,) = plan_here(engine, builds={"api": BuildCheck(service="api", needed=False, inputs="x", previous="x")}).services
    assert (unchanged.action, unchanged.build) == ("unchanged", None)
    check = BuildCheck(service="api", needed=True, reason="inputs 111111111111 -> 222222222222", inputs="2" * 64, previous="1" * 64)
    (item,) = plan_here(engine, builds={"api": check}).services
    assert (item.action, item.build, item.current_slot, item.next_slot) == ("update", "inputs 111111111111 -> 222222222222", "a", "b")
    assert item.reason == "build: inputs 111111111111 -> 222222222222; new image"
    failing = BuildCheck(service="api", needed=True, error="api: build_context /x is not a directory")
    (error,) = plan_here(engine, builds={"api": failing}).services
    assert (error.action, error.reason) == ("error", "api: build_context /x is not a directory")


def test_a_scheduled_service_to_build_gets_its_job_container_after_the_build(manager: pluggy.PluginManager, app: Path, tmp_path: Path) -> None:
    from projectdeployer.core.containers import JOB_SLOT

    project = make_project(manager, tmp_path, {"report": {"type": "python", "build_context": "api", "schedule": "0 2 * * *"}})
    engine = engine_for(manager, project, [], {})
    check = BuildCheck(service="report", needed=True, reason="no image yet (inputs 0123456789ab)")
    plan = plan_here(engine, builds={"report": check})
    (item,) = plan.services
    assert (item.action, item.build, item.next_slot) == ("create", "no image yet (inputs 0123456789ab)", JOB_SLOT)
    assert plan.scheduler is not None and plan.scheduler.jobs == ("report",)


# --- on servers ---------------------------------------------------------------------------------


class StubEngine:
    """What _service_plan asks of an engine (as tests/unit/test_fleet_plan.py's)."""

    registry = SimpleNamespace(service_types={"python": object()})

    def __init__(self, config: str) -> None:
        self.config = config

    def active_container(self, containers: list[Any], routed: Any = None) -> Any:
        return containers[0] if containers else None

    def desired(self, spec: Any, slot: str, ports: Any) -> Any:
        return SimpleNamespace(config_hash=self.config, spec=SimpleNamespace(image="shop-api:latest"))

    def image_for(self, spec: Any, stype: Any) -> str:
        return "shop-api:latest"


def test_fleet_plan_says_build_where_the_service_runs_or_starts(manager: pluggy.PluginManager) -> None:
    from projectdeployer.service_types.python import PythonSpec

    spec = PythonSpec(name="api", type="python")
    check = BuildCheck(service="api", needed=True, reason="inputs 111111111111 -> 222222222222")
    c1 = SimpleNamespace(name="c1", labels={LABEL_CONFIG: "h1", LABEL_SLOT: "a"}, running=True)
    engines = {"n1": StubEngine("h1"), "n2": StubEngine("h1")}
    # Both servers run the current image: without the build it would be "unchanged".
    item = _service_plan("api", spec, ("n1", "n2"), {"n1": [c1], "n2": [c1]}, engines, {}, {}, 2, False, build=check)
    assert (item.action, item.build, item.image) == ("update", "inputs 111111111111 -> 222222222222", "shop-api:latest")
    assert item.reason == "build: inputs 111111111111 -> 222222222222; new image on n1, n2"
    first = _service_plan("api", spec, ("nyc3#1 (new)",), {}, {}, {}, {}, 2, False, build=BuildCheck(service="api", needed=True, reason="git ref main not checked out yet"))
    assert (first.action, first.build) == ("create", "git ref main not checked out yet")
    assert first.reason == "build: git ref main not checked out yet; to start on new server(s) nyc3#1 (new)"
    none = _service_plan("api", spec, ("n1",), {"n1": [c1]}, engines, {}, {}, 2, False, build=BuildCheck(service="api", needed=False))
    assert (none.action, none.build) == ("unchanged", None)


# --- what the CLI prints ------------------------------------------------------------------------


def test_table_and_json_carry_the_build(capsys: pytest.CaptureFixture[str]) -> None:
    built = ServicePlan(
        service="api",
        action="update",
        reason="build: inputs 111111111111 -> 222222222222; new image",
        group=1,
        stateful=False,
        servers=("local",),
        current_slot="a",
        next_slot="b",
        image="shop-api:latest",
        build="inputs 111111111111 -> 222222222222",
    )
    kept = ServicePlan(service="postgres", action="unchanged", reason="running and up to date", group=0, stateful=True, servers=("local",), image="postgres:15")
    plan = Plan(project="shop", env=ENV, servers=(), services=(kept, built))
    services = plan_json(plan)["services"]
    assert [(s["service"], s["action"], s["build"]) for s in services] == [("postgres", "unchanged", None), ("api", "update", "inputs 111111111111 -> 222222222222")]
    print_plan("plan for shop/dev", plan)
    out = capsys.readouterr().out
    assert "build+update" in out and "111111111111 -> 222222222222" in out and "build+unchanged" not in out

    fleet = Plan(
        project="shop",
        env="prod",
        servers=(),
        services=(
            ServicePlan(
                service="api",
                action="create",
                reason="build: no image yet (inputs 0123456789ab); not running on n1",
                group=1,
                stateful=False,
                servers=("n1",),
                build="no image yet (inputs 0123456789ab)",
            ),
        ),
    )
    assert plan_json(fleet)["services"][0]["build"] == "no image yet (inputs 0123456789ab)"
    print_plan("plan for shop/prod", fleet)
    assert "build+create" in capsys.readouterr().out
