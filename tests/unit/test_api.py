"""The fluent API (``ProjectDeployer``) and the project file it keeps.

What a user relies on: the file written by the API loads back equal, secrets never reach the
file, hand edits (comments, order) survive API edits, ``create`` never destroys work, and the
seed's semantics for updates, startup order, auto-scaling, backups and environments hold.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import tomlkit

from projectdeployer import ConfigError, ProjectDeployer, ProjectDeployerError, ProjectExists, ProjectNotFound
from projectdeployer.core.model import AutoScaling, BackupConfig, HorizontalScaling, VerticalScaling
from projectdeployer.plugins import get_registry
from projectdeployer.project.gitref import GitRepoError, parse_git_repo

pytestmark = pytest.mark.unit


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _quick_start() -> ProjectDeployer:
    """The seed's Quick Start, without the deploy."""
    project = ProjectDeployer.create("myapp", docker_hub_user="myusername")
    project.add_postgres() \
           .add_redis() \
           .add_python_service(
               "api",
               depends_on=["postgres", "redis"],
               git_repo="https://github.com/user/api.git@main",
               git_token="tk8787",
               command="uvicorn main:app --host 0.0.0.0",
               port=8000,
               servers_count=3,
               domain="api.example.com",
               auto_scaling=True
           ) \
           .add_react_service(
               "web",
               depends_on=["api"],
               git_repo="https://github.com/user/web.git@main",
               git_token="tk8787",
               domain="www.example.com",
               servers_count=3,
               auto_scaling=True
           )  # fmt: skip
    return project


# --- the Quick Start and its file ----------------------------------------------------------------


def test_quick_start_file_loads_back_equal(pd_home: Path) -> None:
    project = _quick_start()
    assert project.path == pd_home / "myapp" / "project.toml"
    loaded = ProjectDeployer("myapp")
    assert loaded.project == project.project
    assert list(loaded.project.services) == ["postgres", "redis", "api", "web"]
    api = loaded.project.services["api"]
    assert (api.type, api.port, api.servers_count, api.domain, api.command) == ("python", 8000, 3, "api.example.com", "uvicorn main:app --host 0.0.0.0")
    assert api.depends_on == ["postgres", "redis"]
    assert api.git_repo == "https://github.com/user/api.git@main"
    assert loaded.project.settings.docker_hub_user == "myusername"
    web = loaded.project.services["web"]
    assert (web.type, web.port, web.domain) == ("react", 80, "www.example.com")
    # Databases get their type's defaults.
    assert (loaded.project.services["postgres"].port, loaded.project.services["postgres"].version) == (5432, "15")
    assert loaded.project.services["redis"].port == 6379


def test_quick_start_file_is_plain_toml_with_the_settings(pd_home: Path) -> None:
    project = _quick_start()
    data = tomlkit.parse(project.path.read_text()).unwrap()
    assert data["project"] == {"name": "myapp", "docker_hub_user": "myusername"}
    assert list(data["services"]) == ["postgres", "redis", "api", "web"]
    assert data["services"]["api"]["type"] == "python"
    assert data["services"]["api"]["auto_scaling"] is True
    assert data["services"]["web"]["depends_on"] == ["api"]
    assert set(data) <= {"project", "images", "environments", "services"}


def test_git_token_never_reaches_the_file(pd_home: Path) -> None:
    project = _quick_start()
    text = project.path.read_text()
    assert "tk8787" not in text
    for path in pd_home.rglob("*"):
        if path.is_file() and path.name != "git_token":
            assert b"tk8787" not in path.read_bytes(), path
    data = tomlkit.parse(text).unwrap()
    assert data["services"]["api"]["git_token"] == "secret:api/git_token"
    assert data["services"]["web"]["git_token"] == "secret:web/git_token"
    assert project.project.services["api"].git_token == "secret:api/git_token"


def test_git_token_is_a_private_file(pd_home: Path) -> None:
    _quick_start()
    for service in ("api", "web"):
        secret = pd_home / "myapp" / "secrets" / service / "git_token"
        assert secret.read_text().strip() == "tk8787"
        assert _mode(secret) == 0o600
        assert _mode(secret.parent) == 0o700
    assert _mode(pd_home / "myapp" / "secrets") == 0o700


