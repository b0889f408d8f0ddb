#!/usr/bin/env bash
# Start (or stop) a throw-away single-host Grid Engine (SGE) on loopback for insitu's tests.
#   scripts/sge.sh start    -> prints the queue name ("insitu.q") on its last line
#   scripts/sge.sh stop     -> stops the sge_execd and sge_qmaster (and a munged) it started
#   scripts/sge.sh status   -> prints qstat -f
# Installs Debian's gridengine-master, -exec and -client (Son of Grid Engine 8.1.9) when
# sge_qmaster is not found (needs root), answering debconf beforehand: cell 'default',
# master = this host's name.
#
# Where things live. Debian's packages fix SGE_ROOT=/var/lib/gridengine (cell 'default':
# bootstrap, act_qmaster, host_aliases under default/common/) and the spool under
# /var/spool/gridengine (qmaster/ with its 'messages' log, spooldb/ the Berkeley DB the
# package's postinst creates, execd/HOST/); that is where the daemons keep their state.
# What this script adds -- pid files, the daemons' stdout/stderr, the qconf input files --
# lives under ${INSITU_SGE_DIR:-$(pwd)/.cache/sge}.
#
# Sharp edges met on the way (Debian 12, SGE 8.1.9), and what is done about them:
# - SGE compares the name a host gives with the name its address resolves back to. Here
#   the host name resolves to 127.0.0.1 but 127.0.0.1 resolves back to 'localhost', so
#   qmaster refused clients ("access denied (client IP resolved to host name "localhost".
#   This is not identical to clients host name "vm")"). The cell's host_aliases file makes
#   the two names one host (this host's name first: the name SGE uses).
# - The host name must resolve to a loopback address, or the daemons would talk over the
#   network: the script stops with a message otherwise.
# - SGE has no listen-address setting: sge_qmaster (6444) and sge_execd (6445) listen on all
#   addresses, as slurmctld and slurmd do. So, like SLURM here, every request is
#   authenticated with MUNGE (bootstrap 'security_mode munge'; Debian's build has it): a
#   client without this host's munge key is refused ("MUNGE authentication failed").
#   munged is the one scripts/slurm.sh starts, or one started here the same way.
# - Debian's default configuration refuses jobs of users with uid/gid below 1000
#   (min_uid/min_gid), and the tests submit as root: this test cluster sets both to 0.
# - The queue template's load threshold (np_load_avg=1.75) puts the queue in alarm state,
#   so that nothing is scheduled, whenever the 2-core machine is busy: this queue has none.
# - The default scheduler runs every 15 s; here every second (flush on submit and finish),
#   so a worker job starts about 1 s after qsub.
# - With SGE_ND set the daemons stay in the foreground, so their pids can be tracked. A
#   sge_qmaster that cannot bind its port does not exit but retries for ever, and one that
#   is stopped takes several seconds to go: the script checks the port before starting and
#   waits for the old process to end.
# - apt-get's postinst would start the daemons through /etc/init.d; where no policy-rc.d
#   forbids that (containers usually have one), a temporary one does during the install.
set -euo pipefail

# Daemons started here outlive this script, so they must not inherit its caller's open
# files: a lock held by 'flock LOCK make test' would otherwise stay held while they run.
for fd in $(ls /proc/$$/fd); do
  if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" || true; fi
done

ACTION=${1:-start}
BASE=${INSITU_SGE_DIR:-$(pwd)/.cache/sge}
BASE=$(mkdir -p "$BASE" && cd "$BASE" && pwd)
RUN=$BASE/run
LOG=$BASE/log
QUEUE=insitu.q
TIMEOUT=${INSITU_SGE_TIMEOUT:-60}
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
COMMON=$SGE_ROOT/$SGE_CELL/common
SPOOL=/var/spool/gridengine
QMASTER_PORT=6444 # /etc/services: sge-qmaster, sge-execd
EXECD_PORT=6445
NODE=$(hostname 2>/dev/null || true)
PATH=$PATH:/usr/sbin:/sbin

