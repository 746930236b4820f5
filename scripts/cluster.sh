#!/usr/bin/env bash
# A loopback Redis Cluster with the module loaded on every node:
# 3 masters + 3 replicas, short node timeout so failovers take seconds.
#
#   scripts/cluster.sh start     # build the module, start 6 nodes, create the cluster
#   scripts/cluster.sh status    # one line per node, then CLUSTER INFO's state
#                                # (exit status 0 only when all 6 nodes run)
#   scripts/cluster.sh stop      # stop every node by its pid file
#
# Environment:
#   CLUSTER_PORT   first port (default 30001); nodes use CLUSTER_PORT..+5,
#                  and their cluster bus ports are each port + 100 (kept below
#                  the kernel's ephemeral range, unlike the default + 10000)
#   REDIS_SERVER   server binary (default redis-server), e.g. a valkey-server
#                  (see scripts/valkey.sh)
#   REDIS_CLI      client binary (default redis-cli); redis-cli 7.0 also
#                  creates Valkey clusters
#
# Data, logs and pid files live in target/cluster/<port>/. `start` begins
# with a fresh cluster (it refuses while nodes of a previous one still run).
# Then: redis-cli -c -p 30001 THROTTLE user:1 5 2 8
set -euo pipefail
cd "$(dirname "$0")/.."

base=${CLUSTER_PORT:-30001}
server=${REDIS_SERVER:-redis-server}
cli=${REDIS_CLI:-redis-cli}
root=$PWD/target/cluster
ports=()
for i in 0 1 2 3 4 5; do ports+=($((base + i))); done

pid_of() { # prints the pid of the node on port $1 if it runs, else nothing
  local f=$root/$1/node.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  # Only a live server process counts (a stale pid may belong to anything).
  if ps -p "$pid" -o comm= 2>/dev/null | grep -Eq 'redis|valkey'; then echo "$pid"; fi
}

stop() {
  local port pid n
  for port in "${ports[@]}"; do
    pid=$(pid_of "$port")
    if [ -n "$pid" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      for n in $(seq 50); do # up to 5 s for a clean exit
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
      echo "cluster: stopped $port (pid $pid)"
    fi
    rm -f "$root/$port/node.pid"
  done
}

status() {
  local port pid up=0
  for port in "${ports[@]}"; do
    pid=$(pid_of "$port")
    if [ -n "$pid" ]; then
      up=$((up + 1))
      role=$("$cli" -p "$port" ROLE 2>/dev/null | head -1 || true)
      echo "127.0.0.1:$port pid $pid ${role:-?}"
    else
      echo "127.0.0.1:$port down"
    fi
  done
  if [ "$up" -gt 0 ]; then
    for port in "${ports[@]}"; do
      if [ -n "$(pid_of "$port")" ]; then
        "$cli" -p "$port" CLUSTER INFO | grep -E '^cluster_(state|known_nodes|size)' | tr -d '\r'
        break
      fi
    done
  fi
  [ "$up" -eq 6 ]
}

start() {
  local port so n addrs=()
  for port in "${ports[@]}"; do
    if [ -n "$(pid_of "$port")" ]; then
      echo "cluster: node $port already runs; run '$0 stop' first" >&2
      exit 1
    fi
  done
  so=$(scripts/build.sh)
  command -v "$server" >/dev/null 2>&1 || { echo "cluster: no server binary '$server'" >&2; exit 1; }
  command -v "$cli" >/dev/null 2>&1 || { echo "cluster: no client binary '$cli'" >&2; exit 1; }
  for port in "${ports[@]}"; do
    rm -rf "${root:?}/$port"
    mkdir -p "$root/$port"
    "$server" --port "$port" --bind 127.0.0.1 --dir "$root/$port" \
      --daemonize yes --pidfile "$root/$port/node.pid" --logfile "$root/$port/node.log" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --cluster-port $((port + 100)) \
      --save "" --appendonly no --repl-diskless-sync-delay 0 --enable-debug-command yes \
      --loadmodule "$so"
    addrs+=("127.0.0.1:$port")
  done
  for port in "${ports[@]}"; do # every node answers within 10 s
    for n in $(seq 100); do
      "$cli" -p "$port" PING >/dev/null 2>&1 && break
      [ "$n" -eq 100 ] && { echo "cluster: node $port did not start; see $root/$port/node.log" >&2; stop; exit 1; }
      sleep 0.1
    done
  done
  "$cli" --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$root/create.log" 2>&1 ||
    { cat "$root/create.log" >&2; stop; exit 1; }
  for n in $(seq 150); do # cluster_state:ok on every node within 15 s
    ok=0
    for port in "${ports[@]}"; do
      "$cli" -p "$port" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok' && ok=$((ok + 1))
    done
    [ "$ok" -eq 6 ] && break
    [ "$n" -eq 150 ] && { echo "cluster: not ok after 15 s" >&2; exit 1; }
    sleep 0.1
  done
  # cluster_state:ok comes before every node has the same slot map and
  # before replicas finish their first sync; a client that starts then can
  # be sent back and forth (MOVED) on a busy machine. Wait for both.
  for n in $(seq 150); do
    ready=0
    "$cli" --cluster check "127.0.0.1:${ports[0]}" 2>/dev/null |
      grep -q 'All nodes agree about slots configuration' && ready=1
    for port in "${ports[@]}"; do
      "$cli" -p "$port" INFO replication 2>/dev/null | grep -q '^master_link_status:down' && ready=0
    done
    [ "$ready" = 1 ] && break
    [ "$n" -eq 150 ] && { echo "cluster: nodes disagree on slots or replicas not in sync after 15 s" >&2; exit 1; }
    sleep 0.1
  done
  echo "cluster: 3 masters + 3 replicas on 127.0.0.1:${ports[0]}-${ports[5]} ($("$server" --version | cut -d' ' -f1-3))"
  echo "cluster: try  $cli -c -p ${ports[0]} THROTTLE user:1 5 2 8"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
