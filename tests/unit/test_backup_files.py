"""Backup files, their verification and the choice of "latest", on real files (no Docker)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from projectdeployer.backups.store import Backup, choose_backup, parse_backup_name, read_backups
from projectdeployer.core.backups import BackupError
from projectdeployer.core.model import BackupConfig
from projectdeployer.core.servicetype import backup_policy
from projectdeployer.plugins import get_registry
from projectdeployer.providers.local import LocalServer

pytestmark = pytest.mark.unit


def _write(directory: Path, name: str, data: bytes, *, checksum: str | None = "right") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
    if checksum == "right":
        (directory / f"{name}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    elif checksum is not None:
        (directory / f"{name}.sha256").write_text(f"{checksum}  {name}\n")


def test_backup_names_carry_a_utc_timestamp() -> None:
    assert parse_backup_name("db", "dump", "db_20250120_020000.dump") == "20250120_020000"
    assert parse_backup_name("db", "dump", "db_20250120_020000.dump.sha256") is None
    assert parse_backup_name("db", "dump", "db_2025012_020000.dump") is None  # not a time
    assert parse_backup_name("db", "dump", "db_replica_20250120_020000.dump") is None  # another service
    assert parse_backup_name("db", "dump", ".db_20250120_020000.dump.partial") is None


def test_listing_checks_every_file_against_its_checksum(tmp_path: Path) -> None:
    d = tmp_path / "backups" / "db"
    _write(d, "db_20250101_020000.dump", b"one")
    _write(d, "db_20250102_020000.dump", b"two", checksum="0" * 64)  # changed after it was verified
    _write(d, "db_20250103_020000.dump", b"three", checksum=None)  # the run never verified it
    _write(d, "db_20250104_020000.dump", b"four")
    _write(d, "other_20250105_020000.dump", b"x")
    (d / ".db_20250105_020000.dump.partial").write_bytes(b"half")
    found = read_backups(LocalServer(), str(d), "db", "dump")
    assert [(b.timestamp, b.status, b.size_bytes) for b in found] == [
        ("20250101_020000", "verified", 3),
        ("20250102_020000", "corrupt", 3),
        ("20250103_020000", "unverified", 5),
        ("20250104_020000", "verified", 4),
    ]
    assert read_backups(LocalServer(), str(tmp_path / "missing"), "db", "dump") == []


def test_latest_is_the_newest_verified_backup_and_a_bad_one_is_refused_by_name() -> None:
    def b(stamp: str, status: str) -> Backup:
        return Backup(service="db", timestamp=stamp, file=f"db_{stamp}.dump", size_bytes=1, status=status, server="local")

    backups = [b("20250101_020000", "verified"), b("20250102_020000", "verified"), b("20250103_020000", "corrupt"), b("20250104_020000", "unverified")]
    assert choose_backup(backups, "latest").timestamp == "20250102_020000"
    assert choose_backup(backups, "20250101_020000").timestamp == "20250101_020000"
    with pytest.raises(BackupError, match="is corrupt"):
        choose_backup(backups, "20250103_020000")
    with pytest.raises(BackupError, match="no backup taken at '20250109_020000'"):
        choose_backup(backups, "20250109_020000")
    with pytest.raises(BackupError, match="none of the 1 backup"):
        choose_backup([b("20250103_020000", "corrupt")], "latest")
    with pytest.raises(BackupError, match="no backups"):
        choose_backup([], "latest")


def test_the_listing_has_the_seed_fields() -> None:
    stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(time.time() - 7200))
    row = Backup(service="db", timestamp=stamp, file=f"db_{stamp}.dump", size_bytes=2_500_000, status="verified", server="local").as_dict()
    assert row["size_mb"] == 2.5 and 1.99 < row["age_hours"] < 2.01 and row["timestamp"] == stamp


def test_policy_is_the_seed_default_unless_backup_config_says_otherwise() -> None:
    from projectdeployer.core.model import GenericSpec
    from projectdeployer.service_types.postgres import PostgresSpec
    from projectdeployer.service_types.redis import RedisSpec

    types = get_registry().service_types
    assert backup_policy(PostgresSpec(name="db", type="postgres"), types["postgres"]).schedule == "0 2 * * *"
    assert backup_policy(RedisSpec(name="r", type="redis"), types["redis"]).schedule == "0 3 * * *"
    custom = backup_policy(PostgresSpec(name="db", type="postgres", backup_config=BackupConfig(schedule="0 */6 * * *", retention_days=14)), types["postgres"])
    assert (custom.schedule, custom.retention_days, custom.enabled) == ("0 */6 * * *", 14, True)
    only_days = backup_policy(PostgresSpec(name="db", type="postgres", backup_config=BackupConfig(retention_days=30)), types["postgres"])
    assert (only_days.schedule, only_days.retention_days) == ("0 2 * * *", 30)
    assert backup_policy(GenericSpec(name="web", type="generic"), types["generic"]) is None