say() { echo "sge.sh: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  say "must run as root (it installs packages and starts daemons that switch users)"
  exit 1
fi

# pid_alive FILE NAME: the pid in FILE is running and its command is NAME.
pid_alive() {
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

# stop_pid FILE NAME: TERM (then KILL after 30 s) the process recorded in FILE; waits for it.
stop_pid() {
  local pid i
  if pid_alive "$1" "$2"; then
    pid=$(cat "$1")
    say "stopping $2 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 60); do
      pid_alive "$1" "$2" || break
      sleep 0.5
    done
    if pid_alive "$1" "$2"; then
      say "$2 did not exit; killing"
      kill -9 "$pid" 2>/dev/null || true
      for i in $(seq 1 20); do pid_alive "$1" "$2" || break; sleep 0.25; done
    fi
  fi
  rm -f "$1"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
qmaster_ok() { qconf -sh >/dev/null 2>&1; }

install_packages() {
  if [ -x /usr/lib/gridengine/sge_qmaster ] && [ -x /usr/lib/gridengine/sge_execd ] &&
    [ -x /usr/lib/gridengine/qsub ] && command -v munged >/dev/null 2>&1; then
    return
  fi
  say "installing Debian's gridengine-master, gridengine-exec, gridengine-client and munge..."
  debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string $SGE_CELL
gridengine-common shared/gridenginemaster string $NODE
EOF
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    gridengine-master gridengine-exec gridengine-client munge >&2
  if [ -n "$policy" ]; then rm -f "$policy"; trap - EXIT; fi
}

# The cell as Debian's postinst scripts leave it, when they did not (e.g. debconf said no).
ensure_cell() {
  id sgeadmin >/dev/null 2>&1 || {
    say "user sgeadmin missing: is gridengine-common configured?"
    exit 1
  }
  if [ ! -s "$COMMON/bootstrap" ]; then
    mkdir -p "$COMMON"
    install -m0644 -o sgeadmin -g sgeadmin /usr/share/gridengine/default-bootstrap "$COMMON/bootstrap"
  fi
  mkdir -p "$SPOOL/qmaster/job_scripts" "$SPOOL/spooldb" "$SPOOL/execd"
  chown sgeadmin:sgeadmin "$SPOOL/qmaster" "$SPOOL/qmaster/job_scripts" "$SPOOL/spooldb" "$SPOOL/execd"
  if [ ! -e "$SPOOL/spooldb/sge" ]; then
    say "initialising the cell's spool ($SPOOL/spooldb)"
    su -s /bin/sh -c "/usr/share/gridengine/scripts/init_cluster $SGE_ROOT $SGE_CELL $SPOOL/spooldb sgeadmin" sgeadmin >&2
  fi
}

# The host's name must resolve to loopback; SGE must see one host whichever way it asks.
check_host() {
  local addr back
  [ -n "$NODE" ] || { say "hostname gives no name"; exit 1; }
  addr=$(getent ahostsv4 "$NODE" | awk 'NR == 1 {print $1}')
  if [[ ! "$addr" =~ ^127\. ]]; then
    say "host name '$NODE' resolves to '${addr:-nothing}', not a loopback address: SGE would"
    say "talk over the network. Add '127.0.1.1 $NODE' to /etc/hosts (Debian's default) first."
    exit 1
  fi
  back=$(/usr/lib/gridengine/gethostbyaddr -name "$addr" 2>/dev/null || true)
  if [ -n "$back" ] && [ "$back" != "$NODE" ]; then
    local line="$NODE $back"
    if ! grep -qx "$line" "$COMMON/host_aliases" 2>/dev/null; then
      say "$addr resolves back to '$back': writing '$line' to $COMMON/host_aliases"
      echo "$line" >>"$COMMON/host_aliases"
      chown sgeadmin:sgeadmin "$COMMON/host_aliases"
    fi
  fi
  if [ "$(cat "$COMMON/act_qmaster" 2>/dev/null)" != "$NODE" ]; then
    echo "$NODE" >"$COMMON/act_qmaster"
    chown sgeadmin:sgeadmin "$COMMON/act_qmaster"
    chmod 0644 "$COMMON/act_qmaster"
  fi
}

# Same munged set-up as scripts/slurm.sh (its munged serves both when it runs first).
start_munge() {
  munge_ok && return
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  id munge >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin munge
  if [ ! -s /etc/munge/munge.key ]; then
    say "generating /etc/munge/munge.key"
    mungekey --create --keyfile=/etc/munge/munge.key --force >&2
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key /var/lib/munge /var/log/munge /run/munge
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0755 /run/munge
  rm -f /run/munge/munge.socket.2.lock
  launch munged "$RUN/munged.pid" setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
  for _ in $(seq 1 50); do munge_ok && break; sleep 0.2; done
  munge_ok || { say "munge does not work; see $LOG/munged.out"; exit 1; }
}

# launch NAME PIDFILE CMD...: run CMD detached (new session, output to $LOG/NAME.out).
launch() {
  local name=$1 pidfile=$2 pid i; shift 2
  say "starting $name"
  SGE_ND=1 setsid nohup "$@" >"$LOG/$name.out" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pidfile"
  for i in $(seq 1 20); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  sleep 0.5
  if ! kill -0 "$pid" 2>/dev/null; then
    say "$name exited immediately; last output:"
    tail -n 20 "$LOG/$name.out" >&2 || true
    exit 1
  fi
}

# set_conf: the global configuration and the scheduler's, changed through qconf only where
# they differ (qconf -Mconf reads a file named after the configuration: 'global').
set_conf() {
  local dir=$BASE/conf
  mkdir -p "$dir"
  qconf -sconf global >"$dir/global.old"
  sed -E 's/^(min_uid +).*/\10/; s/^(min_gid +).*/\10/' "$dir/global.old" >"$dir/global"
  if ! cmp -s "$dir/global" "$dir/global.old"; then (cd "$dir" && qconf -Mconf global >&2); fi
  qconf -ssconf >"$dir/sched.old"
  sed -E 's/^(schedule_interval +).*/\10:0:1/; s/^(flush_submit_sec +).*/\11/;
          s/^(flush_finish_sec +).*/\11/' "$dir/sched.old" >"$dir/sched"
  if ! cmp -s "$dir/sched" "$dir/sched.old"; then qconf -Msconf "$dir/sched" >&2; fi
  qconf -ss 2>/dev/null | grep -qx "$NODE" || qconf -as "$NODE" >&2
}

# set_queue: QUEUE on this host, 2 slots, no load threshold, no parallel environments.
# qconf -aq/-mq edit the package's own template through $EDITOR; this editor is a sed.
set_queue() {
  local editor=$BASE/conf/queue-editor.sh
  cat >"$editor" <<EOF
#!/bin/sh
sed -i -E 's/^hostlist .*/hostlist $NODE/; s/^slots .*/slots 2/;
           s/^load_thresholds .*/load_thresholds NONE/; s/^pe_list .*/pe_list NONE/' "\$1"
EOF
  chmod 0755 "$editor"
  if ! qconf -sql 2>/dev/null | grep -qx "$QUEUE"; then
    EDITOR=$editor qconf -aq "$QUEUE" >&2
  else
    EDITOR=$editor qconf -mq "$QUEUE" >/dev/null 2>&1 || true
  fi
}

# queue_state: the states column of QUEUE@NODE ('' when usable; 'u' unknown, 'a' alarm, 'E'
# error, 'd' disabled ...), or '-' when the instance is not listed.
queue_state() {
  qstat -f -q "$QUEUE@$NODE" 2>/dev/null |
    awk -v q="$QUEUE@$NODE" '$1 == q {print ($6 == "" ? "" : $6); found = 1} END {if (!found) print "-"}'
}

start() {
  install_packages
  mkdir -p "$RUN" "$LOG"
  ensure_cell
  start_munge

  local master_up=0 execd_up=0
  pid_alive "$RUN/sge_qmaster.pid" sge_qmaster && master_up=1
  pid_alive "$RUN/sge_execd.pid" sge_execd && execd_up=1
  # The cell's files are read when the daemons start: change them only while none runs.
  if [ $master_up -eq 0 ] && [ $execd_up -eq 0 ]; then
    check_host
    sed -i -E 's/^(security_mode +).*/\1munge/' "$COMMON/bootstrap"
  fi
  if [ $master_up -eq 0 ]; then
    if port_open "$QMASTER_PORT"; then
      say "port $QMASTER_PORT is taken (a sge_qmaster not started by this script?); stop it first"
      exit 1
    fi
    launch sge_qmaster "$RUN/sge_qmaster.pid" /usr/sbin/sge_qmaster
  fi
  for _ in $(seq 1 "$((TIMEOUT * 5))"); do qmaster_ok && break; sleep 0.2; done
  qmaster_ok || {
    say "sge_qmaster does not answer; see $SPOOL/qmaster/messages and $LOG/sge_qmaster.out"
    tail -n 20 "$SPOOL/qmaster/messages" >&2 || true
    exit 1
  }
  set_conf
  set_queue
  if [ $execd_up -eq 0 ]; then
    if port_open "$EXECD_PORT"; then
      say "port $EXECD_PORT is taken (a sge_execd not started by this script?); stop it first"
      exit 1
    fi
    launch sge_execd "$RUN/sge_execd.pid" /usr/sbin/sge_execd
  fi

  # Wait until the execution host has reported and the queue instance takes jobs.
  local state t0=$SECONDS
  while :; do
    state=$(queue_state)
    [ -z "$state" ] && break
    if [[ "$state" == *E* ]]; then
      say "queue $QUEUE@$NODE in error state; clearing"
      qmod -c "$QUEUE@$NODE" >&2 || true
    fi
    if [[ "$state" == *d* ]]; then qmod -e "$QUEUE@$NODE" >&2 || true; fi
    if [ $((SECONDS - t0)) -ge "$TIMEOUT" ]; then
      say "queue $QUEUE@$NODE not usable after ${TIMEOUT}s (state '$state'); see $SPOOL/"
      qstat -f >&2 || true
      exit 1
    fi
    sleep 0.5
  done
  say "queue $QUEUE@$NODE takes jobs (SGE_ROOT=$SGE_ROOT SGE_CELL=$SGE_CELL)"
  echo "$QUEUE"
}

stop() {
  stop_pid "$RUN/sge_execd.pid" sge_execd
  stop_pid "$RUN/sge_qmaster.pid" sge_qmaster
  # A munged started here may serve SLURM by now: leave it to scripts/slurm.sh then.
  if pid_alive "$RUN/munged.pid" munged && ! pgrep -x slurmctld >/dev/null; then
    stop_pid "$RUN/munged.pid" munged
  fi
}

status() {
  local d
  for d in sge_qmaster sge_execd munged; do
    if pid_alive "$RUN/$d.pid" "$d"; then
      say "$d running (pid $(cat "$RUN/$d.pid"))"
    else
      say "$d not running (from this script)"
    fi
  done
  qmaster_ok || { say "no sge_qmaster answers on $NODE:$QMASTER_PORT"; exit 1; }
  qstat -f
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
