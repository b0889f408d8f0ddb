#!/usr/bin/env bash
# Start (or stop) podman's Docker-compatible API on a local unix socket, and build the image
# users' servers run in with hub.spawner = "docker" (DockerSpawner).
#   scripts/podman.sh start    -> prints the socket URL (unix://...) and the image name last
#   scripts/podman.sh stop     -> stops the API service started by this script
#   scripts/podman.sh status   -> says whether it runs; prints socket URL and image when it does
#   scripts/podman.sh image    -> builds the image if needed; prints its name last
# Installs Debian's podman, runc, debootstrap and uidmap when missing (root), and writes
# /etc/containers/containers.conf when there is none: runc (crun refuses this machine's
# hybrid cgroups) and low ulimits (podman's defaults exceed the hard limit here).
#
# The image is made without a container registry:
#   1. a Debian bookworm minbase rootfs from debootstrap (with python3, python3-venv), from the
#      machine's own apt mirror, imported as localhost/insitu-debian-bookworm-min:1 (once);
#   2. localhost/insitu-singleuser:VERSION-HASH: a venv in /opt/insitu with insitu[hub] and its
#      dependencies at the versions of this checkout's venv (so the same JupyterHub as the hub),
#      installed offline from a wheelhouse the host's pip fills (.cache/podman/wheels).
#      HASH covers the project's sources, pyproject.toml, setup.py, the venv's package versions
#      and this recipe: the image is built again only when one of them changed (then only the
#      layers that changed), and is also tagged localhost/insitu-singleuser:VERSION.
# State, logs and the socket live under ${INSITU_PODMAN_DIR:-$(pwd)/.cache/podman}.
set -euo pipefail

# Daemons started here outlive this script, so they must not inherit its caller's open
# files: a lock held by 'flock LOCK make test' would otherwise stay held while they run.
for fd in $(ls /proc/$$/fd); do
  if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" || true; fi
done

ACTION=${1:-start}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${INSITU_PODMAN_DIR:-$(pwd)/.cache/podman}
BASE=$(mkdir -p "$BASE" && cd "$BASE" && pwd)
SOCK=$BASE/podman.sock
URL="unix://$SOCK"
PIDFILE=$BASE/service.pid
LOG=$BASE/service.log
TIMEOUT=${INSITU_PODMAN_TIMEOUT:-60}
PY=${INSITU_PODMAN_PYTHON:-$ROOT/.venv/bin/python}
REPO=localhost/insitu-singleuser
BASE_IMAGE=localhost/insitu-debian-bookworm-min:1
CONF=/etc/containers/containers.conf
MARK="# Written by insitu's scripts/podman.sh"

say() { echo "podman.sh: $*" >&2; }

install_packages() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  command -v newuidmap >/dev/null || missing+=(uidmap)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    "$ROOT/scripts/apt-install.sh" "${missing[@]}"
  fi
}

write_conf() {
  local want
  want="$MARK (runc: crun refuses hybrid cgroups; podman's default
# ulimits exceed this machine's hard limits).
[containers]
default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]
[engine]
runtime = \"runc\""
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    # Someone else's configuration: use it if it has what containers need here, else say what.
    if ! grep -Eq '^\s*runtime\s*=\s*"runc"' "$CONF" || ! grep -q 'nofile=' "$CONF"; then
      say "$CONF exists and was not written by this script; add to it:"
      echo "$want" | sed 1,2d >&2
      exit 1
    fi
    return 0
  fi
  if [ "$(cat "$CONF" 2>/dev/null)" != "$want" ]; then
    mkdir -p "$(dirname "$CONF")"
    echo "$want" >"$CONF"
    say "wrote $CONF"
  fi
}

pid_alive() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null && grep -q "system" "/proc/$pid/cmdline" 2>/dev/null
}
answers() { podman --remote --url "$URL" version >/dev/null 2>&1; }

