#!/usr/bin/env bash
# A three-node ferromq cluster on loopback vs a single ActiveMQ 5.17 in the
# same run (issue 16, "Performance"): persistent 1 KiB with a RECEIPT per
# SEND at 10/10/10, 10 producers with no consumer, and 1/1/1, one broker at
# a time on the same machine (all three nodes and the client share it).
#
#   bench-client/scripts/cluster-vs-activemq.sh OUT_DIR
#
#   env: SAMPLES=5 WARMUP=2 (1 s samples)  PEERS=/work/shared/peers
#        FERROMQ_BIN=target/release/ferromq  BENCH_BIN=target/release/ferromq-bench
#        BASE_PORT=62400 (scripts/cluster-local.sh's port layout)
#
# Writes OUT_DIR/cluster.json, OUT_DIR/activemq.json and run.json (commit,
# command). The cluster runs with the [cluster] defaults and store.sync =
# "always" (scripts/cluster-local.sh); ActiveMQ with the team's peer
# configuration (KahaDB, STOMP on 61713).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
out="$1"
samples="${SAMPLES:-5}"
warmup="${WARMUP:-2}"
peers="${PEERS:-/work/shared/peers}"
bench="${BENCH_BIN:-target/release/ferromq-bench}"
export BASE_PORT="${BASE_PORT:-62400}"
export FERROMQ_BIN="${FERROMQ_BIN:-target/release/ferromq}"
mkdir -p "$out"
cluster="$out/cluster-data"
port() { echo $((BASE_PORT + 10 * $1 + $2)); }
cleanup() {
  scripts/cluster-local.sh stop "$cluster" >/dev/null 2>&1 || true
  rm -rf "$cluster"
  "$peers/activemq-stop.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT
SCENARIOS=(
  "--producers 10 --consumers 10 --destinations 10"
  "--producers 10 --consumers 0 --destinations 10"
  "--producers 1 --consumers 1 --destinations 1"
)
run_all() { # URL NAME FILE
  local s
  for s in "${SCENARIOS[@]}"; do
    # shellcheck disable=SC2086 # $s is a list of options
    "$bench" run --url "$1" --broker-name "$2" --persistent --size 1024 $s \
      --warmup "$warmup" --samples "$samples" -o "$3" 2>&1 | tail -n 2
  done
}
RUN="$(basename "$out")" COMMIT="$(git rev-parse HEAD)" \
  COMMAND="SAMPLES=$samples WARMUP=$warmup bench-client/scripts/cluster-vs-activemq.sh $out" \
  python3 -c 'import json, os, sys, time
json.dump({"run": os.environ["RUN"], "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "ferromq_commit": os.environ["COMMIT"], "command": os.environ["COMMAND"]},
          open(sys.argv[1], "w"), indent=2)' "$out/run.json"

scripts/cluster-local.sh start "$cluster"
# Every node up (a client's first endpoint may be any of them) and one
# leading; bounded: 300 x 0.1 s.
for _ in $(seq 300); do
  roles="$(for id in 1 2 3; do curl -s --max-time 1 "http://127.0.0.1:$(port "$id" 2)/healthz"; echo; done)"
  [ "$(grep -c '^ok leader$' <<<"$roles")" = 1 ] && [ "$(grep -c '^ok follower$' <<<"$roles")" = 2 ] && break
  sleep 0.1
done
url="failover:(stomp://127.0.0.1:$(port 1 0),stomp://127.0.0.1:$(port 2 0),stomp://127.0.0.1:$(port 3 0))"
run_all "$url" "ferromq 3-node cluster" "$out/cluster.json"
scripts/cluster-local.sh stop "$cluster"

"$peers/activemq-start.sh"
run_all "stomp://127.0.0.1:61713" "ActiveMQ 5.17" "$out/activemq.json"
