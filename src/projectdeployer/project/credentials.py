"""Plain-text credentials in a project file: found, named, never shown.

A project file is meant to hold references to secrets (``secret:NAME``, ``env:NAME``,
``file:PATH``), never the secrets themselves: it is committed, shared and printed. This module
finds the literal credentials that slipped in anyway, in ``env_vars`` and ``build_args``:

- a URL with a password (``postgres://u:pw@h/db``, ``https://user:pw@host``), whatever the key;
- a key named like a credential (``DB_PASS``, ``*_PASSWORD``, ``*_TOKEN``, ``*_SECRET``,
  ``API_KEY``, ...) holding a literal value.

Detection (:func:`credential_kind`, :func:`find_plaintext_credentials`) is pure. A finding is a
*warning*, not an error (the file still works); :func:`warn_plaintext_credentials` issues one
:class:`PlaintextCredentialWarning` per finding through Python's :mod:`warnings`, so API callers
see them (and can turn them into errors with ``-W error``); the CLI prints each as one line.
No message ever contains the credential's value.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from ..core import paths
from ..core.errors import printable
from .validation import is_secret_ref

#: The last word of a key that names a credential (``DB_PASS``, ``GITHUB_TOKEN``, ``JWT_SECRET``).
_CREDENTIAL_WORDS = frozenset({"PASS", "PASSWORD", "PASSWD", "PWD", "SECRET", "TOKEN", "APIKEY", "CREDENTIAL", "CREDENTIALS"})
#: ``<word>_KEY`` names a credential for these words (``API_KEY``, ``AWS_SECRET_ACCESS_KEY``).
_KEY_QUALIFIERS = frozenset({"API", "PRIVATE", "SECRET", "ACCESS", "SIGNING", "ENCRYPTION", "MASTER"})
#: Suffixes of a key written without underscores (``dbPassword``, ``apiToken``).
_GLUED_SUFFIXES = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "APIKEY")
#: Literal values that are settings, not secrets (``DISABLE_TOKEN = "false"``).
_NOT_SECRETS = frozenset({"", "auto", "true", "false", "yes", "no", "on", "off", "none", "null", "0", "1"})
#: Candidate URLs inside a value (several may be separated by commas or spaces).
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s,;]+")
#: Tables whose values are scanned; both reach containers or images as plain text.
SCANNED_TABLES = ("env_vars", "build_args")


class PlaintextCredentialWarning(UserWarning):
    """A project file holds a credential in plain text (the message names the key, not the value)."""


@attrs.frozen(kw_only=True)
class Finding:
    """One plain-text credential: where it is and why it looks like one (never its value)."""

    service: str
    #: ``env_vars`` or ``build_args``.
    table: str
    key: str
    #: ``"url"`` (a URL with a password) or ``"key"`` (a credential-named key with a literal value).
    kind: str
    #: The environment whose override holds it, or ``None`` for the service's own table.
    env: str | None = None

    @property
    def where(self) -> str:
        """The key's path in the project file, e.g. ``services.api.env_vars.DB_PASS``."""
        base = f"services.{self.service}.{self.table}.{self.key}"
        return f"environments.{self.env}.{base}" if self.env else base


def is_credential_key(key: str) -> bool:
    """Whether ``key`` names a credential: its last word (or ``<word>_KEY``) says so."""
    upper = key.upper()
    words = [w for w in upper.split("_") if w]
    if not words:
        return False
    if words[-1] in _CREDENTIAL_WORDS:
        return True
    if len(words) >= 2 and words[-1] == "KEY" and words[-2] in _KEY_QUALIFIERS:
        return True
    # camelCase keys arrive as one word: dbPassword -> DBPASSWORD.
    return len(words) == 1 and upper.endswith(_GLUED_SUFFIXES)


def url_has_password(value: str) -> bool:
    """Whether ``value`` holds a URL with a non-empty password (``scheme://user:pw@host``)."""
    for match in _URL_RE.finditer(value):
        try:
            password = urlsplit(match.group(0)).password
        except ValueError:  # a malformed port or bracket: not a URL we can judge
            continue
        # ``${DB_PASS}`` is a placeholder someone else expands, not a password.
        if password and not password.startswith("$"):
            return True
    return False


def credential_kind(key: str, value: Any) -> str | None:
    """``"url"``, ``"key"`` or ``None``: whether ``key = value`` holds a plain-text credential.

    References (``secret:``, ``env:``, ``file:``), ``"auto"`` and setting-like words are never one.
    """
    if not isinstance(value, str) or value.strip().lower() in _NOT_SECRETS or is_secret_ref(value):
        return None
    if url_has_password(value):
        return "url"
    if is_credential_key(key):
        return "key"
    return None


def _scan(service: str, tables: Mapping[str, Any], env: str | None) -> Iterator[Finding]:
    for table in SCANNED_TABLES:
        values = tables.get(table)
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            kind = credential_kind(str(key), value)
            if kind is not None:
                yield Finding(service=service, table=table, key=str(key), kind=kind, env=env)


def find_plaintext_credentials(project: Any) -> list[Finding]:
    """Every plain-text credential in ``project`` (a loaded :class:`~..core.model.Project`): the
    services' own tables first, then each environment's overrides, in file order."""
    found: list[Finding] = []
    for name, spec in project.services.items():
        found.extend(_scan(name, {t: getattr(spec, t, None) for t in SCANNED_TABLES}, None))
    for env, environment in project.environments.items():
        for name, overrides in (environment.services or {}).items():
            if isinstance(overrides, Mapping):
                found.extend(_scan(name, overrides, env))
    return found


def safe(text: str, limit: int = 80) -> str:
    """``text`` with control characters escaped and shortened to ``limit`` characters."""
    return printable(text, limit)


def secret_name(finding: Finding) -> str:
    """The name the value would have in the secrets store (the API's own naming)."""
    return f"{finding.service}/env/{finding.key}"


def advice(finding: Finding, project: str, source: str | None) -> str:
    """The one-line warning for ``finding``: the file, the key, how to move the value out."""
    prefix = f"{safe(source, 200)}: " if source else ""
    what = "a URL with a password" if finding.kind == "url" else "a credential"
    head = f"{prefix}{safe(finding.where)} holds {what} in plain text"
    if finding.table == "build_args":
        return (
            f"{head}; build args stay readable in the image's history and cannot be secret references: "
            'for a private git repository use git_token = "secret:NAME", and pass values the app needs at run time '
            'through env_vars as "secret:NAME"'
        )
    name = secret_name(finding)
    root = paths.env_dir(project, finding.env, "secrets") if finding.env else paths.project_dir(project) / "secrets"
    key = safe(finding.key)
    return (
        f"{head}; move it to a secret: put the value in {root / safe(name)} (mode 0600) and write "
        f'{key} = "secret:{safe(name)}" (the container then gets {key}_FILE, the path of a file holding it)' + (', or "auto" if it is a database of this project' if finding.kind == "url" else "")
    )


def warn_plaintext_credentials(project: Any) -> list[str]:
    """Issue one :class:`PlaintextCredentialWarning` per plain-text credential in ``project``
    (a loaded :class:`~..core.model.Project`); returns the messages."""
    lines = [advice(f, project.name, project.source) for f in find_plaintext_credentials(project)]
    for line in lines:
        # stacklevel=1: one location, so Python's default filter shows each message once per process.
        warnings.warn(line, PlaintextCredentialWarning, stacklevel=1)
    return lines
