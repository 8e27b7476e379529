"""``git_repo`` values: ``url@ref`` for https, ssh, scp-like (``git@host:path.git@ref``) and file URLs."""

from __future__ import annotations

import re

import attrs

_SCP = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^@\s]+?)(?:@(?P<ref>[^@\s]+))?\Z")
_SCHEMES = ("https", "http", "ssh", "git", "file")
_SHA = re.compile(r"^[0-9a-f]{7,40}\Z")
# git check-ref-format, roughly: no control characters, spaces, ~^:?*[\ or "..", no "@{",
# no leading "-" or "/", no trailing "/", "." or ".lock".
_BAD_REF = re.compile(r"[\x00-\x20~^:?*\[\\]|\.\.|@\{|^[-/]|/$|\.$|\.lock$|//")


@attrs.frozen
class GitRepo:
    """A parsed ``git_repo`` value."""

    url: str
    ref: str | None
    scheme: str
    host: str | None

    @property
    def is_commit(self) -> bool:
        """Whether ``ref`` looks like a commit id (7-40 hex digits)."""
        return self.ref is not None and bool(_SHA.match(self.ref))

    def __str__(self) -> str:
        return f"{self.url}@{self.ref}" if self.ref else self.url


class GitRepoError(ValueError):
    """A malformed ``git_repo`` value; the message says what is wrong."""


def _check_ref(ref: str | None) -> None:
    if ref is not None and (not ref or _BAD_REF.search(ref)):
        raise GitRepoError(f"'{ref}' is not a valid branch, tag or commit name")


def parse_git_repo(value: str) -> GitRepo:
    """Split ``value`` into URL and ref, checking both. Raises :class:`GitRepoError`."""
    value = value.strip()
    if "://" in value:
        scheme, rest = value.split("://", 1)
        scheme = scheme.lower()
        if scheme not in _SCHEMES:
            raise GitRepoError(f"unsupported scheme '{scheme}' (use https, ssh, git, file or user@host:path)")
        authority, slash, path = rest.partition("/")
        if scheme == "file":
            if authority not in ("", "localhost"):
                raise GitRepoError("file URLs must be absolute: file:///path/to/repo.git")
            host = None
        else:
            if not authority or not path:
                raise GitRepoError("expected a host and a repository path, e.g. https://host/owner/repo.git")
            userinfo, at, hostport = authority.rpartition("@")
            # A password or token inside the URL would end up in .git/config and in logs. Over
            # http(s) any user part is a credential (https://TOKEN@github.com/...); over ssh the
            # user name (git@) is not.
            if at and (":" in userinfo or scheme in ("http", "https")):
                raise GitRepoError("credentials in the URL are not allowed; pass git_token instead")
            host = hostport.split(":")[0] or None
            if host is None:
                raise GitRepoError("missing host name")
        ref = None
        if "@" in path:
            path, ref = path.rsplit("@", 1)
        if not path.strip("/"):
            raise GitRepoError("missing repository path")
        _check_ref(ref)
        return GitRepo(url=f"{scheme}://{authority}{slash}{path}", ref=ref, scheme=scheme, host=host)

    match = _SCP.match(value)
    if match is None:
        raise GitRepoError("expected https://host/path.git[@ref], ssh://..., file:///path[@ref] or git@host:path.git[@ref]")
    ref = match["ref"]
    _check_ref(ref)
    url = f"{match['user']}@{match['host']}:{match['path']}"
    return GitRepo(url=url, ref=ref, scheme="ssh", host=match["host"])
