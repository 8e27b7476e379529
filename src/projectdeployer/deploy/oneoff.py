"""One-off containers of the deploy: the backup, verify and restore containers of a stateful
service, run to completion and removed (a backup method's :class:`~projectdeployer.core.backups.JobRunner`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import attrs

from ..core.backups import BACKUPS_MOUNT, LABEL_BACKUP_OF, ROLE_RESTORE, RUN_TIMEOUT, BackupError, BackupJob, BackupTarget
from ..core.containers import SECRETS_MOUNT, network_name
from ..core.runtime import LABEL_CONFIG, LABEL_ENV, LABEL_PROJECT, LABEL_ROLE, ContainerSpec, Mount
from .secretfiles import write_secret_files


def _canonical_hash(spec: ContainerSpec, image_id: str, files: Mapping[str, str]) -> str:
    canonical = {
        "image_id": image_id,
        "command": spec.command,
        "env": dict(sorted(spec.env.items())),
        "mounts": [attrs.asdict(m) for m in spec.mounts],
        "network": spec.network,
        "files": {k: hashlib.sha256(v.encode()).hexdigest() for k, v in sorted(files.items())},
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=list).encode()).hexdigest()[:16]


class BackupJobRunner:
    """Builds and runs the backup, verify and restore containers of one service."""

    def __init__(self, target: BackupTarget) -> None:
        self.target = target

    def spec(self, job: BackupJob, name: str, role: str) -> tuple[ContainerSpec, Mapping[str, str], str]:
        """The container for ``job`` (without its private files mounted yet) and its config hash."""
        t = self.target
        mounts = [Mount(source=t.backups_dir, target=BACKUPS_MOUNT, read_only=role == ROLE_RESTORE)]
        for suffix, path in sorted(job.data_volumes.items()):
            mounts.append(Mount(source=t.volume(suffix), target=path, volume=True, read_only=job.data_read_only))
        env = {"TZ": "UTC", "PD_SERVICE": t.service.name, "RETENTION_DAYS": str(t.policy.retention_days), **job.env}
        image = t.image
        if job.image == "python":
            if not t.python_image:
                raise BackupError(f"{t.service.name}: its backups run on the project's [images] python image, which is not on {t.server.name}")
            image = t.python_image
        spec = ContainerSpec(
            name=name,
            image=image,
            command=job.command,
            env=env,
            network="none" if job.isolated else network_name(t.project.name, t.env),
            mounts=tuple(mounts),
            restart="no",
            stop_timeout=60,
            user="0",  # writes /backups (the operator's tree) and reads the private files
        )
        image_id = t.runtime.image_id(image) or ""
        config_hash = _canonical_hash(spec, image_id, job.secret_files)
        labels = {
            LABEL_PROJECT: t.project.name,
            LABEL_ENV: t.env,
            LABEL_ROLE: role,
            LABEL_BACKUP_OF: t.service.name,
            LABEL_CONFIG: config_hash,
        }
        return attrs.evolve(spec, labels=labels), job.secret_files, config_hash

    def with_files(self, spec: ContainerSpec, files: Mapping[str, str]) -> ContainerSpec:
        """``spec`` with ``files`` written privately on the server and mounted."""
        if not files:
            return spec
        t = self.target
        source = write_secret_files(t.server, t.runtime, t.project.name, t.env, spec.name, spec.image, files, None)
        return attrs.evolve(spec, mounts=(*spec.mounts, Mount(source=source, target=SECRETS_MOUNT, read_only=True)))

    def ensure_dir(self) -> None:
        t = self.target
        result = t.server.run(["mkdir", "-p", "-m", "0700", t.backups_dir])
        if not result.ok:
            raise BackupError(f"{t.service.name}: cannot create {t.backups_dir} on {t.server.name}: {result.stderr.strip()}")

    def run_once(self, job: BackupJob, role: str, *, timeout: float = RUN_TIMEOUT) -> tuple[int, list[str]]:
        """Run ``job`` in a one-off container; its exit code and log lines. The container is
        removed afterwards whatever happened."""
        t = self.target
        name = f"{t.project.name}_{t.env}_{t.service.name}_{role}"
        spec, files, _ = self.spec(job, name, role)
        t.runtime.remove(name)
        spec = self.with_files(spec, files)
        try:
            t.runtime.start(spec)
            code = t.runtime.wait(name, timeout=timeout)
            lines = list(t.runtime.logs(name, tail=200))
        finally:
            t.runtime.remove(name)
        return (code if code is not None else -1), lines
