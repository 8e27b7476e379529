#!/usr/bin/env python3
"""Apply issue 13's package moves (docs/plans/issue-13.md, section 2 and section 7 F1-F9) to the tree.

Re-runnable: it reads the tree as it is (whatever the modules' contents), moves the modules of
:data:`MAPPING` that are still at their old place with ``git mv``, creates the new packages with a
docstring, and rewrites every reference to a moved module: imports (absolute and relative, at the
top, inside functions and ``TYPE_CHECKING`` blocks), dotted strings (``mock.patch("projectdeployer.
core.engine.x")``, ``"projectdeployer.addons.secrets_store"``, entry points ``module:Name``),
``resources.files(package).joinpath("module.py")`` look-ups, and file paths (``core/engine.py``,
``src/projectdeployer/addons/...``) in src/, tests/, bench/, tools/, examples/, docs/*.md, README.md,
pyproject.toml and the Makefile. Package data moves with its module (:data:`DATA_MOVES`).
pyproject.toml's import-linter contracts follow (a dissolved package is replaced by its
successors, a package that now exists is no longer an optional layer and is named by the
contracts that forbid it). It ends with ``ruff check --select I --fix`` and ``ruff format`` on the
Python files it changed. Run on the target layout it changes nothing. Standard library only.

Usage, from the repository root::

    python3 tools/relayout.py [--check] [--renames]

``--check``: print what would be done, change nothing, exit 1 if the tree is not in the target
layout. ``--renames``: also apply :data:`RENAMES` (class renames, old name kept as a deprecated
alias); off by default. After a run: ``make venv`` (entry points moved), ``make lint-baseline``
(the ratchet's module names), ``make lint``, the tests; then review ``git status`` and commit.

Where this mapping departs from the plan's table, and why (whole-module moves only: a move must
not create an import circle between packages, and import-linter's ``acyclic`` contract must not
grow; the plan's table applied to whole modules makes one circle of 14 packages, core and
hookspecs included; ``--check`` prints the circles between packages the moves would leave):

- (Done since, by hand, and the whole-module moves that followed are in the table.) Stay in
  core until the plan's splits: ``build`` (contract part: BuildRequest, GeneratedBuild;
  ProjectBuilder -> build/builder.py), with ``gitmanager`` and ``fromlines`` that it imports (then
  build/git.py, build/fromlines.py); ``containers`` (ContainerParts, names; build_container ->
  deploy/containers.py), with what it imports: ``ports`` (deploy/ports.py), ``resolver``
  (secrets/resolver.py, once a ServiceContext protocol stands in core), ``validation``,
  ``pathcheck``, ``ownnames``, ``order``, ``gitref`` (project/), ``rendersafety`` (core/safety.py +
  project/rendersafety.py); ``backups`` (BackupMethod...; listing and reading -> backups/store.py),
  with ``secretfiles`` (deploy/secretfiles.py). core.servicetype imports build, containers and
  backups for its method signatures, so moving any of them whole would make core and that package
  import each other.
- ``environment`` goes to deploy/environment.py, not environment/: it still runs deploy, plan,
  rollback, status and logs through the engine and the fleet, so in environment/ (which the deploy
  path imports for locks and releases) it would close a circle. It moves down once those parts
  join the orchestrator (plan section 3). ``lock`` + ``serverlock`` are to merge into
  environment/locks.py (here two modules: locks.py, serverlock.py).
- ``sshkeys`` goes to providers/sshkeys.py; the ssh split (F9) makes it providers/ssh/keys.py.
- Later splits the plan wants, not done here: teardown -> destroy/{plan,apply}; sync ->
  sync/{files,archive}; environment -> environment/environment.py + deploy/status.py (+ logs);
  fleet + environment.deploy -> deploy/orchestrator.py; secrets_store -> default_plugins/
  secrets_files.py + secrets/cleanup.py (forget_service_secrets); providers/ssh.py and
  providers/sandbox.py into packages.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tokenize
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from io import StringIO
from pathlib import Path

ROOT = Path.cwd()
SRC = ROOT / "src"
TOP = "projectdeployer"

#: old dotted module -> new dotted module (whole-module moves; package-relative names).
_MOVES = {
    # F1 project/: the TOML project file (validation and its helpers follow the containers split)
    "core.projectfile": "project.file",
    "core.convert": "project.convert",
    "core.credentials": "project.credentials",
    # F3 environment/: locks and the release history, below the deploy path
    "core.lock": "environment.locks",
    "core.serverlock": "environment.serverlock",
    "core.releases": "environment.releases",
    # F4 secrets/
    "core.rotator": "secrets.rotation",
    # F5 deploy/: the one deploy path
    "core.engine": "deploy.server",
    "core.fleet": "deploy.orchestrator",
    "core.fleetplan": "deploy.planner",
    "core.fleetlogs": "deploy.logs",
    "core.environment": "deploy.environment",
    "core.allocation": "deploy.allocation",
    "core.imagetransfer": "deploy.images",
    "core.jobs": "deploy.jobs",
    "core.backupjobs": "deploy.backup_jobs",
    "core.jobcontainers": "deploy.jobcontainers",
    "core.observation": "deploy.observation",
    "core.coalesce": "deploy.coalesce",
    # F6 backups/, sync/, destroy/
    "core.backupmanager": "backups.manager",
    "core.sync": "sync.files",
    "core.teardown": "destroy.teardown",
    # F7 api/: the fluent front and the bastion
    "core.deployer": "api.project",
    "core.bastion": "api.bastion",
    # F9 (the whole-module part): SSH keys beside the providers that use them
    "core.sshkeys": "providers.sshkeys",
    # Once core/build.py, containers.py and backups.py were split into their contract (kept in
    # core) and their implementation (build/builder.py, deploy/containers.py, deploy/oneoff.py,
    # backups/store.py), what only the implementation imports leaves core too:
    "core.gitmanager": "build.git",
    "core.fromlines": "build.fromlines",
    "core.gitref": "project.gitref",
    "core.validation": "project.validation",
    "core.ownnames": "project.ownnames",
    "core.order": "project.order",
    "core.resolver": "secrets.resolver",
    "core.ports": "deploy.ports",
    "core.secretfiles": "deploy.secretfiles",
    # The project file's render and path checks; the patterns and value checks plugins use
    # stay in core as core/safety.py (split off by hand).
    "core.rendersafety": "project.rendersafety",
    "core.pathcheck": "project.pathcheck",
    # F8 default_plugins/ (plugins) and agents/ (standard-library scripts copied into containers)
    "addons.docker_builder": "default_plugins.docker_builder",
    "addons.tls_selfsigned": "default_plugins.tls_selfsigned",
    "addons.nginx_sidecar": "default_plugins.nginx.plugin",
    "addons.nginx_proxy": "default_plugins.nginx.proxy",
    "addons.nginx_render": "default_plugins.nginx.render",
    "addons.netconns": "default_plugins.nginx.netconns",
    "addons.secrets_store": "default_plugins.secrets_files",
    "addons.scheduler_agent": "agents.scheduler",
    "addons.opensearch_snapshot": "agents.opensearch_snapshot",
}
MAPPING: dict[str, str] = {f"{TOP}.{old}": f"{TOP}.{new}" for old, new in _MOVES.items()}

#: Names that left a module split by hand (its contract stayed, its implementation moved), by the
#: module's place after the moves: module -> {name: the module that holds it now}. An import of
#: one of these names (``from projectdeployer.core.build import ProjectBuilder``), or a dotted
#: reference to it (a ``mock.patch`` target), is rewritten like one of a moved module, so a branch
#: written before the split is brought up to date by running this tool after merging it.
_SPLITS = {
    "core.build": dict.fromkeys(["GENERATED_DOCKERFILE", "ChosenDockerfile", "BuiltImage", "BuildCheck", "image_tag", "is_buildable", "ProjectBuilder"], "build.builder"),
    "core.containers": dict.fromkeys(["ServiceContainer", "host_port", "ENV_WRAPPER_NAME", "env_wrapper_script", "build_container"], "deploy.containers"),
    "core.backups": {"backup_policy": "core.servicetype", **dict.fromkeys(["Backup", "read_backups", "choose_backup", "parse_backup_name"], "backups.store")},
    "project.rendersafety": dict.fromkeys(
        [
            *["PYTHON_VERSION_RE", "NODE_VERSION_RE", "IMAGE_TAG_RE", "IMAGE_REF_RE", "REGISTRY_RE", "HOSTNAME_RE", "HEALTH_PATH_RE", "HEALTH_PATH_MAX", "BUILD_ARG_RE"],
            *["SAFE_PATH_RE", "DEBIAN_PACKAGE_RE", "MAX_DEBIAN_PACKAGES", "control_chars", "image_ref_problem", "image_template_problem", "relative_path_problem"],
            *["debian_package_problem", "command_problem", "needs_shell", "command_argv"],
        ],
        "core.safety",
    ),
    "project.pathcheck": {"SECRET_NAME_RE": "core.safety"},
}
SPLITS: dict[str, dict[str, str]] = {f"{TOP}.{module}": {name: f"{TOP}.{new}" for name, new in names.items()} for module, names in _SPLITS.items()}
#: Not mechanical, so not here: ``core.backups.JobRunner`` is now the protocol a restore is handed;
#: the class that runs the containers is ``projectdeployer.deploy.oneoff.BackupJobRunner``.

#: Modules that stay in core on purpose (contracts, or imported by one until a split; see the
#: docstring). A core module in neither table is reported, so that a module added meanwhile is
#: placed on purpose.
KEEP_IN_CORE = {
    *["errors", "model", "servicetype", "provider", "runtime", "routing", "plan", "paths", "fsutil", "fanout", "poll", "monitoring", "registry"],
    # contract halves of the split modules, the CLI's structural type, and the value checks
    # that the project file, service types and default plugins share
    *["build", "containers", "backups", "commandline", "safety"],
}

#: New packages and what they hold (the ``__init__.py`` docstring written when one is created).
PACKAGES = {
    "project": "The project file: the TOML file read and written (tomlkit + cattrs), converted and checked.",
    "build": "Image builds: sources (build context or git checkout), Dockerfiles, FROM lines, the builder plugin's calls.",
    "environment": "One environment's shared state below the deploy path: its locks (this machine's and the servers') and its release history.",
    "secrets": "Generated secrets: the store apps read them from (:mod:`.resolver`), and rotation of the databases' passwords.",
    "deploy": (
        "The one deploy path: the plan, the per-server steps (:mod:`.server`), the orchestrator over N servers\n"
        "(this machine is a fleet of one), allocation, image distribution, jobs and the scheduler, and the\n"
        "public :class:`~.environment.Environment`."
    ),
    "backups": "Backups of the stateful services: run, list, pull and restore (the files' format is in core.backups).",
    "sync": "Files between this machine and the servers: push config and secrets, pull data, logs and backups.",
    "destroy": "``destroy --env``: take an environment down (its plan, then its containers, network, images and state).",
    "api": "The public Python API: the fluent :class:`~.project.ProjectDeployer` and the bastion client (the seed's ``Deployer``).",
    "default_plugins": "The plugins that come with ProjectDeployer and are not one service type or provider.",
    "default_plugins.nginx": "The routing plugin: the nginx sidecar (plugin), its configuration (render), its proxy checks and connections.",
    "agents": (
        "Standard-library scripts copied into containers and run there on the image's python3 (the\nscheduler, the OpenSearch snapshot client): not plugins, and they import nothing of the package."
    ),
}

#: Package data that moves with its module (package-relative directories).
DATA_MOVES = {"addons/templates": "default_plugins/nginx/templates"}

#: Old packages that no longer exist once their modules moved, and the package that succeeds
#: them in import-linter contracts (agents/ is named where it belongs: see rewrite_contracts).
DISSOLVED = {f"{TOP}.addons": [f"{TOP}.default_plugins"]}

#: Class renames (``--renames``): (new module, old name, new name). The old name stays in the
#: module as a deprecated alias. Not here, by hand: bastion ``Deployer`` -> ``BastionClient`` (the
#: seed's name stays exported), ``core.registry.Registry`` -> ``PluginRegistry`` (the word
#: "registry" also means an image registry in the same files).
RENAMES = [
    (f"{TOP}.deploy.server", "Engine", "ServerDeployer"),
    (f"{TOP}.deploy.orchestrator", "Fleet", "Orchestrator"),
    (f"{TOP}.destroy.teardown", "TeardownPlan", "DestroyPlan"),
]

#: The files whose text is rewritten (globs from the root); docs/plans/ keeps its history.
TEXT_FILES = [
    "src/**/*.py",
    "tests/**/*.py",
    "bench/**/*.py",
    "bench/**/*.md",
    "tools/**/*.py",
    "examples/**/*.py",
    "examples/**/*.md",
    "examples/**/*.toml",
    "docs/*.md",
    "README.md",
    "pyproject.toml",
    "Makefile",
    ".ci/run",
]
SKIP_DIRS = {".git", ".venv", "build", "__pycache__", "node_modules", ".mypy_cache", ".ruff_cache"}
#: The one ``build`` directory that is source, not a build's output: the package of image builds.
BUILD_PACKAGE = ("src", TOP, "build")


def skipped(parts: tuple[str, ...]) -> bool:
    """Whether a path (its parts, from the root) is outside the sources: a virtualenv, a cache,
    a build's output (``build/`` anywhere but :data:`BUILD_PACKAGE`)."""
    if parts[: len(BUILD_PACKAGE)] == BUILD_PACKAGE:
        parts = parts[len(BUILD_PACKAGE) :]
    return bool(SKIP_DIRS & set(parts))


