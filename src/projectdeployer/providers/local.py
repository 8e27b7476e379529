"""The ``local`` provider: this machine's Docker engine as the one server of every zone.

It is the default when no cloud token is set. Registration only for now: the deploy engine
that uses it arrives with the local-deploy capability, and until then using it says so.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.errors import ProjectDeployerError
from ..core.provider import Provider
from ..hookspecs import hookimpl

#: The pseudo-zone of this machine; ``server_zone`` of a local deploy is otherwise ignored.
LOCAL_ZONE = "local"


def _factory() -> Provider:
    raise ProjectDeployerError("deploying to this machine is not available yet in this version of ProjectDeployer")


@hookimpl
def register_providers(register: Callable[..., None]) -> None:
    register("local", _factory, zones={LOCAL_ZONE})
