#!/usr/bin/env bash
# Install the reference tools the tests compare against (CDO, NCO) and the HTTP load
# generator of the data-service benchmark (wrk) from Debian's packages, when they are
# missing. Needs root (or sudo).
set -euo pipefail
missing=()
command -v cdo >/dev/null 2>&1 || missing+=(cdo)
command -v ncra >/dev/null 2>&1 || missing+=(nco)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} from Debian's packages..." >&2
  "$(dirname "$0")/apt-install.sh" "${missing[@]}"
fi
cdo --version 2>&1 | head -n1 >&2
