# PostgreSQL restore, run by a one-off container beside the database (sh -c, POSIX sh).
# Restores /backups/$BACKUP_FILE into a side database first; only when that succeeded, drops
# the live database and renames the side one in its place. A restore that fails therefore
# changes nothing, and the outage is the drop + rename, printed as "restore: swap_seconds=N".
set -eu
file="/backups/$BACKUP_FILE"
side="${PGDATABASE}_pd_restore"
sql() { psql -X -q -v ON_ERROR_STOP=1 --no-password -d postgres -c "$1"; }
pg_restore --list "$file" > /dev/null
sql "DROP DATABASE IF EXISTS \"$side\" WITH (FORCE)"
sql "CREATE DATABASE \"$side\" OWNER \"$PGUSER\""
echo "restore: loading $BACKUP_FILE into the side database $side"
if ! pg_restore --exit-on-error --no-owner --no-password --dbname="$side" "$file"; then
    sql "DROP DATABASE IF EXISTS \"$side\""
    echo "restore: FAILED: pg_restore stopped; database $PGDATABASE was not touched" >&2
    exit 3
fi
echo "restore: swapping $side in as $PGDATABASE"
t0=$(date +%s.%N)
sql "DROP DATABASE IF EXISTS \"$PGDATABASE\" WITH (FORCE)"
sql "ALTER DATABASE \"$side\" RENAME TO \"$PGDATABASE\""
t1=$(date +%s.%N)
echo "restore: swap_seconds=$(echo "$t1 $t0" | awk '{printf "%.3f", $1 - $2}')"
