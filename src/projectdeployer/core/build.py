"""The build contract: what a builder plugin is asked (:class:`BuildRequest`) and answers, what a
service type generates (:class:`GeneratedBuild`), the error a failed build raises, and the hash of
an image's inputs (:func:`inputs_digest`, :data:`INPUTS_LABEL`) that builders label images with.

The builds themselves (sources, Dockerfiles, tags, the hook calls) are :mod:`projectdeployer.build`.
"""

from __future__ import annotations

import hashlib
import os
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import attrs

from .errors import ProjectDeployerError
from .model import ServiceSpec

Log = Callable[[str], None]

#: Label holding the hash of everything that went into an image, so an unchanged service is
#: not rebuilt at all.
INPUTS_LABEL = "io.projectdeployer.inputs"


class BuildFailed(ProjectDeployerError):
    """A service's image could not be built; names the service and shows the failing step."""


def _read_only(files: Mapping[str, str]) -> Mapping[str, str]:
    return types.MappingProxyType(dict(files))


def _str_tuple(lines: Iterable[str]) -> tuple[str, ...]:
    """A typed ``tuple``: mypy's attrs plugin cannot tell the argument type of a generic converter."""
    return tuple(lines)


@attrs.frozen
class GeneratedBuild:
    """What a service type needs to build its image (the ``generate_dockerfile`` hook's answer).

    ``files`` are extra files to write into the build context before building, keyed by path
    relative to the context root (e.g. ``.projectdeployer/nginx.conf``); the Dockerfile COPYs
    them. The mapping is read-only.
    """

    dockerfile: str
    files: Mapping[str, str] = attrs.field(factory=dict, converter=_read_only)
    #: Lines for the build log and the plan: how the Dockerfile was chosen (which file the
    #: dependencies come from, which Debian packages are installed where).
    notes: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)


@attrs.frozen(kw_only=True)
class BuildRequest:
    """Everything a builder plugin needs to build one service's image."""

    project: str
    service: ServiceSpec
    #: The directory whose files are the build context.
    context_dir: Path
    #: Path of the Dockerfile inside the context (``.projectdeployer/Dockerfile`` when generated).
    dockerfile: str
    #: Files to add to the context (path inside the context -> text): the generated
    #: Dockerfile and what it needs (e.g. an nginx config). The source directory is not touched.
    extra_files: Mapping[str, str] = attrs.field(factory=dict)
    tag: str
    build_args: Mapping[str, str] = attrs.field(factory=dict)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    #: Receives each line of build output.
    log: Log = print


def inputs_digest(context_dir: Path, files: Iterable[str], extra: Mapping[str, str], dockerfile: str, build_args: Mapping[str, str], base_ids: Iterable[str]) -> str:
    """A hash of everything that goes into an image: the context's files (names, modes,
    contents), the generated files, the Dockerfile path, build args and the base images' ids."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        path = context_dir / rel
        if path.is_file() and not path.is_symlink():
            digest.update(f"F\0{rel}\0{os.stat(path).st_mode & 0o111}\0".encode())
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        elif path.is_symlink():
            digest.update(f"L\0{rel}\0{os.readlink(path)}\0".encode())
    for name, text in sorted(extra.items()):
        digest.update(f"X\0{name}\0{text}\0".encode())
    digest.update(f"D\0{dockerfile}\0".encode())
    for key, value in sorted(build_args.items()):
        digest.update(f"A\0{key}={value}\0".encode())
    for base in base_ids:
        digest.update(f"B\0{base}\0".encode())
    return digest.hexdigest()
