"""Dockerfile generation for the built-in service types: pure functions, no I/O beyond templates.

``render_python``, ``render_nodejs`` and ``render_react`` turn a service's settings into a
:class:`GeneratedBuild`: the Dockerfile text plus any extra files the build context needs (the
nginx config of a single-page application). ``render_dockerfile_content`` turns the seed's
``dockerfile_content={"1": "FROM ...", ...}`` mapping into a Dockerfile.

Constraints every template honours:

- Builds go through the Docker SDK's classic builder (engine 20.10): no BuildKit syntax (no
  ``# syntax=`` line, heredocs or ``RUN --mount``). Multi-stage builds and ``COPY --from`` are fine.
- Base images come from the caller (the project's ``[images]``), never from the templates.
- Output is deterministic and tidy: no trailing spaces, no runs of blank lines, one final newline.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
import types
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import attrs
import jinja2

from ..core.build import GeneratedBuild  # the contract type; re-exported (__all__) for the service types
from ..core.safety import DEBIAN_PACKAGE_RE, IMAGE_REF_RE, SAFE_PATH_RE, command_argv

__all__ = [
    "HASHED_ASSET_REGEX",
    "NGINX_CONF_PATH",
    "PACKAGE_MANAGERS",
    "POETRY_VERSION",
    "PYPROJECT_REQUIREMENTS_PATH",
    "UV_VERSION",
    "GeneratedBuild",
    "PythonInstall",
    "default_spa_nginx_config",
    "render_dockerfile_content",
    "render_nodejs",
    "render_python",
    "render_react",
]

#: Where a react build's nginx config is written, relative to the build context root.
NGINX_CONF_PATH = ".projectdeployer/nginx.conf"
#: Where the static ``[project].dependencies`` of a pyproject.toml project are written (one
#: requirement a line), so that they install in a layer of their own before the source is copied.
PYPROJECT_REQUIREMENTS_PATH = ".projectdeployer/pyproject-requirements.txt"
#: The Poetry and uv releases (from PyPI) that install locked dependencies. Pinned, so a build
#: does not change with the day's release; ``build_args = {POETRY_VERSION = "..."}`` (or
#: ``UV_VERSION``) picks another.
POETRY_VERSION = "2.5.1"
UV_VERSION = "0.13.10"

#: File names that carry a content hash, so they may be cached forever (``immutable``).
#: Matched against the request path by nginx (PCRE) and by Python's ``re`` in the tests.
#: A name qualifies when, just before its extension (optionally ``.chunk``, optionally
#: followed by ``.map``), it has either
#:
#: - ``.`` or ``-`` and 8 to 32 lowercase hex digits: webpack style, as emitted by Create React
#:   App and Vue CLI (``main.3f9a1c2e.js``, ``main.3f9a1c2e.chunk.js``), Angular's webpack
#:   builder (``main.3f9a1c2e5b6d7e8f.js``) and Vite before 5 (``index-4ed993c7.js``); or
#: - ``-`` and exactly 8 base64url/base32 characters with at least one digit or capital:
#:   Rollup/Vite 5+ (``index-BXk2_3aZ.js``) and Angular's esbuild builder (``chunk-5WRI5ZAA.js``).
#:   Requiring a digit or capital keeps ordinary words out (``chunk-vendors.js``,
#:   ``index-abcdefgh.js``), at the cost of missing ~0.1% of Rollup hashes.
#:
#: and an asset extension (scripts, styles, fonts, images, wasm; never ``.html`` or ``.json``).
#: A miss is harmless (the file is revalidated like any other); a false positive would pin a
#: file for a year, which is why the rule is narrow. Known false positive: an unhashed file named
#: like ``Font-SemiBold.woff2`` (8 characters with a capital); use ``nginx_config`` if that matters.
HASHED_ASSET_REGEX = (
    r"(?:[.-][0-9a-f]{8,32}|-(?=[0-9A-Za-z_-]{0,7}[0-9A-Z])[0-9A-Za-z_-]{8})"
    r"(?:\.chunk)?"
    r"\.(?:m?js|css|woff2?|ttf|otf|eot|svg|png|jpe?g|gif|webp|avif|ico|wasm)(?:\.map)?$"
)

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,  # a typo in a template is an error, not an empty string
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,  # Dockerfiles and nginx configs, not HTML
)


def _names(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class PythonInstall:
    """How a Python service's dependencies are installed (``service_types/pysource.py`` finds
    it in the build context).

    ``manager``:

    - ``pip``: ``requirements_files`` with ``pip install -r``; or, with ``pyproject``, the
      pyproject.toml project: its static ``dependencies`` first (a cached layer), then, when
      ``install_project``, ``pip install .`` once the source is copied (``dependencies`` None:
      dynamic, so they come with the project);
    - ``poetry``: poetry.lock with ``poetry install --only main --no-root``;
    - ``uv``: uv.lock with ``uv sync --frozen --no-dev --no-install-project``.

    ``reason`` says which file was used and why (the build log and plan show it).
    """

    manager: str = "pip"
    requirements_files: tuple[str, ...] = attrs.field(default=("requirements.txt",), converter=_names)
    pyproject: bool = False
    dependencies: tuple[str, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(_names))
    install_project: bool = False
    reason: str = ""


@attrs.frozen
class _PackageManager:
    """The shell lines that install, prune and build with one Node.js package manager."""

    name: str
    manifests: str  # COPY sources: package.json, the lockfile (wildcard), .npmrc (wildcard)
    install_all: str  # every dependency, for a build
    install_prod: str  # production dependencies only, when there is no build step
    prune: str  # drop devDependencies after a build
    default_build: str
    setup: str | None = None  # one-time setup before the package manager can run
    setup_comment: str | None = None


def _frozen_if_lockfile(lockfile: str, frozen: str, unfrozen: str) -> str:
    # A lockfile pins exact versions, but the frozen installs refuse to run without one, so
    # projects that have none still build (with whatever the manifest's ranges resolve to).
    return f"if [ -f {lockfile} ]; then {frozen}; else {unfrozen}; fi"


#: The supported package managers, by name. The ``.npmrc`` goes with the manifests because it
#: changes how installs resolve (``legacy-peer-deps``, pnpm's ``node-linker``, private scopes).
PACKAGE_MANAGERS: Mapping[str, _PackageManager] = types.MappingProxyType(
    {
        "npm": _PackageManager(
            name="npm",
            manifests="package*.json .npmrc*",
            install_all=_frozen_if_lockfile("package-lock.json", "npm ci", "npm install"),
            install_prod=_frozen_if_lockfile("package-lock.json", "npm ci --omit=dev", "npm install --omit=dev") + " && npm cache clean --force",
            prune="npm prune --omit=dev",
            default_build="npm run build",
        ),
        "yarn": _PackageManager(
            name="yarn",
            manifests="package.json yarn.lock* .npmrc* .yarnrc*",
            install_all=_frozen_if_lockfile("yarn.lock", "yarn install --frozen-lockfile", "yarn install"),
            install_prod=_frozen_if_lockfile(
                "yarn.lock",
                "yarn install --frozen-lockfile --production",
                "yarn install --production",
            )
            + " && yarn cache clean",
            prune=_frozen_if_lockfile(
                "yarn.lock",
                "yarn install --frozen-lockfile --production",
                "yarn install --production",
            ),
            default_build="yarn build",
        ),
        "pnpm": _PackageManager(
            name="pnpm",
            manifests="package.json pnpm-lock.yaml* .npmrc*",
            install_all=_frozen_if_lockfile("pnpm-lock.yaml", "pnpm install --frozen-lockfile", "pnpm install"),
            install_prod=_frozen_if_lockfile("pnpm-lock.yaml", "pnpm install --frozen-lockfile --prod", "pnpm install --prod"),
            prune="pnpm prune --prod",
            default_build="pnpm build",
            setup="corepack enable",
            setup_comment="# pnpm ships with Node.js through corepack.",
        ),
    }
)


def render_python(
    *,
    base_image: str,
    requirements_files: Sequence[str] = ("requirements.txt",),
    command: str | None,
    port: int | None,
    install: PythonInstall | None = None,
    system_packages: Sequence[str] = (),
    build_packages: Sequence[str] = (),
) -> GeneratedBuild:
    """Dockerfile for a Python service (Flask, FastAPI, Django, workers, cron jobs).

    Dependencies are installed before the code is copied (layer caching), as ``install`` says
    (:class:`PythonInstall`; default: ``pip install --no-cache-dir -r`` of
    ``requirements_files``): requirements files, a pyproject.toml project, poetry.lock with
    Poetry or uv.lock with uv (Poetry and uv from PyPI, versions :data:`POETRY_VERSION` and
    :data:`UV_VERSION`, build args ``POETRY_VERSION`` / ``UV_VERSION``). Build args
    ``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ``PIP_TRUSTED_HOST`` and ``PIP_FIND_LINKS``
    point pip at a mirror or wheelhouse.

    ``system_packages`` (Debian packages the app needs at run time) are installed with apt-get
    in every stage; ``build_packages`` (compilers, ``-dev`` headers) only in a build stage.
    With build packages, Poetry or uv, a build stage installs the dependencies into the virtual
    environment ``/venv`` and the final stage copies it (``VIRTUAL_ENV=/venv``, first on
    ``PATH``); otherwise there is one stage, and pip installs into the base image's Python.

    The app runs as user ``app`` (uid 10001) from ``/app``, code owned by root. ``command``
    becomes an exec-form CMD (see :func:`_exec_form`); ``None`` keeps the image's default.
    Requirements paths are relative to the build context and keep their directories, so
    ``-r`` includes between files in the same directory still resolve. With a pyproject
    project whose dependencies are listed, ``files`` holds them at
    :data:`PYPROJECT_REQUIREMENTS_PATH` (the caller writes it into the build context).

    Raises ValueError for an invalid image name, requirements path, port, command, package
    name or package manager.
    """
    _check_image("base_image", base_image)
    if install is None:
        if isinstance(requirements_files, str):  # a lone "requirements.txt" is not 16 characters
            requirements_files = (requirements_files,)
        install = PythonInstall(requirements_files=tuple(requirements_files))
    if install.manager not in ("pip", "poetry", "uv"):
        raise ValueError(f"unknown Python package manager {install.manager!r}: expected pip, poetry or uv")
    files = list(dict.fromkeys(_relative_path("requirements file", f) for f in install.requirements_files))
    final_apt = _debian_packages("system_packages", system_packages)
    build_apt = list(dict.fromkeys([*final_apt, *_debian_packages("build_packages", build_packages)]))
    extra: dict[str, str] = {}
    if install.pyproject and install.dependencies:
        extra[PYPROJECT_REQUIREMENTS_PATH] = _requirements_text(install.dependencies)
    # Whether pip (or Poetry, uv) runs at all: the index build args are declared only then.
    if install.pyproject:
        installs = bool(install.dependencies) or install.install_project
    else:
        installs = install.manager != "pip" or bool(files)
    return GeneratedBuild(
        dockerfile=_render(
            "python.Dockerfile.j2",
            base_image=base_image,
            install=install,
            installs=installs,
            two_stage=install.manager in ("poetry", "uv") or build_apt != final_apt,
            requirement_copies=_copy_lines(files) if not install.pyproject else [],
            requirement_args=" ".join(f"-r {f}" for f in files),
            pyproject_requirements=PYPROJECT_REQUIREMENTS_PATH,
            poetry_version=POETRY_VERSION,
            uv_version=UV_VERSION,
            final_apt=final_apt,
            build_apt=build_apt,
            port=_check_port(port),
            cmd=_exec_form(command),
        ),
        files=extra,
    )


def _requirements_text(dependencies: Sequence[str]) -> str:
    """A requirements file of ``dependencies`` (PEP 508 strings), one a line.

    Each must be one line that pip reads as a requirement, never as an option (``-r``,
    ``--index-url``) or a comment: pysource.py keeps anything else out, and this checks again.
    """
    for dep in dependencies:
        if not isinstance(dep, str) or not re.fullmatch(r"[A-Za-z0-9][^\x00-\x1f\x7f#]*", dep):
            raise ValueError(f"dependency {dep!r} is not one PEP 508 requirement line")
    return "# Generated by ProjectDeployer from pyproject.toml's [project] dependencies.\n" + "".join(f"{dep}\n" for dep in dependencies)


def _debian_packages(what: str, names: Sequence[str]) -> list[str]:
    """Validated Debian package names, duplicates dropped, in the order given."""
    if isinstance(names, str):
        raise ValueError(f"{what} {names!r}: expected a list of Debian package names")
    for name in names:
        if not isinstance(name, str) or not DEBIAN_PACKAGE_RE.match(name):
            raise ValueError(f"{what}: {name!r} is not a Debian package name (e.g. libpq5)")
    return list(dict.fromkeys(names))


def render_nodejs(
    *,
    base_image: str,
    package_manager: str = "npm",
    build_command: str | None = None,
    command: str | None,
    port: int | None,
    system_packages: Sequence[str] = (),
    build_packages: Sequence[str] = (),
) -> GeneratedBuild:
    """Dockerfile for a Node.js service (Express, NestJS, Next.js, ...) with npm, yarn or pnpm.

    Without ``build_command``: one stage, production dependencies only, ``NODE_ENV=production``.
    With it: a build stage installs every dependency, runs the build with
    ``NODE_ENV=production``, prunes devDependencies, and the final stage copies ``/app`` from
    it (so the pruned packages really leave the image). The app runs as user ``app``;
    ``command`` becomes an exec-form CMD, ``None`` keeps the image's default (``node``).
    Build arg ``npm_config_registry`` points the package manager at a mirror.

    ``system_packages`` (Debian, run time) are installed with apt-get in every stage;
    ``build_packages`` (``python3 make g++`` for native modules) only in a build stage: without
    ``build_command`` they add one that installs the production dependencies, and the final
    stage copies ``node_modules``.

    Raises ValueError for an unknown package manager (naming it), an invalid image name, port,
    command, package name or a multi-line build command.
    """
    _check_image("base_image", base_image)
    pm = _package_manager(package_manager)
    final_apt = _debian_packages("system_packages", system_packages)
    build_apt = list(dict.fromkeys([*final_apt, *_debian_packages("build_packages", build_packages)]))
    return GeneratedBuild(
        dockerfile=_render(
            "nodejs.Dockerfile.j2",
            base_image=base_image,
            pm=pm,
            build_command=_check_shell_line("build_command", build_command),
            final_apt=final_apt,
            build_apt=build_apt,
            build_apt_comment=(
                "Debian packages for the build: system_packages and build_packages (these stay in this stage)." if build_apt != final_apt else "Debian packages the build needs too (system_packages)."
            ),
            port=_check_port(port),
            cmd=_exec_form(command),
        )
    )


def render_react(
    *,
    build_image: str,
    serve_image: str,
    package_manager: str = "npm",
    build_command: str | None = None,
    build_dir: str = "build",
    nginx_config: str | None = None,
    build_packages: Sequence[str] = (),
) -> GeneratedBuild:
    """Multi-stage Dockerfile for a single-page application (React, Vue, Angular, Svelte).

    Stage ``build`` (``build_image``) installs every dependency and runs ``build_command``
    (default: the package manager's ``build`` script); stage 2 (``serve_image``, nginx) serves
    ``build_dir`` on port 80 with ``nginx_config`` (dedented) or :func:`default_spa_nginx_config`.
    The config is returned in ``files`` as ``.projectdeployer/nginx.conf``: the caller writes it
    into the build context. ``build_packages`` (Debian) are installed with apt-get in the build
    stage only: the served image is nginx's, which needs nothing of the build.

    Raises ValueError for an unknown package manager, an absolute ``build_dir`` or one that
    contains ``..`` (naming the value), an invalid image name or an empty ``nginx_config``.
    """
    _check_image("build_image", build_image)
    _check_image("serve_image", serve_image)
    pm = _package_manager(package_manager)
    build_dir = _relative_path("build_dir", build_dir)
    if nginx_config is None:
        config = default_spa_nginx_config()
    else:
        config = textwrap.dedent(nginx_config).strip()
        if not config:
            raise ValueError("nginx_config is empty: give an nginx server block, or None")
        config += "\n"
    return GeneratedBuild(
        dockerfile=_render(
            "react.Dockerfile.j2",
            build_image=build_image,
            serve_image=serve_image,
            pm=pm,
            build_command=_check_shell_line("build_command", build_command) or pm.default_build,
            build_dir=build_dir,
            build_apt=_debian_packages("build_packages", build_packages),
            nginx_conf_path=NGINX_CONF_PATH,
        ),
        files={NGINX_CONF_PATH: config},
    )


def default_spa_nginx_config() -> str:
    """The nginx ``server`` block (for ``conf.d/default.conf``) that serves a built SPA.

    Port 80, root ``/usr/share/nginx/html``; gzip for text assets over 1 KiB (with
    ``Vary: Accept-Encoding``); ``Cache-Control: public, max-age=31536000, immutable`` for
    fingerprinted assets (:data:`HASHED_ASSET_REGEX`), ``no-cache`` for ``index.html`` and
    everything else; client-side routes fall back to ``/index.html``; ``GET /healthz`` is 200 "ok".
    """
    return _render("spa-nginx.conf.j2", hashed_asset_regex=HASHED_ASSET_REGEX)


# Instructions whose argument is either JSON (exec form) or a shell command. HEALTHCHECK's
# options come before its CMD.
_EXEC_FORM_LINE = re.compile(
    r"^(?P<head>(?:CMD|ENTRYPOINT|RUN|SHELL|HEALTHCHECK(?:\s+--\S+)*\s+CMD)\s+)(?P<arg>\[.*\])$",
    re.IGNORECASE | re.DOTALL,
)


def render_dockerfile_content(content: Mapping[str, str]) -> str:
    """Dockerfile text from the seed's ``dockerfile_content`` mapping (one instruction a value).

    Lines come in key order: numerically when every key is an integer (``"10"`` after ``"9"``),
    otherwise in the mapping's order. Empty values are dropped. A CMD, ENTRYPOINT, RUN, SHELL or
    HEALTHCHECK CMD whose argument is a Python list of strings (``CMD ['python', 'app.py']``,
    as the seed writes it) becomes JSON exec form (``CMD ["python", "app.py"]``): Docker reads
    anything that is not JSON as a shell command, which would fail only when the container
    starts. Everything else is kept as written.

    Raises ValueError when the mapping is empty or has no non-empty line, or a value is not text.
    """
    if not content:
        raise ValueError("dockerfile_content is empty: give at least a FROM line")
    items = list(content.items())
    numbers = [_int_or_none(key) for key, _ in items]
    if all(n is not None for n in numbers):
        order = {key: n for (key, _), n in zip(items, numbers, strict=True) if n is not None}
        # sorted() is stable: equal numbers ("1" and "01") keep their given order.
        items.sort(key=lambda item: order[item[0]])
    lines = []
    for key, value in items:
        if not isinstance(value, str):
            raise ValueError(f"dockerfile_content[{key!r}]: expected text, got {value!r}")
        line = value.strip()
        if any(c in line for c in "\n\r\x00"):
            # One value is one instruction: a newline would smuggle in another one.
            raise ValueError(f"dockerfile_content[{key!r}]: one Dockerfile line per key, got {value!r}")
        if line:
            lines.append(_json_exec_form(line))
    if not lines:
        raise ValueError("dockerfile_content has only empty lines: give at least a FROM line")
    return _tidy("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# helpers


def _render(template: str, **context: Any) -> str:
    return _tidy(_TEMPLATES.get_template(template).render(**context))


def _tidy(text: str) -> str:
    """No trailing spaces, no leading/trailing blank lines, no two blank lines in a row."""
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def _exec_form(command: str | None) -> str | None:
    """A JSON exec-form CMD argument for ``command``, or None to keep the image's default.

    A plain command line is split like a POSIX shell would (``shlex.split``) and JSON-encoded,
    so the process gets signals directly as PID 1. A command that uses shell syntax outside
    quotes (``&&``, pipes, redirections, ``$VAR``, globs, ``VAR=value cmd``) would lose its
    meaning when split, so it runs as ``["/bin/sh", "-c", command]`` instead.
    """
    if command is None:
        return None
    # The container's command (core/containers.py) is split the same way: one reading of it.
    return json.dumps(command_argv(command))


def _json_exec_form(line: str) -> str:
    """``CMD ['a', 'b']`` -> ``CMD ["a", "b"]``; any other line unchanged."""
    match = _EXEC_FORM_LINE.match(line)
    if not match:
        return line
    arg = match["arg"]
    try:
        json.loads(arg)
        return line  # already JSON: keep it exactly as written
    except ValueError:
        pass
    try:
        value = ast.literal_eval(arg)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return line
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return line
    return match["head"] + json.dumps(value)


def _int_or_none(key: object) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, str) and re.fullmatch(r"\s*[+-]?\d+\s*", key):
        return int(key)
    return None


def _package_manager(name: str) -> _PackageManager:
    try:
        return PACKAGE_MANAGERS[name]
    except (KeyError, TypeError):
        known = ", ".join(PACKAGE_MANAGERS)
        raise ValueError(f"unknown package_manager {name!r}: expected one of {known}") from None


# Characters that are safe unquoted in a Dockerfile COPY and in a shell word (validation applies
# the same pattern first).
_SAFE_PATH = SAFE_PATH_RE


def _relative_path(what: str, value: str) -> str:
    """A normalised relative POSIX path inside the build context, or ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"{what} {value!r}: expected a path")
    path = value.strip().rstrip("/")
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or ".." in parts or not _SAFE_PATH.fullmatch(path) or path.startswith("-"):
        raise ValueError(f"{what} {value!r} must be a relative path inside the project (no leading '/', no '..', no spaces)")
    normalised = str(PurePosixPath(path))  # drops "./" and repeated slashes
    if normalised == ".":
        raise ValueError(f"{what} {value!r} must name a file or directory, not the project root")
    return normalised


def _copy_lines(files: Sequence[str]) -> list[str]:
    """COPY arguments that keep each file's directory: ``a b ./``, ``reqs/x reqs/``."""
    by_dir: dict[str, list[str]] = {}
    for f in files:
        parent = str(PurePosixPath(f).parent)
        by_dir.setdefault(parent, []).append(f)
    return [" ".join([*group, "./" if parent == "." else f"{parent}/"]) for parent, group in by_dir.items()]


def _check_image(what: str, value: str) -> None:
    # Docker's reference grammar ([host[:port]/]path[:tag][@digest]), as validation applies it.
    if not isinstance(value, str) or not IMAGE_REF_RE.match(value):
        raise ValueError(f"{what} {value!r} is not a Docker image reference (e.g. python:3.11-slim)")


def _check_port(port: int | None) -> int | None:
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port {port!r} must be an integer from 1 to 65535, or None")
    return port


def _check_shell_line(what: str, value: str | None) -> str | None:
    """A one-line shell command (it goes into a RUN line), or None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise ValueError(f"{what} is empty: give a command, or None")
    if any(c in value for c in "\n\r\x00"):
        raise ValueError(f"{what} {value!r} must be a single line (join steps with &&)")
    return value