def test_git_token_reference_is_kept_as_given(pd_home: Path) -> None:
    project = ProjectDeployer.create("myapp")
    project.add_python_service("api", git_repo="https://github.com/user/api.git@main", git_token="env:GITHUB_TOKEN")
    assert tomlkit.parse(project.path.read_text())["services"]["api"]["git_token"] == "env:GITHUB_TOKEN"
    assert not (pd_home / "myapp" / "secrets").exists()


def test_updating_the_git_token_replaces_the_secret(pd_home: Path) -> None:
    project = _quick_start()
    before = project.path.read_text()
    project.update_service("api", git_token="newtoken")
    secret = pd_home / "myapp" / "secrets" / "api" / "git_token"
    assert secret.read_text().strip() == "newtoken"
    assert _mode(secret) == 0o600
    assert project.path.read_text() == before  # the reference did not change
    assert "newtoken" not in project.path.read_text()


def test_env_vars_secrets_become_references(pd_home: Path) -> None:
    project = ProjectDeployer.create("myapp")
    project.add_postgres()
    project.add_python_service("api", env_vars={"API_KEY": "secret", "DEBUG": "false", "DATABASE_URL": "auto"})
    env_vars = tomlkit.parse(project.path.read_text())["services"]["api"]["env_vars"]
    assert env_vars["API_KEY"].startswith("secret:")
    assert env_vars["DEBUG"] == "false"
    assert env_vars["DATABASE_URL"] == "auto"
    assert '"secret"' not in project.path.read_text()
    ref = env_vars["API_KEY"].removeprefix("secret:")
    secret = pd_home / "myapp" / "secrets" / ref
    assert secret.read_text().strip() == "secret"
    assert _mode(secret) == 0o600
    assert ProjectDeployer("myapp").project.services["api"].env_vars == {"API_KEY": f"secret:{ref}", "DEBUG": "false", "DATABASE_URL": "auto"}


@pytest.mark.parametrize("name", ["DB_PASSWORD", "GITHUB_TOKEN", "STRIPE_SECRET", "aws_credentials", "SSH_PRIVATE_KEY"])
def test_secret_looking_env_names_are_protected(name: str) -> None:
    project = ProjectDeployer.create("myapp")
    project.add_python_service("api", env_vars={name: "hunter2"})
    assert "hunter2" not in project.path.read_text()


def test_secret_env_var_updated_through_update_service(pd_home: Path) -> None:
    project = ProjectDeployer.create("myapp")
    project.add_python_service("api", env_vars={"DEBUG": "false"})
    project.update_service("api", env_vars={"API_KEY": "k2"})
    assert "k2" not in project.path.read_text()
    env_vars = project.project.services["api"].env_vars
    assert env_vars["DEBUG"] == "false" and env_vars["API_KEY"].startswith("secret:")
    assert (pd_home / "myapp" / "secrets" / env_vars["API_KEY"].removeprefix("secret:")).read_text().strip() == "k2"


# --- hand edits survive ----------------------------------------------------------------------

HAND_WRITTEN = """\
# Shop: hand written, keep my notes
[project]
name = "shop"  # short name
docker_hub_user = "acme"

# databases first
[services.postgres]
type = "postgres"
version = "15"  # pinned: prod runs 15

[services.cache]
type = "redis"

[services.api]
type = "python"
port = 8000
depends_on = ["postgres"]
env_vars = {DEBUG = "false", LOG = "info"}
command = "uvicorn main:app"

# the site (the api's notes are above it)
[services.web]
type = "react"
build_dir = "dist"
# end of file: keep me
"""


