"""Which files a Python service's dependencies come from, found in its build context.

:func:`detect_install` looks at the build context (reads only) and answers a
:class:`~.dockerfiles.PythonInstall` with the reason it chose it, in this order:

1. ``package_manager`` set in the project file: that one (``pip``: the requirements files when
   any is there, else the pyproject.toml project; ``poetry``: poetry.lock; ``uv``: uv.lock);
2. any of ``requirements_files`` (default ``requirements.txt``) is there: pip installs them, as
   it always did, so a project that built before builds the same way. A lock file next to
   them is named in the reason, with the key that would use it;
3. ``uv.lock`` (with pyproject.toml): uv;
4. ``poetry.lock`` (with pyproject.toml): Poetry;
5. a pyproject.toml that describes a project (a ``[project]`` or ``[build-system]`` table):
   pip, its static dependencies first, then the project itself when it has a build system;
6. ``requirements_files = []``: nothing to install; anything else is an error.

The first match wins, so the same files always give the same Dockerfile. Errors are
:class:`SourceProblem` (a ``ValueError``) with one line for the user.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, overload

from .dockerfiles import PythonInstall

__all__ = ["SourceProblem", "detect_install"]

#: A requirement the pre-install layer can take as it is: one line, not an option or comment,
#: and no reference to a local path (the source is not copied yet) or a template (``{root}``).
_PLAIN_REQUIREMENT = re.compile(r"[A-Za-z0-9][^\x00-\x1f\x7f#{}]*")


class SourceProblem(ValueError):
    """The build context does not have what the service's settings need (one line)."""


def detect_install(
    context_dir: Path | None,
    *,
    requirements_files: Sequence[str],
    package_manager: str | None,
    poetry_version: str,
    uv_version: str,
) -> PythonInstall:
    """How to install the dependencies of the source in ``context_dir`` (see the module doc).

    ``context_dir`` ``None`` (the source is not at hand, e.g. while validating) answers from
    the settings alone: ``package_manager`` when set, else the requirements files.
    ``poetry_version`` / ``uv_version`` only go into the reason.
    """
    files = tuple(requirements_files)
    if context_dir is None:
        if package_manager in ("poetry", "uv"):
            return PythonInstall(manager=package_manager, requirements_files=(), reason=f"package_manager = {package_manager!r}")
        return PythonInstall(requirements_files=files, reason=_requirements_reason(files))
    present = {name for name in ("pyproject.toml", "poetry.lock", "uv.lock") if (context_dir / name).is_file()}
    found_reqs = [f for f in files if (context_dir / f).is_file()]
    tools = {"poetry": ("poetry.lock", f"Poetry {poetry_version}"), "uv": ("uv.lock", f"uv {uv_version}")}

    # ``why`` is said only when the project file decided (package_manager); otherwise the file
    # named in the reason is the reason.
    def locked(manager: str, why: str = "") -> PythonInstall:
        lock, tool = tools[manager]
        for needed in ("pyproject.toml", lock):
            if needed not in present:
                raise SourceProblem(f"{why} needs {needed} in the build context {context_dir}, and it has none")
        command = "poetry install --only main --no-root" if manager == "poetry" else "uv sync --frozen --no-dev --no-install-project"
        return PythonInstall(manager=manager, requirements_files=(), reason=f"dependencies from {lock} with {tool} ({_join(command, why)})")

    def requirements(why: str = "") -> PythonInstall:
        missing = [f for f in files if f not in found_reqs]
        if missing:
            raise SourceProblem(f"requirements file {missing[0]} not found in the build context {context_dir} (requirements_files: {', '.join(files)})")
        unused = sorted(present & {"poetry.lock", "uv.lock"})
        also = "".join(f'; {lock} is here too, not used: package_manager = "{"uv" if lock == "uv.lock" else "poetry"}" installs from it' for lock in unused)
        return PythonInstall(requirements_files=files, reason=f"dependencies from {', '.join(files)} with pip ({_join('pip install -r', why)}){also}")

    if package_manager in ("poetry", "uv"):
        return locked(package_manager, f'package_manager = "{package_manager}"')
    if package_manager == "pip":
        if found_reqs:
            return requirements('package_manager = "pip"')
        if "pyproject.toml" in present:
            return _pyproject(context_dir, 'package_manager = "pip"', required=True)
        raise SourceProblem(f'package_manager = "pip" needs {_either(files)} or pyproject.toml in the build context {context_dir}, and it has none')
    if found_reqs:
        return requirements()
    if "uv.lock" in present and "pyproject.toml" in present:
        return locked("uv")
    if "poetry.lock" in present and "pyproject.toml" in present:
        return locked("poetry")
    if "pyproject.toml" in present:
        install = _pyproject(context_dir, "", required=False)
        if install is not None:
            return install
    if not files:
        return PythonInstall(requirements_files=(), reason="nothing to install (requirements_files = [] and no lock file or pyproject.toml project)")
    raise SourceProblem(
        f"no dependencies to install in the build context {context_dir}: no {_either(files)}, uv.lock, poetry.lock "
        "or pyproject.toml project (set requirements_files = [] for an app without dependencies)"
    )


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _either(files: Sequence[str]) -> str:
    return " or ".join(files) if files else "requirements file"


