#!/bin/sh
# The essentials of the official redis image's docker-entrypoint.sh.
set -e

# first arg is `-f` or `--some-option`, or a .conf file
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

# run as the redis user, owning the data directory
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec gosu redis "$0" "$@"
fi

# umask 0077 for the data files unless one was set
if [ "$(umask)" = 0022 ]; then
    umask 0077
fi

if [ "$1" = redis-server ]; then
    config=
    protected=1
    if [ -f "${2:-}" ]; then
        config="$2"
        if grep -q '^protected-mode' "$config"; then protected=; fi
    fi
    if [ "$protected" ]; then
        shift
        [ -z "$config" ] || shift
        # no config: bind all interfaces (0.0.0.0 and ::), protected mode off
        if [ -z "$config" ]; then
            set -- --bind 0.0.0.0 '-::*' --protected-mode no "$@"
        else
            set -- --protected-mode no "$@"
        fi
        [ -z "$config" ] || set -- "$config" "$@"
        set -- redis-server "$@"
    fi
fi

exec "$@"
