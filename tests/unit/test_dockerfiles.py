"""Tests for Dockerfile generation (projectdeployer.service_types.dockerfiles).

Golden files live in tests/golden/dockerfiles/. After an intended change to a template,
regenerate them and review the diff:

    PD_UPDATE_GOLDEN=1 PYTHONPATH=src .venv/bin/python -m pytest tests/unit/test_dockerfiles.py -q
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from projectdeployer.service_types.dockerfiles import (
    HASHED_ASSET_REGEX,
    NGINX_CONF_PATH,
    POETRY_VERSION,
    PYPROJECT_REQUIREMENTS_PATH,
    UV_VERSION,
    GeneratedBuild,
    PythonInstall,
    default_spa_nginx_config,
    render_dockerfile_content,
    render_nodejs,
    render_python,
    render_react,
)

pytestmark = pytest.mark.unit

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "dockerfiles"
UPDATE_GOLDEN = os.environ.get("PD_UPDATE_GOLDEN") == "1"

PY = "python:3.11-slim"
NODE = "node:18-slim"
NGINX = "nginx:alpine"

# The seed README's examples, verbatim.
SEED_NGINX_CONFIG = """
        server {
            listen 80;
            root /usr/share/nginx/html;
            location / { try_files $uri $uri/ /index.html; }
            location /api { proxy_pass http://api:3000; }
        }
    """
SEED_DOCKERFILE_CONTENT = {
    "1": "FROM python:3.11-slim",
    "2": "WORKDIR /app",
    "3": "COPY requirements.txt .",
    "4": "RUN pip install -r requirements.txt",
    "5": "COPY . .",
    "6": "EXPOSE 8000",
    "7": "CMD ['python', 'app.py']",
}
TWELVE_LINES = {
    # Deliberately not in numeric order, and "10".."12" sort before "2" as strings.
    "12": 'CMD ["python", "-m", "worker"]',
    "1": "FROM python:3.11-slim",
    "10": "USER app",
    "2": "ENV PYTHONUNBUFFERED=1",
    "3": "WORKDIR /app",
    "4": "RUN groupadd --system app && useradd --system --gid app app",
    "5": "COPY requirements.txt .",
    "6": "RUN pip install --no-cache-dir -r requirements.txt",
    "7": "COPY . .",
    "8": "ENV WORKER_CONCURRENCY=4",
    "9": "EXPOSE 8000",
    "11": "HEALTHCHECK --interval=30s CMD ['python', '-c', 'import worker; worker.ping()']",
}


def check_golden(name: str, text: str) -> None:
    """Compare ``text`` with tests/golden/dockerfiles/<name>; rewrite it when PD_UPDATE_GOLDEN=1."""
    path = GOLDEN_DIR / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        return
    assert path.exists(), f"missing golden file {path}: run with PD_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file: if the change is intended, regenerate with PD_UPDATE_GOLDEN=1 and review the diff"


# How the python type installs dependencies, as service_types/pysource.py finds it in a source.
PEP621 = PythonInstall(pyproject=True, requirements_files=(), dependencies=("fastapi>=0.110", "uvicorn[standard]>=0.29 ; python_version >= '3.8'"), install_project=True)
PEP621_APP = PythonInstall(pyproject=True, requirements_files=(), dependencies=("flask>=3",), install_project=False)
PEP621_DYNAMIC = PythonInstall(pyproject=True, requirements_files=(), dependencies=None, install_project=True)
POETRY = PythonInstall(manager="poetry", requirements_files=())
UV = PythonInstall(manager="uv", requirements_files=())
#: What a psycopg2 source build needs on the official image (which has Python's headers).
PSYCOPG_BUILD = ["build-essential", "libpq-dev"]
PSYCOPG_RUN = ["libpq5"]

# name -> the build whose Dockerfile (and extra files) the golden files hold.
GOLDEN_BUILDS: dict[str, Callable[[], GeneratedBuild]] = {
    "python-pep621": lambda: render_python(base_image=PY, install=PEP621, command="uvicorn app.main:app --host 0.0.0.0", port=8000),
    "python-pep621-app": lambda: render_python(base_image=PY, install=PEP621_APP, command="flask run --host 0.0.0.0", port=5000),
    "python-pep621-dynamic": lambda: render_python(base_image=PY, install=PEP621_DYNAMIC, command="myapp serve", port=8000),
    "python-poetry": lambda: render_python(base_image=PY, install=POETRY, command="uvicorn app.main:app --host 0.0.0.0", port=8000),
    "python-uv": lambda: render_python(base_image=PY, install=UV, command="uvicorn app.main:app --host 0.0.0.0", port=8000),
    "python-poetry-psycopg2": lambda: render_python(
        base_image=PY,
        install=POETRY,
        command="gunicorn app:app --bind 0.0.0.0:8000",
        port=8000,
        system_packages=PSYCOPG_RUN,
        build_packages=PSYCOPG_BUILD,
    ),
    "python-requirements-packages": lambda: render_python(
        base_image=PY,
        command="python worker.py",
        port=None,
        system_packages=["libpq5", "ffmpeg"],
        build_packages=PSYCOPG_BUILD,
    ),
    "python-requirements-system-packages": lambda: render_python(
        base_image=PY,
        command="python app.py",
        port=8000,
        system_packages=["libmagic1"],
    ),
    "python-default": lambda: render_python(base_image=PY, command="uvicorn main:app --host 0.0.0.0", port=8000),
    "python-gunicorn-two-requirements": lambda: render_python(
        base_image=PY,
        requirements_files=["requirements.txt", "requirements-worker.txt"],
        command="gunicorn app:app --bind 0.0.0.0:8000 --workers 4",
        port=8000,
    ),
    "python-no-command-no-port": lambda: render_python(base_image=PY, requirements_files=["requirements/base.txt"], command=None, port=None),
    "nodejs-npm": lambda: render_nodejs(base_image=NODE, command="node server.js", port=3000),
    "nodejs-npm-build": lambda: render_nodejs(base_image=NODE, build_command="npm run build", command="node dist/main.js", port=3000),
    "nodejs-yarn": lambda: render_nodejs(base_image=NODE, package_manager="yarn", command="yarn start", port=3000),
    "nodejs-pnpm": lambda: render_nodejs(base_image=NODE, package_manager="pnpm", command="node server.js", port=3000),
    "nodejs-pnpm-build": lambda: render_nodejs(
        base_image=NODE,
        package_manager="pnpm",
        build_command="pnpm build",
        command="node dist/main.js",
        port=3000,
    ),
    "nodejs-native-modules": lambda: render_nodejs(base_image=NODE, command="node server.js", port=3000, system_packages=["libvips42"], build_packages=["python3", "make", "g++"]),
    "nodejs-build-packages": lambda: render_nodejs(base_image=NODE, build_command="npm run build", command="node dist/main.js", port=3000, build_packages=["python3", "make", "g++"]),
    "nodejs-system-packages": lambda: render_nodejs(base_image=NODE, package_manager="pnpm", command="node server.js", port=3000, system_packages=["ffmpeg"]),
    "react-build-packages": lambda: render_react(build_image=NODE, serve_image=NGINX, build_packages=["python3", "make", "g++"]),
    "react-default": lambda: render_react(build_image=NODE, serve_image=NGINX),
    "react-vue": lambda: render_react(build_image=NODE, serve_image=NGINX, build_dir="dist"),
    "react-angular": lambda: render_react(
        build_image=NODE,
        serve_image=NGINX,
        build_dir="dist/myapp",
        build_command="npm run build -- --configuration production",
    ),
    "react-yarn": lambda: render_react(build_image=NODE, serve_image=NGINX, package_manager="yarn", build_dir="dist"),
    "react-custom-nginx": lambda: render_react(build_image=NODE, serve_image=NGINX, nginx_config=SEED_NGINX_CONFIG),
}

# name -> other generated text: dockerfile_content, and the nginx configs of GeneratedBuild.files.
GOLDEN_TEXT: dict[str, Callable[[], str]] = {
    "content-seed.Dockerfile": lambda: render_dockerfile_content(SEED_DOCKERFILE_CONTENT),
    "content-twelve-lines.Dockerfile": lambda: render_dockerfile_content(TWELVE_LINES),
    "spa-default.nginx.conf": default_spa_nginx_config,
    "react-custom-nginx.nginx.conf": lambda: render_react(build_image=NODE, serve_image=NGINX, nginx_config=SEED_NGINX_CONFIG).files[NGINX_CONF_PATH],
    "python-pep621.requirements.txt": lambda: GOLDEN_BUILDS["python-pep621"]().files[PYPROJECT_REQUIREMENTS_PATH],
}


@pytest.mark.parametrize("name", sorted(GOLDEN_BUILDS))
def test_dockerfile_matches_golden(name: str) -> None:
    check_golden(f"{name}.Dockerfile", GOLDEN_BUILDS[name]().dockerfile)


@pytest.mark.parametrize("name", sorted(GOLDEN_TEXT))
def test_text_matches_golden(name: str) -> None:
    check_golden(name, GOLDEN_TEXT[name]())


@pytest.mark.parametrize("name", sorted(n for n in GOLDEN_BUILDS if n.startswith("react")))
def test_react_ships_its_nginx_config(name: str) -> None:
    expected = GOLDEN_TEXT["react-custom-nginx.nginx.conf"]() if name == "react-custom-nginx" else default_spa_nginx_config()
    assert GOLDEN_BUILDS[name]().files == {NGINX_CONF_PATH: expected}


def test_no_stale_golden_files() -> None:
    expected = {f"{name}.Dockerfile" for name in GOLDEN_BUILDS} | set(GOLDEN_TEXT)
    if UPDATE_GOLDEN:
        for stale in {p.name for p in GOLDEN_DIR.iterdir()} - expected:
            (GOLDEN_DIR / stale).unlink()
    assert {p.name for p in GOLDEN_DIR.iterdir()} == expected


# ---------------------------------------------------------------------------------------------
# Properties every generated Dockerfile has, independent of the golden files.

ALL_DOCKERFILES = sorted(GOLDEN_BUILDS)


def _instructions(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line and not line.startswith(("#", " "))]


def _final_stage(dockerfile: str) -> list[str]:
    lines = _instructions(dockerfile)
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return lines[last_from:]


@pytest.mark.parametrize("name", ALL_DOCKERFILES)
def test_no_buildkit_syntax(name: str) -> None:
    # The classic builder (Docker SDK, engine 20.10) rejects or misreads all of these.
    text = GOLDEN_BUILDS[name]().dockerfile
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    assert "<<" not in text  # heredocs
    assert "--mount" not in text
    assert not re.search(r"^(COPY|ADD)\s+--(chmod|link|parents|exclude)", text, re.MULTILINE)


@pytest.mark.parametrize("name", ALL_DOCKERFILES)
def test_output_is_tidy(name: str) -> None:
    build = GOLDEN_BUILDS[name]()
    for text in [build.dockerfile, *build.files.values()]:
        assert text.endswith("\n") and not text.endswith("\n\n")
        assert "\n\n\n" not in text
        assert not text.startswith("\n")
        assert all(line == line.rstrip() for line in text.splitlines())


@pytest.mark.parametrize("name", ALL_DOCKERFILES)
def test_output_is_deterministic(name: str) -> None:
    assert GOLDEN_BUILDS[name]() == GOLDEN_BUILDS[name]()


@pytest.mark.parametrize("name", ALL_DOCKERFILES)
def test_images_come_from_parameters_only(name: str) -> None:
    froms = [line.split()[1] for line in _instructions(GOLDEN_BUILDS[name]().dockerfile) if line.startswith("FROM ")]
    assert froms and set(froms) <= {PY, NODE, NGINX}


@pytest.mark.parametrize("name", [n for n in ALL_DOCKERFILES if n.startswith(("python", "nodejs"))])
def test_final_stage_runs_as_non_root(name: str) -> None:
    text = GOLDEN_BUILDS[name]().dockerfile
    final = _final_stage(text)
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0", "0:0"}
    # The user is created with Debian's passwd tools (no adduser) in the final stage, before USER.
    final_text = text[text.rindex("\nFROM ") :]
    assert "useradd --system --no-log-init --uid 10001 --gid app --create-home app" in final_text
    assert final_text.index("useradd") < final_text.index(f"USER {users[-1]}")
    assert "adduser" not in text
    # The code is not handed to the app user.
    assert "chown" not in text


def test_python_pip_and_layer_order() -> None:
    text = GOLDEN_BUILDS["python-gunicorn-two-requirements"]().dockerfile
    lines = _instructions(text)
    pip = next(i for i, line in enumerate(lines) if "pip install" in line)
    assert "--no-cache-dir" in lines[pip]
    assert "-r requirements.txt -r requirements-worker.txt" in lines[pip]
    copy_reqs = lines.index("COPY requirements.txt requirements-worker.txt ./")
    copy_code = lines.index("COPY . .")
    assert copy_reqs < pip < copy_code
    assert lines[0] == f"FROM {PY}" and "WORKDIR /app" in lines
    assert "ENV PYTHONDONTWRITEBYTECODE=1 \\" in text and "PYTHONUNBUFFERED=1" in text
    assert "EXPOSE 8000" in lines
    assert lines[-1] == 'CMD ["gunicorn", "app:app", "--bind", "0.0.0.0:8000", "--workers", "4"]'


def test_python_index_build_args_are_args_not_env() -> None:
    text = render_python(base_image=PY, command=None, port=None).dockerfile
    lines = _instructions(text)
    pip = next(i for i, line in enumerate(lines) if "pip install" in line)
    for arg in ["PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_FIND_LINKS"]:
        assert lines.index(f"ARG {arg}") < pip
        assert not re.search(rf"^\s*(ENV\s+)?{arg}=", text, re.MULTILINE)


def test_python_without_command_or_port_keeps_image_defaults() -> None:
    lines = _instructions(render_python(base_image=PY, command=None, port=None).dockerfile)
    assert not any(line.startswith(("CMD", "EXPOSE", "ENTRYPOINT")) for line in lines)


def test_python_requirements_keep_their_directories() -> None:
    lines = _instructions(
        render_python(
            base_image=PY,
            requirements_files=["requirements/base.txt", "requirements/prod.txt", "extra.txt"],
            command=None,
            port=None,
        ).dockerfile
    )
    assert "COPY requirements/base.txt requirements/prod.txt requirements/" in lines
    assert "COPY extra.txt ./" in lines
    assert any(line.endswith("-r requirements/base.txt -r requirements/prod.txt -r extra.txt") for line in lines)


def test_python_without_requirements_installs_nothing() -> None:
    text = render_python(base_image=PY, requirements_files=(), command="python app.py", port=None).dockerfile
    assert "pip install" not in text and "COPY . ." in text


def test_python_accepts_one_requirements_file_as_a_string() -> None:
    text = render_python(base_image=PY, requirements_files="reqs.txt", command=None, port=None).dockerfile
    assert "COPY reqs.txt ./" in text and "-r reqs.txt" in text


# ---------------------------------------------------------------------------------------------
# pyproject.toml projects, Poetry, uv and Debian packages


def _stages(dockerfile: str) -> list[list[str]]:
    """The instructions of each stage, in order."""
    stages: list[list[str]] = []
    for line in _instructions(dockerfile):
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


@pytest.mark.parametrize(
    ("install", "lock", "run"),
    [
        (POETRY, "poetry.lock", "/opt/poetry/bin/poetry install --only main --no-root --no-interaction --no-ansi"),
        (UV, "uv.lock", "/opt/uv/bin/uv sync --frozen --no-dev --no-install-project"),
    ],
    ids=["poetry", "uv"],
)
def test_locked_installs_copy_the_lock_before_the_code_in_a_build_stage(install: PythonInstall, lock: str, run: str) -> None:
    text = render_python(base_image=PY, install=install, command="python app.py", port=8000).dockerfile
    build_text, final_text = text.split(f"FROM {PY}\n")
    build, final = _stages(text)
    assert build[0] == f"FROM {PY} AS build" and final[0] == f"FROM {PY}"
    tool = install.manager
    version = POETRY_VERSION if tool == "poetry" else UV_VERSION
    # The tool is pinned (a build arg may pick another) and lives in its own venv, not the app's.
    assert f"ARG {tool.upper()}_VERSION={version}" in build
    assert f'RUN python -m venv /opt/{tool} \\\n    && /opt/{tool}/bin/pip install --no-cache-dir "{tool}==${{{tool.upper()}_VERSION}}"' in build_text
    # venv, then the lock, then the install, all before any code; the tools trust the image's CAs.
    positions = [build_text.index(p) for p in ("RUN python -m venv /venv", f"COPY pyproject.toml {lock} ./", run)]
    assert positions == sorted(positions)
    assert "export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=" in build_text
    assert "COPY . ." not in build  # the dependency layer never waits for the code
    # The final stage gets the environment, never the tool, and runs as the app user.
    assert final.index("COPY --from=build /venv /venv") < final.index("COPY . .") < final.index("USER app")
    assert f"/opt/{tool}" not in final_text
    assert "VIRTUAL_ENV=/venv \\" in final_text and "PATH=/venv/bin:$PATH" in final_text


def test_build_packages_stay_in_the_build_stage_and_system_packages_ship() -> None:
    text = GOLDEN_BUILDS["python-poetry-psycopg2"]().dockerfile
    build_text, final_text = text.split(f"FROM {PY}\n")
    apt = "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends"
    assert f"{apt} libpq5 build-essential libpq-dev \\" in build_text
    assert f"{apt} libpq5 \\" in final_text
    assert "build-essential" not in final_text and "libpq-dev" not in final_text
    # apt's lists are removed in the same layer; the packages come before the dependencies need them.
    assert final_text.count("rm -rf /var/lib/apt/lists/*") == 1
    assert build_text.index("RUN apt-get update") < build_text.index("poetry install")


def test_system_packages_alone_keep_one_stage() -> None:
    text = GOLDEN_BUILDS["python-requirements-system-packages"]().dockerfile
    (stage,) = _stages(text)
    apt = next(i for i, line in enumerate(stage) if line.startswith("RUN apt-get update"))
    assert "libmagic1" in text and apt < stage.index("USER app")
    assert "/venv" not in text  # pip installs into the base image's Python, as without packages


def test_build_packages_with_requirements_use_a_venv_copied_to_the_final_stage() -> None:
    text = GOLDEN_BUILDS["python-requirements-packages"]().dockerfile
    build, final = _stages(text)
    assert "RUN pip install --no-cache-dir -r requirements.txt" in build
    assert "COPY --from=build /venv /venv" in final
    assert not any("pip install" in line for line in final)


def test_duplicate_packages_are_installed_once_in_the_given_order() -> None:
    text = render_python(base_image=PY, command=None, port=None, system_packages=["libpq5", "curl", "libpq5"], build_packages=["gcc", "curl"]).dockerfile
    assert "--no-install-recommends libpq5 curl gcc \\" in text
    assert "--no-install-recommends libpq5 curl \\" in text


def test_pep621_project_installs_its_dependencies_then_the_project() -> None:
    build = GOLDEN_BUILDS["python-pep621"]()
    lines = _instructions(build.dockerfile)
    deps = lines.index(f"RUN pip install --no-cache-dir -r {PYPROJECT_REQUIREMENTS_PATH}")
    assert lines.index(f"COPY {PYPROJECT_REQUIREMENTS_PATH} .projectdeployer/") < deps < lines.index("COPY . .")
    assert lines.index("COPY . .") < lines.index("RUN pip install --no-cache-dir --no-deps .") < lines.index("USER app")
    assert build.files[PYPROJECT_REQUIREMENTS_PATH].splitlines()[1:] == list(PEP621.dependencies or ())


def test_pep621_application_without_build_system_installs_dependencies_only() -> None:
    text = GOLDEN_BUILDS["python-pep621-app"]().dockerfile
    assert f"RUN pip install --no-cache-dir -r {PYPROJECT_REQUIREMENTS_PATH}" in text
    assert "pip install --no-cache-dir --no-deps ." not in text and "pip install --no-cache-dir ." not in text


def test_pep621_with_dynamic_dependencies_installs_the_project_with_them() -> None:
    build = GOLDEN_BUILDS["python-pep621-dynamic"]()
    lines = _instructions(build.dockerfile)
    assert build.files == {}
    assert lines.index("COPY . .") < lines.index("RUN pip install --no-cache-dir .")
    assert "ARG PIP_INDEX_URL" in lines  # pip runs, so the mirror build args are there


def test_pep621_with_build_packages_installs_the_project_in_the_build_stage() -> None:
    text = render_python(base_image=PY, install=PEP621, command=None, port=None, build_packages=["gcc"]).dockerfile
    build, final = _stages(text)
    assert build.index("COPY . .") < build.index("RUN pip install --no-cache-dir --no-deps .")
    assert not any("pip install" in line for line in final)


@pytest.mark.parametrize("bad", ["libpq5;id", "libpq5 gcc", "-o", "Libpq5", "x", "libpq5\nRUN id", "libpq5=15.4", "libpq5:amd64", "libpq5/bookworm", "", 5])
def test_invalid_debian_package_is_named(bad: object) -> None:
    with pytest.raises(ValueError, match="system_packages"):
        render_python(base_image=PY, command=None, port=None, system_packages=[bad])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="build_packages"):
        render_python(base_image=PY, command=None, port=None, build_packages=[bad])  # type: ignore[list-item]


def test_a_string_is_not_a_package_list() -> None:
    with pytest.raises(ValueError, match="expected a list"):
        render_python(base_image=PY, command=None, port=None, system_packages="libpq5")


@pytest.mark.parametrize("bad", ["-r /etc/passwd", "--index-url=https://evil.example.com", "ok\n--index-url x", "# comment", "x # y", ""])
def test_pyproject_dependencies_are_requirement_lines_only(bad: str) -> None:
    install = PythonInstall(pyproject=True, requirements_files=(), dependencies=("flask", bad))
    with pytest.raises(ValueError, match="PEP 508"):
        render_python(base_image=PY, install=install, command=None, port=None)


def test_nodejs_native_modules_build_in_a_stage_that_does_not_ship() -> None:
    text = GOLDEN_BUILDS["nodejs-native-modules"]().dockerfile
    build_text, final_text = text.split(f"FROM {NODE}\n")
    build, final = _stages(text)
    assert "--no-install-recommends libvips42 python3 make g++ \\" in build_text
    assert "--no-install-recommends libvips42 \\" in final_text and "g++" not in final_text
    # Production dependencies only (no build step), installed where the compilers are.
    install = next(i for i, line in enumerate(build) if "npm ci --omit=dev" in line)
    assert build.index("ENV NODE_ENV=production") < install
    assert final.index("COPY --from=build /app/node_modules ./node_modules") < final.index("COPY . .") < final.index("USER app")
    assert not any("npm ci" in line for line in final)


def test_nodejs_build_packages_join_the_existing_build_stage() -> None:
    text = GOLDEN_BUILDS["nodejs-build-packages"]().dockerfile
    build_text, final_text = text.split(f"FROM {NODE}\n")
    assert "--no-install-recommends python3 make g++ \\" in build_text
    assert build_text.index("apt-get install") < build_text.index("npm ci") < build_text.index("RUN npm run build")
    assert "apt-get" not in final_text and "COPY --from=build /app /app" in final_text


def test_nodejs_system_packages_alone_keep_one_stage() -> None:
    (stage,) = _stages(GOLDEN_BUILDS["nodejs-system-packages"]().dockerfile)
    apt = next(i for i, line in enumerate(stage) if line.startswith("RUN apt-get update"))
    assert apt < stage.index("RUN corepack enable") < stage.index("COPY . .")


def test_react_build_packages_stay_in_the_node_stage() -> None:
    text = GOLDEN_BUILDS["react-build-packages"]().dockerfile
    build_text, final_text = text.split(f"FROM {NGINX}\n")
    assert "--no-install-recommends python3 make g++ \\" in build_text and "apt-get" not in final_text


def test_unknown_python_package_manager_is_named() -> None:
    with pytest.raises(ValueError, match="'pipenv'"):
        render_python(base_image=PY, install=PythonInstall(manager="pipenv"), command=None, port=None)


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("python app.py", ["python", "app.py"]),
        ("uvicorn main:app --host 0.0.0.0", ["uvicorn", "main:app", "--host", "0.0.0.0"]),
        ("python -c 'print(\"hi there\")'", ["python", "-c", 'print("hi there")']),
        ("python -c 'import app; app.run()'", ["python", "-c", "import app; app.run()"]),
        ('echo "a|b" \\$HOME', ["echo", "a|b", "$HOME"]),
        # Shell syntax keeps its meaning through /bin/sh -c.
        (
            "python migrate.py && gunicorn app:app",
            ["/bin/sh", "-c", "python migrate.py && gunicorn app:app"],
        ),
        (
            "gunicorn app:app --bind 0.0.0.0:$PORT",
            ["/bin/sh", "-c", "gunicorn app:app --bind 0.0.0.0:$PORT"],
        ),
        ("DEBUG=1 python app.py", ["/bin/sh", "-c", "DEBUG=1 python app.py"]),
        ('echo "$HOME"', ["/bin/sh", "-c", 'echo "$HOME"']),
        ("python app.py > /tmp/log", ["/bin/sh", "-c", "python app.py > /tmp/log"]),
    ],
)
def test_cmd_is_json_exec_form(command: str, argv: list[str]) -> None:
    lines = _instructions(render_python(base_image=PY, command=command, port=None).dockerfile)
    assert lines[-1].startswith("CMD [")
    assert json.loads(lines[-1].removeprefix("CMD ")) == argv


_WORD = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
)


@given(st.lists(_WORD, min_size=1, max_size=6))
def test_cmd_round_trips_any_argv(argv: list[str]) -> None:
    # Whatever the words contain, once quoted they are data, not shell syntax: exec form.
    assume(not re.match(r"[A-Za-z_]\w*=", argv[0]))  # VAR=value cmd is shell syntax
    command = shlex.join(argv)
    cmd = _instructions(render_nodejs(base_image=NODE, command=command, port=None).dockerfile)[-1]
    assert json.loads(cmd.removeprefix("CMD ")) == argv


def test_empty_command_is_an_error() -> None:
    with pytest.raises(ValueError, match="command"):
        render_python(base_image=PY, command="   ", port=None)
    with pytest.raises(ValueError, match="cannot be parsed"):
        render_python(base_image=PY, command="python -c 'unclosed", port=None)


@pytest.mark.parametrize(
    ("manager", "copy", "frozen", "prod"),
    [
        ("npm", "COPY package*.json .npmrc* ./", "npm ci", "--omit=dev"),
        (
            "yarn",
            "COPY package.json yarn.lock* .npmrc* .yarnrc* ./",
            "yarn install --frozen-lockfile",
            "--production",
        ),
        (
            "pnpm",
            "COPY package.json pnpm-lock.yaml* .npmrc* ./",
            "pnpm install --frozen-lockfile",
            "--prod",
        ),
    ],
)
def test_nodejs_without_build_installs_production_deps_before_code(manager: str, copy: str, frozen: str, prod: str) -> None:
    lines = _instructions(render_nodejs(base_image=NODE, package_manager=manager, command="node server.js", port=3000).dockerfile)
    assert len([line for line in lines if line.startswith("FROM ")]) == 1
    install = next(i for i, line in enumerate(lines) if frozen in line)
    assert prod in lines[install]
    assert lines.index(copy) < install < lines.index("COPY . .")
    assert lines.index("ENV NODE_ENV=production") < install
    if manager == "pnpm":
        assert lines.index("RUN corepack enable") < install


@pytest.mark.parametrize(
    ("manager", "prune"),
    [
        ("npm", "npm prune --omit=dev"),
        ("yarn", "yarn install --frozen-lockfile --production"),
        ("pnpm", "pnpm prune --prod"),
    ],
)
def test_nodejs_with_build_installs_all_builds_then_prunes(manager: str, prune: str) -> None:
    text = render_nodejs(
        base_image=NODE,
        package_manager=manager,
        build_command=f"{manager} run build",
        command="node dist/main.js",
        port=3000,
    ).dockerfile
    lines = _instructions(text)
    assert lines[0] == f"FROM {NODE} AS build"
    install = next(i for i, line in enumerate(lines) if line.startswith("RUN if [ -f"))
    node_env = lines.index("ENV NODE_ENV=production")
    build = lines.index(f"RUN {manager} run build")
    prune_at = next(i for i, line in enumerate(lines) if prune in line)
    # All dependencies (no prod flag, NODE_ENV not yet set), then the build, then the prune.
    assert not re.search(r"--omit=dev|--prod", lines[install])
    assert install < node_env < lines.index("COPY . .") < build < prune_at
    final = _final_stage(text)
    assert final[0] == f"FROM {NODE}"
    assert "COPY --from=build /app /app" in final
    assert "ENV NODE_ENV=production" in final


def test_npm_install_uses_ci_only_with_a_lockfile() -> None:
    text = render_nodejs(base_image=NODE, command=None, port=None).dockerfile
    assert "RUN if [ -f package-lock.json ]; then npm ci --omit=dev; else npm install --omit=dev; fi" in text


def test_npm_offline_friendly_env() -> None:
    text = render_nodejs(base_image=NODE, command=None, port=None).dockerfile
    for env in [
        "npm_config_update_notifier=false",
        "npm_config_fund=false",
        "npm_config_audit=false",
    ]:
        assert env in text
    assert "ARG npm_config_registry" in text


@pytest.mark.parametrize("bad", ["bun", "NPM", "", "npm ", "yarn2"])
def test_unknown_package_manager_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        render_nodejs(base_image=NODE, package_manager=bad, command=None, port=None)
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        render_react(build_image=NODE, serve_image=NGINX, package_manager=bad)


@pytest.mark.parametrize(("manager", "build"), [("npm", "npm run build"), ("yarn", "yarn build"), ("pnpm", "pnpm build")])
def test_react_default_build_command_matches_manager(manager: str, build: str) -> None:
    lines = _instructions(render_react(build_image=NODE, serve_image=NGINX, package_manager=manager).dockerfile)
    assert f"RUN {build}" in lines


def test_react_stages() -> None:
    build = render_react(build_image=NODE, serve_image=NGINX, build_dir="dist/")
    lines = _instructions(build.dockerfile)
    assert lines[0] == f"FROM {NODE} AS build"
    install = next(i for i, line in enumerate(lines) if "npm ci" in line)
    assert "--omit=dev" not in lines[install]  # the build needs devDependencies
    assert install < lines.index("COPY . .") < lines.index("RUN npm run build")
    final = _final_stage(build.dockerfile)
    assert final == [
        f"FROM {NGINX}",
        "COPY --from=build /app/dist/ /usr/share/nginx/html/",
        f"COPY {NGINX_CONF_PATH} /etc/nginx/conf.d/default.conf",
        "EXPOSE 80",
        'CMD ["nginx", "-g", "daemon off;"]',
    ]
    assert build.files == {NGINX_CONF_PATH: default_spa_nginx_config()}


def test_react_custom_nginx_config_is_dedented() -> None:
    conf = render_react(build_image=NODE, serve_image=NGINX, nginx_config=SEED_NGINX_CONFIG).files[NGINX_CONF_PATH]
    assert conf.startswith("server {\n    listen 80;\n")
    assert "    location /api { proxy_pass http://api:3000; }\n}\n" in conf
    assert conf.endswith("}\n")


def test_react_empty_nginx_config_is_an_error() -> None:
    with pytest.raises(ValueError, match="nginx_config"):
        render_react(build_image=NODE, serve_image=NGINX, nginx_config="  \n ")


@pytest.mark.parametrize("bad", ["/app/build", "../build", "dist/../../etc", "dist/..", ".", "", "my dist", "dist;rm"])
def test_invalid_build_dir_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        render_react(build_image=NODE, serve_image=NGINX, build_dir=bad)


@pytest.mark.parametrize("bad", ["/etc/requirements.txt", "../requirements.txt", "my reqs.txt"])
def test_invalid_requirements_file_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        render_python(base_image=PY, requirements_files=[bad], command=None, port=None)


@pytest.mark.parametrize("bad", ["", "python 3.11", "python:3.11\nRUN rm -rf /", "-x"])
def test_invalid_image_is_an_error(bad: str) -> None:
    with pytest.raises(ValueError, match="base_image"):
        render_python(base_image=bad, command=None, port=None)
    with pytest.raises(ValueError, match="serve_image"):
        render_react(build_image=NODE, serve_image=bad)


def test_images_with_registry_port_and_digest_are_accepted() -> None:
    image = "localhost:5000/pd-test/python:3.11@sha256:" + "a" * 64
    assert f"FROM {image}\n" in render_python(base_image=image, command=None, port=None).dockerfile


@pytest.mark.parametrize("bad", [0, 65536, -1, True, "8000"])
def test_invalid_port_is_an_error(bad: object) -> None:
    with pytest.raises(ValueError, match="port"):
        render_python(base_image=PY, command=None, port=bad)  # type: ignore[arg-type]


def test_multiline_build_command_is_an_error() -> None:
    with pytest.raises(ValueError, match="single line"):
        render_nodejs(base_image=NODE, build_command="npm run build\nnpm test", command=None, port=None)


def test_generated_build_files_are_read_only() -> None:
    files = render_react(build_image=NODE, serve_image=NGINX).files
    with pytest.raises(TypeError):
        files["x"] = "y"  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# render_dockerfile_content


def test_seed_dockerfile_content() -> None:
    text = render_dockerfile_content(SEED_DOCKERFILE_CONTENT)
    lines = text.splitlines()
    assert lines[0] == "FROM python:3.11-slim"
    assert lines[-1] == 'CMD ["python", "app.py"]'
    assert lines[1:-1] == [SEED_DOCKERFILE_CONTENT[str(i)] for i in range(2, 7)]
    assert text.endswith("\n")


def test_numeric_keys_sort_numerically() -> None:
    lines = render_dockerfile_content(TWELVE_LINES).splitlines()
    assert lines == [
        TWELVE_LINES["1"],
        *[TWELVE_LINES[str(i)] for i in range(2, 11)],
        """HEALTHCHECK --interval=30s CMD ["python", "-c", "import worker; worker.ping()"]""",
        TWELVE_LINES["12"],  # already JSON: untouched
    ]


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30, unique=True))
def test_numeric_order_property(numbers: list[int]) -> None:
    content = {str(n): f"RUN echo {n}" for n in numbers}
    assert render_dockerfile_content(content).splitlines() == [f"RUN echo {n}" for n in sorted(numbers)]


def test_non_numeric_keys_keep_insertion_order() -> None:
    content = {"from": "FROM debian:bookworm", "2": "WORKDIR /app", "1": "CMD ['bash']"}
    assert render_dockerfile_content(content) == 'FROM debian:bookworm\nWORKDIR /app\nCMD ["bash"]\n'


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("CMD ['python', 'app.py']", 'CMD ["python", "app.py"]'),
        ("ENTRYPOINT ['/docker-entrypoint.sh']", 'ENTRYPOINT ["/docker-entrypoint.sh"]'),
        (
            "RUN ['pip', 'install', '-r', 'requirements.txt']",
            'RUN ["pip", "install", "-r", "requirements.txt"]',
        ),
        ("cmd [\"it's\", 'quoted']", 'cmd ["it\'s", "quoted"]'),
        # Left as written: JSON already, shell form, not a list of strings, or another instruction.
        ('CMD [ "python",  "app.py" ]', 'CMD [ "python",  "app.py" ]'),
        ("CMD python app.py", "CMD python app.py"),
        ("CMD ['python', 1]", "CMD ['python', 1]"),
        ("RUN [ -f x ] && echo ok", "RUN [ -f x ] && echo ok"),
        ("LABEL x=['a']", "LABEL x=['a']"),
        ("COPY ['a', 'b']", "COPY ['a', 'b']"),
    ],
)
def test_exec_form_conversion(line: str, expected: str) -> None:
    assert render_dockerfile_content({"1": "FROM scratch", "2": line}) == f"FROM scratch\n{expected}\n"


def test_empty_dockerfile_content_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        render_dockerfile_content({})
    with pytest.raises(ValueError, match="empty"):
        render_dockerfile_content({"1": "  "})


def test_blank_values_are_dropped_and_lines_stripped() -> None:
    assert render_dockerfile_content({"1": " FROM scratch  ", "2": "", "3": "CMD ['x']"}) == 'FROM scratch\nCMD ["x"]\n'


# ---------------------------------------------------------------------------------------------
# The default SPA nginx config

HASHED = [
    "main.3f9a1c2e.js",  # Create React App, Vue CLI
    "main.3f9a1c2e.chunk.js",  # Create React App 4
    "787.3f9a1c2e.chunk.js",
    "main.3f9a1c2e.css",
    "main.3f9a1c2e.js.map",
    "logo.6ce24c58023cc2f8fd88.svg",  # webpack's default 20-digit hash
    "main.3f9a1c2e5b6d7e8f.js",  # Angular (webpack builder)
    "index-BXk2_3aZ.js",  # Vite 5+ (Rollup base64url)
    "index-B-k2_3aZ.css",
    "index-4ed993c7.js",  # Vite before 5
    "chunk-5WRI5ZAA.js",  # Angular (esbuild builder)
    "polyfills-FFHMD2TL.js",
    "styles-5INURTSO.css",
    "inter-latin-400-normal-Bl3xHkKt.woff2",
]
NOT_HASHED = [
    "app.js",
    "logo.png",
    "index.html",
    "main.js",
    "favicon.ico",
    "manifest.json",
    "robots.txt",
    "service-worker.js",
    "android-chrome-192x192.png",
    "apple-touch-icon-180x180.png",
    "chunk-vendors.js",
    "my-component.js",
    "index-abcdefgh.js",  # eight lowercase letters: a word, not a hash
    "main.3f9a1c2e.html",  # never cache HTML forever
    "data.3f9a1c2e.json",
]


@pytest.mark.parametrize("name", HASHED)
def test_hashed_asset_regex_matches_fingerprinted_names(name: str) -> None:
    assert re.search(HASHED_ASSET_REGEX, f"/static/js/{name}"), name


@pytest.mark.parametrize("name", NOT_HASHED)
def test_hashed_asset_regex_leaves_other_names_alone(name: str) -> None:
    assert not re.search(HASHED_ASSET_REGEX, f"/{name}"), name


def test_default_nginx_config() -> None:
    conf = default_spa_nginx_config()
    assert "listen 80;" in conf
    assert "root /usr/share/nginx/html;" in conf
    assert "try_files $uri $uri/ /index.html;" in conf
    assert "gzip on;" in conf and "gzip_vary on;" in conf and "gzip_min_length" in conf
    assert re.search(r"gzip_types[^;]*application/javascript[^;]*;", conf)
    assert re.search(r"location = /healthz \{[^}]*return 200 \"ok\";", conf)
    # The immutable block is exactly the one for the hashed-asset regex.
    immutable = re.search(r'location ~ "([^"]+)" \{([^}]*)\}', conf)
    assert immutable and immutable[1] == HASHED_ASSET_REGEX
    assert 'add_header Cache-Control "public, max-age=31536000, immutable";' in immutable[2]
    assert conf.count('immutable"') == 1
    assert re.search(r'location = /index.html \{\s*add_header Cache-Control "no-cache";', conf)


def _nginx_main_config(prefix: Path, server_conf: Path) -> Path:
    mime = Path("/etc/nginx/mime.types")
    main = prefix / "nginx.conf"
    main.write_text(
        "pid nginx.pid;\n"
        "events {}\n"
        "http {\n" + (f"    include {mime};\n" if mime.exists() else "") + "    default_type application/octet-stream;\n"
        f"    access_log {prefix}/access.log;\n"
        f"    include {server_conf};\n"
        "}\n"
    )
    return main


# /usr/sbin is not on every user's PATH, and that is where Debian puts nginx.
NGINX_BIN: str = shutil.which("nginx") or next((p for p in ["/usr/sbin/nginx", "/usr/local/sbin/nginx"] if os.access(p, os.X_OK)), "")
# `make test` installs nginx (make system-deps); under CI a missing nginx is a failure, not a skip.
needs_nginx = pytest.mark.skipif(
    not NGINX_BIN and not os.environ.get("CI"),
    reason="nginx is not installed (apt-get install nginx-light) to validate the config",
)


@needs_nginx
def test_default_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    server = tmp_path / "default.conf"
    server.write_text(default_spa_nginx_config())
    main = _nginx_main_config(tmp_path, server)
    result = subprocess.run(
        [NGINX_BIN, "-t", "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _http_get(port: int, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of GET ``path`` on 127.0.0.1:``port``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def spa_nginx(tmp_path: Path) -> Iterator[int]:
    """nginx running the default SPA config (port and root moved into tmp); yields the port."""
    html = tmp_path / "html"
    (html / "static" / "js").mkdir(parents=True)
    (html / "assets").mkdir()
    (html / "index.html").write_text("<!doctype html><title>app</title>")
    (html / "static" / "js" / "main.3f9a1c2e.js").write_text("console.log('x');\n" * 200)
    (html / "assets" / "index-BXk2_3aZ.js").write_text("export {};\n")
    (html / "app.js").write_text("console.log('plain');\n")
    port = _free_port()
    conf = default_spa_nginx_config()
    assert conf.count("listen 80;") == 1 and conf.count("root /usr/share/nginx/html;") == 1
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("root /usr/share/nginx/html;", f"root {html};")
    server = tmp_path / "default.conf"
    server.write_text(conf)
    main = _nginx_main_config(tmp_path, server)
    # One foreground process as the current user: no daemon, no worker user switch.
    main.write_text("daemon off;\nmaster_process off;\n" + main.read_text())
    error_log = tmp_path / "error.log"
    proc = subprocess.Popen(
        [NGINX_BIN, "-p", str(tmp_path), "-c", str(main), "-e", str(error_log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _http_get(port, "/healthz")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = error_log.read_text() if error_log.exists() else ""
                    pytest.fail(f"nginx did not start (exit {proc.poll()}): {log}")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@needs_nginx
def test_default_nginx_config_serves_an_spa(spa_nginx: int) -> None:
    def get(path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        return _http_get(spa_nginx, path, **headers)

    assert get("/healthz")[0::2] == (200, b"ok")

    for path in ["/", "/users/42/settings"]:  # the entry page and a client-side route
        status, headers, body = get(path)
        assert status == 200 and b"<title>app</title>" in body, path
        assert headers["cache-control"] == "no-cache", path

    for path in ["/static/js/main.3f9a1c2e.js", "/assets/index-BXk2_3aZ.js"]:
        status, headers, _ = get(path)
        assert status == 200
        assert headers["cache-control"] == "public, max-age=31536000, immutable", path

    status, headers, _ = get("/app.js")
    assert status == 200 and headers["cache-control"] == "no-cache"

    # A missing hashed asset is a 404, not index.html cached as JavaScript for a year.
    status, _, body = get("/static/js/main.deadbeef1.js")
    assert status == 404 and b"<title>app</title>" not in body

    status, headers, _ = get("/static/js/main.3f9a1c2e.js", **{"Accept-Encoding": "gzip"})
    assert headers.get("content-encoding") == "gzip"
    assert "Accept-Encoding" in headers.get("vary", "")
