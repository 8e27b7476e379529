#!/usr/bin/env bash
# pd-test/server entrypoint: start sshd and dockerd (sshd alone where Docker is not installed),
# then either wait (no arguments) or run the given command once dockerd answers and exit with its
# status.
#
# Environment:
#   SSH_AUTHORIZED_KEYS     public key line(s) added to /root/.ssh/authorized_keys
#   DOCKERD_STORAGE_DRIVER  force a storage driver (default: dockerd picks; overlay2 on the volume)
#   DOCKERD_MTU             MTU for inner networks (default: MTU of eth0, so nesting works)
#   DOCKERD_ARGS            extra dockerd arguments (word-split)
#   DOCKERD_WAIT            seconds to wait for dockerd (default 60)
set -euo pipefail

log() { echo "pd-server: $*" >&2; }

# PID 1 ignores signals it has no handler for: install the handler before anything else.
pids=()
# shellcheck disable=SC2329  # invoked by the trap
terminate() {
    trap - TERM INT
    log "stopping"
    [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    exit 0
}
trap terminate TERM INT
# /run is not a tmpfs here: a marker from before a `docker restart` must not count.
rm -f /run/pd-server-ready

if [ -n "${SSH_AUTHORIZED_KEYS:-}" ]; then
    printf '%s\n' "$SSH_AUTHORIZED_KEYS" >> /root/.ssh/authorized_keys
fi
[ ! -f /root/.ssh/authorized_keys ] || chmod 0600 /root/.ssh/authorized_keys
ssh-keygen -A >/dev/null
mkdir -p /run/sshd

# Without --privileged (see README: on hosts whose dockerd lacks CAP_SYS_RESOURCE, --privileged
# cannot start any container) the cgroup v1 hierarchies are mounted read-only; the inner dockerd
# needs them writable. With CAP_SYS_ADMIN and apparmor unconfined a bind remount makes them rw.
while read -r _ _ _ _ mnt opts _; do
    case "$mnt" in /sys/fs/cgroup|/sys/fs/cgroup/*) ;; *) continue ;; esac
    case ",$opts," in *,ro,*) ;; *) continue ;; esac
    mount -o remount,rw "$mnt" 2>/dev/null || mount -o remount,bind,rw "$mnt" 2>/dev/null \
        || log "warning: cannot make $mnt writable (inner containers may fail to start)"
done < /proc/self/mountinfo

mtu="${DOCKERD_MTU:-$(cat /sys/class/net/eth0/mtu 2>/dev/null || echo 1500)}"
args=(--host=unix:///var/run/docker.sock --mtu="$mtu")
[ -z "${DOCKERD_STORAGE_DRIVER:-}" ] || args+=(--storage-driver="$DOCKERD_STORAGE_DRIVER")
# shellcheck disable=SC2206
[ -z "${DOCKERD_ARGS:-}" ] || args+=($DOCKERD_ARGS)

# A stale pid file from a previous start of this container stops dockerd from starting.
rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid

if ! command -v dockerd >/dev/null 2>&1; then
    # A bare server (pd-test/bare-server): sshd only, as a fresh machine is before anyone
    # installs Docker on it. An engine installed later is started by its init script.
    /usr/sbin/sshd -D -e 2>>/var/log/sshd.log &
    pids+=($!)
    log "ready (no Docker engine installed)"
    touch /run/pd-server-ready
    wait "${pids[0]}"
    exit 0
fi

dockerd "${args[@]}" >>/var/log/dockerd.log 2>&1 &
pids+=($!)
/usr/sbin/sshd -D -e 2>>/var/log/sshd.log &
pids+=($!)

for _ in $(seq $((${DOCKERD_WAIT:-60} * 4))); do
    docker info >/dev/null 2>&1 && break
    if ! kill -0 "${pids[0]}" 2>/dev/null; then
        log "dockerd exited; last log lines:"; tail -20 /var/log/dockerd.log >&2; exit 1
    fi
    sleep 0.25
done
if ! docker info >/dev/null 2>&1; then
    log "dockerd did not answer; last log lines:"; tail -20 /var/log/dockerd.log >&2; exit 1
fi
log "ready (storage driver: $(docker info -f '{{.Driver}}'), mtu $mtu)"
touch /run/pd-server-ready

if [ $# -gt 0 ]; then
    set +e
    "$@"
    rc=$?
    kill -TERM "${pids[@]}" 2>/dev/null; wait 2>/dev/null
    exit $rc
fi

# Exit (and let the restart policy or the caller see it) if either daemon dies.
set +e
wait -n "${pids[@]}"
rc=$?
log "a daemon exited (status $rc); stopping"
kill -TERM "${pids[@]}" 2>/dev/null; wait 2>/dev/null
exit $rc
