"""examples/plugin-example (projectdeployer-memcached) works as a real, separately installed plugin.

The example is installed into a temporary directory, never into the environment running the
tests, and used through subprocesses with ``PYTHONPATH`` pointing there. That is how a user's
``pip install projectdeployer-memcached`` looks to ProjectDeployer: a distribution on
``sys.path`` with an entry point in the ``projectdeployer`` group.

How it is installed, offline either way:

- ``pip install --no-deps --no-build-isolation --no-index --target DIR`` when this environment
  can build wheels itself (the ``wheel`` package, or setuptools >= 70.1, which has bdist_wheel
  built in);
- otherwise setuptools alone (``egg_info`` + ``build_py`` into DIR). It reads the same
  pyproject.toml and writes the same metadata and entry points, as an ``.egg-info`` directory
  that ``importlib.metadata`` finds just as it finds a ``.dist-info`` one.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from projectdeployer.core.registry import build_registry
from projectdeployer.plugins import LOAD_ENV, TRACE_ENV, load_plugins, make_plugin_manager

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin-example"
CLI_SCRIPT = Path(sys.executable).with_name("projectdeployer")
DIST = "projectdeployer-memcached"
MODULE = "projectdeployer_memcached"


def _can_build_wheels() -> bool:
    if importlib.util.find_spec("wheel") is not None:
        return True
    import setuptools

    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed example (code + metadata), for PYTHONPATH."""
    work = tmp_path_factory.mktemp("plugin-example")
    source = work / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    if _can_build_wheels():
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir", "--target", str(target), str(source)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    else:
        target.mkdir()
        command = [sys.executable, "-c", "from setuptools import setup; setup()", "--quiet", "egg_info", "--egg-base", str(target), "build_py", "--build-lib", str(target)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=source)
    assert done.returncode == 0, f"installing the example failed:\n{done.stdout}\n{done.stderr}"
    assert (target / MODULE / "__init__.py").is_file()
    return target


def _env(tmp_path: Path, site: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (LOAD_ENV, TRACE_ENV, "PYTHONPATH")}
    env["PROJECTDEPLOYER_HOME"] = str(tmp_path / "home")
    if site is not None:
        env["PYTHONPATH"] = str(site)
    env.update(extra)
    return env


def run_cli(tmp_path: Path, site: Path | None, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI_SCRIPT), *args], capture_output=True, text=True, env=_env(tmp_path, site, **extra), cwd=tmp_path, timeout=60)


def test_the_example_is_not_in_this_environment() -> None:
    """Installing it for these tests must not have touched the environment running them."""
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution(DIST)
    assert importlib.util.find_spec(MODULE) is None


