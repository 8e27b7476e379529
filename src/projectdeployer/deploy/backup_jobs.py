"""The deploy's part of backups: one backup container per backed-up stateful service.

The deploy converges the backup containers after the services (:func:`converge`): it creates
the ones missing, recreates those whose configuration changed (image, schedule's retention,
password), never while a run is in progress (it waits for the run like a job's), and removes
those of services that are gone or whose backups were disabled. The scheduler's job table gets
one entry per backup container (:func:`schedule_entries`), so the scheduler starts them on the
service's backup schedule. See :mod:`projectdeployer.core.backups` for what they do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from ..core.backups import LABEL_BACKUP_OF, ROLE_BACKUP, BackupError, BackupMethod, BackupPolicy, BackupTarget, backup_container_name
from ..core.containers import STATEFUL_SLOT, container_name
from ..core.errors import DeployFailed, ProjectDeployerError
from ..core.model import ServiceSpec
from ..core.runtime import LABEL_CONFIG, LABEL_ENV, LABEL_PROJECT, LABEL_ROLE
from ..core.servicetype import backup_policy
from .jobcontainers import remove_idle, scheduler_image
from .oneoff import BackupJobRunner

if TYPE_CHECKING:
    from .server import ServerDeployer

#: Job-table names of backup runs: ``{service}:backup``.
TABLE_SUFFIX = ":backup"


@attrs.frozen(kw_only=True)
class BackedUp:
    """A service that is backed up, with how."""

    spec: ServiceSpec
    policy: BackupPolicy
    method: BackupMethod


def backed_up(engine: ServerDeployer, specs: Mapping[str, ServiceSpec] | None = None) -> dict[str, BackedUp]:
    """The environment's services with backups enabled and a backup method, by name."""
    specs = engine.specs() if specs is None else specs
    found: dict[str, BackedUp] = {}
    for name, spec in specs.items():
        stype = engine.registry.service_types.get(spec.type)
        if stype is None or spec.is_scheduled:
            continue
        policy = backup_policy(spec, stype)
        if policy is None or not policy.enabled:
            continue
        method = engine.manager.hook.backup_method(service=spec)
        if method is not None:
            found[name] = BackedUp(spec=spec, policy=policy, method=method)
    return found


def target_for(engine: ServerDeployer, spec: ServiceSpec, policy: BackupPolicy) -> BackupTarget:
    """The backup target of ``spec`` on the engine's server."""

    stype = engine.registry.service_types[spec.type]
    try:
        python_image: str | None = scheduler_image(engine)[0]
    except DeployFailed:
        python_image = None
    return BackupTarget(
        python_image=python_image,
        # Set by a restore (BackupManager: the environment's route out of every sidecar); a
        # backup or a verify leaves the route alone.
        offline=None,
        project=engine.project,
        env=engine.env,
        service=spec,
        server=engine.server,
        runtime=engine.runtime,
        image=engine.image_for(spec, stype),
        host=container_name(engine.project.name, engine.env, spec.name, STATEFUL_SLOT),
        port=spec.port or stype.default_port or 0,
        policy=policy,
    )


def schedule_entries(engine: ServerDeployer, specs: Mapping[str, ServiceSpec]) -> list[dict[str, str]]:
    """The scheduler's job-table entries for the backups."""
    return [
        {"service": f"{name}{TABLE_SUFFIX}", "schedule": item.policy.schedule, "container": backup_container_name(engine.project.name, engine.env, name)}
        for name, item in sorted(backed_up(engine, specs).items())
    ]


def converge(engine: ServerDeployer) -> None:
    """Create, recreate or remove the backup containers to match the project file."""
    project, env, runtime = engine.project.name, engine.env, engine.runtime
    wanted = backed_up(engine)
    existing = {c.labels.get(LABEL_BACKUP_OF, ""): c for c in runtime.list({LABEL_PROJECT: project, LABEL_ENV: env, LABEL_ROLE: ROLE_BACKUP})}
    for service, info in existing.items():
        if service not in wanted:
            engine.log(f"{service}: removing its backup container {info.name} (no backups any more)")
            if not remove_idle(engine, info.name, service):
                engine.log(f"{service}: {info.name} is still running a backup; it is removed by the next deploy")
    for service, item in sorted(wanted.items()):
        target = target_for(engine, item.spec, item.policy)
        if runtime.image_id(target.image) is None:
            engine.log(f"{service}: no backup container yet (image {target.image} is not on {engine.server.name}); deploy {service} first")
            continue
        runner = BackupJobRunner(target)
        name = backup_container_name(project, env, service)
        try:
            spec, files, config_hash = runner.spec(item.method.backup_job(target), name, ROLE_BACKUP)
        except BackupError as exc:
            engine.log(f"{service}: no backup container: {exc}")
            continue
        current = existing.get(service)
        if current is not None and current.labels.get(LABEL_CONFIG) == config_hash:
            continue
        if current is not None and not remove_idle(engine, current.name, service):
            engine.log(f"{service}: a backup is running in {current.name}; it keeps its old configuration until the next deploy")
            continue
        runner.ensure_dir()
        try:
            runtime.create(runner.with_files(spec, files))
        except ProjectDeployerError as exc:
            raise DeployFailed(f"{service}: cannot create its backup container {name}: {exc}") from None
        engine.log(f"{service}: backup container {name} ready (schedule '{item.policy.schedule}', keeps {item.policy.retention_days} day(s))")


__all__ = ["TABLE_SUFFIX", "BackedUp", "backed_up", "converge", "schedule_entries", "target_for"]
