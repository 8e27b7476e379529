"""Private files for a container: passwords and connection strings it reads instead of
environment variables.

They live on the server in ``{data_root}/{project}/{env}/run/{container}/`` (directory 0500,
files 0400), owned by the user the container's process runs as, and are mounted read-only at
``/run/secrets/pd``. Nobody else on the server can read them, and ``docker inspect`` shows only
their path.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from ..core.errors import ProjectDeployerError
from ..core.provider import Server
from ..core.runtime import ContainerRuntime


def write_secret_files(
    server: Server,
    runtime: ContainerRuntime,
    project: str,
    env: str,
    container: str,
    image: str,
    files: Mapping[str, str],
    owner: str | None,
) -> str:
    """Write ``files`` for ``container`` and return the directory to mount."""
    uid, gid = runtime.user_ids(image, owner)
    directory = f"{server.data_root.rstrip('/')}/{project}/{env}/run/{container}"
    server.run(["rm", "-rf", directory])
    server.run(["mkdir", "-p", "-m", "0700", directory])
    for name, content in files.items():
        server.put_file(f"{directory}/{name}", content.encode(), mode=0o400)
    result = server.run(["sh", "-c", f"chown -R {uid}:{gid} {shlex.quote(directory)} && chmod 0500 {shlex.quote(directory)}"])
    if not result.ok:
        raise ProjectDeployerError(f"cannot give {directory} to uid {uid} on {server.name}: {result.stderr.strip()}")
    return directory
