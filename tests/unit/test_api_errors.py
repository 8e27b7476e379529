"""A caller's mistakes in the Python API are ``ConfigError``s naming the argument, never a
``TypeError``/``AttributeError`` from deep inside, and nothing is written when they happen."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from projectdeployer import ConfigError, ProjectDeployer, ProjectExists, ProjectNotFound

pytestmark = pytest.mark.unit


@pytest.fixture
def shop() -> ProjectDeployer:
    project = ProjectDeployer.create("shop")
    project.add_postgres().add_python_service("api", port=8000, depends_on=["postgres"])
    return project


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


Call = Callable[[ProjectDeployer], Any]

#: (id, call, fragment that must be in the one line). Each names the argument it refuses.
CASES: list[tuple[str, Call, str]] = [
    ("create-none", lambda p: ProjectDeployer.create(None), "create(name=None): expected a project name, a string, got None"),
    ("create-int", lambda p: ProjectDeployer.create(42), "create(name=42): expected a project name, a string, got int"),
    ("create-path-escape", lambda p: ProjectDeployer.create("../../etc"), "create(name='../../etc'): not a valid project name"),
    ("create-overwrite-str", lambda p: ProjectDeployer.create("other", overwrite="no"), "create(overwrite='no'): expected True or False"),
    ("create-path-int", lambda p: ProjectDeployer.create("other", path=42), "create(path=42): expected a file path"),
    ("create-setting-object", lambda p: ProjectDeployer.create("other", description=object()), "create(description=...): expected a string, number"),
    ("load-none", lambda p: ProjectDeployer(None), "ProjectDeployer(name=None): expected a project name"),
    ("load-int", lambda p: ProjectDeployer(42), "ProjectDeployer(name=42): expected a project name"),
    ("load-dotdot", lambda p: ProjectDeployer(".."), "ProjectDeployer(name='..'): not a valid project name"),
    ("add-name-int", lambda p: p.add_python_service(123), "add_python_service(name=123): a service name is a string, got int"),
    ("add-type-int", lambda p: p.add(1, "x"), "add(type_name=1): expected a service type's name"),
    ("add-type-list", lambda p: p.add(["python"], "x"), "add(type_name=['python'])"),
    ("env-vars-int-key", lambda p: p.add_python_service("x", env_vars={1: "x"}), "services.x.env_vars: keys must be strings, got int 1"),
    ("env-vars-int-value", lambda p: p.add_python_service("x", env_vars={"A": 1}), "services.x.env_vars.A: expected a string"),
    ("env-vars-secret-int", lambda p: p.add_python_service("x", env_vars={"DB_PASSWORD": 1}), "services.x.env_vars.DB_PASSWORD: expected a string"),
    ("env-vars-list", lambda p: p.add_python_service("x", env_vars=["A=1"]), "services.x.env_vars: expected a table"),
    ("env-vars-none-value", lambda p: p.add_python_service("x", env_vars={"A": None}), "services.x.env_vars.A: None has no TOML form"),
    ("volumes-list", lambda p: p.add_python_service("x", volumes=["a:/b"]), "services.x.volumes: expected a table"),
    ("depends-on-str", lambda p: p.add_python_service("x", depends_on="postgres"), "services.x.depends_on: expected an array"),
    ("depends-on-set", lambda p: p.add_python_service("x", depends_on={"postgres"}), "services.x.depends_on: expected a string, number, boolean, list or table, got set"),
    ("command-object", lambda p: p.add_python_service("x", command=object()), "services.x.command: expected a string, number, boolean, list or table, got object"),
    ("list-item-object", lambda p: p.add_python_service("x", requirements_files=["a.txt", object()]), "services.x.requirements_files[1]: expected a string"),
    ("git-token-int", lambda p: p.add_python_service("x", git_token=5), "services.x.git_token: expected a string"),
    ("unknown-add-method", lambda p: p.add_mysql("db"), "add_mysql: no service type 'mysql' (known types: generic (add_service)"),
    ("update-name-int", lambda p: p.update_service(123, port=1), "update_service(name=123): expected a service name"),
    ("update-unknown", lambda p: p.update_service("nope", port=1), "services.nope: no such service (services: postgres, api)"),
    ("update-unknown-key", lambda p: p.update_service("api", prot=1), "services.api.prot: a python service has no setting 'prot' (did you mean 'port'?)"),
    ("update-bad-type", lambda p: p.update_service("api", port="x"), "services.api.port: expected an integer"),
    ("update-env-int-key", lambda p: p.update_service("api", env_vars={1: "x"}), "services.api.env_vars: keys must be strings"),
    ("update-nested-none", lambda p: p.update_service("api", auto_scaling={"vertical": {"cpu_scale_up": None}}), "services.api.auto_scaling.vertical.cpu_scale_up: None has no TOML form"),
    ("delete-unknown", lambda p: p.delete_service("nope"), "services.nope: no such service (services: postgres, api)"),
    ("delete-int", lambda p: p.delete_service(123), "delete_service(name=123): expected a service name"),
    ("deploy-env-escape", lambda p: p.deploy(env="../x", dry_run=True), "deploy(env='../x'): not an environment name"),
    ("deploy-env-int", lambda p: p.deploy(env=1), "deploy(env=1): expected an environment name, a string, got int"),
    ("deploy-service-unknown", lambda p: p.deploy(service="nope"), "deploy(service='nope'): no such service (services: postgres, api)"),
    ("deploy-service-int", lambda p: p.deploy(service=5), "deploy(service=5): expected a service name"),
    ("deploy-build-str", lambda p: p.deploy(build="no"), "deploy(build='no'): expected True or False"),
    ("deploy-lock-wait-negative", lambda p: p.deploy(lock_wait=-1), "deploy(lock_wait=-1): expected seconds"),
    ("plan-service-unknown", lambda p: p.plan("dev", "nope"), "plan(service='nope'): no such service"),
    ("plan-env-upper", lambda p: p.plan("Prod"), "plan(env='Prod'): not an environment name"),
    ("status-env", lambda p: p.status("../x"), "status(env='../x')"),
    ("service-status-env", lambda p: p.service_status("a/b"), "service_status(env='a/b')"),
    ("logs-unknown", lambda p: p.logs("nope"), "logs(service='nope'): no such service"),
    ("logs-lines-str", lambda p: p.logs("api", lines="x"), "logs(lines='x'): expected a number of lines"),
    ("logs-env", lambda p: p.logs("api", env="../../x"), "logs(env='../../x')"),
    ("stream-logs-follow-str", lambda p: p.stream_logs("api", follow="yes"), "stream_logs(follow='yes'): expected True or False"),
    ("run-job-unknown", lambda p: p.run_job("nope"), "run_job(service='nope'): no such service"),
    ("run-job-wait-str", lambda p: p.run_job("api", wait="no"), "run_job(wait='no'): expected True or False"),
    ("rollback-unknown", lambda p: p.rollback("dev", "nope"), "rollback(service='nope'): no such service"),
    ("rollback-env", lambda p: p.rollback("..", "api"), "rollback(env='..')"),
    ("rollback-version-int", lambda p: p.rollback("dev", "api", 3), "rollback(version=3): expected a string"),
    ("ports-env-escape", lambda p: p.ports("../../x"), "ports(env='../../x'): not an environment name"),
    ("services-env-int", lambda p: p.services(1), "services(env=1)"),
    ("startup-orders-env", lambda p: p.startup_orders("../x"), "startup_orders(env='../x')"),
    ("build-services-str", lambda p: p.build(services="api"), "build(services='api'): expected a list of service names"),
    ("build-service-unknown", lambda p: p.build(services=["nope"]), "build(service='nope'): no such service"),
    ("build-push-str", lambda p: p.build(push="yes"), "build(push='yes'): expected True or False"),
    ("cleanup-env", lambda p: p.cleanup_git_checkouts("../x"), "cleanup_git_checkouts(env='../x')"),
]


@pytest.mark.parametrize(("call", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_callers_mistake_is_one_config_error_naming_the_argument(shop: ProjectDeployer, pd_home: Path, call: Call, fragment: str) -> None:
    before = _snapshot(pd_home)
    with pytest.raises(ConfigError) as info:
        call(shop)
    lines = info.value.lines()
    assert len(lines) == 1, lines
    assert fragment in lines[0], lines[0]
    assert info.value.exit_code == 2
    assert _snapshot(pd_home) == before  # nothing written, no directory made for a bad env


def test_unknown_add_method_is_still_an_attribute_error_for_hasattr(shop: ProjectDeployer) -> None:
    assert not hasattr(shop, "add_mysql")
    with pytest.raises(AttributeError, match="'ProjectDeployer' object has no attribute 'nosuch'") as info:
        shop.nosuch  # noqa: B018 - the attribute access is the test
    assert not isinstance(info.value, ConfigError)  # only add_* names a service type


def test_a_huge_argument_gives_a_short_line(shop: ProjectDeployer) -> None:
    with pytest.raises(ConfigError) as info:
        shop.deploy(env="x" * 1_000_000)
    assert len(str(info.value)) < 300


def test_toml_values_of_every_kind_are_still_accepted(shop: ProjectDeployer) -> None:
    """The value check refuses what has no TOML form, nothing else: paths, tuples, floats."""
    shop.add_python_service("x", requirements_files=(Path("requirements.txt"),), env_vars={"A": "1"}, auto_scaling={"vertical": {"cpu_scale_up": 90.0}})
    assert shop.project.services["x"].requirements_files == ["requirements.txt"]
    # update_service: None resets a setting and removes one key of a table, new tables too.
    shop.update_service("x", env_vars={"A": None, "B": "2"}, command=None)
    shop.update_service("api", volumes={"/nowhere": None})
    assert shop.project.services["x"].env_vars == {"B": "2"}
    with pytest.raises(ConfigError, match=r"services\.x\.schedule: expected a string"):
        shop.update_service("x", schedule=datetime.date(2024, 1, 1))  # a TOML value, refused by validation


def test_not_found_and_exists_speak_python_with_the_cli_phrasing_beside(tmp_path: Path) -> None:
    with pytest.raises(ProjectNotFound) as by_name:
        ProjectDeployer("nothere")
    assert "ProjectDeployer.create('nothere')" in str(by_name.value)
    assert by_name.value.cli_lines() == [f"{by_name.value.args[0].split(':')[0]}: no project file (create it with `projectdeployer init nothere`)"]
    missing = tmp_path / "no such.toml"
    with pytest.raises(ProjectNotFound) as by_path:
        ProjectDeployer(str(missing))
    assert f"ProjectDeployer.create(NAME, path='{missing}')" in str(by_path.value)
    assert f"`projectdeployer --file '{missing}' init NAME`" in by_path.value.cli_lines()[0]

    ProjectDeployer.create("shop").add_redis()
    with pytest.raises(ProjectExists) as exists:
        ProjectDeployer.create("shop")
    assert "overwrite=True" in str(exists.value) and "--overwrite" not in str(exists.value)
    assert "--overwrite" in exists.value.cli_lines()[0] and "overwrite=True" not in exists.value.cli_lines()[0]


def test_create_again_replaces_an_empty_project_unless_told_not_to() -> None:
    ProjectDeployer.create("shop")
    ProjectDeployer.create("shop", docker_hub_user="acme")  # the seed's create-again
    with pytest.raises(ProjectExists, match="already exists \\(no services yet\\); pass overwrite=True"):
        ProjectDeployer.create("shop", replace_empty=False)
    assert ProjectDeployer("shop").project.settings.docker_hub_user == "acme"
