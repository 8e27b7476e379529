"""From a service spec to the container that runs it: names, labels, ports, environment, mounts
and the private files (passwords, connection strings) a container gets instead of secrets in
its environment."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence

import attrs

from ..core.containers import JOB_SLOT, SECRETS_MOUNT, ContainerParts, container_name, network_name
from ..core.model import Project, ServiceSpec
from ..core.runtime import (
    LABEL_CONFIG,
    LABEL_ENV,
    LABEL_PROJECT,
    LABEL_ROLE,
    LABEL_SERVICE,
    LABEL_SLOT,
    ContainerSpec,
    Mount,
)
from ..core.safety import command_argv
from ..core.servicetype import ServiceType
from ..project.validation import ENV_KEY_RE, auto_env_target, auto_piece_target, is_auto_piece, is_secret_ref
from ..secrets.resolver import service_context
from .ports import PortAssignment


@attrs.frozen(kw_only=True)
class ServiceContainer:
    """A container to start for a service, with the private files it needs."""

    spec: ContainerSpec
    secret_files: Mapping[str, str]
    secret_owner: str | None
    config_hash: str
    slot: str
    volume_owner: str | None = None


def host_port(ports: PortAssignment, slot: str) -> int:
    return ports.secondary if slot == "b" else ports.host


def _add_files(files: dict[str, str], added: Mapping[str, str]) -> None:
    """``added`` into ``files``; a file two connections both write (``pgpass``) holds both's lines."""
    for file_name, text in added.items():
        files[file_name] = files.get(file_name, "") + text


#: ``$0`` of the ``secrets_in_env`` wrapper (shown in its error messages).
ENV_WRAPPER_NAME = "projectdeployer-secrets-in-env"


def env_wrapper_script(names: Sequence[str]) -> str:
    """The POSIX sh run as the entrypoint of a ``secrets_in_env`` service: for each ``NAME``,
    export ``NAME`` from the file ``$NAME_FILE`` names, then ``exec`` the original command (its
    arguments), so the app is the process signals reach. Only names are in it, never a value.
    ``names`` are environment variable names (validation: ``[A-Za-z_][A-Za-z0-9_]*``)."""
    for name in names:
        if not ENV_KEY_RE.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
    return "\n".join(
        [
            f"for pd_name in {' '.join(names)}; do",
            '  eval "pd_file=\\${${pd_name}_FILE-}"',
            '  if [ -z "$pd_file" ] || [ ! -r "$pd_file" ]; then',
            '    echo "$0: cannot read ${pd_name}_FILE (${pd_file:-unset})" >&2',
            "    exit 78",
            "  fi",
            '  pd_value=$(cat -- "$pd_file") || exit 78',
            '  export "$pd_name=$pd_value"',
            "done",
            "unset pd_name pd_file pd_value",
            'if [ "$#" -eq 0 ]; then echo "$0: no command to run" >&2; exit 78; fi',
            'exec "$@"',
        ]
    )


