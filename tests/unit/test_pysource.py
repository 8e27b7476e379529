"""Which files a Python service's dependencies come from (service_types/pysource.py), and what
the python type generates from them: the order is fixed, the reason names the file, a source
that lacks what the settings need is one line naming the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy
import pytest

from projectdeployer.build.builder import ProjectBuilder
from projectdeployer.core.build import BuildFailed
from projectdeployer.core.registry import build_registry
from projectdeployer.plugins import load_plugins, make_plugin_manager
from projectdeployer.project.file import build_project
from projectdeployer.service_types.dockerfiles import PYPROJECT_REQUIREMENTS_PATH, PythonInstall
from projectdeployer.service_types.pysource import SourceProblem, detect_install

pytestmark = pytest.mark.unit

PEP621 = '[project]\nname = "shop"\nversion = "1.0"\ndependencies = ["fastapi>=0.110", "uvicorn[standard]"]\n'
BUILD_SYSTEM = '\n[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
TOOL_ONLY = "[tool.ruff]\nline-length = 100\n"


def source(tmp_path: Path, **files: str) -> Path:
    """A build context with ``files`` (``poetry_lock`` -> ``poetry.lock``, ``x_txt`` -> ``x.txt``)."""
    for name, text in files.items():
        path = tmp_path / name.replace("_lock", ".lock").replace("_toml", ".toml").replace("_txt", ".txt")
        path.write_text(text)
    return tmp_path


def detect(context: Path | None, *, requirements_files: tuple[str, ...] = ("requirements.txt",), package_manager: str | None = None) -> PythonInstall:
    return detect_install(context, requirements_files=requirements_files, package_manager=package_manager, poetry_version="2.5.1", uv_version="0.13.10")


# --- the order ---------------------------------------------------------------------------------


def test_requirements_txt_comes_first_as_it_always_did(tmp_path: Path) -> None:
    install = detect(source(tmp_path, requirements_txt="flask\n", pyproject_toml=PEP621, poetry_lock="", uv_lock=""))
    assert (install.manager, install.pyproject, install.requirements_files) == ("pip", False, ("requirements.txt",))
    assert install.reason == (
        "dependencies from requirements.txt with pip (pip install -r)"
        '; poetry.lock is here too, not used: package_manager = "poetry" installs from it'
        '; uv.lock is here too, not used: package_manager = "uv" installs from it'
    )


def test_uv_lock_before_poetry_lock_before_pyproject(tmp_path: Path) -> None:
    context = source(tmp_path, pyproject_toml=PEP621, poetry_lock="", uv_lock="")
    install = detect(context)
    assert install.manager == "uv"
    assert install.reason == "dependencies from uv.lock with uv 0.13.10 (uv sync --frozen --no-dev --no-install-project)"
    (context / "uv.lock").unlink()
    install = detect(context)
    assert install.manager == "poetry"
    assert install.reason == "dependencies from poetry.lock with Poetry 2.5.1 (poetry install --only main --no-root)"
    (context / "poetry.lock").unlink()
    install = detect(context)
    assert (install.manager, install.pyproject, install.dependencies) == ("pip", True, ("fastapi>=0.110", "uvicorn[standard]"))


def test_the_same_files_always_give_the_same_answer(tmp_path: Path) -> None:
    context = source(tmp_path, pyproject_toml=PEP621, poetry_lock="", uv_lock="")
    assert len({detect(context) for _ in range(5)}) == 1


def test_a_lock_file_without_pyproject_is_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(SourceProblem, match=r"no requirements\.txt, uv\.lock, poetry\.lock or pyproject\.toml project"):
        detect(source(tmp_path, uv_lock="", poetry_lock=""))


def test_pyproject_with_a_build_system_installs_the_project(tmp_path: Path) -> None:
    install = detect(source(tmp_path, pyproject_toml=PEP621 + BUILD_SYSTEM))
    assert install.install_project and install.dependencies == ("fastapi>=0.110", "uvicorn[standard]")
    assert install.reason == "the pyproject.toml project with pip ([project] dependencies first, then pip install --no-deps .)"


def test_pyproject_without_a_build_system_is_an_application(tmp_path: Path) -> None:
    install = detect(source(tmp_path, pyproject_toml=PEP621))
    assert not install.install_project
    assert "no [build-system], so the project itself is not installed" in install.reason


@pytest.mark.parametrize(
    "pyproject",
    [
        PEP621.replace('dependencies = ["fastapi>=0.110", "uvicorn[standard]"]', 'dynamic = ["dependencies"]') + BUILD_SYSTEM,
        '[tool.poetry]\nname = "shop"\n[tool.poetry.dependencies]\npython = "^3.11"\n' + BUILD_SYSTEM,
        PEP621.replace('"uvicorn[standard]"', '"lib @ file:///srv/lib"') + BUILD_SYSTEM,
        PEP621.replace('"uvicorn[standard]"', '"--index-url=https://evil.example.com"') + BUILD_SYSTEM,
        PEP621.replace('"uvicorn[standard]"', '"x\\n-r /etc/passwd"') + BUILD_SYSTEM,
    ],
    ids=["dynamic", "poetry-without-lock", "local-path", "option", "newline"],
)
def test_dependencies_that_cannot_be_installed_first_come_with_the_project(tmp_path: Path, pyproject: str) -> None:
    install = detect(source(tmp_path, pyproject_toml=pyproject))
    assert install.pyproject and install.install_project and install.dependencies is None
    assert "its dependencies are not listed in [project]" in install.reason


def test_a_pyproject_of_tool_settings_only_is_not_a_project(tmp_path: Path) -> None:
    context = source(tmp_path, pyproject_toml=TOOL_ONLY)
    with pytest.raises(SourceProblem, match="set requirements_files = \\[\\] for an app without dependencies"):
        detect(context)
    nothing = detect(context, requirements_files=())
    assert nothing.requirements_files == () and not nothing.pyproject and nothing.reason.startswith("nothing to install")


# --- package_manager decides --------------------------------------------------------------------


def test_package_manager_overrides_the_order(tmp_path: Path) -> None:
    context = source(tmp_path, requirements_txt="flask\n", pyproject_toml=PEP621, poetry_lock="", uv_lock="")
    assert detect(context, package_manager="poetry").reason.endswith('(poetry install --only main --no-root; package_manager = "poetry")')
    assert detect(context, package_manager="uv").manager == "uv"
    assert detect(context, package_manager="pip").requirements_files == ("requirements.txt",)
    (context / "requirements.txt").unlink()
    assert detect(context, package_manager="pip").pyproject


@pytest.mark.parametrize(
    ("manager", "files", "missing"),
    [("poetry", {"pyproject_toml": PEP621}, "poetry.lock"), ("uv", {"uv_lock": ""}, "pyproject.toml"), ("pip", {"poetry_lock": ""}, "requirements.txt or pyproject.toml")],
)
def test_package_manager_without_its_files_is_one_line(tmp_path: Path, manager: str, files: dict[str, str], missing: str) -> None:
    with pytest.raises(SourceProblem) as problem:
        detect(source(tmp_path, **files), package_manager=manager)
    message = str(problem.value)
    assert "\n" not in message and f'package_manager = "{manager}" needs {missing}' in message and str(tmp_path) in message


def test_a_missing_requirements_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceProblem, match=r"requirements file requirements-worker\.txt not found"):
        detect(source(tmp_path, requirements_txt=""), requirements_files=("requirements.txt", "requirements-worker.txt"))


def test_an_unreadable_pyproject_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SourceProblem) as problem:
        detect(source(tmp_path, pyproject_toml="[project\nname = 1\n"))
    assert "pyproject.toml is not valid TOML" in str(problem.value) and "\n" not in str(problem.value)


def test_without_the_source_the_settings_answer(tmp_path: Path) -> None:
    assert detect(None).requirements_files == ("requirements.txt",)
    assert detect(None, package_manager="uv").manager == "uv"
    assert detect(None, requirements_files=()).requirements_files == ()


# --- through the python type and the builder ---------------------------------------------------


@pytest.fixture
def manager() -> pluggy.PluginManager:
    return load_plugins(make_plugin_manager(), env={})


def _builder(manager: pluggy.PluginManager, tmp_path: Path, api: dict[str, Any]) -> ProjectBuilder:
    project = build_project(
        {"project": {"name": "shop"}, "services": {"api": {"type": "python", "build_context": "src", **api}}},
        source=str(tmp_path / "shop.toml"),
        registry=build_registry(manager),
    )
    return ProjectBuilder(project, "dev", manager, registry=build_registry(manager), log=lambda line: None)


def test_the_build_log_says_which_file_and_which_packages(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    context = source(tmp_path / "src", pyproject_toml=PEP621, poetry_lock="")
    builder = _builder(manager, tmp_path, {"system_packages": ["libpq5"], "build_packages": ["gcc", "libpq-dev"], "build_args": {"POETRY_VERSION": "1.8.5"}})
    chosen = builder._dockerfile(builder.project.services["api"], context)
    assert chosen.notes == (
        "python: dependencies from poetry.lock with Poetry 1.8.5 (poetry install --only main --no-root)",
        "Debian build_packages (build stage only): gcc libpq-dev",
        "Debian system_packages (in the image): libpq5",
    )
    dockerfile = chosen.extra[chosen.path]
    assert "COPY pyproject.toml poetry.lock ./" in dockerfile and "ARG POETRY_VERSION=2.5.1" in dockerfile


def test_pyproject_dependencies_reach_the_build_context_as_a_generated_file(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    context = source(tmp_path / "src", pyproject_toml=PEP621 + BUILD_SYSTEM)
    builder = _builder(manager, tmp_path, {})
    chosen = builder._dockerfile(builder.project.services["api"], context)
    assert chosen.extra[PYPROJECT_REQUIREMENTS_PATH].splitlines()[1:] == ["fastapi>=0.110", "uvicorn[standard]"]
    assert sorted(p.name for p in context.iterdir()) == ["pyproject.toml"]  # the source is not written


def test_a_source_without_dependencies_fails_the_build_naming_the_service(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    builder = _builder(manager, tmp_path, {})
    with pytest.raises(BuildFailed, match=r"^api: no dependencies to install in the build context "):
        builder._dockerfile(builder.project.services["api"], tmp_path / "src")
    check = builder.check("api")  # plan says the same, as an error
    assert check.error is not None and check.error.startswith("api: no dependencies to install")
