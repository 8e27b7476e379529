"""``[images]`` applied to a user's own Dockerfile: its ``FROM`` lines are redirected.

A project whose ``[images]`` points a key at a mirror, a private registry or a local image
(``python = "registry.example.com/library/python:{version}-slim"``) wants every Dockerfile it
builds to use that repository, including a Dockerfile of its own that says ``FROM python:3.11``.
:func:`redirect_from_lines` rewrites such lines before the build:

- a ``FROM`` image whose repository is the official one of an ``[images]`` key (the key's
  default: ``python``, ``node``, ``nginx``, ``postgres``, ``redis``,
  ``opensearchproject/opensearch``; written as ``python``, ``library/python`` or
  ``docker.io/library/python``) gets the repository of the project's entry for that key, when
  the project changed it. **The tag and digest are kept**: ``FROM python:3.11-bookworm`` becomes
  ``FROM registry.example.com/library/python:3.11-bookworm`` (the mirror must hold that tag);
- ``--platform=...`` and ``AS name`` are kept; a ``FROM`` naming an earlier stage, ``scratch``,
  or an image built from a build argument (``FROM $BASE``, ``FROM python:${VERSION}``) is left
  as written (an ``ARG`` default is not followed) and said so;
- nothing else in the file changes, and the user's file is never written: the builder gets the
  rewritten text as a generated file.

Pure: no Docker, no disk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from ..core.safety import IMAGE_REF_RE

__all__ = ["FromRedirect", "Redirected", "official_redirects", "redirect_from_lines"]

#: ``FROM [--flag=value ...] image [AS name]`` on one line (instructions are case-insensitive).
_FROM = re.compile(
    r"^(?P<head>[ \t]*FROM[ \t]+(?:--\S+[ \t]+)*)(?P<image>\S+)(?P<tail>(?:[ \t]+AS[ \t]+(?P<alias>\S+))?[ \t]*)$",
    re.IGNORECASE,
)
_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
#: Stands for ``{version}`` while an ``[images]`` entry is parsed (a tag-like word).
_MARK = "0version0"


@attrs.frozen
class FromRedirect:
    """Images of the official repository ``official`` go to ``repository``, for ``[images] key``."""

    key: str
    official: str
    repository: str


@attrs.frozen
class Redirected:
    """The Dockerfile after :func:`redirect_from_lines`, and what happened, one line each."""

    text: str
    #: ``FROM python:3.11 -> registry.example.com/python:3.11 ([images] python)`` per changed line.
    changes: tuple[str, ...] = ()
    #: ``FROM $BASE: a build argument, left as written`` per line that could not be decided.
    left: tuple[str, ...] = ()


def _split(reference: str) -> tuple[str, str] | None:
    """``(normalised repository, ":tag@digest" rest)`` of an image reference, or None."""
    match = IMAGE_REF_RE.match(reference)
    if not match:
        return None
    registry, path = match["registry"], match["path"]
    rest = (f":{match['tag']}" if match["tag"] else "") + (f"@{match['digest']}" if match["digest"] else "")
    if registry is None or registry in _HUB_HOSTS:
        # Docker Hub: "python", "library/python" and "docker.io/library/python" are one repository.
        return ("library/" + path if "/" not in path else path), rest
    return f"{registry}/{path}", rest


def _repository(reference: str) -> str | None:
    """The repository part of ``reference`` as written (no tag, no digest), or None."""
    match = IMAGE_REF_RE.match(reference)
    if not match:
        return None
    return f"{match['registry']}/{match['path']}" if match["registry"] else match["path"]


def official_redirects(images: Mapping[str, str], defaults: Mapping[str, str]) -> list[FromRedirect]:
    """One redirect per ``[images]`` key whose repository the project changed from the default's.

    Entries whose repository holds ``{version}`` (only a tag may) are skipped: no one
    repository to send images to.
    """
    redirects = []
    for key, default in sorted(defaults.items()):
        entry = images.get(key)
        if entry is None:
            continue
        official = _split(default.replace("{version}", "1"))
        target = _repository(entry.replace("{version}", _MARK))
        ours = _split(entry.replace("{version}", _MARK))
        if official is None or target is None or ours is None or _MARK in target or ours[0] == official[0]:
            continue
        redirects.append(FromRedirect(key=key, official=official[0], repository=target))
    return redirects


def redirect_from_lines(text: str, redirects: list[FromRedirect]) -> Redirected:
    """``text`` with each ``FROM`` of an official repository sent to the project's (module doc)."""
    if not redirects:
        return Redirected(text=text)
    by_official = {r.official: r for r in redirects}
    stages: set[str] = set()
    changes: list[str] = []
    left: list[str] = []
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        match = _FROM.match(body)
        if not match:
            continue
        image = match["image"]
        alias = match["alias"]
        if image.lower() in stages or image.lower() == "scratch":
            pass  # an earlier stage (stage names are case-insensitive), or the empty image
        elif "$" in image:
            left.append(f"FROM {image}: built from a build argument, left as written (redirect its ARG default yourself)")
        else:
            split = _split(image)
            redirect = by_official.get(split[0]) if split else None
            if redirect is not None and split is not None:
                new = redirect.repository + split[1]
                lines[i] = match["head"] + new + match["tail"] + line[len(body) :]
                changes.append(f"FROM {image} -> {new} ([images] {redirect.key})")
        if alias:
            stages.add(alias.lower())
    return Redirected(text="".join(lines), changes=tuple(changes), left=tuple(left))
