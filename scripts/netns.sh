#!/usr/bin/env bash
# Two throw-away "hosts" for insitu's multi-host tests: network namespaces insitu-h1 and
# insitu-h2 on a private bridge, each running its own sshd (root login by key only).
#   scripts/netns.sh up       -> prints the host addresses ("10.250.0.2 10.250.0.3") on its last line
#   scripts/netns.sh down     -> stops our sshd's, deletes the namespaces, veths and the bridge
#   scripts/netns.sh status   -> prints what is in place; fails unless everything is
# Network: bridge insitu-br0 = 10.250.0.1/24 in the root namespace; host N is namespace
# insitu-hN with eth0 = 10.250.0.(N+1)/24 (a veth whose peer insitu-hN-br is on the bridge).
# Only this subnet: no NAT, no default route, no forwarding to anything else.
# Keys, sshd configs, pid files and logs live under ${INSITU_NETNS_DIR:-$(pwd)/.cache/netns};
# log in with: ssh -i $DIR/id_ed25519 -o StrictHostKeyChecking=no \
#   -o UserKnownHostsFile=/dev/null root@10.250.0.2
# Installs Debian's openssh-server when /usr/sbin/sshd is missing. Needs root (or sudo).
set -euo pipefail

ACTION=${1:-up}
if [ "$(id -u)" -ne 0 ]; then
  exec sudo INSITU_NETNS_DIR="${INSITU_NETNS_DIR:-$(pwd)/.cache/netns}" bash "$0" "$@"
fi
BASE=${INSITU_NETNS_DIR:-$(pwd)/.cache/netns}
BASE=$(mkdir -p "$BASE" && cd "$BASE" && pwd)
BRIDGE=insitu-br0
SUBNET=10.250.0
NHOSTS=2
SSHD=/usr/sbin/sshd
TIMEOUT=${INSITU_NETNS_TIMEOUT:-20}
KEY=$BASE/id_ed25519
AUTH=$BASE/authorized_keys
PATH=$PATH:/usr/sbin:/sbin

say() { echo "netns.sh: $*" >&2; }

ns_name() { echo "insitu-h$1"; }
host_ip() { echo "$SUBNET.$(( $1 + 1 ))"; }
all_ips() { local n out=(); for n in $(seq 1 $NHOSTS); do out+=("$(host_ip "$n")"); done; echo "${out[*]}"; }

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }
link_exists() { ip link show dev "$1" >/dev/null 2>&1; }
link_gone() { local i; for i in 1 2 3 4 5 6 7 8 9 10; do link_exists "$1" || return 0; sleep 0.2; done; say "cannot delete link $1"; return 1; }
has_addr() { ip "${@:3}" -4 addr show dev "$1" 2>/dev/null | grep -q "inet $2/"; }
is_up() { ip "${@:2}" link show dev "$1" 2>/dev/null | head -n1 | grep -q '[<,]UP[,>]'; }

