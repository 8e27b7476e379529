"""Every hook: documented, typed and tested; and the plugin manager that loads them.

Each ``test_hook_<name>`` drives one hook through a FRESH plugin manager
(``make_plugin_manager()`` + ``load_plugins(manager, env={...})``) with test plugins registered by
the ``register_plugin`` fixture, which always unregisters them. Nothing here touches the global
manager ``projectdeployer.plugins.pm``; tests that need it (the CLI's ``main``, the fluent API's
secret storage) run in a subprocess.

The meta-tests at the top keep ``docs/plugins.md`` and this module in step with ``hookspecs.py``:
a new hook fails them until it has a ``### name(args)`` section and a ``test_hook_<name>``.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import stat
import subprocess
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import click
import pluggy
import pytest
from click.testing import CliRunner

from projectdeployer import hookimpl, hookspecs, plugins
from projectdeployer.api.project import RESERVED_API_METHODS, ProjectDeployer
from projectdeployer.core.build import BuildRequest
from projectdeployer.core.errors import ConfigError, PluginError, ProjectDeployerError, SecretError
from projectdeployer.core.model import Project, ServiceSpec
from projectdeployer.core.monitoring import Alert, HealthCheck, MetricSample
from projectdeployer.core.plan import DeployResult, Plan, Step
from projectdeployer.core.provider import CommandResult, Provider, Server, ServerSpec
from projectdeployer.core.registry import build_registry
from projectdeployer.core.routing import Backend, DomainTarget, Route, domain_certificates
from projectdeployer.core.servicetype import ServiceType
from projectdeployer.plugins import (
    ESSENTIAL_PLUGINS,
    LOAD_ENV,
    TRACE_ENV,
    get_plugins,
    get_registry,
    load_plugins,
    make_plugin_manager,
)
from projectdeployer.project.file import build_project

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "plugins.md"
HOOKS = hookspecs.hook_names()
#: Names the essential core registers under (a mapping name -> module, or a tuple of names).
ESSENTIAL = set(ESSENTIAL_PLUGINS)
#: The console script of the environment running the tests.
CLI_SCRIPT = Path(sys.executable).with_name("projectdeployer")


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def manager() -> pluggy.PluginManager:
    """A fresh manager with every installed plugin loaded (the built-ins, here)."""
    return load_plugins(make_plugin_manager(), env={})


@pytest.fixture
def core_manager() -> pluggy.PluginManager:
    """A fresh manager with only the essential core (``PROJECTDEPLOYER_LOAD_PLUGINS=""``)."""
    return load_plugins(make_plugin_manager(), env={LOAD_ENV: ""})


@pytest.fixture
def bare_manager() -> pluggy.PluginManager:
    """A fresh manager with the hookspecs and no plugin at all."""
    return make_plugin_manager()


@pytest.fixture
def register_plugin() -> Iterator[Callable[[pluggy.PluginManager, object, str], object]]:
    """``register_plugin(manager, plugin, name)``: registered for this test, always unregistered."""
    registered: list[tuple[pluggy.PluginManager, str]] = []

    def register(manager: pluggy.PluginManager, plugin: object, name: str) -> object:
        manager.register(plugin, name=name)
        registered.append((manager, name))
        return plugin

    try:
        yield register
    finally:
        for manager, name in reversed(registered):
            if manager.get_plugin(name) is not None:
                manager.unregister(name=name)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ``$PROJECTDEPLOYER_HOME`` for this test."""
    path = tmp_path / "pd-home"
    monkeypatch.setenv("PROJECTDEPLOYER_HOME", str(path))
    return path


def spec_params(hook_name: str) -> list[str]:
    """The parameter names of a hookspec, in order."""
    return list(inspect.signature(getattr(hookspecs, hook_name)).parameters)


def recorder(hook_name: str, calls: list[tuple[str, dict[str, Any]]], label: str, result: Any) -> types.SimpleNamespace:
    """A plugin implementing ``hook_name`` with the spec's own parameters: it records the call
    (``(label, {param: value})``) and returns ``result``."""
    params = spec_params(hook_name)
    source = f"def {hook_name}({', '.join(params)}):\n    _calls.append((_label, {{{', '.join(f'{p!r}: {p}' for p in params)}}}))\n    return _result\n"
    namespace: dict[str, Any] = {"_calls": calls, "_label": label, "_result": result}
    exec(source, namespace)
    return types.SimpleNamespace(**{hook_name: hookimpl(namespace[hook_name])})


def check_firstresult(manager: pluggy.PluginManager, register_plugin: Callable, hook_name: str, kwargs: dict[str, Any], first: Any, second: Any) -> None:
    """First non-None wins, None falls through, nobody after the winner is asked."""
    hook = getattr(manager.hook, hook_name)
    assert hook.spec.opts["firstresult"] is True, f"{hook_name} should be firstresult"
    calls: list[tuple[str, dict[str, Any]]] = []

    register_plugin(manager, recorder(hook_name, calls, "first", first), f"test-{hook_name}-first")
    register_plugin(manager, recorder(hook_name, calls, "declines", None), f"test-{hook_name}-declines")
    assert hook(**kwargs) == first  # the later plugin is asked first, says None, falls through
    assert [label for label, _ in calls] == ["declines", "first"]
    assert all(received == kwargs for _, received in calls)  # the documented arguments, by name

    calls.clear()
    register_plugin(manager, recorder(hook_name, calls, "second", second), f"test-{hook_name}-second")
    assert hook(**kwargs) == second
    assert [label for label, _ in calls] == ["second"]  # the first answer stops the call


def check_collecting(manager: pluggy.PluginManager, register_plugin: Callable, hook_name: str, kwargs: dict[str, Any]) -> None:
    """Every plugin receives the call with the documented arguments; every non-None result is kept."""
    hook = getattr(manager.hook, hook_name)
    assert not hook.spec.opts["firstresult"], f"{hook_name} should collect, not pick one"
    calls: list[tuple[str, dict[str, Any]]] = []
    register_plugin(manager, recorder(hook_name, calls, "a", "result-a"), f"test-{hook_name}-a")
    register_plugin(manager, recorder(hook_name, calls, "b", None), f"test-{hook_name}-b")
    register_plugin(manager, recorder(hook_name, calls, "c", "result-c"), f"test-{hook_name}-c")
    results = hook(**kwargs)
    assert sorted(label for label, _ in calls) == ["a", "b", "c"]
    assert all(received == kwargs for _, received in calls)
    assert results == ["result-c", "result-a"]  # latest registered first; None is left out


def make_project(manager: pluggy.PluginManager, services: dict[str, dict[str, Any]], **tables: Any) -> Project:
    """A validated project built with ``manager``'s registry."""
    return build_project({"project": {"name": "shop"}, "services": services, **tables}, source="shop.toml", registry=build_registry(manager))


