#!/usr/bin/env bash
# Builds a local Python 3.11 base image from Debian bookworm packages (debootstrap, then
# `docker import`), for machines that reach a Debian mirror and PyPI but no image registry.
# The image stands in for python:3.11-slim: `python` and `pip` on PATH come from a venv in
# /opt/venv (bookworm's own pip refuses system-wide installs, PEP 668), `useradd` exists.
#
#   sudo docker/base_image.sh [TAG]        # default TAG: simsearch-base:py311-bookworm
#   docker compose build --build-arg BASE_IMAGE=simsearch-base:py311-bookworm
#
# Built once: an existing TAG is kept unless FORCE=1. Needs root (debootstrap, chroot), the
# packages docker.io and debootstrap, and a running Docker engine: all checked first, so a
# missing one fails in a second instead of after ~50 s of debootstrap.
set -euo pipefail

TAG="${1:-simsearch-base:py311-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm

command -v docker >/dev/null || { echo "missing: docker (apt-get install docker.io)" >&2; exit 1; }
if ! probe="$(docker info 2>&1 >/dev/null)"; then
  echo "the Docker engine does not answer (docker info: $(printf '%s' "$probe" | tail -n 1))" >&2
  echo "start it first (e.g. 'sudo systemctl start docker', or 'sudo dockerd &'), then run this again" >&2
  exit 1
fi
if [ "${FORCE:-0}" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG already exists (FORCE=1 rebuilds it)"
  exit 0
fi
for tool in debootstrap chroot; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install debootstrap)" >&2; exit 1; }
done
if [ "$(id -u)" != 0 ]; then
  echo "debootstrap and chroot need root: sudo $0 $TAG" >&2
  exit 1
fi

ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/simsearch-rootfs.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT

# minbase: essential + apt only; python3-venv brings ensurepip's bundled pip/setuptools wheels.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$SUITE" "$ROOTFS" "$MIRROR"
chroot "$ROOTFS" /usr/bin/python3 -m venv /opt/venv
chroot "$ROOTFS" /opt/venv/bin/python -m pip --version

# Package lists, caches, man pages and translations are not needed at run time.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
  "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* \
  "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/*.log \
  "$ROOTFS"/root/.cache
# The image resolves names through the container runtime's resolv.conf, not the build host's.
: > "$ROOTFS/etc/resolv.conf"

tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change 'ENV VIRTUAL_ENV=/opt/venv' \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python"]' \
  --message "debootstrap $SUITE minbase + python3 venv" \
  - "$TAG"
docker run --rm "$TAG" python -c 'import sys, ssl; print(sys.version)'
echo "built $TAG"
