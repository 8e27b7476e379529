"""Value checks the project file and the plugins share: what a value must look like to be written
into a Dockerfile line, an image reference, a command or a path (the patterns documented in
docs/project-file.md, "Bounds and patterns"), and how a command line becomes an argv.

The service types render with these (``service_types/dockerfiles.py``), the secrets store names
its files with :data:`SECRET_NAME_RE`, and the project file's checks
(:mod:`projectdeployer.project.rendersafety`, :mod:`projectdeployer.project.pathcheck`) refuse
at ``validate`` what a renderer would refuse. Pure: no disk, no network, no jinja2.
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath

from .errors import shown

# --- patterns ----------------------------------------------------------------------------------

#: Python versions as image tags know them: ``3``, ``3.12``, ``3.12.4``, ``3.13.0rc1``, optionally
#: a variant suffix (``3.12-bookworm``) for ``[images] python = "python:{version}"``.
_VARIANT = r"(?:-[a-z0-9]+(?:[._-][a-z0-9]+)*)?"
PYTHON_VERSION_RE = re.compile(rf"^[0-9]{{1,2}}(?:\.[0-9]{{1,3}}){{0,2}}(?:(?:a|b|rc)[0-9]{{1,3}})?{_VARIANT}\Z")
#: Node.js versions: ``20``, ``20.11``, ``20.11.1`` or a release name (``lts``, ``iron``), with an
#: optional variant suffix.
NODE_VERSION_RE = re.compile(rf"^(?:[0-9]{{1,3}}(?:\.[0-9]{{1,3}}){{0,2}}|[a-z][a-z0-9]{{1,19}}){_VARIANT}\Z")
#: A database ``version`` is an image tag (``15``, ``7-alpine``, ``2.11.1``).
IMAGE_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")

# The Docker image reference grammar (github.com/distribution/reference, grammar in its
# reference.go): [host[:port]/]path[:tag][@digest]. Path components are lower case.
_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])"
_REGISTRY = rf"{_HOST}(?::[0-9]{{1,5}})?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
IMAGE_REF_RE = re.compile(
    rf"^(?:(?P<registry>{_REGISTRY})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?\Z"
)
#: ``[project] registry``: a registry host with an optional port and namespace path.
REGISTRY_RE = re.compile(rf"^(?P<host>{_REGISTRY})(?:/{_PATH_COMPONENT})*\Z")
#: A host name (one label or several) for ``default_server_ip``.
HOSTNAME_RE = re.compile(r"^(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
#: ``health_path``: an absolute URL path with an optional query, from RFC 3986's characters
#: minus those that could end a word or a string in a configuration or a command line
#: (quotes, ``;``, braces, spaces, backslashes, control characters).
HEALTH_PATH_RE = re.compile(r"^/(?:[A-Za-z0-9\-._~!$&()*+,=:@/?]|%[0-9A-Fa-f]{2})*\Z")
HEALTH_PATH_MAX = 1024
#: Names of build arguments (``ARG NAME``).
BUILD_ARG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
#: Characters that are safe unquoted in a Dockerfile COPY/RUN line and in a shell word; shared
#: with the Dockerfile renderer (service_types/dockerfiles.py), which applies it again.
SAFE_PATH_RE = re.compile(r"[A-Za-z0-9._@+=,-]+(?:/[A-Za-z0-9._@+=,-]+)*")
#: A Debian package name (Debian Policy 5.6.1 and 5.6.7): lower-case letters, digits, ``+ - .``,
#: starting with a letter or digit, at least two characters. Nothing else: no version (``=1.2``),
#: release (``/bookworm``) or architecture (``:amd64``) suffix, so a name is one shell word that
#: apt-get cannot read as an option.
DEBIAN_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+\Z")
#: At most this many names in one ``system_packages`` or ``build_packages`` list.
MAX_DEBIAN_PACKAGES = 200
#: Control characters (C0, DEL, C1); ``allow`` lifts some (a tab in a command line is harmless).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# --- helpers -------------------------------------------------------------------------------------


def control_chars(value: str, allow: str = "") -> list[str]:
    """The control characters in ``value`` (except those in ``allow``), escaped, for a message."""
    found = sorted({c for c in _CONTROL.findall(value) if c not in allow})
    return [repr(c)[1:-1] for c in found]


def controls_problem(value: str, allow: str = "") -> str | None:
    bad = control_chars(value, allow)
    if bad:
        return f"{shown(value)} contains control characters ({', '.join(bad)})"
    return None


def image_ref_problem(value: str) -> str | None:
    """Why ``value`` is not a Docker image reference, or ``None``."""
    match = IMAGE_REF_RE.match(value)
    if not match or len(match["path"]) + len(match["registry"] or "") >= 256:
        return f"{shown(value)} is not a Docker image reference (expected [host[:port]/]path[:tag][@digest], e.g. python:3.12-slim)"
    registry = match["registry"]
    if registry and ":" in registry and not registry.startswith("["):
        port = int(registry.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            return f"{shown(value)}: registry port {port} is not between 1 and 65535"
    return None


def image_template_problem(value: str) -> str | None:
    """Why an ``[images]`` entry is not an image reference once ``{version}`` is filled in."""
    # Any version the patterns accept is a tag-like word: try one with every kind of character.
    return image_ref_problem(value.replace("{version}", "1.0-x")) and (
        f"{shown(value)} is not a Docker image reference (expected [host[:port]/]path[:tag][@digest], {{version}} allowed, e.g. python:{{version}}-slim)"
    )


def relative_path_problem(value: str) -> str | None:
    """Why ``value`` cannot be a path inside the build context in a Dockerfile line, or ``None``."""
    path = value.strip().rstrip("/")
    if not path or path.startswith(("/", "-")) or ".." in PurePosixPath(path).parts or not SAFE_PATH_RE.fullmatch(path):
        return f"{shown(value)} is not a relative path inside the project (letters, digits, . _ @ + = , - and /; no leading / or -, no ..)"
    if str(PurePosixPath(path)) == ".":
        return f"{shown(value)} names the project root, not a file or directory"
    return None


def debian_package_problem(value: str) -> str | None:
    """Why ``value`` is not a Debian package name, or ``None``."""
    if DEBIAN_PACKAGE_RE.match(value):
        return None
    return f"{shown(value)} is not a Debian package name (lower-case letters, digits, + - and ., starting with a letter or digit, at least 2 characters; no version or release; e.g. libpq5)"


def command_problem(value: str, what: str = "command") -> str | None:
    """Why ``value`` is not a one-line command line (Dockerfile CMD, container command), or ``None``."""
    if not value.strip():
        return f"is empty; remove the key to keep the image's default {what}" if what == "command" else "is empty"
    why = controls_problem(value, allow="\t")
    if why:
        return f"{why}; a {what} is one line"
    try:
        shlex.split(value)
    except ValueError as exc:  # an unclosed quote or a trailing backslash
        return f"{shown(value)} cannot be split into arguments: {exc}"
    return None


# --- how a command line runs -------------------------------------------------------------------

# Outside quotes, these characters mean shell syntax: operators, redirections, subshells, globs,
# tilde expansion. "$" and "`" (expansions) count outside single quotes too.
_SHELL_CHARS = frozenset("|&;<>()*?[~")
_ENV_PREFIX = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*=")


def needs_shell(command: str) -> bool:
    """Whether ``command`` uses shell syntax that splitting it into an argv would lose."""
    if _ENV_PREFIX.match(command):  # VAR=value cmd
        return True
    quote = ""
    escaped = False
    for char in command:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = ""
            elif quote == '"' and char in "$`":
                return True
        elif char in "'\"":
            quote = char
        elif char in _SHELL_CHARS or char in "$`":
            return True
    return False


def command_argv(command: str) -> list[str]:
    """The argv of a ``command`` line, for a Dockerfile's exec-form CMD and a container alike.

    A plain command line is split like a POSIX shell would (``shlex.split``), so the process
    gets signals directly as PID 1. A command that uses shell syntax outside quotes (``&&``,
    pipes, redirections, ``$VAR``, globs, ``VAR=value cmd``) would lose its meaning when split,
    so it runs as ``["/bin/sh", "-c", command]`` instead.

    Raises ValueError for an empty command, a NUL character or one that cannot be split.
    """
    if not command.strip():
        raise ValueError("command is empty: give a command line, or None for the image default")
    if "\x00" in command:
        raise ValueError(f"command {command!r} contains a NUL character")
    try:
        argv = shlex.split(command)
    except ValueError as exc:  # e.g. an unclosed quote
        raise ValueError(f"command {command!r} cannot be parsed: {exc}") from None
    if needs_shell(command):
        argv = ["/bin/sh", "-c", command.strip()]
    return argv


# --- names in the secrets store -------------------------------------------------------------

#: ``secret:NAME``: parts of letters, digits, ``_ . -`` joined by ``/``; no part starts with a
#: dot, so ``..`` can never climb out of the secrets directory.
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}){0,7}\Z")
