#!/usr/bin/env bash
# Makes the base images that the Dockerfile and compose.yaml name, debian:bookworm-slim and
# postgres:15-bookworm, on a machine that cannot pull them from Docker Hub (an offline or
# firewalled build host). Wherever Docker Hub is reachable this script pulls them (or finds them
# already present) and builds nothing: real deployments use the official images.
#
#   debian:bookworm-slim  debootstrap (minbase) of Debian 12 from a Debian mirror, trimmed like the
#                         official slim image (no docs, man pages or locales), imported with `docker import`.
#   postgres:15-bookworm  docker/local-base/postgres: Debian's postgresql-15 with an entrypoint that honours
#                         the parts of the official image's contract compose.yaml uses.
#
# Both stand-ins carry the label org.lms-badge-bridge.stand-in=true; remove them with
# `docker image rm debian:bookworm-slim postgres:15-bookworm` before pulling the real ones.
#
# Needs root (debootstrap) and the `debootstrap` package. DEBIAN_MIRROR picks the mirror
# (default http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
STAND_IN_LABEL="org.lms-badge-bridge.stand-in=true"

have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
try_pull() { timeout 300 "$DOCKER" pull -q "$1" >/dev/null 2>&1; }
say() { echo "local-base-images: $*" >&2; }

LOG=$(mktemp /tmp/local-base-images.XXXXXX.log)
ROOTFS=""
cleanup() {
  rm -f "$LOG"
  [ -n "$ROOTFS" ] || return 0
  # debootstrap mounts /proc and /sys inside the target while it works; unmount whatever it left.
  umount -R "$ROOTFS/proc" "$ROOTFS/sys" 2>/dev/null || true
  rm -rf --one-file-system "$ROOTFS"
}

trap cleanup EXIT

make_debian_slim() {
  command -v debootstrap >/dev/null || { say "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
  [ "$(id -u)" = 0 ] || { say "debootstrap needs root"; exit 1; }
  local root
  root=$(mktemp -d /tmp/bookworm-slim.XXXXXX)
  ROOTFS=$root
  say "debootstrap $SUITE from $MIRROR (a few minutes)"
  debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$LOG" 2>&1 \
    || { tail -n 20 "$LOG" >&2; say "debootstrap failed"; exit 1; }

  # The official image's apt sources (deb822), with updates and security updates.
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  # As in the official slim image: packages installed later leave out docs, man pages and locales,
  # and apt keeps no package cache or translations.
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
SLIM
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CLEAN
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  find "$root/usr/share/doc" -mindepth 2 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/groff/* "$root"/usr/share/lintian/*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* "$root"/tmp/* \
    "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
  # Docker provides these at run time.
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"

  say "importing debian:bookworm-slim"
  tar --numeric-owner -C "$root" -c . | "$DOCKER" import \
    --change 'CMD ["bash"]' \
    --change "LABEL $STAND_IN_LABEL" \
    - debian:bookworm-slim >/dev/null
}

if have_image debian:bookworm-slim; then
  say "debian:bookworm-slim present"
elif try_pull debian:bookworm-slim; then
  say "debian:bookworm-slim pulled"
else
  say "debian:bookworm-slim cannot be pulled: making a local stand-in"
  make_debian_slim
fi

if have_image postgres:15-bookworm; then
  say "postgres:15-bookworm present"
elif try_pull postgres:15-bookworm; then
  say "postgres:15-bookworm pulled"
else
  say "postgres:15-bookworm cannot be pulled: building a local stand-in (docker/local-base/postgres)"
  "$DOCKER" build -t postgres:15-bookworm --label "$STAND_IN_LABEL" docker/local-base/postgres >"$LOG" 2>&1 \
    || { tail -n 20 "$LOG" >&2; say "building the PostgreSQL stand-in failed"; exit 1; }
fi