THIS_FILE = "tools/relayout.py"

# Each capability package the contracts name once it exists (plan section 6).
CAPABILITIES = ["api", "backups", "sync", "destroy", "deploy", "secrets", "build", "environment", "project"]


# ---- names and paths


def module_path(module: str) -> Path | None:
    """The file of ``module`` under src/ (module or package), or None."""
    base = SRC / module.replace(".", "/")
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def all_modules() -> set[str]:
    found = set()
    for path in SRC.rglob("*.py"):
        if skipped(path.relative_to(ROOT).parts):
            continue
        parts = path.relative_to(SRC).with_suffix("").parts
        found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def mapped(name: str) -> str:
    """``name`` (a module, or a module followed by attributes) after the moves: the longest
    moved module it starts with is replaced; then a name split off its module (:data:`SPLITS`)
    is sent to the module that holds it now."""
    parts = name.split(".")
    for i in range(len(parts), 1, -1):
        new = MAPPING.get(".".join(parts[:i]))
        if new is not None:
            parts = [*new.split("."), *parts[i:]]
            break
    for i in range(len(parts) - 1, 1, -1):
        holder = SPLITS.get(".".join(parts[:i]), {}).get(parts[i])
        if holder is not None:
            return ".".join([holder, *parts[i:]])
    return ".".join(parts)


