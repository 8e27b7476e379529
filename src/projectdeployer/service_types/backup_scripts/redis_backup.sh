# Redis backup, run by the backup container beside the database (sh -c, POSIX sh).
# Asks the server for a fresh RDB snapshot (BGSAVE), waits for it, copies dump.rdb from the
# database's volume (mounted read-only at /data) to /backups/{service}_{YYYYmmdd_HHMMSS}.rdb,
# checks the copy with redis-check-rdb, writes its sha256, then applies the retention.
# The password is read from a private file and reaches redis-cli on its standard input
# (printf is a shell builtin), never in argv or the environment.
set -eu
umask 077
ask() {
    # One command after AUTH; prints the command's answer (the last line).
    { printf 'AUTH %s\n' "$(cat /run/secrets/pd/password)"; printf '%s\n' "$1"; } \
        | redis-cli --no-auth-warning -h "$REDIS_HOST" -p "$REDIS_PORT" | tail -n 1
}
ts=$(date -u +%Y%m%d_%H%M%S)
# Two runs within one second: the second waits for its own timestamp.
while [ -e "/backups/${PD_SERVICE}_${ts}.rdb" ]; do sleep 1; ts=$(date -u +%Y%m%d_%H%M%S); done
name="${PD_SERVICE}_${ts}.rdb"
tmp="/backups/.${name}.partial"
trap 'rm -f "$tmp"' EXIT
before=$(ask LASTSAVE)
case "$before" in ''|*[!0-9]*) echo "backup: FAILED: Redis did not answer LASTSAVE ($before)" >&2; exit 2 ;; esac
# LASTSAVE counts seconds: start in a later second than the last save, so a snapshot that
# finishes within the same second is still seen as new.
sleep 1
answer=$(ask BGSAVE)
case "$answer" in
    *started*|*"in progress"*|*scheduled*) echo "backup: BGSAVE on $REDIS_HOST:$REDIS_PORT: $answer" ;;
    *) echo "backup: FAILED: Redis refused BGSAVE: $answer" >&2; exit 2 ;;
esac
waited=0
while [ "$(ask LASTSAVE)" = "$before" ]; do
    waited=$((waited + 1))
    if [ "$waited" -gt 600 ]; then echo "backup: FAILED: no new snapshot after 300s" >&2; exit 2; fi
    sleep 0.5
done
status=$({ printf 'AUTH %s\n' "$(cat /run/secrets/pd/password)"; printf 'INFO persistence\n'; } \
    | redis-cli --no-auth-warning -h "$REDIS_HOST" -p "$REDIS_PORT" | tr -d '\r' | sed -n 's/^rdb_last_bgsave_status://p')
if [ "$status" != "ok" ]; then echo "backup: FAILED: Redis says the snapshot failed (rdb_last_bgsave_status=$status)" >&2; exit 2; fi
cp /data/dump.rdb "$tmp"
if ! redis-check-rdb "$tmp" > /dev/null 2>&1; then
    echo "backup: FAILED verification: redis-check-rdb rejects the snapshot; it was deleted" >&2
    exit 3
fi
sum=$(sha256sum "$tmp" | cut -d' ' -f1)
printf '%s  %s\n' "$sum" "$name" > "/backups/${name}.sha256"
mv "$tmp" "/backups/${name}"
echo "backup: $name verified ($(wc -c < "/backups/${name}") bytes, sha256 $sum)"
find /backups -maxdepth 1 -type f -name "${PD_SERVICE}_*.rdb" -mmin "+$((RETENTION_DAYS * 1440))" ! -name "$name" | while read -r old; do
    rm -f "$old" "$old.sha256"
    echo "backup: removed $(basename "$old") (older than $RETENTION_DAYS days)"
done
