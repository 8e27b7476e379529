"""The names the tool gives its own containers and volumes, and the collisions with services
that they rule out.

Everything of an environment is named ``{project}_{env}_{rest}``:

- the environment's own containers: ``nginx`` (the sidecar) and ``scheduler``;
- a long-running stateless service's: ``{service}_a`` / ``{service}_b`` (the toggle's slots);
- a stateful service's or a scheduled job's: ``{service}`` itself;
- a stateful service's one-off containers and volumes: ``{service}_backup``, ``_restore``,
  ``_verify``, ``_data``, ``_snapshots``; any container's volume-owner helper
  ``{container}_init``; a stateless service's ``{service}_release`` (its release command).

Two services whose names meet would stop, route to or back up each other's containers: such a
project is refused by validation, naming both. The seed's own ``add_service("nginx",
image="nginx:alpine")`` stays valid: a stateless service named ``nginx`` runs as ``nginx_a`` /
``nginx_b`` beside the sidecar's ``nginx``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import Enum

#: ``{project}_{env}_NAME`` of the environment's own containers.
ENVIRONMENT_OWN = ("nginx", "scheduler")
#: The toggle's slots of a stateless service.
SLOTS = ("a", "b")
#: One-off containers and data volumes of a stateful service.
STATEFUL_SUFFIXES = ("backup", "restore", "verify", "data", "snapshots")


class Shape(Enum):
    """How a service's containers are named."""

    SLOTTED = "slotted"  # a long-running stateless service: two slots
    SINGLE = "single"  # a scheduled job: one container under its own name
    STATEFUL = "stateful"  # one container, plus backups and data volumes


def generated_names(service: str, shape: Shape) -> set[str]:
    """Every ``rest`` of ``{project}_{env}_{rest}`` that ``service`` uses."""
    containers = {f"{service}_{slot}" for slot in SLOTS} if shape is Shape.SLOTTED else {service}
    names = containers | {f"{c}_init" for c in containers}
    if shape is Shape.SLOTTED:
        names.add(f"{service}_release")
    if shape is Shape.STATEFUL:
        names |= {f"{service}_{suffix}" for suffix in STATEFUL_SUFFIXES}
    return names


def spelling(name: str) -> str:
    """The form two names share when they differ only by ``-`` and ``_`` (``MY_DB_URL`` is the
    ``<SERVICE>_URL`` of both ``my-db`` and ``my_db``)."""
    return name.replace("-", "_")


def collisions(services: Mapping[str, Shape]) -> Iterator[tuple[str, str]]:
    """``(service, why)`` for each service whose names meet the environment's own or those of
    a service before it (in the mapping's order)."""
    owner: dict[str, str] = {spelling(own): "" for own in ENVIRONMENT_OWN}
    spelled: dict[str, str] = {}
    for name, shape in services.items():
        twin = spelled.setdefault(spelling(name), name)
        if twin != name:
            yield name, f"'{name}' differs from service '{twin}' only by - and _ (both would be {spelling(name).upper()}_URL)"
            continue
        generated = generated_names(name, shape)
        clash = sorted((g for g in generated if spelling(g) in owner), key=len)
        if clash:
            other = owner[spelling(clash[0])]
            whose = f"service '{other}'" if other else "the environment's own container"
            yield name, f"'{name}' would name a container or volume '{clash[0]}', as {whose} does"
            continue
        owner.update((spelling(g), name) for g in generated)


__all__ = ["ENVIRONMENT_OWN", "SLOTS", "STATEFUL_SUFFIXES", "Shape", "collisions", "generated_names", "spelling"]
