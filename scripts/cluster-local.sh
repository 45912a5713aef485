#!/usr/bin/env bash
# A three-node ferromq cluster on loopback, for trying failover by hand
# (README "Cluster"). Each node gets its own directory under DIR (config,
# data, log, pid file); the nodes run in the background from the release
# binary.
#
#   scripts/cluster-local.sh start DIR   # prints one line per node:
#       node=ID pid=PID stomp=HOST:PORT native=HOST:PORT admin=HOST:PORT
#   scripts/cluster-local.sh stop DIR    # SIGTERM, then waits (bounded)
#
#   env: FERROMQ_BIN=target/release/ferromq  BASE_PORT=62000 (node N uses
#        BASE_PORT+10*N: +0 STOMP, +1 native, +2 admin, +3 cluster peers)
#        CLUSTER_EXTRA='election_timeout_min = "1s"' (more [cluster] keys)
#
# Try it: start, `curl -s ADMIN/healthz` on each (one says "ok leader"),
# kill -9 the leader's pid, and watch another node say "ok leader" within
# a few seconds; start again to bring the killed node back.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd="$1"
dir="$2"
bin="${FERROMQ_BIN:-target/release/ferromq}"
base="${BASE_PORT:-62000}"
host=127.0.0.1
port() { echo $((base + 10 * $1 + $2)); }

start() {
  if [ ! -x "$bin" ]; then
    echo "$bin not found: build it with 'cargo build --release -p ferromq-broker' (or set FERROMQ_BIN)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  local members="" id
  for id in 1 2 3; do
    members+="[[cluster.members]]
id = $id
cluster = \"$host:$(port $id 3)\"
stomp = \"$host:$(port $id 0)\"
native = \"$host:$(port $id 1)\"
admin = \"$host:$(port $id 2)\"
"
  done
  for id in 1 2 3; do
    local node="$dir/node$id"
    mkdir -p "$node"
    if [ -f "$node/pid" ] && kill -0 "$(cat "$node/pid")" 2>/dev/null; then
      echo "node=$id pid=$(cat "$node/pid") stomp=$host:$(port $id 0) native=$host:$(port $id 1) admin=$host:$(port $id 2) (already running)"
      continue
    fi
    cat >"$node/ferromq.toml" <<TOML
[broker]
data_dir = "$(cd "$node" && pwd)/data"

[stomp]
listen = "$host:$(port $id 0)"

[websocket]
listen = ""
tls_listen = ""

[native]
listen = "$host:$(port $id 1)"

[admin]
listen = "$host:$(port $id 2)"

[store]
sync = "always"

[cluster]
cluster_id = "local"
node_id = $id
listen = "$host:$(port $id 3)"
${CLUSTER_EXTRA:-}
$members
TOML
    "$bin" --config "$node/ferromq.toml" >>"$node/ferromq.log" 2>&1 &
    echo $! >"$node/pid"
    echo "node=$id pid=$! stomp=$host:$(port $id 0) native=$host:$(port $id 1) admin=$host:$(port $id 2)"
  done
}

stop() {
  local id pid
  for id in 1 2 3; do
    local file="$dir/node$id/pid"
    [ -f "$file" ] || continue
    pid="$(cat "$file")"
    if kill -TERM "$pid" 2>/dev/null; then
      # Bounded: 100 x 0.1 s, then SIGKILL.
      for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$pid" 2>/dev/null || true
      echo "node=$id pid=$pid stopped"
    fi
    rm -f "$file"
  done
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
