#!/usr/bin/env bash
# A deep persistent backlog in a three-node loopback cluster (issues 16 and
# 19): the leader keeps a window of each queue in memory and leaves the rest
# to the replicated store. 10 producers fill 10 queues with persistent 1 KiB
# messages (async sends), nobody consuming, until the queues hold COUNT
# messages or the three data directories together reach MAX_DATA_MB; every
# node's VmRSS is sampled every second throughout, with the load average.
# Then kill -9 of the leader, the time until another node serves and
# delivers a queued message, and 10 consumers drain the backlog through the
# failover list (drain-backlog.sh: repeated runs until empty, with the
# per-producer order check against the fill's manifest).
#
#   COUNT=500000 bench-client/scripts/cluster-deep-queue.sh OUT_DIR
#
# Knobs: COUNT (default 500000), MAX_DATA_MB (default 2800, all three nodes'
# data directories together: the disk budget), BIN (directory of the release
# binaries, default target/release), BASE_PORT (scripts/cluster-local.sh's
# port layout, default 63100), DRAIN_SAMPLES (default 20 one-second samples
# per drain run, then the bench drains the rest until 5 s idle),
# DRAIN_ROUNDS (drain runs at most, default 50), MAX_ROUNDS (fill rounds of
# 10 s at most, default 30).
# Writes into OUT_DIR: rss.tsv (unix time, phase, node id, role, VmRSS KiB,
# 1-minute load average), fill-N.json and drain-N.json (ferromq-bench),
# manifest.jsonl, order-state.json and order.txt (the order check),
# depth.tsv (unix time, messages queued, data MB of all nodes),
# metrics-leader-after-fill.txt and metrics-new-leader.txt (store and queue
# gauges), failover.txt, node*.log, summary.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench-client/scripts/drain-backlog.sh
OUT=${1:?usage: cluster-deep-queue.sh OUT_DIR}
COUNT=${COUNT:-500000}
MAX_DATA_MB=${MAX_DATA_MB:-2800}
BIN=${BIN:-target/release}
MAX_ROUNDS=${MAX_ROUNDS:-30}
export BASE_PORT=${BASE_PORT:-63100}
export FERROMQ_BIN="$BIN/ferromq"
mkdir -p "$OUT"
rm -f "$OUT/manifest.jsonl" "$OUT/order-state.json"
DIR="$(mktemp -d /tmp/ferromq-cluster-deep.XXXXXX)"
PHASE_FILE="$DIR/phase"
echo idle > "$PHASE_FILE"
port() { echo $((BASE_PORT + 10 * $1 + $2)); }
pid_of() { cat "$DIR/cluster/node$1/pid" 2> /dev/null || true; }
role_of() { curl -sf -m 2 "http://127.0.0.1:$(port "$1" 2)/healthz" 2> /dev/null | awk '{print $2}' || true; }

sample_rss() {
  local id pid kib load
  while true; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    for id in 1 2 3; do
      pid=$(pid_of "$id")
      [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || continue
      kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2> /dev/null || true)
      [ -n "$kib" ] && printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date +%s.%N)" "$(cat "$PHASE_FILE")" \
        "$id" "$(role_of "$id")" "$kib" "$load" >> "$OUT/rss.tsv"
    done
    sleep 1
  done
}

wait_leader() {
  local id
  for _ in $(seq 600); do
    for id in 1 2 3; do
      [ "$id" = "${1:-0}" ] && continue
      if [ "$(role_of "$id")" = leader ]; then
        echo "$id"
        return 0
      fi
    done
    sleep 0.1
  done
  echo "no leader within 60 s" >&2
  exit 1
}

queued() {
  curl -sf "http://127.0.0.1:$(port "$1" 2)/api/destinations" | python3 -c '
import json, sys
v = json.load(sys.stdin)
items = v if isinstance(v, list) else v.get("destinations", v.get("items", []))
print(sum(d.get("messages", 0) for d in items if str(d.get("name", "")).startswith("/queue/")))'
}

# Messages queued on whichever node leads now.
queued_on_leader() { queued "$(wait_leader)"; }

data_mb() { du -sm "$DIR/cluster" | cut -f1; }

gauges() {
  curl -sf "http://127.0.0.1:$(port "$1" 2)/metrics" |
    grep -E '^ferromq_store_|^ferromq_destination_(messages|bytes)\{destination="/queue/' || true
}

