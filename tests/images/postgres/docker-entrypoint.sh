#!/usr/bin/env bash
# pd-test/postgres:15 entrypoint: the essentials of the official postgres image's
# docker-entrypoint.sh, for Debian's postgresql-15.
set -Eeuo pipefail

# file_env VAR [DEFAULT]: VAR from $VAR or from the file named by $VAR_FILE (exclusive).
file_env() {
    local var="$1" file_var="${1}_FILE" def="${2:-}" val
    if [ "${!var:-}" ] && [ "${!file_var:-}" ]; then
        echo >&2 "error: both $var and $file_var are set (but are exclusive)"
        exit 1
    fi
    val="$def"
    if [ "${!var:-}" ]; then
        val="${!var}"
    elif [ "${!file_var:-}" ]; then
        val="$(< "${!file_var}")"
    fi
    export "$var"="$val"
    unset "$file_var"
}

psql_init() {
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

run_initdb_d() {
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)
                # shellcheck disable=SC1090
                if [ -x "$f" ]; then echo "$0: running $f"; "$f"
                else echo "$0: sourcing $f"; . "$f"; fi ;;
            *.sql)     echo "$0: running $f"; psql_init --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sql.gz)  echo "$0: running $f"; gunzip -c "$f" | psql_init --dbname "$POSTGRES_DB" ;;
            *.sql.xz)  echo "$0: running $f"; xzcat "$f" | psql_init --dbname "$POSTGRES_DB" ;;
            *)         [ -e "$f" ] && echo "$0: ignoring $f" || true ;;
        esac
    done
}

init_cluster() {
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"

    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        cat >&2 <<'EOM'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty value
       for the superuser, or use POSTGRES_HOST_AUTH_METHOD=trust to allow all connections
       without a password (not recommended).
EOM
        exit 1
    fi

    # The password goes through a pipe (never argv); the process substitution must be on the
    # initdb command line itself (it is closed once the command that created it finishes).
    if [ -n "$POSTGRES_PASSWORD" ]; then
        # shellcheck disable=SC2086
        initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
    else
        # shellcheck disable=SC2086
        initdb --username="$POSTGRES_USER" $POSTGRES_INITDB_ARGS
    fi

    {
        echo
        echo "# added by pd-test/postgres entrypoint"
        echo "listen_addresses = '*'"
    } >> "$PGDATA/postgresql.conf"
    {
        echo
        echo "# added by pd-test/postgres entrypoint"
        echo "host all all all $POSTGRES_HOST_AUTH_METHOD"
    } >> "$PGDATA/pg_hba.conf"

    # Temporary server on the unix socket only, for POSTGRES_DB and init scripts.
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
    if [ "$POSTGRES_DB" != postgres ]; then
        psql_init --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db" ;'
    fi
    run_initdb_d
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo
    echo "PostgreSQL init process complete; ready for start up."
    echo
}

# `docker run image -c foo=bar` -> postgres -c foo=bar
if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi

if [ "$1" = postgres ]; then
    export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
    if [ "$(id -u)" = 0 ]; then
        mkdir -p "$PGDATA" /var/run/postgresql
        chmod 0700 "$PGDATA" || :
        find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
        chown postgres:postgres /var/run/postgresql
        chmod 3777 /var/run/postgresql
        exec gosu postgres "${BASH_SOURCE[0]}" "$@"
    fi
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        init_cluster
    else
        echo "PostgreSQL Database directory appears to contain a database; skipping initialization"
    fi
    unset POSTGRES_PASSWORD
fi

exec "$@"
