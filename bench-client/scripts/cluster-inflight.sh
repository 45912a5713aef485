#!/usr/bin/env bash
# Persistent throughput of a three-node loopback cluster by
# `cluster.max_in_flight` (group-commit batches proposed and not yet
# committed), against a single node (the same binary without [cluster]):
# 10 producers, 10 queues, no consumer, 1 KiB, a RECEIPT per SEND. Each
# round runs every configuration once, the order reversed every other round
# (ABBA). The leader's applied Raft log index is polled every 0.2 s during
# each cluster run (index-<config>-rN.csv: unix_ms,index), so the batches
# proposed within the bench's sample window, and so messages per batch, can
# be read (cluster-inflight-summary.py beside this script).
#
#   CONFIGS="64 2 1" ROUNDS=4 bench-client/scripts/cluster-inflight.sh OUT_DIR
#
#   env: CONFIGS (max_in_flight values; "single" = one node without
#        [cluster]), ROUNDS=4, SAMPLES=5, WARMUP=2 (1 s samples),
#        BIN=target/release, BASE_PORT=62700
#
# Writes OUT_DIR/<config>-rN.json (ferromq-bench), index-<config>-rN.csv,
# OUT_DIR/runs.tsv (round,
# config, leader, log index before and after, load average before and
# after), run.json (commit, command), node logs of failed runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
out="$1"
configs="${CONFIGS:-64 2 1}"
rounds="${ROUNDS:-4}"
samples="${SAMPLES:-5}"
warmup="${WARMUP:-2}"
bin="${BIN:-target/release}"
bench="$bin/ferromq-bench"
export BASE_PORT="${BASE_PORT:-62700}"
export FERROMQ_BIN="$bin/ferromq"
mkdir -p "$out"
data="$(mktemp -d /tmp/cluster-inflight.XXXXXX)"
port() { echo $((BASE_PORT + 10 * $1 + $2)); }
. bench-client/scripts/single-node.sh
cleanup() {
  stop_single_node
  scripts/cluster-local.sh stop "$data/cluster" >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT
load() { cut -d' ' -f1 /proc/loadavg; }

RUN="$(basename "$out")" COMMIT="$(git rev-parse HEAD)" \
  COMMAND="CONFIGS=\"$configs\" ROUNDS=$rounds SAMPLES=$samples WARMUP=$warmup bench-client/scripts/cluster-inflight.sh $out" \
  python3 -c 'import json, os, sys, time
json.dump({"run": os.environ["RUN"], "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "ferromq_commit": os.environ["COMMIT"], "command": os.environ["COMMAND"]},
          open(sys.argv[1], "w"), indent=2)' "$out/run.json"
[ -f "$out/runs.tsv" ] || printf 'round\tconfig\tleader\tindex_before\tindex_after\tload_before\tload_after\n' >"$out/runs.tsv"

# The leader's last log index (applied), from /api/cluster.
log_index() { # NODE
  curl -s --max-time 3 "http://127.0.0.1:$(port "$1" 2)/api/cluster" |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get("applied_index") or 0)' 2>/dev/null || true
}

persistent() { # URL NAME OUT_JSON
  "$bench" run --url "$1" --broker-name "$2" --size 1024 --persistent \
    --producers 10 --consumers 0 --destinations 10 \
    --warmup "$warmup" --samples "$samples" -o "$3" 2>&1 | tail -n 1
}

# Polls NODE's applied index every 0.2 s into FILE; bounded: 3000 polls
# (10 min), killed by the caller when the run ends.
poll_index() { # NODE FILE
  echo "unix_ms,index" >"$2"
  for _ in $(seq 3000); do
    echo "$(date +%s%3N),$(log_index "$1")" >>"$2"
    sleep 0.2
  done
}

run_cluster() { # ROUND MAX_IN_FLIGHT
  local dir="$data/cluster" leader="" id before after l0 poller
  rm -rf "$dir"
  CLUSTER_EXTRA="max_in_flight = $2" scripts/cluster-local.sh start "$dir" >/dev/null
  for _ in $(seq 300); do # bounded: 30 s
    for id in 1 2 3; do
      [ "$(curl -s --max-time 1 "http://127.0.0.1:$(port "$id" 2)/healthz")" = "ok leader" ] && leader="$id"
    done
    [ -n "$leader" ] && break
    sleep 0.1
  done
  [ -n "$leader" ] || { echo "no leader elected" >&2; exit 1; }
  sleep 1 # followers caught up with the first entries
  before="$(log_index "$leader")"
  poll_index "$leader" "$out/index-$2-r$1.csv" &
  poller=$!
  l0="$(load)"
  persistent "failover:(stomp://127.0.0.1:$(port 1 0),stomp://127.0.0.1:$(port 2 0),stomp://127.0.0.1:$(port 3 0))" \
    "ferromq cluster max_in_flight=$2" "$out/$2-r$1.json"
  kill "$poller" 2>/dev/null || true
  wait "$poller" 2>/dev/null || true
  after="$(log_index "$leader")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$leader" "$before" "$after" "$l0" "$(load)" >>"$out/runs.tsv"
  [ "$(curl -s --max-time 3 "http://127.0.0.1:$(port "$leader" 2)/healthz")" = "ok leader" ] ||
    echo "WARNING: round $1 config $2: node $leader is no longer the leader" | tee -a "$out/runs.tsv"
  scripts/cluster-local.sh stop "$dir" >/dev/null
  rm -rf "$dir"
}

run_single() { # ROUND
  local l0
  start_single_node "$data/single" "$FERROMQ_BIN" "$(port 1 0)" "$(port 1 1)" "$(port 1 2)"
  l0="$(load)"
  persistent "stomp://127.0.0.1:$(port 1 0)" "ferromq single node" "$out/single-r$1.json"
  printf '%s\tsingle\t-\t-\t-\t%s\t%s\n' "$1" "$l0" "$(load)" >>"$out/runs.tsv"
  stop_single_node
  rm -rf "$data/single"
}

for round in $(seq "$rounds"); do
  order="$configs"
  [ $((round % 2)) = 0 ] && order="$(echo "$configs" | tr ' ' '\n' | tac | tr '\n' ' ')"
  for c in $order; do
    if [ "$c" = single ]; then run_single "$round"; else run_cluster "$round" "$c"; fi
  done
done
