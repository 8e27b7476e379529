#!/usr/bin/env bash
# Start Debian's docker-registry (distribution 2.8) in the background, no auth, throwaway storage.
#
#   tests/images/start-registry.sh            -> prints 127.0.0.1:5000 once /v2/ answers
#   PD_REGISTRY_PORT=5001 start-registry.sh   another port (one registry per port)
#   PD_REGISTRY_HOST=172.17.0.1 ...           listen elsewhere (the engine only treats
#                                             127.0.0.0/8 as insecure-allowed by default)
# State (config, pidfile, log, storage) lives in ${PD_REGISTRY_STATE:-/tmp/pd-registry-<port>};
# stop-registry.sh stops it and deletes that directory. Starting twice is a no-op.
set -euo pipefail

PORT="${PD_REGISTRY_PORT:-5000}"
HOST="${PD_REGISTRY_HOST:-127.0.0.1}"
STATE="${PD_REGISTRY_STATE:-${TMPDIR:-/tmp}/pd-registry-$PORT}"
PIDFILE="$STATE/registry.pid"
URL="http://$HOST:$PORT/v2/"

answers() { curl -fsS -o /dev/null --max-time 2 "$URL" 2>/dev/null; }

if ! command -v docker-registry >/dev/null 2>&1; then
    echo "start-registry: installing docker-registry (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq docker-registry || { apt-get update -qq && apt-get install -y -qq docker-registry; }; } >/dev/null 2>&1 \
        || { echo "start-registry: cannot install docker-registry" >&2; exit 1; }
fi

if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && answers; then
    echo "$HOST:$PORT"
    exit 0
fi
if answers; then
    echo "start-registry: something else already answers on $URL" >&2
    exit 1
fi

rm -rf "$STATE"
mkdir -p "$STATE/storage"
cat > "$STATE/config.yml" <<EOC
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STATE/storage
  delete:
    enabled: true
http:
  addr: $HOST:$PORT
  headers:
    X-Content-Type-Options: [nosniff]
EOC

setsid docker-registry serve "$STATE/config.yml" </dev/null >"$STATE/registry.log" 2>&1 &
echo $! > "$PIDFILE"

for _ in $(seq 100); do
    if answers; then
        echo "$HOST:$PORT"
        exit 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        echo "start-registry: docker-registry exited:" >&2
        tail -20 "$STATE/registry.log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "start-registry: $URL did not answer within 10 s (log: $STATE/registry.log)" >&2
kill "$(cat "$PIDFILE")" 2>/dev/null || true
exit 1
