"""Every snippet of the seed README that only configures a project runs unchanged (except the
import line) and produces the project file a reader would expect.

The ```python blocks are extracted from the seed at test time and selected by a distinctive
substring, so an edited seed is noticed: each marker must match exactly one block, and every
block that configures a project (create / add_* / update_service / delete_service) must be one
of the selected ones.

Blocks run statement by statement in one namespace per README section, as a reader would run
them one after the other; after every statement the project file is parsed (a "snapshot") and
loaded back, and must equal the in-memory project. Generic checks compare every ``add_*`` /
``update_service`` call's literal arguments with the table it wrote; each block then has its own
assertions about what a reader expects.

The only changes made to the seed's code, each asserted to apply:

- the import line: ``backend.infra.project_deployer`` -> ``projectdeployer``;
- ``.deploy(...)`` calls are removed (a trailing ``.deploy(env="prod")`` at the end of a chain
  keeps the chain), since deploying is not configuration;
- the "Manual startup_order" block writes ``...`` for "the other settings", which is a
  SyntaxError after keyword arguments; it becomes ``image="example/<name>:1"``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from projectdeployer import ProjectDeployer
from projectdeployer.core.model import AutoScaling, HorizontalScaling, VerticalScaling
from projectdeployer.plugins import get_registry
from projectdeployer.project.gitref import parse_git_repo
from projectdeployer.project.validation import auto_env_target

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED = REPO_ROOT.parent / "shared" / "seed" / "000_9eb27d27f05926bb.txt"
SEED_IMPORT = "from backend.infra.project_deployer import ProjectDeployer"
OUR_IMPORT = "from projectdeployer import ProjectDeployer"

#: The fluent methods and the service type each adds (and its default service name).
ADD_METHODS = {
    "add_postgres": ("postgres", "postgres"),
    "add_redis": ("redis", "redis"),
    "add_opensearch": ("opensearch", "opensearch"),
    "add_python_service": ("python", None),
    "add_nodejs_service": ("nodejs", None),
    "add_react_service": ("react", None),
    "add_service": ("generic", None),
}
#: Env vars of the seed whose literal values must become secret references.
SECRET_ENV_KEYS = {"API_KEY"}
CONFIG_CALL = re.compile(r"\.(add_\w+|update_service|delete_service)\(|ProjectDeployer\.create\(")


def seed_blocks() -> list[str]:
    # No skip: CI has the seed at this path, and a missing seed must fail loudly.
    assert SEED.is_file(), f"the seed README is missing: {SEED}"
    blocks = re.findall(r"^```python\n(.*?)^```", SEED.read_text(encoding="utf-8"), re.M | re.S)
    assert blocks, "no ```python blocks found in the seed"
    return blocks


def find_block(marker: str) -> str:
    matches = [b for b in seed_blocks() if marker in b]
    assert len(matches) == 1, f"marker {marker!r} matches {len(matches)} seed blocks (expected 1): the seed changed"
    return matches[0]


# --- adapting and running a block ----------------------------------------------------------------


def replace_import(src: str) -> str:
    return src.replace(SEED_IMPORT, OUR_IMPORT)


def fix_ellipsis(src: str) -> str:
    """``project.add_service("api", startup_order=2, ...)``: ``...`` stands for the other settings."""
    fixed, count = re.subn(r'add_service\("(\w+)", (startup_order=\d+), \.\.\.\)', r'add_service("\1", \2, image="example/\1:1")', src)
    assert count == 2, "the manual startup_order block changed"
    return fixed


def strip_deploys(tree: ast.Module) -> tuple[list[ast.stmt], int]:
    """Drop ``project.deploy(...)`` statements; unwrap ``<chain>.deploy(...)`` to ``<chain>``."""
    body, removed = [], 0
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "deploy":
            removed += 1
            if isinstance(call.func.value, ast.Name):
                continue
            stmt = ast.Expr(value=call.func.value)
            ast.copy_location(stmt, tree.body[0])
            ast.fix_missing_locations(stmt)
        body.append(stmt)
    return body, removed


@dataclass
class Snap:
    """The project file right after one statement."""

    stmt: ast.stmt
    text: str
    data: dict

    def service(self, name: str) -> dict:
        return self.data.get("services", {})[name]


def run_source(src: str, ns: dict, *, name: str) -> tuple[list[Snap], int]:
    """Run ``src`` statement by statement in ``ns``; snapshot and reload the file after each."""
    body, deploys = strip_deploys(ast.parse(src))
    snaps = []
    for i, stmt in enumerate(body):
        code = compile(ast.Module(body=[stmt], type_ignores=[]), f"<seed: {name}, statement {i + 1}>", "exec")
        exec(code, ns)
        project = ns.get("project")
        if not isinstance(project, ProjectDeployer):
            snaps.append(Snap(stmt, "", {}))
            continue
        text = project.path.read_text(encoding="utf-8")
        snaps.append(Snap(stmt, text, tomlkit.parse(text).unwrap()))
        assert ProjectDeployer(project.path).project == project.project, f"statement {i + 1} of {name}: the file does not load back equal"
        check_calls(stmt, snaps[-1])
    return snaps, deploys


# --- generic checks: what each call wrote --------------------------------------------------------


def chain_calls(node: ast.AST) -> list[ast.Call]:
    """The method calls of ``project.a(...).b(...)``, in call order."""
    calls = []
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        calls.append(node)
        node = node.func.value
    return calls[::-1]


def literal_kwargs(call: ast.Call) -> dict[str, Any]:
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def normalise(table: dict) -> dict:
    """Secret references in env_vars become "<secret>" (their names are the store's business)."""
    out = dict(table)
    if "env_vars" in out:
        out["env_vars"] = {k: "<secret>" if isinstance(v, str) and v.startswith("secret:") else v for k, v in out["env_vars"].items()}
    return out


def expected_table(method: str, call: ast.Call) -> tuple[str, dict]:
    type_name, default_name = ADD_METHODS[method]
    name = ast.literal_eval(call.args[0]) if call.args else default_name
    table: dict[str, Any] = {"type": type_name, **literal_kwargs(call)}
    if "git_token" in table:
        table["git_token"] = f"secret:{name}/git_token"
    if "env_vars" in table:
        table["env_vars"] = {k: "<secret>" if k in SECRET_ENV_KEYS else v for k, v in table["env_vars"].items()}
    return name, table


def check_calls(stmt: ast.stmt, snap: Snap) -> None:
    if not isinstance(stmt, ast.Expr):
        return
    services = snap.data.get("services", {})
    seen: set[str] = set()
    for call in chain_calls(stmt.value):
        method = call.func.attr  # type: ignore[union-attr]
        if method in ADD_METHODS:
            name, table = expected_table(method, call)
            seen.add(name)
            assert normalise(services[name]) == table, f"{method}({name!r}) wrote {services[name]!r}"
        elif method == "update_service":
            name = ast.literal_eval(call.args[0])
            for key, value in literal_kwargs(call).items():
                if value is None:
                    assert key not in services[name]
                elif key in ("env_vars", "volumes"):
                    assert {k: v for k, v in services[name][key].items() if k in value} == value
                else:
                    assert services[name][key] == value, key
        elif method == "delete_service":
            assert ast.literal_eval(call.args[0]) not in services
    assert "tk8787" not in snap.text, "a git token reached the project file"


# --- the cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    marker: str
    statements: int
    check: Callable[[list[Snap], dict], None]
    deploys: int = 0
    fix: Callable[[str], str] | None = None
    #: A src bug that stops the block as written: its test is a strict xfail with this reason.
    bug: str | None = None
    #: How a reader gets past the bug so the section's later blocks can run (documented per case).
    workaround: Callable[[str], str] | None = None
    #: Whether the block's own checks still hold with the workaround (then they run that way too).
    checked_with_workaround: bool = True
    imports: bool = False

    def source(self, *, workaround: bool = False) -> str:
        src = find_block(self.marker)
        if self.imports:
            assert SEED_IMPORT in src
        src = replace_import(src)
        if self.fix:
            src = self.fix(src)
        if workaround and self.workaround:
            src = self.workaround(src)
        return src


@dataclass
class Section:
    id: str
    #: Our own setup for blocks that assume an existing project; explained in each comment.
    prelude: str
    cases: Sequence[Case] = field(default_factory=list)


def project_of(ns: dict) -> ProjectDeployer:
    return ns["project"]


def _quick_start_checks(snaps: list[Snap], ns: dict, *, hub_user: str | None) -> None:
    final = snaps[-1].data
    assert final["project"] == ({"name": "myapp", "docker_hub_user": hub_user} if hub_user else {"name": "myapp"})
    assert list(final["services"]) == ["postgres", "redis", "api", "web"]
    api, web = final["services"]["api"], final["services"]["web"]
    assert api["depends_on"] == ["postgres", "redis"] and web["depends_on"] == ["api"]
    assert api["git_token"] == "secret:api/git_token" and web["git_token"] == "secret:web/git_token"
    assert (api["port"], api["servers_count"], api["domain"], api["auto_scaling"]) == (8000, 3, "api.example.com", True)
    project = project_of(ns)
    home = project.path.parent.parent
    assert (home / "myapp" / "secrets" / "api" / "git_token").read_text().strip() == "tk8787"
    assert project.startup_groups() == [["postgres", "redis"], ["api"], ["web"]]
    assert project.project.services["web"].port == 80


def check_quick_start(snaps: list[Snap], ns: dict) -> None:
    assert snaps[0].data == {}  # the import
    _quick_start_checks(snaps, ns, hub_user="myusername")


def check_complete_stack(snaps: list[Snap], ns: dict) -> None:
    _quick_start_checks(snaps, ns, hub_user=None)


def check_creating(snaps: list[Snap], ns: dict) -> None:
    assert [s.data["project"] for s in snaps] == [
        {"name": "myapp"},
        {"name": "myapp", "docker_hub_user": "username"},
        {"name": "myapp", "docker_hub_user": "username", "version": "1.0.0", "default_server_ip": "localhost"},
    ]
    assert all(not s.data.get("services") for s in snaps)


def check_databases(snaps: list[Snap], ns: dict) -> None:
    services = snaps[-1].data["services"]
    assert services == {
        "postgres": {"type": "postgres", "version": "15", "server_zone": "lon1", "servers_count": 1},
        "redis": {"type": "redis", "version": "7-alpine", "servers_count": 1},
        "opensearch": {"type": "opensearch", "version": "2", "servers_count": 1},
    }
    model = project_of(ns).project.services
    assert (model["postgres"].port, model["redis"].port, model["opensearch"].port) == (5432, 6379, 9200)


def check_python(snaps: list[Snap], ns: dict) -> None:
    first_api = snaps[0].service("api")
    assert first_api["git_repo"] == "https://github.com/user/myapp.git@main" and first_api["domain"] == "api.example.com"
    worker = snaps[1].service("worker")
    assert worker["requirements_files"] == ["requirements.txt", "requirements-worker.txt"]
    assert worker["build_context"] == "/path/to/code" and worker["depends_on"] == ["redis"]
    # The Gunicorn block adds "api" again: it replaces the first one entirely.
    assert snaps[2].service("api") == {
        "type": "python",
        "python_version": "3.11",
        "command": "gunicorn app:app --bind 0.0.0.0:8000 --workers 4",
        "port": 8000,
        "build_context": "/path/to/code",
        "servers_count": 3,
    }
    assert list(snaps[2].data["services"]).count("api") == 1
    assert project_of(ns).project.services["worker"].requirements_files == ["requirements.txt", "requirements-worker.txt"]


def check_nodejs(snaps: list[Snap], ns: dict) -> None:
    assert snaps[0].service("api")["command"] == "node server.js"
    assert (snaps[1].service("api")["build_command"], snaps[1].service("api")["command"]) == ("npm run build", "node dist/main.js")
    assert snaps[2].service("web") == {
        "type": "nodejs",
        "build_command": "npm run build",
        "command": "npm start",
        "port": 3000,
        "git_repo": "https://github.com/user/web.git@main",
        "git_token": "secret:web/git_token",
        "servers_count": 3,
    }
    assert snaps[3].service("api")["package_manager"] == "yarn"
    model = project_of(ns).project.services
    assert (model["api"].package_manager, model["api"].node_version, model["web"].package_manager) == ("yarn", "20", "npm")


def check_react(snaps: list[Snap], ns: dict) -> None:
    assert snaps[0].service("web")["depends_on"] == ["api"]
    assert snaps[1].service("web")["build_dir"] == "dist"  # Vue
    assert "depends_on" not in snaps[1].service("web")
    angular = snaps[2].service("web")
    assert (angular["build_dir"], angular["build_command"]) == ("dist/myapp", "npm run build -- --configuration production")
    nginx_config = project_of(ns).project.services["web"].nginx_config
    lines = [line.strip() for line in nginx_config.strip().splitlines()]
    assert lines == [
        "server {",
        "listen 80;",
        "root /usr/share/nginx/html;",
        "location / { try_files $uri $uri/ /index.html; }",
        "location /api { proxy_pass http://api:3000; }",
        "}",
    ]
    assert project_of(ns).project.services["web"].port == 80
    assert project_of(ns).project.services["web"].build_dir == "build"  # the last call gave none


def check_git(snaps: list[Snap], ns: dict) -> None:
    refs = []
    for snap in snaps:
        api = snap.service("api")
        assert (api["type"], api["dockerfile"], api["servers_count"], api["git_token"]) == ("generic", "Dockerfile", 3, "secret:api/git_token")
        repo = parse_git_repo(api["git_repo"])
        refs.append((repo.url, repo.ref, repo.is_commit))
    assert refs == [
        ("https://github.com/user/myapp.git", None, False),
        ("https://github.com/user/myapp.git", "develop", False),
        ("https://github.com/user/myapp.git", "v1.2.3", False),
        ("https://github.com/user/myapp.git", "abc123def", True),
        ("git@github.com:user/private-repo.git", "main", False),
    ]


def check_custom(snaps: list[Snap], ns: dict) -> None:
    from projectdeployer.service_types.dockerfiles import render_dockerfile_content

    content = snaps[0].service("api")["dockerfile_content"]
    assert list(content) == ["1", "2", "3", "4", "5", "6", "7"]
    assert content["1"] == "FROM python:3.11-slim" and content["7"] == "CMD ['python', 'app.py']"
    dockerfile = render_dockerfile_content(project_of(ns).project.services["api"].dockerfile_content)
    assert dockerfile.splitlines() == [
        "FROM python:3.11-slim",
        "WORKDIR /app",
        "COPY requirements.txt .",
        "RUN pip install -r requirements.txt",
        "COPY . .",
        "EXPOSE 8000",
        'CMD ["python", "app.py"]',
    ]
    assert snaps[1].service("worker")["dockerfile"] == "config/Dockerfile.worker"
    assert snaps[2].service("nginx") == {"type": "generic", "image": "nginx:alpine", "servers_count": 1}


def check_scheduled(snaps: list[Snap], ns: dict) -> None:
    (snap,) = snaps
    assert snap.service("cleanup_job")["schedule"] == "0 2 * * *"
    job = project_of(ns).project.services["cleanup_job"]
    assert job.is_scheduled and job.type == "python" and job.command == "python cleanup.py"


def check_multi_zone(snaps: list[Snap], ns: dict) -> None:
    services = snaps[-1].data["services"]
    assert (services["api"]["server_zone"], services["api-us"]["server_zone"]) == ("lon1", "nyc3")
    assert services["api"]["domain"] == services["api-us"]["domain"] == "api.example.com"


def check_dependencies(snaps: list[Snap], ns: dict) -> None:
    project = project_of(ns)
    assert project.startup_orders() == {"postgres": 1, "redis": 1, "api": 2, "worker": 3, "web": 3}
    assert project.startup_groups() == [["postgres", "redis"], ["api"], ["worker", "web"]]
    assert snaps[-1].service("worker")["depends_on"] == ["api", "redis"]


def check_manual_order(snaps: list[Snap], ns: dict) -> None:
    assert [snaps[0].service("postgres")["startup_order"], snaps[1].service("api")["startup_order"], snaps[2].service("worker")["startup_order"]] == [1, 2, 3]
    orders = project_of(ns).startup_orders()
    assert (orders["postgres"], orders["api"], orders["worker"]) == (1, 2, 3)


def check_resources(snaps: list[Snap], ns: dict) -> None:
    api = project_of(ns).project.services["api"]
    assert (api.server_cpu, api.server_memory, api.servers_count) == (2, 4096, 5)


def check_env_vars(snaps: list[Snap], ns: dict) -> None:
    project = project_of(ns)
    env_vars = snaps[-1].service("api")["env_vars"]
    assert env_vars["API_KEY"].startswith("secret:") and env_vars["DEBUG"] == "false" and env_vars["DATABASE_URL"] == "auto"
    assert '"secret"' not in snaps[-1].text
    secret = project.path.parent.parent / "myapp" / "secrets" / env_vars["API_KEY"].removeprefix("secret:")
    assert secret.read_text().strip() == "secret"
    spec = project.project.services["api"]
    assert auto_env_target("DATABASE_URL", spec, project.project, get_registry().service_types) == ("postgres", None)


def check_volumes(snaps: list[Snap], ns: dict) -> None:
    assert project_of(ns).project.services["api"].volumes == {
        "/local/myapp/prod/config/api": "/app/config:ro",
        "/local/myapp/prod/data/api": "/app/data",
    }


def check_backup(snaps: list[Snap], ns: dict) -> None:
    assert snaps[-1].service("postgres") == {"type": "postgres", "version": "15", "backup_config": {"schedule": "0 */6 * * *", "retention_days": 14}}
    backup = project_of(ns).project.services["postgres"].backup_config
    assert (backup.enabled, backup.schedule, backup.retention_days) == (True, "0 */6 * * *", 14)


def check_as_defaults(snaps: list[Snap], ns: dict) -> None:
    assert project_of(ns).project.services["api"].scaling == AutoScaling.all_defaults()
    assert AutoScaling.all_defaults() == AutoScaling(
        vertical=VerticalScaling(cpu_scale_up=75, cpu_scale_down=20, memory_scale_up=80, memory_scale_down=30),
        horizontal=HorizontalScaling(rps_scale_up=500, rps_scale_down=50),
    )


def check_as_custom(snaps: list[Snap], ns: dict) -> None:
    scaling = project_of(ns).project.services["api"].scaling
    assert scaling.vertical == VerticalScaling(cpu_scale_up=80, cpu_scale_down=25, memory_scale_up=85, memory_scale_down=30)
    assert scaling.horizontal == HorizontalScaling(rps_scale_up=1000, rps_scale_down=100)


def check_as_vertical(snaps: list[Snap], ns: dict) -> None:
    scaling = project_of(ns).project.services["api"].scaling
    assert scaling.horizontal is None
    assert scaling.vertical == VerticalScaling(cpu_scale_up=75, cpu_scale_down=20, memory_scale_up=80, memory_scale_down=30)


def check_as_horizontal(snaps: list[Snap], ns: dict) -> None:
    scaling = project_of(ns).project.services["api"].scaling
    assert scaling.vertical is None
    assert scaling.horizontal == HorizontalScaling(rps_scale_up=500, rps_scale_down=50)


def check_as_disable(snaps: list[Snap], ns: dict) -> None:
    assert snaps[-1].service("api")["auto_scaling"] is False
    assert project_of(ns).project.services["api"].scaling is None


def check_update(snaps: list[Snap], ns: dict) -> None:
    api = snaps[-1].service("api")
    assert (api["servers_count"], api["domain"], api["env_vars"]) == (5, "new.example.com", {"DEBUG": "true"})
    # Everything the Quick Start set and the update did not name is kept.
    assert (api["port"], api["git_token"], api["auto_scaling"], api["depends_on"]) == (8000, "secret:api/git_token", True, ["postgres", "redis"])


def check_remove(snaps: list[Snap], ns: dict) -> None:
    assert list(snaps[-1].data["services"]) == ["postgres", "redis", "api", "web"]


def _port_for_dockerfile_content(src: str) -> str:
    # Workaround for the bug below: say which port the Dockerfile EXPOSEs.
    fixed, count = re.subn(r'(\s+)domain="api\.example\.com"\n\)', r'\1domain="api.example.com",\1port=8000\n)', src, count=1)
    assert count == 1
    return fixed


def _skip_block(src: str) -> str:
    # Workaround: the block only adds "api", which the section's next block replaces anyway.
    return "pass\n"


QUICK_START_PRELUDE = f"""
# Blocks that change an existing "api" assume the project of the Quick Start: run it first.
{OUR_IMPORT}
project = ProjectDeployer.create("myapp", docker_hub_user="myusername")
project.add_postgres().add_redis().add_python_service(
    "api", depends_on=["postgres", "redis"], git_repo="https://github.com/user/api.git@main", git_token="tk8787",
    command="uvicorn main:app --host 0.0.0.0", port=8000, servers_count=3, domain="api.example.com", auto_scaling=True,
).add_react_service(
    "web", depends_on=["api"], git_repo="https://github.com/user/web.git@main", git_token="tk8787",
    domain="www.example.com", servers_count=3, auto_scaling=True,
)
"""
CREATE_PRELUDE = f"""
# The block starts from `project`, which the README creates in "Creating a Project".
{OUR_IMPORT}
project = ProjectDeployer.create("myapp")
"""

SECTIONS = [
    Section("quick-start", "", [Case("quick-start", 'ProjectDeployer.create("myapp", docker_hub_user="myusername")', 3, check_quick_start, deploys=1, imports=True)]),
    Section("complete-stack", "", [Case("complete-stack", '       .deploy(env="prod")', 3, check_complete_stack, deploys=1, imports=True)]),
    Section(
        "basic-usage",
        # "Creating a Project" creates it; the "Adding Services" blocks follow on that project.
        f"{OUR_IMPORT}\n",
        [
            Case("creating", "# Create with custom defaults", 3, check_creating),
            Case("databases", "# OpenSearch", 3, check_databases),
            Case("python", "# Worker service with multiple requirements files", 3, check_python),
            Case("nodejs", "# Yarn-based project", 4, check_nodejs),
            Case("react", "# Angular app", 4, check_react),
            Case("git", "# From specific commit", 5, check_git),
            Case(
                "custom",
                "# From Dockerfile content",
                3,
                check_custom,
                workaround=_port_for_dockerfile_content,
            ),
            Case("scheduled", '"cleanup_job"', 1, check_scheduled),
        ],
    ),
    Section("multi-zone", CREATE_PRELUDE, [Case("zones-per-service", '"api-us"', 2, check_multi_zone)]),
    Section(
        "service-configuration",
        f"{OUR_IMPORT}\n",  # "Service Dependencies" creates the project; the blocks after it continue on it.
        [
            Case("dependencies", "# Worker depends on API (automatically gets startup_order=3)", 5, check_dependencies),
            Case("manual-startup-order", "project.add_postgres(startup_order=1)", 3, check_manual_order, fix=fix_ellipsis),
            Case("server-resources", "server_memory=4096", 1, check_resources),
            Case("environment-variables", '"DATABASE_URL": "auto"', 1, check_env_vars),
            Case("volumes", '"/local/myapp/prod/data/api": "/app/data"', 1, check_volumes),
        ],
    ),
    Section("backups", CREATE_PRELUDE, [Case("custom-backup-config", '"retention_days": 14', 1, check_backup)]),
    Section(
        "auto-scaling",
        CREATE_PRELUDE,
        [
            Case("defaults", "auto_scaling=True  # Enables both with default thresholds", 1, check_as_defaults),
            Case(
                "custom-thresholds",
                '"rps_scale_up": 1000',
                1,
                check_as_custom,
                workaround=_skip_block,
                checked_with_workaround=False,
            ),
            Case("only-vertical", 'auto_scaling={\n        "vertical": {\n            "cpu_scale_up": 75,', 1, check_as_vertical),
            Case("only-horizontal", 'auto_scaling={\n        "horizontal": {\n            "rps_scale_up": 500,', 1, check_as_horizontal),
            Case("disabling", 'project.update_service("api", auto_scaling=False)', 1, check_as_disable, deploys=1),
        ],
    ),
    Section("update-service", QUICK_START_PRELUDE, [Case("update-service", 'domain="new.example.com"', 1, check_update, deploys=1)]),
    Section(
        "remove-service",
        QUICK_START_PRELUDE + '# ... and a service called "old-api" to remove.\nproject.add_service("old-api", image="example/old-api:1.0")\n',
        [Case("remove-service", 'project.delete_service("old-api")', 1, check_remove)],
    ),
]


def _params() -> list[Any]:
    params = []
    for section in SECTIONS:
        for index, case in enumerate(section.cases):
            params.append(pytest.param(section, index, False, id=f"{section.id}/{case.id}", marks=[pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else []))
            if case.bug and case.checked_with_workaround:
                params.append(pytest.param(section, index, True, id=f"{section.id}/{case.id}-with-workaround"))
    return params


@pytest.mark.parametrize(("section", "index", "workaround"), _params())
def test_seed_snippet(section: Section, index: int, workaround: bool) -> None:
    ns: dict[str, Any] = {"__name__": "seed_snippet"}
    exec(compile(section.prelude, f"<prelude: {section.id}>", "exec"), ns)
    for earlier in section.cases[:index]:
        run_source(earlier.source(workaround=True), ns, name=earlier.id)
    case = section.cases[index]
    snaps, deploys = run_source(case.source(workaround=workaround), ns, name=case.id)
    assert deploys == case.deploys, f"{case.id}: expected {case.deploys} deploy call(s) removed, found {deploys}"
    assert len(snaps) == case.statements, f"{case.id}: expected {case.statements} statements, got {len(snaps)}: the seed changed"
    case.check(snaps, ns)


def test_every_configuration_block_of_the_seed_is_covered() -> None:
    selected = [find_block(case.marker) for section in SECTIONS for case in section.cases]
    assert len(selected) == len(set(selected)) == 24
    configuring = [b for b in seed_blocks() if CONFIG_CALL.search(b)]
    assert len(configuring) == 24, "a block that configures a project was added to or removed from the seed"
    assert set(configuring) == set(selected)


def test_seed_imports_are_the_ones_we_replace() -> None:
    imports = [line for b in seed_blocks() for line in b.splitlines() if "import ProjectDeployer" in line]
    assert imports and set(imports) == {SEED_IMPORT}


def test_strip_deploys_keeps_the_chain() -> None:
    body, removed = strip_deploys(ast.parse('project.add_redis() \\\n    .deploy(env="prod")\nproject.deploy(env="prod")\nx = 1\n'))
    assert removed == 2
    assert [ast.unparse(s) for s in body] == ["project.add_redis()", "x = 1"]


#: Classes the seed imports that belong to capabilities still to come: they join the package's
#: exports as they land.
LATER_CLASSES = {"NginxConfigGenerator", "HealthMonitor", "ServerInventory", "AutoScalingCoordinator", "DeploymentStateManager"}


def test_the_seeds_public_classes_import_from_the_package() -> None:
    import projectdeployer

    imported = {name for b in seed_blocks() for name in re.findall(r"^from backend\.infra\.\w+ import (\w+)", b, re.M)}
    assert {"ProjectDeployer", "ResourceResolver", "Deployer", "SecretsRotator"} <= imported - LATER_CLASSES
    for name in sorted(imported - LATER_CLASSES):
        assert name in projectdeployer.__all__ and isinstance(getattr(projectdeployer, name), type), name
