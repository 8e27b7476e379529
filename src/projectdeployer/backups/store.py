"""The backups on a server: listing them (each checked against its checksum file) and choosing
the one to restore. See :mod:`projectdeployer.core.backups` for the files and the verification."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from ..core.backups import TIMESTAMP_FORMAT, BackupError
from ..core.provider import Server


@attrs.frozen(kw_only=True)
class Backup:
    """One backup file on a server."""

    service: str
    timestamp: str
    file: str
    size_bytes: int
    #: verified, corrupt (checksum mismatch), unverified (no checksum: never finished)
    status: str
    server: str

    @property
    def created(self) -> float:
        return datetime.strptime(self.timestamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """The seed's fields (timestamp, size_mb, age_hours) and the rest."""
        now = time.time() if now is None else now
        return {
            "service": self.service,
            "timestamp": self.timestamp,
            "size_mb": round(self.size_bytes / 1_000_000, 3),
            "age_hours": round((now - self.created) / 3600, 2),
            "status": self.status,
            "file": self.file,
            "server": self.server,
        }


def parse_backup_name(service: str, extension: str, name: str) -> str | None:
    """The timestamp of ``{service}_{YYYYmmdd_HHMMSS}.{extension}``, else ``None``."""
    prefix, suffix = f"{service}_", f".{extension}"
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    stamp = name[len(prefix) : -len(suffix)]
    if len(stamp) != 15 or not stamp.replace("_", "").isdigit():
        return None
    try:
        datetime.strptime(stamp, TIMESTAMP_FORMAT)
    except ValueError:
        return None
    return stamp


def read_backups(server: Server, directory: str, service: str, extension: str) -> list[Backup]:
    """The backups of ``service`` in ``directory`` on ``server``, oldest first, each checked
    against its checksum file. Works through the server interface only (remote servers too)."""
    found = server.run(["find", directory, "-maxdepth", "1", "-type", "f", "-printf", "%f\\t%s\\n"])
    if not found.ok:
        if "No such file" in found.stderr:
            return []
        raise BackupError(f"{service}: cannot list {directory} on {server.name}: {found.stderr.strip()}")
    sizes: dict[str, int] = {}
    for line in found.stdout.splitlines():
        name, _, size = line.partition("\t")
        sizes[name] = int(size or 0)
    candidates = sorted((stamp, name) for name in sizes if (stamp := parse_backup_name(service, extension, name)))
    if not candidates:
        return []
    sums = server.run(["sha256sum", *[f"{directory}/{name}" for _, name in candidates]])
    actual: dict[str, str] = {}
    for line in sums.stdout.splitlines():
        digest, _, path = line.partition("  ")
        actual[path.rsplit("/", 1)[-1]] = digest.strip()
    backups = []
    for stamp, name in candidates:
        status = "unverified"
        if f"{name}.sha256" in sizes:
            try:
                recorded = server.get_file(f"{directory}/{name}.sha256").decode().split()[0]
            except (OSError, IndexError, UnicodeDecodeError):
                recorded = ""
            status = "verified" if recorded and recorded == actual.get(name) else "corrupt"
        backups.append(Backup(service=service, timestamp=stamp, file=name, size_bytes=sizes[name], status=status, server=server.name))
    return backups


def choose_backup(backups: Sequence[Backup], timestamp: str) -> Backup:
    """``latest`` (the newest *verified* backup) or the backup taken at ``timestamp``."""
    if not backups:
        raise BackupError("there are no backups")
    if timestamp == "latest":
        verified = [b for b in backups if b.verified]
        if not verified:
            raise BackupError(f"none of the {len(backups)} backup(s) is verified ({', '.join(f'{b.file}: {b.status}' for b in backups[-3:])})")
        return verified[-1]
    matches = [b for b in backups if b.timestamp == timestamp]
    if not matches:
        recent = ", ".join(b.timestamp for b in backups[-5:])
        raise BackupError(f"no backup taken at {timestamp!r} (expected 'latest' or YYYYmmdd_HHMMSS; recent: {recent})")
    chosen = matches[-1]
    if not chosen.verified:
        raise BackupError(f"backup {chosen.file} is {chosen.status}: its checksum does not prove it intact, so it is not restored")
    return chosen