start_service() {
  if pid_alive && answers; then return 0; fi
  if pid_alive; then
    say "the API service (pid $(cat "$PIDFILE")) runs but does not answer; restarting it"
    stop
  fi
  rm -f "$SOCK"
  say "starting podman system service on $URL"
  (cd "$BASE" && exec setsid nohup podman system service --time=0 "$URL" >"$LOG" 2>&1 </dev/null) &
  echo $! >"$PIDFILE"
  local t0=$SECONDS
  until answers; do
    if ! pid_alive; then
      say "podman system service exited; its log ($LOG) ends with:"; tail -n 30 "$LOG" >&2; exit 1
    fi
    if [ $(( SECONDS - t0 )) -ge "$TIMEOUT" ]; then
      say "no answer on $URL after ${TIMEOUT}s; see $LOG"; tail -n 30 "$LOG" >&2; exit 1
    fi
    sleep 0.2
  done
  chmod 0700 "$BASE"  # the socket is root's container engine: nobody else may reach it
}

# The machine's Debian mirror, from apt's own sources (deb822 or one-line form).
debian_mirror() {
  local uri
  uri=$(grep -hs -E '^\s*(URIs:|deb\s)' /etc/apt/sources.list.d/*.sources \
      /etc/apt/sources.list.d/*.list /etc/apt/sources.list \
    | grep -v -e security -e '^\s*#' \
    | sed -E 's/^\s*URIs:\s*//; s/^\s*deb\s+(\[[^]]*\]\s+)?//' | awk '{print $1; exit}')
  [ -n "$uri" ] || { say "no Debian mirror found in /etc/apt/sources.list*"; exit 1; }
  echo "$uri"
}

build_base() {
  podman image exists "$BASE_IMAGE" && return 0
  local rootfs=$BASE/rootfs mirror t0=$SECONDS
  mirror=$(debian_mirror)
  say "making a Debian bookworm minbase rootfs with debootstrap from $mirror (about 2 min)"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$BASE/debootstrap.log" 2>&1 \
    || { say "debootstrap failed; $BASE/debootstrap.log ends with:"; tail -n 20 "$BASE/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  say "imported $BASE_IMAGE in $(( SECONDS - t0 )) s"
}

# What the image is made of: a change in any of it means another image.
content_hash() {
  {
    (cd "$ROOT" && git ls-files -co --exclude-standard -- src pyproject.toml setup.py \
      | grep -v -e '\.so$' -e '__pycache__' | LC_ALL=C sort \
      | xargs -d '\n' sha256sum 2>/dev/null) || true  # files deleted in the work tree: skipped
    "$PY" -m pip freeze --exclude-editable 2>/dev/null
    sed -n '/^build_image()/,/^}/p' "$0"
  } | sha256sum | cut -c1-12
}

