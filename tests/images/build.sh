#!/usr/bin/env bash
# shellcheck disable=SC2016  # the mmdebstrap hooks below expand "$1" (the chroot) when they run
# Build the offline image bed: pd-test/* base images made from Debian packages.
#
#   tests/images/build.sh                    build (or verify) every image
#   PD_BED_ONLY="python nginx" build.sh      build a subset
#   PD_BED_FORCE=1 build.sh                  rebuild even if the hash matches
#   PD_BED_KEEP_TARS=1 build.sh              keep rootfs tarballs in .cache/
#   PD_BED_HOST_CA=0 build.sh                do not add the host's extra CAs (see below)
#
# Host CAs: HTTPS from containers on this kind of machine goes through a TLS-intercepting
# egress proxy, so pip/curl inside containers need the host's extra CA certificates
# (/usr/local/share/ca-certificates/*.crt). By default (PD_BED_HOST_CA=auto) they are copied
# into every rootfs (/usr/local/share/ca-certificates/pd-host/) and update-ca-certificates is run.
# They are public certificates, not secrets. See README.md.
#
# Each image is two steps, each cached by a content hash stored as a label:
#   1. rootfs:  mmdebstrap --include=<packages> | docker import  -> pd-test/rootfs:<name>
#               label pd.bed.rootfs-hash = sha256(script version, mmdebstrap options, packages)
#   2. image:   docker build <name>/ --build-arg BASE=pd-test/rootfs:<name> -> pd-test/<name>:<tag>
#               label pd.bed.hash = sha256(rootfs hash, every file in <name>/)
# A step whose label already matches is skipped, so a second run takes seconds.
# Only the Debian mirror is needed (no registry, no network inside containers).
set -euo pipefail

BED_VERSION=1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PD_BED_CACHE:-$HERE/.cache}"
SUITE=bookworm
MIRROR="${PD_BED_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${PD_BED_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

# name | final tag | packages (comma separated, passed to mmdebstrap --include)
IMAGES=(
  "debian|pd-test/debian:bookworm|ca-certificates"
  "python|pd-test/python:3.11|ca-certificates,python3,python3-venv,python3-pip"
  "node|pd-test/node:18|ca-certificates,nodejs,npm"
  "nginx|pd-test/nginx:1.22|ca-certificates,nginx-light,libnginx-mod-stream,gettext-base"
  "postgres|pd-test/postgres:15|ca-certificates,postgresql-15,postgresql-client-15,gosu"
  "redis|pd-test/redis:7|ca-certificates,redis-server,redis-tools,gosu"
  "server|pd-test/server:bookworm|ca-certificates,openssh-server,docker.io,iptables,fuse-overlayfs,procps,curl"
)

