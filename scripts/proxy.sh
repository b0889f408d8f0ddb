#!/usr/bin/env bash
# Install JupyterHub's proxy, configurable-http-proxy, from npm beside the venv's Python
# (VENV/share/insitu-proxy), where 'insitu up' looks for it. Installs Debian's nodejs and npm
# first when missing. Idempotent.
#   scripts/proxy.sh [VENV]   -> prints the proxy's executable path last
set -euo pipefail
VENV=${1:-.venv}
DEST=$(cd "$VENV" && pwd)/share/insitu-proxy
EXE=$DEST/node_modules/.bin/configurable-http-proxy
VERSION=${INSITU_CHP_VERSION:-5}
if [ ! -x "$EXE" ]; then
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "proxy.sh: installing Debian's nodejs and npm" >&2
    "$(dirname "$0")/apt-install.sh" nodejs npm
  fi
  mkdir -p "$DEST"
  echo "proxy.sh: npm install configurable-http-proxy@$VERSION into $DEST" >&2
  (cd "$DEST" && npm install --silent --no-audit --no-fund --loglevel=error \
      --prefix "$DEST" "configurable-http-proxy@$VERSION" >&2)
fi
"$EXE" --version >&2
echo "$EXE"
