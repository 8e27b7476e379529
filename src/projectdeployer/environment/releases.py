"""Release history: what ran when, pinned well enough to roll back to it.

``{home}/{project}/{env}/config/releases.json`` lists every release of every service: image
reference and id, config hash, secrets version (a digest, never secrets), the container command
and environment (secret values are files, so the environment holds none) and the time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import attrs

from ..core import paths
from ..core.fsutil import atomic_write


@attrs.frozen(kw_only=True)
class Release:
    """One deployed version of one service."""

    id: str
    service: str
    version: str
    image: str
    image_id: str
    config_hash: str
    secrets_version: str
    deployed_at: float
    #: How it came to be: deploy, rollback.
    cause: str = "deploy"

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


#: One lock for every history file: the toggles of a deploy record their releases in parallel,
#: and a read-append-write of one would drop another's (14 of 20 were lost). Other processes
#: do not write while a deploy does: they wait for the environment's deploy lock.
_RECORDING = threading.Lock()


def new_release_id() -> str:
    """Sortable and unique: ``20261127T223015-1a2b3c``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


class ReleaseHistory:
    """The releases of one project/environment (newest last)."""

    def __init__(self, project: str, env: str) -> None:
        self.path: Path = paths.env_dir(project, env, "config") / "releases.json"

    def load(self) -> list[Release]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return [Release(**item) for item in data.get("releases", [])]

    def for_service(self, service: str) -> list[Release]:
        return [r for r in self.load() if r.service == service]

    def record(self, release: Release) -> None:
        with _RECORDING:
            releases = self.load()
            releases.append(release)
            atomic_write(self.path, json.dumps({"releases": [r.to_json() for r in releases]}, indent=2) + "\n")

    def current(self, service: str) -> Release | None:
        found = self.for_service(service)
        return found[-1] if found else None
