#!/usr/bin/env bash
# Install Debian's chromium for the browser tests when it is missing (Playwright's own browser
# download does not work on this network). Idempotent; needs root (or sudo).
#   scripts/browser.sh   -> prints the chromium executable path on its last line
set -euo pipefail

find_chromium() {
  command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || true
}

EXE=$(find_chromium)
if [ -z "$EXE" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "chromium not found; installing Debian's chromium package..." >&2
  # Update the package lists only when chromium is not known to apt yet.
  if ! apt-cache show chromium >/dev/null 2>&1; then
    $SUDO apt-get update -qq >&2
  fi
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2; then
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2
  fi
  EXE=$(find_chromium)
fi
if [ -z "$EXE" ]; then
  echo "chromium is still missing after 'apt-get install chromium'; install it by hand." >&2
  exit 1
fi
"$EXE" --version >&2 || true
echo "$EXE"
