#!/usr/bin/env bash
# Where a replicated commit's time goes, and before/after a change: a
# three-node loopback cluster of each binary and a single node, 10
# producers, 10 queues, no consumer, 1 KiB persistent, a RECEIPT per SEND.
# Each round runs every configuration once, the order reversed every other
# round (ABBA). Around each cluster run every node's /metrics is saved
# (metrics-<config>-rN-n<ID>-{before,after}.prom): the
# ferromq_raft_stage_seconds histograms of a binary that has them give the
# per-stage breakdown (cluster-commit-summary.py beside this script).
#
#   flock /tmp/ferromq-bench.lock env CONFIGS="base new single" ROUNDS=2 \
#     BASE_FERROMQ=/work/bins/main-ferromq NEW_FERROMQ=target/release/ferromq \
#     bench-client/scripts/cluster-commit.sh OUT_DIR
#
#   configs: base (BASE_FERROMQ in a cluster), new (NEW_FERROMQ in a
#            cluster), single (NEW_FERROMQ without [cluster])
#   env: ROUNDS=2, SAMPLES=5, WARMUP=2 (1 s samples),
#        BENCH=target/release/ferromq-bench (one client for every run),
#        CLUSTER_EXTRA (more [cluster] keys for every cluster run),
#        BASE_PORT=62800
#
# Writes OUT_DIR/<config>-rN.json (ferromq-bench), the metrics files,
# OUT_DIR/runs.tsv (round, config, leader, load average before and after),
# run.json (commits, command).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
out="$1"
configs="${CONFIGS:-base new single}"
rounds="${ROUNDS:-2}"
samples="${SAMPLES:-5}"
warmup="${WARMUP:-2}"
bench="${BENCH:-target/release/ferromq-bench}"
base_bin="${BASE_FERROMQ:-/work/bins/main-ferromq}"
new_bin="${NEW_FERROMQ:-target/release/ferromq}"
export BASE_PORT="${BASE_PORT:-62800}"
mkdir -p "$out"
data="$(mktemp -d /tmp/cluster-commit.XXXXXX)"
port() { echo $((BASE_PORT + 10 * $1 + $2)); }
. bench-client/scripts/single-node.sh
cleanup() {
  stop_single_node
  FERROMQ_BIN="$new_bin" scripts/cluster-local.sh stop "$data/cluster" >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT
load() { cut -d' ' -f1 /proc/loadavg; }

RUN="$(basename "$out")" COMMIT="$(git rev-parse HEAD)" BASE_SUM="$(sha256sum "$base_bin" | cut -c1-16)" \
  NEW_SUM="$(sha256sum "$new_bin" | cut -c1-16)" \
  COMMAND="CONFIGS=\"$configs\" ROUNDS=$rounds SAMPLES=$samples WARMUP=$warmup BASE_FERROMQ=$base_bin NEW_FERROMQ=$new_bin BENCH=$bench CLUSTER_EXTRA='${CLUSTER_EXTRA:-}' bench-client/scripts/cluster-commit.sh $out" \
  python3 -c 'import json, os, sys, time
json.dump({"run": os.environ["RUN"], "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "worktree_commit": os.environ["COMMIT"], "base_sha256_16": os.environ["BASE_SUM"],
           "new_sha256_16": os.environ["NEW_SUM"], "command": os.environ["COMMAND"]},
          open(sys.argv[1], "w"), indent=2)' "$out/run.json"
[ -f "$out/runs.tsv" ] || printf 'round\tconfig\tleader\tload_before\tload_after\n' >"$out/runs.tsv"

persistent() { # URL NAME OUT_JSON
  "$bench" run --url "$1" --broker-name "$2" --size 1024 --persistent \
    --producers 10 --consumers 0 --destinations 10 \
    --warmup "$warmup" --samples "$samples" -o "$3" 2>&1 | tail -n 1
}

scrape() { # CONFIG ROUND WHEN
  for id in 1 2 3; do
    curl -s --max-time 3 "http://127.0.0.1:$(port "$id" 2)/metrics" >"$out/metrics-$1-r$2-n$id-$3.prom" || true
  done
}

run_cluster() { # ROUND CONFIG BIN
  local dir="$data/cluster" leader="" id l0
  rm -rf "$dir"
  FERROMQ_BIN="$3" CLUSTER_EXTRA="${CLUSTER_EXTRA:-}" scripts/cluster-local.sh start "$dir" >/dev/null
  for _ in $(seq 300); do # bounded: 30 s
    for id in 1 2 3; do
      [ "$(curl -s --max-time 1 "http://127.0.0.1:$(port "$id" 2)/healthz")" = "ok leader" ] && leader="$id"
    done
    [ -n "$leader" ] && break
    sleep 0.1
  done
  [ -n "$leader" ] || { echo "no leader elected" >&2; exit 1; }
  sleep 1 # followers caught up with the first entries
  scrape "$2" "$1" before
  l0="$(load)"
  persistent "failover:(stomp://127.0.0.1:$(port 1 0),stomp://127.0.0.1:$(port 2 0),stomp://127.0.0.1:$(port 3 0))" \
    "ferromq cluster $2" "$out/$2-r$1.json"
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$leader" "$l0" "$(load)" >>"$out/runs.tsv"
  scrape "$2" "$1" after
  [ "$(curl -s --max-time 3 "http://127.0.0.1:$(port "$leader" 2)/healthz")" = "ok leader" ] ||
    echo "WARNING: round $1 config $2: node $leader is no longer the leader" | tee -a "$out/runs.tsv"
  FERROMQ_BIN="$3" scripts/cluster-local.sh stop "$dir" >/dev/null
  rm -rf "$dir"
}

run_single() { # ROUND
  local l0
  start_single_node "$data/single" "$new_bin" "$(port 1 0)" "$(port 1 1)" "$(port 1 2)"
  l0="$(load)"
  persistent "stomp://127.0.0.1:$(port 1 0)" "ferromq single node" "$out/single-r$1.json"
  printf '%s\tsingle\t-\t%s\t%s\n' "$1" "$l0" "$(load)" >>"$out/runs.tsv"
  stop_single_node
  rm -rf "$data/single"
}

for round in $(seq "$rounds"); do
  order="$configs"
  [ $((round % 2)) = 0 ] && order="$(echo "$configs" | tr ' ' '\n' | tac | tr '\n' ' ')"
  for c in $order; do
    case "$c" in
      single) run_single "$round" ;;
      base) run_cluster "$round" base "$base_bin" ;;
      new) run_cluster "$round" new "$new_bin" ;;
      *) echo "unknown config $c" >&2; exit 2 ;;
    esac
  done
done
