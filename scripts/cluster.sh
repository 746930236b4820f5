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

stop() { # every node at once: SIGTERM, up to 5 s for a clean exit, then SIGKILL
  local port pid n pids=()
  for port in "${ports[@]}"; do
    pid=$(pid_of "$port")
    if [ -n "$pid" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$port:$pid")
    fi
  done
  for n in $(seq 50); do
    local left=0 p
    for p in "${pids[@]}"; do kill -0 "${p#*:}" 2>/dev/null && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do
    kill -0 "${p#*:}" 2>/dev/null && kill -KILL "${p#*:}" 2>/dev/null || true
    echo "cluster: stopped ${p%:*} (pid ${p#*:})"
  done
  for port in "${ports[@]}"; do rm -f "$root/$port/node.pid"; done
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

# not_ready: succeeds (printing nothing) when the cluster is ready, else
# prints the first thing that is not.
not_ready() {
  local port nodes view masters replicas r role m offset target
  view=""
  for port in "${ports[@]}"; do
    "$cli" -p "$port" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok' ||
      { echo "$port: cluster_state is not ok"; return 1; }
    nodes=$("$cli" -p "$port" CLUSTER NODES 2>/dev/null | tr -d '\r') || { echo "$port: no CLUSTER NODES"; return 1; }
    if awk '$3 ~ /fail|handshake|noaddr/ { f = 1 } END { exit !f }' <<<"$nodes"; then
      echo "$port sees a failed node"; return 1
    fi
    masters=$(awk '$3 ~ /master/ && NF > 8' <<<"$nodes" | wc -l)
    replicas=$(awk '$3 ~ /slave/' <<<"$nodes" | wc -l)
    [ "$masters" = 3 ] && [ "$replicas" = 3 ] && [ "$(awk '$3 ~ /slave/ { print $4 }' <<<"$nodes" | sort -u | wc -l)" = 3 ] ||
      { echo "$port sees $masters masters with slots and $replicas replicas (one each wanted)"; return 1; }
    local this # "id port role master-id slots..." per node, sorted
    this=$(awk '{ split($2, a, "[:@]"); r = ($3 ~ /master/) ? "master" : "slave"
      printf "%s %s %s %s", $1, a[2], r, $4; for (i = 9; i <= NF; i++) printf " %s", $i; print "" }' <<<"$nodes" | sort)
    [ -z "$view" ] && view=$this
    [ "$view" = "$this" ] || { echo "$port and ${ports[0]} see different clusters"; return 1; }
  done
  for r in $(awk '$3 ~ /slave/ { split($2, a, "[:@]"); print a[2] }' <<<"$nodes"); do
    role=$("$cli" -p "$r" INFO replication 2>/dev/null | tr -d '\r')
    grep -q '^role:slave$' <<<"$role" || { echo "$r is not a replica yet"; return 1; }
    grep -q '^master_link_status:up$' <<<"$role" || { echo "$r: master link not up"; return 1; }
    grep -q '^master_sync_in_progress:0$' <<<"$role" || { echo "$r: sync in progress"; return 1; }
    m=$(sed -n 's/^master_port://p' <<<"$role")
    target=$("$cli" -p "$m" INFO replication 2>/dev/null | tr -d '\r' | sed -n 's/^master_repl_offset://p')
    offset=$("$cli" -p "$r" INFO replication 2>/dev/null | tr -d '\r' | sed -n 's/^slave_repl_offset://p')
    [ -n "$target" ] && [ -n "$offset" ] && [ "$offset" -ge "$target" ] ||
      { echo "$r: offset ${offset:-?} behind its master $m (${target:-?})"; return 1; }
  done
}

start() {
  local port so n addrs=()
  for port in "${ports[@]}"; do
    if [ -n "$(pid_of "$port")" ]; then
      echo "cluster: node $port already runs; run '$0 stop' first" >&2
      exit 1
    fi
    # Someone else's server on a port (another clone's cluster, say) would
    # answer in place of ours: refuse rather than mix two clusters.
    for n in "$port" $((port + 100)); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$n") 2>/dev/null; then
        echo "cluster: port $n is in use by another process; pick another CLUSTER_PORT" >&2
        exit 1
      fi
    done
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
  # Ready means: every node reports cluster_state:ok and sees the same
  # cluster (3 masters holding every slot, each with one replica, nobody
  # failed), and every replica has role slave, its link up, no sync in
  # progress, and an offset caught up with its master's. (cluster_state:ok
  # alone came while a node still listed two replicas as masters without
  # slots, and a replica promoted then had none of the first writes.)
  local t0=$SECONDS why
  while ! why=$(not_ready); do
    if [ $((SECONDS - t0)) -ge "${CLUSTER_READY_TIMEOUT:-60}" ]; then
      echo "cluster: not ready after $((SECONDS - t0)) s: $why" >&2
      stop >&2
      exit 1
    fi
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