build_image() {
  local version hash tag ctx wheels t0=$SECONDS
  version=$("$PY" -c 'import tomllib; print(tomllib.load(open("'"$ROOT"'/pyproject.toml", "rb"))["project"]["version"])')
  hash=$(content_hash)
  tag=$REPO:$version-$hash
  IMAGE=$tag
  if podman image exists "$tag"; then
    podman tag "$tag" "$REPO:$version"
    return 0
  fi
  build_base
  ctx=$BASE/build
  wheels=$BASE/wheels
  rm -rf "$ctx" && mkdir -p "$ctx" "$wheels"
  say "building $tag: insitu's wheel, then its dependencies' (host pip, into $wheels)"
  "$PY" -m pip wheel -q --no-deps -w "$ctx" "$ROOT" >&2
  local wheel
  wheel=$(ls "$ctx"/insitu-*.whl)
  # The dependencies at this venv's versions: the container's jupyterhub-singleuser talks
  # to this venv's JupyterHub.
  "$PY" -m pip freeze --exclude-editable | grep -v ' @ ' >"$ctx/constraints.txt"
  if ! "$PY" -m pip wheel -q -w "$wheels" -c "$ctx/constraints.txt" \
      "insitu[hub] @ file://$wheel" 2>"$ctx/pip.log"; then
    grep -v "is ignored: it is neither" "$ctx/pip.log" | tail -n 30 >&2
    say "pip could not collect the wheels of insitu[hub] (above; all of it in $ctx/pip.log)"
    exit 1
  fi
  (cd "$wheels" && ls *.whl | grep -v '^insitu-' | LC_ALL=C sort) >"$ctx/wheels.txt"
  rm -f "$wheels"/insitu-*.whl
  cat >"$ctx/Containerfile" <<'EOF'
FROM localhost/insitu-debian-bookworm-min:1
ENV PATH=/opt/insitu/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 PYTHONUNBUFFERED=1
# Dependencies first: a layer kept while only insitu's own code changes.
COPY wheels.txt /tmp/wheels.txt
RUN python3 -m venv /opt/insitu \
 && cd /wheels && /opt/insitu/bin/pip install -q --no-index --no-deps --no-cache-dir \
      --disable-pip-version-check $(cat /tmp/wheels.txt) \
 && rm /tmp/wheels.txt
COPY insitu-*.whl /tmp/
RUN /opt/insitu/bin/pip install -q --no-index --no-deps --no-cache-dir \
      --disable-pip-version-check /tmp/insitu-*.whl \
 && rm /tmp/insitu-*.whl \
 && /opt/insitu/bin/pip check --disable-pip-version-check >/dev/null \
 && /opt/insitu/bin/python -c 'import insitu, jupyterhub, jupyterlab'
WORKDIR /tmp
CMD ["jupyterhub-singleuser"]
EOF
  # chroot isolation: crun cannot run RUN steps under hybrid cgroups (and chroot takes only the
  # host's network, unused here). Every package comes from the wheelhouse, mounted for the
  # build only, so the image needs no registry, proxy or CA bundle.
  podman build -q --isolation=chroot --network=host --layers \
    -v "$wheels:/wheels:ro" --label "org.insitu.version=$version" \
    --label "org.insitu.content-hash=$hash" -t "$tag" "$ctx" >&2 \
    || { say "podman build of $tag failed (context $ctx)"; exit 1; }
  podman tag "$tag" "$REPO:$version"
  # Earlier builds of this version go: only the current one is used.
  local old
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$REPO" \
      | grep -v -e ":$version-$hash\$" -e ":$version\$" || true); do
    podman rmi "$old" >/dev/null 2>&1 || true
  done
  podman image prune -f >/dev/null 2>&1 || true
  say "built $tag in $(( SECONDS - t0 )) s"
}

image() {
  # Two test sessions may build at once: the second waits, then finds the image.
  exec 8>"$BASE/build.lock"
  flock -w 1800 8 || { say "another podman.sh holds $BASE/build.lock"; exit 1; }
  build_image
  flock -u 8
}

start() {
  install_packages
  exec 9>"$BASE/start.lock"
  flock -w "$TIMEOUT" 9 || { say "another podman.sh start holds $BASE/start.lock"; exit 1; }
  write_conf
  start_service
  flock -u 9
  image
  echo "$URL"
  echo "$IMAGE"
}

stop() {
  local pid i
  if pid_alive; then
    pid=$(cat "$PIDFILE")
    say "stopping the podman API service (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do pid_alive || break; sleep 0.25; done
    pid_alive && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE" "$SOCK"
}

status() {
  if pid_alive && answers; then
    say "running (pid $(cat "$PIDFILE")); log $LOG"
    echo "$URL"
    podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$REPO" | grep -- '-' | head -n1
  else
    say "not running (from this script)"; exit 1
  fi
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  image) install_packages; image; echo "$IMAGE" ;;
  *) echo "usage: $0 start|stop|status|image" >&2; exit 2 ;;
esac