def _requirements_reason(files: Sequence[str]) -> str:
    return f"dependencies from {', '.join(files)} with pip (pip install -r)" if files else "nothing to install (requirements_files = [])"


@overload
def _pyproject(context_dir: Path, why: str, *, required: Literal[True]) -> PythonInstall: ...
@overload
def _pyproject(context_dir: Path, why: str, *, required: bool) -> PythonInstall | None: ...
def _pyproject(context_dir: Path, why: str, *, required: bool) -> PythonInstall | None:
    """The pyproject.toml project with pip; ``None`` when the file describes no project (only
    tool settings such as ``[tool.ruff]``) and ``required`` is false."""
    path = context_dir / "pyproject.toml"
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceProblem(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SourceProblem(f"{path} is not valid TOML: {exc}") from None
    project = data.get("project")
    package = isinstance(data.get("build-system"), dict)
    if not isinstance(project, dict) and not package:
        if required:
            raise SourceProblem(f"{path} describes no project (no [project] or [build-system] table): nothing for pip to install")
        return None
    dependencies = _static_dependencies(project)
    if dependencies is None:
        # Dependencies the build backend computes (dynamic, [tool.poetry] without a lock, setup.py):
        # only building the project tells them, so they come with it after the source.
        return PythonInstall(
            pyproject=True,
            requirements_files=(),
            dependencies=None,
            install_project=True,
            reason=f"the pyproject.toml project and its dependencies with pip ({_join('pip install . after the source: its dependencies are not listed in [project]', why)})",
        )
    if package:
        what, how = "the pyproject.toml project with pip", "[project] dependencies first, then pip install --no-deps ."
    else:
        # No build system: an application, not a package (as uv treats it): only its dependencies.
        what, how = "the dependencies of pyproject.toml with pip", "[project] dependencies; no [build-system], so the project itself is not installed"
    return PythonInstall(pyproject=True, requirements_files=(), dependencies=dependencies, install_project=package, reason=f"{what} ({_join(how, why)})")


def _static_dependencies(project: object) -> tuple[str, ...] | None:
    """``[project].dependencies`` when pip can install them before the source is there, else None."""
    if not isinstance(project, dict):
        return None
    dynamic = project.get("dynamic", [])
    if not isinstance(dynamic, list) or "dependencies" in dynamic:
        return None
    dependencies = project.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        return None
    cleaned = tuple(d.strip() for d in dependencies)
    if not all(_PLAIN_REQUIREMENT.fullmatch(d) and "file:" not in d for d in cleaned):
        return None  # a local path or an odd line: installed with the project instead
    return cleaned