def test_api_edits_keep_comments_and_order(tmp_path: Path) -> None:
    path = tmp_path / "shop.toml"
    path.write_text(HAND_WRITTEN)
    project = ProjectDeployer(path)
    project.add_redis()
    project.update_service("api", port=9000, env_vars={"LOG": None, "WORKERS": "4"})
    project.update_service("postgres", version="16")
    project.delete_service("cache")

    text = path.read_text()
    for comment in (
        "# Shop: hand written, keep my notes",
        "# short name",
        "# databases first",
        "# pinned: prod runs 15",
        "# the site (the api's notes are above it)",
        "# end of file: keep me",
    ):
        assert comment in text, comment
    data = tomlkit.parse(text).unwrap()
    assert list(data) == ["project", "services"]
    assert list(data["project"]) == ["name", "docker_hub_user"]
    assert list(data["services"]) == ["postgres", "api", "web", "redis"]
    assert list(data["services"]["api"]) == ["type", "port", "depends_on", "env_vars", "command"]
    assert data["services"]["api"]["port"] == 9000
    assert data["services"]["api"]["env_vars"] == {"DEBUG": "false", "WORKERS": "4"}
    assert data["services"]["postgres"]["version"] == "16"
    assert "[services.cache]" not in text
    # The comments are still where they were, relative to the tables.
    assert text.index("# databases first") < text.index("[services.postgres]") < text.index("[services.api]")
    assert text.index("[services.api]") < text.index("# the site") < text.index("[services.web]")
    assert ProjectDeployer(path).project == project.project


def test_untouched_parts_of_the_file_are_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "shop.toml"
    path.write_text(HAND_WRITTEN)
    ProjectDeployer(path).add_redis()
    text = path.read_text()
    assert text.startswith(HAND_WRITTEN)
    assert tomlkit.parse(text[len(HAND_WRITTEN) :]).unwrap() == {"services": {"redis": {"type": "redis"}}}


@pytest.mark.xfail(strict=True, reason="BUG: a comment above [services.X] belongs to the previous table in tomlkit, so deleting or replacing the previous service drops it")
@pytest.mark.parametrize("edit", ["delete", "replace"])
def test_comment_above_a_table_survives_edits_of_the_table_before_it(tmp_path: Path, edit: str) -> None:
    path = tmp_path / "shop.toml"
    path.write_text('[project]\nname = "shop"\n\n[services.cache]\ntype = "redis"\n\n# the api: our main service\n[services.api]\ntype = "python"\nport = 8000\n')
    project = ProjectDeployer(path)
    if edit == "delete":
        project.delete_service("cache")
    else:
        project.add_redis("cache", version="7")
    assert "# the api: our main service\n[services.api]" in path.read_text()


# --- create -----------------------------------------------------------------------------------


def test_create_refuses_to_overwrite_a_project_with_services() -> None:
    project = ProjectDeployer.create("myapp")
    project.add_postgres()
    before = project.path.read_bytes()
    mtime = project.path.stat().st_mtime_ns
    with pytest.raises(ProjectExists) as info:
        ProjectDeployer.create("myapp", docker_hub_user="someone")
    assert info.value.exit_code == 2
    assert "overwrite=True" in str(info.value) and "1 service" in str(info.value)
    assert project.path.read_bytes() == before
    assert project.path.stat().st_mtime_ns == mtime


def test_create_refuses_to_overwrite_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("this is not toml [")
    with pytest.raises(ProjectExists):
        ProjectDeployer.create("myapp", path=path)
    assert path.read_text() == "this is not toml ["


def test_create_with_overwrite_replaces() -> None:
    _quick_start()
    project = ProjectDeployer.create("myapp", docker_hub_user="other", overwrite=True)
    assert dict(project.project.services) == {}
    loaded = ProjectDeployer("myapp")
    assert dict(loaded.project.services) == {}
    assert loaded.project.settings.docker_hub_user == "other"


def test_create_three_times_in_a_row_as_the_seed_does() -> None:
    ProjectDeployer.create("myapp")
    ProjectDeployer.create("myapp", docker_hub_user="username")
    project = ProjectDeployer.create("myapp", docker_hub_user="username", version="1.0.0", default_server_ip="localhost")
    settings = ProjectDeployer("myapp").project.settings
    assert (settings.docker_hub_user, settings.version, settings.default_server_ip) == ("username", "1.0.0", "localhost")
    assert settings == project.project.settings


def test_create_defaults() -> None:
    settings = ProjectDeployer.create("myapp").project.settings
    assert (settings.name, settings.docker_hub_user, settings.version, settings.default_server_ip) == ("myapp", None, "latest", "localhost")