def build_container(
    *,
    project: Project,
    env: str,
    service: ServiceSpec,
    stype: ServiceType,
    parts: ContainerParts | None,
    image: str,
    image_id: str,
    ports: PortAssignment,
    slot: str,
    data_root: str,
    resolve_secret: Callable[[str], str],
    service_types: Mapping[str, ServiceType],
    image_command: tuple[Sequence[str], Sequence[str]] | None = None,
) -> ServiceContainer:
    """The container for ``service`` in ``slot``; its config hash ignores the slot.

    ``service_types`` are the registry's (the types ``auto`` values of ``env_vars`` resolve to).
    ``image_command`` is the image's ``(ENTRYPOINT, CMD)``, which a ``secrets_in_env`` service's
    wrapper runs; the config hash does not depend on it (the image id decides it)."""
    parts = parts or ContainerParts()
    name = project.name
    files: dict[str, str] = dict(parts.secret_files)
    environ: dict[str, str] = {
        "PROJECTDEPLOYER_HOME": "/local",
        "PD_PROJECT": name,
        "PD_ENV": env,
        "PD_SERVICE": service.name,
    }
    job = slot == JOB_SLOT
    if service.port is not None and not stype.stateful and not job:
        environ["PORT"] = str(service.port)
    types = {n: s.type for n, s in project.services.items()}
    registry_types = service_types
    ctx = service_context(name, env)
    #: NAME of every NAME_FILE set from env_vars: what a secrets_in_env wrapper exports.
    file_vars: list[str] = []
    for key, value in service.env_vars.items():
        if value == "auto":
            target, _ = auto_env_target(key, service, project, registry_types)
            if target is not None:
                # The URL without the password; with a password, the whole URL as a file.
                added, added_files = registry_types[types[target]].connection_env(key, target, ctx)
                _add_files(files, added_files)
                environ.update(added)
                if f"{key}_FILE" in added:
                    file_vars.append(key)
        elif is_auto_piece(value):
            found = auto_piece_target(value, service, project, registry_types)
            if isinstance(found, tuple):
                target, piece = found
                text = registry_types[types[target]].piece(piece, target, ctx)
                if piece == "password":
                    # The password is a file plus KEY_FILE, never a value in the environment.
                    files[f"env_{key}"] = text
                    environ[f"{key}_FILE"] = f"{SECRETS_MOUNT}/env_{key}"
                    file_vars.append(key)
                else:
                    environ[key] = text
        elif is_secret_ref(value):
            # A secret is a file plus KEY_FILE, never the value in the environment.
            files[f"env_{key}"] = resolve_secret(value)
            environ[f"{key}_FILE"] = f"{SECRETS_MOUNT}/env_{key}"
            file_vars.append(key)
        else:
            environ[key] = value
    # Passwords of the stateful services this one depends on, for ResourceResolver-style access.
    for dep in service.depends_on:
        dep_spec = project.services.get(dep)
        dep_type = registry_types.get(dep_spec.type) if dep_spec is not None else None
        if dep_type is not None and dep_type.has_password:
            files.setdefault(f"{dep}_password", ctx.password(dep))
    environ.update(parts.env)

    mounts: list[Mount] = []
    for suffix, target in sorted(parts.data_volumes.items()):
        mounts.append(Mount(source=f"{name}_{env}_{service.name}_{suffix}", target=target, volume=True))
    for host_path, target in service.volumes.items():
        container_path, _, mode = target.partition(":")
        source = host_path.replace("/local/", f"{data_root.rstrip('/')}/", 1) if host_path.startswith("/local/") else host_path
        mounts.append(Mount(source=source, target=container_path, read_only=mode == "ro"))
    mounts.append(Mount(source=f"{data_root.rstrip('/')}/{name}/{env}/config", target=f"/local/{name}/{env}/config", read_only=True))

    # Split as the generated Dockerfile's CMD is (shell syntax runs through /bin/sh -c): the
    # container's command overrides the image's, so both must read the line the same way.
    command = parts.command or (tuple(command_argv(service.command)) if service.command else None)
    wrapped = service.secrets_in_env and bool(file_vars)
    container_port = service.port
    published = {container_port: host_port(ports, slot)} if container_port and not job else {}
    spec = ContainerSpec(
        name=container_name(name, env, service.name, slot),
        image=image,
        command=command,
        env=environ,
        labels={},
        ports=published,
        network=network_name(name, env),
        mounts=tuple(mounts),
        stop_timeout=30,
        restart="no" if job else "unless-stopped",
    )
    config_hash = _config_hash(spec, image_id, files, sorted(file_vars) if wrapped else None)
    if wrapped:
        # The image's ENTRYPOINT + (our command or the image's CMD), run by the wrapper: setting
        # an entrypoint drops the image's CMD, so the whole command is given again.
        entrypoint, cmd = image_command or ((), ())
        original = (*entrypoint, *(command if command is not None else cmd))
        spec = attrs.evolve(spec, entrypoint=("/bin/sh", "-c", env_wrapper_script(file_vars), ENV_WRAPPER_NAME), command=original or None)
    labels = {
        LABEL_PROJECT: name,
        LABEL_ENV: env,
        LABEL_SERVICE: service.name,
        LABEL_SLOT: slot,
        LABEL_CONFIG: config_hash,
        LABEL_ROLE: "job" if job else ("stateful" if stype.stateful else "service"),
    }
    return ServiceContainer(spec=attrs.evolve(spec, labels=labels), secret_files=files, secret_owner=parts.secret_owner, config_hash=config_hash, slot=slot, volume_owner=parts.volume_owner)


def _config_hash(spec: ContainerSpec, image_id: str, files: Mapping[str, str], env_from_files: Sequence[str] | None = None) -> str:
    """Everything that makes a container different, except its name, slot and host port.
    ``env_from_files``: the names a secrets_in_env wrapper exports (the wrapped command follows
    from the image id and the command hashed here)."""
    canonical: dict[str, object] = {
        "image_id": image_id,
        "command": spec.command,
        "env": dict(sorted(spec.env.items())),
        "container_ports": sorted(spec.ports),
        "mounts": [attrs.asdict(m) for m in spec.mounts],
        # The secrets' version: their contents' digest, never the contents.
        "files": {k: hashlib.sha256(v.encode()).hexdigest() for k, v in sorted(files.items())},
    }
    if env_from_files:  # only then: the hashes of every other container stay as they were
        canonical["env_from_files"] = list(env_from_files)
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=list).encode()).hexdigest()[:16]
