#!/usr/bin/env bash
# Builds slotpilot and runs it. Works from any directory on a fresh Debian bookworm machine.
#
#   deploy/run.sh --seeds=HOST:PORT[,...] [flags]   build, then exec slotpilot with these flags
#   deploy/run.sh [flags]                           build, start a local demo Redis Cluster
#                                                   (3 masters + 3 replicas on loopback) and run
#                                                   slotpilot in front of it until Ctrl-C
#
# Steps: deploy/install-deps.sh (a no-op when everything is installed), then the `release` CMake
# preset. The demo cluster lives in a temp dir; on Ctrl-C, SIGTERM, or when slotpilot exits, the
# script stops slotpilot and every redis-server it started (by PID) and removes the temp dir.
# The demo needs only bash, redis-server and redis-cli (no Python).
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
readonly REPO
readonly BIN="$REPO/build/release/proxy/slotpilot"
readonly DEFAULT_LISTEN=127.0.0.1:6379
readonly DEFAULT_ADMIN=127.0.0.1:9121
readonly MASTERS=3 REPLICAS=1
readonly NODES=$((MASTERS * (1 + REPLICAS)))
# Node ports P and bus ports P+10000 stay below 32768, where the ephemeral range starts. Lock
# files shared with the integration tests (tests/integration/harness.py) keep parallel users apart.
readonly PORT_LOW=12000 PORT_HIGH=22700 PORT_LOCK_DIR=/tmp/slotpilot-ports

log() { echo "run.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# ---- arguments --------------------------------------------------------------------------------

has_seeds() {
  local arg
  for arg in "$@"; do
    case $arg in --seeds|--seeds=*|--help|-h|--version) return 0 ;; esac
  done
  return 1
}

