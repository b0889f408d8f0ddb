#!/usr/bin/env bash
# Start (or stop) a throw-away PostgreSQL server on loopback for insitu's tests.
#   scripts/postgres.sh start   -> prints the SQLAlchemy URL on its last line
#   scripts/postgres.sh stop
# Installs Debian's postgresql package when no server binaries are found (needs root).
set -euo pipefail

# Daemons started here outlive this script, so they must not inherit its caller's open
# files: a lock held by 'flock LOCK make test' would otherwise stay held while they run.
for fd in $(ls /proc/$$/fd); do
  if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" || true; fi
done

ACTION=${1:-start}
PORT=${INSITU_PG_PORT:-54329}
BASE=${INSITU_PG_DIR:-$(pwd)/.cache/postgres}
DATA=$BASE/data
DB=insitu_test
URL="postgresql+psycopg://insitu@127.0.0.1:$PORT/$DB"

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

BIN=$(find_bindir || true)
if [ -z "$BIN" ]; then
  echo "PostgreSQL server not found; installing Debian's postgresql package..." >&2
  "$(dirname "$0")/apt-install.sh" postgresql
  BIN=$(find_bindir)
fi

# PostgreSQL refuses to run as root: run it as the 'postgres' user then.
AS=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
  AS=(runuser -u postgres --)
fi

pg() { "${AS[@]}" "$BIN/$1" "${@:2}"; }

case "$ACTION" in
  start)
    mkdir -p "$BASE"
    [ "$(id -u)" -eq 0 ] && chown postgres "$BASE"
    if [ ! -f "$DATA/PG_VERSION" ]; then
      pg initdb -D "$DATA" -U insitu --auth=trust -E UTF8 >"$BASE/initdb.log" 2>&1 \
        || { cat "$BASE/initdb.log" >&2; exit 1; }
    fi
    if ! pg pg_ctl -D "$DATA" status >/dev/null 2>&1; then
      pg pg_ctl -D "$DATA" -w -t 60 -l "$BASE/server.log" \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $BASE -c fsync=off -c synchronous_commit=off" \
        start >&2 || {
          tail -n 8 "$BASE/server.log" >&2
          if grep -q "Address already in use" <(tail -n 8 "$BASE/server.log"); then
            echo "postgres.sh: port $PORT is taken, maybe by another checkout's server: stop it" \
              "with that checkout's 'scripts/postgres.sh stop', or set INSITU_PG_PORT." >&2
          fi
          exit 1
        }
    fi
    if ! pg psql -h 127.0.0.1 -p "$PORT" -U insitu -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1; then
      pg createdb -h 127.0.0.1 -p "$PORT" -U insitu "$DB"
    fi
    echo "$URL"
    ;;
  stop)
    if [ -f "$DATA/PG_VERSION" ]; then pg pg_ctl -D "$DATA" -m fast stop >&2 || true; fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