class FakeServer(Server):
    def __init__(self, name: str = "shop-prod-lon1-1", zone: str = "lon1") -> None:
        self.name, self.zone = name, zone
        self.private_address = self.public_address = "127.0.0.1"
        self.tags = {"project": "shop"}

    def run(self, command, *, timeout=None):  # type: ignore[no-untyped-def]
        return CommandResult(exit_code=0, stdout="0.50 0.40 0.30 1/100 123\n", stderr="")

    def docker(self) -> Any:
        raise NotImplementedError

    def put_file(self, remote_path, data, *, mode=0o644):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def get_file(self, remote_path):  # type: ignore[no-untyped-def]
        raise NotImplementedError


class FakeProvider(Provider):
    def __init__(self, name: str) -> None:
        self.name = name

    def list_servers(self, project: str, env: str) -> list[Server]:
        return []

    def create_server(self, project: str, env: str, spec: ServerSpec) -> Server:
        return FakeServer(zone=spec.zone)

    def destroy_server(self, server: Server) -> None:
        return None


def cli_env(tmp_path: Path, pythonpath: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment for a ``projectdeployer`` subprocess: private home, no plugin switches."""
    env = {k: v for k, v in os.environ.items() if k not in (LOAD_ENV, TRACE_ENV)}
    env["PROJECTDEPLOYER_HOME"] = str(tmp_path / "cli-home")
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


# --- meta-tests: every hook documented, typed and tested --------------------------------------


def _doc_sections() -> dict[str, str]:
    """``### heading`` -> the text up to the next heading of level 2 or 3."""
    sections: dict[str, str] = {}
    heading = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith(("## ", "### ")):
            heading = line[4:].strip() if line.startswith("### ") else None
            if heading is not None:
                sections[heading] = ""
        elif heading is not None:
            sections[heading] += line + "\n"
    return sections


def _heading(name: str) -> str:
    return f"{name}({', '.join(spec_params(name))})"


def test_there_are_hooks() -> None:
    assert len(HOOKS) >= 18 and "register_service_types" in HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented(name: str) -> None:
    sections = _doc_sections()
    assert _heading(name) in sections, f"docs/plugins.md needs a heading '### {_heading(name)}'"
    text = sections[_heading(name)]
    firstresult = getattr(hookspecs, name).projectdeployer_spec["firstresult"]
    assert ("**firstresult.**" in text) == firstresult, f"the section of {name} must say whether it is firstresult"
    assert len(re.findall(r"```python\n", text)) == 1, f"the section of {name} needs one python example"


def test_docs_document_no_other_hooks() -> None:
    documented = {h for h in _doc_sections() if re.fullmatch(r"\w+\(.*\)", h)}
    assert documented == {_heading(name) for name in HOOKS}


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_test(name: str) -> None:
    test = globals().get(f"test_hook_{name}")
    assert callable(test), f"tests/unit/test_hooks.py needs a test_hook_{name}"


def _annotation_namespace() -> dict[str, Any]:
    """hookspecs' globals plus the names it imports under ``if TYPE_CHECKING:``."""
    namespace = dict(vars(hookspecs))
    tree = ast.parse(Path(hookspecs.__file__).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            exec(compile(ast.Module(body=node.body, type_ignores=[]), hookspecs.__file__, "exec"), namespace)
    return namespace


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_typed_and_documented(name: str) -> None:
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec)
    assert doc, f"{name} has no docstring"
    signature = inspect.signature(spec)
    assert signature.return_annotation is not inspect.Signature.empty, f"{name} has no return annotation"
    for param in signature.parameters.values():
        assert param.annotation is not inspect.Parameter.empty, f"{name}({param.name}) has no annotation"
        assert f":param {param.name}:" in doc, f"{name}'s docstring does not describe {param.name}"
    # The annotations are strings (PEP 563): they must name real, importable types.
    hints = typing.get_type_hints(spec, globalns=_annotation_namespace())
    assert set(hints) == {*signature.parameters, "return"}


@pytest.mark.parametrize("name", HOOKS)
def test_doc_example_is_a_valid_plugin(name: str) -> None:
    """Each hook's example in docs/plugins.md runs, and registers as a valid plugin of that hook."""
    (code,) = re.findall(r"```python\n(.*?)```", _doc_sections()[_heading(name)], re.S)
    module = types.ModuleType(f"docs_example_{name}")
    exec(compile(code, f"docs/plugins.md ({name})", "exec"), module.__dict__)
    manager = make_plugin_manager()
    manager.register(module, name="docs-example")  # raises on a parameter the hook does not have
    manager.check_pending()  # raises on a misspelled hook name
    assert [impl.plugin_name for impl in getattr(manager.hook, name).get_hookimpls()] == ["docs-example"]


def test_doc_examples_that_register_things_work(core_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    sections = _doc_sections()
    for name in ("register_service_types", "register_providers", "register_commands"):
        (code,) = re.findall(r"```python\n(.*?)```", sections[_heading(name)], re.S)
        module = types.ModuleType(f"docs_example_{name}")
        exec(compile(code, f"docs/plugins.md ({name})", "exec"), module.__dict__)
        register_plugin(core_manager, module, f"docs-{name}")
    registry = build_registry(core_manager)
    assert registry.service_types["echo"].plugin == "docs-register_service_types"
    assert {"fsn1", "hel1"} <= registry.zones
    from projectdeployer.cli import make_cli

    assert "service-types" in make_cli(core_manager).commands


def test_doc_minimal_plugin_works(core_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    text = DOCS.read_text(encoding="utf-8")
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", text, re.S) if c.startswith("# projectdeployer_hello.py")]
    module = types.ModuleType("projectdeployer_hello")
    exec(compile(code, "docs/plugins.md (minimal plugin)", "exec"), module.__dict__)
    register_plugin(core_manager, module, "hello")
    from projectdeployer.cli import make_cli

    result = CliRunner().invoke(make_cli(core_manager), ["hello"])
    assert result.exit_code == 0, result.output
    assert result.output == "Hello from a plugin\n"


# --- registration hooks ------------------------------------------------------------------------


@attrs.define(kw_only=True)
class WidgetSpec(ServiceSpec):
    """A test service type's fields."""

    size: int = 3


WIDGET = ServiceType(
    name="widget",
    spec_class=WidgetSpec,
    description="A test widget",
    api_method="add_widget",
    default_name="widget",
    default_port=7000,
    default_images={"widget": "example/widget:1"},
)


class WidgetPlugin:
    @hookimpl
    def register_service_types(self, register: Callable[[ServiceType], None]) -> None:
        register(WIDGET)


def test_hook_register_service_types(core_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    assert build_registry(core_manager).service_types == {}  # the essential core has no types
    register_plugin(core_manager, WidgetPlugin(), "test-widget")

    registry = build_registry(core_manager)
    stype = registry.service_types["widget"]
    assert stype.plugin == "test-widget"  # the core records who registered it
    assert stype.spec_class is WidgetSpec and stype.description == "A test widget"
    assert registry.by_api_method("add_widget") is stype
    assert registry.default_images["widget"] == "example/widget:1"

    project = make_project(core_manager, {"gadget": {"type": "widget", "size": 5}})
    spec = project.services["gadget"]
    assert isinstance(spec, WidgetSpec)
    assert (spec.type, spec.size, spec.port) == ("widget", 5, 7000)  # default_port applied
    with pytest.raises(ConfigError, match=r"services\.gadget\.size: expected an integer"):
        make_project(core_manager, {"gadget": {"type": "widget", "size": "big"}})


def test_register_service_types_duplicate_name_names_both_plugins(manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    class Impostor:
        @hookimpl
        def register_service_types(self, register: Callable[[ServiceType], None]) -> None:
            register(attrs.evolve(WIDGET, name="postgres"))

    register_plugin(manager, Impostor(), "test-impostor")
    with pytest.raises(PluginError) as excinfo:
        build_registry(manager)
    message = str(excinfo.value)
    assert "'postgres'" in message and "'service_postgres'" in message and "'test-impostor'" in message


def test_register_service_types_refuses_an_api_method_the_api_defines_itself(core_manager: pluggy.PluginManager, register_plugin: Callable, tmp_path: Path) -> None:
    """The API hands its own add_ methods in (RESERVED_API_METHODS): a type they would hide is refused."""

    class Squatter:
        @hookimpl
        def register_service_types(self, register: Callable[[ServiceType], None]) -> None:
            register(attrs.evolve(WIDGET, api_method="add_postgres"))

    register_plugin(core_manager, Squatter(), "test-squatter")
    assert build_registry(core_manager).by_api_method("add_postgres") is not None  # the registry alone does not know the API
    message = r"plugin 'test-squatter': service type 'widget' cannot use api_method 'add_postgres'"
    with pytest.raises(PluginError, match=message):
        build_registry(core_manager, reserved_api_methods=RESERVED_API_METHODS)
    with pytest.raises(PluginError, match=message):
        get_registry(core_manager, reserved_api_methods=RESERVED_API_METHODS)
    with pytest.raises(PluginError, match=message):
        ProjectDeployer.create("shop", path=tmp_path / "shop.toml", manager=core_manager)


def test_register_service_types_rejects_what_is_not_a_service_type(core_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    class Sloppy:
        @hookimpl
        def register_service_types(self, register: Callable[..., None]) -> None:
            register("widget")

    register_plugin(core_manager, Sloppy(), "test-sloppy")
    with pytest.raises(PluginError, match=r"test-sloppy.*not a ServiceType"):
        build_registry(core_manager)


def test_register_service_types_rejects_a_spec_class_that_is_not_a_service_spec(core_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    @attrs.define
    class NotASpec:
        size: int = 1

    class Odd:
        @hookimpl
        def register_service_types(self, register: Callable[[ServiceType], None]) -> None:
            register(ServiceType(name="odd", spec_class=NotASpec, description="not a ServiceSpec"))  # type: ignore[arg-type]

    register_plugin(core_manager, Odd(), "test-odd")
    try:
        registry = build_registry(core_manager)
    except PluginError as exc:
        assert "test-odd" in str(exc)
        return
    # Accepted: then loading a project that uses it should at least be a named, expected error.
    with pytest.raises(ProjectDeployerError, match="test-odd"):
        build_project({"project": {"name": "shop"}, "services": {"o": {"type": "odd"}}}, registry=registry)


def test_registry_follows_registered_plugins(core_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    assert "widget" not in get_registry(core_manager).service_types
    register_plugin(core_manager, WidgetPlugin(), "test-widget")
    assert "widget" in get_registry(core_manager).service_types  # rebuilt: the plugin set changed
    core_manager.unregister(name="test-widget")
    assert "widget" not in get_registry(core_manager).service_types


def test_hook_register_providers(manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    services = {"api": {"type": "python", "server_zone": "moon1"}}
    with pytest.raises(ConfigError, match=r"services\.api\.server_zone: unknown zone 'moon1'"):
        make_project(manager, services)

    made: list[FakeProvider] = []

    def factory() -> FakeProvider:
        made.append(FakeProvider("moon"))
        return made[-1]

    class MoonPlugin:
        @hookimpl
        def register_providers(self, register: Callable[..., None]) -> None:
            register("moon", factory, zones={"moon1", "moon2"})

    register_plugin(manager, MoonPlugin(), "test-moon")
    registry = build_registry(manager)
    entry = registry.providers["moon"]
    assert entry.plugin == "test-moon" and entry.zones == {"moon1", "moon2"}
    assert {"moon1", "moon2", "lon1", "local"} <= registry.zones  # added to the built-ins' zones
    assert made == []  # the factory is lazy...
    assert entry.get() is entry.get() is made[0]  # ...and called once
    # The zone is now valid, and so are an environment on the provider and its zones.
    project = make_project(manager, services, environments={"prod": {"provider": "moon", "zones": ["moon2"]}})
    assert project.services["api"].server_zone == "moon1"


def test_register_providers_duplicate_name_names_both_plugins(manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    class Impostor:
        @hookimpl
        def register_providers(self, register: Callable[..., None]) -> None:
            register("local", lambda: FakeProvider("local"), zones={"here"})

    register_plugin(manager, Impostor(), "test-impostor")
    with pytest.raises(PluginError) as excinfo:
        build_registry(manager)
    assert "'local'" in str(excinfo.value) and "'provider_local'" in str(excinfo.value) and "'test-impostor'" in str(excinfo.value)


def test_hook_register_commands(manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    from projectdeployer.cli import make_cli

    calls: list[click.Group] = []

    class CommandsPlugin:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            calls.append(cli)

            @cli.command(name="greet-test")
            @click.argument("who")
            def greet(who: str) -> None:
                """Greet WHO."""
                click.echo(f"hello {who}")

    assert "greet-test" not in make_cli(manager).commands
    register_plugin(manager, CommandsPlugin(), "test-commands")
    cli = make_cli(manager)
    assert calls == [cli]  # called with the root group it builds
    assert "greet-test" in cli.commands
    runner = CliRunner()
    result = runner.invoke(cli, ["greet-test", "world"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello world\n"
    # ... and the plugin is listed, once, with the hook it implements.
    import json

    listed = json.loads(runner.invoke(cli, ["plugins", "--json"]).output)
    mine = [p for p in listed if p["name"] == "test-commands"]
    assert len(mine) == 1 and mine[0]["hooks"] == ["register_commands"] and mine[0]["builtin"] is False


# --- provisioning and building -----------------------------------------------------------------


def test_hook_get_provider(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    project = make_project(load_plugins(make_plugin_manager(), env={}), {"api": {"type": "python"}})
    kwargs = {"project": project, "env": "prod", "zone": "lon1"}
    assert bare_manager.hook.get_provider(**kwargs) is None  # nobody answers: the core's fallback decides
    check_firstresult(bare_manager, register_plugin, "get_provider", kwargs, FakeProvider("a"), FakeProvider("b"))


def test_hook_generate_dockerfile(manager: pluggy.PluginManager, register_plugin: Callable, tmp_path: Path) -> None:
    from projectdeployer.service_types.dockerfiles import GeneratedBuild, render_dockerfile_content

    content = {"1": "FROM busybox:1.36", "2": "CMD ['echo', 'hi']"}
    project = make_project(
        manager,
        {
            "api": {"type": "python", "port": 8000, "python_version": "3.12"},
            "own": {"type": "python", "dockerfile": "docker/Dockerfile"},
            "lines": {"type": "python", "dockerfile_content": content},
            "db": {"type": "postgres"},
        },
        images={"python": "mirror.example.com/python:{version}-slim"},
    )
    hook = manager.hook.generate_dockerfile
    assert hook.spec.opts["firstresult"] is True

    built = hook(service=project.services["api"], project=project, context_dir=None)
    assert isinstance(built, GeneratedBuild)
    assert "FROM mirror.example.com/python:3.12-slim\n" in built.dockerfile  # [images] honoured
    assert "EXPOSE 8000\n" in built.dockerfile
    assert hook(service=project.services["own"], project=project, context_dir=None) is None  # the user's Dockerfile
    assert hook(service=project.services["db"], project=project, context_dir=None) is None  # postgres builds nothing
    lines = hook(service=project.services["lines"], project=project, context_dir=None)
    assert lines.dockerfile == render_dockerfile_content(content)
    assert lines.dockerfile.startswith("FROM busybox:1.36\n")

    # A plugin that generates for every service, registered last (so normally asked first),
    # still loses to the user's dockerfile_content: the generic plugin's impl is tryfirst.
    greedy = GeneratedBuild(dockerfile="FROM greedy\n")
    register_plugin(manager, recorder("generate_dockerfile", [], "greedy", greedy), "test-greedy")
    assert hook(service=project.services["lines"], project=project, context_dir=None).dockerfile == lines.dockerfile
    assert hook(service=project.services["api"], project=project, context_dir=None) is greedy

    # With the source at hand, the python type looks at it: a uv.lock decides how it installs,
    # and the build log's note says so.
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n')
    (tmp_path / "uv.lock").write_text("version = 1\n")
    unregistered = manager.unregister(name="test-greedy")
    assert unregistered is not None
    from_source = hook(service=project.services["api"], project=project, context_dir=tmp_path)
    assert "uv sync --frozen --no-dev --no-install-project" in from_source.dockerfile
    assert from_source.notes[0].startswith("python: dependencies from uv.lock with uv ")


def test_hook_build_image(bare_manager: pluggy.PluginManager, register_plugin: Callable, tmp_path: Path) -> None:
    spec = make_project(load_plugins(make_plugin_manager(), env={}), {"api": {"type": "python"}}).services["api"]
    request = BuildRequest(project="shop", service=spec, context_dir=tmp_path, dockerfile="Dockerfile", tag="me/shop-api:1.0")
    assert bare_manager.hook.build_image(request=request) is None
    check_firstresult(bare_manager, register_plugin, "build_image", {"request": request}, ("sha256:aaa", False), ("sha256:bbb", True))


def test_hook_image_inputs(bare_manager: pluggy.PluginManager, register_plugin: Callable, tmp_path: Path) -> None:
    spec = make_project(load_plugins(make_plugin_manager(), env={}), {"api": {"type": "python"}}).services["api"]
    request = BuildRequest(project="shop", service=spec, context_dir=tmp_path, dockerfile="Dockerfile", tag="me/shop-api:1.0")
    assert bare_manager.hook.image_inputs(request=request) is None
    check_firstresult(bare_manager, register_plugin, "image_inputs", {"request": request}, ("aaa", None), ("bbb", "aaa"))
    # The built-in Docker builder answers it (tests/unit/test_plan_builds.py drives it with a fake client).
    loaded = load_plugins(make_plugin_manager(), env={})
    assert "builder_docker" in [impl.plugin_name for impl in loaded.hook.image_inputs.get_hookimpls()]


def test_hook_push_image(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    kwargs = {"tag": "127.0.0.1:5000/shop-api:1.0", "log": lambda line: None}
    assert bare_manager.hook.push_image(**kwargs) is None
    check_firstresult(bare_manager, register_plugin, "push_image", kwargs, "127.0.0.1:5000/shop-api@sha256:aaa", "127.0.0.1:5000/shop-api@sha256:bbb")


# --- routing -----------------------------------------------------------------------------------


def test_hook_configure_routing(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    project = make_project(load_plugins(make_plugin_manager(), env={}), {"api": {"type": "python", "port": 8000}})
    routes = (Route(service="api", internal_port=5123, protocol="http", backends=(Backend(host="shop-prod-api-a", port=8000),), domain="api.example.com"),)
    check_collecting(bare_manager, register_plugin, "configure_routing", {"server": FakeServer(), "project": project, "env": "prod", "routes": routes, "certificates": {}})
    # The built-in nginx sidecar implements it (tests/docker/test_sidecar.py drives it for real).
    loaded = load_plugins(make_plugin_manager(), env={})
    assert "routing_nginx" in [impl.plugin_name for impl in loaded.hook.configure_routing.get_hookimpls()]


def test_hook_publish_domains(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    project = make_project(load_plugins(make_plugin_manager(), env={}), {})
    targets = [DomainTarget(domain="api.example.com", service="api", health_path="/health", zones={"lon1": ("198.51.100.1",)})]
    check_collecting(bare_manager, register_plugin, "publish_domains", {"project": project, "env": "prod", "targets": targets, "log": lambda line: None})


def test_hook_obtain_certificate(bare_manager: pluggy.PluginManager, manager: pluggy.PluginManager, register_plugin: Callable, home: Path) -> None:
    kwargs = {"project": "shop", "env": "prod", "domain": "api.example.com", "servers": [FakeServer()]}
    assert bare_manager.hook.obtain_certificate(**kwargs) is None
    check_firstresult(bare_manager, register_plugin, "obtain_certificate", kwargs, ("CERT-A", "KEY-A"), ("CERT-B", "KEY-B"))

    # With the built-ins, nobody else answering: tls_selfsigned's cached self-signed certificate.
    cert, key = manager.hook.obtain_certificate(**kwargs)
    assert cert.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY" in key
    assert (home / "shop" / "prod" / "secrets" / "certs" / "api.example.com.crt").read_text() == cert
    # trylast: any issuer that answers is asked before it and wins.
    register_plugin(manager, recorder("obtain_certificate", [], "acme", ("CERT-A", "KEY-A")), "test-acme")
    assert manager.hook.obtain_certificate(**kwargs) == ("CERT-A", "KEY-A")
    assert manager.hook.obtain_certificate.get_hookimpls()[0].plugin_name == "tls_selfsigned"  # called last


def test_domain_certificates_asks_obtain_certificate_for_each_domain_route(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    """What the deploy hands configure_routing as ``certificates``: one hook call per domain."""
    asked: list[str] = []

    class Issuer:
        @hookimpl
        def obtain_certificate(self, project: str, env: str, domain: str, servers: list[Server]) -> tuple[str, str] | None:
            asked.append(f"{project}/{env}/{domain}/{servers[0].name}")
            return None if domain == "www.example.com" else (f"CERT-{domain}", f"KEY-{domain}")

    register_plugin(bare_manager, Issuer(), "test-issuer")
    backend = (Backend(host="shop-prod-api-a", port=8000),)
    routes = [
        Route(service="api", internal_port=5123, protocol="http", backends=backend, domain="api.example.com"),
        Route(service="www", internal_port=5124, protocol="http", backends=backend, domain="www.example.com"),
        Route(service="db", internal_port=5432, protocol="tcp", backends=backend),
    ]
    server = FakeServer()
    assert domain_certificates(bare_manager, server, "shop", "prod", routes) == {"api.example.com": ("CERT-api.example.com", "KEY-api.example.com")}  # no answer: left out
    assert asked == [f"shop/prod/api.example.com/{server.name}", f"shop/prod/www.example.com/{server.name}"]
    asked.clear()
    assert domain_certificates(bare_manager, server, "shop", "prod", routes[2:]) == {} and asked == []  # no domain, no call


# --- secrets -----------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_hook_resolve_secret(core_manager: pluggy.PluginManager, register_plugin: Callable, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resolve = core_manager.hook.resolve_secret
    # The essential store handles secret:, env: and file: ...
    core_manager.hook.store_secret(project="shop", env="prod", name="db/password", value="s3cret")
    assert resolve(project="shop", env="prod", ref="secret:db/password") == "s3cret"
    monkeypatch.setenv("SHOP_TEST_TOKEN", "from-env")
    assert resolve(project="shop", env="prod", ref="env:SHOP_TEST_TOKEN") == "from-env"
    kept = tmp_path / "elsewhere" / "token.txt"
    kept.parent.mkdir()
    kept.write_text("from-file\n")
    assert resolve(project="shop", env=None, ref=f"file:{kept}") == "from-file"
    # ... and nothing else: another scheme falls through to None.
    assert resolve(project="shop", env="prod", ref="vault:kv/api") is None

    # A missing secret of its schemes is an error naming the reference.
    monkeypatch.delenv("SHOP_TEST_MISSING", raising=False)
    for ref in ("secret:db/nope", "env:SHOP_TEST_MISSING", f"file:{tmp_path / 'missing.txt'}"):
        with pytest.raises(SecretError, match=re.escape(f"'{ref}'")):
            resolve(project="shop", env="prod", ref=ref)
    with pytest.raises(SecretError, match="not a valid secret name"):
        resolve(project="shop", env="prod", ref="secret:../../etc/passwd")

    check_firstresult(core_manager, register_plugin, "resolve_secret", {"project": "shop", "env": "prod", "ref": "vault:kv/api"}, "v-first", "v-second")
    # An installed plugin is asked before the essential store, so it may take over secret: refs.
    assert resolve(project="shop", env="prod", ref="secret:db/password") == "v-second"


def test_hook_store_secret(core_manager: pluggy.PluginManager, register_plugin: Callable, home: Path) -> None:
    store, resolve = core_manager.hook.store_secret, core_manager.hook.resolve_secret

    # Project-wide (env None): {home}/{project}/secrets/NAME, file 0600, directories 0700.
    assert store(project="shop", env=None, name="api/git_token", value="ghp_abc") == "secret:api/git_token"
    path = home / "shop" / "secrets" / "api" / "git_token"
    assert path.read_text() == "ghp_abc"
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700
    assert resolve(project="shop", env=None, ref="secret:api/git_token") == "ghp_abc"
    # An environment sees project-wide secrets too.
    assert resolve(project="shop", env="prod", ref="secret:api/git_token") == "ghp_abc"

    # Per environment: {home}/{project}/{env}/secrets/NAME, which wins over the project-wide one.
    assert store(project="shop", env="prod", name="api/git_token", value="ghp_prod") == "secret:api/git_token"
    env_path = home / "shop" / "prod" / "secrets" / "api" / "git_token"
    assert _mode(env_path) == 0o600 and _mode(env_path.parent) == 0o700 and _mode(env_path.parent.parent) == 0o700
    assert resolve(project="shop", env="prod", ref="secret:api/git_token") == "ghp_prod"
    assert resolve(project="shop", env=None, ref="secret:api/git_token") == "ghp_abc"

    with pytest.raises(SecretError, match="not a valid secret name"):
        store(project="shop", env=None, name="../escape", value="x")

    before = sorted(home.rglob("*"))
    kwargs = {"project": "shop", "env": "prod", "name": "api/other", "value": "xyz"}
    check_firstresult(core_manager, register_plugin, "store_secret", kwargs, "vault:shop/first", "vault:shop/second")
    assert sorted(home.rglob("*")) == before  # a plugin that kept it: the file store wrote nothing


def test_secret_store_round_trip_keeps_the_value(core_manager: pluggy.PluginManager, home: Path) -> None:
    value = "  pass phrase with spaces \t"
    ref = core_manager.hook.store_secret(project="shop", env=None, name="db/password", value=value)
    assert core_manager.hook.resolve_secret(project="shop", env=None, ref=ref) == value


_STORE_THROUGH_API = """
import os, sys
from pathlib import Path
from projectdeployer import ProjectDeployer, hookimpl
from projectdeployer.core.registry import build_registry
from projectdeployer.plugins import load_plugins, make_plugin_manager, pm

MODE = sys.argv[1]
home = Path(os.environ["PROJECTDEPLOYER_HOME"])
home.mkdir(parents=True, exist_ok=True)
path = home / "shop.toml"
path.write_text('[project]\\nname = "shop"\\n')

if MODE == "vault":
    class Vault:
        @hookimpl
        def store_secret(self, project, env, name, value):
            return f"vault:{project}/{name}"
    load_plugins()
    pm.register(Vault(), name="vault")
    project = ProjectDeployer(str(path), path=path)
else:  # an explicit registry, built from another manager: the global one is never loaded
    registry = build_registry(load_plugins(make_plugin_manager(), env={}))
    project = ProjectDeployer(str(path), path=path, registry=registry)

try:
    project.add_python_service("api", git_repo="https://example.com/me/api.git@main", git_token="ghp_abc")
except Exception as exc:
    print(f"raised {type(exc).__name__}: {exc}")
print(path.read_text())
print("stored:", sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()))
"""


def _add_git_token(tmp_path: Path, mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", _STORE_THROUGH_API, mode], capture_output=True, text=True, env=cli_env(tmp_path), timeout=60, check=True)
    return done.stdout


def test_store_secret_reference_is_written_to_the_project_file(tmp_path: Path) -> None:
    out = _add_git_token(tmp_path, "vault")
    assert 'git_token = "vault:shop/api/git_token"' in out


def test_store_secret_is_never_silently_dropped(tmp_path: Path) -> None:
    out = _add_git_token(tmp_path, "explicit-registry")
    assert "raised" in out or "secrets/api/git_token" in out


def test_hook_secret_rotated(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    check_collecting(bare_manager, register_plugin, "secret_rotated", {"project": "shop", "env": "prod", "service": "api"})


# --- monitoring --------------------------------------------------------------------------------


def test_hook_health_checks(manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    project = make_project(
        manager,
        {
            "postgres": {"type": "postgres"},
            "redis": {"type": "redis"},
            "api": {"type": "python", "port": 8000, "health_path": "/healthz"},
            "worker": {"type": "python"},
            "cron": {"type": "python", "schedule": "*/5 * * * *"},
            "web": {"type": "react"},
        },
    )
    hook = manager.hook.health_checks
    assert not hook.spec.opts["firstresult"]

    def checks(name: str) -> list[HealthCheck]:
        results = hook(service=project.services[name])
        assert all(isinstance(r, list) for r in results)  # one list per plugin that answered
        return [check for result in results for check in result]

    assert [(c.kind, c.port) for c in checks("postgres")] == [("tcp", 5432)]
    assert [(c.kind, c.port) for c in checks("redis")] == [("tcp", 6379)]
    assert [(c.kind, c.port, c.path) for c in checks("api")] == [("http", 8000, "/healthz")]
    assert [(c.kind, c.port, c.path) for c in checks("web")] == [("http", 80, "/")]
    assert [c.kind for c in checks("worker")] == ["image"]  # no port: the image's HEALTHCHECK
    assert checks("cron") == []  # a scheduled job runs and exits

    # Collected: a plugin's extra check comes on top of the type's own.
    extra = HealthCheck(kind="command", command=("true",))
    calls: list[tuple[str, dict[str, Any]]] = []
    register_plugin(manager, recorder("health_checks", calls, "extra", [extra]), "test-extra-check")
    assert [c.kind for c in checks("api")] == ["command", "http"]
    assert calls == [("extra", {"service": project.services["api"]})]


def test_hook_collect_metrics(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    server = FakeServer()
    check_collecting(bare_manager, register_plugin, "collect_metrics", {"server": server})

    fresh = make_plugin_manager()
    cpu = MetricSample(server=server.name, service=None, name="cpu_percent", value=50.0, timestamp=1.0)
    rps = MetricSample(server=server.name, service="api", name="rps", value=12.0, timestamp=1.0)
    register_plugin(fresh, recorder("collect_metrics", [], "cpu", [cpu]), "test-cpu")
    register_plugin(fresh, recorder("collect_metrics", [], "rps", [rps]), "test-rps")
    assert fresh.hook.collect_metrics(server=server) == [[rps], [cpu]]


def test_hook_send_alert(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    alert = Alert(severity="critical", title="server down", body="3 failed checks", project="shop", env="prod", server="shop-prod-lon1-1")
    check_collecting(bare_manager, register_plugin, "send_alert", {"alert": alert})


# --- lifecycle ---------------------------------------------------------------------------------


PLAN = Plan(project="shop", env="prod", steps=(Step(action="start", service="api", server="shop-prod-lon1-1"),))


def test_hook_before_deploy(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    check_collecting(bare_manager, register_plugin, "before_deploy", {"plan": PLAN})

    class Veto:
        @hookimpl
        def before_deploy(self, plan: Plan) -> None:
            raise ProjectDeployerError(f"no deploys of {plan.env} today")

    register_plugin(bare_manager, Veto(), "test-veto")
    with pytest.raises(ProjectDeployerError, match="no deploys of prod today"):
        bare_manager.hook.before_deploy(plan=PLAN)  # raising vetoes the deploy


def test_hook_after_deploy(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    result = DeployResult(plan=PLAN, releases={"api": "r-20260101-1"}, seconds=12.5)
    check_collecting(bare_manager, register_plugin, "after_deploy", {"result": result})


def test_hook_deploy_failed(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    check_collecting(bare_manager, register_plugin, "deploy_failed", {"plan": PLAN, "error": RuntimeError("unhealthy")})


# --- containers --------------------------------------------------------------------------------


def test_hook_container_parts(manager: pluggy.PluginManager, register_plugin: Callable, home: Path) -> None:
    project = make_project(manager, {"db": {"type": "postgres"}, "cache": {"type": "redis"}, "api": {"type": "python", "port": 8000}})
    pg = manager.hook.container_parts(service=project.services["db"], project=project, env="prod")
    assert pg.env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/pd/password"
    assert "POSTGRES_PASSWORD" not in pg.env  # the password is a file, never the environment
    password = (home / "shop" / "prod" / "secrets" / "db" / "db_password").read_text()
    assert len(password) == 32 and password.isalnum()
    assert pg.secret_files == {"password": password} and pg.secret_owner == "postgres"
    assert pg.data_volumes == {"data": "/var/lib/postgresql/data"}
    redis = manager.hook.container_parts(service=project.services["cache"], project=project, env="prod")
    assert redis.command == ("redis-server", "/run/secrets/pd/redis.conf")
    assert "requirepass " in redis.secret_files["redis.conf"] and not any("requirepass" in part for part in redis.command)
    assert manager.hook.container_parts(service=project.services["api"], project=project, env="prod") is None
    from projectdeployer.core.containers import ContainerParts

    check_firstresult(
        manager, register_plugin, "container_parts", {"service": project.services["api"], "project": project, "env": "prod"}, ContainerParts(env={"A": "1"}), ContainerParts(env={"B": "2"})
    )


def test_hook_backup_method(manager: pluggy.PluginManager, register_plugin: Callable, home: Path) -> None:
    from projectdeployer.core.backups import BackupPolicy, BackupTarget

    project = make_project(manager, {"db": {"type": "postgres"}, "cache": {"type": "redis"}, "api": {"type": "python", "port": 8000}})
    pg = manager.hook.backup_method(service=project.services["db"])
    redis = manager.hook.backup_method(service=project.services["cache"])
    assert (pg.extension, redis.extension) == ("dump", "rdb")
    assert manager.hook.backup_method(service=project.services["api"]) is None
    target = BackupTarget(
        project=project,
        env="prod",
        service=project.services["db"],
        server=FakeServer(),
        runtime=None,  # type: ignore[arg-type]
        image="postgres:15",
        host="shop_prod_db",
        port=5432,
        policy=BackupPolicy(enabled=True, schedule="0 2 * * *", retention_days=7),
    )
    job = pg.backup_job(target)
    password = (home / "shop" / "prod" / "secrets" / "db" / "db_password").read_text()
    # The password only in the private pgpass file, never in the command or environment.
    assert password in job.secret_files["pgpass"]
    assert not any(password in part for part in job.command) and not any(password in v for v in job.env.values())
    assert job.env["PGPASSFILE"] == "/run/secrets/pd/pgpass" and "pg_dump --format=custom" in job.command[-1]
    assert pg.verify_job(target, "db_20250101_020000.dump").command == ("pg_restore", "--list", "/backups/db_20250101_020000.dump")
    check_firstresult(manager, register_plugin, "backup_method", {"service": project.services["api"]}, pg, redis)


def test_a_plugins_type_answers_the_hooks_through_its_methods(manager: pluggy.PluginManager, register_plugin: Callable, home: Path) -> None:
    """A third-party type that subclasses ServiceType: the adapter asks its methods, found in the
    manager's plugins as they are now; a plugin's own hook implementation still wins."""
    from projectdeployer.core.containers import ContainerParts

    @attrs.frozen(kw_only=True)
    class CacheType(ServiceType):
        def container_parts(self, service, ctx):  # type: ignore[no-untyped-def]
            return ContainerParts(env={"CACHE_OF": f"{ctx.project}/{ctx.env}/{service.name}"}, secret_files={"password": ctx.ensure_password(service.name)})

        def health_checks(self, service):  # type: ignore[no-untyped-def]
            return [HealthCheck(kind="tcp", port=11211)]

    cache_type = CacheType(name="cache", spec_class=ServiceSpec, description="a cache")

    class CachePlugin:
        @hookimpl
        def register_service_types(self, register):  # type: ignore[no-untyped-def]
            register(cache_type)

    register_plugin(manager, CachePlugin(), "test-cache-type")
    project = make_project(manager, {"c": {"type": "cache"}, "api": {"type": "python", "port": 8000}})
    parts = manager.hook.container_parts(service=project.services["c"], project=project, env="prod")
    assert parts.env == {"CACHE_OF": "shop/prod/c"}
    assert parts.secret_files["password"] == (home / "shop" / "prod" / "secrets" / "c" / "c_password").read_text()
    assert [c.port for found in manager.hook.health_checks(service=project.services["c"]) if found for c in found] == [11211]
    assert manager.hook.backup_method(service=project.services["c"]) is None  # the default: no backups
    assert manager.hook.container_parts(service=project.services["api"], project=project, env="prod") is None
    override = ContainerParts(env={"MINE": "1"})
    register_plugin(manager, recorder("container_parts", [], "override", override), "test-cache-override")
    assert manager.hook.container_parts(service=project.services["c"], project=project, env="prod") is override


def test_hook_live_routes(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    project = make_project(load_plugins(make_plugin_manager(), env={}), {})
    kwargs = {"server": FakeServer(), "project": project, "env": "prod"}
    assert bare_manager.hook.live_routes(**kwargs) is None
    first = [Route(service="api", internal_port=5123, protocol="http", backends=(Backend(host="shop_prod_api_a", port=8000),))]
    second = [Route(service="api", internal_port=5123, protocol="http", backends=(Backend(host="shop_prod_api_b", port=8000),))]
    check_firstresult(bare_manager, register_plugin, "live_routes", kwargs, first, second)


def test_hook_wait_drained(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    project = make_project(load_plugins(make_plugin_manager(), env={}), {})
    kwargs = {"server": FakeServer(), "project": project, "env": "prod", "timeout": 1.0, "backends": [Backend(host="shop_prod_api_a", port=8000)]}
    assert bare_manager.hook.wait_drained(**kwargs) is None
    check_firstresult(bare_manager, register_plugin, "wait_drained", kwargs, True, False)


def test_hook_remove_routing(bare_manager: pluggy.PluginManager, register_plugin: Callable) -> None:
    project = make_project(load_plugins(make_plugin_manager(), env={}), {})
    check_collecting(bare_manager, register_plugin, "remove_routing", {"server": FakeServer(), "project": project, "env": "prod"})
    # The built-in nginx sidecar implements it (tests/docker/test_destroy.py drives it for real).
    loaded = load_plugins(make_plugin_manager(), env={})
    assert "routing_nginx" in [impl.plugin_name for impl in loaded.hook.remove_routing.get_hookimpls()]


# --- the plugin manager ------------------------------------------------------------------------


BUILTIN_EPS = {ep.name for ep in plugins._entry_points() if ep.dist is not None and ep.dist.name == "projectdeployer"}


def _names(manager: pluggy.PluginManager) -> set[str]:
    return {p["name"] for p in get_plugins(manager)}


def test_builtins_are_entry_points() -> None:
    assert {"service_postgres", "service_python", "service_generic", "provider_local"} <= BUILTIN_EPS
    assert not ESSENTIAL & BUILTIN_EPS  # the essential core is not optional, so not an entry point


def test_load_plugins_unset_loads_everything(manager: pluggy.PluginManager) -> None:
    assert _names(manager) == ESSENTIAL | {ep.name for ep in plugins._entry_points()}
    described = {p["name"]: p for p in get_plugins(manager)}
    postgres = described["service_postgres"]
    assert postgres["builtin"] is True and postgres["distribution"] == "projectdeployer"
    # A type's plugin registers it; the per-service hooks are answered from its methods by the
    # essential adapter.
    assert postgres["hooks"] == ["register_service_types"]
    assert postgres["module"] == "projectdeployer.service_types.postgres"
    adapter = described["service_type_methods"]
    assert adapter["builtin"] is True and adapter["module"] == "projectdeployer.default_plugins.service_type_methods"
    assert adapter["hooks"] == ["backup_method", "container_parts", "generate_dockerfile", "health_checks"]


def test_load_plugins_empty_loads_only_the_essential_core(core_manager: pluggy.PluginManager) -> None:
    assert _names(core_manager) == ESSENTIAL
    registry = build_registry(core_manager)
    assert registry.service_types == {} and registry.providers == {}
    assert core_manager.hook.resolve_secret(project="shop", env=None, ref="env:PATH") == os.environ["PATH"]


def test_load_plugins_selects_by_entry_point_name() -> None:
    manager = load_plugins(make_plugin_manager(), env={LOAD_ENV: "service_postgres"})
    assert _names(manager) == ESSENTIAL | {"service_postgres"}
    assert set(build_registry(manager).service_types) == {"postgres"}

    manager = load_plugins(make_plugin_manager(), env={LOAD_ENV: " service_redis , provider_local ,"})
    assert _names(manager) == ESSENTIAL | {"service_redis", "provider_local"}


def test_load_plugins_selects_by_distribution_name() -> None:
    manager = load_plugins(make_plugin_manager(), env={LOAD_ENV: "projectdeployer"})
    assert _names(manager) == ESSENTIAL | BUILTIN_EPS


def test_load_plugins_twice_is_harmless(manager: pluggy.PluginManager) -> None:
    before = _names(manager)
    load_plugins(manager, env={})
    assert _names(manager) == before


class FakeDist:
    name = "projectdeployer-broken"
    version = "9.9"


class FakeEntryPoint:
    """What ``importlib.metadata`` gives for ``[project.entry-points.projectdeployer]``."""

    group = "projectdeployer"

    def __init__(self, name: str, value: str, load: Callable[[], object], dist: object | None = FakeDist()) -> None:
        self.name, self.value, self._load, self.dist = name, value, load, dist

    def load(self) -> object:
        return self._load()


def _with_entry_points(monkeypatch: pytest.MonkeyPatch, *extra: FakeEntryPoint) -> None:
    real = list(plugins._entry_points())
    monkeypatch.setattr(plugins, "_entry_points", lambda: [*real, *extra])


def _module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(textwrap.dedent(source), module.__dict__)
    return module


def test_a_misspelled_hook_fails_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    typo = _module(
        "typo_plugin",
        """
        from projectdeployer import hookimpl

        @hookimpl
        def register_servce_types(register):
            pass
        """,
    )
    _with_entry_points(monkeypatch, FakeEntryPoint("typo", "typo_plugin", lambda: typo))
    with pytest.raises(PluginError) as excinfo:
        load_plugins(make_plugin_manager(), env={})
    assert "register_servce_types" in str(excinfo.value) and "typo_plugin" in str(excinfo.value)


def test_a_misspelled_hook_registered_by_hand_fails_check(bare_manager: pluggy.PluginManager) -> None:
    class Typo:
        @hookimpl
        def before_deplyo(self, plan: Plan) -> None:
            pass

    bare_manager.register(Typo(), name="test-typo")
    with pytest.raises(PluginError, match="before_deplyo"):
        load_plugins(bare_manager, env={LOAD_ENV: ""})


def test_a_hook_with_a_wrong_parameter_fails_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = _module(
        "wrong_plugin",
        """
        from projectdeployer import hookimpl

        @hookimpl
        def health_checks(service, servers):
            return None
        """,
    )
    _with_entry_points(monkeypatch, FakeEntryPoint("wrong", "wrong_plugin", lambda: wrong))
    with pytest.raises(PluginError) as excinfo:
        load_plugins(make_plugin_manager(), env={})
    message = str(excinfo.value)
    assert "plugin 'wrong' (wrong_plugin) from projectdeployer-broken 9.9" in message and "servers" in message


def _boom() -> object:
    raise ImportError("boom")


def test_a_plugin_that_fails_to_import_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_entry_points(monkeypatch, FakeEntryPoint("broken", "broken_plugin", _boom))
    with pytest.raises(PluginError) as excinfo:
        load_plugins(make_plugin_manager(), env={})
    message = str(excinfo.value)
    assert "plugin 'broken' (broken_plugin) from projectdeployer-broken 9.9 failed to load: ImportError: boom" in message
    assert LOAD_ENV in message  # and it says how to start anyway
    assert isinstance(excinfo.value.__cause__, ImportError)

    # The way out: load a list without it.
    manager = load_plugins(make_plugin_manager(), env={LOAD_ENV: "service_postgres"})
    assert _names(manager) == ESSENTIAL | {"service_postgres"}


def _broken_distribution(where: Path) -> Path:
    """An installed (dist-info) distribution whose plugin module raises on import."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "broken_plugin_mod.py").write_text('raise ImportError("boom: the plugin cannot import its SDK")\n')
    info = where / "projectdeployer_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: projectdeployer-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[projectdeployer]\nbroken = broken_plugin_mod\n")
    return where


def test_cli_reports_a_broken_plugin_in_one_line(tmp_path: Path) -> None:
    site = _broken_distribution(tmp_path / "site")
    done = subprocess.run([str(CLI_SCRIPT), "plugins"], capture_output=True, text=True, env=cli_env(tmp_path, site), timeout=60)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: plugin 'broken' (broken_plugin_mod) from projectdeployer-broken 0.1 failed to load: ImportError: boom")
    assert LOAD_ENV in lines[0]

    # ... and the way out works from the command line too.
    done = subprocess.run([str(CLI_SCRIPT), "plugins", "--json"], capture_output=True, text=True, env=cli_env(tmp_path, site, **{LOAD_ENV: "service_postgres"}), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "service_postgres" in done.stdout and "broken" not in done.stdout


def test_trace_plugins_prints_hook_calls(capsys: pytest.CaptureFixture[str]) -> None:
    manager = load_plugins(make_plugin_manager(), env={TRACE_ENV: "1"})
    spec = make_project(manager, {"postgres": {"type": "postgres"}}).services["postgres"]
    capsys.readouterr()
    manager.hook.health_checks(service=spec)
    captured = capsys.readouterr()
    assert captured.out == ""
    trace = captured.err
    assert re.search(r"^\[plugins\] health_checks\(service\) -> .*service_type_methods", trace, re.M), trace
    assert re.search(r"^\[plugins\] health_checks returned \[\[HealthCheck\(kind='tcp', port=5432", trace, re.M), trace

    quiet = load_plugins(make_plugin_manager(), env={})
    capsys.readouterr()
    quiet.hook.health_checks(service=spec)
    assert capsys.readouterr().err == ""


def test_trace_plugins_reports_what_a_hook_raised(bare_manager: pluggy.PluginManager, register_plugin: Callable, capsys: pytest.CaptureFixture[str]) -> None:
    class Veto:
        @hookimpl
        def before_deploy(self, plan: Plan) -> None:
            raise ProjectDeployerError("vetoed")

    register_plugin(bare_manager, Veto(), "test-veto")
    load_plugins(bare_manager, env={LOAD_ENV: "", TRACE_ENV: "1"})
    capsys.readouterr()
    with pytest.raises(ProjectDeployerError):
        bare_manager.hook.before_deploy(plan=PLAN)
    assert "[plugins] before_deploy raised ProjectDeployerError: vetoed" in capsys.readouterr().err


def test_trace_plugins_shows_registration_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    manager = load_plugins(make_plugin_manager(), env={TRACE_ENV: "1"})
    capsys.readouterr()
    build_registry(manager)
    assert "register_service_types" in capsys.readouterr().err
