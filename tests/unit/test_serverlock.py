"""Which server holds an environment's deploy lock, and that the local lock is always taken."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from projectdeployer.core.lock import DeployLocked, deploy_lock
from projectdeployer.core import paths
from projectdeployer.core.serverlock import environment_lock, lock_server
from projectdeployer.providers.local import LocalServer

pytestmark = pytest.mark.unit


class Remote(LocalServer):
    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]
        self.held: list[tuple[str, float]] = []

    @property
    def data_root(self) -> str:  # type: ignore[override]
        return "/local"

    @contextlib.contextmanager
    def hold_lock(self, path: str, *, wait: float = 0.0) -> Iterator[None]:
        self.held.append((path, wait))
        yield


def test_the_first_server_by_name_holds_the_lock(pd_home) -> None:  # type: ignore[no-untyped-def]
    b, a = Remote("shop-prod-lon1-2"), Remote("shop-prod-lon1-1")
    assert lock_server([b, a]) is a
    assert lock_server([LocalServer()]) is None
    with environment_lock("shop", "prod", [b, a], wait=3.0):
        # the local lock is held too: a second deploy from this machine is refused at once
        with pytest.raises(DeployLocked):
            with deploy_lock(paths.env_dir("shop", "prod") / "deploy.lock"):
                pass
    assert a.held == [("/local/shop/prod/deploy.lock", 3.0)] and b.held == []


def test_this_machine_alone_uses_the_local_lock(pd_home) -> None:  # type: ignore[no-untyped-def]
    with environment_lock("shop", "dev", [LocalServer()]):
        with pytest.raises(DeployLocked):
            with deploy_lock(paths.env_dir("shop", "dev") / "deploy.lock"):
                pass
