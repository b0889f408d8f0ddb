#!/usr/bin/env bash
# What building insitu's one compiled module (src/insitu/formats/netcdf/_shuffle.c) needs: a C
# compiler and the headers of the Python that builds it. Installs Debian's gcc and Python
# headers when they are missing (needs root or sudo). Usage: scripts/compiler.sh PYTHON
set -euo pipefail
PY=${1:-python3}
missing=()
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
if ! "$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  missing+=("libpython${ver}-dev")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} from Debian's packages (to build insitu's C module)..." >&2
  "$(dirname "$0")/apt-install.sh" "${missing[@]}"
fi