# The value of flag $1 (as --flag=V or --flag V) among the remaining arguments, or $2.
flag_value() {
  local name=$1 value=$2; shift 2
  while [ $# -gt 0 ]; do
    case $1 in
      "$name="*) value=${1#"$name="} ;;
      "$name") [ $# -gt 1 ] && value=$2 ;;
    esac
    shift
  done
  echo "$value"
}

# ---- ports ------------------------------------------------------------------------------------

# True when something accepts connections on 127.0.0.1:$1 (or HOST:PORT in $1).
port_in_use() {
  local host=127.0.0.1 port=$1
  if [[ $1 == *:* ]]; then host=${1%:*} port=${1##*:}; fi
  [ "$host" = 0.0.0.0 ] && host=127.0.0.1
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# Takes this shell's flock on port $1's lock file and appends its fd to LOCK_FDS; the lock is
# held until the fd is closed or the script (and the children that inherit the fd) exit.
LOCK_FDS=()
lock_port() {
  local fd
  exec {fd}>>"$PORT_LOCK_DIR/$1.lock" || return 1
  flock -n "$fd" || { exec {fd}>&-; return 1; }
  LOCK_FDS+=("$fd")
}

unlock_ports() {
  local fd
  for fd in "${LOCK_FDS[@]}"; do exec {fd}>&-; done
  LOCK_FDS=()
}

# Sets BASE to the first of $NODES consecutive ports whose node and bus ports are free; bounded.
pick_ports() {
  mkdir -p "$PORT_LOCK_DIR"
  chmod 1777 "$PORT_LOCK_DIR" 2>/dev/null || true  # shared with other users' tests
  local _ base port ok
  for _ in $(seq 1 100); do
    base=$((PORT_LOW + RANDOM % (PORT_HIGH - PORT_LOW - NODES)))
    ok=1
    for port in $(seq "$base" $((base + NODES - 1))); do
      if ! lock_port "$port" || ! lock_port $((port + 10000)) \
          || port_in_use "$port" || port_in_use $((port + 10000)); then
        ok=0; break
      fi
    done
    if [ $ok = 1 ]; then BASE=$base; return 0; fi
    unlock_ports
  done
  die "no $NODES free consecutive loopback ports found in [$PORT_LOW, $PORT_HIGH)"
}

# ---- processes --------------------------------------------------------------------------------

DEMO_DIR=""
REDIS_PIDS=()
PROXY_PID=""

# shellcheck disable=SC2317  # stop_pids and cleanup run from the EXIT trap
# Sends SIGTERM to the given PIDs, waits up to 10 s, then SIGKILLs the rest.
stop_pids() {
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  local i pid alive
  for i in $(seq 1 100); do
    alive=()
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [ ${#alive[@]} -eq 0 ] && return 0
    sleep 0.1
  done
  log "SIGKILL to ${alive[*]} (still running 10 s after SIGTERM)"
  kill -KILL "${alive[@]}" 2>/dev/null || true
}

# shellcheck disable=SC2317
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$PROXY_PID" ]; then stop_pids "$PROXY_PID"; fi
  if [ ${#REDIS_PIDS[@]} -gt 0 ]; then
    log "stopping the demo cluster (pids ${REDIS_PIDS[*]})"
    stop_pids "${REDIS_PIDS[@]}"
  fi
  if [ -n "$DEMO_DIR" ]; then rm -rf "$DEMO_DIR"; fi
  exit "$status"
}

# Starts one redis-server on port $1 in its own session (so Ctrl-C reaches only this script and
# slotpilot, and the cluster is stopped in order), logging to $DEMO_DIR/<port>/redis.log.
start_node() {
  local port=$1 dir=$DEMO_DIR/$1
  mkdir -p "$dir"
  setsid redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize no \
    --logfile "$dir/redis.log" --save "" --appendonly no \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
    --repl-diskless-sync-delay 0 </dev/null >/dev/null 2>&1 &
  REDIS_PIDS+=("$!")
}

# Waits (bounded) until the node on port $1 answers PING and is the process we started ($2).
wait_node() {
  local port=$1 pid=$2 i
  for i in $(seq 1 100); do
    if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
      [ "$(redis-cli -p "$port" info server | tr -d '\r' | sed -n 's/^process_id://p')" = "$pid" ] \
        || die "port $port answers, but not from our redis-server $pid (port taken meanwhile?)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "redis-server on port $port exited: $(tail -5 "$DEMO_DIR/$port/redis.log")"
    sleep 0.1
  done
  die "redis-server on port $port did not answer PING within 10 s"
}

# Waits (bounded) until every node reports cluster_state:ok.
wait_cluster_ok() {
  local i port ok
  for i in $(seq 1 300); do
    ok=1
    for port in $(seq "$BASE" $((BASE + NODES - 1))); do
      [[ $(redis-cli -p "$port" cluster info 2>/dev/null) == *cluster_state:ok* ]] || { ok=0; break; }
    done
    [ $ok = 1 ] && return 0
    sleep 0.1
  done
  die "the demo cluster did not reach cluster_state:ok within 30 s"
}

start_demo_cluster() {
  pick_ports
  DEMO_DIR=$(mktemp -d "${TMPDIR:-/tmp}/slotpilot-demo-XXXXXX")
  local port i addrs=()
  for port in $(seq "$BASE" $((BASE + NODES - 1))); do
    start_node "$port"
    addrs+=("127.0.0.1:$port")
  done
  for i in $(seq 0 $((NODES - 1))); do wait_node $((BASE + i)) "${REDIS_PIDS[$i]}"; done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$REPLICAS" --cluster-yes \
    >"$DEMO_DIR/cluster-create.log" 2>&1 \
    || die "redis-cli --cluster create failed: $(tail -20 "$DEMO_DIR/cluster-create.log")"
  wait_cluster_ok
}

print_banner() {
  local listen=$1 admin=$2
  cat <<EOF

  slotpilot demo
  --------------
  Redis Cluster: $MASTERS masters + $((MASTERS * REPLICAS)) replicas on 127.0.0.1:$BASE-$((BASE + NODES - 1))
                 (node logs in $DEMO_DIR)
  slotpilot:     listening on $listen, seeds 127.0.0.1:$BASE
  console:       http://$admin/   (admin API: /v1/slots, /v1/migrations, /v1/loops, /metrics)
  try:           redis-cli -h ${listen%:*} -p ${listen##*:} set foo bar
                 redis-cli -h ${listen%:*} -p ${listen##*:} get foo
  Ctrl-C stops slotpilot and the demo cluster.

EOF
}

# ---- main -------------------------------------------------------------------------------------

main() {
  cd "$REPO"
  local listen admin
  if ! has_seeds "$@"; then
    listen=$(flag_value --listen "$DEFAULT_LISTEN" "$@")
    admin=$(flag_value --admin-listen "$DEFAULT_ADMIN" "$@")
    port_in_use "$listen" && die "$listen is already in use (a packaged redis-server?)." \
      "Stop it, or pick another port: deploy/run.sh --listen=127.0.0.1:6380"
    port_in_use "$admin" && die "$admin (admin) is already in use." \
      "Pick another port: deploy/run.sh --admin-listen=127.0.0.1:9122"
  fi

  log "checking dependencies (deploy/install-deps.sh)"
  deploy/install-deps.sh
  log "building the release preset"
  cmake --preset release >/dev/null
  cmake --build --preset release --target slotpilot
  [ -x "$BIN" ] || die "build finished but $BIN is missing"

  if has_seeds "$@"; then exec "$BIN" "$@"; fi

  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  log "starting the demo cluster"
  start_demo_cluster
  print_banner "$listen" "$admin"
  "$BIN" "--seeds=127.0.0.1:$BASE" "$@" &
  PROXY_PID=$!
  local status=0
  wait "$PROXY_PID" || status=$?
  PROXY_PID=""
  log "slotpilot exited with status $status"
  exit "$status"
}

main "$@"