# Keep the trees small: no docs, man pages, info, locales (copyright files stay).
MMDEBSTRAP_OPTS=(
  --variant=apt
  # merged /usr set up directly + usr-is-merged; otherwise apt satisfies init-system-helpers
  # with usrmerge, which drags in perl (~60 MB)
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  --dpkgopt='path-exclude=/usr/share/linda/*'
  # Same policy as the official images: daemons are never started at install time.
  --essential-hook='printf "#!/bin/sh\nexit 101\n" > "$1/usr/sbin/policy-rc.d"; chmod 0755 "$1/usr/sbin/policy-rc.d"'
  # postgresql-common: do not create a "main" cluster at install time (the entrypoint runs initdb).
  --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d"; echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/pd-no-main.conf"'
  --customize-hook='rm -f "$1/usr/sbin/policy-rc.d"'
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/var/log/apt/* "$1"/tmp/*'
  # The apt sources inside the image (apt works in a container if the mirror is reachable).
  --customize-hook='printf "deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n" "'"$MIRROR"'" '"$SUITE"' "'"$MIRROR"'" '"$SUITE"' "'"$SECURITY_MIRROR"'" '"$SUITE"' > "$1/etc/apt/sources.list"'
)

HOST_CA_DIR="${PD_BED_HOST_CA_DIR:-/usr/local/share/ca-certificates}"
HOST_CAS=()
if [[ "${PD_BED_HOST_CA:-auto}" != 0 ]]; then
  shopt -s nullglob; HOST_CAS=("$HOST_CA_DIR"/*.crt); shopt -u nullglob
  if [[ "${PD_BED_HOST_CA:-auto}" == 1 && ${#HOST_CAS[@]} -eq 0 ]]; then
    echo "PD_BED_HOST_CA=1 but no $HOST_CA_DIR/*.crt" >&2; exit 1
  fi
fi
if [[ ${#HOST_CAS[@]} -gt 0 ]]; then
  MMDEBSTRAP_OPTS+=(
    --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates/pd-host"'
    --customize-hook="cp ${HOST_CAS[*]} \"\$1/usr/local/share/ca-certificates/pd-host/\""
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null'
  )
fi

log() { printf '[bed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

sha() { sha256sum | cut -c1-16; }

label_of() { # image label -> value ("" if image or label missing)
  docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null | sed 's/^<no value>$//' || true
}

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

drop_if_dangling() { # remove a replaced image if nothing tags it any more (ignore if in use)
  [[ -n "$1" ]] || return 0
  [[ -z "$(docker image inspect -f '{{join .RepoTags ""}}' "$1" 2>/dev/null)" ]] || return 0
  docker rmi "$1" >/dev/null 2>&1 || true
}

ensure_mmdebstrap() {
  command -v mmdebstrap >/dev/null && return
  log "installing mmdebstrap (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap; } >/dev/null \
    || die "cannot install mmdebstrap; run: apt-get update && apt-get install -y mmdebstrap"
}

build_rootfs() { # name packages -> echoes rootfs tag
  local name=$1 pkgs=$2 tag="pd-test/rootfs:$1" hash
  hash=$( { echo "v$BED_VERSION $SUITE $MIRROR $SECURITY_MIRROR"; printf '%s\n' "${MMDEBSTRAP_OPTS[@]}"; echo "$pkgs"; [[ ${#HOST_CAS[@]} -eq 0 ]] || cat "${HOST_CAS[@]}"; } | sha)
  if [[ -z "${PD_BED_FORCE:-}" && "$(label_of "$tag" pd.bed.rootfs-hash)" == "$hash" ]]; then
    log "$name: rootfs cached ($tag, $hash)"
    echo "$tag"; return
  fi
  ensure_mmdebstrap
  mkdir -p "$CACHE"
  local tar="$CACHE/$name-$hash.tar" t0=$SECONDS old
  old=$(image_id "$tag")
  log "$name: mmdebstrap --include=$pkgs"
  mmdebstrap "${MMDEBSTRAP_OPTS[@]}" --include="$pkgs" "$SUITE" "$tar" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" \
    >"$CACHE/$name.mmdebstrap.log" 2>&1 || { tail -30 "$CACHE/$name.mmdebstrap.log" >&2; die "$name: mmdebstrap failed (log: $CACHE/$name.mmdebstrap.log)"; }
  log "$name: rootfs $(du -m "$tar" | cut -f1) MB in $((SECONDS - t0)) s; docker import"
  docker import \
    --change "LABEL pd.bed.rootfs-hash=$hash" \
    --change "LABEL pd.bed.packages=$pkgs" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    --message "pd-test rootfs $name ($SUITE: $pkgs)" \
    "$tar" "$tag" >/dev/null
  drop_if_dangling "$old"
  [[ -n "${PD_BED_KEEP_TARS:-}" ]] || rm -f "$tar"
  echo "$tag"
}

build_image() { # name tag pkgs
  local name=$1 tag=$2 pkgs=$3 ctx="$HERE/$1" t0=$SECONDS rootfs rhash hash
  [[ -f "$ctx/Dockerfile" ]] || die "$name: no $ctx/Dockerfile"
  rootfs=$(build_rootfs "$name" "$pkgs")
  rhash=$(label_of "$rootfs" pd.bed.rootfs-hash)
  hash=$( { echo "v$BED_VERSION $rhash"; cd "$ctx" && find . -type f | LC_ALL=C sort | xargs sha256sum; } | sha)
  if [[ -z "${PD_BED_FORCE:-}" && "$(label_of "$tag" pd.bed.hash)" == "$hash" ]]; then
    log "$name: $tag up to date (pd.bed.hash=$hash) [$((SECONDS - t0)) s]"
    return
  fi
  log "$name: docker build $tag"
  local old; old=$(image_id "$tag")
  docker build -q --pull=false --build-arg "BASE=$rootfs" \
    --label "pd.bed.hash=$hash" --label "pd.bed.name=$name" \
    -t "$tag" "$ctx" >"$CACHE/$name.build.log" 2>&1 \
    || { tail -40 "$CACHE/$name.build.log" >&2; die "$name: docker build failed (log: $CACHE/$name.build.log)"; }
  drop_if_dangling "$old"
  log "$name: built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1e6}')) in $((SECONDS - t0)) s"
}

main() {
  command -v docker >/dev/null || die "docker CLI not found"
  docker info >/dev/null 2>&1 || die "Docker engine not reachable"
  mkdir -p "$CACHE"
  # One build at a time per machine (parallel test sessions share the images).
  exec 9>"$CACHE/.lock"
  if ! flock -n 9; then
    log "another build.sh is running; waiting for it"
    flock 9
  fi
  local only=" ${PD_BED_ONLY:-} " t0=$SECONDS entry name tag pkgs built=0
  for entry in "${IMAGES[@]}"; do
    IFS='|' read -r name tag pkgs <<<"$entry"
    [[ -z "${PD_BED_ONLY:-}" || "$only" == *" $name "* ]] || continue
    build_image "$name" "$tag" "$pkgs"
    built=$((built + 1))
  done
  [[ $built -gt 0 ]] || die "PD_BED_ONLY='${PD_BED_ONLY:-}' matched no image (known: debian python node nginx postgres redis server)"
  log "done: $built image(s) in $((SECONDS - t0)) s"
}

main "$@"
