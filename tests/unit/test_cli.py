"""The command line, run as a user runs it: a subprocess per command, exit codes and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BIN = Path(sys.executable).with_name("projectdeployer")


@pytest.fixture
def run(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTDEPLOYER_")}
    env["PROJECTDEPLOYER_HOME"] = str(tmp_path / "home")

    def run(*args: str, ok: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(BIN), *args], env=env, cwd=cwd or tmp_path, text=True, capture_output=True)
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    return run


def test_init_add_show_validate_round_trip(run, tmp_path: Path) -> None:
    run("init", "shop", "--docker-hub-user", "acme")
    run("-p", "shop", "add", "postgres")
    run("-p", "shop", "add", "redis", "--version", "7")
    run(
        "-p",
        "shop",
        "add",
        "python",
        "api",
        "--port",
        "8000",
        "--depends-on",
        "postgres,redis",
        "--env-var",
        "DATABASE_URL=auto",
        "--env-var",
        "DEBUG=false",
        "--domain",
        "api.example.com",
        "--auto-scaling",
        "{vertical = {cpu_scale_up = 90}}",
        "--requirements-file",
        "requirements.txt",
        "--requirements-file",
        "requirements-prod.txt",
    )
    run("-p", "shop", "add", "react", "web", "--depends-on", "api", "--build-dir", "dist")
    shown = json.loads(run("-p", "shop", "show", "--json").stdout)
    assert shown["startup_groups"] == [["postgres", "redis"], ["api"], ["web"]]
    api = shown["services"]["api"]
    assert api["env_vars"] == {"DATABASE_URL": "auto", "DEBUG": "false"}
    assert api["requirements_files"] == ["requirements.txt", "requirements-prod.txt"]
    assert api["auto_scaling"]["vertical"]["cpu_scale_up"] == 90
    assert api["auto_scaling"]["vertical"]["cpu_scale_down"] == 20  # merged over the default
    assert api["auto_scaling"]["horizontal"] is None  # only the kinds named are enabled
    assert shown["services"]["redis"]["version"] == "7"
    assert shown["services"]["web"]["port"] == 80
    assert json.loads(run("-p", "shop", "validate", "--json").stdout) == {
        "valid": True,
        "file": str(tmp_path / "home" / "shop" / "project.toml"),
        "problems": [],
        "services": 4,
    }
    table = run("-p", "shop", "show").stdout
    assert "api.example.com" in table and "postgres" in table


def test_bad_file_exits_2_with_one_line_per_problem_and_no_traceback(run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[project]\nname = "x"\n\n[services.api]\ntype = "python"\nport = "8000"\nprot = 1\ndepends_on = ["db"]\nschedule = "* * *"\n')
    before = bad.read_bytes()
    proc = run("-f", str(bad), "validate", ok=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert any(f"{bad}: services.api.port: expected an integer" in line for line in lines)
    assert any("services.api.prot: unknown key (did you mean 'port'?)" in line for line in lines)
    assert len(lines) == 2  # structural problems stop before semantic checks, all of them at once
    assert bad.read_bytes() == before
    as_json = run("-f", str(bad), "validate", "--json", ok=False)
    assert as_json.returncode == 2
    assert len(json.loads(as_json.stdout)["problems"]) == 2


def test_semantic_problems_reported_together(run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[project]\nname = "x"\n\n[services.api]\ntype = "python"\ndepends_on = ["db"]\nschedule = "* * *"\nserver_zone = "mars1"\n')
    proc = run("-f", str(bad), "validate", ok=False)
    assert proc.returncode == 2
    text = proc.stderr
    assert "services.api.depends_on[0]: unknown service 'db'" in text
    assert "services.api.schedule: '* * *' is not a cron schedule: expected 5 fields" in text
    assert "services.api.server_zone: unknown zone 'mars1'" in text


def test_add_refuses_to_replace_without_flag_and_leaves_file(run, tmp_path: Path) -> None:
    run("init", "shop")
    run("-p", "shop", "add", "python", "api", "--port", "8000")
    path = tmp_path / "home" / "shop" / "project.toml"
    before = path.read_bytes()
    proc = run("-p", "shop", "add", "python", "api", "--port", "9000", ok=False)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert path.read_bytes() == before
    run("-p", "shop", "add", "python", "api", "--port", "9000", "--replace")
    assert "port = 9000" in path.read_text()


def test_git_token_never_reaches_the_project_file(run, tmp_path: Path) -> None:
    run("init", "shop")
    run("-p", "shop", "add", "python", "api", "--git-repo", "https://git.example.com/a/api.git@v1", "--git-token", "s3cr3t-token")
    text = (tmp_path / "home" / "shop" / "project.toml").read_text()
    assert "s3cr3t-token" not in text
    assert 'git_token = "secret:api/git_token"' in text
    secret = tmp_path / "home" / "shop" / "secrets" / "api" / "git_token"
    assert secret.read_text().strip() == "s3cr3t-token"
    assert secret.stat().st_mode & 0o777 == 0o600


def test_missing_project_is_one_line(run) -> None:
    proc = run("-p", "nope", "show", ok=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no project file" in proc.stderr
    proc = run("show", ok=False)
    assert proc.returncode == 2 and "pass --project NAME or --file PATH" in proc.stderr


def test_local_project_file_is_found_in_cwd(run, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    run("-f", str(work / "projectdeployer.toml"), "init", "here")
    shown = json.loads(run("show", "--json", cwd=work).stdout)
    assert shown["project"]["name"] == "here"


def test_ports_are_recorded_and_stable(run, tmp_path: Path) -> None:
    run("init", "shop")
    run("-p", "shop", "add", "postgres")
    first = json.loads(run("-p", "shop", "ports", "prod", "--json").stdout)
    run("-p", "shop", "add", "python", "api", "--port", "8000")
    second = json.loads(run("-p", "shop", "ports", "prod", "--json").stdout)
    assert second["postgres"] == first["postgres"]
    assert set(second) == {"postgres", "api"}
    assert (tmp_path / "home" / "shop" / "prod" / "config" / "ports.json").exists()


def test_remove(run, tmp_path: Path) -> None:
    run("init", "shop")
    run("-p", "shop", "add", "redis")
    run("-p", "shop", "remove", "redis")
    assert "services.redis" not in (tmp_path / "home" / "shop" / "project.toml").read_text()
    proc = run("-p", "shop", "remove", "redis", ok=False)
    assert proc.returncode == 2 and "no such service" in proc.stderr


def test_add_help_lists_every_builtin_type_and_type_options(run) -> None:
    out = run("add", "--help").stdout
    for name in ("generic", "nodejs", "opensearch", "postgres", "python", "react", "redis"):
        assert name in out
    react = run("add", "react", "--help").stdout
    assert "--build-dir" in react and "--nginx-config" in react and "--package-manager" in react
    assert "--requirements-file" not in react


def test_help_imports_no_heavy_modules() -> None:
    """--help must stay fast: no project-file machinery, no table renderer, no vendor SDK."""
    code = (
        "import sys; from projectdeployer.cli import make_cli\n"
        "try:\n    make_cli().main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = ('cattrs', 'tomlkit', 'rich', 'jinja2', 'croniter', 'docker', 'pydo', 'cloudflare', 'paramiko')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_broken_plugin_is_named_in_one_line(tmp_path: Path) -> None:
    """A plugin that raises while loading stops the CLI with its name, not a traceback."""
    pkg = tmp_path / "site"
    (pkg / "broken_pd_plugin").mkdir(parents=True)
    (pkg / "broken_pd_plugin" / "__init__.py").write_text("raise RuntimeError('boom at import')\n")
    dist = pkg / "broken_pd_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-pd-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[projectdeployer]\nbroken = broken_pd_plugin\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTDEPLOYER_")}
    env["PYTHONPATH"] = str(pkg)
    proc = subprocess.run([str(BIN), "plugins"], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "plugin 'broken' (broken_pd_plugin) from broken-pd-plugin 1.0 failed to load: RuntimeError: boom at import" in proc.stderr
    # The documented way out: load the plugins without it.
    env["PROJECTDEPLOYER_LOAD_PLUGINS"] = "service_python"
    ok = subprocess.run([str(BIN), "plugins", "--json"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert {p["name"] for p in json.loads(ok.stdout)} == {"secrets_store", "service_type_methods", "service_python"}


# --- errors name flags and commands; mistakes are one line, exit 2, nothing changed ---------------


def _one_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a refused command (exit 2, no traceback, nothing on stdout)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_init_refuses_an_existing_file_naming_the_flag(run, tmp_path: Path) -> None:
    run("init", "shop")
    path = tmp_path / "home" / "shop" / "project.toml"
    before = path.read_bytes()
    line = _one_error(run("init", "shop", "--docker-hub-user", "other", ok=False))
    assert "already exists (no services yet); pass --overwrite to replace it" in line and "overwrite=True" not in line
    run("-p", "shop", "add", "redis")
    before = path.read_bytes()
    line = _one_error(run("init", "shop", ok=False))
    assert "with 1 service(s); pass --overwrite" in line
    assert path.read_bytes() == before
    run("init", "shop", "--overwrite")
    assert "services.redis" not in path.read_text()


def test_missing_file_says_which_command_creates_it(run, tmp_path: Path) -> None:
    line = _one_error(run("-f", "nosuch.toml", "validate", ok=False))
    assert line == "error: nosuch.toml: no project file (create it with `projectdeployer --file nosuch.toml init NAME`)"
    line = _one_error(run("-p", "nosuch", "show", ok=False))
    assert line.endswith("no project file (create it with `projectdeployer init nosuch`)") and "ProjectDeployer" not in line
    # The command it names works.
    run("--file", "nosuch.toml", "init", "shop")
    run("-f", "nosuch.toml", "validate")


def test_project_flag_is_a_name_not_a_path(run) -> None:
    line = _one_error(run("-p", "../other", "show", ok=False))
    assert "-p/--project '../other': not a project name" in line and "-f/--file" in line


def _run_env(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTDEPLOYER_")}
    env["PROJECTDEPLOYER_HOME"] = str(tmp_path / "home")
    env.update(extra)
    return subprocess.run([str(BIN), *args], env=env, cwd=tmp_path, text=True, capture_output=True)


def test_explicit_flags_win_over_environment_variables(run, tmp_path: Path) -> None:
    run("init", "shop")
    run("-f", str(tmp_path / "other.toml"), "init", "other")
    by_flag = _run_env(tmp_path, "-p", "shop", "show", "--json", PROJECTDEPLOYER_FILE=str(tmp_path / "other.toml"))
    assert by_flag.returncode == 0, by_flag.stderr
    assert json.loads(by_flag.stdout)["project"]["name"] == "shop"
    by_file = _run_env(tmp_path, "-f", str(tmp_path / "other.toml"), "show", "--json", PROJECTDEPLOYER_PROJECT="shop")
    assert json.loads(by_file.stdout)["project"]["name"] == "other"
    by_env = _run_env(tmp_path, "show", "--json", PROJECTDEPLOYER_PROJECT="shop")
    assert json.loads(by_env.stdout)["project"]["name"] == "shop"
    line = _one_error(run("-f", str(tmp_path / "other.toml"), "-p", "shop", "show", ok=False))
    assert line == "error: -f/--file and -p/--project name two projects: give one of them"


def test_unknown_hook_is_one_line_naming_the_closest_ones(run) -> None:
    from projectdeployer.plugins import load_plugins

    hooks = [name for name in vars(load_plugins().hook) if not name.startswith("_")]
    line = _one_error(run("plugins", "--hook", "nosuch", ok=False))
    assert line == f"error: --hook: unknown hook 'nosuch' ({len(hooks)} hooks, listed in docs/plugins.md)"
    close = _one_error(run("plugins", "--hook", "health_check", ok=False))
    assert close == "error: --hook: unknown hook 'health_check' (did you mean health_checks?)"
    assert "secrets_store" in run("plugins", "--hook", "store_secret").stdout


def test_add_offers_each_type_only_its_own_options(run) -> None:
    for stateful in ("postgres", "redis", "opensearch"):
        text = run("add", stateful, "--help").stdout
        for option in ("--schedule", "--domain", "--health-path"):
            assert option not in text, (stateful, option)
        assert "--servers-count" in text and "--env-var" in text
    python = run("add", "python", "--help").stdout
    for option in ("--schedule", "--domain", "--health-path", "--auto-scaling"):
        assert option in python
    proc = run("-p", "shop", "add", "postgres", "--schedule", "0 2 * * *", ok=False)
    assert proc.returncode == 2 and "No such option '--schedule'" in proc.stderr


def test_wrong_env_and_service_arguments_are_one_line(run, tmp_path: Path) -> None:
    run("init", "shop")
    run("-p", "shop", "add", "redis")
    home = tmp_path / "home"
    before = sorted(p for p in home.rglob("*"))
    cases = [
        (("ports", "../x"), "Invalid value for 'ENV': '../x': not an environment name"),
        (("deploy", "--env", "../x"), "Invalid value for '--env': '../x': not an environment name"),
        (("plan", "--env", "Prod"), "Invalid value for '--env': 'Prod': not an environment name"),
        (("logs", "nope"), "no service 'nope' in project shop (services: redis)"),
        (("logs", "redis", "-n", "-1"), "Invalid value for '-n' / '--lines': -1 is not in the range 0<=x<=100000"),
        (("rollback", "nope"), "no service 'nope' in project shop (services: redis)"),
        (("run", "nope"), "no service 'nope' in project shop"),
        (("deploy", "--service", "nope"), "no service 'nope' in project shop"),
        (("build", "--service", "nope"), "no service 'nope' in project shop"),
        (("remove", "nope"), "services.nope: no such service (services: redis)"),
    ]
    for args, fragment in cases:
        line = _one_error(run("-p", "shop", *args, ok=False))
        assert fragment in line, (args, line)
        assert "(env=" not in line and "(service=" not in line, line  # no Python in CLI errors
    assert sorted(p for p in home.rglob("*")) == before
