# Redis restore, run by a one-off container on the database's volume while the database is
# stopped (sh -c, POSIX sh). Redis with appendonly=yes ignores dump.rdb at start-up, so:
# move the current AOF and RDB aside (to /data/.pre-restore-{UTC time}/, put back on any
# failure, kept after a success), put the backup in as dump.rdb,
# load it in a private redis-server (loopback only, AOF off), switch AOF on there so Redis
# rewrites the AOF from the loaded data, wait for the rewrite, shut it down, and hand the files
# to the volume's owner. The database container then starts on the restored AOF.
set -eu
owner=$(stat -c %u:%g /data)
aside="/data/.pre-restore-$(date -u +%Y%m%d_%H%M%S)"
mkdir -p "$aside"
pid=""
done_ok=0
# On any failure the database's own files go back where they were, so it starts on its data.
put_back() {
    if [ "$done_ok" = 1 ]; then return; fi
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf /data/appendonlydir /data/appendonly.aof /data/dump.rdb
    for f in "$aside"/* ; do if [ -e "$f" ]; then mv "$f" /data/; fi; done
    rmdir "$aside" 2>/dev/null || true
    chown -R "$owner" /data
    echo "restore: FAILED; the database's previous files were put back" >&2
}
trap put_back EXIT
for f in /data/appendonlydir /data/appendonly.aof /data/dump.rdb; do
    if [ -e "$f" ]; then mv "$f" "$aside/"; fi
done
cp "/backups/$BACKUP_FILE" /data/dump.rdb
cli() { redis-cli -h 127.0.0.1 -p 6399 "$@" | tr -d '\r'; }
redis-server --port 6399 --bind 127.0.0.1 --dir /data --appendonly no --save "" --daemonize no &
pid=$!
i=0
until [ "$(cli PING 2>/dev/null)" = "PONG" ]; do
    i=$((i + 1)); [ "$i" -le 1200 ] || { echo "restore: FAILED: Redis did not load the snapshot" >&2; exit 3; }
    kill -0 "$pid" 2>/dev/null || { echo "restore: FAILED: redis-server could not load the snapshot" >&2; exit 3; }
    sleep 0.25
done
echo "restore: snapshot loaded ($(cli DBSIZE) keys); rewriting the append-only file"
cli CONFIG SET appendonly yes > /dev/null
i=0
while :; do
    info=$(cli INFO persistence)
    if echo "$info" | grep -q '^aof_rewrite_in_progress:0' && echo "$info" | grep -q '^aof_rewrite_scheduled:0' \
        && echo "$info" | grep -q '^aof_enabled:1' && [ -d /data/appendonlydir ]; then
        break
    fi
    i=$((i + 1)); [ "$i" -le 2400 ] || { echo "restore: FAILED: the AOF rewrite did not finish" >&2; exit 3; }
    sleep 0.25
done
echo "$info" | grep -q '^aof_last_bgrewrite_status:ok' || { echo "restore: FAILED: the AOF rewrite failed" >&2; exit 3; }
cli SHUTDOWN > /dev/null 2>&1 || true
wait "$pid" || true
pid=""
chown -R "$owner" /data
done_ok=1
echo "restore: done (the previous files are kept in $aside)"
