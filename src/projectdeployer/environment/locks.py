"""The deploy lock: one deploy of a project/environment at a time (from this machine)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import ProjectDeployerError
from ..core.poll import WaitTimeout, wait_until


class DeployLocked(ProjectDeployerError):
    """Another deploy holds the lock; says who and since when."""


@contextmanager
def deploy_lock(path: Path, *, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (waiting up to ``wait`` seconds for it).

    The kernel releases the lock when the holder dies, even by SIGKILL, so a crashed deploy
    never leaves a stale lock behind.

    The holder may delete ``path`` while it holds it (``destroy`` removes the environment's
    lock file): a waiter that then gets the lock of the deleted file finds that ``path`` is no
    longer the file it locked, and locks the file at ``path`` instead, so two holders never
    hold two different files at once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def take() -> tuple[bool, str | None]:
        """Lock the file at ``path``; ``(False, who holds it)`` while another process does."""
        nonlocal fd
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False, _holder(fd)
            if _same_file(fd, path):
                return True, None
            # Locked a file its holder deleted meanwhile: start again on the one at path.
            os.close(fd)
            fd = -1
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    try:
        try:
            wait_until(take, timeout=wait, interval=0.2, what=f"the deploy lock {path}")
        except WaitTimeout as exc:
            raise DeployLocked(f"another deploy is running ({exc.last}); wait for it or pass --lock-wait SECONDS") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode(), 0)
        yield
    finally:
        if fd >= 0:
            os.close(fd)


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it in the file."""
    holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "{}"
    try:
        info = json.loads(holder)
        return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}"
    except ValueError:
        return "another process"


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is the file at ``path`` now (not one deleted or replaced meanwhile)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    there = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
