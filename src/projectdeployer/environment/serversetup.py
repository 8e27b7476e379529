"""``servers setup``: make every server of an environment ready for deploys, over SSH.

Each server the provider lists (for servers you list yourself, the ``ssh`` provider, the free
ones too) gets what :func:`~..providers.ssh.bootstrap.bootstrap` installs: the Docker engine when
missing, the data root, the sidecar's and the scheduler's images. Servers are set up in
parallel; one that fails is reported beside the others, which keep their result. Running it
again changes nothing that is already there.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.fanout import fan_out, one_line
from ..core.provider import Server
from ..providers.ssh.bootstrap import SetupReport, bootstrap, image_ids, server_image_refs
from .environment import Environment


def setup_servers(environment: Environment, *, apt_proxy: str | None = None) -> dict[str, SetupReport | str]:
    """server name -> its report, or the one-line reason it failed (see the module)."""
    provider = environment.provider()
    project, env = environment.project.name, environment.env
    listed = getattr(provider, "listed_servers", None)
    servers: Sequence[Server] = listed(project, env) if listed is not None else provider.list_servers(project, env)
    images = image_ids(server_image_refs(environment.project))
    done = fan_out(list(servers), lambda s: bootstrap(s, images, log=environment.log, apt_proxy=apt_proxy), max_workers=8, name=lambda s: s.name)
    return {s.name: r if isinstance(r, SetupReport) else one_line(r) for s, r in ((s, done[s.name]) for s in servers)}