@pytest.mark.parametrize("name", ["My App", "", "1app", "a" * 41])
def test_create_rejects_an_invalid_project_name(pd_home: Path, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProjectDeployer.create(name, path=pd_home / "x.toml")
    assert "project.name" in str(info.value)
    assert not (pd_home / "x.toml").exists()


def test_loading_an_unknown_project_says_how_to_create_it() -> None:
    with pytest.raises(ProjectNotFound) as info:
        ProjectDeployer("nothere")
    assert "ProjectDeployer.create('nothere')" in str(info.value)
    assert info.value.exit_code == 2


# --- update_service / delete_service -----------------------------------------------------------


@pytest.fixture
def shop() -> ProjectDeployer:
    project = ProjectDeployer.create("shop")
    project.add_postgres().add_redis()
    project.add_python_service(
        "api",
        depends_on=["postgres", "redis"],
        port=8000,
        command="uvicorn main:app",
        domain="api.example.com",
        env_vars={"DEBUG": "false", "LOG": "info"},
        volumes={"/srv/api": "/app/data"},
        auto_scaling=True,
    )
    return project


def test_update_sets_a_field(shop: ProjectDeployer) -> None:
    shop.update_service("api", servers_count=5, domain="new.example.com")
    for project in (shop, ProjectDeployer("shop")):
        api = project.project.services["api"]
        assert (api.servers_count, api.domain, api.port, api.command) == (5, "new.example.com", 8000, "uvicorn main:app")


def test_update_none_resets_to_the_default(shop: ProjectDeployer) -> None:
    shop.update_service("api", command=None, domain=None, servers_count=None)
    api = ProjectDeployer("shop").project.services["api"]
    assert (api.command, api.domain, api.servers_count) == (None, None, 1)
    assert "command" not in tomlkit.parse(shop.path.read_text())["services"]["api"]


def test_update_merges_env_vars_and_none_removes_a_key(shop: ProjectDeployer) -> None:
    shop.update_service("api", env_vars={"DEBUG": "true", "LOG": None, "NEW": "1"})
    assert ProjectDeployer("shop").project.services["api"].env_vars == {"DEBUG": "true", "NEW": "1"}


def test_update_merges_volumes(shop: ProjectDeployer) -> None:
    shop.update_service("api", volumes={"/srv/cfg": "/app/config:ro"})
    assert ProjectDeployer("shop").project.services["api"].volumes == {"/srv/api": "/app/data", "/srv/cfg": "/app/config:ro"}


def test_update_env_vars_on_a_service_without_any(shop: ProjectDeployer) -> None:
    shop.update_service("postgres", env_vars={"TZ": "UTC"})
    assert ProjectDeployer("shop").project.services["postgres"].env_vars == {"TZ": "UTC"}


def test_update_auto_scaling_false_disables_it(shop: ProjectDeployer) -> None:
    assert shop.project.services["api"].scaling is not None
    shop.update_service("api", auto_scaling=False)
    api = ProjectDeployer("shop").project.services["api"]
    assert api.auto_scaling is False and api.scaling is None


def test_update_keeps_the_type_and_other_services(shop: ProjectDeployer) -> None:
    before = dict(shop.project.services)
    shop.update_service("api", servers_count=2)
    after = ProjectDeployer("shop").project.services
    assert after["api"].type == "python"
    assert after["postgres"] == before["postgres"] and after["redis"] == before["redis"]


def test_update_checks_the_type_specific_fields(shop: ProjectDeployer) -> None:
    with pytest.raises(ConfigError, match="a postgres service has no setting 'python_version'"):
        shop.update_service("postgres", python_version="3.12")
    shop.update_service("api", python_version="3.12")
    assert ProjectDeployer("shop").project.services["api"].python_version == "3.12"


def test_update_unknown_service_is_a_config_error(shop: ProjectDeployer) -> None:
    with pytest.raises(ConfigError, match=r"services\.nope: no such service"):
        shop.update_service("nope", port=1)


def test_delete_service(shop: ProjectDeployer) -> None:
    shop.update_service("api", depends_on=["postgres"])
    shop.delete_service("redis")
    assert list(ProjectDeployer("shop").project.services) == ["postgres", "api"]
    assert list(tomlkit.parse(shop.path.read_text())["services"]) == ["postgres", "api"]


def test_delete_unknown_service_is_a_config_error(shop: ProjectDeployer) -> None:
    before = shop.path.read_bytes()
    with pytest.raises(ConfigError) as info:
        shop.delete_service("old-api")
    assert str(info.value) == f"{shop.path}: services.old-api: no such service (services: postgres, redis, api)"
    assert shop.path.read_bytes() == before


def test_adding_a_service_twice_replaces_it_in_place(shop: ProjectDeployer) -> None:
    shop.add_redis(version="6")
    assert list(shop.project.services) == ["postgres", "redis", "api"]
    assert ProjectDeployer("shop").project.services["redis"].version == "6"


def test_fluent_methods_return_the_project(shop: ProjectDeployer) -> None:
    assert shop.update_service("api", servers_count=2) is shop
    assert shop.add_opensearch() is shop
    assert shop.delete_service("opensearch") is shop


# --- startup order ----------------------------------------------------------------------------


def test_startup_order_from_depends_on() -> None:
    project = ProjectDeployer.create("myapp")
    project.add_postgres().add_redis()
    project.add_python_service("api", depends_on=["postgres", "redis"], command="uvicorn main:app", port=8000, servers_count=3)
    project.add_python_service("worker", depends_on=["api", "redis"], command="python worker.py", servers_count=2)
    project.add_react_service("web", depends_on=["api"], domain="www.example.com")
    assert project.startup_orders() == {"postgres": 1, "redis": 1, "api": 2, "worker": 3, "web": 3}
    assert project.startup_groups() == [["postgres", "redis"], ["api"], ["worker", "web"]]
    assert ProjectDeployer("myapp").startup_groups() == [["postgres", "redis"], ["api"], ["worker", "web"]]


def test_startup_order_is_max_of_dependencies_plus_one() -> None:
    project = ProjectDeployer.create("myapp")
    project.add_postgres()
    project.add_python_service("a", depends_on=["postgres"])
    project.add_python_service("b", depends_on=["a"])
    project.add_python_service("c", depends_on=["postgres", "b"])  # max(1, 3) + 1
    assert project.startup_orders() == {"postgres": 1, "a": 2, "b": 3, "c": 4}


def test_manual_startup_order_overrides() -> None:
    project = ProjectDeployer.create("myapp")
    project.add_postgres(startup_order=1)
    project.add_service("api", startup_order=2, image="example/api:1")
    project.add_service("worker", startup_order=3, image="example/worker:1")
    project.add_service("late", startup_order=7, depends_on=["api"], image="example/late:1")
    project.add_service("next", depends_on=["late"], image="example/next:1")
    assert project.startup_orders() == {"postgres": 1, "api": 2, "worker": 3, "late": 7, "next": 8}
    assert project.startup_groups() == [["postgres"], ["api"], ["worker"], ["late"], ["next"]]


def test_startup_order_in_an_environment(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('[project]\nname = "x"\n[services.postgres]\ntype = "postgres"\n[services.api]\ntype = "python"\n[environments.prod.services.api]\ndepends_on = ["postgres"]\n')
    project = ProjectDeployer(path)
    assert project.startup_groups() == [["postgres", "api"]]
    assert project.startup_groups("prod") == [["postgres"], ["api"]]


# --- auto-scaling and backups ------------------------------------------------------------------


def test_auto_scaling_true_gives_the_seed_defaults() -> None:
    project = ProjectDeployer.create("myapp")
    project.add_python_service("api", command="uvicorn main:app", port=8000, servers_count=2, auto_scaling=True)
    scaling = ProjectDeployer("myapp").project.services["api"].scaling
    assert scaling == AutoScaling(
        vertical=VerticalScaling(cpu_scale_up=75, cpu_scale_down=20, memory_scale_up=80, memory_scale_down=30),
        horizontal=HorizontalScaling(rps_scale_up=500, rps_scale_down=50),
        min_servers=1,
        max_servers=20,
        scale_up_cooldown=300,
        scale_down_cooldown=600,
    )


def test_auto_scaling_only_vertical_merges_over_the_defaults() -> None:
    project = ProjectDeployer.create("myapp")
    project.add_python_service("api", auto_scaling={"vertical": {"cpu_scale_up": 75, "memory_scale_up": 80}})
    scaling = ProjectDeployer("myapp").project.services["api"].scaling
    assert scaling.horizontal is None
    assert scaling.vertical == VerticalScaling(cpu_scale_up=75, cpu_scale_down=20, memory_scale_up=80, memory_scale_down=30)
    assert (scaling.min_servers, scaling.max_servers, scaling.scale_up_cooldown, scaling.scale_down_cooldown) == (1, 20, 300, 600)


def test_auto_scaling_only_horizontal() -> None:
    project = ProjectDeployer.create("myapp")
    project.add_python_service("api", auto_scaling={"horizontal": {"rps_scale_up": 700}})
    scaling = ProjectDeployer("myapp").project.services["api"].scaling
    assert scaling.vertical is None
    assert scaling.horizontal == HorizontalScaling(rps_scale_up=700, rps_scale_down=50)


def test_auto_scaling_off_by_default() -> None:
    project = ProjectDeployer.create("myapp")
    project.add_python_service("api")
    assert project.project.services["api"].scaling is None


def test_auto_scaling_servers_count_outside_bounds() -> None:
    project = ProjectDeployer.create("myapp")
    with pytest.raises(ConfigError, match=r"services\.api\.servers_count: 25 is outside auto_scaling's 1\.\.20"):
        project.add_python_service("api", servers_count=25, auto_scaling=True)


def test_vertical_auto_scaling_on_a_database_is_allowed() -> None:
    project = ProjectDeployer.create("myapp")
    project.add_postgres(auto_scaling={"vertical": {"cpu_scale_up": 90}})
    assert project.project.services["postgres"].scaling.vertical.cpu_scale_up == 90


def test_backup_config_merges_over_defaults() -> None:
    project = ProjectDeployer.create("myapp")
    project.add_postgres(version="15", backup_config={"retention_days": 14})
    backup = ProjectDeployer("myapp").project.services["postgres"].backup_config
    assert backup == BackupConfig(enabled=True, schedule=None, retention_days=14)
    assert get_registry().service_types["postgres"].backup_schedule == "0 2 * * *"  # what schedule=None means


def test_backup_config_custom_as_in_the_seed() -> None:
    project = ProjectDeployer.create("myapp")
    project.add_postgres(version="15", backup_config={"schedule": "0 */6 * * *", "retention_days": 14})
    backup = ProjectDeployer("myapp").project.services["postgres"].backup_config
    assert backup == BackupConfig(enabled=True, schedule="0 */6 * * *", retention_days=14)


def test_default_backup_schedules_are_the_seeds() -> None:
    types = get_registry().service_types
    assert {n: types[n].backup_schedule for n in ("postgres", "redis", "opensearch")} == {
        "postgres": "0 2 * * *",
        "redis": "0 3 * * *",
        "opensearch": "0 4 * * *",
    }


# --- environments ------------------------------------------------------------------------------


def test_environment_override_applies_only_to_that_environment(tmp_path: Path) -> None:
    project = _quick_start()
    with project.path.open("a") as fh:
        fh.write('\n[environments.prod.services.api]\ngit_repo = "https://github.com/user/api.git@v1.2.3"\nservers_count = 5\nenv_vars = {LOG = "warning"}\n')
    project = ProjectDeployer("myapp")
    project.update_service("api", env_vars={"DEBUG": "true", "LOG": "debug"})
    loaded = ProjectDeployer("myapp").project
    prod = loaded.service("api", "prod")
    assert (prod.git_repo, prod.servers_count) == ("https://github.com/user/api.git@v1.2.3", 5)
    assert prod.env_vars == {"DEBUG": "true", "LOG": "warning"}  # merged key by key
    for env in (None, "dev", "staging"):
        api = loaded.service("api", env)
        assert (api.git_repo, api.servers_count, api.env_vars) == ("https://github.com/user/api.git@main", 3, {"DEBUG": "true", "LOG": "debug"})
    assert ProjectDeployer("myapp").services("prod")["api"].git_repo.endswith("@v1.2.3")
    assert loaded.service("web", "prod") == loaded.services["web"]


def test_environment_override_survives_api_edits() -> None:
    project = _quick_start()
    with project.path.open("a") as fh:
        fh.write('\n[environments.prod]\nprovider = "local"\n\n[environments.prod.services.web]\nservers_count = 1\n')
    project.reload()
    project.update_service("web", build_dir="dist")
    project.add_opensearch()
    loaded = ProjectDeployer("myapp").project
    assert loaded.environment("prod").provider == "local"
    assert loaded.service("web", "prod").servers_count == 1
    assert loaded.service("web", "prod").build_dir == "dist"
    assert loaded.service("web").servers_count == 3


# --- where project files live ------------------------------------------------------------------


def test_load_by_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "path" / "to" / "x.toml"
    target.parent.mkdir(parents=True)
    target.write_text('[project]\nname = "xproj"\n\n[services.redis]\ntype = "redis"\n')
    for arg in (str(target), target):
        project = ProjectDeployer(arg)
        assert project.path == target and project.name == "xproj"
    monkeypatch.chdir(tmp_path)
    relative = ProjectDeployer("path/to/x.toml")
    assert relative.name == "xproj"
    relative.add_postgres()
    assert "[services.postgres]" in target.read_text()


def test_create_at_a_path(tmp_path: Path, pd_home: Path) -> None:
    target = tmp_path / "elsewhere" / "deploy.toml"
    project = ProjectDeployer.create("myapp", path=target)
    project.add_redis()
    assert ProjectDeployer(target).project.services["redis"].type == "redis"
    assert not (pd_home / "myapp" / "project.toml").exists()


def test_projects_dir_relocates_project_files(tmp_path: Path, pd_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    projects = tmp_path / "projects"
    monkeypatch.setenv("PROJECTDEPLOYER_PROJECTS_DIR", str(projects))
    project = _quick_start()
    assert project.path == projects / "myapp.toml"
    assert ProjectDeployer("myapp").project == project.project
    assert not (pd_home / "myapp" / "project.toml").exists()
    # Secrets still live under the home, never next to the shareable project file.
    assert (pd_home / "myapp" / "secrets" / "api" / "git_token").read_text().strip() == "tk8787"
    assert sorted(p.name for p in projects.iterdir()) == ["myapp.toml"]


def test_home_is_the_env_var(pd_home: Path) -> None:
    project = ProjectDeployer.create("myapp")
    assert project.path.is_relative_to(pd_home)


# --- git URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "url", "ref", "scheme", "host", "is_commit"),
    [
        ("https://github.com/user/api.git@main", "https://github.com/user/api.git", "main", "https", "github.com", False),
        ("https://github.com/user/myapp.git@develop", "https://github.com/user/myapp.git", "develop", "https", "github.com", False),
        ("https://github.com/user/myapp.git@v1.2.3", "https://github.com/user/myapp.git", "v1.2.3", "https", "github.com", False),
        ("https://github.com/user/myapp.git@abc123def", "https://github.com/user/myapp.git", "abc123def", "https", "github.com", True),
        ("https://github.com/user/myapp.git", "https://github.com/user/myapp.git", None, "https", "github.com", False),
        ("git@github.com:user/private-repo.git@main", "git@github.com:user/private-repo.git", "main", "ssh", "github.com", False),
        ("git@github.com:user/private-repo.git", "git@github.com:user/private-repo.git", None, "ssh", "github.com", False),
        ("file:///srv/x.git@v1", "file:///srv/x.git", "v1", "file", None, False),
        ("ssh://git@host/x.git@dev", "ssh://git@host/x.git", "dev", "ssh", "host", False),
        ("ssh://git@host:2222/x.git@feature/new-ui", "ssh://git@host:2222/x.git", "feature/new-ui", "ssh", "host", False),
    ],
)
def test_git_url_forms_of_the_seed(value: str, url: str, ref: str | None, scheme: str, host: str | None, is_commit: bool) -> None:
    repo = parse_git_repo(value)
    assert (repo.url, repo.ref, repo.scheme, repo.host, repo.is_commit) == (url, ref, scheme, host, is_commit)
    assert str(repo) == value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("ftp://github.com/u/r.git", "unsupported scheme 'ftp'"),
        ("https://u:p@github.com/u/r.git", "credentials"),
        ("https://github.com/u/r.git@", "not a valid branch"),
        ("https://github.com/u/r.git@bad..ref", "not a valid branch"),
        ("https://github.com", "repository path"),
        ("file://host/srv/x.git", "absolute"),
        ("github.com/user/x.git", "expected https://"),
    ],
)
def test_bad_git_urls(value: str, fragment: str) -> None:
    with pytest.raises(GitRepoError, match=fragment):
        parse_git_repo(value)


