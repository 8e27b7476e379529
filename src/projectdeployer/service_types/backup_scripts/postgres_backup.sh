# PostgreSQL backup, run by the backup container beside the database (sh -c, POSIX sh).
# Writes /backups/{service}_{YYYYmmdd_HHMMSS}.dump (pg_dump custom format), verifies it with
# pg_restore --list, writes its sha256 next to it, then removes backups older than the
# retention. The password comes from $PGPASSFILE (a private file), never argv or environment.
# A dump that fails verification is deleted and the run exits non-zero: it never becomes a
# backup anyone could restore.
set -eu
umask 077
ts=$(date -u +%Y%m%d_%H%M%S)
# Two runs within one second: the second waits for its own timestamp.
while [ -e "/backups/${PD_SERVICE}_${ts}.dump" ]; do sleep 1; ts=$(date -u +%Y%m%d_%H%M%S); done
name="${PD_SERVICE}_${ts}.dump"
tmp="/backups/.${name}.partial"
trap 'rm -f "$tmp"' EXIT
echo "backup: pg_dump of database $PGDATABASE on $PGHOST:$PGPORT to $name"
pg_dump --format=custom --no-password --file="$tmp"
if ! pg_restore --list "$tmp" > /dev/null; then
    echo "backup: FAILED verification: pg_restore cannot read the dump; it was deleted" >&2
    exit 3
fi
sum=$(sha256sum "$tmp" | cut -d' ' -f1)
# The checksum first: a dump without one is never offered for a restore.
printf '%s  %s\n' "$sum" "$name" > "/backups/${name}.sha256"
mv "$tmp" "/backups/${name}"
echo "backup: $name verified ($(wc -c < "/backups/${name}") bytes, sha256 $sum)"
# Retention: whole days, by modification time; never the dump just written.
find /backups -maxdepth 1 -type f -name "${PD_SERVICE}_*.dump" -mmin "+$((RETENTION_DAYS * 1440))" ! -name "$name" | while read -r old; do
    rm -f "$old" "$old.sha256"
    echo "backup: removed $(basename "$old") (older than $RETENTION_DAYS days)"
done
