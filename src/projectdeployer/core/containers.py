"""The container contract: what a service type adds to its containers (:class:`ContainerParts`),
where their private files are mounted, their slots and how containers and networks are named.

Building a container from a service (:func:`projectdeployer.deploy.containers.build_container`)
is the deploy's."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

#: Where a container finds its private files (read-only, owned by the image's user, 0400).
SECRETS_MOUNT = "/run/secrets/pd"
#: The two slots of a stateless service: slot a publishes the base host port, b the secondary.
SLOTS = ("a", "b")
#: The one slot of a stateful service (one data directory, so never two copies at once).
STATEFUL_SLOT = "s"
#: The one slot of a scheduled service: a container created by the deploy and started by the
#: scheduler (or ``projectdeployer run``); no published ports, restart policy "no".
JOB_SLOT = "job"


@attrs.frozen(kw_only=True)
class ContainerParts:
    """What a service type adds to its containers (the ``container_parts`` hook's answer)."""

    env: Mapping[str, str] = attrs.field(factory=dict)
    command: tuple[str, ...] | None = None
    #: file name -> content, written privately and mounted at ``/run/secrets/pd``.
    secret_files: Mapping[str, str] = attrs.field(factory=dict)
    #: volume suffix -> container path; the volume is ``{project}_{env}_{service}_{suffix}``.
    data_volumes: Mapping[str, str] = attrs.field(factory=dict)
    #: The user inside the image that must be able to read the secret files.
    secret_owner: str | None = None
    #: The user inside the image that must own the data volumes' mount points: Docker creates
    #: a new volume root-owned when the image has no directory at its path.
    volume_owner: str | None = None


def network_name(project: str, env: str) -> str:
    return f"{project}_{env}_network"


def container_name(project: str, env: str, service: str, slot: str) -> str:
    """``{project}_{env}_{service}_{slot}``; stateful services and scheduled jobs have no slot suffix."""
    base = f"{project}_{env}_{service}"
    return base if slot in (STATEFUL_SLOT, JOB_SLOT) else f"{base}_{slot}"