def test_git_url_forms_load_through_the_api() -> None:
    project = ProjectDeployer.create("myapp")
    for value in ("https://github.com/user/myapp.git", "git@github.com:user/private-repo.git@main", "file:///srv/x.git@v1", "ssh://git@host/x.git@dev"):
        project.add_service("api", git_repo=value, dockerfile="Dockerfile")
        assert ProjectDeployer("myapp").project.services["api"].git_repo == value


# --- plugin service types get a fluent method -----------------------------------------------------


def test_unknown_add_method_is_an_attribute_error() -> None:
    project = ProjectDeployer.create("myapp")
    with pytest.raises(AttributeError, match="add_mysql"):
        project.add_mysql()  # type: ignore[attr-defined]


def test_add_by_type_name() -> None:
    project = ProjectDeployer.create("myapp")
    project.add("redis", "cache", version="7")
    assert ProjectDeployer("myapp").project.services["cache"].type == "redis"


def test_repr_names_the_services() -> None:
    project = ProjectDeployer.create("myapp")
    project.add_redis()
    assert repr(project) == "ProjectDeployer('myapp', services=['redis'])"


def test_reload_picks_up_hand_edits() -> None:
    project = ProjectDeployer.create("myapp")
    with project.path.open("a") as fh:
        fh.write('\n[services.redis]\ntype = "redis"\n')
    assert "redis" not in project.project.services
    assert "redis" in project.reload().project.services


