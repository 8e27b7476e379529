"""What job containers (deploy/jobs.py) and backup containers (deploy/backup_jobs.py) share: replacing
one only when no run is in progress, and the python image their scheduler runs on.

Both modules use these and neither imports the other for them: the scheduler's job table
includes the backups (jobs -> backupjobs), so backupjobs must not import jobs back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ..core.errors import DeployFailed, ProjectDeployerError
from ..core.poll import WaitTimeout, wait_until

if TYPE_CHECKING:
    from .server import ServerDeployer

#: How long a deploy waits for a run in progress before leaving the old container in place.
RUN_WAIT_SECONDS = 30.0


def remove_idle(engine: ServerDeployer, name: str, service: str, *, wait: float | None = None) -> bool:
    """Remove job (or backup) container ``name`` unless a run is in progress for longer than
    ``wait`` seconds (:data:`RUN_WAIT_SECONDS` by default); whether it is gone. The engine
    refuses to remove a running container without force, so a run starting at the last moment
    is never cut short."""

    wait = RUN_WAIT_SECONDS if wait is None else wait
    told = False

    def gone() -> tuple[bool, str]:
        nonlocal told
        info = engine.runtime.get(name)
        if info is None:
            return True, "gone"
        if not info.running:
            try:
                engine.runtime.remove(name, force=False)
                return True, "removed"
            except ProjectDeployerError as exc:
                now = engine.runtime.get(name)
                if now is None:
                    return True, "gone"  # removed meanwhile
                if not now.running:
                    raise DeployFailed(f"{service}: {exc}") from None
                # A run started in between: wait for it like any other.
        if not told:
            engine.log(f"{service}: a run of {name} is in progress; waiting up to {wait:.0f}s before replacing it")
            told = True
        return False, "running"

    def run_ends(left: float) -> None:
        # Waiting is the engine's own wait for the container to exit, at most the time left.
        engine.runtime.wait(name, timeout=left)

    try:
        wait_until(gone, timeout=wait, interval=wait, what=f"{name} idle", sleep=run_ends)
    except WaitTimeout:
        return False
    return True


def scheduler_image(engine: ServerDeployer) -> tuple[str, str]:
    """The ``[images] python`` image for the scheduler agent (and a backup's verify), and its
    id on the engine's server."""

    project = engine.project
    if "python" not in project.images:
        raise DeployFailed("scheduled services need the [images] python image for the scheduler, and the project has none")
    versions = [getattr(s, "python_version", None) for s in project.services.values() if s.type == "python"]
    stype = engine.registry.service_types.get("python")
    field = attrs.fields_dict(stype.spec_class).get("python_version") if stype is not None else None
    if field is not None and isinstance(field.default, str):
        versions.append(field.default)
    refs = list(dict.fromkeys(project.image("python", v) for v in versions if v)) or [project.image("python")]
    for ref in refs:
        # Planning for a server that gets its images sent (engine.image_source): this machine's id.
        image_id = engine.runtime.image_id(ref) or (engine.image_source(ref) if engine.image_source is not None else None)
        if image_id:
            return ref, image_id
    if engine.image_source is not None:
        return refs[0], ""  # on neither machine yet: the deploy has the server pull it
    raise DeployFailed(f"scheduler: its image {refs[0]} (the [images] python image) is not on server {engine.server.name}; build a python service or pull it")


__all__ = ["RUN_WAIT_SECONDS", "remove_idle", "scheduler_image"]