def test_plugins_lists_the_example_once_with_its_distribution(site: Path, tmp_path: Path) -> None:
    done = run_cli(tmp_path, site, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    mine = [p for p in json.loads(done.stdout) if p["name"] == "memcached"]
    assert len(mine) == 1, mine
    (plugin,) = mine
    assert plugin["distribution"] == DIST and plugin["version"] == "0.1.0"
    assert plugin["module"] == MODULE and plugin["builtin"] is False
    assert plugin["hooks"] == ["health_checks", "register_commands", "register_service_types"]
    assert plugin["service_types"] == ["memcached"]


def test_memcached_info_command(site: Path, tmp_path: Path) -> None:
    done = run_cli(tmp_path, site, "memcached-info")
    assert done.returncode == 0, done.stderr
    assert "memcached:1.6-alpine" in done.stdout and "11211" in done.stdout

    done = run_cli(tmp_path, site, "memcached-info", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info == {"type": "memcached", "plugin": "memcached", "image": "memcached:1.6-alpine", "port": 11211, "memory_mb": 64, "api_method": "add_memcached"}


def test_add_memcached_on_the_command_line(site: Path, tmp_path: Path) -> None:
    done = run_cli(tmp_path, site, "add", "memcached", "--help")
    assert done.returncode == 0, done.stderr
    assert "Memcached in-memory cache" in done.stdout and "--memory-mb" in done.stdout

    project_file = tmp_path / "shop.toml"
    assert run_cli(tmp_path, site, "--file", str(project_file), "init", "shop").returncode == 0
    done = run_cli(tmp_path, site, "--file", str(project_file), "add", "memcached", "--memory-mb", "128")
    assert done.returncode == 0, done.stderr
    text = project_file.read_text()
    assert '[services.memcached]\ntype = "memcached"\nmemory_mb = 128\n' in text
    assert 'memcached = "memcached:1.6-alpine"' in text  # the type's image joined [images]

    # The spec class's validator is enforced: one error line, exit 2, file unchanged.
    done = run_cli(tmp_path, site, "--file", str(project_file), "add", "memcached", "sessions", "--memory-mb", "0")
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "memory_mb" in done.stderr
    assert project_file.read_text() == text


_API_SCRIPT = """
import json
from projectdeployer import ProjectDeployer
from projectdeployer.plugins import pm

project = ProjectDeployer.create("x").add_memcached(memory_mb=128)
text = project.path.read_text()
again = ProjectDeployer("x")
spec = again.project.services["memcached"]
checks = [c for result in pm.hook.health_checks(service=spec) for c in result]
print(json.dumps({
    "text": text,
    "spec_class": type(spec).__name__,
    "memory_mb": spec.memory_mb,
    "port": spec.port,
    "checks": [[c.kind, c.port] for c in checks],
}))
"""


def test_add_memcached_through_the_python_api(site: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _API_SCRIPT], capture_output=True, text=True, env=_env(tmp_path, site), cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert '[services.memcached]\ntype = "memcached"\nmemory_mb = 128\n' in out["text"]
    assert out["spec_class"] == "MemcachedSpec"
    assert (out["memory_mb"], out["port"]) == (128, 11211)
    assert out["checks"] == [["tcp", 11211]]


def test_load_plugins_selects_the_example_by_distribution_name(site: Path, tmp_path: Path) -> None:
    names = lambda done: {p["name"] for p in json.loads(done.stdout)}  # noqa: E731

    done = run_cli(tmp_path, site, "plugins", "--json", **{LOAD_ENV: DIST})
    assert done.returncode == 0, done.stderr
    assert "memcached" in names(done) and "service_postgres" not in names(done)

    done = run_cli(tmp_path, site, "plugins", "--json", **{LOAD_ENV: "service_postgres"})
    assert done.returncode == 0, done.stderr
    assert "memcached" not in names(done)
    assert run_cli(tmp_path, site, "memcached-info", **{LOAD_ENV: "service_postgres"}).returncode == 2


def test_without_the_install_the_plugin_is_absent(site: Path, tmp_path: Path) -> None:
    done = run_cli(tmp_path, None, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    assert "memcached" not in {p["name"] for p in json.loads(done.stdout)}

    done = run_cli(tmp_path, None, "memcached-info")
    assert done.returncode == 2 and "No such command 'memcached-info'" in done.stderr
    assert run_cli(tmp_path, None, "add", "memcached", "--help").returncode == 2


@pytest.fixture
def example_module(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The installed example imported into this process (for a fresh manager); removed after."""
    monkeypatch.syspath_prepend(str(site))
    import projectdeployer_memcached

    try:
        yield projectdeployer_memcached
    finally:
        sys.modules.pop(MODULE, None)


def test_the_example_on_a_fresh_manager(example_module: object) -> None:
    manager = load_plugins(make_plugin_manager(), env={})
    assert manager.get_plugin("memcached") is example_module  # found through its entry point
    stype = build_registry(manager).service_types["memcached"]
    assert stype.plugin == "memcached" and stype.stateful is False and stype.default_port == 11211
    assert stype.api_method == "add_memcached" and stype.default_name == "memcached"
    assert dict(stype.default_images) == {"memcached": "memcached:1.6-alpine"}

    from projectdeployer.core.model import ServiceSpec

    assert issubclass(stype.spec_class, ServiceSpec)
    spec = stype.spec_class(name="cache", type="memcached")
    assert spec.memory_mb == 64
    checks = [c for result in manager.hook.health_checks(service=spec) for c in result]
    assert [(c.kind, c.port) for c in checks] == [("tcp", 11211)]
    # It answers for its own type only.
    other = ServiceSpec(name="api", type="python", port=8000)
    assert example_module.health_checks(service=other) is None  # type: ignore[attr-defined]
