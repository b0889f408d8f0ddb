#!/usr/bin/env bash
# Install Debian packages (as root, or through sudo), quietly, with fresh package lists:
# the one place the set-up scripts install what they find missing. Usage: apt-install.sh PKG...
set -euo pipefail
[ "$#" -gt 0 ] || exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >&2
