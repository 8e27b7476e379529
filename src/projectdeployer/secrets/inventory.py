"""The secrets store's inventory: which secret files there are (never their contents), which
services reference them, and what removing a service leaves behind.

The store itself (``secret:NAME`` -> a 0600 file) is the built-in plugin
:mod:`projectdeployer.default_plugins.secrets_files`, whose layout (:func:`secrets_root`) this
reads; ``projectdeployer secrets list`` shows the inventory and ``ProjectDeployer.delete_service``
cleans up with :func:`forget_service_secrets`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import attrs

from ..core import paths
from ..core.model import Project
from ..default_plugins.secrets_files import secrets_root
from ..environment.releases import ReleaseHistory

#: The rotator keeps old passwords in ``{env}/secrets/{service}/backups/`` (not secrets in use).
_BACKUPS_DIR = "backups"
#: Service types whose password the deploy generates into ``{env}/secrets/{service}/``.
DATABASE_TYPES = ("postgres", "redis", "opensearch")


@attrs.frozen(kw_only=True)
class StoredSecret:
    """One secret file of the store (never its contents)."""

    #: ``NAME`` as in ``secret:NAME``, e.g. ``api/git_token`` or ``postgres/postgres_password``.
    name: str
    path: Path
    #: ``"project"`` (``{home}/{project}/secrets``) or the environment's name.
    scope: str


def stored_secrets(project: str, env: str | None) -> list[StoredSecret]:
    """Every secret file under the root of ``env`` (or the project's), sorted by name; password
    backups and temporary (dot) files are left out."""
    root = secrets_root(project, env)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        parts = path.relative_to(root).parts
        if any(part.startswith(".") for part in parts) or (len(parts) > 2 and parts[1] == _BACKUPS_DIR):
            continue
        found.append(StoredSecret(name="/".join(parts), path=path, scope=env or "project"))
    return found


def password_name(service: str) -> str:
    """The store name of a database's generated password (see ``core.resolver.password_path``)."""
    return f"{service}/{service}_password"


def secret_references(project: Project, env: str | None) -> dict[str, list[str]]:
    """``NAME -> [where]`` for every ``secret:NAME`` the services of ``env`` use, plus each
    database's own password: ``api.git_token``, ``api.env_vars.DB_PASSWORD``, ``postgres``
    (its password), ``api.depends_on`` (a dependent gets the password as a file)."""
    refs: dict[str, list[str]] = {}
    specs = project.services_for(env)
    for name, spec in specs.items():
        token = getattr(spec, "git_token", None)
        if isinstance(token, str) and token.startswith("secret:"):
            refs.setdefault(token.removeprefix("secret:"), []).append(f"{name}.git_token")
        for key, value in spec.env_vars.items():
            if isinstance(value, str) and value.startswith("secret:"):
                refs.setdefault(value.removeprefix("secret:"), []).append(f"{name}.env_vars.{key}")
        if spec.type in DATABASE_TYPES:
            refs.setdefault(password_name(name), []).append(name)
    for name, spec in specs.items():
        for dep in spec.depends_on:
            if dep in specs and specs[dep].type in DATABASE_TYPES:
                refs.setdefault(password_name(dep), []).append(f"{name}.depends_on")
    if env is not None:
        api_token = project.environment(env).api_token
        if api_token is not None and api_token.startswith("secret:"):
            refs.setdefault(api_token.removeprefix("secret:"), []).append(f"environments.{env}.api_token")
    return refs


@attrs.frozen(kw_only=True)
class SecretsCleanup:
    """What removing a service did to the secrets store: files removed, files kept and why."""

    removed: tuple[Path, ...] = ()
    kept: tuple[tuple[Path, str], ...] = ()

    def lines(self) -> list[str]:
        """One line per file, for the command line and the log (paths, never contents)."""
        return [f"removed secret {p}" for p in self.removed] + [f"kept secret {p}: {why}" for p, why in self.kept]


def _environments(project: str, *models: Project) -> list[str]:
    """Environments that may hold secrets: those of the project file, and those on disk."""
    names = {env for model in models for env in model.environments}
    base = paths.project_dir(project)
    if base.is_dir():
        # {home}/{project}/secrets is the project-wide store, not an environment.
        names.update(d.name for d in base.iterdir() if d.name != "secrets" and (d / "secrets").is_dir())
    return sorted(names)


def _referenced(model: Project, envs: Iterable[str | None]) -> dict[str, list[str]]:
    """``secret_references`` of every view of ``model`` (``None`` = without overrides), merged."""
    merged: dict[str, list[str]] = {}
    for env in envs:
        for name, where in secret_references(model, env).items():
            merged.setdefault(name, [])
            merged[name].extend(w for w in where if w not in merged[name])
    return merged


def _used_by(where: str, service: str) -> bool:
    """Whether a reference ``where`` is ``service``'s own (its dependencies' passwords are not)."""
    return where == service or (where.startswith(f"{service}.") and where != f"{service}.depends_on")


def _was_deployed(project: str, env: str, service: str) -> bool:
    """Whether ``service`` ever ran in ``env`` (a release is recorded for it)."""
    try:
        return bool(ReleaseHistory(project, env).for_service(service))
    except Exception:  # noqa: BLE001 - an unreadable history: assume deployed, keep the password
        return True


def _prune(directory: Path, root: Path) -> None:
    """Remove ``directory`` and its parents up to (not including) ``root`` while they are empty."""
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:  # not empty (or not ours to remove): stop here
            return
        directory = directory.parent


def forget_service_secrets(project: str, service: str, before: Project, after: Project) -> SecretsCleanup:
    """Remove the secret files only ``service`` used, now that ``after`` (the project without
    it) is written; ``before`` is the project with it.

    Candidates are the files under ``{service}/`` and every ``secret:`` the service referenced,
    project-wide and in each environment. A candidate is kept when another service still
    references it, and a database's password is kept in every environment where the database was
    deployed: its container (until the next deploy removes it) and its data volume (which the
    deploy keeps) still use it. Only the built-in file store is touched (``env:`` and ``file:``
    references point at the user's own things).
    """
    envs = _environments(project, before, after)
    removed: list[Path] = []
    kept: list[tuple[Path, str]] = []
    for scope in [None, *envs]:
        views = [None, *envs] if scope is None else [scope]
        mine = {n for n, where in _referenced(before, views).items() if any(_used_by(w, service) for w in where)}
        others = _referenced(after, views)
        root = secrets_root(project, scope)
        for secret in stored_secrets(project, scope):
            if not (secret.name.startswith(f"{service}/") or secret.name in mine):
                continue
            if secret.name in others:
                kept.append((secret.path, f"still used by {', '.join(others[secret.name])}"))
            elif scope is not None and secret.name == password_name(service) and _was_deployed(project, scope, service):
                kept.append(
                    (
                        secret.path,
                        f"{service} was deployed in {scope}: its container (until the next deploy removes it) and its data volume use this password; delete it by hand once that data is gone",
                    )
                )
            else:
                _remove(secret, root, service, removed, kept)
    return SecretsCleanup(removed=tuple(removed), kept=tuple(kept))


def _remove(secret: StoredSecret, root: Path, service: str, removed: list[Path], kept: list[tuple[Path, str]]) -> None:
    """Unlink ``secret`` (and a database password's backups), recording what happened."""
    try:
        secret.path.unlink()
    except OSError as exc:
        kept.append((secret.path, f"cannot remove it: {exc.strerror}"))
        return
    removed.append(secret.path)
    backups = root / service / _BACKUPS_DIR
    if secret.name == password_name(service) and backups.is_dir():
        # Old passwords of a database that is gone guard nothing any more.
        shutil.rmtree(backups, ignore_errors=True)
        removed.append(backups)
    _prune(secret.path.parent, root)


__all__ = ["DATABASE_TYPES", "SecretsCleanup", "StoredSecret", "forget_service_secrets", "password_name", "secret_references", "stored_secrets"]
