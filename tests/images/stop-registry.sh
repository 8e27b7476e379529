#!/usr/bin/env bash
# Stop the registry started by start-registry.sh (same PD_REGISTRY_PORT / PD_REGISTRY_STATE)
# and delete its storage. PD_REGISTRY_KEEP=1 keeps the state directory.
set -euo pipefail

PORT="${PD_REGISTRY_PORT:-5000}"
STATE="${PD_REGISTRY_STATE:-${TMPDIR:-/tmp}/pd-registry-$PORT}"
PIDFILE="$STATE/registry.pid"

if [[ -f "$PIDFILE" ]]; then
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null && grep -q docker-registry "/proc/$pid/cmdline" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
fi
[[ -n "${PD_REGISTRY_KEEP:-}" ]] || rm -rf "$STATE"