cleanup() {
  kill "${SAMPLER:-}" 2> /dev/null || true
  for id in 1 2 3; do
    [ -f "$DIR/cluster/node$id/ferromq.log" ] && cp "$DIR/cluster/node$id/ferromq.log" "$OUT/node$id.log"
  done
  scripts/cluster-local.sh stop "$DIR/cluster" > /dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT

scripts/cluster-local.sh start "$DIR/cluster" | tee "$OUT/nodes.txt"
ALL="failover:(stomp://127.0.0.1:$(port 1 0),stomp://127.0.0.1:$(port 2 0),stomp://127.0.0.1:$(port 3 0))"
LEADER=$(wait_leader)
sample_rss &
SAMPLER=$!
sleep 5
echo fill > "$PHASE_FILE"
fill_started=$(date +%s.%N)
round=0
while true; do
  round=$((round + 1))
  # The failover list: a leader may change under load (a deposed one
  # restarts itself), and the bench follows the refusals' leader header.
  "$BIN/ferromq-bench" run --url "$ALL" --mode queue --persistent \
    --async-send --producers 10 --consumers 0 --destinations 10 --size 1024 --samples 10 \
    --warmup 0 --no-drain --manifest "$OUT/manifest.jsonl" --out "$OUT/fill-$round.json" > /dev/null
  LEADER=$(wait_leader)
  n=$(queued "$LEADER")
  mb=$(data_mb)
  printf '%s\t%s\t%s\n' "$(date +%s.%N)" "$n" "$mb" >> "$OUT/depth.tsv"
  echo "fill round $round: $n messages queued, data directories $mb MB, load $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ "$n" -ge "$COUNT" ] || [ "$mb" -ge "$MAX_DATA_MB" ] || [ "$round" -ge "$MAX_ROUNDS" ]; then break; fi
done
fill_ended=$(date +%s.%N)
echo settled > "$PHASE_FILE"
sleep 10
LEADER=$(wait_leader)
filled=$(queued "$LEADER")
gauges "$LEADER" > "$OUT/metrics-leader-after-fill.txt"

echo failover > "$PHASE_FILE"
killed_at=$(date +%s.%N)
kill -9 "$(pid_of "$LEADER")"
OLD=$LEADER
LEADER=$(wait_leader "$OLD")
serving_at=$(date +%s.%N)
python3 - "127.0.0.1:$(port "$LEADER" 0)" "$killed_at" "$serving_at" > "$OUT/failover.txt" << 'EOF'
import socket, sys, time
host, port = sys.argv[1].split(":")
killed, serving = float(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection((host, int(port)))
s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")
buf = b""
while b"\0" not in buf:
    buf += s.recv(4096)
s.sendall(b"SUBSCRIBE\nid:0\ndestination:/queue/loadq-0\nack:client-individual\n\n\0")
buf = b""
while b"MESSAGE" not in buf:
    chunk = s.recv(65536)
    if not chunk:
        raise SystemExit("connection closed before a MESSAGE")
    buf += chunk
print(f"new leader serving {serving - killed:.3f} s after the kill; first delivery {time.time() - killed:.3f} s after the kill")
EOF
echo "killed node $OLD; node $LEADER leads" >> "$OUT/failover.txt"
sleep 5
gauges "$LEADER" > "$OUT/metrics-new-leader.txt"
cat "$OUT/failover.txt"

echo drain > "$PHASE_FILE"
drain_started=$(date +%s.%N)
# The failover list: the leader may change during the drain.
drain_backlog "$ALL" "$filled" queued_on_leader
drain_ended=$(date +%s.%N)
left=$DRAIN_LEFT
{
  echo "count knob: $COUNT, disk budget: $MAX_DATA_MB MB (three data directories)"
  echo "filled: $filled messages in $(python3 -c "print(round($fill_ended - $fill_started, 1))") s"
  echo "data directories after the fill: $(tail -1 "$OUT/depth.tsv" | cut -f3) MB"
  cat "$OUT/failover.txt"
  echo "left after the drain: $left of $filled messages; drain took $(python3 -c "print(round($drain_ended - $drain_started, 1))") s"
  cat "$OUT/order.txt"
  echo "peak RSS KiB by phase and node (role at the sample):"
  awk -F'\t' '{ k = $2 " node" $3 " " $4; if ($5 > peak[k]) peak[k] = $5 } END { for (k in peak) print "  " k ": " peak[k] }' "$OUT/rss.tsv" | sort
  echo "load average (1 min) min/max: $(cut -f6 "$OUT/rss.tsv" | sort -n | sed -n '1p;$p' | paste -sd/)"
} | tee "$OUT/summary.txt"