def test_api_edit_after_a_hand_edit_does_not_lose_it() -> None:
    project = ProjectDeployer.create("myapp")
    with project.path.open("a") as fh:
        fh.write('\n[services.redis]\ntype = "redis"\n')
    project.reload().add_postgres()
    assert list(ProjectDeployer("myapp").project.services) == ["redis", "postgres"]


def test_api_edit_on_a_stale_object_does_not_discard_hand_edits() -> None:
    project = ProjectDeployer.create("myapp")
    with project.path.open("a") as fh:
        fh.write('\n[services.redis]\ntype = "redis"  # added by hand in an editor\n')
    try:
        project.add_postgres()  # no reload(): the object was loaded before the edit
    except ProjectDeployerError:
        return  # refusing ("the file changed since it was loaded") is fine too
    assert "added by hand in an editor" in project.path.read_text()
    assert list(ProjectDeployer("myapp").project.services) == ["redis", "postgres"]


def test_no_temporary_files_are_left_behind(pd_home: Path) -> None:
    project = _quick_start()
    project.update_service("api", git_token="t2").delete_service("web")
    leftovers = [p for p in pd_home.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert leftovers == []


def test_update_service_merges_tables_key_by_key() -> None:
    project = ProjectDeployer.create("merge")
    project.add_postgres(backup_config={"schedule": "0 */6 * * *", "retention_days": 14})
    project.add_python_service("api", port=8000, auto_scaling={"vertical": {"cpu_scale_up": 90}, "horizontal": {"rps_scale_up": 900}})
    project.update_service("postgres", backup_config={"retention_days": 30})
    backup = ProjectDeployer("merge").project.services["postgres"].backup_config
    assert (backup.schedule, backup.retention_days) == ("0 */6 * * *", 30)
    project.update_service("api", auto_scaling={"horizontal": None})
    scaling = ProjectDeployer("merge").project.services["api"].scaling
    assert scaling.horizontal is None and scaling.vertical.cpu_scale_up == 90
    project.update_service("api", auto_scaling=False)
    assert ProjectDeployer("merge").project.services["api"].scaling is None


def test_a_token_in_an_https_url_is_refused_and_nothing_is_written() -> None:
    project = ProjectDeployer.create("tok")
    before = project.path.read_bytes()
    with pytest.raises(ConfigError, match=r"services\.api\.git_repo: credentials in the URL are not allowed"):
        project.add_python_service("api", git_repo="https://ghp_abc123@github.com/u/r.git@main")
    assert project.path.read_bytes() == before
    project.add_python_service("api", git_repo="git@github.com:u/r.git@main")  # an ssh user is fine