def rel_path(module: str) -> str:
    """Package-relative file path of a module: projectdeployer.core.engine -> core/engine.py."""
    return module.split(".", 1)[1].replace(".", "/") + ".py"


def package_of(module: str, is_package: bool) -> list[str]:
    return module.split(".") if is_package else module.split(".")[:-1]


def relative(from_package: list[str], target: str) -> str:
    """``target`` written relative to ``from_package`` (``..core.errors``, ``.``)."""
    parts = target.split(".")
    common = 0
    while common < min(len(parts), len(from_package)) and parts[common] == from_package[common]:
        common += 1
    return "." * (len(from_package) - common + 1) + ".".join(parts[common:])


# ---- Python imports


def rewrite_imports(text: str, module: str, new_module: str, is_package: bool, modules: set[str]) -> str:
    """Every ``from X import ...`` naming a moved module rewritten for the file's new place.
    Relative imports stay relative (recomputed from the new place); a statement whose names go
    to different packages is split in one statement per package."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    old_pkg, new_pkg = package_of(module, is_package), package_of(new_module, is_package)
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    edits: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.end_lineno is None or node.end_col_offset is None:
            continue
        if node.level:
            if node.level > len(old_pkg):
                continue
            origin = ".".join([*old_pkg[: len(old_pkg) - node.level + 1], *([node.module] if node.module else [])])
        else:
            origin = node.module or ""
        if origin != TOP and not origin.startswith(TOP + "."):
            continue
        groups: dict[str, list[str]] = {}
        for alias in node.names:
            sub = f"{origin}.{alias.name}"
            if sub in modules or sub in MAPPING:  # a submodule imported by name
                new_sub = mapped(sub)
                parent, _, name = new_sub.rpartition(".")
                asname = alias.asname or (alias.name if name != alias.name else None)
                groups.setdefault(parent, []).append(f"{name} as {asname}" if asname else name)
            else:  # a name: its module after the moves, or the one it was split off to
                holder = mapped(f"{origin}.{alias.name}").rpartition(".")[0]
                groups.setdefault(holder, []).append(f"{alias.name} as {alias.asname}" if alias.asname else alias.name)
        old_written = "." * node.level + (node.module or "")

        def written(target: str, level: int = node.level) -> str:
            return relative(new_pkg, target) if level else target

        start = offsets[node.lineno - 1] + node.col_offset
        end = offsets[node.end_lineno - 1] + node.end_col_offset
        original = text[start:end]
        if len(groups) == 1:
            target, names = next(iter(groups.items()))
            unchanged_names = names == [f"{a.name} as {a.asname}" if a.asname else a.name for a in node.names]
            if unchanged_names:
                new_written = written(target)
                if new_written != old_written:
                    m = re.match(r"from\s+(\.*[\w.]*)(\s+import\b)", original)
                    assert m is not None, original
                    edits.append((start + m.start(1), start + m.end(1), new_written))
                continue
        # Names split between packages, or a submodule renamed: one statement per package.
        indent = " " * node.col_offset
        trailing = lines[node.end_lineno - 1][node.end_col_offset :].strip()
        noqa = f"  {trailing}" if trailing.startswith("# noqa") else ""
        statements = [f"from {written(target)} import {', '.join(names)}" for target, names in groups.items()]
        if "#" in original:
            print(f"  note: comments inside a split import were dropped: {original!r}")
        edits.append((start, end, (noqa + "\n" + indent).join(statements)))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


# ---- text: dotted names, resource look-ups, paths


ROLE = re.compile(r"(:(?:mod|class|func|meth|data|attr|exc|obj):`~?)(\.+)([\w.]+)")


def rewrite_relative_refs(text: str, module: str, new_module: str, is_package: bool) -> str:
    """Sphinx cross-references written relative to the module (``:mod:`..core.teardown```,
    ``:class:`~.model.Project```) rewritten for the module's new place and the target's."""
    old_pkg, new_pkg = package_of(module, is_package), package_of(new_module, is_package)

    def fix(m: re.Match[str]) -> str:
        level = len(m[2])
        if level > len(old_pkg):
            return m[0]
        target = mapped(".".join([*old_pkg[: len(old_pkg) - level + 1], m[3]]))
        return m[1] + relative(new_pkg, target)

    return ROLE.sub(fix, text) if module.startswith(TOP) else text


DOTTED = re.compile(rf"(?<![\w.]){TOP}(?:\.\w+)+")
RESOURCE = re.compile(r"""(files\(\s*["'])([\w.]+)(["']\s*\)\s*\.joinpath\(\s*["'])(\w+)\.py(["'])""")


def old_path_pattern() -> re.Pattern[str] | None:
    paths = {rel_path(old): rel_path(new) for old, new in MAPPING.items()}
    paths.update({f"{old}/": f"{new}/" for old, new in DATA_MOVES.items()})
    if not paths:
        return None
    alternatives = "|".join(re.escape(p) for p in sorted(paths, key=len, reverse=True))
    return re.compile(rf"(?<![\w/.-])((?:src/)?{TOP}/)?({alternatives})(?![\w])")


def rewrite_text(text: str) -> str:
    text = DOTTED.sub(lambda m: mapped(m[0]), text)

    def resource(m: re.Match[str]) -> str:
        new = mapped(f"{m[2]}.{m[4]}")
        if new == f"{m[2]}.{m[4]}":
            return m[0]
        package, _, name = new.rpartition(".")
        return f"{m[1]}{package}{m[3]}{name}.py{m[5]}"

    text = RESOURCE.sub(resource, text)
    pattern = old_path_pattern()
    if pattern is not None:
        paths = {rel_path(old): rel_path(new) for old, new in MAPPING.items()}
        paths.update({f"{old}/": f"{new}/" for old, new in DATA_MOVES.items()})
        text = pattern.sub(lambda m: (m[1] or "") + paths[m[2]], text)
    return text


# ---- pyproject.toml: the import-linter contracts


def rewrite_contracts(text: str, existing: set[str]) -> str:
    """Dissolved packages replaced by their successors in the contracts' module lists; a package
    that exists is no longer an optional layer; the forbidden lists of the plugin and agent
    contracts and the rehearse contract's sources name every capability package that exists."""
    packages = [f"{TOP}.{name}" for name in CAPABILITIES if f"{TOP}.{name}" in existing]

    def fix_list(m: re.Match[str]) -> str:
        out: list[str] = []
        for item in json.loads(m[2]):
            successors = [s for s in DISSOLVED[item] if s in existing] if item in DISSOLVED and item not in existing else [item]
            out += [s for s in successors if s not in out]
        return f"{m[1]} = {json.dumps(out)}"

    out_lines = []
    contract_id = ""
    for line in text.splitlines(keepends=True):
        if m := re.match(r'id = "([\w-]+)"', line):
            contract_id = m[1]
        elif line.startswith("[") and not line.startswith("[[tool.importlinter.contracts]]"):
            contract_id = ""
        if contract_id and (m := re.match(r"(source_modules|forbidden_modules|modules) = (\[.*\])\s*$", line)):
            line = fix_list(m) + "\n"
            key, items = m[1], json.loads(line.split(" = ", 1)[1])
            if contract_id == "plugins-core-only" and key == "forbidden_modules":
                items = [*items, *(p for p in packages if p not in items)]
            elif contract_id == "agents-standalone" and key == "source_modules" and f"{TOP}.agents" in existing:
                items = [f"{TOP}.agents"]
            elif contract_id == "agents-standalone" and key == "forbidden_modules":
                internal = [i for i in items if i.startswith(TOP)]
                items = internal + [p for p in packages if p not in items] + [i for i in items if not i.startswith(TOP)]
            elif contract_id == "product-ignores-rehearse" and key == "source_modules":
                items = [*items, *(p for p in [*packages, f"{TOP}.agents"] if p not in items and p in existing)]
            line = f"{key} = {json.dumps(items)}\n"
        if contract_id == "layers" and (m := re.match(r'(\s*)"(.*)",\s*$', line)):
            layer = " | ".join(f"{n[1:-1]}" if n.startswith("(") and n[1:-1] in existing else n for n in m[2].split(" | "))
            line = f'{m[1]}"{layer}",\n'
        out_lines.append(line)
    return "".join(out_lines)


def drop_covered_ignores(text: str) -> str:
    """In ruff's per-file-ignores, a file entry that a glob entry of the same table now covers
    with the same codes (the agents' ``UP``) is dropped."""
    m = re.search(r"^\[tool\.ruff\.lint\.per-file-ignores\]\n(.*?)(?=^\[|^# >>>)", text, re.S | re.M)
    if not m:
        return text
    entries = re.findall(r'^"([^"]+)" = (\[.*\])$', m[1], re.M)
    globs = {k: v for k, v in entries if "*" in k}
    body = m[1]
    for key, value in entries:
        if "*" not in key and any(fnmatch.fnmatch(key, g) and v == value for g, v in globs.items()):
            body = body.replace(f'"{key}" = {value}\n', "")
    return text[: m.start(1)] + body + text[m.end(1) :]


# ---- renames (--renames)


def rename_tokens(text: str, old: str, new: str) -> str:
    """``old`` -> ``new`` where it is a Python name (not in strings or comments)."""
    out = []
    try:
        tokens = list(tokenize.generate_tokens(StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return text
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    last = 0
    for tok in tokens:
        if tok.type == tokenize.NAME and tok.string == old:
            start = offsets[tok.start[0] - 1] + tok.start[1]
            out.append(text[last:start] + new)
            last = start + len(old)
    out.append(text[last:])
    return "".join(out)


def file_module(file: Path) -> tuple[str, bool]:
    """The dotted module of a file under src/ (``__main__`` elsewhere) and whether it is a package."""
    if not file.is_relative_to(SRC):
        return "__main__", False
    parts = file.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts), parts[-1] == "__init__"


def uses(file: Path, text: str, module: str, name: str) -> bool:
    """Whether the Python file imports ``name`` from ``module``, or ``module`` itself."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    own, is_package = file_module(file)
    pkg = package_of(own, is_package)
    parent, _, last = module.rpartition(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level > len(pkg):
                continue
            origin = ".".join([*pkg[: len(pkg) - node.level + 1], *([node.module] if node.module else [])]) if node.level else node.module or ""
            if (origin == module and any(a.name == name for a in node.names)) or (origin == parent and any(a.name == last for a in node.names)):
                return True
        elif isinstance(node, ast.Import) and any(a.name == module for a in node.names):
            return True
    return False


def apply_renames(files: Iterable[Path], dry: bool, renamed: list[Path] | None = None) -> list[str]:
    """Apply :data:`RENAMES` (``dry``: only say which); the files changed are added to ``renamed``."""
    done = []
    for module, old, new in RENAMES:
        path = module_path(module)
        if path is None:
            continue
        defining = path.read_text(encoding="utf-8")
        if re.search(rf"^class {new}\b", defining, re.M) or not re.search(rf"^class {old}\b", defining, re.M):
            continue
        done.append(f"rename {module}.{old} -> {new}")
        if dry:
            continue
        for file in files:
            text = file.read_text(encoding="utf-8")
            if file.suffix == ".py":
                if file != path and not uses(file, text, module, old):
                    continue
                new_text = rename_tokens(text, old, new)
            else:
                new_text = re.sub(rf"(?<=`){old}(?=[`.(])", new, text) if re.search(rf"\b{re.escape(module)}\b", text) else text
            new_text = re.sub(rf"{re.escape(module)}([.:]){old}\b", rf"{module}\1{new}", new_text)
            if file == path:
                new_text = new_text.rstrip("\n") + f"\n\n\n#: Deprecated alias (issue 13 renamed the class); use :class:`{new}`.\n{old} = {new}\n"
            if new_text != text:
                file.write_text(new_text, encoding="utf-8")
                if renamed is not None and file not in renamed:
                    renamed.append(file)
    return done


# ---- the tree


def text_files() -> list[Path]:
    found: set[Path] = set()
    for pattern in TEXT_FILES:
        for path in ROOT.glob(pattern):
            if path.is_file() and not skipped(path.relative_to(ROOT).parts) and path.relative_to(ROOT).as_posix() != THIS_FILE:
                found.add(path)
    return sorted(found)


def git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True)


def pending_moves(modules: set[str]) -> tuple[list[tuple[str, str, Path]], list[str]]:
    """(old, new, old file) still to move, and warnings."""
    moves, warnings = [], []
    for old, new in MAPPING.items():
        old_file, new_file = module_path(old), module_path(new)
        if old_file and new_file:
            warnings.append(f"both {old} and {new} exist: {old} left alone")
        elif old_file:
            moves.append((old, new, old_file))
        elif not new_file:
            warnings.append(f"{old} is gone (renamed or deleted meanwhile?): nothing to move; correct MAPPING")
    for module in sorted(modules):
        parts = module.split(".")
        if len(parts) == 3 and parts[1] == "core" and module not in MAPPING and parts[2] not in KEEP_IN_CORE:
            warnings.append(f"{module} is in neither MAPPING nor KEEP_IN_CORE: it stays in core; place it on purpose")
    return moves, warnings


def new_packages(moves: list[tuple[str, str, Path]]) -> list[str]:
    needed = []
    for _, new, _ in moves:
        parts = new.split(".")[:-1]
        for i in range(2, len(parts) + 1):
            package = ".".join(parts[:i])
            if module_path(package) is None and package not in needed:
                needed.append(package)
    return needed


def write_package(package: str) -> Path:
    key = package.split(".", 1)[1]
    doc = PACKAGES.get(key)
    if doc is None:
        sys.exit(f"no docstring for the new package {package}: add it to PACKAGES")
    path = SRC / package.replace(".", "/") / "__init__.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'"""{doc}"""\n', encoding="utf-8")
    return path


def dissolved_leftovers() -> list[Path]:
    """__init__.py of dissolved packages with no module left beside it."""
    found = []
    for package in DISSOLVED:
        directory = SRC / package.replace(".", "/")
        init = directory / "__init__.py"
        if init.is_file() and not [p for p in directory.rglob("*") if p.is_file() and p != init and "__pycache__" not in p.parts]:
            found.append(init)
    return found


def existing_after(modules: set[str]) -> set[str]:
    """The modules and packages there are after the moves (a dissolved package left empty is none)."""
    after = {mapped(m) for m in modules}
    after = {m for m in after if m not in DISSOLVED or any(o.startswith(m + ".") for o in after)}
    return after | {".".join(m.split(".")[:i]) for m in after for i in range(1, len(m.split(".")))}


def leftover_mentions() -> Iterator[tuple[str, int, str]]:
    """Lines of the text files that still name a dissolved package (prose the rewrite cannot
    follow, such as a table of packages)."""
    names = [p.split(".", 1)[1] for p in DISSOLVED]
    pattern = re.compile(rf"(?<![\w.-])(?:{'|'.join(names)})/|{'|'.join(re.escape(p) for p in DISSOLVED)}\b")
    for file in text_files():
        in_ratchet = False  # make lint-baseline rewrites those blocks
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            in_ratchet = (in_ratchet or line.startswith("# >>> lint-baseline")) and not line.startswith("# <<< lint-baseline")
            if pattern.search(line) and not in_ratchet:
                yield str(file.relative_to(ROOT)), number, line.strip()[:160]


def tool(name: str) -> str | None:
    for candidate in (ROOT / ".venv" / "bin" / name, Path(sys.executable).with_name(name)):
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


def sibling_cycles(modules: set[str], rename: Callable[[str], str] = str) -> Iterator[str]:
    """Import circles between sibling packages (imports anywhere in a module, TYPE_CHECKING
    included, as import-linter counts them) of the tree as it is, its modules named by ``rename``
    (:func:`mapped`: the circles the moves would leave)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for module in modules:
        path = module_path(module)
        if path is None:
            continue
        pkg = package_of(module, path.name == "__init__.py")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                origin = ".".join([*pkg[: len(pkg) - node.level + 1], *([node.module] if node.module else [])]) if node.level else node.module or ""
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            edges[module].update(t for t in targets if t in modules and t != module)
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for a, imported in edges.items():
        for b in imported:
            pa, pb = rename(a).split("."), rename(b).split(".")
            i = 0
            while i < min(len(pa), len(pb)) and pa[i] == pb[i]:
                i += 1
            if i < len(pa) and i < len(pb):
                graph[".".join(pa[:i])][pa[i]].add(pb[i])
    for parent, adjacency in sorted(graph.items()):
        for component in strongly_connected(adjacency):
            yield f"{parent}: {' <-> '.join(sorted(component))}"


def strongly_connected(adjacency: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in adjacency.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(set(adjacency) | {w for ws in adjacency.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="print what would be done; exit 1 if the tree is not in the target layout")
    parser.add_argument("--renames", action="store_true", help="also rename the classes of RENAMES (old names kept as deprecated aliases)")
    args = parser.parse_args()
    if not (SRC / TOP / "__init__.py").is_file() or not (ROOT / ".git").exists():
        sys.exit(f"run from the repository root (no src/{TOP} or .git in {ROOT})")

    modules = all_modules()
    moves, warnings = pending_moves(modules)
    for warning in warnings:
        print(f"warning: {warning}")
    packages = new_packages(moves)
    data = [(ROOT / "src" / TOP / old, ROOT / "src" / TOP / new) for old, new in DATA_MOVES.items() if (ROOT / "src" / TOP / old).is_dir()]
    old_files = {path.resolve(): (old, new) for old, new, path in moves}

    # What each text file becomes (computed at the old paths, written before the moves).
    changed: dict[Path, str] = {}
    for file in text_files():
        text = file.read_text(encoding="utf-8")
        new = text
        if file.suffix == ".py":
            module, is_package = file_module(file)
            new = rewrite_imports(new, module, mapped(module), is_package, modules)
            new = rewrite_relative_refs(new, module, mapped(module), is_package)
        new = rewrite_text(new)
        if file.name == "pyproject.toml" and file.parent == ROOT:
            new = drop_covered_ignores(rewrite_contracts(new, existing_after(modules)))
        if new != text:
            changed[file] = new
    leftovers = dissolved_leftovers() if not moves else [SRC / p.replace(".", "/") / "__init__.py" for p in DISSOLVED if (SRC / p.replace(".", "/") / "__init__.py").is_file()]
    renames = apply_renames(text_files(), dry=True) if args.renames and not moves else []

    todo = (
        [f"create package {p}" for p in packages]
        + [f"git mv {path.relative_to(ROOT)} -> src/{new.replace('.', '/')}.py" for old, new, path in moves]
        + [f"git mv {a.relative_to(ROOT)} -> {b.relative_to(ROOT)}" for a, b in data]
        + [f"rewrite {path.relative_to(ROOT)}" for path in changed]
        + [f"git rm {path.relative_to(ROOT)} (package dissolved)" for path in leftovers]
        + renames
    )
    if args.check:
        for line in todo:
            print(line)
        if args.renames and moves:
            print("renames: after the moves (run again with --renames)")
        for cycle in sibling_cycles(modules, mapped):
            print(f"import circle between packages after the moves: {cycle}")
        print(f"{len(moves)} modules to move, {len(changed)} files to rewrite" if todo else "the tree is in the target layout")
        return 1 if todo else 0
    if not todo:
        print("the tree is in the target layout: nothing to do")
        return 0

    for file, text in changed.items():
        file.write_text(text, encoding="utf-8")
    created = [write_package(p) for p in packages]
    for path in created:
        git("add", str(path.relative_to(ROOT)))
    for old, new, path in moves:
        target = SRC / (new.replace(".", "/") + (".py" if path.name != "__init__.py" else "/__init__.py"))
        target.parent.mkdir(parents=True, exist_ok=True)
        git("mv", str(path.relative_to(ROOT)), str(target.relative_to(ROOT)))
        print(f"moved {old} -> {new}")
    for a, b in data:
        b.parent.mkdir(parents=True, exist_ok=True)
        git("mv", str(a.relative_to(ROOT)), str(b.relative_to(ROOT)))
        print(f"moved {a.relative_to(ROOT)} -> {b.relative_to(ROOT)}")
    for init in dissolved_leftovers():
        git("rm", "-q", str(init.relative_to(ROOT)))
        shutil.rmtree(init.parent, ignore_errors=True)  # its __pycache__ would import as a namespace package
        print(f"removed {init.parent.relative_to(ROOT)} (dissolved)")
    renamed: list[Path] = []
    for line in apply_renames(text_files(), dry=False, renamed=renamed) if args.renames else []:
        print(line)
    print(f"rewrote {len(changed)} files")

    # Import order and formatting of the Python files touched (only those).
    touched = [str(mapped_file(f, old_files).relative_to(ROOT)) for f in changed if f.suffix == ".py"] + [str(p.relative_to(ROOT)) for p in created]
    touched += [str(f.relative_to(ROOT)) for f in renamed if f.suffix == ".py" and str(f.relative_to(ROOT)) not in touched]
    ruff = tool("ruff")
    if ruff and touched:
        # Sorted even where the lint ratchet ignores an unsorted block today (the ratchet is
        # lifted while ruff runs): the rewrite changed those blocks, and a sorted one shrinks it.
        pyproject = ROOT / "pyproject.toml"
        kept = pyproject.read_text(encoding="utf-8")
        ratchet = re.compile(r"^(# >>> lint-baseline ruff \(.*?\n).*?^(# <<< lint-baseline ruff)$", re.S | re.M)
        try:
            pyproject.write_text(ratchet.sub(r"\1\2", kept), encoding="utf-8")
            subprocess.run([ruff, "check", "--select", "I", "--fix", "--quiet", "--exit-zero", "--no-cache", *touched], cwd=ROOT, check=False)
        finally:
            pyproject.write_text(kept, encoding="utf-8")
        subprocess.run([ruff, "format", "--quiet", "--no-cache", *touched], cwd=ROOT, check=False)
    elif touched:
        print("ruff not found: run `ruff check --select I --fix` and `ruff format` on the files above")
    for cycle in sibling_cycles(all_modules()):
        print(f"import circle between packages: {cycle}")
    for where, number, line in leftover_mentions():
        print(f"check by hand: {where}:{number}: {line}")
    print("next: make venv (entry points moved) && make lint-baseline (check in its counts that import-linter's acyclic edges did not grow) && make lint && make unit")
    return 0


def mapped_file(file: Path, old_files: dict[Path, tuple[str, str]]) -> Path:
    """Where ``file`` is after the moves."""
    moved = old_files.get(file.resolve())
    if moved is None:
        return file
    return SRC / (moved[1].replace(".", "/") + (".py" if file.name != "__init__.py" else "/__init__.py"))


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
