#!/usr/bin/env bash
# The rest of issue 16's "Performance" list, one run: a three-node loopback
# cluster against a single node (the same binary with no [cluster] section,
# otherwise the same configuration: store.sync = "always"), alternating the
# two configurations within the run (ABBA: round 1 cluster then single,
# round 2 single then cluster, ...), a fresh data directory per run:
#
# - non-persistent 1 KiB queues, 10/10/10 and 1/1/1 (the cluster's leader
#   serves them; the target is within 10 % of a single node);
# - persistent 1 KiB, RECEIPT per SEND, 10 producers, 10 queues, no
#   consumer, with every node's `write_bytes` (/proc/PID/io) polled every
#   0.1 s meanwhile, so the bytes written per accepted message can be read
#   for the bench's sample window (summary.py beside this script).
#
#   bench-client/scripts/cluster-extra.sh OUT_DIR
#
#   env: ROUNDS=2 SAMPLES=5 WARMUP=2 (1 s samples)
#        FERROMQ_BIN=target/release/ferromq  BENCH_BIN=target/release/ferromq-bench
#        BASE_PORT=62600 (scripts/cluster-local.sh's port layout; the single
#        node uses node 1's ports)
#
# Writes OUT_DIR/{cluster,single}-rN.json (the bench's results),
# OUT_DIR/io-{cluster,single}-rN-<role>.csv (unix_ms,write_bytes; role is
# leader, follower-ID or single), OUT_DIR/load.txt (uptime around each run),
# run.json (commit, command) and summary.md (cluster-extra-summary.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
out="$1"
rounds="${ROUNDS:-2}"
samples="${SAMPLES:-5}"
warmup="${WARMUP:-2}"
bench="${BENCH_BIN:-target/release/ferromq-bench}"
export BASE_PORT="${BASE_PORT:-62600}"
export FERROMQ_BIN="${FERROMQ_BIN:-target/release/ferromq}"
mkdir -p "$out"
data="$(mktemp -d /tmp/cluster-extra.XXXXXX)"
port() { echo $((BASE_PORT + 10 * $1 + $2)); }
. bench-client/scripts/single-node.sh
pollers=()
stop_pollers() {
  local p
  for p in "${pollers[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pollers=()
}
cleanup() {
  stop_pollers
  stop_single_node
  scripts/cluster-local.sh stop "$data/cluster" >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT

RUN="$(basename "$out")" COMMIT="$(git rev-parse HEAD)" \
  COMMAND="ROUNDS=$rounds SAMPLES=$samples WARMUP=$warmup bench-client/scripts/cluster-extra.sh $out" \
  python3 -c 'import json, os, sys, time
json.dump({"run": os.environ["RUN"], "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "ferromq_commit": os.environ["COMMIT"], "command": os.environ["COMMAND"]},
          open(sys.argv[1], "w"), indent=2)' "$out/run.json"
: >"$out/load.txt"

# Polls PID's write_bytes every 0.1 s into FILE as unix_ms,write_bytes;
# bounded: 6000 polls (10 min), and stopped by stop_pollers before that.
poll_io() { # PID FILE
  echo "unix_ms,write_bytes" >"$2"
  local _ wb
  for _ in $(seq 6000); do
    wb="$(awk '/^write_bytes:/ {print $2}' "/proc/$1/io" 2>/dev/null)" || break
    [ -n "$wb" ] || break
    echo "$(date +%s%3N),$wb" >>"$2"
    sleep 0.1
  done
}

# Runs the three scenarios against URL, writing OUT_DIR/LABEL.json; the
# persistent one with a poller per "ROLE:PID" in ROLES.
run_scenarios() { # URL NAME LABEL ROLES...
  local url="$1" name="$2" label="$3"
  shift 3
  local s rp
  for s in "--producers 10 --consumers 10 --destinations 10" "--producers 1 --consumers 1 --destinations 1"; do
    # shellcheck disable=SC2086 # $s is a list of options
    "$bench" run --url "$url" --broker-name "$name" --size 1024 $s \
      --warmup "$warmup" --samples "$samples" -o "$out/$label.json" 2>&1 | tail -n 1
  done
  for rp in "$@"; do
    poll_io "${rp#*:}" "$out/io-$label-${rp%%:*}.csv" &
    pollers+=($!)
  done
  sleep 0.3
  "$bench" run --url "$url" --broker-name "$name" --size 1024 --persistent \
    --producers 10 --consumers 0 --destinations 10 \
    --warmup "$warmup" --samples "$samples" -o "$out/$label.json" 2>&1 | tail -n 1
  stop_pollers
}

run_cluster() { # ROUND
  local dir="$data/cluster" roles id leader="" r
  rm -rf "$dir"
  scripts/cluster-local.sh start "$dir" >/dev/null
  # Every node up and one leading; bounded: 300 x 0.1 s.
  for _ in $(seq 300); do
    roles="$(for id in 1 2 3; do curl -s --max-time 1 "http://127.0.0.1:$(port "$id" 2)/healthz"; echo; done)"
    [ "$(grep -c '^ok leader$' <<<"$roles")" = 1 ] && [ "$(grep -c '^ok follower$' <<<"$roles")" = 2 ] && break
    sleep 0.1
  done
  local args=()
  for id in 1 2 3; do
    r="$(curl -s --max-time 1 "http://127.0.0.1:$(port "$id" 2)/healthz")"
    if [ "$r" = "ok leader" ]; then
      leader="$id"
      args+=("leader:$(cat "$dir/node$id/pid")")
    else
      args+=("follower-$id:$(cat "$dir/node$id/pid")")
    fi
  done
  [ -n "$leader" ] || { echo "no leader elected" >&2; exit 1; }
  echo "round $1 cluster (leader node $leader): $(uptime)" | tee -a "$out/load.txt"
  local url="failover:(stomp://127.0.0.1:$(port 1 0),stomp://127.0.0.1:$(port 2 0),stomp://127.0.0.1:$(port 3 0))"
  run_scenarios "$url" "ferromq 3-node cluster" "cluster-r$1" "${args[@]}"
  # The leader must not have changed during the run.
  # (A slow answer under load is not a failure of the run: say so and go on.)
  r="$(curl -s --max-time 3 "http://127.0.0.1:$(port "$leader" 2)/healthz" || echo "no answer")"
  [ "$r" = "ok leader" ] || echo "WARNING: node $leader is no longer the leader ($r)" | tee -a "$out/load.txt"
  scripts/cluster-local.sh stop "$dir" >/dev/null
  rm -rf "$dir"
}

run_single() { # ROUND
  start_single_node "$data/single" "$FERROMQ_BIN" "$(port 1 0)" "$(port 1 1)" "$(port 1 2)"
  echo "round $1 single: $(uptime)" | tee -a "$out/load.txt"
  run_scenarios "stomp://127.0.0.1:$(port 1 0)" "ferromq single node" "single-r$1" "single:$single_pid"
  stop_single_node
  rm -rf "$data/single"
}

for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then
    run_cluster "$round"
    run_single "$round"
  else
    run_single "$round"
    run_cluster "$round"
  fi
done
echo "end: $(uptime)" | tee -a "$out/load.txt"
python3 bench-client/scripts/cluster-extra-summary.py "$out" | tee "$out/summary.md"
