#!/usr/bin/env bash
# Print (one per line) the `docker run` flags that let pd-test/server:bookworm run its own dockerd
# on this engine:
#   mapfile -t flags < <(tests/images/server-run-flags.sh)
#   docker run -d "${flags[@]}" -e SSH_AUTHORIZED_KEYS="$(cat key.pub)" -p 127.0.0.1::22 pd-test/server:bookworm
#
# `--privileged` is used where it works. On engines whose dockerd lacks a capability in its
# bounding set (here: CAP_SYS_RESOURCE), every `--privileged` (and every `--cap-add ALL`) container
# fails with "unable to apply caps: operation not permitted"; then the flags are: every capability
# but the missing ones, no seccomp/apparmor confinement, unmasked /proc, all device nodes allowed
# and /dev/fuse (the entrypoint remounts the cgroup v1 hierarchies read-write itself).
# PD_SERVER_FLAGS_PROBE_IMAGE: image used for the one-second probe (default pd-test/debian:bookworm).
set -euo pipefail

probe="${PD_SERVER_FLAGS_PROBE_IMAGE:-pd-test/debian:bookworm}"
if docker run --rm --privileged --entrypoint true "$probe" >/dev/null 2>&1; then
    echo --privileged
    exit 0
fi

# Capabilities missing from dockerd's bounding set.
pid="$(pgrep -xo dockerd || true)"
missing=()
if [[ -n "$pid" && -r /proc/$pid/status ]]; then
    bnd=$((16#$(awk '/^CapBnd/ {print $2}' "/proc/$pid/status")))
    last=$(cat /proc/sys/kernel/cap_last_cap)
    names=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
           LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
           SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
           SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
           MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
           CHECKPOINT_RESTORE)
    for ((i = 0; i <= last && i < ${#names[@]}; i++)); do
        (( (bnd >> i) & 1 )) || missing+=("${names[$i]}")
    done
else
    missing=(SYS_RESOURCE)   # what this project's CI machine lacks; dockerd runs elsewhere
fi

echo --cap-add=ALL
for c in "${missing[@]}"; do echo "--cap-drop=$c"; done
echo --security-opt=seccomp=unconfined
echo --security-opt=apparmor=unconfined
echo --security-opt=systempaths=unconfined
echo '--device-cgroup-rule=a *:* rwm'
[[ ! -e /dev/fuse ]] || echo --device=/dev/fuse
