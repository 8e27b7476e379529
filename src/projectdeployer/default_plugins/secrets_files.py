"""The essential secrets plugin: references in the project file, values in 0600 files.

References:

``secret:NAME``
    ``{home}/{project}/{env}/secrets/NAME`` for environment secrets, else
    ``{home}/{project}/secrets/NAME`` (project-wide, e.g. ``api/git_token``).
``env:NAME``
    The operator's environment variable ``NAME`` (read on the operator's machine only;
    it is never passed on as a container's environment).
``file:PATH``
    A file the operator keeps elsewhere (``~`` expanded).

What the store holds, who references it and what a removed service leaves behind is
:mod:`projectdeployer.secrets.inventory` (it reads this store's layout: :func:`secrets_root`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core import paths
from ..core.errors import SecretError
from ..core.fsutil import write_private
from ..core.safety import SECRET_NAME_RE
from ..hookspecs import hookimpl


def secret_path(project: str, env: str | None, name: str) -> Path:
    """Where ``secret:name`` of ``project`` (and ``env``) is kept."""
    # The grammar validation holds secret: references to, so what validates is what resolves.
    if not SECRET_NAME_RE.match(name):
        raise SecretError(f"'{name}' is not a valid secret name (letters, digits, _ . - and / between parts)")
    return secrets_root(project, env) / name


def secrets_root(project: str, env: str | None) -> Path:
    """``{home}/{project}/{env}/secrets`` for an environment, ``{home}/{project}/secrets`` else."""
    return paths.env_dir(project, env, "secrets") if env else paths.project_dir(project) / "secrets"


@hookimpl
def resolve_secret(project: str, env: str | None, ref: str) -> str | None:
    scheme, _, rest = ref.partition(":")
    if scheme == "env":
        value = os.environ.get(rest)
        if value is None:
            raise SecretError(f"secret reference '{ref}': environment variable {rest} is not set")
        return value
    if scheme == "file":
        path = Path(rest).expanduser()
    elif scheme == "secret":
        path = secret_path(project, env, rest)
        if env and not path.exists():
            path = secret_path(project, None, rest)
    else:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        # Exactly what was stored; a file written by hand (echo token > f) loses its one newline.
        return text[:-1] if text.endswith("\n") else text
    except FileNotFoundError:
        raise SecretError(f"secret reference '{ref}': {path} does not exist") from None
    except OSError as exc:
        raise SecretError(f"secret reference '{ref}': cannot read {path}: {exc.strerror}") from None


@hookimpl
def store_secret(project: str, env: str | None, name: str, value: str) -> str | None:
    path = secret_path(project, env, name)
    # Every directory from the secrets root down is private, not just the file's own.
    root = secrets_root(project, env)
    chain = [path.parent]
    while chain[-1] != root:
        chain.append(chain[-1].parent)
    for directory in reversed(chain):
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    write_private(path, value)
    return f"secret:{name}"