# pid_alive FILE NAME: the pid in FILE is running and its command is NAME.
pid_alive() {
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

# port_open [NS] IP PORT: something answers on IP:PORT (from namespace NS, else from here).
port_open() {
  if [ $# -eq 3 ]; then
    ip netns exec "$1" bash -c "(exec 3<>/dev/tcp/$2/$3) 2>/dev/null"
  else
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
  fi
}

install_packages() {
  if [ ! -x "$SSHD" ]; then
    say "$SSHD not found; installing Debian's openssh-server package..."
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >&2 || true
    [ -x "$SSHD" ] || { say "openssh-server could not be installed"; exit 1; }
  fi
  command -v ssh-keygen >/dev/null 2>&1 || { say "ssh-keygen not found"; exit 1; }
  # Privilege separation directory.
  mkdir -p /run/sshd
  chmod 0755 /run/sshd
}

setup_keys() {
  local n uid
  chmod 0700 "$BASE"
  if [ ! -s "$KEY" ] || [ ! -s "$KEY.pub" ]; then
    say "generating the client key $KEY"
    rm -f "$KEY" "$KEY.pub"
    ssh-keygen -q -t ed25519 -N '' -C insitu-netns-client -f "$KEY" >/dev/null
  fi
  for n in $(seq 1 $NHOSTS); do
    if [ ! -s "$BASE/ssh_host_h${n}_ed25519_key" ]; then
      say "generating the host key of $(ns_name "$n")"
      rm -f "$BASE/ssh_host_h${n}_ed25519_key" "$BASE/ssh_host_h${n}_ed25519_key.pub"
      ssh-keygen -q -t ed25519 -N '' -C "insitu-netns-h$n" \
        -f "$BASE/ssh_host_h${n}_ed25519_key" >/dev/null
    fi
  done
  if ! cmp -s "$KEY.pub" "$AUTH"; then cp "$KEY.pub" "$AUTH"; fi
  chmod 0600 "$KEY" "$AUTH" "$BASE"/ssh_host_h*_ed25519_key
  # Under sudo, the invoking user runs the tests and must read the client key.
  uid=${SUDO_UID:-0}
  [ "$uid" -ne 0 ] && chown "$uid" "$KEY" "$KEY.pub"
  return 0
}

setup_bridge() {
  if ! link_exists "$BRIDGE"; then
    say "creating bridge $BRIDGE"
    ip link add "$BRIDGE" type bridge
  fi
  has_addr "$BRIDGE" "$SUBNET.1" || ip addr add "$SUBNET.1/24" dev "$BRIDGE"
  is_up "$BRIDGE" || ip link set "$BRIDGE" up
}

# setup_host N: namespace insitu-hN, its veth pair, address and loopback.
setup_host() {
  local n=$1 ns veth addr
  ns=$(ns_name "$n"); veth="$ns-br"; addr=$(host_ip "$n")
  if ! ns_exists "$ns"; then
    say "creating namespace $ns"
    ip netns add "$ns"
  fi
  if ! ip -n "$ns" link show dev eth0 >/dev/null 2>&1; then
    # A half-made pair from an earlier run: start over.
    link_exists "$veth" && ip link del "$veth"
    say "creating veth $veth <-> $ns:eth0"
    ip link add "$veth" type veth peer name "$ns-ns"
    ip link set "$ns-ns" netns "$ns"
    ip -n "$ns" link set "$ns-ns" name eth0
  fi
  [ "$(cat "/sys/class/net/$veth/master/ifindex" 2>/dev/null)" = \
    "$(cat "/sys/class/net/$BRIDGE/ifindex")" ] || ip link set "$veth" master "$BRIDGE"
  is_up "$veth" || ip link set "$veth" up
  has_addr eth0 "$addr" -n "$ns" || ip -n "$ns" addr add "$addr/24" dev eth0
  is_up eth0 -n "$ns" || ip -n "$ns" link set eth0 up
  is_up lo -n "$ns" || ip -n "$ns" link set lo up
}

# write_sshd_conf N: sshd config of host N (prints 1 when it changed).
write_sshd_conf() {
  local n=$1 conf tmp
  conf=$BASE/sshd_h$n.conf
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# Generated by scripts/netns.sh -- sshd of test host $(ns_name "$n").
ListenAddress $(host_ip "$n")
Port 22
HostKey "$BASE/ssh_host_h${n}_ed25519_key"
AuthorizedKeysFile "$AUTH"
PidFile "$BASE/sshd_h$n.pid"
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
PrintMotd no
UseDNS no
MaxStartups 100
MaxSessions 100
LogLevel INFO
EOF
  if ! cmp -s "$tmp" "$conf"; then cp "$tmp" "$conf"; chmod 0600 "$conf"; echo 1; fi
  rm -f "$tmp"
}

# start_sshd N: sshd of host N inside its namespace (restarted when its config changed).
start_sshd() {
  local n=$1 ns addr conf pidfile changed
  ns=$(ns_name "$n"); addr=$(host_ip "$n")
  conf=$BASE/sshd_h$n.conf; pidfile=$BASE/sshd_h$n.pid
  changed=$(write_sshd_conf "$n")
  if pid_alive "$pidfile" sshd && [ -z "$changed" ]; then return 0; fi
  stop_pid "$pidfile" sshd
  "$SSHD" -t -f "$conf" || { say "invalid sshd config $conf"; exit 1; }
  say "starting sshd in $ns on $addr:22"
  ip netns exec "$ns" "$SSHD" -f "$conf" -E "$BASE/sshd_h$n.log"
  for _ in $(seq 1 $(( TIMEOUT * 10 ))); do
    pid_alive "$pidfile" sshd && port_open "$addr" 22 && return 0
    sleep 0.1
  done
  say "sshd in $ns does not answer on $addr:22; see $BASE/sshd_h$n.log"
  tail -n 20 "$BASE/sshd_h$n.log" >&2 || true
  exit 1
}

# stop_pid FILE NAME: TERM (then KILL after 5 s) the process recorded in FILE.
stop_pid() {
  local pid
  if pid_alive "$1" "$2"; then
    pid=$(cat "$1")
    say "stopping $2 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      pid_alive "$1" "$2" || break
      sleep 0.1
    done
    if pid_alive "$1" "$2"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$1"
}

up() {
  install_packages
  setup_keys
  setup_bridge
  local n
  for n in $(seq 1 $NHOSTS); do setup_host "$n"; done
  for n in $(seq 1 $NHOSTS); do start_sshd "$n"; done
  # The hosts reach each other over the bridge (h1 -> every other host's sshd).
  for n in $(seq 2 $NHOSTS); do
    port_open "$(ns_name 1)" "$(host_ip "$n")" 22 \
      || { say "$(ns_name 1) cannot reach $(host_ip "$n"):22 over $BRIDGE"; exit 1; }
  done
  say "hosts up: $(all_ips) (ssh -i $KEY root@<host>)"
  all_ips
}

down() {
  local n ns pid pids
  for n in $(seq 1 $NHOSTS); do
    ns=$(ns_name "$n")
    stop_pid "$BASE/sshd_h$n.pid" sshd
    if ns_exists "$ns"; then
      # Whatever still runs in our namespace was started through our sshd (e.g. Dask).
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      for pid in $pids; do
        say "stopping pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo '?')) left in $ns"
        kill "$pid" 2>/dev/null || true
      done
      [ -n "$pids" ] && sleep 1
      for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
      say "deleting namespace $ns"
      ip netns del "$ns"
    fi
    # Deleting the namespace removes the veth pair, but not always before we look.
    if link_exists "$ns-br"; then ip link del "$ns-br" 2>/dev/null || link_gone "$ns-br"; fi
  done
  if link_exists "$BRIDGE"; then
    say "deleting bridge $BRIDGE"
    ip link del "$BRIDGE"
  fi
}

status() {
  local n ns ok=0
  if link_exists "$BRIDGE"; then say "bridge $BRIDGE: $(ip -4 -o addr show dev "$BRIDGE" | awk '{print $4}')"
  else say "bridge $BRIDGE missing"; ok=1; fi
  for n in $(seq 1 $NHOSTS); do
    ns=$(ns_name "$n")
    if ! ns_exists "$ns"; then say "namespace $ns missing"; ok=1; continue; fi
    say "namespace $ns: eth0 $(ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')"
    if pid_alive "$BASE/sshd_h$n.pid" sshd; then
      say "  sshd running (pid $(cat "$BASE/sshd_h$n.pid"))"
    else say "  sshd not running (from this script)"; ok=1; fi
    if port_open "$(host_ip "$n")" 22; then say "  $(host_ip "$n"):22 answers"
    else say "  $(host_ip "$n"):22 does not answer"; ok=1; fi
  done
  [ $ok -eq 0 ] && all_ips
  return $ok
}

case "$ACTION" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
