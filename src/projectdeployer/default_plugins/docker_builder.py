"""The Docker SDK builder: answers ``build_image`` and ``push_image`` on this machine's engine.

The build context is streamed as a tar made from the source directory (honouring its
``.dockerignore``) plus the generated files, so a generated Dockerfile never touches the user's
tree. Every image is labelled with a hash of all its inputs; when an image with the same tag
and hash exists, the build is skipped outright (Docker's layer cache covers the rest).
The docker package is imported on first use, never at CLI start-up.
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import IO, Any

from ..core.build import INPUTS_LABEL, BuildFailed, BuildRequest, inputs_digest
from ..hookspecs import hookimpl

_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE | re.MULTILINE)
_STEP = re.compile(r"^Step \d+/\d+ : ")


@cache
def docker_client() -> Any:
    """The engine's client (DOCKER_HOST etc. honoured), created once."""
    import docker  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means: no usable engine
        raise BuildFailed(f"cannot reach the Docker engine: {exc}") from None
    return client


def _context_files(context_dir: Path, dockerfile: str) -> list[str]:
    from docker.utils.build import exclude_paths  # noqa: PLC0415 - deferred: the docker SDK (start-up: ~0.2 s)

    ignore = context_dir / ".dockerignore"
    patterns: list[str] = []
    if ignore.is_file():
        patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return sorted(exclude_paths(str(context_dir), patterns, dockerfile=dockerfile))


def _base_images(dockerfile_text: str) -> list[str]:
    """Images named in FROM lines, without references to earlier stages."""
    stages: set[str] = set()
    images = []
    for match in _FROM.finditer(dockerfile_text):
        image, alias = match.group(1), match.group(2)
        if image.lower() not in stages and "$" not in image:
            images.append(image)
        if alias:
            stages.add(alias.lower())
    return images


def _base_ids(client: Any, images: Iterable[str]) -> list[str]:
    ids = []
    for image in images:
        try:
            ids.append(client.images.get(image).id)
        except Exception:  # noqa: BLE001 - not present locally: the build will pull or fail
            ids.append(f"absent:{image}")
    return ids


@contextmanager
def _context_tar(context_dir: Path, files: list[str], extra: dict[str, str]) -> Iterator[IO[bytes]]:
    """The build context as a tar archive (in memory up to 64 MiB, then on disk), rewound;
    closed when the block ends, also when adding a file fails."""
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as out:
        with tarfile.open(fileobj=out, mode="w") as tar:
            for rel in files:
                if rel in extra:
                    continue
                tar.add(str(context_dir / rel), arcname=rel, recursive=False)
            for rel, text in sorted(extra.items()):
                data = text.encode()
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        out.seek(0)
        yield out


def _inputs(client: Any, request: BuildRequest) -> tuple[list[str], str]:
    """The context's files and the hash of every input of ``request`` (reads only)."""
    dockerfile_text = request.extra_files.get(request.dockerfile)
    if dockerfile_text is None:
        dockerfile_text = (request.context_dir / request.dockerfile).read_text()
    files = _context_files(request.context_dir, request.dockerfile)
    inputs = inputs_digest(request.context_dir, files, request.extra_files, request.dockerfile, request.build_args, _base_ids(client, _base_images(dockerfile_text)))
    return files, inputs


def _existing(client: Any, tag: str) -> Any | None:
    try:
        return client.images.get(tag)
    except Exception:  # noqa: BLE001 - no such image yet
        return None


@hookimpl
def image_inputs(request: BuildRequest) -> tuple[str, str | None] | None:
    client = docker_client()
    _, inputs = _inputs(client, request)
    existing = _existing(client, request.tag)
    return inputs, None if existing is None else (existing.labels or {}).get(INPUTS_LABEL)


@hookimpl
def build_image(request: BuildRequest) -> tuple[str, bool] | None:
    client = docker_client()
    name = request.service.name
    files, inputs = _inputs(client, request)
    existing = _existing(client, request.tag)
    if existing is not None and (existing.labels or {}).get(INPUTS_LABEL) == inputs:
        return existing.id, True

    output: list[str] = []
    step = ""
    image_id = None
    with _context_tar(request.context_dir, files, dict(request.extra_files)) as context:
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            tag=request.tag,
            dockerfile=request.dockerfile,
            buildargs=dict(request.build_args),
            labels={**request.labels, INPUTS_LABEL: inputs},
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for chunk in stream:
            if "stream" in chunk:
                for line in chunk["stream"].splitlines():
                    if line.strip():
                        output.append(line)
                        if _STEP.match(line):
                            step = line
                        request.log(f"  {name} | {line}")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if "error" in chunk:
                tail = "\n".join(f"    {line}" for line in output[-15:])
                where = f" at {step}" if step else ""
                raise BuildFailed(f"{name}: build failed{where}\n{tail}\n    {chunk['error'].strip()}")
    if image_id is None:
        image_id = client.images.get(request.tag).id
    return image_id, False


@hookimpl
def push_image(tag: str, log: Callable[[str], None]) -> str | None:
    client = docker_client()
    repo, _, version = tag.rpartition(":")
    if "/" in version or not repo:  # a registry port, not a tag: the tag is implicit
        repo, version = tag, "latest"
    digest = None
    for chunk in client.api.push(repo, tag=version, stream=True, decode=True):
        if "error" in chunk:
            raise BuildFailed(f"push of {tag} failed: {chunk['error'].strip()}")
        if "status" in chunk and chunk.get("id") is None:
            log(f"  push | {chunk['status']}")
        aux = chunk.get("aux") or {}
        if "Digest" in aux:
            digest = aux["Digest"]
    if digest is None:
        raise BuildFailed(f"push of {tag} reported no digest")
    return f"{repo}@{digest}"


__all__ = ["build_image", "docker_client", "image_inputs", "push_image"]
