"""Path-like values of a project file, checked against the root each belongs to.

Validation is pure: these functions read no disk. They look at the text of a path the way the
code that uses it will (POSIX paths, ``..`` components, absolute or not) and say why it would
leave its root, so that a project file can never make a build read ``/etc/passwd`` as a
requirements file or a secret reference read another project's secret.
"""

from __future__ import annotations

import posixpath
import re

from ..core.errors import shown
from ..core.safety import SECRET_NAME_RE

ENV_REF_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
#: Longest path we accept anywhere (Linux's PATH_MAX is 4096).
MAX_PATH = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1, as rendersafety counts them


def _text_problem(value: str) -> str | None:
    if not value:
        return "is empty"
    if len(value) > MAX_PATH:
        return f"is {len(value)} characters long (at most {MAX_PATH})"
    if _CONTROL.search(value):
        return f"{shown(value)} contains a control character"
    return None


def inside_problem(value: str, root: str) -> str | None:
    """Why the relative path ``value`` is not a path inside ``root`` (a phrase such as "the
    build context"), or ``None``. ``..`` is refused anywhere, even where it would come back in:
    what a path means should not take resolving to see."""
    why = _text_problem(value)
    if why:
        return why
    if value.startswith(("/", "~")):
        return f"{shown(value)} must be a path inside {root}, relative to it (not absolute)"
    if ".." in value.replace("\\", "/").split("/"):
        return f"{shown(value)} must stay inside {root} (no '..')"
    return None


def build_context_problem(value: str) -> str | None:
    """A build context is a directory of this machine: absolute, or relative to the project
    file's directory and inside it."""
    why = _text_problem(value)
    if why:
        return why
    if ".." in value.replace("\\", "/").split("/"):
        return f"{shown(value)} must not contain '..': give a directory inside the project file's directory, or an absolute path"
    return None


def host_volume_problem(host: str, project: str) -> str | None:
    """The host side of a volume: an absolute path without ``..``; under ``/local/`` (the
    environment's data root on every server) only the project's own ``/local/{project}/...``."""
    why = _text_problem(host)
    if why:
        return why
    if not host.startswith("/"):
        return f"host path {shown(host)} must be absolute (/local/{project}/ENV/... is the environment's data on every server)"
    if ".." in host.split("/"):
        return f"host path {shown(host)} must not contain '..'"
    # normpath keeps a leading "//" (POSIX leaves it to the system), which Docker reads as "/":
    # "//local/other" would pass a prefix check and mount another project's data.
    normal = "/" + posixpath.normpath(host).lstrip("/")
    if normal != host:
        return f"host path {shown(host)} must be written plainly: {shown(normal)}"
    if (normal == "/local" or normal.startswith("/local/")) and not normal.startswith(f"/local/{project}/"):
        return f"host path {shown(host)} is outside the project's data: use /local/{project}/..."
    return None


def secret_ref_problem(ref: str) -> str | None:
    """Why the built-in reference ``ref`` (``secret:``, ``env:``, ``file:``) is malformed, or
    ``None`` (also for other schemes: a secrets plugin checks its own)."""
    scheme, _, rest = ref.partition(":")
    if scheme == "secret" and not SECRET_NAME_RE.match(rest):
        return f"{shown(ref)}: a secret name is parts of letters, digits, _ . - joined by / (no '..', no leading dot)"
    if scheme == "env" and not ENV_REF_RE.match(rest):
        return f"{shown(ref)}: env: takes the name of an environment variable"
    if scheme == "file":
        why = _text_problem(rest)
        if why:
            return f"file reference {why}"
        if not rest.startswith(("/", "~/")):
            return f"{shown(ref)}: a file reference is an absolute path or ~/..."
        if ".." in rest.split("/"):
            return f"{shown(ref)}: a file reference must not contain '..'"
    return None
