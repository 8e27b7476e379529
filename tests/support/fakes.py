"""Test doubles shared by unit tests."""

from __future__ import annotations

from typing import Any

from projectdeployer.core.provider import Server


class RuntimeOnlyServer(Server):
    """This machine as the engine sees it, with ``runtime`` as its only working part: commands,
    the Docker client and file transfer raise (a test that reaches them is testing the wrong thing)."""

    def __init__(self, runtime: Any, *, data_root: str = "/srv") -> None:
        self.name, self.zone = "local", "local"
        self.private_address = self.public_address = "127.0.0.1"
        self.tags = {}
        self.data_root = data_root
        self._runtime = runtime

    def runtime(self) -> Any:
        return self._runtime

    def run(self, command, *, timeout=None):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def docker(self) -> Any:
        raise NotImplementedError

    def put_file(self, remote_path, data, *, mode=0o644):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def get_file(self, remote_path):  # type: ignore[no-untyped-def]
        raise NotImplementedError
